//! Plain answers: unit status, apply reports, log lines.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The whole stack, as `grove ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Stack name.
    pub stack: String,
    /// Selected environment.
    pub environment: Option<String>,
    /// grove's own pid.
    pub pid: u32,
    /// grove's resident memory in bytes.
    pub rss_bytes: u64,
    /// Units in Plan order.
    pub units: Vec<UnitStatus>,
}

/// One unit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitStatus {
    /// `service[@instance][#replica]`.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its instance.
    pub instance: Option<String>,
    /// `service` or `task`.
    pub kind: String,
    /// `waiting`, `blocked`, `starting`, `running`, `healthy`, `unhealthy`, `backoff`,
    /// `stopping`, `stopped`, `completed`, `failed`.
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or `None` when the unit has no probe.
    pub health: Option<String>,
    /// Why it is failed, blocked or waiting, or its last probe failure.
    pub reason: Option<String>,
    /// The probe, described (`http GET 127.0.0.1:8000/health`).
    pub probe: Option<String>,
    /// Main process id (also its process group).
    pub pid: Option<i32>,
    /// Its port.
    pub port: Option<u16>,
    /// Restarts since it was last started on request.
    pub restarts: u32,
    /// Milliseconds since its process started.
    pub uptime_ms: Option<u64>,
    /// CPU use of its process group since the previous `ps` (or since start), in percent of
    /// one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of its process group.
    pub rss_bytes: Option<u64>,
    /// Processes in its group.
    pub processes: u32,
    /// Open file descriptors of its group.
    #[serde(default)]
    pub open_fds: Option<u32>,
    /// The release its code comes from.
    #[serde(default)]
    pub release: Option<String>,
}

impl UnitStatus {
    /// Whether `up -d` may stop waiting for this unit with success.
    pub fn is_settled_ok(&self) -> bool {
        matches!(
            self.state.as_str(),
            "running" | "healthy" | "completed" | "stopped"
        )
    }

    /// Whether it ended in failure (`failed` or `blocked`).
    pub fn is_failed(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "blocked")
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApplyReport {
    /// Units added (started as their dependencies allow).
    pub added: Vec<String>,
    /// Units removed (stopped).
    pub removed: Vec<String>,
    /// Units restarted, with what changed.
    pub restarted: Vec<(String, Vec<String>)>,
    /// Units whose supervision settings changed without a restart.
    pub updated: Vec<String>,
    /// Units left alone.
    pub kept: usize,
}

impl ApplyReport {
    /// One line: `2 added, 1 removed, 1 restarted (web: env), 3 unchanged`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", self.added.join(", ")));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed {}", self.removed.join(", ")));
        }
        if !self.restarted.is_empty() {
            let r: Vec<String> = self
                .restarted
                .iter()
                .map(|(u, why)| format!("{u} ({})", why.join(", ")))
                .collect();
            parts.push(format!("restarted {}", r.join(", ")));
        }
        if !self.updated.is_empty() {
            parts.push(format!("updated {}", self.updated.join(", ")));
        }
        parts.push(format!("{} unchanged", self.kept));
        parts.join("; ")
    }
}

/// One line a unit wrote.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The unit.
    pub unit: Arc<str>,
    /// `out`, `err` or `grove`.
    pub stream: &'static str,
    /// The text, without the newline.
    pub text: String,
}
