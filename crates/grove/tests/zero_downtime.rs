//! Issue 25's reproducers: routine changes under load through the real binary's edge, with
//! a keep-alive client and a fresh-connection client counting every non-2xx answer and
//! connection error. While a route has no ready unit the edge holds requests (up to the
//! route's `hold`) instead of answering 502; a unit that is not ready gets no request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads one response from `c`: (status, body), or `None` when the connection ended first.
fn read_response(c: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    read_response_or_bytes(c).ok()
}

/// Reads one response from `c`, or says what arrived before the connection ended.
fn read_response_or_bytes(c: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        let n = match c.read(&mut b) {
            Ok(n) => n,
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&buf))),
        };
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&buf)));
        }
        buf.extend_from_slice(&b[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no status in {head:?}"))?;
            return Ok((status, buf[end + 4..end + 4 + len].to_vec()));
        }
    }
}

/// Two clients (keep-alive, and a new connection per request) until `stop`, bounded in
/// count; each returns (answered 2xx, failures).
fn load(port: u16, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(u32, Vec<String>)>> {
    let mut workers = Vec::new();
    for keep_alive in [true, false] {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut ok = 0;
            let mut failures = Vec::new();
            let mut conn: Option<TcpStream> = None;
            for i in 0..50_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if conn.is_none() {
                    match TcpStream::connect(("127.0.0.1", port)) {
                        Ok(c) => {
                            let _ = c.set_read_timeout(Some(Duration::from_secs(15)));
                            conn = Some(c);
                        }
                        Err(e) => {
                            failures.push(format!("request {i}: connect: {e}"));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let close = if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                };
                let req = format!("GET /n{i} HTTP/1.1\r\nHost: x\r\n{close}\r\n");
                let answer = c
                    .write_all(req.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|_| read_response_or_bytes(c));
                match answer {
                    Ok((200, _)) => ok += 1,
                    other => {
                        failures.push(format!(
                            "request {i} (keep-alive {keep_alive}): {:?}",
                            other.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
                        ));
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

/// An upstream on a free port that reads each request and closes without a byte of answer,
/// until `answer` is set (then it answers 200). Returns its port and how many connections it
/// saw.
fn closer(answer: Arc<AtomicBool>) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(10_000) {
            let Ok(mut c) = c else { continue };
            let mut b = [0u8; 4096];
            let _ = c.read(&mut b);
            counted.fetch_add(1, Ordering::Relaxed);
            if answer.load(Ordering::Relaxed) {
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    (port, seen)
}

fn finish(stop: &AtomicBool, workers: Vec<std::thread::JoinHandle<(u32, Vec<String>)>>) {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failures) = w.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {failures:#?}",
            failures.len()
        );
        total += ok;
    }
    assert!(total > 50, "only {total} requests in the run");
}

fn one_replica(s: &Stack, port: u16, health: &str) {
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "python3 {echo}"
{health}
route = {{}}
"#,
        echo = echo_app()
    ));
}

#[test]
fn kill_9_of_the_only_replica_and_restart_fail_no_request() {
    let port = free_port();
    let s = Stack::new("");
    // A start period as a real app would have: a loaded machine can take more than three
    // probe intervals to start Python, and autoheal must not kill the new unit for that.
    one_replica(
        &s,
        port,
        "health = { http = \"/\", interval = \"200ms\", start_period = \"10s\" }",
    );
    s.up();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(port, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    // Issue 25: kill -9 of the only replica (1,842 of 3,573 failed before).
    let pid = s.pid("web").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    s.wait_for("web healthy again", 20, |s| {
        let u = s.unit("web");
        u["health"] == "healthy" && u["pid"].as_i64() != Some(pid)
    });
    std::thread::sleep(Duration::from_millis(300));
    // `grove restart web` with one replica (1,688 of 3,742 got 502 before).
    let pid = s.pid("web").unwrap();
    let out = s.run(&["restart", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("web healthy again", 20, |s| {
        let u = s.unit("web");
        u["health"] == "healthy" && u["pid"].as_i64() != Some(pid)
    });
    std::thread::sleep(Duration::from_millis(300));
    finish(&stop, workers);
}

#[test]
fn a_post_during_a_crash_is_held_until_the_unit_is_back() {
    let port = free_port();
    let s = Stack::new("");
    // A start period as a real app would have: a loaded machine can take more than three
    // probe intervals to start Python, and autoheal must not kill the new unit for that.
    one_replica(
        &s,
        port,
        "health = { http = \"/\", interval = \"200ms\", start_period = \"10s\" }",
    );
    s.up();
    let pid = s.pid("web").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    // Sent once grove has seen the crash, while the replacement starts: answered by the
    // replacement, not 502.
    s.wait_for("the crash to be seen", 10, |s| {
        s.unit("web")["health"] != "healthy"
    });
    let start = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(
        b"POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let (status, body) = read_response(&mut c).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], 5);
    assert!(start.elapsed() < Duration::from_secs(6));
}

#[test]
fn a_unit_that_never_turns_healthy_gets_no_request_and_the_hold_ends_in_503() {
    let port = free_port();
    let s = Stack::new("");
    // Its probe never passes (it checks a port nothing listens on), as a unit whose health
    // endpoint hangs.
    let dead = free_port();
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "python3 {echo}"
health = {{ tcp = "127.0.0.1:{dead}", interval = "200ms", start_period = "60s" }}
route = {{ hold = "1s" }}
"#,
        echo = echo_app()
    ));
    // `up -d` waits for health and gives up after 2 s; the unit keeps starting.
    let _ = s.run(&["up", "-d", "--wait-timeout", "2s"]);
    let start = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: 1"), "{raw}");
    assert!(raw.contains("is starting"), "{raw}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The unit itself never saw a request (its log has only the probe-free start).
    assert!(!s.log("web").contains("GET /"), "{}", s.log("web"));
}

#[test]
fn reloads_that_restart_or_scale_routed_units_fail_no_request() {
    let port = free_port();
    let s = Stack::new("");
    let file = |replicas: u32, version: &str| {
        format!(
            r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "python3 {echo}"
replicas = {replicas}
env = {{ VERSION = "{version}" }}
health = {{ http = "/", interval = "200ms", start_period = "10s" }}
route = {{ hold = "30s" }}
"#,
            echo = echo_app()
        )
    };
    s.write_stack(&file(2, "1"));
    s.up();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(port, stop.clone());
    // Issue 25: a reload changing the env of 2 replicas (4,322 of 6,044 failed before), then
    // one from 2 replicas to 1 (1,085 failed), then back to 2, to 3, and from 3 to 2: the
    // replica that goes leaves the route and drains before it stops.
    for (replicas, version) in [(2, "2"), (1, "2"), (2, "3"), (3, "4"), (2, "4")] {
        std::thread::sleep(Duration::from_millis(400));
        s.write_stack(&file(replicas, version));
        let out = s.run(&["reload"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        s.wait_for("every unit healthy", 30, |s| {
            let ps = s.ps();
            let units = ps["units"].as_array().unwrap();
            units.len() == replicas as usize && units.iter().all(|u| u["health"] == "healthy")
        });
    }
    std::thread::sleep(Duration::from_millis(400));
    finish(&stop, workers);
}

#[test]
fn wait_returns_once_units_are_ready_and_names_one_that_is_not() {
    let port = free_port();
    let s = Stack::new("");
    let marker = s.path().join("broken");
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "sh -c 'test -e {broken} && exit 3; exec python3 {echo}'"
health = {{ http = "/", interval = "200ms", start_period = "10s" }}
restart = {{ max_restarts = 2, backoff = "100ms" }}
route = {{}}
"#,
        broken = marker.display(),
        echo = echo_app()
    ));
    s.up();
    let pid = s.pid("web").unwrap();
    // Issue 25, point 4: `restart --wait` returns when the new process is healthy.
    let out = s.run(&["restart", "--wait", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ready: web"),
        "{}",
        text(&out.stdout)
    );
    let u = s.unit("web");
    assert_eq!(u["health"], "healthy");
    assert_ne!(u["pid"].as_i64(), Some(pid));
    // `reload --wait` with a change that restarts it.
    let file = s.path().join("grove.toml");
    let text0 = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text0.replace("route = {}", "env = { V = \"2\" }\nroute = {}"),
    )
    .unwrap();
    let out = s.run(&["reload", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ready: web"),
        "{}",
        text(&out.stdout)
    );
    // A restart that cannot come back: exit 1 naming the unit.
    std::fs::write(&marker, "").unwrap();
    let out = s.run(&["restart", "--wait", "--wait-timeout", "20s", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("web"), "{}", text(&out.stderr));
}

#[test]
fn a_get_whose_upstream_closes_before_answering_goes_to_the_next_one() {
    // An upstream that accepts, reads the request and closes without a byte of answer.
    let (closer_port, seen) = closer(Arc::new(AtomicBool::new(false)));
    let live = free_port();
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.app]
command = "python3 {echo}"
port = {live}
health = {{ http = "/" }}

[services.pair]
upstreams = ["127.0.0.1:{closer_port}", "127.0.0.1:{live}"]
route = {{}}
"#,
        echo = echo_app()
    ));
    s.up();
    // Issue 26, point 4: every GET is answered, whichever upstream the round robin picks.
    for i in 0..6 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(
            format!("GET /g{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let (status, body) = read_response(&mut c).unwrap();
        assert_eq!(status, 200, "GET {i}: {}", String::from_utf8_lossy(&body));
    }
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "the closing upstream was never tried"
    );
}

#[test]
fn health_on_remote_upstreams_takes_failing_targets_out_and_back() {
    // A target that accepts and closes without answering: its http probe fails.
    let answer = Arc::new(AtomicBool::new(false));
    let (closer_port, seen) = closer(answer.clone());
    let live = free_port();
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.app]
command = "python3 {echo}"
port = {live}
health = {{ http = "/" }}

[services.pair]
upstreams = ["127.0.0.1:{closer_port}", "127.0.0.1:{live}"]
health = {{ http = "/", interval = "200ms", retries = 2 }}
route = {{}}
"#,
        echo = echo_app()
    ));
    s.up();
    // Issue 26, point 3: the failing target leaves the route, with an event naming it.
    s.wait_for("the closer out of the route", 20, |s| {
        s.events().iter().any(|e| {
            e["unit"] == "pair"
                && e["kind"] == "unhealthy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("127.0.0.1:{closer_port}")))
        })
    });
    let before = seen.load(Ordering::Relaxed);
    let start = Instant::now();
    for i in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(
            format!("GET /r{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let (status, _) = read_response(&mut c).unwrap();
        assert_eq!(status, 200);
    }
    // Only its probes reached it meanwhile (one per 200 ms), no request.
    let probes_only = (start.elapsed().as_millis() / 200 + 2) as usize;
    let reached = seen.load(Ordering::Relaxed) - before;
    assert!(
        reached <= probes_only,
        "{reached} connections in {:?}",
        start.elapsed()
    );
    // It answers again: back in the route at its first pass.
    answer.store(true, Ordering::Relaxed);
    s.wait_for("the target back in the route", 20, |s| {
        s.events().iter().any(|e| {
            e["unit"] == "pair"
                && e["kind"] == "healthy"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("back in the route"))
        })
    });
}

#[test]
fn a_replica_that_goes_finishes_its_requests_before_it_stops() {
    let port = free_port();
    let s = Stack::new("");
    let file = |replicas: u32| {
        format!(
            "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\n\n[services.web]\ncommand = \"python3 {echo}\"\nreplicas = {replicas}\nhealth = {{ http = \"/\", interval = \"200ms\" }}\nroute = {{}}\n",
            echo = echo_app()
        )
    };
    s.write_stack(&file(3));
    s.up();
    // Slow POSTs (not retried: not idempotent), spread over the three replicas.
    let slow: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                c.write_all(
                    b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
                )
                .unwrap();
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                String::from_utf8_lossy(&out).into_owned()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Issue 25: scaling down takes the replica out of the route, lets it finish, then stops it.
    s.write_stack(&file(2));
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for t in slow {
        let answer = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(s.ps()["units"].as_array().unwrap().len(), 2);
}

/// Two replicas of an app that takes a second and a half to listen (and, once `broken`
/// exists in the stack folder, exits instead), behind a route that holds requests only
/// 300 ms: a stop-first restart could not hide its start.
fn slow_pair(s: &Stack, port: u16) {
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "sh -c 'test ! -e {dir}/broken || exit 3; sleep 1.5; exec python3 {echo}'"
replicas = 2
health = {{ http = "/", interval = "200ms", start_period = "10s" }}
route = {{ hold = "300ms" }}

[deploy]
health_timeout = "8s"
"#,
        dir = s.path().display(),
        echo = echo_app()
    ));
}

#[test]
fn restart_replaces_routed_replicas_start_first_one_at_a_time() {
    let port = free_port();
    let s = Stack::new("");
    slow_pair(&s, port);
    s.up();
    let before: Vec<(i64, i64)> = ["web#1", "web#2"]
        .iter()
        .map(|n| {
            let u = s.unit(n);
            (u["pid"].as_i64().unwrap(), u["port"].as_i64().unwrap())
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(port, stop.clone());
    std::thread::sleep(Duration::from_millis(400));
    // Issue 25: `grove restart web` with 2 replicas restarted both at once (1,479 of 3,325
    // failed). Now each gets a new unit beside it on a fresh port, and the old one goes
    // once the new one is ready.
    let out = s.run(&["restart", "web"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}{said}", text(&out.stderr));
    for n in ["web#1", "web#2"] {
        assert!(
            said.contains(&format!("{n}: a new one started beside it on port")),
            "{said}"
        );
    }
    // It answered once both were replaced: new processes on new ports, healthy.
    for (n, (pid, port)) in ["web#1", "web#2"].iter().zip(&before) {
        let u = s.unit(n);
        assert_eq!(u["health"], "healthy", "{u}");
        assert_ne!(u["pid"].as_i64(), Some(*pid), "{n} kept its process");
        assert_ne!(u["port"].as_i64(), Some(*port), "{n} kept its port");
    }
    assert_eq!(s.ps()["units"].as_array().unwrap().len(), 2);
    std::thread::sleep(Duration::from_millis(300));
    finish(&stop, workers);
}

#[test]
fn a_restart_whose_new_unit_never_gets_ready_leaves_the_old_one_serving() {
    let port = free_port();
    let s = Stack::new("");
    slow_pair(&s, port);
    s.up();
    let pids: Vec<i64> = ["web#1", "web#2"]
        .iter()
        .map(|n| s.pid(n).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(port, stop.clone());
    std::fs::write(s.path().join("broken"), "").unwrap();
    let out = s.run(&["restart", "web#1"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("restart: web#1~next"), "{err}");
    assert!(err.contains("the running web#1 keeps serving"), "{err}");
    // Nothing changed: the same processes serve, and nothing was dropped.
    let now: Vec<i64> = ["web#1", "web#2"]
        .iter()
        .map(|n| s.pid(n).unwrap())
        .collect();
    assert_eq!(now, pids);
    assert_eq!(s.ps()["units"].as_array().unwrap().len(), 2);
    std::thread::sleep(Duration::from_millis(300));
    finish(&stop, workers);
}
