//! The fast path's heads under `cargo fuzz`.

use super::{
    parse_request, parse_response, write_request, write_response_head, Forwarding, Parsed,
    ParsedResponse, MAX_HEADERS,
};

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
