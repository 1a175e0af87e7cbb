//! The progress display of `grove up -d` and `grove deploy` on a terminal: the stack's
//! events as the running grove records them (units starting and becoming ready, a task
//! completing, a deploy's steps), one line each on stderr, while the command waits. Off when
//! stderr is not a terminal: scripts and CI see only the outcome, as before.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grove_state::{EventRecord, Store};

/// A running display; [`Progress::finish`] prints what is left and ends it.
pub struct Progress {
    task: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

impl Progress {
    /// Follows the events of the stack whose state folder is `state`, from now on, when
    /// stderr is a terminal.
    pub fn start(state: &Path, color: bool) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let db = state.join("state.db");
        // Where the stack's events stand now: what comes after is this command's.
        let from = Store::open_read_only(&db)
            .ok()
            .and_then(|s| s.last_events(1, &[]).ok())
            .and_then(|e| e.last().map(|e| e.id))
            .unwrap_or(0);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(follow(db, from, color, stopped));
        Progress {
            task: Some((task, stop)),
        }
    }

    /// Prints the events recorded so far and stops.
    pub async fn finish(self) {
        if let Some((task, stop)) = self.task {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

async fn follow(
    db: PathBuf,
    mut last: i64,
    color: bool,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let began = Instant::now();
    loop {
        let done = tokio::select! {
            _ = &mut stopped => true,
            _ = tokio::time::sleep(Duration::from_millis(100)) => false,
        };
        // Opened afresh each time (read-only, cheap): the first `up` creates it meanwhile.
        if let Ok(store) = Store::open_read_only(&db) {
            for e in store.events_after(last, 1000, &[]).unwrap_or_default() {
                last = last.max(e.id);
                eprintln!("{}", line(&e, began.elapsed(), color));
            }
        }
        if done {
            return;
        }
    }
}

/// One event as a progress line (`   0.4s  db  healthy  healthy (recipe postgres)`).
pub fn line(e: &EventRecord, elapsed: Duration, color: bool) -> String {
    let unit = e.unit.as_deref().unwrap_or("grove");
    let kind = if color {
        let code = match e.kind.as_str() {
            "healthy" | "completed" | "switched" | "deployed" => "32",
            "exited" | "gave-up" | "unhealthy" | "deploy-failed" | "spawn-failed" => "31",
            _ => "2",
        };
        format!("\x1b[{code}m{}\x1b[0m", e.kind)
    } else {
        e.kind.clone()
    };
    format!(
        "{:>6.1}s  {unit}  {kind}  {}",
        elapsed.as_secs_f64(),
        e.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(unit: Option<&str>, kind: &str, message: &str) -> EventRecord {
        EventRecord {
            id: 1,
            ts_ms: 0,
            unit: unit.map(str::to_string),
            kind: kind.into(),
            message: message.into(),
        }
    }

    #[test]
    fn each_event_is_a_line_with_the_time_since_the_command_began() {
        let l = line(
            &event(Some("db"), "healthy", "healthy (recipe postgres)"),
            Duration::from_millis(420),
            false,
        );
        assert_eq!(l, "   0.4s  db  healthy  healthy (recipe postgres)");
        let l = line(
            &event(None, "deploy", "release 3: built"),
            Duration::from_secs(12),
            false,
        );
        assert_eq!(l, "  12.0s  grove  deploy  release 3: built");
        let coloured = line(
            &event(Some("web"), "exited", "exited with code 3"),
            Duration::ZERO,
            true,
        );
        assert!(coloured.contains("\x1b[31mexited\x1b[0m"));
    }
}
