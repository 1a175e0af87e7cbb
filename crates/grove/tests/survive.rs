//! Issue 22: the stack outlives grove. grove is killed with PostgreSQL, Redis and a web unit
//! running; the next grove adopts them (same pids, `adopted` events), nothing is lost (the
//! data, a log line written while no grove ran), and `down` still ends everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::servers::{kill_daemon, open_stack, port, psql, redis, secret, up};
use common::{text, Stack};

use std::time::Duration;

fn adopted(s: &Stack, unit: &str) -> bool {
    s.events()
        .iter()
        .any(|e| e["unit"] == unit && e["kind"] == "adopted")
}

/// The `tick-N` numbers in the unit's log, in order.
fn ticks(s: &Stack) -> Vec<u64> {
    s.log("ticker")
        .lines()
        .filter_map(|l| l.split_once(" out tick-").map(|(_, n)| n.trim()))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn a_killed_grove_leaves_its_stack_running_and_the_next_one_adopts_it() {
    let s = open_stack(
        r#"[edge]
listen = []

[services.db]
recipe = "postgres"

[services.cache]
recipe = "redis"

[services.web]
command = "python3 -m http.server ${PORT} --bind 127.0.0.1"
health = { http = "/" }
depends_on = { db = "healthy" }

[services.ticker]
command = "sh -c 'i=0; while true; do i=$$((i+1)); echo tick-$$i; sleep 0.1; done'"
"#,
    );
    up(&s);
    let units = ["db", "cache", "web", "ticker"];
    let pids: Vec<i64> = units.iter().map(|u| s.pid(u).unwrap()).collect();
    let (db, cache) = (port(&s, "db"), port(&s, "cache"));
    let (db_pw, cache_pw) = (secret(&s, "db"), secret(&s, "cache"));
    psql(
        db,
        &db_pw,
        "CREATE TABLE kept(n int); INSERT INTO kept SELECT generate_series(1, 100)",
    )
    .unwrap();
    assert_eq!(redis(cache, &cache_pw, &["SET", "kept", "yes"]), "OK");
    kill_daemon(&s);
    // Nothing stops with grove: the servers answer while no grove runs...
    std::thread::sleep(Duration::from_millis(800));
    for (u, pid) in units.iter().zip(&pids) {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{u} died with grove"
        );
    }
    assert_eq!(
        psql(db, &db_pw, "SELECT count(*) FROM kept").unwrap(),
        "100"
    );
    let during = ticks(&s).last().copied().unwrap_or(0);
    // ...and the next grove supervises the very same processes again.
    up(&s);
    for (u, pid) in units.iter().zip(&pids) {
        assert_eq!(s.pid(u), Some(*pid), "{u} was restarted, not adopted");
        assert!(
            adopted(&s, u),
            "no `adopted` event for {u}: {:?}",
            s.events()
        );
    }
    assert_eq!(s.unit("web")["health"], "healthy");
    let uptime = s.unit("db")["uptime_ms"].as_u64().unwrap_or(0);
    assert!(uptime >= 800, "db's uptime started again: {uptime} ms");
    assert_eq!(
        psql(db, &db_pw, "SELECT count(*) FROM kept").unwrap(),
        "100"
    );
    assert_eq!(redis(cache, &cache_pw, &["GET", "kept"]), "yes");
    // The log is whole: the lines written while no grove ran are there, none missing.
    std::thread::sleep(Duration::from_millis(300));
    let all = ticks(&s);
    assert!(all.len() > 5, "{all:?}");
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap in the log: {all:?}"
    );
    assert!(
        all.iter().any(|&n| n > during),
        "nothing logged after the adoption"
    );
    // `down` after an adoption ends everything, leaves nothing behind (the stack's cgroup tree
    // included, which the adopting grove did not make).
    if let Some(tree) = common::cgroup_tree(&s.name) {
        assert!(tree.exists(), "no cgroup tree at {}", tree.display());
    }
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    common::assert_no_cgroup_left(&s.name);
    let run = std::fs::read_dir(s.path().join(".grove/run"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(run, 0, "sockets left in .grove/run");
}

#[test]
fn what_changed_or_ended_while_no_grove_ran_is_started_again() {
    let s = Stack::new(
        "[services.same]\ncommand = \"sleep 600\"\n\n[services.changed]\ncommand = \"sleep 601\"\n\n[services.ending]\ncommand = \"sh -c 'sleep 1; exit 3'\"\nrestart = \"always\"\n",
    );
    s.up();
    let same = s.pid("same").unwrap();
    let changed = s.pid("changed").unwrap();
    common::servers::kill_daemon(&s);
    // While no grove runs: `ending` exits (its shim keeps the status), and the stack file
    // changes `changed`.
    std::thread::sleep(Duration::from_millis(1500));
    // `same` only changes how it is supervised: still the same process.
    s.write_stack(
        "[services.same]\ncommand = \"sleep 600\"\nstop_grace = \"3s\"\n\n[services.changed]\ncommand = \"sleep 602\"\n\n[services.ending]\ncommand = \"sh -c 'sleep 1; exit 3'\"\nrestart = \"always\"\n",
    );
    let out = s.run(&["up", "-d", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.pid("same"), Some(same));
    assert_ne!(
        s.pid("changed"),
        Some(changed),
        "a changed unit was adopted"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{changed}")).exists(),
        "the old `changed` still runs"
    );
    let events = s.events();
    let said = |unit: &str, kind: &str, words: &str| {
        events.iter().any(|e| {
            e["unit"] == unit
                && e["kind"] == kind
                && e["message"].as_str().unwrap_or("").contains(words)
        })
    };
    assert!(
        said("changed", "reaped", "definition changed"),
        "{events:?}"
    );
    assert!(said("same", "adopted", "adopted"), "{events:?}");
    let ended = events
        .iter()
        .position(|e| {
            e["unit"] == "ending"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ended while no grove was running: exited with code 3")
        })
        .unwrap_or_else(|| panic!("the exit while no grove ran is not told: {events:?}"));
    assert!(
        events[ended..]
            .iter()
            .any(|e| e["unit"] == "ending" && e["kind"] == "started"),
        "`ending` was not started again: {events:?}"
    );
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    common::assert_no_cgroup_left(&s.name);
}

/// One GET on a new connection; the status, or 0 when it failed.
fn get(port: u16) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
    if c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn connections_that_arrive_while_no_grove_runs_wait_for_the_next_one() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let port = common::free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\n\n[services.web]\ncommand = \"python3 -m http.server ${{PORT}} --bind 127.0.0.1\"\nhealth = {{ http = \"/\" }}\nroute = {{ prefix = \"/\" }}\n"
    ));
    s.up();
    let web = s.pid("web").unwrap();
    assert_eq!(get(port), 200);
    // Load: four clients, a new connection per request, through the kill and the restart.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if get(port) == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    common::servers::kill_daemon(&s);
    let killed = std::time::Instant::now();
    // No grove for a moment: connections wait in the sockets' backlogs.
    std::thread::sleep(Duration::from_millis(700));
    let before = ok.load(Ordering::Relaxed);
    let out = s.run(&["up", "-d", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back = killed.elapsed();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "kill -9 under load: {ok} served, {failed} failed, the edge answered again {back:?} after the kill, web pid {} -> {:?}",
        web,
        s.pid("web")
    );
    // Only a request in flight at the instant of the kill may fail: one per client at most.
    assert!(failed <= 4, "{failed} requests failed");
    assert!(ok > before, "nothing was served after the restart");
    assert_eq!(s.pid("web"), Some(web), "web was restarted");
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    common::assert_no_cgroup_left(&s.name);
    // Down lets the sockets go.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn units_still_start_after_the_grove_binary_is_replaced_on_disk() {
    let s = Stack::new("[services.worker]\ncommand = \"sleep 600\"\n");
    // grove from a copy, which an upgrade then replaces (as a package manager does).
    let bin = tempfile::tempdir().unwrap();
    let copy = bin.path().join("grove");
    std::fs::copy(env!("CARGO_BIN_EXE_grove"), &copy).unwrap();
    let grove = |args: &[&str]| {
        std::process::Command::new(&copy)
            .args(args)
            .current_dir(s.path())
            .env_remove("GROVE_ENV")
            .env_remove("GROVE_FILE")
            .output()
            .unwrap()
    };
    let out = grove(&["up", "-d", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let old = s.pid("worker").unwrap();
    std::fs::remove_file(&copy).unwrap();
    std::fs::write(&copy, "#!/bin/sh\nexit 1\n").unwrap();
    // The running grove starts its helpers from the binary it runs, not the path.
    std::process::Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap();
    s.wait_for("the worker started again", 10, |s| {
        s.pid("worker").is_some_and(|p| p != old)
    });
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Requests on one kept-alive connection, reconnecting when the edge says `Connection:
/// close`; (served, failed).
fn keep_alive_client(port: u16, stop: &std::sync::atomic::AtomicBool) -> (u32, u32) {
    use std::io::{BufRead, BufReader, Read, Write};
    let (mut ok, mut failed) = (0, 0);
    let mut conn: Option<BufReader<std::net::TcpStream>> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if conn.is_none() {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(c) => {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
                    conn = Some(BufReader::new(c));
                }
                Err(_) => {
                    failed += 1;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut answer = || -> Option<(u16, bool)> {
            c.get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            let mut line = String::new();
            c.read_line(&mut line).ok()?;
            let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
            let (mut length, mut close) = (0usize, false);
            loop {
                let mut h = String::new();
                c.read_line(&mut h).ok()?;
                let h = h.trim_end().to_ascii_lowercase();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.strip_prefix("content-length:") {
                    length = v.trim().parse().ok()?;
                }
                if h == "connection: close" {
                    close = true;
                }
            }
            let mut body = vec![0u8; length];
            c.read_exact(&mut body).ok()?;
            Some((status, close))
        };
        match answer() {
            Some((200, close)) => {
                ok += 1;
                if close {
                    conn = None;
                }
            }
            _ => {
                failed += 1;
                conn = None;
            }
        }
    }
    (ok, failed)
}

#[test]
fn grove_upgrade_under_load_fails_no_request_and_restarts_no_unit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let port = common::free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\n\n[services.web]\ncommand = \"python3 -m http.server ${{PORT}} --bind 127.0.0.1\"\nhealth = {{ http = \"/\" }}\nroute = {{ prefix = \"/\" }}\n\n[services.worker]\ncommand = \"sleep 600\"\n"
    ));
    s.up();
    let pids = (s.pid("web"), s.pid("worker"));
    let grove_before = s.ps()["pid"].as_u64();
    let stop = Arc::new(AtomicBool::new(false));
    // Two clients on kept-alive connections, two with a new connection per request.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    keep_alive_client(port, &stop)
                } else {
                    let (mut ok, mut failed) = (0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        if get(port) == 200 {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    (ok, failed)
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    // Issue 22, point 2: the new binary (a copy here) takes over.
    let bin = tempfile::tempdir().unwrap();
    let new = bin.path().join("grove");
    std::fs::copy(env!("CARGO_BIN_EXE_grove"), &new).unwrap();
    let out = s.run(&["upgrade", "--binary", new.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("2 of 2 running units kept their processes"),
        "{}",
        text(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for (i, c) in clients.into_iter().enumerate() {
        let (o, f) = c.join().unwrap();
        if f > 0 {
            eprintln!(
                "client {i} ({}): {f} failed",
                if i % 2 == 0 {
                    "kept alive"
                } else {
                    "new connections"
                }
            );
        }
        ok += o;
        failed += f;
    }
    eprintln!("grove upgrade under load: {ok} served, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert_eq!(
        (s.pid("web"), s.pid("worker")),
        pids,
        "a unit was restarted"
    );
    assert_ne!(
        s.ps()["pid"].as_u64(),
        grove_before,
        "the same grove still runs"
    );
    let events = s.events();
    assert!(events.iter().any(|e| e["kind"] == "handover"), "{events:?}");
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    common::assert_no_cgroup_left(&s.name);
}

#[test]
fn a_detached_grove_that_panics_hands_over_to_a_new_one() {
    let s = Stack::new("[services.worker]\ncommand = \"sleep 600\"\n");
    // A debug build panics when asked to (GROVE_TEST_PANIC_AFTER_MS), once.
    let out = s
        .cmd(&["up", "-d", "--wait-timeout", "20s"])
        .env("GROVE_TEST_PANIC_AFTER_MS", "800")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let worker = s.pid("worker").unwrap();
    let first = s.ps()["pid"].as_u64().unwrap();
    s.wait_for("another grove", 20, |s| {
        let out = s.run(&["ps", "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v["pid"].as_u64())
                .is_some_and(|p| p != first)
    });
    // The successor adopted the unit; the log says what happened.
    assert_eq!(s.pid("worker"), Some(worker));
    let log = std::fs::read_to_string(s.path().join(".grove/logs/grove.log")).unwrap();
    assert!(
        log.contains("the panic GROVE_TEST_PANIC_AFTER_MS asked for"),
        "{log}"
    );
    assert!(log.contains("takes over"), "{log}");
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    common::assert_no_cgroup_left(&s.name);
}
