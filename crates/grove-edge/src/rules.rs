//! The edge's HTTP rules: what a request or response head may say before anything of it is
//! forwarded, decided in one place for every request path.
//!
//! Three paths read HTTP/1 heads: the fast path ([`crate::fast`]), the framing guard below
//! hyper ([`crate::framing`]) and the hyper path ([`crate::proxy`], which also serves HTTP/2).
//! Each calls these functions on the header lines it parsed, so they cannot disagree on a
//! verdict; the differential test (`tests/differential.rs`) replays a corpus of hostile
//! heads through the fast path and the hyper path and demands the same result upstream and
//! downstream.
//!
//! The rules (RFC 9110 and 9112, and nginx's defaults where the RFCs leave a choice):
//! - a request with both `Content-Length` and `Transfer-Encoding`, or with more than one
//!   `Content-Length` line, is refused (400): the classic smuggling probes;
//! - a `Connection` header may not name `Content-Length`, `Transfer-Encoding` or `Host`
//!   (RFC 9110 7.6.1: those are not hop-by-hop; a proxy that removed them would forward a
//!   body without its framing): a request is refused (400), a response is a bad response
//!   (502);
//! - an HTTP/1.1 request needs exactly one `Host` (RFC 9112 3.2), any request at most one;
//! - the authority that routed a request (the absolute-form target or HTTP/2's
//!   `:authority`, else `Host`) is the `Host` the upstream receives;
//! - header names with `_` are not forwarded (upstreams such as gunicorn read `_` as `-`, so
//!   `X_Forwarded_For` would pass as `X-Forwarded-For`; nginx's `underscores_in_headers
//!   off`);
//! - `CONNECT` is answered 405 (the edge is not a forward proxy);
//! - hop-by-hop headers (and those `Connection` names) are removed both ways, and only
//!   idempotent requests are sent twice.
//!
//! This module knows header names and values as bytes; it must not know sockets, hyper's
//! connection types or the route table.

use hyper::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 7.6.1), plus the non-standard ones proxies also drop.
pub(crate) static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Whether `name` is one of the fixed hop-by-hop headers.
pub(crate) fn hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
}

/// Why a request is refused before anything of it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Content-Length` and `Transfer-Encoding` together.
    BothFramings,
    /// More than one `Content-Length` line.
    TwoLengths,
    /// `Connection` names `Content-Length`, `Transfer-Encoding` or `Host`.
    ConnectionNamesFraming,
    /// An HTTP/1.1 request without `Host`.
    NoHost,
    /// More than one `Host` line.
    TwoHosts,
    /// A `#` in the request target: a fragment never belongs there (RFC 9112 3.2), and
    /// servers disagree on it (hyper drops it, others route on it), as HAProxy refuses it.
    FragmentInTarget,
}

impl Refusal {
    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::BothFramings => "both Content-Length and Transfer-Encoding",
            Refusal::TwoLengths => "more than one Content-Length",
            Refusal::ConnectionNamesFraming => {
                "a Connection header naming Content-Length, Transfer-Encoding or Host"
            }
            Refusal::NoHost => "an HTTP/1.1 request without Host",
            Refusal::TwoHosts => "more than one Host",
            Refusal::FragmentInTarget => "a fragment (#) in the request target",
        }
    }

    /// Whether the refusal is about framing (a smuggling attempt) rather than the authority.
    pub fn is_smuggling(self) -> bool {
        matches!(
            self,
            Refusal::BothFramings | Refusal::TwoLengths | Refusal::ConnectionNamesFraming
        )
    }
}

/// The protocol a request came in with, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Http10,
    Http11,
    /// HTTP/2 (its `:authority` stands in for `Host`; it has no `Connection`).
    H2,
}

/// The comma-separated tokens of a header value.
pub(crate) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` value names a header that frames the message or says where it
/// goes (which no proxy may remove as hop-by-hop).
pub(crate) fn connection_names_framing(value: &[u8]) -> bool {
    tokens(value).any(|t| {
        t.eq_ignore_ascii_case(b"content-length")
            || t.eq_ignore_ascii_case(b"transfer-encoding")
            || t.eq_ignore_ascii_case(b"host")
    })
}

/// The verdict on a request's header lines: `Ok` when it may be routed.
pub(crate) fn check_request<'a>(
    proto: Proto,
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), Refusal> {
    let (mut lengths, mut encoded, mut hosts, mut names_framing) = (0usize, false, 0usize, false);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encoded = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            names_framing |= connection_names_framing(value);
        }
    }
    match (lengths, encoded) {
        (0, _) | (1, false) => {}
        (_, true) => return Err(Refusal::BothFramings),
        (_, false) => return Err(Refusal::TwoLengths),
    }
    if names_framing {
        return Err(Refusal::ConnectionNamesFraming);
    }
    match (hosts, proto) {
        (0, Proto::Http11) => Err(Refusal::NoHost),
        (0 | 1, _) => Ok(()),
        _ => Err(Refusal::TwoHosts),
    }
}

/// The verdict on an HTTP/1 request target, as it came on the request line.
pub(crate) fn check_target(target: &[u8]) -> Result<(), Refusal> {
    if target.contains(&b'#') {
        return Err(Refusal::FragmentInTarget);
    }
    Ok(())
}

/// The verdict on an upstream response's header lines: `Err` (with what was wrong, for the
/// 502 page) when it must not reach the client.
pub(crate) fn check_response<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), &'static str> {
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"connection") && connection_names_framing(value) {
            return Err("a Connection header naming its framing");
        }
    }
    Ok(())
}

/// Whether a request header with this name is passed on to an upstream at all (hop-by-hop
/// headers aside): names with `_` are not.
pub(crate) fn forwardable_name(name: &[u8]) -> bool {
    !name.contains(&b'_')
}

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Names the Connection header lists beyond the fixed ones (`keep-alive`, `close` and
    // `upgrade` are the usual tokens; they allocate nothing here).
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|n| t.eq_ignore_ascii_case(n.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// Removes the request headers the edge never forwards (names with `_`).
pub(crate) fn strip_unforwardable(h: &mut HeaderMap) {
    if h.keys().any(|n| !forwardable_name(n.as_str().as_bytes())) {
        let names: Vec<HeaderName> = h
            .keys()
            .filter(|n| !forwardable_name(n.as_str().as_bytes()))
            .cloned()
            .collect();
        for n in names {
            h.remove(n);
        }
    }
}

/// Whether a request with this method may be sent again (RFC 9110 9.2.2).
pub(crate) fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(proto: Proto, lines: &[(&str, &str)]) -> Result<(), Refusal> {
        check_request(
            proto,
            lines.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    #[test]
    fn a_fragment_never_belongs_in_a_target() {
        assert_eq!(check_target(b"/f#frag"), Err(Refusal::FragmentInTarget));
        assert_eq!(check_target(b"http://a/#"), Err(Refusal::FragmentInTarget));
        assert_eq!(check_target(b"/f?q=%23"), Ok(()));
        assert!(!Refusal::FragmentInTarget.is_smuggling());
    }

    #[test]
    fn connection_may_not_name_framing_headers() {
        for v in [
            "content-length",
            "keep-alive, Content-Length",
            "transfer-encoding",
            "host",
        ] {
            assert_eq!(
                check(
                    Proto::Http11,
                    &[("Host", "a"), ("Connection", v), ("Content-Length", "3")]
                ),
                Err(Refusal::ConnectionNamesFraming),
                "{v}"
            );
        }
        assert_eq!(
            check(
                Proto::Http11,
                &[("Host", "a"), ("Connection", "keep-alive, x-foo")]
            ),
            Ok(())
        );
        assert!(check_response([(&b"Connection"[..], &b"Content-Length"[..])]).is_err());
        assert!(check_response([(&b"Connection"[..], &b"close"[..])]).is_ok());
    }

    #[test]
    fn host_rules() {
        assert_eq!(check(Proto::Http11, &[]), Err(Refusal::NoHost));
        assert_eq!(check(Proto::Http10, &[]), Ok(()));
        assert_eq!(check(Proto::H2, &[]), Ok(()));
        assert_eq!(
            check(Proto::Http11, &[("Host", "b.test"), ("host", "127.0.0.1")]),
            Err(Refusal::TwoHosts)
        );
        assert_eq!(
            check(Proto::Http10, &[("Host", "b.test"), ("Host", "b.test")]),
            Err(Refusal::TwoHosts)
        );
    }

    #[test]
    fn framing_rules() {
        let both = [
            ("Host", "a"),
            ("Content-Length", "1"),
            ("Transfer-Encoding", "chunked"),
        ];
        assert_eq!(check(Proto::Http11, &both), Err(Refusal::BothFramings));
        let two = [
            ("Host", "a"),
            ("Content-Length", "1"),
            ("Content-Length", "1"),
        ];
        assert_eq!(check(Proto::Http11, &two), Err(Refusal::TwoLengths));
        assert!(Refusal::TwoLengths.is_smuggling() && !Refusal::NoHost.is_smuggling());
    }

    #[test]
    fn underscores_are_not_forwarded() {
        assert!(!forwardable_name(b"X_Forwarded_For"));
        assert!(forwardable_name(b"X-Forwarded-For"));
    }
}
