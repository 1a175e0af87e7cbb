//! The differential test of the edge's two HTTP/1 paths (issue 20): a corpus of raw requests
//! (smuggling classics, Host confusion, the quirks upstreams read differently, and what the
//! fuzzer found) is sent to two edges built from the same Plan, one with the fast path and
//! one with every request through hyper, in front of one recording upstream. For each input
//! both must refuse it the same way or deliver the same requests upstream (method, target,
//! forwarded headers, body) and the same responses downstream (statuses and bodies).
//!
//! A second corpus does the same for upstream responses: the recording upstream answers a
//! request for `/r/NAME` with the raw response NAME.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_edge::{Edge, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream received: one request, normalised (header names lowercased and sorted,
/// the request id left out: it is new per request).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The raw responses the upstream can be asked for (`/r/NAME`).
fn canned(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "conn-cl" => b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
        "conn-te" => b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "two-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "hop" => b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nhello",
        "no-length" => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
        "status-999" => b"HTTP/1.1 999 Odd\r\nContent-Length: 5\r\n\r\nhello",
        // gunicorn's way: chunks, then the close.
        "chunked-close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "big" => big(false),
        "big-chunked" => big(true),
        _ => return None,
    })
}

/// The body of `/r/big` and `/r/big-chunked`: 200,000 bytes, larger than any buffer.
fn big_body() -> Vec<u8> {
    (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A 200,000-byte response, by its length or in chunks of 50,000.
fn big(chunked: bool) -> &'static [u8] {
    static LENGTH: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    static CHUNKED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body = big_body();
    if chunked {
        CHUNKED.get_or_init(|| {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for piece in body.chunks(50_000) {
                r.extend_from_slice(format!("{:x};x=y\r\n", piece.len()).as_bytes());
                r.extend_from_slice(piece);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            r
        })
    } else {
        LENGTH.get_or_init(|| {
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(&body);
            r
        })
    }
}

const DEFAULT: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

/// A HEAD answered with a body anyway (the body must not be read as the next response).
const HEAD_WITH_BODY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

async fn upstream(log: Log) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_upstream(s, log.clone()));
        }
    });
    addr
}

async fn serve_upstream(mut s: TcpStream, log: Log) {
    let mut buf = Vec::new();
    loop {
        // A whole head.
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => break n,
                Ok(httparse::Status::Partial) => {}
                Err(_) => return,
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let _ = req.parse(&buf);
        let method = req.method.unwrap_or_default().to_string();
        let target = req.path.unwrap_or_default().to_string();
        let mut seen: Vec<(String, String)> = req
            .headers
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case("x-request-id"))
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        seen.sort();
        let length: usize = seen
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let chunked = seen
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        buf.drain(..head_len);
        let body = if chunked {
            match read_chunked(&mut s, &mut buf).await {
                Some(b) => b,
                None => return,
            }
        } else {
            while buf.len() < length {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length).collect()
        };
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers: seen,
            body,
        });
        let answer = if method == "HEAD" {
            HEAD_WITH_BODY
        } else {
            target
                .strip_prefix("/r/")
                .and_then(canned)
                .unwrap_or(DEFAULT)
        };
        if s.write_all(answer).await.is_err() {
            return;
        }
        if answer.windows(17).any(|w| w == b"Connection: close") {
            // The close right after the answer, as gunicorn's sync workers do.
            return;
        }
    }
}

/// A chunked body's data (the test upstream's own simple reading).
async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        while buf.len() < line_end + 2 + size + 2 {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        if size == 0 {
            // No trailers in this corpus.
            buf.drain(..line_end + 4);
            return Some(body);
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
    }
}

/// An edge on a free loopback port routing `b.test` to the upstream under `/`, anything else
/// to it too (the default host), with the fast path on or off.
async fn edge(dir: &Path, up: SocketAddr, fast_path: bool) -> (Edge, u16) {
    let text = format!(
        r#"
[stack]
name = "diff"

[edge]
listen = ["http://127.0.0.1:0"]

[services.app]
upstreams = ["{up}"]
route = {{ prefix = "/" }}

[services.bee]
upstreams = ["{up}"]
route = {{ prefix = "/", host = "b.test" }}
"#
    );
    let loaded = grove_config::load_str(
        &dir.join("grove.toml"),
        &text,
        &grove_config::LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let plan = grove_plan::build(&loaded.stack, None).unwrap();
    let limits = Limits {
        fast_path,
        ..Limits::default()
    };
    let state = dir.join(if fast_path { "fast" } else { "hyper" });
    let e = Edge::start(&plan, &state, limits).await.unwrap();
    let port = e.bound()[0].port();
    (e, port)
}

/// What the client saw: each response's status and body, in order (bodies of the edge's own
/// error pages left out: they carry the request id).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    statuses: Vec<u16>,
    bodies: Vec<Vec<u8>>,
}

/// Sends `raw`, closes the writing side, and reads what comes back until the edge closes.
async fn exchange(port: u16, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(raw).await.unwrap();
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

/// Splits a byte stream of responses into statuses and bodies; the first `heads` responses
/// answer HEAD requests (no body, whatever their length says).
fn answers(mut raw: &[u8], mut heads: usize) -> Answer {
    let mut a = Answer {
        statuses: Vec::new(),
        bodies: Vec::new(),
    };
    while !raw.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = res.parse(raw) else {
            a.statuses.push(0);
            break;
        };
        let status = res.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // An interim response (`100 Continue`): its head only.
            raw = &raw[n..];
            continue;
        }
        let get = |name: &str| {
            res.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let ours = get("content-type").is_some_and(|t| t.starts_with("text/html"));
        let (body, used) = if heads > 0 {
            heads -= 1;
            (Vec::new(), 0)
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            dechunk(&raw[n..])
        } else if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
            let len = len.min(raw.len() - n);
            (raw[n..n + len].to_vec(), len)
        } else if status == 304 || status == 204 {
            (Vec::new(), 0)
        } else {
            (raw[n..].to_vec(), raw.len() - n)
        };
        a.statuses.push(status);
        a.bodies
            .push(if ours { b"(edge page)".to_vec() } else { body });
        raw = &raw[n + used..];
    }
    a
}

fn dechunk(mut raw: &[u8]) -> (Vec<u8>, usize) {
    let total = raw.len();
    let mut body = Vec::new();
    while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..i])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            raw = raw.get(i + 4..).unwrap_or_default();
            break;
        }
        body.extend_from_slice(raw.get(i + 2..i + 2 + size).unwrap_or_default());
        raw = raw.get(i + 2 + size + 2..).unwrap_or_default();
    }
    (body, total - raw.len())
}

/// One input's result on one edge: the answer and what the upstream saw.
async fn run(port: u16, log: &Log, raw: &[u8]) -> (Answer, Vec<Seen>) {
    log.lock().unwrap().clear();
    let got = answers(
        &exchange(port, raw).await,
        usize::from(raw.starts_with(b"HEAD ")),
    );
    // The upstream's log is written before it answers; give a smuggled request a moment.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let seen = std::mem::take(&mut *log.lock().unwrap());
    (got, seen)
}

/// One input: its name, its bytes, and the statuses expected (when known).
type Case = (&'static str, Vec<u8>, Option<Vec<u16>>);

/// The corpus: (name, raw bytes, expected statuses when both paths must agree on them).
fn corpus() -> Vec<Case> {
    let c = |s: &str| s.as_bytes().to_vec();
    vec![
        // Issue 20, defect 1: the exact reproducer.
        (
            "connection-names-content-length",
            c("POST /attacker HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: content-length\r\nContent-Length: 60\r\n\r\nGET /SMUG-poison/slow?ms=2000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            Some(vec![400]),
        ),
        (
            "connection-names-transfer-encoding",
            c("POST / HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            Some(vec![400]),
        ),
        (
            "connection-names-host",
            c("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Host\r\n\r\n"),
            Some(vec![400]),
        ),
        (
            "cl-te",
            c("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
            Some(vec![400]),
        ),
        (
            "two-cl",
            c("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
            Some(vec![400]),
        ),
        // Defect 3: Host confusion.
        (
            "two-hosts",
            c("GET / HTTP/1.1\r\nHost: b.test\r\nHost: 127.0.0.1\r\n\r\n"),
            Some(vec![400]),
        ),
        ("no-host", c("GET / HTTP/1.1\r\n\r\n"), Some(vec![400])),
        ("http10-no-host", c("GET / HTTP/1.0\r\n\r\n"), Some(vec![200])),
        (
            "absolute-form",
            c("GET http://b.test/abs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            Some(vec![200]),
        ),
        // Defect 4.
        (
            "underscore-header",
            c("GET /u HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-Kept: 1\r\n\r\n"),
            Some(vec![200]),
        ),
        (
            "connect",
            c("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"),
            Some(vec![405]),
        ),
        (
            "head-then-get",
            c("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /after-head HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(vec![200, 200]),
        ),
        // Ordinary traffic, which both must forward alike.
        (
            "keep-alive-pair",
            c("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
            Some(vec![200, 200]),
        ),
        (
            "hop-by-hop-named",
            c("GET /hop HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n"),
            Some(vec![200]),
        ),
        (
            "client-request-id-kept",
            c("GET /id HTTP/1.1\r\nHost: A.Test:80\r\nX-Request-Id: abc-123\r\n\r\n"),
            Some(vec![200]),
        ),
        (
            "obs-fold",
            c("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n"),
            None,
        ),
        (
            "space-before-colon",
            c("GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"),
            None,
        ),
        (
            "bare-lf",
            c("GET /lf HTTP/1.1\nHost: a\n\n"),
            None,
        ),
        (
            "te-obfuscated",
            c("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\nabc"),
            Some(vec![400]),
        ),
        (
            "chunked-body",
            c("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            Some(vec![200]),
        ),
        // HTTP Garden's quirks list (narfindustries/http-garden, `quirks.yml`): what the
        // servers behind a proxy read differently, as inputs both paths must agree on.
        ("garden-http09", c("GET /\r\n\r\n"), Some(vec![400])),
        ("garden-method-hash", c("G#T /m HTTP/1.1\r\nHost: a\r\n\r\n"), None),
        ("garden-method-digit", c("GET1 /m HTTP/1.1\r\nHost: a\r\n\r\n"), None),
        ("garden-method-lower", c("get /m HTTP/1.1\r\nHost: a\r\n\r\n"), None),
        ("garden-method-dav", c("PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![200])),
        ("garden-asterisk-form", c("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), None),
        (
            "garden-duplicate-header",
            c("GET /dup HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n"),
            Some(vec![200]),
        ),
        (
            "garden-max-forwards",
            c("GET /mf HTTP/1.1\r\nHost: a\r\nMax-Forwards: 3\r\n\r\n"),
            Some(vec![200]),
        ),
        ("garden-post-no-length", c("POST /p HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![200])),
        (
            "garden-dash-and-underscore",
            c("GET /du HTTP/1.1\r\nHost: a\r\nX-Real-IP: 1.1.1.1\r\nX_Real_IP: 6.6.6.6\r\n\r\n"),
            Some(vec![200]),
        ),
        ("garden-nul-in-name", c("GET / HTTP/1.1\r\nHost: a\r\nX-A\0: 1\r\n\r\n"), None),
        ("garden-nul-in-value", c("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n"), None),
        ("garden-cr-in-value", c("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"), None),
        ("garden-leading-crlf", c("\r\nGET /lead HTTP/1.1\r\nHost: a\r\n\r\n"), None),
        ("garden-version-12", c("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), None),
        ("garden-version-lower", c("GET / http/1.1\r\nHost: a\r\n\r\n"), None),
        (
            "garden-te-identity",
            c("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc"),
            Some(vec![400]),
        ),
        (
            "garden-te-not-last",
            c("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            None,
        ),
        (
            "garden-chunk-extension",
            c("POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\n"),
            Some(vec![200]),
        ),
        (
            "garden-chunk-size-hex-prefix",
            c("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"),
            None,
        ),
        (
            "garden-cl-plus",
            c("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"),
            None,
        ),
        (
            "garden-cl-leading-zeros",
            c("POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc"),
            None,
        ),
        (
            "garden-cl-list",
            c("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc"),
            None,
        ),
        ("garden-host-userinfo", c("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), None),
        ("garden-host-empty", c("GET / HTTP/1.1\r\nHost:\r\n\r\n"), None),
        ("garden-host-space", c("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), None),
        (
            "garden-expect-continue",
            c("POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"),
            None,
        ),
        (
            "garden-space-in-target",
            c("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            None,
        ),
        (
            "garden-fragment-in-target",
            c("GET /f#frag HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(vec![400]),
        ),
        // Upstream responses (the second corpus).
        ("resp-conn-cl", c("GET /r/conn-cl HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![502])),
        ("resp-conn-te", c("GET /r/conn-te HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![502])),
        ("resp-two-cl", c("GET /r/two-cl HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![502])),
        ("resp-chunked", c("GET /r/chunked HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![200])),
        ("resp-hop", c("GET /r/hop HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![200])),
        ("resp-no-length", c("GET /r/no-length HTTP/1.1\r\nHost: a\r\n\r\n"), Some(vec![200])),
    ]
}

/// Headers whose values legitimately differ between the two edges' upstream requests.
fn normalise(mut seen: Vec<Seen>) -> Vec<Seen> {
    for s in &mut seen {
        // hyper writes `Connection: keep-alive` on nothing; the fast path neither. Both send
        // the same forwarded headers; hyper folds repeated ones, so compare them as sets.
        s.headers.retain(|(n, _)| n != "connection");
    }
    seen
}

#[tokio::test(flavor = "current_thread")]
async fn both_paths_give_the_same_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    let (_fast, fast_port) = edge(dir.path(), up, true).await;
    let (_hyper, hyper_port) = edge(dir.path(), up, false).await;
    let mut failures = Vec::new();
    for (name, raw, expected) in corpus() {
        let (fast_answer, fast_seen) = run(fast_port, &log, &raw).await;
        let (hyper_answer, hyper_seen) = run(hyper_port, &log, &raw).await;
        let (fast_seen, hyper_seen) = (normalise(fast_seen), normalise(hyper_seen));
        if fast_answer != hyper_answer {
            failures.push(format!(
                "{name}: the paths answered differently\n  fast:  {fast_answer:?}\n  hyper: {hyper_answer:?}"
            ));
        }
        if fast_seen != hyper_seen {
            failures.push(format!(
                "{name}: the upstream saw different requests\n  fast:  {fast_seen:#?}\n  hyper: {hyper_seen:#?}"
            ));
        }
        if let Some(want) = expected {
            if fast_answer.statuses != want {
                failures.push(format!(
                    "{name}: expected {want:?}, got {:?}",
                    fast_answer.statuses
                ));
            }
        }
        // Nothing refused reaches the upstream, and nothing ever smuggles a second request.
        if fast_answer.statuses.first() == Some(&400) && !fast_seen.is_empty() {
            failures.push(format!("{name}: refused but forwarded: {fast_seen:?}"));
        }
        if fast_seen
            .iter()
            .chain(&hyper_seen)
            .any(|s| s.target.contains("SMUG"))
        {
            failures.push(format!("{name}: a smuggled request reached the upstream"));
        }
        check_specifics(name, &fast_seen, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What particular inputs must have delivered upstream (checked on the fast edge's record,
/// which the comparison ties to the hyper edge's).
fn check_specifics(name: &str, seen: &[Seen], failures: &mut Vec<String>) {
    let header = |s: &Seen, n: &str| {
        s.headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let Some(first) = seen.first() else {
        return;
    };
    match name {
        "absolute-form" if header(first, "host") != ["b.test"] || first.target != "/abs" => {
            failures.push(format!(
                "{name}: the authority that routed must be the Host forwarded: {first:?}"
            ));
        }
        "underscore-header" => {
            if !header(first, "x_forwarded_for").is_empty() || header(first, "x-kept") != ["1"] {
                failures.push(format!("{name}: underscored names are dropped: {first:?}"));
            }
            if header(first, "x-forwarded-for") != ["127.0.0.1"] {
                failures.push(format!("{name}: X-Forwarded-For is the peer: {first:?}"));
            }
        }
        "hop-by-hop-named" => {
            for hop in ["x-hop", "keep-alive", "te"] {
                if !header(first, hop).is_empty() {
                    failures.push(format!("{name}: {hop} was forwarded: {first:?}"));
                }
            }
        }
        "client-request-id-kept" if header(first, "host") != ["A.Test:80"] => {
            failures.push(format!("{name}: the Host is forwarded as sent: {first:?}"));
        }
        _ => {}
    }
}

/// A HEAD answered with a body must not poison the pooled upstream connection for another
/// client (issue 20, defect 4).
#[tokio::test(flavor = "current_thread")]
async fn a_head_answered_with_a_body_poisons_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    for fast in [true, false] {
        let (_e, port) = edge(dir.path(), up, fast).await;
        let mut statuses = BTreeMap::new();
        for i in 0..5 {
            let head = answers(
                &exchange(port, b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n").await,
                1,
            );
            let get = answers(
                &exchange(port, b"GET /g HTTP/1.1\r\nHost: a\r\n\r\n").await,
                0,
            );
            statuses.insert(i, (head.statuses, get.statuses, get.bodies));
        }
        for (i, (head, get, bodies)) in statuses {
            assert_eq!(head, [200], "fast={fast} round {i}");
            assert_eq!(get, [200], "fast={fast} round {i}");
            assert_eq!(bodies, [b"ok".to_vec()], "fast={fast} round {i}");
        }
    }
}

/// The smuggling reproducer's second half: after the attack, another client's request on a
/// fresh connection gets its own response, not the smuggled one's.
#[tokio::test(flavor = "current_thread")]
async fn no_response_queue_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let up = upstream(log.clone()).await;
    for fast in [true, false] {
        let (_e, port) = edge(dir.path(), up, fast).await;
        let attack = b"POST /attacker HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: content-length\r\nContent-Length: 60\r\n\r\nGET /SMUG-poison/slow?ms=2000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        let a = answers(&exchange(port, attack).await, 0);
        assert_eq!(a.statuses, [400], "fast={fast}");
        let victim = answers(
            &exchange(port, b"GET /r/chunked HTTP/1.1\r\nHost: a\r\n\r\n").await,
            0,
        );
        assert_eq!(victim.statuses, [200], "fast={fast}");
        assert_eq!(victim.bodies, [b"hello".to_vec()], "fast={fast}");
        assert!(
            !log.lock()
                .unwrap()
                .iter()
                .any(|s| s.target.contains("SMUG")),
            "fast={fast}: smuggled"
        );
    }
}

/// Issue 20, defect 4: an HTTP/2 header list over `max_header_bytes` gets 431 on its own
/// stream; the connection stays up and its next request is served.
#[tokio::test]
async fn an_oversized_h2_header_list_gets_431_on_its_stream_only() {
    use http_body_util::{BodyExt, Empty};
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let up = upstream(log.clone()).await;
    let (_edge, port) = edge(dir.path(), up, true).await;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |big: bool| {
        let mut r = hyper::Request::get(format!("http://127.0.0.1:{port}/h2"));
        if big {
            r = r.header("x-big", "a".repeat(Limits::default().max_header_bytes + 1));
        }
        r.body(Empty::<bytes::Bytes>::new()).unwrap()
    };
    let res = send.send_request(request(true)).await.unwrap();
    assert_eq!(res.status(), 431);
    send.ready().await.expect("the connection survives the 431");
    let res = send.send_request(request(false)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes().as_ref(),
        b"ok"
    );
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "only the small request went upstream: {seen:?}"
    );
}

/// Issue 24: HTTP/2 streams go upstream through the fast path's HTTP/1.1 client. Many at once
/// on one connection, every framing of the upstream's answer (length, chunks, up to the close,
/// larger than any buffer) arrives whole, and a request body arrives with its length.
#[tokio::test]
async fn h2_streams_get_every_framing_whole_through_the_pooled_client() {
    use http_body_util::{BodyExt, Full};
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let up = upstream(log.clone()).await;
    let (_edge, port) = edge(dir.path(), up, true).await;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/r/chunked", b"hello".to_vec()),
        ("/r/chunked-close", b"hello".to_vec()),
        ("/r/no-length", b"hello".to_vec()),
        ("/r/big", big_body()),
        ("/r/big-chunked", big_body()),
        ("/", b"ok".to_vec()),
    ];
    let mut streams = Vec::new();
    for round in 0..8 {
        for (path, want) in &cases {
            let mut send = send.clone();
            let (path, want) = (path.to_string(), want.clone());
            streams.push(tokio::spawn(async move {
                let post = round % 2 == 1;
                let req = hyper::Request::builder()
                    .method(if post { "POST" } else { "GET" })
                    .uri(format!("http://127.0.0.1:{port}{path}"))
                    .body(Full::new(bytes::Bytes::from(if post {
                        format!("body {round}")
                    } else {
                        String::new()
                    })))
                    .unwrap();
                send.ready().await.unwrap();
                let res = send.send_request(req).await.unwrap();
                assert_eq!(res.status(), 200, "{path}");
                assert!(res.headers().get("transfer-encoding").is_none(), "{path}");
                let got = res.into_body().collect().await.unwrap().to_bytes();
                assert!(
                    got.as_ref() == want.as_slice(),
                    "{path}: {} bytes",
                    got.len()
                );
            }));
        }
    }
    for s in streams {
        s.await.unwrap();
    }
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 48);
    for s in seen.iter().filter(|s| s.method == "POST") {
        let length = s.headers.iter().find(|(n, _)| n == "content-length");
        assert_eq!(
            length.map(|(_, v)| v.parse::<usize>().unwrap()),
            Some(s.body.len()),
            "{s:?}"
        );
        assert!(String::from_utf8_lossy(&s.body).starts_with("body "));
    }
}
