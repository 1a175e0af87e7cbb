//! Helpers for tests that run real servers under grove (PostgreSQL, Redis) as root, and
//! kill grove under them.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{daemon_pid, text, Stack};

/// A stack whose folder other users may enter: as root, PostgreSQL runs as `postgres`.
pub fn open_stack(body: &str) -> Stack {
    let s = Stack::new("");
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.write_stack(body);
    s
}

pub fn up(s: &Stack) {
    let out = s.run(&["up", "-d", "--wait-timeout", "60s"]);
    assert!(
        out.status.success(),
        "up failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn secret(s: &Stack, name: &str) -> String {
    std::fs::read_to_string(s.path().join(".grove/secrets").join(name))
        .unwrap()
        .trim()
        .to_string()
}

pub fn port(s: &Stack, unit: &str) -> u16 {
    s.unit(unit)["port"].as_u64().unwrap() as u16
}

/// `psql -Atc SQL` as the administrator `grove` on `postgres`; Ok(stdout) or Err(stderr).
pub fn psql(port: u16, password: &str, sql: &str) -> Result<String, String> {
    psql_as(port, "grove", password, "postgres", sql)
}

/// `psql -Atc SQL` as `user` on database `db`; Ok(stdout) or Err(stderr).
pub fn psql_as(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-Atc",
            sql,
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-U", user, "-d", db])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(text(&out.stdout).trim().to_string())
    } else {
        Err(text(&out.stderr))
    }
}

pub fn kill_daemon(s: &Stack) {
    let pid = daemon_pid(s.path()).expect("a running daemon");
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn redis(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--no-auth-warning",
        ])
        .args(["-a", password])
        .args(args)
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}
