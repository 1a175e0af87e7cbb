//! The real binary, run as a user would: exit codes, output, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn grove(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_grove"))
        .args(args)
        .current_dir(dir)
        .env_remove("GROVE_ENV")
        .env_remove("GROVE_FILE")
        .env("NO_COLOR", "1")
        .envs(CHANNELS_ENV)
        .output()
        .expect("run grove")
}

/// The keys examples/channels requires from its .env (see its .env.example).
const CHANNELS_ENV: [(&str, &str); 7] = [
    ("ENVIRONMENT", "development"),
    ("POSTGRES_USER", "channels"),
    ("POSTGRES_PASSWORD", "example-password"),
    ("POSTGRES_DB", "channels"),
    ("DJANGO_SECRET_KEY", "example-secret-key"),
    ("SECRET_EMAIL_USER", "noreply@example.org"),
    ("SECRET_EMAIL_USER_PSWD", "example-mail-password"),
];

fn examples() -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "..", "..", "examples"]
        .iter()
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_and_help() {
    let out = grove(Path::new("."), &["--version"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("grove "));
    let out = grove(Path::new("."), &["--help"]);
    let help = text(&out.stdout);
    for cmd in [
        "init",
        "check",
        "up",
        "down",
        "ps",
        "logs",
        "events",
        "start",
        "stop",
        "restart",
        "reload",
        "exec",
        "trust",
        "completions",
    ] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = grove(Path::new("."), &["check", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = grove(Path::new("."), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_example_checks() {
    for name in [
        "quickstart",
        "canopy",
        "canopsis",
        "channels",
        "candidates",
        "cts",
    ] {
        let file = examples().join(name).join("grove.toml");
        let out = grove(Path::new("."), &["check", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with(&format!("stack {name}:")), "{stdout}");
        assert!(
            stdout.contains("LEVEL") && stdout.contains("UNIT"),
            "{stdout}"
        );
    }
}

#[test]
fn cts_instances_and_environments() {
    let dir = examples().join("cts");
    let out = grove(&dir, &["check"]);
    let stdout = text(&out.stdout);
    for unit in ["web@turkey", "web@iraq", "web@jordan", "migrate@iraq"] {
        assert!(stdout.contains(unit), "{stdout}");
    }
    assert!(stdout.contains("/TR") && stdout.contains("/IQ") && stdout.contains("/JO"));
    // Each unit's replacement order: the routed web units start-first, the tasks and the
    // database stop-first.
    let order = |unit: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(unit))
            .map(|l| l.contains("start-first"))
    };
    assert_eq!(order("web@turkey"), Some(true), "{stdout}");
    assert_eq!(order("migrate@iraq"), Some(false), "{stdout}");
    assert_eq!(order("db"), Some(false), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_grove"))
        .args(["check"])
        .current_dir(&dir)
        .env("GROVE_ENV", "dev")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("environment dev"), "{stdout}");
    assert!(
        stdout.contains("web@local") && !stdout.contains("web@turkey"),
        "{stdout}"
    );
}

#[test]
fn a_broken_file_prints_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grove.toml"),
        "[stack]\nname = \"t\"\n[services.web]\ncomand = \"x\"\n[services.b]\ncommand = \"y\"\nport = 99999\ndepends_on = [\"nope\"]\n",
    )
    .unwrap();
    let out = grove(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for want in [
        "grove.toml:3:11",
        "a service needs one of `command`, `recipe` or `upstreams`",
        "grove.toml:4:1",
        "did you mean `command`?",
        "grove.toml:7:8",
        "99999 is out of range",
        "grove.toml:8:15",
        "`nope` is not a service",
        "4 errors in the stack file",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    let out = grove(dir.path(), &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"].as_array().unwrap().len(), 4);
    assert_eq!(v["errors"][0]["line"], 3);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = grove(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read the stack file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_environment_lists_known_ones() {
    let dir = examples().join("candidates");
    let out = grove(&dir, &["check", "--env", "qa"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown environment `qa`"), "{stderr}");
    assert!(stderr.contains("`dev`, `prod` or `staging`"), "{stderr}");
}

#[test]
fn secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grove.toml"),
        "[stack]\nname = \"t\"\n[services.web]\ncommand = \"serve --token ${API_TOKEN}\"\nenv = { API_TOKEN = \"${API_TOKEN}\", DB_PASSWORD = \"hunter22\", NOTE = { value = \"quiet-value\", secret = true } }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "API_TOKEN=tok-123456\n").unwrap();
    for args in [&["check"][..], &["check", "--json"][..]] {
        let out = grove(dir.path(), args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for secret in ["tok-123456", "hunter22", "quiet-value"] {
            assert!(!all.contains(secret), "{secret} leaked in {args:?}:\n{all}");
        }
        assert!(all.contains("***"), "{all}");
    }
}

#[test]
fn init_writes_a_file_that_checks_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = grove(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = grove(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("stack myapp:"));
    let out = grove(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
    let out = grove(dir.path(), &["init", "--force"]);
    assert!(out.status.success());
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = grove(Path::new("."), &["completions", shell]);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("grove"), "{shell}");
    }
}
