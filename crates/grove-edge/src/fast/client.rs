//! The hyper path's HTTP/1.1 client for plain-HTTP upstreams: the fast path's upstream pool
//! and exchange used for requests hyper serves (HTTP/2 streams above all), so they pay
//! neither hyper-util's pooled client (its pool lock, a task per upstream connection and a
//! channel hop to it per request) nor a second pool whose idle connections the fast path
//! cannot reuse.
//!
//! It takes requests whose body is held whole (or absent) and that are not upgrades; the
//! caller keeps hyper-util's client for the rest (streamed bodies, upgrades, HTTPS
//! upstreams). The request head is written from the prepared `HeaderMap` with the body in
//! one write; the response head is read by [`super::exchange`] (interim responses skipped,
//! a stale pooled connection replaced, a stopping unit's "not served" reported as a refusal,
//! small bodies read whole); the response is handed to hyper with its header values in
//! their own memory and its body either whole or [`Streamed`] from the connection, which
//! goes back to the pool once its body ended cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Response, StatusCode};

use super::response::{Framing, ResponseHead};
use super::{exchange, Failed, Line, READ_BUF};
use crate::pages::full;
use crate::proxy::{BoxBody, BoxError};
use crate::table::Backend;
use crate::upstream::Upstream;
use crate::Shared;

/// Why the exchange gave no response.
#[derive(Debug)]
pub(crate) enum Unsent {
    /// Nothing was sent (no connection, or a stopping unit's socket answered "not
    /// served"): another target may have it, whatever the method.
    Refused(String),
    /// The upstream closed before any byte of a response.
    Closed(String),
    /// Anything else: a bad response, a cut-short one.
    Failed(String),
}

/// The request hyper's side prepared, as it goes upstream.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a Method,
    pub(crate) target: &'a PathAndQuery,
    /// Hop-by-hop headers already removed, forwarded ones and `Host` set.
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a Bytes,
}

/// Whether a request to `backend` can take this client: a plain-HTTP upstream, a body held
/// whole, no upgrade.
pub(crate) fn takes(backend: &Backend, buffered: bool, upgrade: bool, method: &Method) -> bool {
    !backend.https && buffered && !upgrade && method != Method::CONNECT
}

/// One exchange with `backend`.
pub(crate) async fn send(
    shared: &Arc<Shared>,
    backend: &Backend,
    req: Outgoing<'_>,
) -> Result<Response<BoxBody>, Unsent> {
    let wire = request_bytes(&req);
    let mut lines = Vec::new();
    let head_request = req.method == Method::HEAD;
    let retryable = crate::rules::idempotent(req.method.as_str().as_bytes());
    let (mut up, res) = exchange(shared, backend, &wire, &mut lines, retryable, head_request)
        .await
        .map_err(|f| match f {
            Failed::Connect(why) => Unsent::Refused(why),
            Failed::Reset(why) => Unsent::Closed(why),
            Failed::Exchange(why) => Unsent::Failed(why),
        })?;
    let status = StatusCode::from_u16(res.status)
        .map_err(|_| Unsent::Failed(format!("status {} is not valid", res.status)))?;
    let headers = response_headers(&up.buf, &lines)?;
    up.buf.advance(res.len);
    let body = body(shared, backend, up, &res);
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// `METHOD target HTTP/1.1`, the headers, the body's length when it has one (or when the
/// client declared one), the body: one buffer, one write.
fn request_bytes(req: &Outgoing<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + req.body.len());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // As the fast path forwards: the client's own length (its body came whole with it), or
    // the body's length when there is a body or the client's was chunked (held whole, it
    // goes with its length).
    let chunked = req.headers.contains_key(TRANSFER_ENCODING);
    let keep_length = !chunked && req.headers.contains_key(CONTENT_LENGTH);
    for (name, value) in req.headers {
        if (name == CONTENT_LENGTH && !keep_length) || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !keep_length && (!req.body.is_empty() || chunked) {
        out.extend_from_slice(format!("content-length: {}\r\n", req.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
    out
}

/// The response's header lines as a `HeaderMap` of values in their own memory (HTTP/2's
/// header compression keeps what it indexed, which must not hold the connection's buffer).
fn response_headers(buf: &[u8], lines: &[Line]) -> Result<HeaderMap, Unsent> {
    let mut headers = HeaderMap::with_capacity(lines.len());
    for l in lines {
        let (Some(name), Some(value)) = (buf.get(l.name.clone()), buf.get(l.value.clone())) else {
            continue;
        };
        let name = HeaderName::from_bytes(name)
            .map_err(|_| Unsent::Failed("a response header name is not valid".into()))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| Unsent::Failed(format!("the {name} response header is not valid")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The response body: nothing, the bytes already read (the connection back to the pool at
/// once), or the rest streamed from the connection.
fn body(shared: &Arc<Shared>, backend: &Backend, up: Upstream, res: &ResponseHead) -> BoxBody {
    let left = match res.framing {
        Framing::None => Left::Length(0),
        Framing::Length(n) => Left::Length(n),
        Framing::Chunked => Left::Chunked(Dechunk::default()),
        Framing::Close => Left::Close,
    };
    let mut streamed = Streamed {
        up: Some(up),
        shared: shared.clone(),
        authority: backend.authority.clone(),
        left,
        reusable: res.reusable,
    };
    if let Left::Length(n) = streamed.left {
        let whole = streamed.up.as_ref().map_or(0, |u| u.buf.len());
        if usize::try_from(n).is_ok_and(|n| n <= whole) {
            // Already read whole by the exchange.
            let data = streamed.take_now(n as usize);
            return full(data);
        }
    }
    http_body_util::BodyExt::boxed(streamed)
}

/// How much of the body is still to come.
enum Left {
    Length(u64),
    Chunked(Dechunk),
    Close,
}

/// A response body read from its upstream connection as the client takes it.
struct Streamed {
    /// `None` once the body ended.
    up: Option<Upstream>,
    shared: Arc<Shared>,
    authority: String,
    left: Left,
    reusable: bool,
}

impl Streamed {
    /// The last `n` bytes of a length-framed body, in the buffer now; the body ends.
    fn take_now(&mut self, n: usize) -> Bytes {
        let Some(up) = self.up.as_mut() else {
            return Bytes::new();
        };
        let data = Bytes::copy_from_slice(&up.buf[..n]);
        up.buf.advance(n);
        self.end();
        data
    }

    /// The body ended cleanly: the connection goes back to the pool, unless more than the
    /// response came (out of step) or it said it would close.
    fn end(&mut self) {
        if let Some(up) = self.up.take() {
            if self.reusable && up.buf.is_empty() && !matches!(self.left, Left::Close) {
                self.shared.upstreams.put(&self.authority, up);
            }
        }
    }

    /// The next piece of the body from what is in the buffer, if any.
    fn buffered_piece(&mut self) -> Option<Result<Bytes, BoxError>> {
        let up = self.up.as_mut()?;
        if up.buf.is_empty() {
            return None;
        }
        let piece = match &mut self.left {
            Left::Length(left) => {
                let take = usize::try_from(*left).map_or(up.buf.len(), |l| l.min(up.buf.len()));
                *left -= take as u64;
                up.buf.split_to(take).freeze()
            }
            Left::Close => up.buf.split().freeze(),
            Left::Chunked(d) => match d.decode(&mut up.buf) {
                Ok(Some(data)) => data,
                Ok(None) => return None,
                Err(why) => return Some(Err(why.into())),
            },
        };
        Some(Ok(piece))
    }

    fn done(&self) -> bool {
        match &self.left {
            Left::Length(n) => *n == 0,
            Left::Chunked(d) => d.done(),
            Left::Close => false,
        }
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done() {
                self.end();
                return Poll::Ready(None);
            }
            match self.buffered_piece() {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => {
                    if self.done() {
                        self.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    self.up = None;
                    return Poll::Ready(Some(Err(e)));
                }
                // Nothing more in the buffer: maybe because the body just ended there (a
                // chunked body's last chunk and trailers), which must not wait for a read.
                None if self.done() => {
                    self.end();
                    return Poll::Ready(None);
                }
                None => {}
            }
            let Some(up) = self.up.as_mut() else {
                return Poll::Ready(None);
            };
            if up.buf.capacity() - up.buf.len() < READ_BUF {
                up.buf.reserve(READ_BUF);
            }
            match up.stream.try_read_buf(&mut up.buf) {
                Ok(0) => {
                    let close = matches!(self.left, Left::Close);
                    self.up = None;
                    if close {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err("the upstream closed mid-response".into())));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = ready!(up.stream.poll_read_ready(cx)) {
                        self.up = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Err(e) => {
                    self.up = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.up.is_none() || self.done()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.left {
            Left::Length(n) => SizeHint::with_exact(*n),
            _ => SizeHint::default(),
        }
    }
}

/// A chunked body (RFC 9112 7.1) decoded: the data of each chunk out, sizes, extensions and
/// trailers dropped.
#[derive(Debug, Default)]
struct Dechunk {
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// A chunk-size line is next.
    #[default]
    Size,
    /// This much of a chunk's data is left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to the empty one.
    Trailers,
    Done,
}

/// Longest chunk-size or trailer line taken.
const MAX_LINE: usize = 4096;

impl Dechunk {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Takes what it can from the front of `buf`: the next data, `Ok(None)` when more bytes
    /// are needed first (or the body is done), an error when it is not a chunked body.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, &'static str> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(None),
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    self.state = match left - take as u64 {
                        0 => ChunkState::DataEnd,
                        n => ChunkState::Data(n),
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("a chunk's data is not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Size | ChunkState::Trailers => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_LINE {
                            return Err("a chunk-size or trailer line is too long");
                        }
                        return Ok(None);
                    };
                    let line = buf.split_to(end + 2);
                    if self.state == ChunkState::Trailers {
                        if end == 0 {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    self.state = match httparse::parse_chunk_size(&line) {
                        Ok(httparse::Status::Complete((_, 0))) => ChunkState::Trailers,
                        Ok(httparse::Status::Complete((_, n))) => ChunkState::Data(n),
                        _ => return Err("a chunk-size line is not valid"),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), &'static str> {
        let mut d = Dechunk::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for p in pieces {
            buf.extend_from_slice(p);
            while let Some(data) = d.decode(&mut buf)? {
                out.extend_from_slice(&data);
            }
        }
        Ok((out, d.done()))
    }

    #[test]
    fn chunked_bodies_are_decoded_however_they_are_split() {
        let body: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
        assert_eq!(
            decode_all(&[body]).unwrap(),
            (b"hello world".to_vec(), true)
        );
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode_all(&bytes).unwrap(), (b"hello world".to_vec(), true));
        // Not yet ended.
        assert_eq!(
            decode_all(&[b"3\r\nabc\r\n"]).unwrap(),
            (b"abc".to_vec(), false)
        );
        for bad in [&b"zz\r\n"[..], b"3\r\nabcXY", b"-1\r\n"] {
            assert!(decode_all(&[bad]).is_err(), "{bad:?}");
        }
        assert!(decode_all(&[&[b'1'; MAX_LINE + 1]]).is_err());
    }

    #[test]
    fn the_request_is_written_whole_with_its_length() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("app"));
        headers.insert("content-length", HeaderValue::from_static("999"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let target = PathAndQuery::from_static("/a?b=1");
        let body = Bytes::from_static(b"{\"x\":1}");
        let post = request_bytes(&Outgoing {
            method: &Method::POST,
            target: &target,
            headers: &headers,
            body: &body,
        });
        assert_eq!(
            String::from_utf8(post).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: app\r\ncontent-length: 7\r\n\r\n{\"x\":1}"
        );
        let empty = Bytes::new();
        let get = request_bytes(&Outgoing {
            method: &Method::GET,
            target: &target,
            headers: &HeaderMap::new(),
            body: &empty,
        });
        assert_eq!(get, b"GET /a?b=1 HTTP/1.1\r\n\r\n");
        let mut declared = HeaderMap::new();
        declared.insert("content-length", HeaderValue::from_static("0"));
        let put = request_bytes(&Outgoing {
            method: &Method::PUT,
            target: &target,
            headers: &declared,
            body: &empty,
        });
        assert_eq!(put, b"PUT /a?b=1 HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }
}
