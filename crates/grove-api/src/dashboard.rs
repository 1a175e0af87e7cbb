//! The dashboard: one HTML page with its script and style embedded in the binary (no CDN, no
//! build step), served by the admin listener. It reads the same JSON and server-sent-event
//! endpoints as any other client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

use crate::server::Body;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// The embedded file at `path`, if there is one.
pub(crate) fn asset(path: &str) -> Option<Response<Body>> {
    let (body, kind) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; style-src 'self'; script-src 'self'"),
    );
    Some(res)
}
