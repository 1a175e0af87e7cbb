//! A route's request-time rules on the hyper path: its header rules (`request_headers` on
//! what goes to the upstream, `headers` on every answer of the route, grove's own error pages
//! among them), `[edge] redirects` and `canonical_host`. The fast path hands requests that
//! meet one of these to hyper, so they are applied in this one place.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use grove_plan::{HeaderRules, RequestVars, Text};

use crate::pages::full;
use crate::proxy::BoxBody;

/// What a request fills placeholders with, owned (the request moves on to the upstream).
#[derive(Debug, Clone)]
pub(crate) struct Vars {
    pub request_id: String,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub scheme: &'static str,
    pub client: String,
    pub method: String,
}

impl Vars {
    pub(crate) fn of<B>(
        req: &hyper::Request<B>,
        host: &str,
        scheme: &'static str,
        client: std::net::IpAddr,
        request_id: &str,
    ) -> Vars {
        Vars {
            request_id: request_id.to_string(),
            host: host.to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_string),
            scheme,
            client: client.to_string(),
            method: req.method().as_str().to_string(),
        }
    }

    fn borrowed(&self) -> RequestVars<'_> {
        RequestVars {
            request_id: &self.request_id,
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            scheme: self.scheme,
            client: &self.client,
            method: &self.method,
        }
    }

    pub(crate) fn render(&self, t: &Text) -> String {
        t.render(&self.borrowed())
    }
}

/// Applies `rules` to `headers`: `remove`, then `set` (replacing), then `add`. A value that
/// cannot be a header (a placeholder filled with a control character) is left out.
pub(crate) fn apply(rules: &HeaderRules, headers: &mut HeaderMap, vars: &Vars) {
    for name in &rules.remove {
        if let Ok(n) = HeaderName::try_from(name.as_str()) {
            headers.remove(n);
        }
    }
    for (name, text) in &rules.set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(vars.render(text)),
        ) {
            headers.insert(n, v);
        }
    }
    for (name, text) in &rules.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(vars.render(text)),
        ) {
            headers.append(n, v);
        }
    }
}

/// A redirect to `location` with `status` and a one-line body saying where.
pub(crate) fn redirect(location: &str, status: u16) -> Response<BoxBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let mut r = Response::new(full(format!("redirecting to {location}\n")));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::try_from(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The address a request for a non-canonical host is sent to: the same scheme, path and
/// query on `canonical`, with the listener's port when it is not the scheme's own.
pub(crate) fn canonical_location(vars: &Vars, canonical: &str, port: u16) -> String {
    let default = if vars.scheme == "https" { 443 } else { 80 };
    let port = if port == default {
        String::new()
    } else {
        format!(":{port}")
    };
    let query = vars
        .query
        .as_ref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    format!("{}://{canonical}{port}{}{query}", vars.scheme, vars.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            request_id: "r-9".into(),
            host: "www.example.org".into(),
            path: "/a".into(),
            query: Some("b=1".into()),
            scheme: "https",
            client: "192.0.2.4".into(),
            method: "GET".into(),
        }
    }

    #[test]
    fn rules_remove_then_set_then_add() {
        let rules = HeaderRules {
            remove: vec!["server".into()],
            set: vec![
                ("x-frame-options".into(), Text::parse("DENY").unwrap()),
                (
                    "x-seen".into(),
                    Text::parse("{request_id} {client}").unwrap(),
                ),
            ],
            add: vec![("link".into(), Text::parse("</x.css>; rel=preload").unwrap())],
        };
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("gunicorn"));
        h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        h.insert("link", HeaderValue::from_static("</a.js>; rel=preload"));
        apply(&rules, &mut h, &vars());
        assert!(h.get("server").is_none());
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-seen"], "r-9 192.0.2.4");
        assert_eq!(h.get_all("link").iter().count(), 2);
    }

    #[test]
    fn a_canonical_location_keeps_path_query_and_an_odd_port() {
        assert_eq!(
            canonical_location(&vars(), "example.org", 443),
            "https://example.org/a?b=1"
        );
        assert_eq!(
            canonical_location(&vars(), "example.org", 8443),
            "https://example.org:8443/a?b=1"
        );
        let r = redirect("https://example.org/a", 301);
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[header::LOCATION], "https://example.org/a");
    }
}
