//! The fast path's request side: a client's head parsed with `httparse` into ranges of the
//! connection's buffer, each header line classified (kept, hop-by-hop, forwarded), or the
//! verdict that it is not for the fast path.

use std::ops::Range;
use std::time::Instant;

use super::*;

/// What a header line is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct Line {
    pub(super) name: Range<usize>,
    pub(super) value: Range<usize>,
    pub(super) kind: Kind,
}

/// A request head the fast path takes; ranges are into the connection's buffer.
#[derive(Debug)]
pub(super) struct Head {
    /// When the head was complete.
    pub(super) since: Instant,
    pub(super) len: usize,
    pub(super) method: Range<usize>,
    pub(super) target: Range<usize>,
    /// The target without its query.
    pub(super) path: Range<usize>,
    pub(super) host: Range<usize>,
    pub(super) length: u64,
    pub(super) close: bool,
    pub(super) id: Option<Range<usize>>,
    pub(super) xff: Option<Range<usize>>,
    pub(super) xfp: bool,
    pub(super) xfh: bool,
}

pub(super) enum Parsed {
    Partial,
    /// Not for the fast path.
    Other,
    Head(Head),
}

/// Where `part` (a slice of `base`) is in `base`.
pub(super) fn range_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

/// Marks the lines that a `Connection` header names as hop-by-hop.
pub(super) fn drop_named(buf: &[u8], lines: &mut [Line], named: &[Range<usize>]) {
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
pub(super) fn parse_request(buf: &[u8], lines: &mut Vec<Line>, max_headers: usize) -> Parsed {
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
    )
    .and(rules::check_target(target.as_bytes()));
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
