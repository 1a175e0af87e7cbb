//! The seeds' stacks for real (issue 10), continued from `seeds.rs` (channels and canopy): each example under `examples/` copied to a temp
//! folder and run with its real parts, driven over HTTP(S) as a user would, and stopped
//! leaving nothing behind. Python packages come from the workspace's `.venv` (scripts/test
//! builds it from examples/requirements.txt); servers from Debian's packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use common::example::*;
use common::{free_port, text, wait_until};

#[test]
fn channels_needs_its_env_keys_then_echoes_websockets_through_redis() {
    let (http, https, api) = (free_port(), free_port(), free_port());
    let ex = Example::new(
        "channels",
        &[
            ("CHANNELS_HTTP_PORT", http.to_string()),
            ("CHANNELS_HTTPS_PORT", https.to_string()),
            ("CHANNELS_API_PORT", api.to_string()),
        ],
    );
    let example_env = std::fs::read_to_string(ex.path().join(".env.example")).unwrap();
    let nothing_started = |out: &Output, key: &str| {
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("required variable {key} is not set")),
            "{err}"
        );
        assert!(common::stack_processes(&ex.name).is_empty());
        assert!(!ex.path().join(".grove/grove.sock").exists());
    };
    // No .env at all: the first missing key is named, and nothing starts.
    nothing_started(&ex.grove(&["up", "-d"]), "POSTGRES_USER");
    // One key missing.
    let without: String = example_env
        .lines()
        .filter(|l| !l.starts_with("SECRET_EMAIL_USER_PSWD="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(ex.path().join(".env"), without).unwrap();
    nothing_started(&ex.grove(&["up", "-d"]), "SECRET_EMAIL_USER_PSWD");

    let password = "db-pass-Qw83Zx";
    let env_file = example_env
        .replace("change-me-db-password", password)
        .replace("POSTGRES_USER=channels", "POSTGRES_USER=chanuser")
        .replace("POSTGRES_DB=channels", "POSTGRES_DB=chandb");
    std::fs::write(ex.path().join(".env"), env_file).unwrap();
    ex.up(&[]);
    assert!(!text(&ex.grove(&["ps", "--json"]).stdout).contains(password));
    assert!(!text(&ex.grove(&["check"]).stdout).contains(password));
    let ca = ex.path().join(".grove/certs/ca.pem");

    // 443 -> the front end; it is told where the back end is.
    let (code, body) = https_get(&ca, https, "/");
    assert_eq!(code, 200);
    assert!(body.contains("Channels front end"), "{body}");
    let (_, config) = https_get(&ca, https, "/config.js");
    assert!(
        config.contains(&format!("http://127.0.0.1:{api}")),
        "{config}"
    );
    // /documentation on 443 and docs/ui on 2002 reach the back end; static files the edge.
    let (code, docs) = https_get(&ca, https, "/documentation/");
    assert_eq!(code, 200);
    assert!(docs.contains("Back-end API documentation"), "{docs}");
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        c,
        "GET /docs/ui/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.contains("Back-end API documentation"),
        "{raw}"
    );
    let (code, css) = https_get(&ca, https, "/static/docs/docs.css");
    assert_eq!(code, 200);
    assert!(css.contains("font-family"));

    // A WebSocket echo through the :2002 forward, to everyone in the room, over Redis.
    let url = format!("ws://127.0.0.1:{api}/ws/echo/lobby/");
    let (mut alice, _) = tungstenite::connect(&url).unwrap();
    let (mut bob, _) = tungstenite::connect(&url).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    alice
        .send(tungstenite::Message::text("hello from alice"))
        .unwrap();
    for ws in [&mut alice, &mut bob] {
        assert_eq!(
            ws.read().unwrap(),
            tungstenite::Message::text("hello from alice")
        );
    }
    // While they are connected, the room is a Redis publish/subscribe channel.
    let redis_port = ex.ps()["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "redis")
        .and_then(|u| u["port"].as_u64())
        .unwrap();
    let redis_pw = std::fs::read_to_string(ex.path().join(".grove/secrets/redis")).unwrap();
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &redis_port.to_string(),
            "--no-auth-warning",
            "-a",
            redis_pw.trim(),
        ])
        .args(["PUBSUB", "CHANNELS", "*"])
        .output()
        .unwrap();
    let channels = text(&out.stdout);
    assert!(channels.contains("echo.lobby"), "{channels}");
    let _ = alice.close(None);
    let _ = bob.close(None);

    // The message is in PostgreSQL, in the .env's database, as the .env's user.
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        c,
        "GET /api/messages?room=lobby HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert_eq!(json_body(&raw)["messages"][0], "hello from alice", "{raw}");
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        c,
        "GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let status = json_body(&raw);
    assert_eq!(status["database"], "chandb");
    assert_eq!(status["user"], "chanuser");
    assert_eq!(status["environment"], "development");

    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}

#[test]
fn canopy_record_to_queued_report_to_pdf_with_only_the_edge_beyond_loopback() {
    let (http, https) = (free_port(), free_port());
    let ex = Example::new(
        "canopy",
        &[
            ("CANOPY_HTTP_PORT", http.to_string()),
            ("CANOPY_HTTPS_PORT", https.to_string()),
            (
                "DJANGO_SECRET_KEY",
                "test-only-secret-key-0123456789".into(),
            ),
        ],
    );
    ex.up(&[]);
    let ca = ex.path().join(".grove/certs/ca.pem");

    // A record, through the edge's HTTPS to gunicorn.
    let (code, body) = https_call(
        &ca,
        https,
        "/records",
        &[
            "-d",
            r#"{"title":"Site survey 7","body":"North field\nSouth field"}"#,
        ],
    );
    assert_eq!(code, 201, "{body}");
    let record = json_body(&body)["id"].as_i64().unwrap();
    let (code, _) = https_call(&ca, https, "/records", &["-d", "[]"]);
    assert_eq!(code, 400);

    // A report job goes to the Celery worker over RabbitMQ; the docserver renders the
    // .docx, LibreOffice makes the PDF.
    let queue = |record: i64| {
        let (code, body) = https_call(
            &ca,
            https,
            &format!("/records/{record}/report"),
            &["-X", "POST"],
        );
        assert_eq!(code, 202, "{body}");
        assert_eq!(json_body(&body)["status"], "queued");
        json_body(&body)["report"].as_i64().unwrap()
    };
    let status = |report: i64| {
        let (_, body) = https_call(&ca, https, &format!("/reports/{report}"), &[]);
        json_body(&body)
    };
    let report = queue(record);
    wait_until("the report job", 120, || {
        matches!(status(report)["status"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(status(report)["status"], "done", "{}", status(report));
    let pdf_file = ex.path().join("report.pdf");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .arg("-o")
        .arg(&pdf_file)
        .args(["-w", "%{http_code} %{content_type}"])
        .arg(format!("https://localhost:{https}/reports/{report}/pdf"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "200 application/pdf");
    let pdf = std::fs::read(&pdf_file).unwrap();
    assert!(pdf.starts_with(b"%PDF"), "{:?}", &pdf[..pdf.len().min(16)]);
    assert!(pdf.len() > 1000);
    let worker = text(&ex.grove(&["logs", "-n", "200", "worker"]).stdout);
    assert!(
        worker.contains("reports.tasks.make_report") && worker.contains("succeeded"),
        "{worker}"
    );
    let docserver = text(&ex.grove(&["logs", "-n", "50", "docserver"]).stdout);
    assert!(docserver.contains("POST /render"), "{docserver}");

    // With the converter stopped, the job fails and says why; the PDF is not there.
    assert!(ex.grove(&["stop", "pdf"]).status.success());
    let failed = queue(record);
    wait_until("the failing job", 120, || {
        status(failed)["status"] == "failed"
    });
    assert!(
        status(failed)["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{}",
        status(failed)
    );
    let (code, _) = https_call(&ca, https, &format!("/reports/{failed}/pdf"), &[]);
    assert_eq!(code, 409);
    assert!(ex.grove(&["start", "pdf"]).status.success());

    // Only the edge would face the network: every unit listens on loopback here, and the
    // production environment moves only the edge to 0.0.0.0.
    let mut pids = common::stack_processes(&ex.name);
    pids.push(ex.ps()["pid"].as_i64().unwrap() as i32);
    let addrs = listening(&pids);
    assert!(addrs.len() >= 8, "{addrs:?}");
    for a in &addrs {
        let ip: std::net::SocketAddr = a.parse().unwrap();
        assert!(ip.ip().is_loopback(), "{a} is not loopback: {addrs:?}");
    }
    let out = ex.grove(&["check", "--json", "--env", "production"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listen: Vec<String> = plan["edge"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert!(listen.iter().all(|l| l.contains("0.0.0.0")), "{listen:?}");
    for (name, unit) in plan["units"].as_object().unwrap() {
        assert_eq!(unit["bind"], "127.0.0.1", "{name}");
    }

    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}
