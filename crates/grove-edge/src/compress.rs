//! Compression of answers (a route's `compress`, Caddy's `encode`, nginx's `gzip`): the coding
//! is chosen from the client's `Accept-Encoding` (q-values, then the route's order), only for
//! compressible types and answers of at least `min_length`, never twice (an answer that has a
//! `Content-Encoding` already goes as it is), with `Vary: Accept-Encoding`, a weak ETag and no
//! `Accept-Ranges` on what is encoded (ranges are of the identity body). Bodies are encoded as
//! they stream: what the upstream has sent is flushed to the client whenever it pauses.
//!
//! The decisions ([`negotiate`], [`compressible`], [`plan`]) are pure; [`Encoded`] is the body.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use grove_plan::{Compress, Encoding};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::proxy::{BoxBody, BoxError};

/// Encoded output is sent once this much has gathered, even while the upstream keeps sending.
const CHUNK: usize = 16 * 1024;

/// The coding for a client that sent `accept` (its `Accept-Encoding`), among `offered`: the
/// one with the highest q-value, ties going to the earlier of `offered`; `*` stands for any
/// coding the header does not name; q=0 refuses. `None`: the answer goes as it is.
pub fn negotiate(accept: &str, offered: &[Encoding]) -> Option<Encoding> {
    let mut named: Vec<(&str, u16)> = Vec::new();
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| qvalue(v.trim()))
            })
            .unwrap_or(Some(1000));
        // A malformed weight refuses that coding (as if q=0): never guess.
        named.push((name, q.unwrap_or(0)));
    }
    let weight = |e: Encoding| {
        let exact = named
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(e.token()))
            .map(|(_, q)| *q);
        exact.or_else(|| named.iter().find(|(n, _)| *n == "*").map(|(_, q)| *q))
    };
    let mut best: Option<(Encoding, u16)> = None;
    for e in offered {
        match weight(*e) {
            Some(q) if q > 0 && best.is_none_or(|(_, b)| q > b) => best = Some((*e, q)),
            _ => {}
        }
    }
    best.map(|(e, _)| e)
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` when it is not one.
fn qvalue(v: &str) -> Option<u16> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether answers of this `Content-Type` are worth compressing (Caddy's default list): text,
/// JSON, JavaScript, XML feeds and XHTML, WebAssembly and SVG. Images, video, archives and
/// fonts in compressed formats are not.
pub fn compressible(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-ndjson"
                | "image/svg+xml"
        )
}

/// What to do with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a candidate at all (an answer without a body, already encoded, not compressible):
    /// it goes untouched.
    Untouched,
    /// A candidate that goes as it is (the client accepts no offered coding, or it is too
    /// small): it still says `Vary: Accept-Encoding`, since another client would get it encoded.
    Vary,
    /// Encode it with this coding.
    Encode(Encoding),
}

/// The verdict for an answer with `status` and `headers` to a `method` request whose
/// `Accept-Encoding` was `accept`.
pub fn plan(
    cfg: &Compress,
    method: &Method,
    accept: Option<&str>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Verdict {
    let bodiless = status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
        );
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let kind_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible);
    let no_transform = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"));
    if bodiless
        || encoded
        || !kind_ok
        || no_transform
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return Verdict::Untouched;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n < cfg.min_length) {
        return Verdict::Vary;
    }
    match accept.and_then(|a| negotiate(a, &cfg.encodings)) {
        // A HEAD answer says what a GET would get, without a body to encode.
        Some(e) if method != Method::HEAD || length.is_some() => Verdict::Encode(e),
        _ => Verdict::Vary,
    }
}

/// `res` compressed as `cfg` says for a `method` request that accepted `accept`.
pub fn encode(
    cfg: &Compress,
    method: &Method,
    accept: Option<&str>,
    res: Response<BoxBody>,
) -> Response<BoxBody> {
    let verdict = plan(cfg, method, accept, res.status(), res.headers());
    if verdict == Verdict::Untouched {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    add_vary(&mut parts.headers);
    let Verdict::Encode(encoding) = verdict else {
        return Response::from_parts(parts, body);
    };
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    // The encoded body is another representation: its validator is weak.
    if let Some(tag) = h.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if !tag.starts_with("W/") {
            if let Ok(v) = HeaderValue::from_str(&format!("W/{tag}")) {
                h.insert(header::ETAG, v);
            }
        }
    }
    if method == Method::HEAD {
        return Response::from_parts(parts, body);
    }
    Response::from_parts(parts, Encoded::new(body, encoding).boxed())
}

/// `Vary: Accept-Encoding`, added to what the answer varies on already.
fn add_vary(h: &mut HeaderMap) {
    let has = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !has {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// One coding's streaming encoder, writing into a buffer that is taken as it fills.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// The levels: gzip 5 and brotli 4 (Caddy's and a common nginx choice: most of the size
/// saving at a fraction of the best level's CPU), zstd 3 (its default).
const GZIP_LEVEL: u32 = 5;
const ZSTD_LEVEL: i32 = 3;
const BROTLI_QUALITY: u32 = 4;

impl Encoder {
    fn new(e: Encoding) -> std::io::Result<Encoder> {
        Ok(match e {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?)
            }
            Encoding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                22,
            ))),
        })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.write_all(data),
            Encoder::Zstd(w) => w.write_all(data),
            Encoder::Br(w) => w.write_all(data),
        }
    }

    /// Everything written so far, made decodable by the client now.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
            Encoder::Br(w) => w.flush(),
        }
    }

    /// The output gathered so far.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(match self {
            Encoder::Gzip(w) => w.get_mut(),
            Encoder::Zstd(w) => w.get_mut(),
            Encoder::Br(w) => w.get_mut(),
        })
    }

    fn buffered(&mut self) -> usize {
        match self {
            Encoder::Gzip(w) => w.get_ref().len(),
            Encoder::Zstd(w) => w.get_ref().len(),
            Encoder::Br(w) => w.get_ref().len(),
        }
    }

    /// The rest of the output, with the coding's end.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
            Encoder::Br(mut w) => {
                w.flush()?;
                Ok(w.into_inner())
            }
        }
    }
}

/// A body encoded as it streams.
pub struct Encoded {
    inner: BoxBody,
    encoding: Encoding,
    /// `None` once finished (or before the first byte, when it could not be made).
    encoder: Option<Encoder>,
    /// Written since the last flush.
    unflushed: bool,
    /// The upstream's trailers, sent after the coding's end.
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl Encoded {
    pub fn new(inner: BoxBody, encoding: Encoding) -> Encoded {
        Encoded {
            inner,
            encoding,
            encoder: None,
            unflushed: false,
            trailers: None,
            ended: false,
        }
    }

    fn encoder(&mut self) -> Result<&mut Encoder, BoxError> {
        if self.encoder.is_none() {
            self.encoder = Some(Encoder::new(self.encoding)?);
        }
        self.encoder
            .as_mut()
            .ok_or_else(|| "the encoder is gone".into())
    }

    /// The coding's end: what is left of the output.
    fn finish(&mut self) -> Result<Vec<u8>, BoxError> {
        self.encoder()?;
        self.ended = true;
        match self.encoder.take() {
            Some(e) => Ok(e.finish()?),
            None => Ok(Vec::new()),
        }
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

fn data(out: Vec<u8>) -> Polled {
    Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
}

impl Body for Encoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(bytes) => {
                        this.unflushed = true;
                        let enc = this.encoder()?;
                        enc.write(&bytes)?;
                        if enc.buffered() >= CHUNK {
                            return data(enc.take());
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                            let out = this.finish()?;
                            return data(out);
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    let out = this.finish()?;
                    return data(out);
                }
                Poll::Pending => {
                    if this.unflushed {
                        this.unflushed = false;
                        let enc = this.encoder()?;
                        enc.flush()?;
                        let out = enc.take();
                        if !out.is_empty() {
                            return data(out);
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Br, Encoding::Gzip];

    #[test]
    fn the_clients_weights_then_the_routes_order_choose() {
        let offered = [Encoding::Zstd, Encoding::Gzip];
        assert_eq!(
            negotiate("gzip, deflate, br, zstd", &offered),
            Some(Encoding::Zstd)
        );
        assert_eq!(negotiate("gzip", &offered), Some(Encoding::Gzip));
        assert_eq!(negotiate("br", &offered), None);
        assert_eq!(
            negotiate("zstd;q=0.5, gzip", &offered),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            negotiate("zstd;q=0, gzip;q=0.1", &offered),
            Some(Encoding::Gzip)
        );
        assert_eq!(negotiate("GZIP;Q=1.0", &offered), Some(Encoding::Gzip));
        assert_eq!(negotiate("*", &offered), Some(Encoding::Zstd));
        assert_eq!(negotiate("*;q=0, gzip", &offered), Some(Encoding::Gzip));
        assert_eq!(negotiate("identity", &offered), None);
        assert_eq!(negotiate("", &offered), None);
        // A weight that is not one refuses, never guesses.
        assert_eq!(negotiate("zstd;q=2, gzip;q=abc", &offered), None);
        assert_eq!(negotiate("br;q=0.9, gzip;q=0.8", &ALL), Some(Encoding::Br));
    }

    #[test]
    fn only_text_like_types_are_compressed() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "application/problem+json",
            "image/svg+xml",
            "application/javascript",
            "TEXT/CSS",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "application/zip",
            "video/mp4",
            "font/woff2",
            "",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn what_is_encoded_already_small_partial_or_no_transform_is_not() {
        let cfg = Compress {
            encodings: vec![Encoding::Gzip],
            min_length: 512,
        };
        let v = |status: u16, h: &[(&str, &str)]| {
            plan(
                &cfg,
                &Method::GET,
                Some("gzip"),
                StatusCode::from_u16(status).unwrap(),
                &headers(h),
            )
        };
        let html = ("content-type", "text/html");
        assert_eq!(v(200, &[html]), Verdict::Encode(Encoding::Gzip));
        assert_eq!(v(404, &[html]), Verdict::Encode(Encoding::Gzip));
        assert_eq!(v(200, &[html, ("content-length", "100")]), Verdict::Vary);
        assert_eq!(
            v(200, &[html, ("content-encoding", "br")]),
            Verdict::Untouched
        );
        assert_eq!(v(206, &[html]), Verdict::Untouched);
        assert_eq!(v(304, &[html]), Verdict::Untouched);
        assert_eq!(
            v(200, &[html, ("cache-control", "public, no-transform")]),
            Verdict::Untouched
        );
        assert_eq!(v(200, &[("content-type", "image/png")]), Verdict::Untouched);
        let none = plan(
            &cfg,
            &Method::GET,
            Some("br"),
            StatusCode::OK,
            &headers(&[html]),
        );
        assert_eq!(none, Verdict::Vary);
    }

    fn decode(e: Encoding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match e {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
            Encoding::Br => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        }
        out
    }

    #[tokio::test]
    async fn every_coding_round_trips_and_trailers_follow() {
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for e in ALL {
            let (tx, body) = channel();
            let chunks: Vec<Vec<u8>> = text.chunks(7000).map(|c| c.to_vec()).collect();
            tokio::spawn(async move {
                for c in chunks {
                    let _ = tx.send(Ok(Frame::data(Bytes::from(c)))).await;
                }
                let _ = tx
                    .send(Ok(Frame::trailers(headers(&[("x-sum", "1")]))))
                    .await;
            });
            let collected = Encoded::new(body, e).collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            let bytes = collected.to_bytes();
            assert!(bytes.len() < text.len() / 3, "{e:?}: {}", bytes.len());
            assert_eq!(decode(e, &bytes), text, "{e:?}");
            assert_eq!(trailers.unwrap()["x-sum"], "1", "{e:?}");
        }
    }

    #[tokio::test]
    async fn a_paused_stream_is_flushed_so_the_client_reads_what_came() {
        for e in ALL {
            let (tx, body) = channel();
            let mut enc = Encoded::new(body, e);
            tx.send(Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))))
                .await
                .unwrap();
            // The upstream pauses: what it sent comes out, decodable, before it goes on.
            let first = tokio::time::timeout(std::time::Duration::from_secs(5), enc.frame())
                .await
                .expect("flushed while the upstream waits")
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap();
            let mut got = first.to_vec();
            drop(tx);
            while let Some(f) = enc.frame().await {
                got.extend_from_slice(&f.unwrap().into_data().unwrap());
            }
            assert_eq!(decode(e, &got), b"data: first\n\n", "{e:?}");
        }
    }

    /// A body fed frame by frame from a channel.
    struct Channel(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
            self.0.poll_recv(cx)
        }
    }

    fn channel() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        BoxBody,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        (tx, Channel(rx).boxed())
    }
}
