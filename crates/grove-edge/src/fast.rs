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
//! upgrades, two `Host` or `Content-Length` lines, bodies over the route's `max_body` or
//! `buffer_body`, static files, unknown routes, HTTPS upstreams, and what the edge answers
//! itself (ACME challenges, redirects to HTTPS). So every rule of the hyper path still holds;
//! this path only has to agree with it on the simple case, which the edge tests check through
//! both.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::framing::{has_blank_line, Chunked, Step};
use crate::pages::{new_request_id, page, starting, timeout_page, usable_request_id};
use crate::proxy::{strip_port, ACME_CHALLENGE};
use crate::rules::{self, hop_by_hop, idempotent, tokens};
use crate::table::{Action, Backend, Pool, Route, Table};
use crate::upstream::Upstream;
use crate::{Conn, Shared};

use forward::{write_request, Forwarding};
pub use fuzz::fuzz_heads;
use quiet::Quiet;
pub(crate) use quiet::Readable;
use request::{parse_request, Head, Kind, Line, Parsed};
use response::{parse_response, write_response_head, Framing, ParsedResponse, ResponseHead};

/// Most header lines parsed here (a head with more goes to hyper, which applies the
/// configured limit).
const MAX_HEADERS: usize = 100;
/// How long a connection of a draining edge may stay idle before it is closed.
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

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
    I: AsyncRead + AsyncWrite + Readable + Unpin,
{
    let mut scratch = Scratch {
        lines: Vec::new(),
        response_lines: Vec::new(),
        out: Vec::with_capacity(1024),
    };
    let mut first = true;
    loop {
        let head = match read_head(io, buf, shared, &mut scratch, first).await {
            Ok(h) => h,
            Err(o) => return o,
        };
        first = false;
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
                    let at = started(&head, buf, &scratch.lines, shared, conn, route, id);
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
        // Boxed, so the connection's task is only as large as its wait for the next
        // request: what a request needs while it is proxied is allocated for that time.
        let keep = Box::pin(proxy(
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
        ))
        .await;
        buf.advance(need);
        // Only a response that said `Connection: close` ends the connection here (one begun
        // before the edge started draining did not: the next request hears it).
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

/// Reads until `buf` starts with a whole request head the fast path takes. The head must be
/// whole within `client_header_timeout` of its first byte (else 408); between requests a
/// keep-alive connection may wait `keepalive_timeout` for that byte and is then closed
/// without an answer, while the `first` request of a connection that sends nothing gets 408.
async fn read_head<I>(
    io: &mut I,
    buf: &mut BytesMut,
    shared: &Shared,
    scratch: &mut Scratch,
    first: bool,
) -> Result<Head, Outcome>
where
    I: AsyncRead + AsyncWrite + Readable + Unpin,
{
    let limits = &shared.limits;
    let mut idle = buf.is_empty() && !first;
    let mut deadline = tokio::time::Instant::now()
        + if idle {
            limits.keepalive_timeout
        } else {
            limits.header_read_timeout
        };
    // Bytes known not to finish a head.
    let mut seen = 0;
    loop {
        if buf.len() > seen && has_blank_line(buf, seen) {
            match parse_request(buf, &mut scratch.lines, limits.max_headers) {
                Parsed::Head(h) if h.len <= limits.max_header_bytes => return Ok(h),
                Parsed::Partial => {}
                Parsed::Head(_) | Parsed::Other => return Err(Outcome::Handoff),
            }
        }
        if buf.len() > limits.max_header_bytes {
            return Err(Outcome::Handoff);
        }
        seen = buf.len();
        if idle && buf.is_empty() {
            // Between requests: no buffer is held while nothing comes (see `quiet`).
            match quiet::read_or_release(io, buf, READ_BUF).await {
                Quiet::Read(0) => return Err(Outcome::Closed),
                Quiet::Read(_) => {
                    idle = false;
                    deadline = tokio::time::Instant::now() + limits.header_read_timeout;
                    continue;
                }
                Quiet::Released => {
                    scratch.out = Vec::new();
                }
            }
            let ready = tokio::select! {
                r = tokio::time::timeout_at(deadline, quiet::readable(io)) => r,
                _ = async {
                    shared.drained().await;
                    tokio::time::sleep(DRAIN_IDLE).await;
                } => return Err(Outcome::Closed),
            };
            match ready {
                // Maybe nothing after all: the next read says.
                Ok(Ok(())) => continue,
                // Idle past keepalive_timeout: closed without an answer.
                Ok(Err(_)) | Err(_) => return Err(Outcome::Closed),
            }
        }
        reserve(buf, READ_BUF);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read_buf(buf)) => r,
            // A draining edge answers the next request of an open connection (saying
            // `Connection: close`), so a client that reuses it loses nothing; a connection
            // idle for a second more is closed.
            _ = async {
                shared.drained().await;
                tokio::time::sleep(DRAIN_IDLE).await;
            }, if idle => return Err(Outcome::Closed),
        };
        match read {
            Ok(Ok(n)) if n > 0 => {
                if idle {
                    // The next request began: its head has the header clock.
                    idle = false;
                    deadline = tokio::time::Instant::now() + limits.header_read_timeout;
                }
            }
            Ok(_) => return Err(Outcome::Closed),
            Err(_) => {
                // A client that began a head and never finished it, or opened a connection
                // and sent nothing, hears why; an idle keep-alive connection just closes.
                if !idle {
                    let out = timeout_page("the request head did not arrive in time", false);
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
        None => {
            let host = routing_host(buf, head)?;
            if table.canonical_for(&host).is_some() {
                return None;
            }
            table.find(&host, path)?
        }
    };
    let Action::Proxy(pool) = &route.action else {
        return None;
    };
    // Header rules, authentication, compression, splits and mirrors are the hyper path's.
    if route.headers.is_some()
        || route.auth.is_some()
        || route.limit.is_some()
        || route.forward.is_some()
        || route.compress.is_some()
        || route.split.is_some()
        || route.mirror.is_some()
        || shared.maintenance().is_some()
    {
        return None;
    }
    if head.length > route.max_body || head.length > route.buffer_body {
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
    /// `Referer` and `User-Agent`, when the access log shows them.
    referer: &'a str,
    agent: &'a str,
}

impl At<'_> {
    fn log(&self, status: u16, bytes: Option<u64>, upstream: Option<&str>) {
        let took = self.since.elapsed();
        self.stats.record(status, bytes.unwrap_or(0), took);
        self.shared.access(&crate::access::Entry {
            peer: self.conn.peer,
            host: &self.host,
            method: self.method,
            path: self.path,
            proto: "HTTP/1.1",
            status,
            bytes,
            took,
            upstream,
            id: self.id,
            referer: self.referer,
            agent: self.agent,
        });
    }
}

/// The request's id: the client's own when it is usable, else `made`.
fn id_of<'a>(buf: &'a [u8], head: &Head, made: &'a [u8; 16]) -> &'a str {
    let id = head.id.clone().map_or(&made[..], |r| &buf[r]);
    std::str::from_utf8(id).unwrap_or("-")
}

/// What the access log and error pages need about a request.
#[allow(clippy::too_many_arguments)]
fn started<'a>(
    head: &Head,
    buf: &'a [u8],
    lines: &[Line],
    shared: &'a Shared,
    conn: Conn,
    route: &'a Route,
    id: &'a str,
) -> At<'a> {
    let text = |r: &Range<usize>| std::str::from_utf8(&buf[r.clone()]).unwrap_or("-");
    // `Referer` and `User-Agent` only for a log that shows them (the combined format).
    let header = |name: &[u8]| -> &'a str {
        if !shared.access_wants_headers() {
            return "";
        }
        lines
            .iter()
            .find(|l| buf[l.name.clone()].eq_ignore_ascii_case(name))
            .and_then(|l| std::str::from_utf8(&buf[l.value.clone()]).ok())
            .unwrap_or("")
    };
    At {
        referer: header(b"referer"),
        agent: header(b"user-agent"),
        shared,
        conn,
        since: head.since,
        host: routing_host(buf, head).unwrap_or_default(),
        method: text(&head.method),
        path: text(&head.path),
        id,
        head_request: &buf[head.method.clone()] == b"HEAD",
        // A draining edge ends each connection after its current response, and says so.
        close: head.close || shared.draining(),
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
    let id = id_of(buf, head, &made);
    let mut at = started(head, buf, &scratch.lines, shared, conn, route, id);
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
    scratch.out.reserve(1024);
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
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + crate::HOLD_POLL))
            .await;
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
            // A stopping unit's socket, answered by its grove: nothing was served.
            Ok(res) if res.status == 503 && not_served(&up.buf, lines) => {
                return Err(Failed::Connect(
                    "it is stopping: the request was not served".into(),
                ));
            }
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

/// Whether a response head carries grove's `Grove-Not-Served` (see
/// [`grove_plan::NOT_SERVED_HEADER`]).
fn not_served(buf: &[u8], lines: &[Line]) -> bool {
    lines.iter().any(|l| {
        buf.get(l.name.clone())
            .is_some_and(|n| n.eq_ignore_ascii_case(grove_plan::NOT_SERVED_HEADER.as_bytes()))
    })
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

pub(crate) mod client;
mod forward;
mod fuzz;
mod quiet;
mod request;
mod response;
#[cfg(test)]
mod tests;
