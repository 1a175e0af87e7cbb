//! The fast path's upstream request: written from the client's own header lines into one
//! buffer (hop-by-hop ones left out, the forwarded ones added), sent in one write.

use super::*;

pub(super) fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the upstream request says besides the client's request.
pub(super) struct Forwarding<'a> {
    /// The route's prefix, when it is stripped.
    pub(super) strip: Option<&'a str>,
    /// The client is a trusted proxy (its forwarded headers are kept).
    pub(super) trusted: bool,
    /// The client's address.
    pub(super) peer: &'a [u8],
    pub(super) scheme: &'a str,
    pub(super) id: &'a [u8],
}

/// Appends the upstream request for `head` (and its body, which follows the head in `buf`)
/// to `out`: the client's header lines without the hop-by-hop ones, then the forwarded ones
/// (as the hyper path sets them).
pub(super) fn write_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &Head,
    lines: &[Line],
    how: &Forwarding<'_>,
) {
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
