//! The edge end to end: the real binary proxies to a real upstream (a small standard-library
//! Python app, `tests/fixtures/echo.py`) over loopback on ports the tests pick.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `raw` (a whole request; `Connection: close` is the caller's job) and reads the reply
/// to the end.
fn send(port: u16, raw: &[u8]) -> Reply {
    parse(&exchange(port, raw))
}

/// Writes `raw` and reads until the edge closes.
fn exchange(port: u16, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

fn parse(buf: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(buf);
    let Some(end) = text.find("\r\n\r\n") else {
        return Reply {
            status: 0,
            head: text.into_owned(),
            body: Vec::new(),
        };
    };
    let head = text[..end].to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

fn get(port: u16, host: &str, path: &str, extra: &str) -> Reply {
    send(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn stack(body: &str) -> (Stack, u16) {
    let port = free_port();
    let s = Stack::new("");
    let text = body
        .replace("EDGE_PORT", &port.to_string())
        .replace("ECHO", &echo_app());
    s.write_stack(&text);
    s.up();
    (s, port)
}

#[test]
fn routes_by_host_wildcard_and_longest_prefix_with_strip() {
    let (s, port) = stack(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]

[services.main]
command = "python3 ECHO"
env = { NAME = "main" }
health = { http = "/" }
route = { prefix = "/" }

[services.api]
command = "python3 ECHO"
env = { NAME = "api" }
health = { http = "/" }
route = { prefix = "/api" }

[services.turkey]
command = "python3 ECHO"
env = { NAME = "turkey" }
health = { http = "/" }
route = { host = "shop.example.org", prefix = "/TR", strip_prefix = true }

[services.tenants]
command = "python3 ECHO"
env = { NAME = "tenants" }
health = { http = "/" }
route = { host = "*.example.org" }
"#,
    );
    let name = |host: &str, path: &str| get(port, host, path, "").json()["name"].clone();
    assert_eq!(name("localhost", "/"), "main");
    assert_eq!(name("localhost", "/api/users"), "api");
    assert_eq!(name("localhost", "/apiary"), "main");
    assert_eq!(name("a.example.org", "/"), "tenants");
    assert_eq!(name("shop.example.org", "/TR/orders"), "turkey");
    assert_eq!(name("SHOP.example.org:8080", "/TR"), "turkey");
    let r = get(port, "shop.example.org", "/TR/orders?page=2", "").json();
    assert_eq!(r["path"], "/orders?page=2");
    assert_eq!(r["headers"]["x-forwarded-prefix"], "/TR");
    assert_eq!(get(port, "shop.example.org", "/TR", "").json()["path"], "/");
    // The access log has one line per request.
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(s.path().join(".grove/logs/edge.access.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(" shop.example.org GET /TR/orders 200 ") && l.contains(" turkey ")),
        "{log}"
    );
}

#[test]
fn forwarded_headers_request_id_and_hop_by_hop() {
    let fwd = free_port();
    let (_s, port) = stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]
forward = [{{ listen = "http://127.0.0.1:{fwd}", service = "app" }}]

[services.app]
command = "python3 ECHO"
health = {{ http = "/" }}
route = {{ prefix = "/only" }}
"#
    ));
    // A forward sends a whole port to one service, whatever the path.
    let r = get(fwd, "anything", "/not/routed", "");
    assert_eq!(r.json()["path"], "/not/routed");
    assert_eq!(get(port, "app.test", "/not/routed", "").status, 404);
    let r = get(
        port,
        "app.test",
        "/only",
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Custom: kept\r\n",
    );
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    // Untrusted peer: its X-Forwarded-For and -Proto are replaced, not appended.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert_eq!(h["host"], "app.test");
    assert_eq!(h["x-custom"], "kept");
    assert!(h.get("x-private").is_none(), "{h}");
    assert!(h.get("keep-alive").is_none(), "{h}");
    let id = h["x-request-id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert_eq!(r.header("x-request-id").unwrap(), id);
    // The upstream's own hop-by-hop headers do not reach the client.
    assert!(r.header("x-upstream-hop").is_none(), "{}", r.head);
    // An incoming request id is kept.
    let r = get(port, "app.test", "/only", "X-Request-Id: abc-123\r\n");
    assert_eq!(r.json()["headers"]["x-request-id"], "abc-123");
    assert_eq!(r.header("x-request-id").unwrap(), "abc-123");
}

#[test]
fn trusted_proxy_forwarded_for_is_appended() {
    let (_s, port) = stack(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]
trusted_proxies = ["127.0.0.1"]

[services.app]
command = "python3 ECHO"
health = { http = "/" }
route = {}
"#,
    );
    let r = get(
        port,
        "x",
        "/",
        "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n",
    );
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[test]
fn streaming_responses_and_upgrades_pass_through() {
    let (_s, port) = stack(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]

[services.app]
command = "python3 ECHO"
health = { http = "/" }
route = {}
"#,
    );
    // The first event arrives while the upstream is still sleeping before the second.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("data: first") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let first_at = t.elapsed();
    assert!(!String::from_utf8_lossy(&got).contains("data: second"));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(String::from_utf8_lossy(&rest).contains("data: second"));
    assert!(
        t.elapsed() >= first_at + Duration::from_millis(500),
        "{first_at:?} {:?}",
        t.elapsed()
    );
    // A real WebSocket client: the handshake is tunnelled and messages flow both ways.
    let (mut ws, resp) = tungstenite::connect(format!("ws://127.0.0.1:{port}/ws")).unwrap();
    assert_eq!(resp.status(), 101);
    for msg in ["hello through the edge", "and again"] {
        ws.send(tungstenite::Message::text(msg)).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::text(msg));
    }
    let big = vec![7u8; 200_000];
    ws.send(tungstenite::Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap().into_data().as_ref(), &big[..]);
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn static_files_conditional_range_precompressed_and_no_way_out() {
    let port = free_port();
    let s = Stack::new("");
    let public = s.path().join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("app.js"), "console.log('hello from grove');\n").unwrap();
    std::fs::write(public.join("app.js.gz"), b"\x1f\x8bfake-gzip").unwrap();
    std::fs::write(public.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(s.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(s.path().join("secret.txt"), public.join("escape")).unwrap();
    s.write_stack(&format!(
        "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\nstatic = {{ \"/static\" = \"public/\" }}\n"
    ));
    s.up();
    let r = get(port, "x", "/static/app.js", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").unwrap(),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.text(), "console.log('hello from grove');\n");
    let etag = r.header("etag").unwrap();
    assert!(r.header("last-modified").is_some());
    assert!(r.header("cache-control").unwrap().contains("max-age"));
    let r = get(
        port,
        "x",
        "/static/app.js",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let lm = get(port, "x", "/static/app.js", "")
        .header("last-modified")
        .unwrap();
    assert_eq!(
        get(
            port,
            "x",
            "/static/app.js",
            &format!("If-Modified-Since: {lm}\r\n")
        )
        .status,
        304
    );
    let r = get(port, "x", "/static/app.js", "Range: bytes=0-6\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "console");
    assert_eq!(r.header("content-range").unwrap(), "bytes 0-6/33");
    assert_eq!(
        get(port, "x", "/static/app.js", "Range: bytes=99-\r\n").status,
        416
    );
    let r = get(port, "x", "/static/app.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding").unwrap(), "gzip");
    assert_eq!(r.body, b"\x1f\x8bfake-gzip");
    assert_eq!(get(port, "x", "/static/", "").text(), "<h1>home</h1>");
    for bad in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/escape",
        "/static/nope.txt",
    ] {
        let r = get(port, "x", bad, "");
        assert!(matches!(r.status, 400 | 404), "{bad}: {}", r.status);
        assert!(!r.text().contains("top secret"), "{bad}");
    }
    let r = send(port, b"POST /static/app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 405);

    // Issue 24: small files come from the open-file cache, which never serves a change late:
    // rewritten, replaced by a rename, removed.
    std::fs::remove_file(public.join("app.js.gz")).unwrap();
    std::fs::write(public.join("app.js"), "v2").unwrap();
    let r = get(port, "x", "/static/app.js", "");
    assert_eq!(r.text(), "v2");
    assert_ne!(r.header("etag").unwrap(), etag);
    std::fs::write(public.join(".next"), "v3!").unwrap();
    std::fs::rename(public.join(".next"), public.join("app.js")).unwrap();
    assert_eq!(get(port, "x", "/static/app.js", "").text(), "v3!");
    assert_eq!(
        get(port, "x", "/static/app.js", "Range: bytes=1-2\r\n").text(),
        "3!"
    );
    std::fs::remove_file(public.join("app.js")).unwrap();
    assert_eq!(get(port, "x", "/static/app.js", "").status, 404);
    // A file served once, then swapped for a symlink out of the mount: never followed out.
    std::fs::write(public.join("swap.txt"), "inside").unwrap();
    assert_eq!(get(port, "x", "/static/swap.txt", "").text(), "inside");
    std::fs::remove_file(public.join("swap.txt")).unwrap();
    std::os::unix::fs::symlink(s.path().join("secret.txt"), public.join("swap.txt")).unwrap();
    let r = get(port, "x", "/static/swap.txt", "");
    assert_eq!(r.status, 404, "{}", r.text());
    // A large file streams whole, and its ranges are its own.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(public.join("big.bin"), &big).unwrap();
    let r = get(port, "x", "/static/big.bin", "");
    assert_eq!(r.body, big);
    let r = get(
        port,
        "x",
        "/static/big.bin",
        "Range: bytes=200000-200009\r\n",
    );
    assert_eq!(r.body, &big[200_000..200_010]);
}

#[test]
fn bad_gateway_retry_limits_and_smuggling() {
    let dead = free_port();
    let live = free_port();
    let (s, port) = stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]

[services.app]
command = "python3 ECHO"
port = {live}
health = {{ http = "/" }}
route = {{ prefix = "/app", max_body = "1KB" }}

[services.idem]
upstreams = ["127.0.0.1:{dead}", "127.0.0.1:{live}"]
route = {{ prefix = "/idem" }}

[services.post]
upstreams = ["127.0.0.1:{dead}", "127.0.0.1:{live}"]
route = {{ prefix = "/post" }}

[services.gone]
upstreams = ["127.0.0.1:{dead}"]
route = {{ prefix = "/gone" }}
"#
    ));
    // Down upstream: a 502 page naming the request id.
    let r = get(port, "x", "/gone", "");
    assert_eq!(r.status, 502);
    let id = r.header("x-request-id").unwrap();
    assert!(r.text().contains(&id), "{}", r.text());
    assert!(r.text().contains("cannot connect"), "{}", r.text());
    // Idempotent: the refused upstream is skipped and the request retried.
    assert_eq!(get(port, "x", "/idem", "").status, 200);
    // Not idempotent, but the refused connection sent nothing: the next upstream has it
    // (issue 26), with its body.
    let r = send(
        port,
        b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.json()["body"], 2);
    // Body limit: 413 before anything is forwarded.
    let big = format!(
        "POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{}",
        "a".repeat(2000)
    );
    assert_eq!(send(port, big.as_bytes()).status, 413);
    let ok = format!(
        "POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}",
        "a".repeat(10)
    );
    assert_eq!(send(port, ok.as_bytes()).json()["body"], 10);
    // Oversize header: 431.
    let huge = format!(
        "GET /app HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(100_000)
    );
    assert_eq!(send(port, huge.as_bytes()).status, 431);
    // Smuggling attempts are refused with 400 and never forwarded: both framings (either
    // order, with a request hidden after the chunked body), two lengths (equal or not), and a
    // malformed chunk size; a good request on the same connection before them still works.
    for raw in [
        "POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /app/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /app/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /app/first HTTP/1.1\r\nHost: x\r\n\r\nPOST /app/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /app/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        "POST /app/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        "POST /app/smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ] {
        let reply = String::from_utf8_lossy(&exchange(port, raw.as_bytes())).into_owned();
        let statuses: Vec<&str> = reply
            .split("HTTP/1.1 ")
            .skip(1)
            .filter_map(|r| r.get(..3))
            .collect();
        let expected = if raw.starts_with("GET /app/first") {
            vec!["200", "400"]
        } else {
            vec!["400"]
        };
        assert_eq!(statuses, expected, "{raw:?} -> {reply}");
    }
    // The access log is written out every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let access = std::fs::read_to_string(s.dir.path().join(".grove/logs/edge.access.log")).unwrap();
    assert!(
        access.contains("POST /app 400"),
        "the refusal is in the access log: {access}"
    );
    let app_log = s.log("app");
    assert!(app_log.contains("GET /app/first"), "{app_log}");
    assert!(!app_log.contains("smuggled"), "{app_log}");
}

#[test]
fn https_with_the_local_ca_over_h2_and_http1() {
    let tls_port = free_port();
    let (s, _port) = stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT", "https://127.0.0.1:{tls_port}"]
hosts = ["shop.example.org"]
tls = "self-signed"

[services.app]
command = "python3 ECHO"
health = {{ http = "/" }}
route = {{}}
"#
    ));
    let ca = s.path().join(".grove/certs/ca.pem");
    let curl = |extra: &[&str], host: &str| {
        let url = format!("https://{host}:{tls_port}/hello");
        let resolve = format!("shop.example.org:{tls_port}:127.0.0.1");
        let mut args = vec![
            "-sS",
            "--max-time",
            "10",
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_version}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = std::process::Command::new("curl")
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let ca_s = ca.display().to_string();
    for host in ["localhost", "127.0.0.1", "shop.example.org"] {
        let (code, out) = curl(&["--cacert", &ca_s], host);
        assert_eq!(code, Some(0), "{host}: {out}");
        let (json, version) = out.rsplit_once('\n').unwrap();
        assert_eq!(version, "2", "{host}");
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }
    let (code, out) = curl(&["--cacert", &ca_s, "--http1.1"], "localhost");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n1.1"), "{out}");
    // Without the CA the certificate is not trusted.
    let (code, _) = curl(&[], "localhost");
    assert_eq!(code, Some(60));
    let out = s.run(&["trust"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("certs/ca.pem"));
}

#[test]
fn stack_file_limits_cut_off_slow_clients_and_least_conn_balances() {
    let (_s, port) = stack(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]

[edge.limits]
client_header_timeout = "500ms"
client_body_timeout = "500ms"

[services.app]
command = "python3 ECHO"
replicas = 2
env = { NAME = "${PORT}" }
health = { http = "/" }
route = { balance = "least_conn" }
"#,
    );
    // Slowloris: a head trickled in one header line at a time is cut off after 500 ms, even
    // though bytes keep arriving.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for i in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            if writer
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2500),
        "cut off after {took:?}"
    );
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    trickle.join().unwrap();
    // A body that stops arriving: 408 once the body timeout passes.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let r = parse(&got);
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    // Least connections: while one replica is busy with a slow request, the others all go to
    // the idle one (round robin would alternate).
    let slow = std::thread::spawn(move || get(port, "x", "/slow", "").json()["name"].clone());
    std::thread::sleep(Duration::from_millis(400));
    let names: Vec<Value> = (0..6)
        .map(|_| get(port, "x", "/", "").json()["name"].clone())
        .collect();
    let busy = slow.join().unwrap();
    assert!(names.iter().all(|n| n == &names[0]), "{names:?}");
    assert_ne!(names[0], busy, "{names:?} vs {busy}");
}

#[test]
fn reload_under_load_drops_no_request() {
    let (s, port) = stack(
        r#"
[edge]
listen = ["http://127.0.0.1:EDGE_PORT"]

[services.app]
command = "python3 ECHO"
replicas = 2
health = { http = "/" }
route = {}
"#,
    );
    let base = std::fs::read_to_string(s.path().join("grove.toml")).unwrap();
    // A bounded loop of requests over keep-alive connections in two threads, while the route
    // table is swapped again and again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = |stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        std::thread::spawn(move || {
            let mut ok = 0u32;
            let mut failures = Vec::new();
            let mut conn: Option<TcpStream> = None;
            for i in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if conn.is_none() {
                    match TcpStream::connect(("127.0.0.1", port)) {
                        Ok(c) => {
                            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                            conn = Some(c);
                        }
                        Err(e) => {
                            failures.push(format!("request {i}: connect: {e}"));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match keepalive_get(c, &format!("/n{i}")) {
                    Some(200) => ok += 1,
                    other => {
                        failures.push(format!("request {i}: {other:?}"));
                        conn = None;
                    }
                }
            }
            (ok, failures)
        })
    };
    let workers: Vec<_> = (0..2).map(|_| load(stop.clone())).collect();
    let extra = format!(
        "\n[services.other]\ncommand = \"python3 {}\"\nenv = {{ NAME = \"other\" }}\nhealth = {{ http = \"/\" }}\nroute = {{ prefix = \"/other\" }}\n",
        echo_app()
    );
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        let text = if round % 2 == 0 {
            format!("{base}{extra}")
        } else {
            base.clone()
        };
        std::fs::write(s.path().join("grove.toml"), text).unwrap();
        let out = s.run(&["reload"]);
        assert!(out.status.success(), "{}", text_of(&out));
        // The new table is in place: /other goes to its own service only while it exists.
        let want = if round % 2 == 0 { "other" } else { "" };
        s.wait_for("the route table to swap", 10, |_| {
            let r = get(port, "x", "/other", "");
            r.status == 200 && r.json()["name"] == want
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failures) = w.join().unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} requests in the run");
}

fn text_of(o: &std::process::Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// One GET over an open keep-alive connection; the status, or None when the connection broke.
fn keepalive_get(c: &mut TcpStream, path: &str) -> Option<u16> {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = c.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.split_whitespace().nth(1)?.parse().ok();
            }
        }
    }
}
