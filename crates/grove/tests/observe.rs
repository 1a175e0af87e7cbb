//! Observability for real: the admin listener's token, `/metrics` parsed by Python's
//! `prometheus_client` after a known load, stored samples, the live event stream, and secrets
//! kept out of every answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, text, venv_tool, workspace, Stack};

/// One HTTP/1.1 request to the admin listener; (status, headers+body).
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

struct Observed {
    s: Stack,
    edge: u16,
    admin: u16,
    token: String,
}

fn observed() -> Observed {
    let edge = free_port();
    let admin = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{edge}"]

[admin]
listen = "127.0.0.1:{admin}"
sample_interval = "300ms"

[services.web]
command = "python3 -m http.server ${{PORT}} --bind 127.0.0.1"
health = {{ http = "/" }}
route = {{ prefix = "/" }}

[services.talker]
command = ["sh", "-c", "echo my key is $$API_KEY; sleep 600"]
env = {{ API_KEY = "k3y-never-shown-77" }}
"#
    ));
    s.up();
    let token_file = s.path().join(".grove/admin.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_string();
    Observed {
        s,
        edge,
        admin,
        token,
    }
}

#[test]
fn metrics_reflect_a_known_load_and_parse_as_prometheus_text() {
    let o = observed();
    for _ in 0..20 {
        let (code, _) = request(o.edge, "GET", "/", "", "");
        assert_eq!(code, 200);
    }
    for _ in 0..3 {
        let (code, _) = request(o.edge, "GET", "/missing", "", "");
        assert_eq!(code, 404);
    }
    // A crash counts as a restart.
    let pid = o.s.pid("web").unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    o.s.wait_for("web restarted", 20, |s| {
        s.unit("web")["restarts"] == 1 && s.unit("web")["health"] == "healthy"
    });

    let auth = format!("Authorization: Bearer {}\r\n", o.token);
    let (code, reply) = request(o.admin, "GET", "/metrics", &auth, "");
    assert_eq!(code, 200, "{reply}");
    assert!(
        reply.contains("content-type: text/plain; version=0.0.4"),
        "{reply}"
    );
    let metrics = body(&reply).to_string();
    assert!(!metrics.contains("k3y-never-shown-77"));
    // Python's prometheus_client parses it; print what we check as JSON.
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + "|" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k in ("code", "unit", "le"))
        out[key] = s.value
    out["type:" + fam.name] = fam.type
print(json.dumps(out))
"#;
    let mut child = Command::new(venv_tool("python3"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused it: {}\n{metrics}",
        text(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let get = |k: &str| {
        parsed[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} in {parsed}"))
    };
    assert_eq!(get("grove_http_requests_total|code=2xx"), 20.0);
    assert_eq!(get("grove_http_requests_total|code=4xx"), 3.0);
    assert_eq!(get("grove_http_request_duration_seconds_count|"), 23.0);
    assert_eq!(
        get("grove_http_request_duration_seconds_bucket|le=+Inf"),
        23.0
    );
    assert_eq!(
        parsed["type:grove_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(get("grove_unit_restarts_total|unit=web"), 1.0);
    assert_eq!(get("grove_unit_healthy|unit=web"), 1.0);
    assert!(get("grove_unit_resident_memory_bytes|unit=web") > 1_000_000.0);
    assert!(get("grove_unit_open_fds|unit=web") >= 3.0);
    assert!(get("grove_host_memory_total_bytes|") > 0.0);

    // Samples are stored: the route's request rate and the host's CPU have points.
    o.s.wait_for("stored samples", 10, |_| {
        let (_, r) = request(
            o.admin,
            "GET",
            "/v1/metrics?series=host.cpu&since=60",
            &auth,
            "",
        );
        let v: serde_json::Value = serde_json::from_str(body(&r)).unwrap_or_default();
        v["points"].as_array().is_some_and(|p| p.len() >= 2)
    });
    let (_, r) = request(o.admin, "GET", "/v1/series", &auth, "");
    let series: Vec<String> = serde_json::from_str(body(&r)).unwrap();
    for s in ["host.cpu", "host.mem_used", "unit.web.rss", "route.*/.rps"] {
        assert!(series.iter().any(|x| x == s), "{s} missing from {series:?}");
    }
}

#[test]
fn the_admin_listener_refuses_requests_without_the_token() {
    let o = observed();
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/v1/status"),
        ("POST", "/v1/restart"),
        ("GET", "/"),
    ] {
        let (code, reply) = request(o.admin, method, path, "", "{\"targets\":[\"web\"]}");
        assert_eq!(code, 401, "{method} {path}: {reply}");
        assert!(!reply.contains("web"), "{reply}");
        let (code, _) = request(
            o.admin,
            method,
            path,
            "Authorization: Bearer wrong-token-000000000000\r\n",
            "",
        );
        assert_eq!(code, 401);
    }
    // The browser way: /?token= sets a cookie; a change with the cookie alone (as a cross-site
    // form would send it) is refused, with the dashboard's header it is done.
    let (code, reply) = request(o.admin, "GET", &format!("/?token={}", o.token), "", "");
    assert_eq!(code, 303, "{reply}");
    assert!(reply.contains("HttpOnly"), "{reply}");
    let cookie = format!("Cookie: grove_token={}\r\n", o.token);
    let (code, reply) = request(o.admin, "GET", "/", &cookie, "");
    assert_eq!(code, 200);
    assert!(reply.contains("<title>grove</title>"));
    let (code, _) = request(
        o.admin,
        "POST",
        "/v1/restart",
        &cookie,
        "{\"targets\":[\"web\"]}",
    );
    assert_eq!(code, 401);
    let (code, reply) = request(
        o.admin,
        "POST",
        "/v1/restart",
        &format!("{cookie}X-Grove: 1\r\n"),
        "{\"targets\":[\"web\"]}",
    );
    assert_eq!(code, 200, "{reply}");
    // No answer carries a secret: the plan masks it, the log tail scrubs it.
    let auth = format!("Authorization: Bearer {}\r\n", o.token);
    o.s.wait_for("talker said it", 10, |s| {
        s.log("talker").contains("my key is")
    });
    for path in [
        "/v1/plan",
        "/v1/logs?unit=talker",
        "/v1/status",
        "/v1/events?limit=100",
        "/metrics",
    ] {
        let (code, reply) = request(o.admin, "GET", path, &auth, "");
        assert_eq!(code, 200, "{path}: {reply}");
        assert!(
            !reply.contains("k3y-never-shown-77"),
            "{path} leaks: {reply}"
        );
    }
    let (_, reply) = request(o.admin, "GET", "/v1/logs?unit=talker", &auth, "");
    assert!(reply.contains("my key is ***"), "{reply}");
}

#[test]
fn an_event_reaches_the_stream_within_a_second() {
    let o = observed();
    let mut s = TcpStream::connect(("127.0.0.1", o.admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        o.token
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    // Headers, then the stream's opening comment.
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.contains("grove events") {
            break;
        }
    }
    let start = Instant::now();
    let out = o.s.run(&["stop", "talker"]);
    assert!(out.status.success());
    let mut seen = false;
    while start.elapsed() < Duration::from_secs(3) {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.starts_with("data:")
            && line.contains("\"unit\":\"talker\"")
            && line.contains("\"kind\":\"stopped\"")
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "no stopped event on the stream");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let o = observed();
    let root = workspace();
    let script = root.join("tests/browser/dashboard.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: scripts/test installs it (npm ci in tests/browser)"
    );
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    // A couple of samples for the chart.
    let auth = format!("Authorization: Bearer {}\r\n", o.token);
    o.s.wait_for("samples", 10, |_| {
        let (_, r) = request(
            o.admin,
            "GET",
            "/v1/metrics?series=host.cpu&since=60",
            &auth,
            "",
        );
        body(&r).matches("],[").count() >= 1
    });
    let url = format!("http://127.0.0.1:{}/?token={}", o.admin, o.token);
    let out = Command::new("node")
        .arg(&script)
        .args([url.as_str(), "web"])
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["url"],
        format!("http://127.0.0.1:{}/", o.admin),
        "{report}"
    );
    assert_eq!(
        report["units"],
        serde_json::json!(["web", "talker"]),
        "{report}"
    );
    assert_eq!(report["state"], "healthy", "{report}");
    assert!(report["chartPoints"].as_u64().unwrap_or(0) >= 1, "{report}");
    assert_eq!(report["lastAction"], "restart web", "{report}");
    assert_ne!(report["pidAfter"], report["pidBefore"], "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot");
    // The restart really happened.
    assert_eq!(
        o.s.pid("web").map(|p| p.to_string()),
        report["pidAfter"].as_str().map(String::from)
    );
}

const HOOK_SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[2], "ab") as f:
            f.write(body + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn chosen_events_reach_a_webhook() {
    let hook = free_port();
    let s = Stack::new("");
    let received = s.path().join("received.jsonl");
    s.write_stack(&format!(
        r#"[admin]
webhook = "http://127.0.0.1:{hook}/hook"
notify = ["stopped", "started"]

[services.receiver]
command = ["python3", "-c", {script:?}, "{hook}", "{file}"]
health = {{ tcp = "127.0.0.1:{hook}" }}

[services.worker]
command = "sleep 600"
depends_on = {{ receiver = "healthy" }}
"#,
        script = HOOK_SERVER,
        file = received.display()
    ));
    s.up();
    let out = s.run(&["stop", "worker"]);
    assert!(out.status.success());
    s.wait_for("the webhook got the stop", 10, |_| {
        std::fs::read_to_string(&received).is_ok_and(|t| t.contains("\"kind\":\"stopped\""))
    });
    let text = std::fs::read_to_string(&received).unwrap();
    let stopped: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "stopped")
        .unwrap();
    assert_eq!(stopped["unit"], "worker");
    assert_eq!(stopped["stack"], s.name.as_str());
    // Only the chosen kinds: no "healthy" events were sent.
    assert!(!text.contains("\"kind\":\"healthy\""), "{text}");
}

const CONSUMER: &str = r#"
import pika, sys
url, exchange = sys.argv[1], sys.argv[2]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
q = ch.queue_declare(queue="", exclusive=True).method.queue
ch.queue_bind(queue=q, exchange=exchange, routing_key="grove.#")
print("ready", flush=True)
for method, props, body in ch.consume(q, inactivity_timeout=20):
    if method is None:
        print("timeout", flush=True)
        break
    print(method.routing_key, props.content_type, body.decode(), flush=True)
    if b'"kind":"stopped"' in body:
        break
conn.close()
"#;

#[test]
fn events_are_published_to_the_stacks_rabbitmq() {
    let s = Stack::new("");
    s.write_stack(
        r#"[admin]
amqp = "${mq.url}"
amqp_exchange = "grove.events"
notify = ["*"]

[services.mq]
recipe = "rabbitmq"

[services.worker]
command = "sleep 600"
depends_on = { mq = "healthy" }
"#,
    );
    let out = s.run(&["up", "-d", "--wait-timeout", "45s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let password = std::fs::read_to_string(s.path().join(".grove/secrets/mq")).unwrap();
    let port = s.unit("mq")["port"].as_u64().unwrap();
    let url = format!("amqp://grove:{}@127.0.0.1:{port}/%2F", password.trim());
    let mut consumer = Command::new(venv_tool("python3"))
        .args(["-c", CONSUMER, &url, "grove.events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(consumer.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{line}");
    let out = s.run(&["stop", "worker"]);
    assert!(out.status.success());
    let mut got = String::new();
    for _ in 0..50 {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        got.push_str(&line);
        if line.contains("\"kind\":\"stopped\"") || line.starts_with("timeout") {
            break;
        }
    }
    let _ = consumer.kill();
    let _ = consumer.wait();
    let stopped = got
        .lines()
        .find(|l| l.contains("\"kind\":\"stopped\""))
        .unwrap_or_else(|| panic!("no stopped event published:\n{got}"));
    assert!(
        stopped.starts_with(&format!(
            "grove.{}.worker.stopped application/json ",
            s.name
        )),
        "{stopped}"
    );
    // The broker's password never shows in the Plan grove prints.
    let plan = text(&s.run(&["check", "--json"]).stdout);
    assert!(!plan.contains(password.trim()));
}
