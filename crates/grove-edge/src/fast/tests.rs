//! The fast path's parsers and writers, without sockets.
use super::*;

fn request(raw: &str) -> Option<(Head, Vec<Line>)> {
    let mut lines = Vec::new();
    match parse_request(raw.as_bytes(), &mut lines, 100) {
        Parsed::Head(h) => Some((h, lines)),
        _ => None,
    }
}

#[test]
fn simple_requests_are_taken_and_the_rest_left_to_hyper() {
    let (h, lines) = request(
        "GET /a?b HTTP/1.1\r\nHost: Example.org:80\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nX-Request-Id: abc\r\n\r\n",
    )
    .unwrap();
    assert!(!h.close);
    assert_eq!(h.length, 0);
    let raw = "GET /a?b HTTP/1.1\r\nHost: Example.org:80\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nX-Request-Id: abc\r\n\r\n";
    let kept: Vec<&str> = lines
        .iter()
        .filter(|l| l.kind == Kind::Keep)
        .map(|l| &raw[l.name.clone()])
        .collect();
    assert_eq!(kept, ["X-Kept"]);
    assert_eq!(&raw[h.id.clone().unwrap()], "abc");
    assert_eq!(&raw[h.target.clone()], "/a?b");
    assert_eq!(
        routing_host(raw.as_bytes(), &h).as_deref(),
        Some("example.org")
    );
    let (h, _) =
        request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
            .unwrap();
    assert!(h.close);
    assert_eq!(h.length, 12);
    for other in [
        "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
        // Issue 20: a Connection naming the framing is hyper's side's to refuse.
        "POST /attacker HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: content-length\r\nContent-Length: 60\r\n\r\n",
    ] {
        assert!(request(other).is_none(), "{other:?}");
    }
    let mut lines = Vec::new();
    assert!(matches!(
        parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", &mut lines, 100),
        Parsed::Partial
    ));
    // More header lines than the limit: hyper's (it answers 431).
    assert!(matches!(
        parse_request(
            b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n",
            &mut lines,
            2
        ),
        Parsed::Other
    ));
}

fn response(raw: &str, head_request: bool) -> Result<ResponseHead, String> {
    let mut lines = Vec::new();
    match parse_response(raw.as_bytes(), &mut lines, head_request) {
        ParsedResponse::Head(h) => Ok(h),
        ParsedResponse::Interim(n) => Err(format!("interim {n}")),
        ParsedResponse::Bad(why) => Err(why.to_string()),
        ParsedResponse::Partial => Err("partial".into()),
    }
}

#[test]
fn response_bodies_end_where_rfc_9112_says() {
    let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap();
    assert_eq!(
        (r.framing, r.reusable, r.length),
        (Framing::Length(5), true, Some(5))
    );
    let r = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap();
    assert_eq!((r.framing, r.reusable), (Framing::None, false));
    let r = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!((r.framing, r.length), (Framing::Chunked, None));
    let r = response("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
    assert_eq!(r.framing, Framing::None);
    let r = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
    assert_eq!((r.framing, r.reusable), (Framing::Close, false));
    let r = response(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        false,
    )
    .unwrap();
    assert!(!r.reusable);
    let r = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
    assert!(!r.reusable);
    let r = response(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        false,
    )
    .unwrap();
    assert!(r.reusable);
    assert_eq!(
        response("HTTP/1.1 100 Continue\r\n\r\n", false).unwrap_err(),
        "interim 25"
    );
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.0 077 Low\r\n\r\n",
    ] {
        assert!(response(bad, false).is_err(), "{bad:?}");
    }
}

#[test]
fn the_upstream_request_is_the_clients_without_hops_with_forwarded_headers() {
    let raw = format!(
        "POST /TR/orders?x=1 HTTP/1.1\r\nHost: shop.example.org\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Request-Id: {}\r\nUser-Agent: t\r\nContent-Length: 2\r\n\r\nhiGET /next",
        "a".repeat(201)
    );
    let (head, lines) = request(&raw).unwrap();
    assert_eq!(head.id, None, "an id over 200 characters is replaced");
    let mut how = Forwarding {
        strip: Some("/TR"),
        trusted: false,
        peer: b"127.0.0.9",
        scheme: "http",
        id: b"id",
    };
    let mut out = Vec::new();
    write_request(&mut out, raw.as_bytes(), &head, &lines, &how);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /orders?x=1 HTTP/1.1\r\nHost: shop.example.org\r\nUser-Agent: t\r\nContent-Length: 2\r\nX-Forwarded-For: 127.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example.org\r\nX-Forwarded-Prefix: /TR\r\nX-Request-Id: id\r\n\r\nhi"
    );
    // From a trusted proxy its forwarded headers stay (the address is appended).
    how.trusted = true;
    how.strip = None;
    let mut out = Vec::new();
    write_request(&mut out, raw.as_bytes(), &head, &lines, &how);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /TR/orders?x=1 HTTP/1.1\r\nHost: shop.example.org\r\nX-Forwarded-Proto: https\r\nUser-Agent: t\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nX-Forwarded-Host: shop.example.org\r\nX-Request-Id: id\r\n\r\nhi"
    );
    // A stripped prefix that is the whole path leaves "/".
    let (head, lines) = request("GET /TR?q HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    how.strip = Some("/TR");
    let mut out = Vec::new();
    write_request(
        &mut out,
        b"GET /TR?q HTTP/1.1\r\nHost: x\r\n\r\n",
        &head,
        &lines,
        &how,
    );
    assert!(out.starts_with(b"GET /?q HTTP/1.1\r\n"));
    fuzz_heads(raw.as_bytes());
}

#[test]
fn the_response_head_loses_hops_and_gets_the_request_id() {
    let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: up\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 2\r\n\r\nok";
    let mut lines = Vec::new();
    let ParsedResponse::Head(res) = parse_response(raw.as_bytes(), &mut lines, false) else {
        panic!("a response head");
    };
    let mut out = Vec::new();
    write_response_head(&mut out, raw.as_bytes(), &res, &lines, b"id", true, false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-request-id: id\r\nstrict-transport-security: max-age=31536000\r\n\r\n"
    );
    let mut out = Vec::new();
    write_response_head(&mut out, raw.as_bytes(), &res, &lines, b"id", false, true);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Strict-Transport-Security: max-age=1\r\n"),
        "{text}"
    );
    assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
    fuzz_heads(raw.as_bytes());
}

#[test]
fn pages_are_whole_responses() {
    let mut out = Vec::new();
    page(
        &mut out,
        StatusCode::BAD_GATEWAY,
        "a <b>",
        "id1",
        true,
        None,
    );
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        body.contains("a &lt;b&gt;") && body.contains("id1"),
        "{body}"
    );
    let mut out = Vec::new();
    page(
        &mut out,
        StatusCode::BAD_GATEWAY,
        "x",
        "id1",
        false,
        Some((true, true)),
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("\r\n\r\n") && text.contains("strict-transport-security"));
}
