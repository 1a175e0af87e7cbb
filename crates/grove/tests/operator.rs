//! Issue 28's operator verbs through the real binary: `grove up SERVICE...`, `grove logs --since/--until/--grep`,
//! `grove top`, and the edge's access log formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn logs_keep_the_lines_asked_for_by_time_and_text() {
    let s = Stack::new(
        r#"
[services.web]
command = "sh -c 'for i in 1 2 3; do echo GET /page$$i; echo POST /form$$i; done; exec sleep 300'"
"#,
    );
    s.up();
    wait_until("the unit's lines", 10, || {
        text(&s.run(&["logs", "web"]).stdout).contains("POST /form3")
    });
    let lines = |args: &[&str]| -> Vec<String> {
        let out = s.run(&[&["logs"], args, &["web"]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .filter(|l| l.contains(" /"))
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        lines(&["--grep", "POST"]),
        ["POST /form1", "POST /form2", "POST /form3"]
    );
    assert_eq!(lines(&["--grep", "POST", "-n", "1"]), ["POST /form3"]);
    assert_eq!(
        lines(&["--since", "1h", "--grep", "GET /page2"]),
        ["GET /page2"]
    );
    assert!(lines(&["--until", "2000-01-01T00:00:00Z"]).is_empty());
    assert!(lines(&["--since", "2100-01-01 00:00"]).is_empty());
    let out = s.run(&["logs", "--since", "last tuesday", "web"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--since `last tuesday`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn top_shows_units_and_the_routes_request_rates() {
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "python3 {echo}"
route = {{}}
limits = {{ memory = "256MB" }}
"#,
        echo = echo_app()
    ));
    s.up();
    // Requests while top samples.
    let load = std::thread::spawn(move || {
        for _ in 0..40 {
            let _ = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null"])
                .arg(format!("http://127.0.0.1:{port}/"))
                .status();
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    });
    let out = s.run(&["top", "--once", "--interval", "1s"]);
    load.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let web = said
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(web.contains("healthy") || web.contains("running"), "{said}");
    assert!(web.contains(" / 256MB"), "{said}");
    let route = said
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("*/ ") || l.starts_with("/ "))
        .unwrap_or_default();
    let rps: f64 = route
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(rps > 1.0, "no request rate in:\n{said}");
}

#[test]
fn the_access_log_is_written_in_the_format_asked_and_follows_a_reload() {
    let port = free_port();
    let s = Stack::new("");
    let file = |format: &str| {
        format!(
            r#"
[edge]
listen = ["http://127.0.0.1:{port}"]
access_log = {{ {format}, path = "logs/access.log" }}

[services.web]
command = "python3 {echo}"
route = {{}}
"#,
            echo = echo_app()
        )
    };
    s.write_stack(&file("format = \"json\""));
    s.up();
    let get = |path: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-A",
                "probe/1.0",
                "-e",
                "https://ref.example/",
            ])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .status()
            .unwrap();
        assert!(out.success());
    };
    let log = s.path().join("logs/access.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    get("/json");
    wait_until("the JSON line", 10, || read().contains("/json"));
    let line = read()
        .lines()
        .find(|l| l.contains("/json"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["status"], 200);
    assert_eq!(v["client"], "127.0.0.1");
    assert!(v["upstream"].as_str().unwrap().starts_with("web"), "{v}");
    assert!(
        v["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{v}"
    );
    // A reload switches the format, for the fast path and hyper's alike.
    s.write_stack(&file("format = \"combined\""));
    assert!(s.run(&["reload"]).status.success());
    get("/combined");
    wait_until("the combined line", 10, || read().contains("/combined"));
    let line = read()
        .lines()
        .find(|l| l.contains("/combined"))
        .unwrap()
        .to_string();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("\"GET /combined HTTP/1.1\" 200 "), "{line}");
    assert!(
        line.ends_with(" \"https://ref.example/\" \"probe/1.0\""),
        "{line}"
    );
    // Off writes nothing more.
    s.write_stack(&file("off = true"));
    assert!(s.run(&["reload"]).status.success());
    get("/off");
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(!read().contains("/off"), "{}", read());
}

#[test]
fn scale_sets_replicas_over_the_file_across_reloads_until_reset() {
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{port}"]

[services.web]
command = "python3 {echo}"
route = {{}}

[services.migrate]
command = "true"
kind = "task"
"#,
        echo = echo_app()
    ));
    s.up();
    let webs = |s: &Stack| {
        s.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["service"] == "web")
            .count()
    };
    assert_eq!(webs(&s), 1);
    let out = s.run(&["scale", "web=3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("reloaded:"),
        "{}",
        text(&out.stdout)
    );
    s.wait_for("three replicas", 30, |s| webs(s) == 3);
    // A reload reads the file again and keeps the count.
    assert!(s.run(&["reload"]).status.success());
    assert_eq!(webs(&s), 3);
    assert_eq!(text(&s.run(&["scale"]).stdout).trim(), "web=3");
    // What cannot be scaled is refused.
    let out = s.run(&["scale", "migrate=2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a long-running service"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(s.run(&["scale", "web=0"]).status.code(), Some(2));
    // Back to the file's count.
    let out = s.run(&["scale", "--reset", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("one replica again", 30, |s| webs(s) == 1);
}

/// `grove up SERVICE...` starts those and what they depend on; the rest stays stopped, and a
/// unit the operator stopped stays stopped across a restart of grove until it is started.
#[test]
fn up_with_services_starts_only_them_and_their_dependencies() {
    let s = Stack::new(
        r#"
[services.db]
command = "sleep 600"

[services.web]
command = "sleep 600"
depends_on = ["db"]

[services.worker]
command = "sleep 600"
depends_on = ["db"]

[services.other]
command = "sleep 600"
"#,
    );
    let states = |s: &Stack| -> Vec<(String, String)> {
        s.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["name"].as_str().unwrap().to_string(),
                    u["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    // A name the stack does not have is refused before anything starts.
    let out = s.run(&["up", "-d", "webb"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no unit or service named `webb`, did you mean `web`?"),
        "{}",
        text(&out.stderr)
    );
    let out = s.run(&["up", "-d", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        states(&s),
        vec![
            pair("db", "running"),
            pair("web", "running"),
            pair("worker", "stopped"),
            pair("other", "stopped")
        ]
    );
    // On the running stack, `up worker` starts it (its dependency runs already).
    let out = s.run(&["up", "worker"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ready: "),
        "{}",
        text(&out.stdout)
    );
    assert!(states(&s).contains(&pair("worker", "running")));
    assert!(states(&s).contains(&pair("other", "stopped")));
    // What the operator stopped stays stopped when grove is replaced.
    assert!(s.run(&["stop", "web"]).status.success());
    s.wait_for("web stopped", 10, |s| {
        states(s).contains(&pair("web", "stopped"))
    });
    let out = s.run(&["upgrade", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        states(&s).contains(&pair("web", "stopped")),
        "{:?}",
        states(&s)
    );
    assert!(states(&s).contains(&pair("worker", "running")));
    assert!(s.run(&["start", "web"]).status.success());
    s.wait_for("web started", 10, |s| {
        states(s).contains(&pair("web", "running"))
    });
    // A plain `up` after `down` starts everything.
    assert!(s.run(&["down"]).status.success());
    s.up();
    assert!(
        states(&s).iter().all(|(_, st)| st == "running"),
        "{:?}",
        states(&s)
    );
}

/// On a terminal, `up -d` shows the units as they start and become ready, then the table;
/// piped (scripts, CI), only the outcome.
#[test]
fn up_shows_progress_on_a_terminal_and_stays_quiet_when_piped() {
    let s = Stack::new(
        r#"
[services.db]
command = "sleep 600"
health = { exec = "true", interval = "200ms" }

[services.web]
command = "sleep 600"
depends_on = { db = "healthy" }
"#,
    );
    // `script` gives the command a pseudo-terminal, as a user's shell would.
    let grove = env!("CARGO_BIN_EXE_grove");
    let out = std::process::Command::new("script")
        .args(["-qec", &format!("{grove} up -d --no-color"), "/dev/null"])
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}");
    let progress: Vec<&str> = shown
        .lines()
        .take_while(|l| !l.starts_with("stack "))
        .collect();
    let at = |needle: &str| {
        progress
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {progress:#?}"))
    };
    assert!(at("db  started") < at("db  healthy"));
    assert!(at("db  healthy") < at("web  started"), "web waits for db");
    assert!(shown.contains("started in "), "{shown}");
    assert!(s.run(&["down"]).status.success());
    // Piped: no progress lines, only the table.
    let out = s.run(&["up", "-d"]);
    assert!(out.status.success());
    assert!(text(&out.stderr).trim().is_empty(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("stack "),
        "{}",
        text(&out.stdout)
    );
}
