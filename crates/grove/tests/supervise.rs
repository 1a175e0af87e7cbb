//! The supervisor end to end: the real binary runs real processes (shell scripts, `sleep`,
//! `python3 -m http.server`) in a temporary folder, and the tests watch them through
//! `grove ps --json`, `grove events --json`, the log files and `/proc`.
//!
//! Every test uses its own stack name; the guard stops the stack and then kills anything
//! still carrying `GROVE_STACK=<name>` in its environment, even when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn three_levels_start_in_order_with_healthy_and_completed_gating() {
    let s = Stack::new(
        r#"
[services.db]
command = "sh -c 'sleep 0.3; echo db ready > db.ready; exec sleep 1000'"
health = { exec = "test -f db.ready", interval = "100ms" }

[services.migrate]
kind = "task"
command = "sh -c 'echo migrating; sleep 0.2; echo migrated'"
depends_on = { db = "healthy" }

[services.web]
command = "python3 -m http.server ${PORT} --bind 127.0.0.1"
health = { http = "/" }
depends_on = { db = "healthy", migrate = "completed" }
"#,
    );
    let out = s.up();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("web") && stdout.contains("healthy"),
        "{stdout}"
    );
    let ev = s.events();
    let db_healthy = s.event_index(&ev, "db", "healthy");
    let mig_started = s.event_index(&ev, "migrate", "started");
    let mig_done = s.event_index(&ev, "migrate", "completed");
    let web_started = s.event_index(&ev, "web", "started");
    assert!(db_healthy < mig_started, "{ev:#?}");
    assert!(mig_done < web_started, "{ev:#?}");
    assert_eq!(s.unit("migrate")["state"], "completed");
    assert_eq!(s.unit("web")["health"], "healthy");
    assert!(s.log("migrate").contains("out migrated"));
    // The web unit really serves on its port.
    let port = s.unit("web")["port"].as_u64().unwrap();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
}

#[test]
fn failed_task_blocks_dependents_and_up_names_it() {
    let s = Stack::new(
        r#"
[services.migrate]
kind = "task"
command = "sh -c 'echo relation users does not exist >&2; exit 3'"

[services.web]
command = "sleep 1000"
depends_on = { migrate = "completed" }
"#,
    );
    let out = s.run(&["up", "-d", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("migrate failed: exited with code 3"), "{err}");
    assert!(err.contains("relation users does not exist"), "{err}");
    assert!(err.contains("web blocked"), "{err}");
    let web = s.unit("web");
    assert_eq!(web["state"], "blocked");
    assert!(web["pid"].is_null());
    let ev = s.events();
    let blocked = s.event_index(&ev, "web", "blocked");
    assert!(ev[blocked]["message"]
        .as_str()
        .unwrap()
        .contains("migrate failed"));
}

#[test]
fn crash_restarts_with_backoff_then_gives_up() {
    let s = Stack::new(
        r#"
[services.flaky]
command = "sh -c 'echo trying; exit 1'"
restart = { policy = "on-failure", backoff = "100ms", max_backoff = "1s", max_restarts = 3 }

[services.steady]
command = "sleep 1000"
"#,
    );
    let _ = s.run(&["up", "-d", "--wait-timeout", "30s"]);
    s.wait_for("flaky to give up", 20, |s| {
        s.unit("flaky")["state"] == "failed"
    });
    let ev = s.events();
    let delays: Vec<String> = ev
        .iter()
        .filter(|e| e["unit"] == "flaky" && e["kind"] == "restarting")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delays.len(), 3, "{delays:#?}");
    assert!(delays[0].starts_with("restarting now"), "{delays:#?}");
    // 100 ms then 200 ms, each +-10 %.
    let ms = |m: &str| -> u64 { m.split_whitespace().nth(2).unwrap().parse().unwrap() };
    assert!((90..=110).contains(&ms(&delays[1])), "{delays:#?}");
    assert!((180..=220).contains(&ms(&delays[2])), "{delays:#?}");
    s.event_index(&ev, "flaky", "gave-up");
    assert!(s.unit("flaky")["reason"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 quick restarts"));
    assert_eq!(s.unit("flaky")["restarts"], 3);
    assert_eq!(s.log("flaky").matches("out trying").count(), 4);
    // The rest of the stack is untouched.
    assert_eq!(s.unit("steady")["state"], "running");
}

#[test]
fn killed_unit_is_replaced_at_once() {
    let s = Stack::new(
        r#"
[services.worker]
command = "sleep 1000"
"#,
    );
    s.up();
    let old = s.pid("worker").unwrap();
    Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap();
    s.wait_for("a new worker pid", 10, |s| {
        s.pid("worker").is_some_and(|p| p != old)
    });
    let ev = s.events();
    let exited = ev
        .iter()
        .rev()
        .find(|e| e["unit"] == "worker" && e["kind"] == "exited")
        .unwrap();
    assert!(exited["message"].as_str().unwrap().contains("SIGKILL"));
    let started = ev
        .iter()
        .rev()
        .find(|e| e["unit"] == "worker" && e["kind"] == "started")
        .unwrap();
    let gap = started["ts_ms"].as_i64().unwrap() - exited["ts_ms"].as_i64().unwrap();
    // At once: well under the 100 ms a first backoff would take (a busy machine adds a few
    // tens of milliseconds to starting the new keeper).
    assert!(
        (0..90).contains(&gap),
        "replacement took {gap} ms after the exit was seen"
    );
}

#[test]
fn autoheal_restarts_a_unit_that_stays_up_but_fails_its_probe() {
    let s = Stack::new(
        r#"
[services.api]
command = "sh -c 'touch healthy.flag; exec sleep 1000'"
health = { exec = "test -f healthy.flag", interval = "100ms", retries = 2 }
"#,
    );
    s.up();
    let old = s.pid("api").unwrap();
    assert_eq!(s.unit("api")["health"], "healthy");
    std::fs::remove_file(s.path().join("healthy.flag")).unwrap();
    s.wait_for("the heal", 15, |s| {
        s.pid("api").is_some_and(|p| p != old) && s.unit("api")["health"] == "healthy"
    });
    assert!(!alive(old));
    let ev = s.events();
    let unhealthy = s.event_index(&ev, "api", "unhealthy");
    assert!(ev[unhealthy]["message"]
        .as_str()
        .unwrap()
        .contains("after 2 failed probes: exited with code 1"));
    assert!(s.event_index(&ev, "api", "healed") > unhealthy);
}

#[test]
fn down_stops_in_reverse_order_and_kills_what_ignores_sigterm() {
    let s = Stack::new(
        r#"
[services.db]
command = "sleep 1000"

[services.stubborn]
command = "sh -c 'trap \"echo ignoring TERM\" TERM; while true; do sleep 0.05; done'"
stop_grace = "500ms"
depends_on = ["db"]
"#,
    );
    s.up();
    let stubborn = s.pid("stubborn").unwrap();
    let t = Instant::now();
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    assert!(!alive(stubborn));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    assert!(!s.path().join(".grove/grove.sock").exists());
    let ev = s.events();
    let killed = s.event_index(&ev, "stubborn", "killed");
    let stubborn_stopped = s.event_index(&ev, "stubborn", "stopped");
    let db_stopped = s.event_index(&ev, "db", "stopped");
    assert!(
        killed < stubborn_stopped && stubborn_stopped < db_stopped,
        "{ev:#?}"
    );
    assert!(s.log("stubborn").contains("ignoring TERM"));
}

#[test]
fn units_outlive_a_killed_grove_and_nothing_is_orphaned() {
    let mut s = Stack::new(
        r#"
[services.direct]
command = "sleep 1000"

[services.forks]
command = "sh -c 'sleep 1001 & exec sleep 1002'"
"#,
    );
    let child = s
        .cmd(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let grove_pid = child.id();
    s.foreground = Some(child);
    s.wait_for("both units", 20, |s| {
        s.path().join(".grove/grove.sock").exists()
            && s.run(&["ps", "--json"]).status.success()
            && s.pid("direct").is_some()
            && s.pid("forks").is_some()
    });
    let direct = s.pid("direct").unwrap();
    let forks = s.pid("forks").unwrap();
    let before = s.processes();
    Command::new("kill")
        .args(["-9", &grove_pid.to_string()])
        .status()
        .unwrap();
    if let Some(mut c) = s.foreground.take() {
        c.wait().unwrap();
    }
    // Issue 22: the units outlive grove, with what they started...
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(direct) && alive(forks), "the units died with grove");
    // ...and the next grove supervises them again, the grandchild of `forks` with its unit.
    let out = s.run(&["up", "-d", "--wait-timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.pid("direct"), Some(direct));
    assert_eq!(s.pid("forks"), Some(forks));
    for unit in ["direct", "forks"] {
        assert!(
            s.events()
                .iter()
                .any(|e| e["unit"] == unit && e["kind"] == "adopted"),
            "{unit} was not adopted: {:?}",
            s.events()
        );
    }
    assert_eq!(
        s.processes(),
        before,
        "what ran before runs now, nothing more"
    );
    let out = s.run(&["down"]);
    assert!(out.status.success());
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
}

#[test]
fn reload_restarts_only_what_changed_and_refuses_a_bad_file() {
    let s = Stack::new(
        r#"
[services.a]
command = "sleep 1000"

[services.b]
command = "sleep 1001"
"#,
    );
    s.up();
    let a = s.pid("a").unwrap();
    let b = s.pid("b").unwrap();
    s.write(
        r#"
[services.a]
command = "sleep 1000"

[services.b]
command = "sleep 1002"

[services.c]
command = "sleep 1003"
"#,
    );
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("added c") && said.contains("restarted b (command)"),
        "{said}"
    );
    s.wait_for("b and c", 10, |s| {
        s.pid("b").is_some_and(|p| p != b) && s.pid("c").is_some()
    });
    assert_eq!(s.pid("a"), Some(a), "a must keep its process");
    assert!(!alive(b));
    // A file that fails validation changes nothing.
    s.write(
        r#"
[services.a]
command = "sleep 1000"
restart = "sometimes"
"#,
    );
    let out = s.run(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("grove.toml:10:11"), "{err}");
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(s.pid("a"), Some(a));
    assert!(s.pid("c").is_some());
    // Removing a unit stops just that unit.
    s.write(
        r#"
[services.a]
command = "sleep 1000"

[services.b]
command = "sleep 1002"
"#,
    );
    let c = s.pid("c").unwrap();
    let out = s.run(&["reload"]);
    assert!(
        text(&out.stdout).contains("removed c"),
        "{}",
        text(&out.stdout)
    );
    s.wait_for("c to go", 10, |_| !alive(c));
    assert_eq!(s.pid("a"), Some(a));
    let ps = s.ps();
    assert_eq!(ps["units"].as_array().unwrap().len(), 2, "{ps}");
}

#[test]
fn last_words_before_a_crash_are_logged() {
    let s = Stack::new(
        r#"
[services.crasher]
command = "sh -c 'echo last words on stdout; echo and on stderr >&2; kill -9 $$$$'"
restart = "never"
"#,
    );
    let _ = s.run(&["up", "-d", "--wait-timeout", "10s"]);
    s.wait_for("the crash", 10, |s| s.unit("crasher")["state"] == "failed");
    let log = s.log("crasher");
    assert!(log.contains(" out last words on stdout"), "{log}");
    assert!(log.contains(" err and on stderr"), "{log}");
    assert!(log.contains(" grove killed by signal 9 (SIGKILL)"), "{log}");
    let out = s.run(&["logs", "-n", "2", "crasher"]);
    let shown = text(&out.stdout);
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(shown.contains("killed by signal 9"), "{shown}");
    let out = s.run(&["logs", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no log for `nosuch`"));
}

#[test]
fn socket_is_private_and_secrets_stay_masked() {
    let s = Stack::new(
        r#"
[services.app]
command = "sh -c 'exec sleep 1000' ${API_TOKEN}"
env = { API_TOKEN = "${API_TOKEN}" }
health = { exec = "test -n ${API_TOKEN}", interval = "100ms" }
"#,
    );
    std::fs::write(s.path().join(".env"), "API_TOKEN=tok-7f3a9c2e51\n").unwrap();
    s.up();
    let sock = s.path().join(".grove/grove.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(s.path().join(".grove"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let ps = s.run(&["ps", "--json"]);
    let events = s.run(&["events", "--json"]);
    let own_log = std::fs::read_to_string(s.path().join(".grove/logs/grove.log")).unwrap();
    for (what, body) in [
        ("ps", text(&ps.stdout)),
        ("events", text(&events.stdout)),
        ("grove.log", own_log),
        ("app.log", s.log("app")),
    ] {
        assert!(
            !body.contains("tok-7f3a9c2e51"),
            "{what} leaks the secret:\n{body}"
        );
    }
    assert!(
        text(&ps.stdout).contains("test -n ***"),
        "{}",
        text(&ps.stdout)
    );
    // grove's own command line carries no secret either.
    let own = Command::new("pgrep")
        .args(["-af", "daemon-child"])
        .output()
        .unwrap();
    assert!(!text(&own.stdout).contains("tok-7f3a9c2e51"));
}

#[test]
fn commands_without_a_running_stack_say_so() {
    let s = Stack::new("[services.a]\ncommand = \"sleep 1000\"\n");
    let out = s.run(&["ps"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("grove is not running here"));
    let out = s.run(&["down"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("not running"));
    let out = s.run(&["stop", "a"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn start_stop_restart_by_unit_or_service() {
    let s = Stack::new(
        r#"
[services.web]
command = "sleep 1000"
replicas = 2

[services.other]
command = "sleep 1001"
"#,
    );
    s.up();
    let ps = s.ps();
    let names: Vec<&str> = ps["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web#1", "web#2", "other"]);
    let out = s.run(&["stop", "web"]);
    assert!(
        text(&out.stdout).contains("web#1, web#2"),
        "{}",
        text(&out.stdout)
    );
    s.wait_for("web stopped", 10, |s| {
        s.unit("web#1")["state"] == "stopped" && s.unit("web#2")["state"] == "stopped"
    });
    assert_eq!(s.unit("other")["state"], "running");
    let out = s.run(&["start", "web#2"]);
    assert!(out.status.success());
    s.wait_for("web#2 running", 10, |s| {
        s.unit("web#2")["state"] == "running"
    });
    assert_eq!(s.unit("web#1")["state"], "stopped");
    let before = s.pid("other").unwrap();
    s.run(&["restart", "other"]);
    s.wait_for("other restarted", 10, |s| {
        s.pid("other").is_some_and(|p| p != before)
    });
    let out = s.run(&["restart", "othr"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("did you mean `other`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exec_runs_in_the_units_environment() {
    let s = Stack::new(
        r#"
[services.web]
command = "sleep 1000"
port = "auto"
cwd = "app"
env = { GREETING = "hello from web" }
"#,
    );
    std::fs::create_dir(s.path().join("app")).unwrap();
    let out = s.run(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo $GREETING $PORT $(basename $PWD)",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let parts: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(&parts[..3], ["hello", "from", "web"], "{said}");
    assert!(parts[3].parse::<u16>().is_ok(), "{said}");
    assert_eq!(parts[4], "app");
    let out = s.run(&["exec", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn foreground_up_multiplexes_output_reloads_on_sighup_and_stops_on_ctrl_c() {
    use std::io::BufRead;
    let mut s = Stack::new("");
    let body = r#"
[services.hello]
command = "sh -c 'echo hello from one; exec sleep 1000'"

[services.ticker]
command = "sh -c 'seq 1 300 | sed s/^/tick-/; exec sleep 1000'"
"#;
    s.write_with(body, "log_max_size = \"2KB\"\nlog_keep = 2\n");
    let mut child = s
        .cmd(&["up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    s.foreground = Some(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let expect = |want: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if seen.iter().any(|l: &String| l == want) {
                return;
            }
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(l);
            }
        }
        panic!(
            "never saw {want:?}; saw {:#?}",
            &seen[seen.len().saturating_sub(20)..]
        );
    };
    expect("hello  | hello from one", &mut seen);
    expect("ticker | tick-300", &mut seen);
    // Rotation kept two old files and dropped the rest.
    let logs = s.path().join(".grove/logs");
    assert!(logs.join("ticker.log.1").exists());
    assert!(logs.join("ticker.log.2").exists());
    assert!(!logs.join("ticker.log.3").exists());
    assert!(std::fs::metadata(logs.join("ticker.log")).unwrap().len() <= 2048);
    // SIGHUP reloads the file.
    let more = format!(
        "{body}\n[services.late]\ncommand = \"sh -c 'echo late arrival; exec sleep 1000'\"\n"
    );
    s.write_with(&more, "log_max_size = \"2KB\"\nlog_keep = 2\n");
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    expect("late   | late arrival", &mut seen);
    // Ctrl-C stops everything and grove exits 0.
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let mut child = s.foreground.take().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "grove did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    assert!(!s.path().join(".grove/grove.sock").exists());
}

#[test]
fn follow_logs_prints_new_lines() {
    use std::io::BufRead;
    let s = Stack::new(
        r#"
[services.beat]
command = "sh -c 'while true; do echo beat; sleep 0.1; done'"
"#,
    );
    s.up();
    let mut child = s
        .cmd(&["logs", "-F", "-n", "0", "beat"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let line = got.expect("a followed line");
    assert!(line.ends_with(" out beat"), "{line}");
}

#[test]
fn start_timeout_names_the_failing_probe() {
    let s = Stack::new(
        r#"
[services.deaf]
command = "sleep 1000"
port = "auto"
health = { tcp = true, interval = "200ms", start_period = "60s" }
"#,
    );
    let t = Instant::now();
    let out = s.run(&["up", "-d", "--wait-timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(15));
    let err = text(&out.stderr);
    assert!(err.contains("not every unit is up after 2 s"), "{err}");
    assert!(
        err.contains("deaf is starting; probe tcp 127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("failed: Connection refused"), "{err}");
}

/// What a unit's main process leaves behind when it is killed (a gunicorn's workers after
/// `kill -9` of the master) is asked to finish with the stop signal, as systemd asks a
/// service's leftovers, and killed only when `stop_grace` runs out; then the unit restarts.
#[test]
fn a_killed_main_processs_leftovers_get_the_stop_signal_then_sigkill() {
    let script = r#"
import os, signal, sys, time
def say(text):
    # One write per line: the children share the pipe, and print() may write a line in two.
    os.write(1, (text + "\n").encode())
def child(name, ignores):
    if os.fork() == 0:
        if ignores:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            def done(*_):
                time.sleep(0.3)
                say(f"{name} finished its request")
                os._exit(0)
            signal.signal(signal.SIGTERM, done)
        say(f"{name} {os.getpid()}")
        while True:
            time.sleep(1)
child("worker", False)
child("stubborn", True)
while True:
    time.sleep(1)
"#;
    let s = Stack::new(&format!(
        "[services.master]\ncommand = [\"python3\", \"-c\", '''{script}''']\nstop_grace = \"1s\"\n"
    ));
    s.up();
    // The child's pid from its own line (the log may be read while a line is written).
    let stubborn_pid = |s: &Stack| -> Option<i64> {
        s.log("master")
            .lines()
            .filter_map(|l| l.split(" stubborn ").nth(1))
            .find_map(|p| p.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while stubborn_pid(&s).is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stubborn: i64 = stubborn_pid(&s).unwrap_or_else(|| {
        panic!(
            "no line from the stubborn child; the log:\n{}",
            s.log("master")
        )
    });
    let old = s.pid("master").unwrap();
    Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap();
    s.wait_for("a new master", 15, |s| {
        s.pid("master").is_some_and(|p| p != old)
    });
    let log = s.log("master");
    assert!(log.contains("worker finished its request"), "{log}");
    assert!(
        !common::alive(stubborn),
        "the one that ignored SIGTERM was killed"
    );
    let ev = s.events();
    let at = |kind: &str| {
        ev.iter()
            .rev()
            .find(|e| e["unit"] == "master" && e["kind"] == kind)
            .and_then(|e| e["ts_ms"].as_i64())
            .unwrap()
    };
    // The restart waited for the grace (the stubborn child), not much longer.
    let waited = at("started") - at("exited");
    assert!((0..3000).contains(&waited), "{waited} ms");
}
