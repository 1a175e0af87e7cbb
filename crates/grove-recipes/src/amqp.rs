//! Just enough AMQP 0-9-1 for RabbitMQ's readiness probe: open a connection as the
//! administrator (protocol header, `Start-Ok` with PLAIN credentials, `Tune-Ok`, `Open`) and
//! close it the way a client should (`Close`, then the server's `Close-Ok`), so the broker
//! logs no "client unexpectedly closed TCP connection" at every probe, and wrong credentials
//! or a broker still booting are told apart from a working one.
//!
//! The frame encoding and decoding are pure functions, tested without a broker; [`probe`] is
//! the only part that does I/O.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const FRAME_METHOD: u8 = 1;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// The largest frame the probe accepts before any tuning (the spec's minimum frame size is
/// 4 KiB; `Connection.Start` with its server properties fits easily in 64 KiB).
const MAX_FRAME: usize = 64 * 1024;

/// `Connection` is class 10; its methods, by id.
const CONNECTION: u16 = 10;
const START: u16 = 10;
const START_OK: u16 = 11;
const TUNE: u16 = 30;
const TUNE_OK: u16 = 31;
const OPEN: u16 = 40;
const OPEN_OK: u16 = 41;
const CLOSE: u16 = 50;
const CLOSE_OK: u16 = 51;

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A whole frame, and how many bytes it took.
    Frame(Frame, usize),
    /// Not enough bytes yet.
    Partial,
    /// Not AMQP framing: the reason.
    Bad(String),
}

/// Decodes the frame at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < 7 {
        return Decoded::Partial;
    }
    if buf.starts_with(b"AMQP") {
        // The server answers a protocol header it does not speak with its own.
        return Decoded::Bad(format!(
            "the broker wants AMQP {}.{}.{}",
            buf[5],
            buf[6],
            buf.get(7).copied().unwrap_or(0)
        ));
    }
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if size > MAX_FRAME {
        return Decoded::Bad(format!("a {size}-byte frame"));
    }
    let total = 7 + size + 1;
    if buf.len() < total {
        return Decoded::Partial;
    }
    if buf[total - 1] != FRAME_END {
        return Decoded::Bad("a frame without its end marker".into());
    }
    Decoded::Frame(
        Frame {
            kind: buf[0],
            channel: u16::from_be_bytes([buf[1], buf[2]]),
            payload: buf[7..7 + size].to_vec(),
        },
        total,
    )
}

/// A method frame on channel 0 carrying `class`.`method` and its encoded arguments.
pub(crate) fn method(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + args.len());
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(args);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(FRAME_METHOD);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.push(FRAME_END);
    out
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn long_str(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// `Connection.Start-Ok`: who we are, PLAIN credentials, a locale.
pub(crate) fn start_ok(user: &str, password: &str) -> Vec<u8> {
    let mut props = Vec::new();
    short_str(&mut props, "product");
    props.push(b'S');
    long_str(&mut props, b"grove readiness probe");
    let mut args = Vec::new();
    long_str(&mut args, &props);
    short_str(&mut args, "PLAIN");
    let mut response = vec![0u8];
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.extend_from_slice(password.as_bytes());
    long_str(&mut args, &response);
    short_str(&mut args, "en_US");
    method(CONNECTION, START_OK, &args)
}

/// `Connection.Tune-Ok` accepting the server's channel and frame limits, without heartbeats
/// (the probe closes within a second).
pub(crate) fn tune_ok(tune_args: &[u8]) -> Result<Vec<u8>, String> {
    let Some(limits) = tune_args.get(..6) else {
        return Err("a short Connection.Tune".into());
    };
    let mut args = limits.to_vec();
    args.extend_from_slice(&0u16.to_be_bytes());
    Ok(method(CONNECTION, TUNE_OK, &args))
}

/// `Connection.Open` of `vhost`.
pub(crate) fn open(vhost: &str) -> Vec<u8> {
    let mut args = Vec::new();
    short_str(&mut args, vhost);
    short_str(&mut args, "");
    args.push(0);
    method(CONNECTION, OPEN, &args)
}

/// `Connection.Close` with reply code 200 (a normal close).
pub(crate) fn close() -> Vec<u8> {
    let mut args = 200u16.to_be_bytes().to_vec();
    short_str(&mut args, "readiness probe done");
    args.extend_from_slice(&[0, 0, 0, 0]);
    method(CONNECTION, CLOSE, &args)
}

/// The class and method of a method frame's payload, and its arguments.
pub(crate) fn method_of(payload: &[u8]) -> Option<(u16, u16, &[u8])> {
    let head = payload.get(..4)?;
    Some((
        u16::from_be_bytes([head[0], head[1]]),
        u16::from_be_bytes([head[2], head[3]]),
        &payload[4..],
    ))
}

/// The reply code and text of a `Connection.Close` the server sent.
pub(crate) fn close_reason(args: &[u8]) -> String {
    let code = args
        .get(..2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .unwrap_or(0);
    let text = args
        .get(2)
        .and_then(|&n| args.get(3..3 + n as usize))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    format!("{code} {text}")
}

/// Reads frames into `buf` until a method frame arrives (heartbeats are skipped).
async fn next_method<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(u16, u16, Vec<u8>), String> {
    loop {
        match decode(buf) {
            Decoded::Frame(frame, used) => {
                buf.drain(..used);
                match frame.kind {
                    FRAME_HEARTBEAT => continue,
                    FRAME_METHOD => {
                        let (class, id, args) = method_of(&frame.payload)
                            .ok_or_else(|| "a method frame without a method".to_string())?;
                        return Ok((class, id, args.to_vec()));
                    }
                    other => return Err(format!("an unexpected frame of type {other}")),
                }
            }
            Decoded::Bad(why) => return Err(why),
            Decoded::Partial => {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the broker closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Waits for `want` on `Connection`; a `Close` from the broker is answered and reported.
async fn expect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    want: u16,
    name: &str,
) -> Result<Vec<u8>, String> {
    let (class, id, args) = next_method(s, buf).await?;
    if class == CONNECTION && id == want {
        return Ok(args);
    }
    if class == CONNECTION && id == CLOSE {
        let _ = s.write_all(&method(CONNECTION, CLOSE_OK, &[])).await;
        return Err(format!("the broker refused: {}", close_reason(&args)));
    }
    Err(format!(
        "expected Connection.{name}, got method {class}.{id}"
    ))
}

/// Opens and cleanly closes one AMQP connection to `vhost` as `user`.
pub(crate) async fn probe<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    user: &str,
    password: &str,
    vhost: &str,
) -> Result<(), String> {
    let send = |e: std::io::Error| e.to_string();
    s.write_all(b"AMQP\x00\x00\x09\x01").await.map_err(send)?;
    let mut buf = Vec::new();
    expect(s, &mut buf, START, "Start").await?;
    s.write_all(&start_ok(user, password)).await.map_err(send)?;
    let tune = expect(s, &mut buf, TUNE, "Tune").await?;
    s.write_all(&tune_ok(&tune)?).await.map_err(send)?;
    s.write_all(&open(vhost)).await.map_err(send)?;
    expect(s, &mut buf, OPEN_OK, "Open-Ok").await?;
    s.write_all(&close()).await.map_err(send)?;
    expect(s, &mut buf, CLOSE_OK, "Close-Ok").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(frame: &[u8]) -> (u16, u16, Vec<u8>) {
        let Decoded::Frame(f, used) = decode(frame) else {
            panic!("not a frame")
        };
        assert_eq!(used, frame.len());
        let (c, m, a) = method_of(&f.payload).unwrap();
        (c, m, a.to_vec())
    }

    #[test]
    fn frames_round_trip_and_partial_input_waits() {
        let f = method(10, 40, b"abc");
        assert_eq!(args_of(&f), (10, 40, b"abc".to_vec()));
        for cut in 0..f.len() {
            assert_eq!(decode(&f[..cut]), Decoded::Partial, "cut at {cut}");
        }
        let mut bad = f.clone();
        *bad.last_mut().unwrap() = 0;
        assert!(matches!(decode(&bad), Decoded::Bad(_)));
        assert!(matches!(decode(b"AMQP\x00\x00\x09\x01"), Decoded::Bad(_)));
        let huge = [1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(decode(&huge), Decoded::Bad(_)));
    }

    #[test]
    fn start_ok_carries_plain_credentials() {
        let (c, m, args) = args_of(&start_ok("grove", "s3cret"));
        assert_eq!((c, m), (10, 11));
        let table_len = u32::from_be_bytes(args[..4].try_into().unwrap()) as usize;
        let rest = &args[4 + table_len..];
        assert_eq!(&rest[..6], b"\x05PLAIN");
        let resp_len = u32::from_be_bytes(rest[6..10].try_into().unwrap()) as usize;
        assert_eq!(&rest[10..10 + resp_len], b"\0grove\0s3cret");
        assert_eq!(&rest[10 + resp_len..], b"\x05en_US");
    }

    #[test]
    fn tune_ok_echoes_limits_and_turns_heartbeats_off() {
        let tune = [0x07, 0xff, 0x00, 0x02, 0x00, 0x00, 0x00, 0x3c];
        let (c, m, args) = args_of(&tune_ok(&tune).unwrap());
        assert_eq!((c, m), (10, 31));
        assert_eq!(args, vec![0x07, 0xff, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00]);
        assert!(tune_ok(&[1, 2]).is_err());
    }

    #[test]
    fn a_close_from_the_broker_reads_as_its_reason() {
        let mut args = 403u16.to_be_bytes().to_vec();
        short_str(&mut args, "ACCESS_REFUSED - Login was refused");
        args.extend_from_slice(&[0, 10, 0, 11]);
        assert_eq!(
            close_reason(&args),
            "403 ACCESS_REFUSED - Login was refused"
        );
        assert_eq!(close_reason(&[]), "0 ");
    }

    /// A scripted broker on an in-memory pipe: the whole exchange, in order.
    #[tokio::test]
    async fn the_probe_opens_and_closes_cleanly() {
        let (mut client, mut broker) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut head = [0u8; 8];
            broker.read_exact(&mut head).await.unwrap();
            assert_eq!(&head, b"AMQP\x00\x00\x09\x01");
            let mut start = vec![0, 9];
            long_str(&mut start, b"");
            long_str(&mut start, b"PLAIN AMQPLAIN");
            long_str(&mut start, b"en_US");
            broker.write_all(&method(10, 10, &start)).await.unwrap();
            let mut buf = Vec::new();
            let (_, m, _) = next_method(&mut broker, &mut buf).await.unwrap();
            assert_eq!(m, START_OK);
            broker
                .write_all(&method(10, 30, &[0, 0, 0, 2, 0, 0, 0, 60]))
                .await
                .unwrap();
            broker
                .write_all(&[8, 0, 0, 0, 0, 0, 0, FRAME_END])
                .await
                .unwrap();
            let mut seen = Vec::new();
            for _ in 0..2 {
                seen.push(next_method(&mut broker, &mut buf).await.unwrap().1);
            }
            assert_eq!(seen, vec![TUNE_OK, OPEN]);
            broker.write_all(&method(10, 41, &[0])).await.unwrap();
            let (_, m, _) = next_method(&mut broker, &mut buf).await.unwrap();
            assert_eq!(m, CLOSE);
            broker.write_all(&method(10, 51, &[])).await.unwrap();
        });
        probe(&mut client, "grove", "pw", "/").await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn refused_credentials_are_reported() {
        let (mut client, mut broker) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut head = [0u8; 8];
            broker.read_exact(&mut head).await.unwrap();
            broker
                .write_all(&method(10, 10, &[0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
                .await
                .unwrap();
            let mut buf = Vec::new();
            next_method(&mut broker, &mut buf).await.unwrap();
            let mut args = 403u16.to_be_bytes().to_vec();
            short_str(&mut args, "ACCESS_REFUSED");
            args.extend_from_slice(&[0, 10, 0, 11]);
            broker.write_all(&method(10, 50, &args)).await.unwrap();
            let _ = next_method(&mut broker, &mut buf).await;
        });
        let err = probe(&mut client, "grove", "wrong", "/").await.unwrap_err();
        assert!(err.contains("403 ACCESS_REFUSED"), "{err}");
    }
}
