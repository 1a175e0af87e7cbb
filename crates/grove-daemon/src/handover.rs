//! A hitless handover to the next grove (`grove upgrade`, SIGUSR2): the running grove stops
//! taking connections (they wait in the sockets' backlogs, which the holder keeps open), lets
//! go of its units without stopping one, gives up the stack's lock and control socket, starts
//! its successor (a new binary, usually), and finishes the requests it has before it ends.
//! The successor adopts the units and serves on the same sockets.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::sd_notify::Notifier;

/// How long the grove that hands over lets its open connections finish.
pub(crate) const DRAIN: Duration = Duration::from_secs(30);

/// The arguments that start a detached grove for the stack file `file`:
/// `up --daemon-child -f FILE [--env ENV] [SERVICE...]` (what `up -d` runs, with the services
/// it was given), or for a successor (`services` `None`) `... --successor`: it keeps the
/// stopped units stopped.
pub fn daemon_child_args(
    file: &Path,
    env: Option<&str>,
    services: Option<&[String]>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "up".into(),
        "--daemon-child".into(),
        "-f".into(),
        file.into(),
    ];
    if let Some(e) = env {
        args.push("--env".into());
        args.push(e.into());
    }
    match services {
        None => args.push("--successor".into()),
        Some(list) => {
            if !list.is_empty() {
                args.push("--".into());
            }
            args.extend(list.iter().map(Into::into));
        }
    }
    args
}

/// What starts the successor: `BINARY up --daemon-child -f FILE [--env ENV]`, its output
/// appended to the state folder's `logs/grove.log`.
pub(crate) fn successor(
    binary: &Path,
    file: &Path,
    env: Option<&str>,
    state: &Path,
    manager: &Notifier,
) -> std::io::Result<tokio::process::Command> {
    let log_path = state.join("logs").join("grove.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(daemon_child_args(file, env, None));
    for (k, v) in manager.successor_env() {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    Ok(cmd)
}

/// The binary the successor runs: the one asked for, else the file this grove was started
/// from (which an upgrade has replaced).
pub(crate) fn binary(asked: Option<PathBuf>) -> std::io::Result<PathBuf> {
    match asked {
        Some(b) => Ok(b),
        None => {
            let p = std::env::current_exe()?;
            // A replaced file shows as `PATH (deleted)`: the path is what we want.
            let text = p.display().to_string();
            Ok(PathBuf::from(
                text.strip_suffix(" (deleted)").unwrap_or(&text).to_string(),
            ))
        }
    }
}

/// How many panics in a row a detached grove answers by starting a successor, within
/// [`PANIC_STREAK`] of the first; then it only dies (a grove that panics at every start must
/// not start forever).
const PANIC_RESTARTS: u32 = 5;
const PANIC_STREAK: u64 = 300;
const PANICKED: &str = "GROVE_PANICKED";

/// The streak a panic continues: (how many so far, when the first was), from `GROVE_PANICKED`
/// (`COUNT:UNIX_SECONDS`), reset when the first is older than [`PANIC_STREAK`].
pub(crate) fn panic_streak(var: Option<&str>, now: u64) -> (u32, u64) {
    let parsed = var.and_then(|v| {
        let (n, at) = v.split_once(':')?;
        Some((n.parse::<u32>().ok()?, at.parse::<u64>().ok()?))
    });
    match parsed {
        Some((n, at)) if now.saturating_sub(at) <= PANIC_STREAK => (n, at),
        _ => (0, now),
    }
}

/// Makes a panic anywhere in this (detached) grove a handover by crash: after the panic is
/// written to the log, a successor `grove up --daemon-child` is started (it adopts the units
/// and takes the sockets, as after `kill -9`) and this process aborts, so no half-broken grove
/// lingers. Not under systemd, whose `Restart=always` does the same.
pub fn respawn_on_panic(file: PathBuf, env: Option<String>) {
    let shown = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        shown(info);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (n, first) = panic_streak(std::env::var(PANICKED).ok().as_deref(), now);
        if n < PANIC_RESTARTS {
            if let Ok(bin) = binary(None) {
                let mut cmd = std::process::Command::new(bin);
                cmd.args(daemon_child_args(&file, env.as_deref(), None));
                cmd.env(PANICKED, format!("{}:{first}", n + 1))
                    .stdin(Stdio::null());
                match cmd.spawn() {
                    Ok(c) => eprintln!("grove: panicked; grove pid {} takes over", c.id()),
                    Err(e) => eprintln!("grove: panicked, and cannot start another: {e}"),
                }
            }
        } else {
            eprintln!(
                "grove: panicked {n} times in a row; not starting again (`grove up -d` does)"
            );
        }
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_streak_is_counted_and_forgotten() {
        assert_eq!(panic_streak(None, 1000), (0, 1000));
        assert_eq!(panic_streak(Some("2:900"), 1000), (2, 900));
        assert_eq!(panic_streak(Some("4:100"), 1000), (0, 1000), "long ago");
        assert_eq!(panic_streak(Some("junk"), 1000), (0, 1000));
    }

    use super::*;

    #[test]
    fn the_successor_runs_the_same_stack_detached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let cmd = successor(
            Path::new("/usr/local/bin/grove"),
            Path::new("/srv/cts/grove.toml"),
            Some("staging"),
            dir.path(),
            &Notifier::off(),
        )
        .unwrap();
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "/usr/local/bin/grove");
        let args: Vec<_> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "up",
                "--daemon-child",
                "-f",
                "/srv/cts/grove.toml",
                "--env",
                "staging",
                // It keeps the units the operator stopped stopped.
                "--successor"
            ]
        );
        assert!(dir.path().join("logs/grove.log").exists());
    }

    #[test]
    fn an_asked_binary_wins() {
        assert_eq!(
            binary(Some(PathBuf::from("/opt/grove-2"))).unwrap(),
            PathBuf::from("/opt/grove-2")
        );
        assert!(binary(None).is_ok());
    }
}
