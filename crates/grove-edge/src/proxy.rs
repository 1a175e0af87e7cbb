//! The request path: route, limits, forwarded headers, hop-by-hop removal, load balancing
//! with retry on connect failure for idempotent requests, upgrades, error pages, access log.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;

mod body;
mod send;

use body::{request_body, BodyTimeout, ReqBody, BODY_TIMEOUT};

use crate::pages::{error_page, full, request_id, starting_page, usable_request_id, X_REQUEST_ID};
use crate::rules::{self, idempotent, strip_hop_by_hop, strip_unforwardable};
use crate::stats::RouteStats;
use crate::table::{Action, Backend, Pool, Table};
use crate::{rewrite, statics, Shared};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type of the edge.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;
/// The upstream client (plain HTTP, or HTTPS verified against the system roots and
/// `[edge] upstream_ca`).
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, BoxBody>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Where a connection came in.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// The client.
    pub peer: SocketAddr,
    /// The listener's address.
    pub local: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Handles one request. `peer` is the client's address as a header value (made once per
/// connection).
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    conn: Conn,
    peer: HeaderValue,
) -> Response<BoxBody> {
    let started = Instant::now();
    let id_value = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| usable_request_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(request_id);
    // Only visible ASCII gets here.
    let id = id_value.to_str().unwrap_or("-");
    let host = request_host(&req);
    let method = req.method().clone();
    // A cheap copy (shared bytes) for the access log.
    let uri = req.uri().clone();
    let version = req.version();
    let (referer, agent) = if shared.access_wants_headers() {
        let h = |n: header::HeaderName| req.headers().get(n).cloned();
        (h(header::REFERER), h(header::USER_AGENT))
    } else {
        (None, None)
    };
    let path = uri.path();
    let table = shared.table();
    let (res, upstream, stats) = if let Some(r) = refused(&req, id) {
        (r, None, None)
    } else if let Some(r) = before_routing(&shared, &table, &req, conn, &host) {
        (r, None, None)
    } else {
        let cx = Cx {
            shared: &shared,
            table: &table,
            conn,
            peer: &peer,
            id: &id_value,
        };
        route(cx, req, &host, path).await
    };
    let mut res = res;
    if table.hsts && conn.scheme == "https" {
        res.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res.headers_mut()
        .insert(X_REQUEST_ID.clone(), id_value.clone());
    let bytes: Option<u64> = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let took = started.elapsed();
    if let Some(s) = stats {
        s.record(res.status().as_u16(), bytes.unwrap_or(0), took);
    }
    shared.access(&crate::access::Entry {
        peer: conn.peer,
        host: &host,
        method: method.as_str(),
        path,
        proto: match version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        status: res.status().as_u16(),
        bytes,
        took,
        upstream: upstream.as_deref(),
        id,
        referer: header_text(&referer),
        agent: header_text(&agent),
    });
    res
}

/// A header's value as text for the access log (empty when absent or not text).
fn header_text(v: &Option<HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The answer to a request the edge's HTTP rules refuse ([`rules`]), if it is one. The
/// framing guard refuses HTTP/1 heads before hyper sees them; this applies the same rules to
/// what reaches the service (HTTP/2 among it), and answers `CONNECT`.
fn refused(req: &Request<Incoming>, id: &str) -> Option<Response<BoxBody>> {
    if req.method() == hyper::Method::CONNECT {
        let mut r = error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served here (grove's edge is not a forward proxy)",
            id,
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        if req.version() < Version::HTTP_2 {
            // The client may already be sending what it meant for the tunnel.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Some(r);
    }
    let proto = match req.version() {
        Version::HTTP_09 | Version::HTTP_10 => rules::Proto::Http10,
        Version::HTTP_11 => rules::Proto::Http11,
        _ => rules::Proto::H2,
    };
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    let why = rules::check_request(proto, headers).err()?;
    let mut r = error_page(StatusCode::BAD_REQUEST, why.describe(), id);
    if proto != rules::Proto::H2 {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Some(r)
}

/// The path prefix of ACME HTTP-01 challenges.
pub const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// What the edge answers itself on plain HTTP: ACME HTTP-01 challenges it is waiting for, and
/// the 308 to HTTPS for hosts it has a certificate for.
fn before_routing(
    shared: &Shared,
    table: &Table,
    req: &Request<Incoming>,
    conn: Conn,
    host: &str,
) -> Option<Response<BoxBody>> {
    if conn.scheme != "http" || table.forwards.contains_key(&conn.local) {
        return None;
    }
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix(ACME_CHALLENGE) {
        let answer = match shared.acme_tokens.read() {
            Ok(t) => t.get(token).cloned(),
            Err(p) => p.into_inner().get(token).cloned(),
        };
        // A token grove is not waiting for goes to the routes (an app may answer its own).
        let answer = answer?;
        let mut r = Response::new(full(answer));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Some(r);
    }
    let port = table.redirect_to?;
    if host.is_empty()
        || !shared
            .certs
            .covers(host.trim_start_matches('[').trim_end_matches(']'))
    {
        return None;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Some(r)
}

fn request_host(req: &Request<Incoming>) -> String {
    let raw = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    strip_port(&raw).to_ascii_lowercase()
}

pub(crate) fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map(|s| &h[..s.len() + 1]).unwrap_or(h);
    }
    h.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(a, _)| a)
        .unwrap_or(h)
}

/// What the request path needs besides the request.
#[derive(Clone, Copy)]
struct Cx<'a> {
    shared: &'a Arc<Shared>,
    table: &'a Table,
    conn: Conn,
    /// The client's address as a header value.
    peer: &'a HeaderValue,
    /// The request id.
    id: &'a HeaderValue,
}

impl Cx<'_> {
    fn id(&self) -> &str {
        self.id.to_str().unwrap_or("-")
    }
}

async fn route(
    cx: Cx<'_>,
    mut req: Request<Incoming>,
    host: &str,
    path: &str,
) -> (Response<BoxBody>, Option<String>, Option<Arc<RouteStats>>) {
    let (table, id) = (cx.table, cx.id());
    let forward = table.forwards.get(&cx.conn.local);
    let vars = |req: &Request<Incoming>| {
        rewrite::Vars::of(req, host, cx.conn.scheme, cx.conn.peer.ip(), id)
    };
    if let Some(canonical) = table.canonical_for(host).filter(|_| forward.is_none()) {
        let location = rewrite::canonical_location(&vars(&req), canonical, cx.conn.local.port());
        return (
            rewrite::redirect(&location, 301),
            Some("redirect".to_string()),
            None,
        );
    }
    let found = forward.or_else(|| table.find(host, path));
    let Some(r) = found else {
        return (
            error_page(StatusCode::NOT_FOUND, "no route for this host and path", id),
            None,
            None,
        );
    };
    if let Err((res, upstream)) = crate::gate::admit(cx.shared, r, &mut req, cx.conn, id).await {
        return (res, upstream, Some(r.stats.clone()));
    }
    // The route's header rules: on the request now, on its answer below.
    let rules = r.headers.as_ref().map(|h| (h.clone(), vars(&req)));
    // What compression needs of the request, which goes on to the upstream.
    let compress = r.compress.as_ref().map(|c| {
        let accept = req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (c.clone(), req.method().clone(), accept)
    });
    if let Some((h, v)) = &rules {
        rewrite::apply(&h.request, req.headers_mut(), v);
    }
    let (mut res, upstream) = match &r.action {
        Action::Redirect { to, status } => {
            let location = vars(&req).render(to);
            (
                rewrite::redirect(&location, *status),
                Some("redirect".to_string()),
            )
        }
        Action::Static(dir) => {
            let rest = if r.prefix == "/" {
                path
            } else {
                &path[r.prefix.len()..]
            };
            let res = statics::serve(dir, rest, req.method(), req.headers()).await;
            (res, Some("static".to_string()))
        }
        Action::Proxy(pool) => {
            // A split route's target: by its sticky cookie, else by weight.
            let health = |n: &str| cx.shared.health_of(n);
            let ready = |p: &crate::table::Pool| p.has_ready(&health);
            let chosen = r
                .split
                .as_ref()
                .and_then(|s| s.choose(req.headers(), &ready));
            let (pool, set_cookie) = match chosen {
                Some(c) => (c.pool, c.set_cookie),
                None => (pool, None),
            };
            let target = Target {
                pool,
                strip: (r.strip_prefix && r.prefix != "/").then_some(r.prefix.as_str()),
                max_body: r.max_body,
                buffer_body: r.buffer_body,
                websocket: r.websocket,
                hold: r.hold,
                host,
                path,
                mirror: r.mirror.as_deref(),
            };
            let (mut res, upstream) = proxy(cx, req, target).await;
            if let Some(c) = set_cookie {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            (res, upstream)
        }
    };
    if let Some((c, method, accept)) = compress {
        res = crate::compress::encode(&c, &method, accept.as_deref(), res);
    }
    if let Some((h, v)) = &rules {
        rewrite::apply(&h.response, res.headers_mut(), v);
    }
    (res, upstream, Some(r.stats.clone()))
}

struct Target<'a> {
    pool: &'a Pool,
    strip: Option<&'a str>,
    max_body: u64,
    buffer_body: u64,
    websocket: bool,
    hold: std::time::Duration,
    /// Where the request goes (to find its route again in a newer table while it is held).
    host: &'a str,
    path: &'a str,
    /// Where a copy goes, for some requests.
    mirror: Option<&'a crate::split::Mirror>,
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

/// The answer of [`proxy`]: the response, and the upstream that gave it.
type Answered = (Response<BoxBody>, Option<String>);

/// An error page, from no upstream.
fn refused_with(status: StatusCode, message: &str, id: &str) -> Answered {
    (error_page(status, message, id), None)
}

/// An error page with `Connection: close` (what was left of the request cannot be read).
fn closing(status: StatusCode, message: &str, id: &str) -> Response<BoxBody> {
    let mut r = error_page(status, message, id);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Path and query for the upstream, after stripping the route's prefix (without stripping,
/// the request's own, shared).
fn upstream_target(strip: Option<&str>, uri: &Uri) -> Result<PathAndQuery, String> {
    match (strip, uri.path_and_query()) {
        (None, Some(pq)) => Ok(pq.clone()),
        (None, None) => Ok(PathAndQuery::from_static("/")),
        (Some(prefix), pq) => {
            let pq = pq.map_or("/", |p| p.as_str());
            let rest = &pq[prefix.len().min(pq.len())..];
            let stripped = if rest.is_empty() || rest.starts_with('?') {
                PathAndQuery::try_from(format!("/{rest}"))
            } else {
                PathAndQuery::try_from(rest)
            };
            stripped.map_err(|e| format!("bad request target: {e}"))
        }
    }
}

/// The headers the upstream hears: hop-by-hop and unforwardable ones removed (an upgrade's
/// kept), `X-Forwarded-*` set (kept from a trusted proxy), `Host` from the authority that
/// routed the request, the request id.
fn upstream_headers(
    cx: &Cx<'_>,
    parts: &mut hyper::http::request::Parts,
    upgrade: bool,
    strip: Option<&str>,
) -> HeaderMap {
    let (table, conn) = (cx.table, &cx.conn);
    let mut headers = std::mem::take(&mut parts.headers);
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    strip_unforwardable(&mut headers);
    if upgrade {
        if let Some(v) = upgrade_value {
            headers.insert(header::UPGRADE, v);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let trusted = table.trusted_proxies.contains(&conn.peer.ip());
    let xff = match (
        trusted,
        headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
    ) {
        (true, Some(prev)) => HeaderValue::from_str(&format!("{prev}, {}", conn.peer.ip())).ok(),
        _ => Some(cx.peer.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(conn.scheme),
        );
    }
    // The authority that routed the request (an absolute-form target's, HTTP/2's
    // `:authority`) is the one the upstream hears, whatever `Host` said.
    let original_host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| headers.get(header::HOST).cloned());
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        if let Some(h) = &original_host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
    }
    if let Some(h) = &original_host {
        headers.insert(header::HOST, h.clone());
    }
    if let Some(prefix) = strip {
        if let Ok(v) = HeaderValue::from_str(prefix) {
            headers.insert(X_FORWARDED_PREFIX.clone(), v);
        }
    }
    headers.insert(X_REQUEST_ID.clone(), cx.id.clone());
    headers
}

/// The request to one backend: its absolute URI (hyper-util's client wants one), the body
/// (a copy of a buffered one; a streaming one is taken), the headers given.
fn upstream_request(
    backend: &Backend,
    pq: &PathAndQuery,
    method: &hyper::Method,
    body: &mut Option<ReqBody>,
    headers: HeaderMap,
) -> Result<Request<BoxBody>, String> {
    let mut uri = hyper::http::uri::Parts::default();
    uri.scheme = Some(if backend.https {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    uri.authority = backend.uri_authority.clone();
    uri.path_and_query = Some(pq.clone());
    let uri = Uri::from_parts(uri)
        .map_err(|e| format!("{} is not a valid upstream address: {e}", backend.name))?;
    let this_body = match body {
        None => full(Bytes::new()),
        Some(ReqBody::Whole(b)) => full(b.clone()),
        Some(ReqBody::Streaming(_)) => match body.take() {
            Some(ReqBody::Streaming(b)) => b,
            _ => full(Bytes::new()),
        },
    };
    let mut out = Request::new(this_body);
    *out.method_mut() = method.clone();
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    if !out.headers().contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&backend.authority) {
            out.headers_mut().insert(header::HOST, v);
        }
    }
    Ok(out)
}

/// The client's answer from an upstream's response: an upgrade's tunnel started, a bad
/// response refused with 502, hop-by-hop headers removed, the client's protocol version.
fn answer_from(
    mut res: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    backend: &Arc<Backend>,
    version: Version,
    id: &str,
) -> Response<BoxBody> {
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_side) = client_upgrade {
            let upstream_side = hyper::upgrade::on(&mut res);
            tokio::spawn(tunnel(client_side, upstream_side, backend.clone()));
        }
        let (p, _) = res.into_parts();
        return Response::from_parts(p, full(Bytes::new()));
    }
    let (mut p, b) = res.into_parts();
    let lines = p
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    if let Err(why) = rules::check_response(lines) {
        return error_page(
            StatusCode::BAD_GATEWAY,
            &format!("{} sent a bad response: {why}", backend.name),
            id,
        );
    }
    strip_hop_by_hop(&mut p.headers);
    // Speak the client's protocol version, whatever the upstream spoke.
    p.version = version;
    if version == Version::HTTP_2 {
        own_header_values(&mut p.headers);
    }
    let body = b.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    Response::from_parts(p, body)
}

/// Gives each header value its own memory. hyper's HTTP/1.1 client hands out header values
/// that are slices of the upstream connection's read buffer (8 KiB and more); HTTP/2's
/// header compression keeps the values it indexed for the connection's life, so without
/// this an idle HTTP/2 client kept a whole upstream read buffer alive.
fn own_header_values(headers: &mut HeaderMap) {
    for value in headers.values_mut() {
        if let Ok(owned) = HeaderValue::from_bytes(value.as_bytes()) {
            let sensitive = value.is_sensitive();
            *value = owned;
            value.set_sensitive(sensitive);
        }
    }
}

/// The answer to an exchange that failed after the request was sent (a body that timed out
/// or was too large is the client's doing; anything else is 502).
fn exchange_failed(
    e: &(dyn std::error::Error + 'static),
    backend: &Backend,
    id: &str,
) -> Response<BoxBody> {
    if caused_by::<BodyTimeout>(e, BODY_TIMEOUT) {
        return error_page(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
            id,
        );
    }
    if caused_by::<http_body_util::LengthLimitError>(e, "length limit exceeded") {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large for this route",
            id,
        );
    }
    error_page(
        StatusCode::BAD_GATEWAY,
        &format!("{} failed: {}", backend.name, root_cause(e)),
        id,
    )
}

async fn proxy(cx: Cx<'_>, mut req: Request<Incoming>, target: Target<'_>) -> Answered {
    let (shared, conn, id) = (cx.shared, cx.conn, cx.id());
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > target.max_body) {
        let why = format!(
            "the request body is larger than this route allows ({} bytes)",
            target.max_body
        );
        return refused_with(StatusCode::PAYLOAD_TOO_LARGE, &why, id);
    }
    let upgrade = is_upgrade(req.headers());
    if upgrade && !target.websocket {
        return refused_with(
            StatusCode::BAD_REQUEST,
            "upgrades are not allowed on this route",
            id,
        );
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let sizes = (target.max_body, target.buffer_body);
    let body = match request_body(shared, declared, &parts.headers, body, sizes, id).await {
        Ok(b) => b,
        Err(page) => return (page, None),
    };
    let pq = match upstream_target(target.strip, &parts.uri) {
        Ok(pq) => pq,
        Err(why) => return refused_with(StatusCode::BAD_REQUEST, &why, id),
    };
    let headers = upstream_headers(&cx, &mut parts, upgrade, target.strip);
    // While no unit is ready (the only one restarts), the request waits up to the route's
    // `hold` for one.
    let deadline = tokio::time::Instant::now() + target.hold;
    let mut candidates = target.pool.candidates(&|name: &str| shared.health_of(name));
    if candidates.is_empty() {
        candidates = shared
            .wait_ready(conn.local, target.host, target.path, deadline)
            .await;
    }
    if candidates.is_empty() {
        return (starting_page(&target.pool.service, id), None);
    }
    // Copied once the request is going to its own target: one the hold ended with 503 is
    // not mirrored either.
    if let Some(m) = target.mirror {
        if !upgrade {
            mirror_copy(shared, m, &pq, &parts.method, &body, &headers);
        }
    }
    let buffered = !matches!(body, Some(ReqBody::Streaming(_)));
    let a = send::Attempt {
        shared,
        pq: &pq,
        method: &parts.method,
        version: parts.version,
        id,
        buffered,
        upgrade,
        retryable: idempotent(parts.method.as_str().as_bytes()) && buffered && !upgrade,
    };
    let mut body = body;
    let mut last_err = String::new();
    let mut headers = Some(headers);
    let mut client_upgrade = client_upgrade;
    loop {
        // A refused connection sent nothing: the next target may have a buffered request
        // whatever its method (a streamed body cannot be sent twice).
        let attempts = if buffered && !upgrade {
            candidates.len().min(3)
        } else {
            1
        };
        let mut unit_refused = false;
        for (attempt, backend) in candidates.iter().take(attempts).enumerate() {
            // The last attempt takes the headers; earlier ones (and a unit's, which may be
            // tried again while the request is held) copy them.
            let these = if attempt + 1 == attempts && !backend.unit {
                headers.take().unwrap_or_default()
            } else {
                headers.clone().unwrap_or_default()
            };
            match send::attempt(&a, backend, &mut body, these, &mut client_upgrade).await {
                send::Tried::Next(why) => {
                    backend.mark_down();
                    last_err = why;
                    unit_refused |= backend.unit;
                }
                send::Tried::Answer(page) => return (page, Some(backend.name.clone())),
            }
        }
        // Every unit tried refused the connection (nothing was sent): one of the stack's own
        // units is starting or restarting; look again within the hold time when the body can
        // be sent again. A remote upstream's refusal is answered at once.
        if !unit_refused || !buffered || upgrade || tokio::time::Instant::now() >= deadline {
            break;
        }
        let poll = tokio::time::Instant::now() + crate::HOLD_POLL;
        tokio::time::sleep_until(deadline.min(poll)).await;
        candidates = shared
            .wait_ready(conn.local, target.host, target.path, deadline)
            .await;
        if candidates.is_empty() {
            return (starting_page(&target.pool.service, id), None);
        }
    }
    let why = format!(
        "no unit of {} could be reached: {last_err}",
        target.pool.service
    );
    refused_with(StatusCode::BAD_GATEWAY, &why, id)
}

/// Whether an upstream's answer is a stopping socket-activated unit's "not served" (see
/// [`grove_plan::NOT_SERVED_HEADER`]).
fn not_served<B>(res: &Response<B>) -> bool {
    res.status() == StatusCode::SERVICE_UNAVAILABLE
        && res.headers().contains_key(grove_plan::NOT_SERVED_HEADER)
}

/// A copy of the request for the route's mirror, when this one is due and it has a ready
/// unit: sent on its own task, its answer read and discarded. A streamed body (one too large
/// to hold whole) cannot be sent twice: such a request is not copied.
fn mirror_copy(
    shared: &Arc<Shared>,
    m: &crate::split::Mirror,
    pq: &PathAndQuery,
    method: &hyper::Method,
    body: &Option<ReqBody>,
    headers: &HeaderMap,
) {
    if matches!(body, Some(ReqBody::Streaming(_))) || !m.due() {
        return;
    }
    let Some(backend) = m.backend(&|n: &str| shared.health_of(n)) else {
        return;
    };
    let mut copy = match body {
        Some(ReqBody::Whole(b)) => Some(ReqBody::Whole(b.clone())),
        _ => None,
    };
    let Ok(req) = upstream_request(&backend, pq, method, &mut copy, headers.clone()) else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let wait = shared.limits.upstream_response;
        if let Ok(Ok(res)) = tokio::time::timeout(wait, send::send(&shared, req)).await {
            let _ = tokio::time::timeout(wait, res.into_body().collect()).await;
        }
    });
}

/// Whether a `T` is anywhere in `e`'s chain of sources (or, when a layer hid the type, the
/// innermost message is `T`'s `text`).
fn caused_by<T: std::error::Error + 'static>(
    e: &(dyn std::error::Error + 'static),
    text: &str,
) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    root_cause(e).contains(text)
}

/// Whether the upstream closed the connection before a response began (hyper's "incomplete
/// message"), so nothing of an answer was lost.
fn closed_before_answering(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        cur = err.source();
    }
    false
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    backend: Arc<Backend>,
) {
    let (c, u) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    backend.active.fetch_add(1, Ordering::Relaxed);
    let mut c = TokioIo::new(c);
    let mut u = TokioIo::new(u);
    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
    backend.active.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_get_their_own_memory() {
        let buffer = Bytes::from(vec![b'v'; 8192]);
        let mut headers = HeaderMap::new();
        let shared = HeaderValue::from_maybe_shared(buffer.slice(0..5)).unwrap();
        assert_eq!(shared.as_bytes().as_ptr(), buffer.as_ptr());
        headers.insert("x-a", shared);
        let mut secret = HeaderValue::from_maybe_shared(buffer.slice(5..9)).unwrap();
        secret.set_sensitive(true);
        headers.insert("set-cookie", secret);
        own_header_values(&mut headers);
        let range = buffer.as_ptr_range();
        for (name, value) in &headers {
            assert!(
                !range.contains(&value.as_bytes().as_ptr()),
                "{name} still points into the upstream's buffer"
            );
        }
        assert_eq!(headers["x-a"], "vvvvv");
        assert!(headers["set-cookie"].is_sensitive(), "sensitivity is kept");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] BoxError);

    #[test]
    fn causes_are_found_anywhere_in_the_chain() {
        let nested = Outer(Box::new(Outer(Box::new(BodyTimeout))));
        assert!(caused_by::<BodyTimeout>(&nested, "never matches"));
        let other = Outer(Box::new(Outer(Box::new(std::io::Error::other("x")))));
        assert!(!caused_by::<BodyTimeout>(&other, "never matches"));
        assert!(caused_by::<BodyTimeout>(&other, "x"));
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(strip_port("example.org:8080"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_ne!(request_id(), request_id());
    }
}
