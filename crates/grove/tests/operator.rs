//! Issue 28's operator verbs through the real binary: `grove logs --since/--until/--grep`.
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
