//! The upstream response head: how the fast path reads it (framing, hop-by-hop lines, the
//! rules' verdict) and writes the client's.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::forward::put_line;
use super::request::{drop_named, range_in};
use super::{hop_by_hop, tokens, Kind, Line, MAX_HEADERS};
use crate::pages::HSTS_LINE;
use crate::rules;

/// How an upstream response's body ends (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// At the close of the connection.
    Close,
}

/// An upstream response head; ranges are into the upstream connection's buffer.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) len: usize,
    pub(super) status: u16,
    pub(super) reason: Range<usize>,
    pub(super) framing: Framing,
    /// The connection can carry another request afterwards.
    pub(super) reusable: bool,
    /// Its `Content-Length`, for the access log.
    pub(super) length: Option<u64>,
}

pub(super) enum ParsedResponse {
    Partial,
    /// An interim (1xx) response this long: skipped.
    Interim(usize),
    Bad(&'static str),
    Head(ResponseHead),
}

pub(super) fn parse_response(
    buf: &[u8],
    lines: &mut Vec<Line>,
    head_request: bool,
) -> ParsedResponse {
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

/// Appends the client's response head for the upstream's `res` (whose head is in `buf`).
pub(super) fn write_response_head(
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
