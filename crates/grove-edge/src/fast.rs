//! The HTTP/1.1 fast path: the common proxied request served without hyper.
//!
//! Most requests an edge sees are the simplest kind: HTTP/1.1, no body or a small one with a
//! `Content-Length`, routed to a plain-HTTP upstream. On the proxy benchmark, hyper's two
//! codecs (server and client), its header maps and the hop to each upstream connection's task
//! cost about twice nginx's user time per request. This module serves those requests on the
//! client connection's own task: the head is parsed once with `httparse` (the parser hyper
//! uses), the upstream request is written from the client's own header lines (hop-by-hop ones
//! left out, the forwarded ones added) into one buffer and sent in one write, and the
//! response head is rewritten the same way while its body is copied through as it arrives
//! (by its length, by its chunks, or up to the close). Upstream connections come from
//! [`crate::upstream::Pool`].
//!
//! Anything else is handed to hyper ([`Outcome::Handoff`]) at a request boundary, with the
//! bytes already read, and stays with hyper for the rest of the connection: HTTP/1.0 and
//! HTTP/2, a head that does not parse or is past the limits, `Transfer-Encoding`, `Expect`,
//! upgrades, two `Host` or `Content-Length` lines, bodies over the route's limit or
//! [`BUFFER_BODY`], static files, unknown routes, HTTPS upstreams, and what the edge answers
//! itself (ACME challenges, redirects to HTTPS). So every rule of the hyper path still holds;
//! this path only has to agree with it on the simple case, which the edge tests check through
//! both.

use std::borrow::Cow;
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::framing::{has_blank_line, Chunked, Step};
use crate::proxy::{
    error_html, idempotent, new_request_id, strip_port, usable_request_id, ACME_CHALLENGE,
    BUFFER_BODY,
};
use crate::rules::{self, hop_by_hop, tokens};
use crate::table::{Action, Backend, Pool, Route, Table};
use crate::upstream::Upstream;
use crate::{Conn, Shared};

/// Most header lines parsed here (a head with more goes to hyper, which applies the
/// configured limit).
const MAX_HEADERS: usize = 100;
/// Largest upstream response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Room kept for reading a client's requests.
const READ_BUF: usize = 8 * 1024;

/// How the fast path left a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Closed, or to be closed: nothing more to do.
    Closed,
    /// The bytes read so far (from the start of a request head) and the rest of the
    /// connection are hyper's.
    Handoff,
}

/// What a header line is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Passed on as it is.
    Keep,
    /// Hop-by-hop (or replaced): never passed on.
    Drop,
    XForwardedProto,
    XForwardedHost,
    XForwardedPrefix,
    /// `Strict-Transport-Security` in a response (replaced when the edge sets it).
    Hsts,
}

/// A header line, by where its name and value are in the buffer.
#[derive(Debug, Clone)]
struct Line {
    name: Range<usize>,
    value: Range<usize>,
    kind: Kind,
}

/// A request head the fast path takes; ranges are into the connection's buffer.
#[derive(Debug)]
struct Head {
    /// When the head was complete.
    since: Instant,
    len: usize,
    method: Range<usize>,
    target: Range<usize>,
    /// The target without its query.
    path: Range<usize>,
    host: Range<usize>,
    length: u64,
    close: bool,
    id: Option<Range<usize>>,
    xff: Option<Range<usize>>,
    xfp: bool,
    xfh: bool,
}

enum Parsed {
    Partial,
    /// Not for the fast path.
    Other,
    Head(Head),
}

/// Where `part` (a slice of `base`) is in `base`.
fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

/// Marks the lines that a `Connection` header names as hop-by-hop.
fn drop_named(buf: &[u8], lines: &mut [Line], named: &[Range<usize>]) {
    for l in lines.iter_mut() {
        if named
            .iter()
            .any(|n| buf[n.clone()].eq_ignore_ascii_case(&buf[l.name.clone()]))
        {
            l.kind = Kind::Drop;
        }
    }
}

/// Parses a request head from the start of `buf` into `lines`.
fn parse_request(buf: &[u8], lines: &mut Vec<Line>, max_headers: usize) -> Parsed {
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut raw[..max_headers.min(MAX_HEADERS)]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    if !target.starts_with('/') {
        return Parsed::Other;
    }
    lines.clear();
    let mut named: Vec<Range<usize>> = Vec::new();
    let mut head = Head {
        since: Instant::now(),
        len,
        method: range_in(buf, method.as_bytes()),
        target: range_in(buf, target.as_bytes()),
        path: range_in(buf, target.split('?').next().unwrap_or(target).as_bytes()),
        host: 0..0,
        length: 0,
        close: false,
        id: None,
        xff: None,
        xfp: false,
        xfh: false,
    };
    let verdict = rules::check_request(
        rules::Proto::Http11,
        req.headers.iter().map(|h| (h.name.as_bytes(), h.value)),
    );
    if verdict.is_err() {
        // hyper's side refuses it (the framing guard applies the same rules).
        return Parsed::Other;
    }
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = range_in(buf, h.value);
        let mut kind = Kind::Keep;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            head.host = value.clone();
            kind = Kind::Drop;
        } else if !rules::forwardable_name(name) {
            kind = Kind::Drop;
        } else if is("content-length") {
            let v = h.value;
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Parsed::Other;
            }
            head.length = v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'));
        } else if is("transfer-encoding") || is("expect") || is("upgrade") {
            return Parsed::Other;
        } else if is("connection") {
            kind = Kind::Drop;
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                    named.push(range_in(buf, t));
                }
            }
        } else if hop_by_hop(name) {
            kind = Kind::Drop;
        } else if is("x-forwarded-for") {
            kind = Kind::Drop;
            if head.xff.is_none() {
                head.xff = Some(value.clone());
            }
        } else if is("x-forwarded-proto") {
            kind = Kind::XForwardedProto;
            head.xfp = true;
        } else if is("x-forwarded-host") {
            kind = Kind::XForwardedHost;
            head.xfh = true;
        } else if is("x-forwarded-prefix") {
            kind = Kind::XForwardedPrefix;
        } else if is("x-request-id") {
            kind = Kind::Drop;
            if head.id.is_none() && usable_request_id(h.value) {
                head.id = Some(value.clone());
            }
        }
        lines.push(Line {
            name: range_in(buf, name),
            value,
            kind,
        });
    }
    drop_named(buf, lines, &named);
    Parsed::Head(head)
}

/// How an upstream response's body ends (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// At the close of the connection.
    Close,
}

/// An upstream response head; ranges are into the upstream connection's buffer.
#[derive(Debug)]
struct ResponseHead {
    len: usize,
    status: u16,
    reason: Range<usize>,
    framing: Framing,
    /// The connection can carry another request afterwards.
    reusable: bool,
    /// Its `Content-Length`, for the access log.
    length: Option<u64>,
}

enum ParsedResponse {
    Partial,
    /// An interim (1xx) response this long: skipped.
    Interim(usize),
    Bad(&'static str),
    Head(ResponseHead),
}

fn parse_response(buf: &[u8], lines: &mut Vec<Line>, head_request: bool) -> ParsedResponse {
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut raw);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return ParsedResponse::Partial,
        Err(_) => return ParsedResponse::Bad("a malformed response head"),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return ParsedResponse::Bad("a malformed response head");
    };
    if !(100..=999).contains(&status) {
        return ParsedResponse::Bad("a status code out of range");
    }
    if status == 101 {
        return ParsedResponse::Bad("101 Switching Protocols without an upgrade");
    }
    if (100..200).contains(&status) {
        return ParsedResponse::Interim(len);
    }
    if let Err(why) =
        rules::check_response(res.headers.iter().map(|h| (h.name.as_bytes(), h.value)))
    {
        return ParsedResponse::Bad(why);
    }
    lines.clear();
    let mut named: Vec<Range<usize>> = Vec::new();
    let (mut close, mut chunked, mut encoded) = (version == 0, false, false);
    let mut length: Option<u64> = None;
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let mut kind = Kind::Keep;
        if is("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            match (v, length) {
                (None, _) => return ParsedResponse::Bad("an invalid Content-Length"),
                (Some(a), Some(b)) if a != b => {
                    return ParsedResponse::Bad("two different Content-Lengths")
                }
                (Some(_), Some(_)) => kind = Kind::Drop,
                (Some(a), None) => length = Some(a),
            }
        } else if is("transfer-encoding") {
            kind = Kind::Drop;
            encoded = true;
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if is("connection") {
            kind = Kind::Drop;
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    if version == 0 {
                        close = false;
                    }
                } else {
                    named.push(range_in(buf, t));
                }
            }
        } else if hop_by_hop(name) || is("x-request-id") {
            kind = Kind::Drop;
        } else if is("strict-transport-security") {
            kind = Kind::Hsts;
        }
        lines.push(Line {
            name: range_in(buf, name),
            value: range_in(buf, h.value),
            kind,
        });
    }
    drop_named(buf, lines, &named);
    let framing = if head_request || status == 204 || status == 304 {
        Framing::None
    } else if encoded {
        if chunked {
            // The length, if any, is ignored (and not passed on).
            for l in lines.iter_mut() {
                if buf[l.name.clone()].eq_ignore_ascii_case(b"content-length") {
                    l.kind = Kind::Drop;
                }
            }
            length = None;
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    ParsedResponse::Head(ResponseHead {
        len,
        status,
        reason: range_in(buf, res.reason.unwrap_or_default().as_bytes()),
        framing,
        // An upstream may answer HEAD with a body anyway, which would be read as the next
        // response on a reused connection: one is never reused after HEAD.
        reusable: !close && framing != Framing::Close && !head_request,
        length,
    })
}

/// Per-connection buffers, kept between requests.
struct Scratch {
    /// The request's header lines.
    lines: Vec<Line>,
    /// The response's header lines.
    response_lines: Vec<Line>,
    /// What is written next (the upstream request, then the client's response head).
    out: Vec<u8>,
}

/// Serves requests from `io` until the connection closes or a request is for hyper. `buf`
/// holds what was read and not yet handled.
pub(crate) async fn serve<I>(
    io: &mut I,
    buf: &mut BytesMut,
    shared: &Arc<Shared>,
    conn: Conn,
    peer: &[u8],
) -> Outcome
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut scratch = Scratch {
        lines: Vec::new(),
        response_lines: Vec::new(),
        out: Vec::with_capacity(1024),
    };
    loop {
        let head = match read_head(io, buf, shared, &mut scratch.lines).await {
            Ok(h) => h,
            Err(o) => return o,
        };
        let table = shared.table();
        let Some((route, pool, backends)) = choose(buf, &head, shared, &table, conn) else {
            return Outcome::Handoff;
        };
        // The body, whole.
        let need = head.len + head.length as usize;
        while buf.len() < need {
            reserve(buf, need - buf.len());
            let read = tokio::time::timeout(shared.limits.body_read_timeout, io.read_buf(buf));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Outcome::Closed,
                Err(_) => {
                    let made = new_request_id();
                    let id = id_of(buf, &head, &made);
                    let at = started(&head, buf, shared, conn, route, id);
                    answer_page(
                        io,
                        &mut scratch.out,
                        &at,
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body did not arrive in time",
                        true,
                    )
                    .await;
                    return Outcome::Closed;
                }
            }
        }
        let keep = proxy(
            io,
            buf,
            &head,
            route,
            pool,
            backends,
            shared,
            conn,
            peer,
            &table,
            &mut scratch,
        )
        .await;
        buf.advance(need);
        if !keep || head.close {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}

fn reserve(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < want.min(READ_BUF) {
        buf.reserve(want.clamp(READ_BUF / 2, READ_BUF));
    }
}

/// Reads until `buf` starts with a whole request head the fast path takes.
async fn read_head<I>(
    io: &mut I,
    buf: &mut BytesMut,
    shared: &Shared,
    lines: &mut Vec<Line>,
) -> Result<Head, Outcome>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.limits;
    let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
    // Bytes known not to finish a head.
    let mut seen = 0;
    loop {
        if buf.len() > seen && has_blank_line(buf, seen) {
            match parse_request(buf, lines, limits.max_headers) {
                Parsed::Head(h) if h.len <= limits.max_header_bytes => return Ok(h),
                Parsed::Partial => {}
                Parsed::Head(_) | Parsed::Other => return Err(Outcome::Handoff),
            }
        }
        if buf.len() > limits.max_header_bytes {
            return Err(Outcome::Handoff);
        }
        seen = buf.len();
        reserve(buf, READ_BUF);
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Err(Outcome::Closed),
            Err(_) => {
                // A client that began a head and never finished it hears why.
                if !buf.is_empty() {
                    let id = new_request_id();
                    let mut out = Vec::new();
                    page(
                        &mut out,
                        StatusCode::REQUEST_TIMEOUT,
                        "the request head did not arrive in time",
                        std::str::from_utf8(&id).unwrap_or("-"),
                        false,
                        None,
                    );
                    let _ = io.write_all(&out).await;
                    let _ = io.shutdown().await;
                }
                return Err(Outcome::Closed);
            }
        }
    }
}

/// The route, its pool and the pool's candidate backends, or `None` when hyper should have
/// the request.
fn choose<'t>(
    buf: &[u8],
    head: &Head,
    shared: &Shared,
    table: &'t Table,
    conn: Conn,
) -> Option<(&'t Route, &'t Pool, Vec<Arc<Backend>>)> {
    let path = std::str::from_utf8(&buf[head.path.clone()]).ok()?;
    let forward = table.forwards.get(&conn.local);
    if conn.scheme == "http"
        && forward.is_none()
        && (table.redirect_to.is_some() || path.starts_with(ACME_CHALLENGE))
    {
        return None;
    }
    let route = match forward {
        Some(r) => r,
        None => table.find(&routing_host(buf, head)?, path)?,
    };
    let Action::Proxy(pool) = &route.action else {
        return None;
    };
    if head.length > route.max_body || head.length > BUFFER_BODY as u64 {
        return None;
    }
    let backends = pool.candidates(&|name: &str| shared.health_of(name));
    if backends.iter().any(|b| b.https) {
        return None;
    }
    Some((route, pool, backends))
}

/// The Host header without its port, lowercased (as routes are matched).
fn routing_host<'b>(buf: &'b [u8], head: &Head) -> Option<Cow<'b, str>> {
    let host = strip_port(std::str::from_utf8(&buf[head.host.clone()]).ok()?);
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// What the access log and error pages need about a request.
struct At<'a> {
    shared: &'a Shared,
    conn: Conn,
    since: Instant,
    host: Cow<'a, str>,
    method: &'a str,
    path: &'a str,
    id: &'a str,
    head_request: bool,
    /// The client asked to close after this response.
    close: bool,
    hsts: bool,
    stats: &'a crate::stats::RouteStats,
}

impl At<'_> {
    fn log(&self, status: u16, bytes: Option<u64>, upstream: Option<&str>) {
        let took = self.since.elapsed();
        self.stats.record(status, bytes.unwrap_or(0), took);
        self.shared.access(
            self.conn.peer,
            &self.host,
            self.method,
            self.path,
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            bytes,
            took,
            upstream,
            self.id,
        );
    }
}

/// The request's id: the client's own when it is usable, else `made`.
fn id_of<'a>(buf: &'a [u8], head: &Head, made: &'a [u8; 16]) -> &'a str {
    let id = head.id.clone().map_or(&made[..], |r| &buf[r]);
    std::str::from_utf8(id).unwrap_or("-")
}

/// What the access log and error pages need about a request.
fn started<'a>(
    head: &Head,
    buf: &'a [u8],
    shared: &'a Shared,
    conn: Conn,
    route: &'a Route,
    id: &'a str,
) -> At<'a> {
    let text = |r: &Range<usize>| std::str::from_utf8(&buf[r.clone()]).unwrap_or("-");
    At {
        shared,
        conn,
        since: head.since,
        host: routing_host(buf, head).unwrap_or_default(),
        method: text(&head.method),
        path: text(&head.path),
        id,
        head_request: &buf[head.method.clone()] == b"HEAD",
        close: head.close,
        hsts: false,
        stats: &route.stats,
    }
}

/// Writes an error page for `at`'s request and logs it.
async fn answer_page<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    at: &At<'_>,
    status: StatusCode,
    detail: &str,
    close: bool,
) -> bool
where
    I: AsyncWrite + Unpin,
{
    out.clear();
    page(
        out,
        status,
        detail,
        at.id,
        close || at.close,
        Some((at.head_request, at.hsts)),
    );
    at.log(status.as_u16(), None, None);
    io.write_all(out).await.is_ok() && io.flush().await.is_ok()
}

/// An error page as bytes on the wire. `how` is (a HEAD request, send HSTS).
fn page(
    out: &mut Vec<u8>,
    status: StatusCode,
    detail: &str,
    id: &str,
    close: bool,
    how: Option<(bool, bool)>,
) {
    let (head_request, hsts) = how.unwrap_or((false, false));
    let body = error_html(status, detail, id);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Error").as_bytes());
    out.extend_from_slice(
        b"\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\nx-request-id: ",
    );
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    let _ = write!(out, "{}", body.len());
    out.extend_from_slice(b"\r\n");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        out.extend_from_slice(b"retry-after: 1\r\n");
    }
    if hsts {
        out.extend_from_slice(HSTS_LINE);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body.as_bytes());
    }
}

const HSTS_LINE: &[u8] = b"strict-transport-security: max-age=31536000\r\n";

fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the upstream request says besides the client's request.
struct Forwarding<'a> {
    /// The route's prefix, when it is stripped.
    strip: Option<&'a str>,
    /// The client is a trusted proxy (its forwarded headers are kept).
    trusted: bool,
    /// The client's address.
    peer: &'a [u8],
    scheme: &'a str,
    id: &'a [u8],
}

/// Appends the upstream request for `head` (and its body, which follows the head in `buf`)
/// to `out`: the client's header lines without the hop-by-hop ones, then the forwarded ones
/// (as the hyper path sets them).
fn write_request(out: &mut Vec<u8>, buf: &[u8], head: &Head, lines: &[Line], how: &Forwarding<'_>) {
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    let target = &buf[head.target.clone()];
    match how.strip {
        None => out.extend_from_slice(target),
        Some(prefix) => {
            let rest = target.get(prefix.len()..).unwrap_or_default();
            if rest.first().is_none_or(|&b| b == b'?') {
                out.push(b'/');
            }
            out.extend_from_slice(rest);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = &buf[head.host.clone()];
    put_line(out, b"Host", host);
    for l in lines {
        let keep = match l.kind {
            Kind::Keep => true,
            Kind::Drop | Kind::Hsts => false,
            Kind::XForwardedProto | Kind::XForwardedHost => how.trusted,
            Kind::XForwardedPrefix => how.strip.is_none(),
        };
        if keep {
            put_line(out, &buf[l.name.clone()], &buf[l.value.clone()]);
        }
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prev) = head.xff.clone().filter(|_| how.trusted) {
        let prev = &buf[prev];
        if prev
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(how.peer);
    out.extend_from_slice(b"\r\n");
    if !(how.trusted && head.xfp) {
        put_line(out, b"X-Forwarded-Proto", how.scheme.as_bytes());
    }
    if !(how.trusted && head.xfh) {
        put_line(out, b"X-Forwarded-Host", host);
    }
    if let Some(prefix) = how.strip {
        put_line(out, b"X-Forwarded-Prefix", prefix.as_bytes());
    }
    put_line(out, b"X-Request-Id", how.id);
    out.extend_from_slice(b"\r\n");
    let body = head.len
        ..head
            .len
            .saturating_add(usize::try_from(head.length).unwrap_or(usize::MAX));
    out.extend_from_slice(buf.get(body).unwrap_or_default());
}

/// Appends the client's response head for the upstream's `res` (whose head is in `buf`).
fn write_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    res: &ResponseHead,
    lines: &[Line],
    id: &[u8],
    hsts: bool,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let _ = write!(out, "{}", res.status);
    out.push(b' ');
    out.extend_from_slice(&buf[res.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    for l in lines {
        let keep = match l.kind {
            Kind::Drop => false,
            Kind::Hsts => !hsts,
            _ => true,
        };
        if keep {
            put_line(out, &buf[l.name.clone()], &buf[l.value.clone()]);
        }
    }
    if res.framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    put_line(out, b"x-request-id", id);
    if hsts {
        out.extend_from_slice(HSTS_LINE);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// For `cargo fuzz` (`fuzz/fuzz_targets/proxy_heads.rs`): parses `data` as a request head
/// and as a response head the way the fast path does, writes what it would send on for each,
/// and checks that what it writes parses back, and that the fast path takes no head the
/// framing guard in front of hyper refuses (a bug panics).
#[doc(hidden)]
pub fn fuzz_heads(data: &[u8]) {
    let mut lines = Vec::new();
    let mut again = Vec::new();
    let mut out = Vec::new();
    let parsed = parse_request(data, &mut lines, MAX_HEADERS);
    // Differential: the fast path never takes a head that hyper's side (the framing guard)
    // refuses; both apply `rules::check_request`.
    if crate::framing::refuses(data) {
        assert!(
            !matches!(parsed, Parsed::Head(_)),
            "the fast path took a head the guard refuses"
        );
    }
    if let Parsed::Head(head) = parsed {
        // A stripped prefix always matches the path (the route was found by it).
        let target = &data[head.target.clone()];
        let under_a = target == b"/a" || target.starts_with(b"/a/") || target.starts_with(b"/a?");
        for (strip, trusted) in [(None, false), (under_a.then_some("/a"), true)] {
            let how = Forwarding {
                strip,
                trusted,
                peer: b"127.0.0.1",
                scheme: "http",
                id: b"0123456789abcdef",
            };
            out.clear();
            write_request(&mut out, data, &head, &lines, &how);
            match parse_request(&out, &mut again, MAX_HEADERS) {
                Parsed::Head(h) => {
                    assert_eq!(h.length, head.length);
                    assert_eq!(out[h.method], data[head.method.clone()]);
                }
                Parsed::Other => assert!(lines.len() + 6 > MAX_HEADERS),
                Parsed::Partial => panic!("a written request head is incomplete"),
            }
        }
    }
    for head_request in [false, true] {
        if let ParsedResponse::Head(res) = parse_response(data, &mut lines, head_request) {
            out.clear();
            write_response_head(&mut out, data, &res, &lines, b"id", true, false);
            match parse_response(&out, &mut again, head_request) {
                ParsedResponse::Head(r) => assert_eq!(r.status, res.status),
                ParsedResponse::Bad(_) => assert!(lines.len() + 3 > MAX_HEADERS),
                ParsedResponse::Partial | ParsedResponse::Interim(_) => {
                    panic!("a written response head does not parse back")
                }
            }
        }
    }
}

/// Proxies one request whose head and body are in `buf`; says whether the client connection
/// can carry another.
#[allow(clippy::too_many_arguments)]
async fn proxy<I>(
    io: &mut I,
    buf: &[u8],
    head: &Head,
    route: &Route,
    pool: &Pool,
    mut backends: Vec<Arc<Backend>>,
    shared: &Shared,
    conn: Conn,
    peer: &[u8],
    table: &Table,
    scratch: &mut Scratch,
) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let made = new_request_id();
    let mut at = started(head, buf, shared, conn, route, id_of(buf, head, &made));
    at.hsts = table.hsts && conn.scheme == "https";
    // While no unit is ready (the only one restarts), the request waits up to the route's
    // `hold` for one.
    let deadline = tokio::time::Instant::now() + route.hold;
    if backends.is_empty() {
        backends = shared
            .wait_ready(conn.local, &at.host, at.path, deadline)
            .await;
    }
    if backends.is_empty() {
        let detail = starting(&pool.service);
        return answer_page(
            io,
            &mut scratch.out,
            &at,
            StatusCode::SERVICE_UNAVAILABLE,
            &detail,
            false,
        )
        .await;
    }
    // The upstream request.
    let strip = (route.strip_prefix && route.prefix != "/").then_some(route.prefix.as_str());
    let how = Forwarding {
        strip,
        trusted: table.trusted_proxies.contains(&conn.peer.ip()),
        peer,
        scheme: conn.scheme,
        id: at.id.as_bytes(),
    };
    scratch.out.clear();
    write_request(&mut scratch.out, buf, head, &scratch.lines, &how);

    let limits = &shared.limits;
    let method = &buf[head.method.clone()];
    let retryable = idempotent(method);
    let mut last_err = String::new();
    loop {
        // A target that refused the connection got nothing, so the next one may have the
        // request whatever its method; one that died before answering only an idempotent one.
        let attempts = backends.len().min(3);
        let mut unit_refused = false;
        for backend in backends.iter().take(attempts) {
            backend.active.fetch_add(1, Ordering::Relaxed);
            let sent = tokio::time::timeout(
                limits.upstream_response,
                exchange(
                    shared,
                    backend,
                    &scratch.out,
                    &mut scratch.response_lines,
                    retryable,
                    at.head_request,
                ),
            )
            .await;
            backend.active.fetch_sub(1, Ordering::Relaxed);
            let (up, res) = match sent {
                Err(_) => {
                    let detail = format!(
                        "{} did not answer within {} s",
                        backend.name,
                        limits.upstream_response.as_secs()
                    );
                    let page = StatusCode::GATEWAY_TIMEOUT;
                    return answer_page(io, &mut scratch.out, &at, page, &detail, false).await;
                }
                Ok(Err(Failed::Connect(why))) => {
                    backend.mark_down();
                    last_err = format!("cannot connect to {} ({why})", backend.name);
                    unit_refused |= backend.unit;
                    continue;
                }
                // An idempotent request to a target that died before answering goes again.
                Ok(Err(Failed::Reset(why))) if retryable => {
                    backend.mark_down();
                    last_err = format!("{} closed the connection ({why})", backend.name);
                    unit_refused |= backend.unit;
                    continue;
                }
                Ok(Err(Failed::Exchange(why) | Failed::Reset(why))) => {
                    let detail = format!("{} failed: {why}", backend.name);
                    let page = StatusCode::BAD_GATEWAY;
                    return answer_page(io, &mut scratch.out, &at, page, &detail, false).await;
                }
                Ok(Ok(x)) => x,
            };
            return respond(io, up, res, backend, &at, scratch).await;
        }
        // Every unit tried refused the connection (nothing was sent, so any method may go
        // again): one of the stack's own units is starting or restarting; look again within
        // the hold time. A remote upstream's refusal is answered at once.
        if !unit_refused || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + HOLD_POLL)).await;
        backends = shared
            .wait_ready(conn.local, &at.host, at.path, deadline)
            .await;
        if backends.is_empty() {
            let detail = starting(&pool.service);
            let page = StatusCode::SERVICE_UNAVAILABLE;
            return answer_page(io, &mut scratch.out, &at, page, &detail, false).await;
        }
    }
    let detail = format!("no unit of {} could be reached: {last_err}", pool.service);
    answer_page(
        io,
        &mut scratch.out,
        &at,
        StatusCode::BAD_GATEWAY,
        &detail,
        false,
    )
    .await
}

/// Response bodies up to this size are read whole before the response is passed on.
const SMALL_BODY: usize = 64 * 1024;

/// How often a held request tries a unit that refused its connection again.
const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The 503 page's text when a route has no ready unit.
pub(crate) fn starting(service: &str) -> String {
    format!("{service} is starting: no unit is ready to take requests yet; try again shortly")
}

/// Why an exchange with an upstream gave no response.
enum Failed {
    /// No connection (nothing was sent: safe to try another backend).
    Connect(String),
    /// The connection ended before any byte of a response (a unit killed mid-request).
    Reset(String),
    Exchange(String),
}

/// Sends `request` to `backend` and reads the response head (interim responses skipped). A
/// pooled connection the upstream closed without answering is replaced by a new one when
/// the request can be sent twice (idempotent, or it never left).
async fn exchange(
    shared: &Shared,
    backend: &Backend,
    request: &[u8],
    lines: &mut Vec<Line>,
    retryable: bool,
    head_request: bool,
) -> Result<(Upstream, ResponseHead), Failed> {
    let pool = &shared.upstreams;
    loop {
        let (mut up, pooled) = match pool.take(&backend.authority) {
            Some(c) => (c, true),
            None => (
                pool.connect(&backend.authority)
                    .await
                    .map_err(Failed::Connect)?,
                false,
            ),
        };
        if let Err(e) = up.stream.write_all(request).await {
            if pooled {
                continue;
            }
            return Err(Failed::Reset(e.to_string()));
        }
        match read_response_head(&mut up, lines, head_request).await {
            Ok(res) => {
                // A small body is read whole before anything reaches the client, so an
                // upstream that dies half-way is a failed exchange (tried again when it may
                // be), not a response cut short.
                if let Framing::Length(n) = res.framing {
                    let want = usize::try_from(n).unwrap_or(usize::MAX);
                    if want <= SMALL_BODY {
                        let whole = res.len + want;
                        while up.buf.len() < whole {
                            let missing = whole - up.buf.len();
                            reserve(&mut up.buf, missing);
                            match up.stream.read_buf(&mut up.buf).await {
                                Ok(n) if n > 0 => {}
                                Ok(_) => return Err(Failed::Reset("closed mid-response".into())),
                                Err(e) => return Err(Failed::Reset(e.to_string())),
                            }
                        }
                    }
                }
                return Ok((up, res));
            }
            Err(Unanswered::Closed(_)) if pooled && retryable => continue,
            Err(Unanswered::Closed(why)) => return Err(Failed::Reset(why)),
            Err(Unanswered::Bad(why)) => return Err(Failed::Exchange(why)),
        }
    }
}

enum Unanswered {
    /// The connection ended before a response began.
    Closed(String),
    Bad(String),
}

async fn read_response_head(
    up: &mut Upstream,
    lines: &mut Vec<Line>,
    head_request: bool,
) -> Result<ResponseHead, Unanswered> {
    let mut seen = 0;
    loop {
        if up.buf.len() > seen && has_blank_line(&up.buf, seen) {
            match parse_response(&up.buf, lines, head_request) {
                ParsedResponse::Head(h) => return Ok(h),
                ParsedResponse::Interim(len) => {
                    up.buf.advance(len);
                    seen = 0;
                    continue;
                }
                ParsedResponse::Bad(why) => return Err(Unanswered::Bad(why.to_string())),
                ParsedResponse::Partial => {}
            }
        }
        if up.buf.len() > MAX_RESPONSE_HEAD {
            return Err(Unanswered::Bad("a response head over 64 KiB".into()));
        }
        seen = up.buf.len();
        reserve(&mut up.buf, READ_BUF);
        match up.stream.read_buf(&mut up.buf).await {
            Ok(0) if up.buf.is_empty() => {
                return Err(Unanswered::Closed(
                    "the connection closed before a response".into(),
                ))
            }
            Ok(0) => return Err(Unanswered::Bad("the response head was cut short".into())),
            Ok(_) => {}
            Err(e) if up.buf.is_empty() => return Err(Unanswered::Closed(e.to_string())),
            Err(e) => return Err(Unanswered::Bad(e.to_string())),
        }
    }
}

/// Writes the response to the client as the upstream sends it; says whether the client
/// connection can carry another request. The upstream connection goes back to the pool when
/// its response ended cleanly.
async fn respond<I>(
    io: &mut I,
    mut up: Upstream,
    res: ResponseHead,
    backend: &Backend,
    at: &At<'_>,
    scratch: &mut Scratch,
) -> bool
where
    I: AsyncWrite + Unpin,
{
    let close_client = res.framing == Framing::Close || at.close;
    let out = &mut scratch.out;
    out.clear();
    write_response_head(
        out,
        &up.buf,
        &res,
        &scratch.response_lines,
        at.id.as_bytes(),
        at.hsts,
        close_client,
    );
    at.log(res.status, res.length, Some(&backend.name));

    // The body: what came with the head, then the rest as it arrives.
    up.buf.advance(res.len);
    let mut chunks = Chunked::default();
    let mut left = match res.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut first = true;
    let mut reusable = res.reusable;
    let done = loop {
        let data = &up.buf[..];
        let (take, done) = match res.framing {
            Framing::None => (0, true),
            Framing::Length(_) => {
                let take = usize::try_from(left).map_or(data.len(), |l| l.min(data.len()));
                left -= take as u64;
                (take, left == 0)
            }
            Framing::Chunked => match chunks.feed(data) {
                Step::More => (data.len(), false),
                Step::Done(n) => (n, true),
                // Not a chunked body after all: the client connection is closed, so it
                // cannot take what came so far for a whole response.
                Step::Bad => break false,
            },
            Framing::Close => (data.len(), false),
        };
        if done && take < data.len() {
            // More than the response: the connection is out of step.
            reusable = false;
        }
        let wrote = if first {
            out.extend_from_slice(&data[..take]);
            io.write_all(out).await
        } else {
            io.write_all(&data[..take]).await
        };
        first = false;
        // What is written goes now (a no-op on plain TCP; TLS may hold records back).
        if wrote.is_err() || io.flush().await.is_err() {
            return false;
        }
        if done {
            break true;
        }
        up.buf.clear();
        reserve(&mut up.buf, READ_BUF);
        match up.stream.read_buf(&mut up.buf).await {
            Ok(n) if n > 0 => {}
            // The end of a close-delimited body; for any other framing, cut short.
            _ => break res.framing == Framing::Close,
        }
    };
    if done && reusable {
        at.shared.upstreams.put(&backend.authority, up);
    }
    done && !close_client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Option<(Head, Vec<Line>)> {
        let mut lines = Vec::new();
        match parse_request(raw.as_bytes(), &mut lines, 100) {
            Parsed::Head(h) => Some((h, lines)),
            _ => None,
        }
    }

    #[test]
    fn simple_requests_are_taken_and_the_rest_left_to_hyper() {
        let (h, lines) = request(
            "GET /a?b HTTP/1.1\r\nHost: Example.org:80\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nX-Request-Id: abc\r\n\r\n",
        )
        .unwrap();
        assert!(!h.close);
        assert_eq!(h.length, 0);
        let raw = "GET /a?b HTTP/1.1\r\nHost: Example.org:80\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nX-Request-Id: abc\r\n\r\n";
        let kept: Vec<&str> = lines
            .iter()
            .filter(|l| l.kind == Kind::Keep)
            .map(|l| &raw[l.name.clone()])
            .collect();
        assert_eq!(kept, ["X-Kept"]);
        assert_eq!(&raw[h.id.clone().unwrap()], "abc");
        assert_eq!(&raw[h.target.clone()], "/a?b");
        assert_eq!(
            routing_host(raw.as_bytes(), &h).as_deref(),
            Some("example.org")
        );
        let (h, _) = request(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert!(h.close);
        assert_eq!(h.length, 12);
        for other in [
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
            // Issue 20: a Connection naming the framing is hyper's side's to refuse.
            "POST /attacker HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: content-length\r\nContent-Length: 60\r\n\r\n",
        ] {
            assert!(request(other).is_none(), "{other:?}");
        }
        let mut lines = Vec::new();
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", &mut lines, 100),
            Parsed::Partial
        ));
        // More header lines than the limit: hyper's (it answers 431).
        assert!(matches!(
            parse_request(
                b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n",
                &mut lines,
                2
            ),
            Parsed::Other
        ));
    }

    fn response(raw: &str, head_request: bool) -> Result<ResponseHead, String> {
        let mut lines = Vec::new();
        match parse_response(raw.as_bytes(), &mut lines, head_request) {
            ParsedResponse::Head(h) => Ok(h),
            ParsedResponse::Interim(n) => Err(format!("interim {n}")),
            ParsedResponse::Bad(why) => Err(why.to_string()),
            ParsedResponse::Partial => Err("partial".into()),
        }
    }

    #[test]
    fn response_bodies_end_where_rfc_9112_says() {
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap();
        assert_eq!(
            (r.framing, r.reusable, r.length),
            (Framing::Length(5), true, Some(5))
        );
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::None, false));
        let r = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((r.framing, r.length), (Framing::Chunked, None));
        let r = response("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
        assert_eq!(r.framing, Framing::None);
        let r = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::Close, false));
        let r = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!r.reusable);
        let r = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!r.reusable);
        let r = response(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(r.reusable);
        assert_eq!(
            response("HTTP/1.1 100 Continue\r\n\r\n", false).unwrap_err(),
            "interim 25"
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
            "HTTP/1.0 077 Low\r\n\r\n",
        ] {
            assert!(response(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_upstream_request_is_the_clients_without_hops_with_forwarded_headers() {
        let raw = format!(
            "POST /TR/orders?x=1 HTTP/1.1\r\nHost: shop.example.org\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Request-Id: {}\r\nUser-Agent: t\r\nContent-Length: 2\r\n\r\nhiGET /next",
            "a".repeat(201)
        );
        let (head, lines) = request(&raw).unwrap();
        assert_eq!(head.id, None, "an id over 200 characters is replaced");
        let mut how = Forwarding {
            strip: Some("/TR"),
            trusted: false,
            peer: b"127.0.0.9",
            scheme: "http",
            id: b"id",
        };
        let mut out = Vec::new();
        write_request(&mut out, raw.as_bytes(), &head, &lines, &how);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /orders?x=1 HTTP/1.1\r\nHost: shop.example.org\r\nUser-Agent: t\r\nContent-Length: 2\r\nX-Forwarded-For: 127.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example.org\r\nX-Forwarded-Prefix: /TR\r\nX-Request-Id: id\r\n\r\nhi"
        );
        // From a trusted proxy its forwarded headers stay (the address is appended).
        how.trusted = true;
        how.strip = None;
        let mut out = Vec::new();
        write_request(&mut out, raw.as_bytes(), &head, &lines, &how);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /TR/orders?x=1 HTTP/1.1\r\nHost: shop.example.org\r\nX-Forwarded-Proto: https\r\nUser-Agent: t\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nX-Forwarded-Host: shop.example.org\r\nX-Request-Id: id\r\n\r\nhi"
        );
        // A stripped prefix that is the whole path leaves "/".
        let (head, lines) = request("GET /TR?q HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        how.strip = Some("/TR");
        let mut out = Vec::new();
        write_request(
            &mut out,
            b"GET /TR?q HTTP/1.1\r\nHost: x\r\n\r\n",
            &head,
            &lines,
            &how,
        );
        assert!(out.starts_with(b"GET /?q HTTP/1.1\r\n"));
        fuzz_heads(raw.as_bytes());
    }

    #[test]
    fn the_response_head_loses_hops_and_gets_the_request_id() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: up\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 2\r\n\r\nok";
        let mut lines = Vec::new();
        let ParsedResponse::Head(res) = parse_response(raw.as_bytes(), &mut lines, false) else {
            panic!("a response head");
        };
        let mut out = Vec::new();
        write_response_head(&mut out, raw.as_bytes(), &res, &lines, b"id", true, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-request-id: id\r\nstrict-transport-security: max-age=31536000\r\n\r\n"
        );
        let mut out = Vec::new();
        write_response_head(&mut out, raw.as_bytes(), &res, &lines, b"id", false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Strict-Transport-Security: max-age=1\r\n"),
            "{text}"
        );
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
        fuzz_heads(raw.as_bytes());
    }

    #[test]
    fn pages_are_whole_responses() {
        let mut out = Vec::new();
        page(
            &mut out,
            StatusCode::BAD_GATEWAY,
            "a <b>",
            "id1",
            true,
            None,
        );
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            body.contains("a &lt;b&gt;") && body.contains("id1"),
            "{body}"
        );
        let mut out = Vec::new();
        page(
            &mut out,
            StatusCode::BAD_GATEWAY,
            "x",
            "id1",
            false,
            Some((true, true)),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n") && text.contains("strict-transport-security"));
    }
}
