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
    cmd.arg("up").arg("--daemon-child").arg("-f").arg(file);
    if let Some(e) = env {
        cmd.arg("--env").arg(e);
    }
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

#[cfg(test)]
mod tests {
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
                "staging"
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
