//! What the edge answers itself on both request paths: request ids and error pages.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::proxy::BoxBody;

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A new request id: 16 hex digits, unpredictable.
pub(crate) fn new_request_id() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let n = h.finish();
    let mut hex = [0u8; 16];
    for (i, d) in hex.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    hex
}

pub(crate) fn request_id() -> HeaderValue {
    HeaderValue::from_bytes(&new_request_id()).unwrap_or(HeaderValue::from_static("-"))
}

/// Whether a client's `X-Request-Id` is kept (else a new one is made): 1 to 200 visible
/// ASCII characters.
pub(crate) fn usable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 200 && v.iter().all(|b| b.is_ascii_graphic())
}

/// The stack's own pages (`[edge] error_pages`) by status, replacing grove's; both request
/// paths build their pages here, so both show them.
static CUSTOM: std::sync::RwLock<Option<std::collections::HashMap<u16, std::sync::Arc<str>>>> =
    std::sync::RwLock::new(None);

/// Uses `pages` (status, HTML) from now on instead of grove's own for those statuses.
pub(crate) fn set_custom_pages(pages: &[(u16, String)]) {
    let map = (!pages.is_empty()).then(|| {
        pages
            .iter()
            .map(|(s, html)| (*s, std::sync::Arc::from(html.as_str())))
            .collect()
    });
    match CUSTOM.write() {
        Ok(mut g) => *g = map,
        Err(p) => *p.into_inner() = map,
    }
}

fn custom_page(status: u16) -> Option<std::sync::Arc<str>> {
    let g = match CUSTOM.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.as_ref().and_then(|m| m.get(&status).cloned())
}

/// The HTML of an error page naming the request id: the stack's own page for the status
/// when it has one (`{status}`, `{reason}`, `{message}` and `{request_id}` filled in), else
/// grove's.
pub(crate) fn error_html(status: StatusCode, detail: &str, id: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = detail
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if let Some(page) = custom_page(status.as_u16()) {
        return page
            .replace("{status}", status.as_str())
            .replace("{reason}", reason)
            .replace("{message}", &detail)
            .replace("{request_id}", id);
    }
    format!(
        "<!doctype html>\n<html><head><title>{code} {reason}</title></head><body>\n<h1>{code} {reason}</h1>\n<p>{detail}</p>\n<p><small>request id {id} &middot; grove</small></p>\n</body></html>\n",
        code = status.as_u16()
    )
}

/// An error page naming the request id.
pub fn error_page(status: StatusCode, detail: &str, id: &str) -> Response<BoxBody> {
    let mut r = Response::new(full(error_html(status, detail, id)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    r
}

/// The 503 page's text when a route has no ready unit.
pub(crate) fn starting(service: &str) -> String {
    format!("{service} is starting: no unit is ready to take requests yet; try again shortly")
}

/// The 503 page when a route has no ready unit (after its hold).
pub(crate) fn starting_page(service: &str, id: &str) -> Response<BoxBody> {
    error_page(StatusCode::SERVICE_UNAVAILABLE, &starting(service), id)
}

/// A whole HTTP/1.1 error response as bytes, for the paths that write responses themselves
/// (the fast path, the idle clock): `how` says (HEAD request, add HSTS).
pub(crate) fn page(
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

pub(crate) const HSTS_LINE: &[u8] = b"strict-transport-security: max-age=31536000\r\n";

/// A whole 408 response as bytes, with a new request id, for a client too slow to ask:
/// `detail` says what did not arrive; `close` adds `connection: close`.
pub(crate) fn timeout_page(detail: &str, close: bool) -> Vec<u8> {
    let id = new_request_id();
    let mut out = Vec::new();
    page(
        &mut out,
        StatusCode::REQUEST_TIMEOUT,
        detail,
        std::str::from_utf8(&id).unwrap_or("-"),
        close,
        None,
    );
    out
}
