//! `socket = true`: grove opens a unit's port and hands gunicorn the listening socket
//! (systemd's protocol), so a kill -9 of the app server or a `grove stop` of it under a
//! GET+POST load fails no request: connections made while it restarts wait in the socket's
//! backlog for the next process, and those that reach it while it stops for good are
//! answered "not served" by its grove and sent to the other app server by the edge in front
//! (the same path a web tier on another host takes, issue 26).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn fixtures() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .display()
        .to_string()
}

/// Two gunicorn app servers on fixed ports, socket-activated, and a front route over both
/// as remote upstreams (what the web tier of a multi-host layout has).
fn stack(s: &Stack, edge: u16, app1: u16, app2: u16, socket: bool) {
    let gunicorn = venv_tool("gunicorn");
    let app = |name: &str, port: u16| {
        format!(
            r#"
[services.{name}]
command = "{gunicorn} --workers 2 --chdir {dir} --bind 127.0.0.1:{port} --graceful-timeout 5 wsgi_records:app"
port = {port}
socket = {socket}
stop_grace = "8s"
health = {{ http = "/", interval = "300ms", start_period = "20s" }}
"#,
            gunicorn = gunicorn.display(),
            dir = fixtures(),
        )
    };
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{edge}"]
{a1}
{a2}
[services.front]
upstreams = ["http://127.0.0.1:{app1}", "http://127.0.0.1:{app2}"]
route = {{}}
"#,
        a1 = app("app1", app1),
        a2 = app("app2", app2),
    ));
}

/// One exchange: (status, body) or what went wrong.
fn exchange(c: &mut TcpStream, req: &[u8]) -> Result<(u16, String), String> {
    c.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = c.read(&mut b).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&buf)));
        }
        buf.extend_from_slice(&b[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            return Ok((status, body));
        }
    }
}

/// Four clients until `stop` (bounded in count): POSTs that take 30 ms each and GETs, on
/// kept-alive and on new connections. Each returns (answered, failures).
fn load(port: u16, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(u32, Vec<String>)>> {
    let mut workers = Vec::new();
    for (post, keep_alive) in [(true, true), (true, false), (false, true), (false, false)] {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let (mut ok, mut failures) = (0, Vec::new());
            let mut conn: Option<TcpStream> = None;
            for i in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if conn.is_none() {
                    match TcpStream::connect(("127.0.0.1", port)) {
                        Ok(c) => {
                            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                            conn = Some(c);
                        }
                        Err(e) => {
                            failures.push(format!("connect: {e}"));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let close = if keep_alive { "" } else { "Connection: close\r\n" };
                let req = if post {
                    format!("POST /records?ms=30 HTTP/1.1\r\nHost: x\r\n{close}Content-Length: 7\r\n\r\nrecord{}", i % 10)
                } else {
                    format!("GET /?n={i} HTTP/1.1\r\nHost: x\r\n{close}\r\n")
                };
                let want = if post { 201 } else { 200 };
                match exchange(c, req.as_bytes()) {
                    Ok((s, _)) if s == want => ok += 1,
                    other => {
                        failures.push(format!("{} {i}: {other:?}", if post { "POST" } else { "GET" }));
                        conn = None;
                        continue;
                    }
                }
                if !keep_alive {
                    conn = None;
                }
            }
            (ok, failures)
        }));
    }
    workers
}

fn finish(
    what: &str,
    stop: &AtomicBool,
    workers: Vec<std::thread::JoinHandle<(u32, Vec<String>)>>,
) {
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut failed) = (0, Vec::new());
    for w in workers {
        let (ok, failures) = w.join().unwrap();
        total += ok;
        failed.extend(failures);
    }
    assert!(
        failed.is_empty(),
        "{what}: {} of {} failed: {failed:#?}",
        failed.len(),
        total + failed.len() as u32
    );
    assert!(total > 40, "{what}: only {total} requests in the run");
    eprintln!("{what}: {total} requests, none failed");
}

/// The command lines of the processes that hold the socket listening on `port`.
fn holders_of_listener(port: u16) -> Vec<String> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let want = format!(":{port:04X}");
    let inode = tcp
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A")
        .map(|f| f[9].to_string())
        .expect("a listening socket on the port");
    let link = format!("socket:[{inode}]");
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == link));
        if holds {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    found
}

fn healthy_with_new_pid(s: &Stack, unit: &str, old: i64) {
    s.wait_for(&format!("{unit} healthy again"), 30, |s| {
        let u = s.unit(unit);
        u["health"] == "healthy" && u["pid"].as_i64().is_some_and(|p| p != old)
    });
}

#[test]
fn a_socket_activated_app_server_loses_no_request_to_kill_9_or_stop() {
    let (edge, app1, app2) = (free_port(), free_port(), free_port());
    let s = Stack::new("");
    stack(&s, edge, app1, app2, true);
    s.up();
    s.wait_for("both app servers healthy", 30, |s| {
        s.unit("app1")["health"] == "healthy" && s.unit("app2")["health"] == "healthy"
    });
    // The socket is grove's: its holder keeps it (so it outlives grove too), and gunicorn
    // serves on it.
    let pid = s.pid("app1").unwrap();
    let holders = holders_of_listener(app1);
    assert!(
        holders.iter().any(|c| c.contains("__sockets")),
        "grove's holder keeps app1's socket: {holders:?}"
    );
    assert!(
        holders.iter().any(|c| c.contains("gunicorn")),
        "{holders:?}"
    );

    // 1. kill -9 of app1's gunicorn: what reaches its socket while it restarts waits for
    //    the next gunicorn (before: connections refused or reset in its listen queue).
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(edge, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    healthy_with_new_pid(&s, "app1", pid);
    std::thread::sleep(Duration::from_millis(800));
    finish("kill -9 of app1", &stop, workers);

    // 2. `grove stop app1` under load, then `grove start app1`: requests that reach it while
    //    it drains are answered "not served" and go to app2; once it is gone, refused (and
    //    retried); none fails.
    let pid = s.pid("app1").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(edge, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    let out = s.run(&["stop", "app1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("app1 stopped", 20, |s| s.unit("app1")["state"] == "stopped");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        TcpStream::connect(("127.0.0.1", app1)).is_err(),
        "a stopped unit's socket refuses connections"
    );
    let out = s.run(&["start", "app1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    healthy_with_new_pid(&s, "app1", pid);
    std::thread::sleep(Duration::from_millis(800));
    finish("grove stop app1", &stop, workers);

    // 3. `grove restart app1` (a fixed port: stop-first): the socket stays open across it.
    let pid = s.pid("app1").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(edge, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let out = s.run(&["restart", "app1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    healthy_with_new_pid(&s, "app1", pid);
    std::thread::sleep(Duration::from_millis(500));
    finish("grove restart app1", &stop, workers);
}

#[test]
fn socket_activation_is_refused_where_nothing_would_serve_on_it() {
    let s = Stack::new(
        r#"
[services.db]
recipe = "postgres"
socket = true

[services.migrate]
command = "true"
kind = "task"
port = 9000
socket = true

[services.worker]
command = "sleep 100"
socket = "yes"
"#,
    );
    let out = s.run(&["check"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for want in [
        "services.db.socket: socket activation is not possible here: a recipe's server opens its own port",
        "services.migrate.socket: socket activation is not possible here: a task or a job serves no connections",
        "services.worker.socket: expected true or false",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[test]
fn a_socket_activated_units_socket_outlives_grove_and_its_process() {
    let port = free_port();
    let gunicorn = venv_tool("gunicorn");
    let s = Stack::new(&format!(
        r#"
[services.app]
command = "{gunicorn} --workers 1 --chdir {dir} wsgi_records:app"
port = {port}
socket = true
health = {{ http = "/", interval = "300ms", start_period = "20s" }}
"#,
        gunicorn = gunicorn.display(),
        dir = fixtures(),
    ));
    s.up();
    s.wait_for("app healthy", 30, |s| s.unit("app")["health"] == "healthy");
    let app = s.pid("app").unwrap();
    // grove dies, then its app: nothing serves the port, and yet a connection made now is
    // taken (the holder keeps the socket) and its request waits for the next gunicorn.
    let grove = daemon_pid(s.path()).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-9", &grove.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("grove gone", 10, || !alive(i64::from(grove)));
    assert!(std::process::Command::new("kill")
        .args(["-9", &app.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("app gone", 10, || !alive(app));
    let mut waiting = TcpStream::connect(("127.0.0.1", port)).expect("the socket is kept open");
    waiting
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let asked = std::thread::spawn(move || {
        exchange(
            &mut waiting,
            b"POST /records HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nmade",
        )
    });
    // The next grove takes the socket back from the holder (its port is not "taken by
    // another program") and starts the app on it, which answers the waiting request.
    let out = s.up();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, body) = asked.join().unwrap().expect("answered");
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"body\": 4"), "{body}");
    let holders = holders_of_listener(port);
    assert!(
        holders.iter().any(|c| c.contains("__sockets")),
        "{holders:?}"
    );
    // A stop for good closes it.
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until("the socket closed", 10, || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}
