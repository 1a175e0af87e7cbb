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
    /// The targets of remote `upstreams` services with `health`, as their probes see them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteStatus>,
}

/// One target of a remote `upstreams` service with `health`: in the route or out of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteStatus {
    /// The service.
    pub service: String,
    /// The target as the route names it (`app1.internal:8000`).
    pub target: String,
    /// `healthy` (in the route), `unhealthy` (out of it) or `starting` (not probed yet:
    /// the route counts it in).
    pub health: Health,
    /// Its last probe failure, while it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When its health last changed (Unix milliseconds).
    pub since_unix_ms: u64,
}

/// What a unit is doing, as `ps` shows it (lowercase on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    /// Wanted, waiting for its dependencies.
    Waiting,
    /// A dependency failed: it will not start until that is fixed.
    Blocked,
    /// Spawned, waiting for its first good probe.
    Starting,
    /// Running, with no probe.
    Running,
    /// Its probe passes.
    Healthy,
    /// Its probe fails; a heal is under way.
    Unhealthy,
    /// Waiting before its next start.
    Backoff,
    /// Its stop signal was sent.
    Stopping,
    /// Not running.
    Stopped,
    /// A task that exited 0.
    Completed,
    /// Gave up, or a task that failed.
    Failed,
}

impl UnitState {
    /// The word `ps` and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Waiting => "waiting",
            UnitState::Blocked => "blocked",
            UnitState::Starting => "starting",
            UnitState::Running => "running",
            UnitState::Healthy => "healthy",
            UnitState::Unhealthy => "unhealthy",
            UnitState::Backoff => "backoff",
            UnitState::Stopping => "stopping",
            UnitState::Stopped => "stopped",
            UnitState::Completed => "completed",
            UnitState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A probed unit's health (lowercase on the wire; `-` when there is no result to show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Its probe passes.
    Healthy,
    /// Its probe fails.
    Unhealthy,
    /// Running, not yet probed good.
    Starting,
    /// Not running.
    #[serde(rename = "-")]
    Unknown,
}

impl Health {
    /// The word `ps` and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Starting => "starting",
            Health::Unknown => "-",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A long-running service or a task that runs to completion (lowercase on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// Runs until stopped.
    Service,
    /// Runs to completion.
    Task,
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
    /// Service or task.
    pub kind: UnitKind,
    /// What it is doing.
    pub state: UnitState,
    /// Its health, or `None` when the unit has no probe.
    pub health: Option<Health>,
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
    /// The user it runs as, when not grove's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its memory limit, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// Its limits, as the stack file set them (`memory 64MB, pids 50`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
}

impl UnitStatus {
    /// Whether `up -d` may stop waiting for this unit with success.
    pub fn is_settled_ok(&self) -> bool {
        matches!(
            self.state,
            UnitState::Running | UnitState::Healthy | UnitState::Completed | UnitState::Stopped
        )
    }

    /// Whether it ended in failure (`failed` or `blocked`).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, UnitState::Failed | UnitState::Blocked)
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
