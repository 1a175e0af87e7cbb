//! Issue 28's operator verbs through the real binary: `grove logs --since/--until/--grep`
//! and `grove top`.
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
