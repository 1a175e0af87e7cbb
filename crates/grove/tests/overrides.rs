//! Issue 26: single values set from outside the stack file (`--set`, `GROVE_SET_...`) reach
//! `check`, the daemon `up -d` starts and its reloads, and never a command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn environ(pid: i64) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

fn cmdline(pid: i64) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

const STACK: &str = r#"
[services.web]
command = "sleep 300"
env = { GREETING = "from the file" }
"#;

#[test]
fn a_set_value_reaches_check_the_daemon_and_its_reloads_and_no_command_line() {
    let s = Stack::new(STACK);
    let set = "services.web.env.GREETING=from the command line";
    let out = s.run(&["check", "--set", set]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("set services.web.env.GREETING = \"from the command line\" (from --set)"),
        "{said}"
    );
    let out = s.run(&["up", "-d", "--wait-timeout", "30s", "--set", set]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = s.pid("web").unwrap();
    assert!(
        environ(pid).contains("GREETING=from the command line"),
        "{}",
        environ(pid)
    );
    // The daemon has it in its environment, not on its command line.
    let daemon = i64::from(daemon_pid(s.path()).expect("the daemon"));
    assert!(
        !cmdline(daemon).contains("from the command line"),
        "{}",
        cmdline(daemon)
    );
    // A reload reads the file again with the same values: nothing changed, nothing restarts.
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.pid("web"), Some(pid));
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_bad_or_secret_set_value_is_refused_before_anything_runs() {
    let s = Stack::new(STACK);
    let out = s.run(&["check", "--set", "services.web.env.API_TOKEN=abc123"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("set GROVE_SET_services__web__env__API_TOKEN in the environment instead"),
        "{err}"
    );
    let out = s.run(&["check", "--set", "services.web.replicas=0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("services.web.replicas: 0 is out of range"),
        "{err}"
    );
    // Through the environment a secret is fine, and masked where check shows it.
    let out = s
        .cmd(&["check"])
        .env("GROVE_SET_services__web__env__API_TOKEN", "abc123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(
            "set services.web.env.API_TOKEN = \"***\" (from GROVE_SET_services__web__env__API_TOKEN)"
        ),
        "{said}"
    );
    assert!(!said.contains("abc123"), "{said}");
}
