//! # grove-api: the control API
//!
//! Owns the wire protocol between the `grove` CLI and a running grove: JSON over HTTP/1.1 on
//! the Unix socket `.grove/grove.sock` (mode 0600 in a 0700 folder, so only its owner can
//! talk to it; `curl --unix-socket .grove/grove.sock http://grove/v1/status` works too).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/status` | every unit's state ([`grove_engine::Status`]) |
//! | GET | `/v1/plan` | the running Plan, secrets masked |
//! | POST | `/v1/start`, `/v1/stop`, `/v1/restart` | body `{"targets": [...]}`; the units acted on |
//! | POST | `/v1/reload` | re-read the stack file and apply the difference ([`grove_engine::ApplyReport`]) |
//! | POST | `/v1/down` | stop everything; answers once every process is gone |
//! | POST | `/v1/handover` | body `{"binary": PATH}` (optional): hand the running units and the edge's sockets to a new grove started from PATH (default: this grove's file), then drain and end ([`Handover`]) |
//! | GET | `/metrics` | Prometheus text: host, units, routes |
//! | GET | `/v1/units`, `/v1/now` | unit states; everything measured now (JSON) |
//! | GET | `/v1/series`, `/v1/metrics?series=S&since=SECONDS` | stored series and their points |
//! | GET | `/v1/events?limit=N`, `/v1/events/stream` | the event log; new events as server-sent events |
//! | GET | `/v1/logs?unit=U&lines=N`, `/v1/logs/stream?unit=U` | a unit's log tail; then new lines as server-sent events (secrets masked) |
//! | GET, POST | `/v1/maintenance` | maintenance mode now; turn it on (the settings) or off (`null`) |
//! | GET | `/` | the dashboard (admin listener) |
//!
//! The same API is served on the admin listener (`[admin] listen`, off by default) where every
//! request needs the token of `.grove/admin.token`: `Authorization: Bearer <token>`, or the
//! cookie that `/?token=<token>` sets for the dashboard (whose changes also carry an
//! `X-Grove` header a cross-site form cannot send).
//!
//! It must not know how a stack file is read (the daemon passes a reload function) nor how
//! units run (it asks the engine).

#![forbid(unsafe_code)]

mod client;
mod dashboard;
mod server;

pub use client::{Client, ClientError};
pub use server::{
    exposition, reload, serve, serve_admin, unit_metrics, ActError, ApiContext, Applier, Deployer,
    Maintainer, Observe, ReloadError, Reloader, Restarter,
};

use serde::{Deserialize, Serialize};

/// Body of start/stop/restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Targets {
    /// Unit or service names.
    pub targets: Vec<String>,
}

/// Body of `POST /v1/deploy`: switch the running stack to a release already checked out
/// and built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The release id.
    pub release: String,
    /// The stack's folder inside the release's checkout.
    pub dir: std::path::PathBuf,
    /// A rollback (to a release that was live before): its outcome is left as it is when the
    /// switch fails.
    #[serde(default)]
    pub rollback: bool,
}

/// Answer of `POST /v1/deploy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployReport {
    /// The release now live.
    pub release: String,
    /// Units started beside the old generation and switched to (`web@turkey`).
    pub staged: Vec<String>,
    /// Units that could not run beside their old generation (a fixed port) and were
    /// restarted in place at the switch.
    pub in_place: Vec<String>,
    /// What the rest of the switch did.
    pub applied: grove_engine::ApplyReport,
    /// Each step, as one line.
    pub steps: Vec<String>,
}

/// Body of `POST /v1/record`: an event from a command (a deploy's build step).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Event kind: lowercase letters and dashes.
    pub kind: String,
    /// One sentence.
    pub message: String,
}

/// A handover to the next grove (`grove upgrade`): asked of the running one, answered at
/// once with its pid; the daemon then starts its successor, drains and ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The successor's binary; this grove's own file when absent.
    #[serde(default)]
    pub binary: Option<std::path::PathBuf>,
    /// The grove that hands over (in the answer).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// Answer of start/stop/restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Acted {
    /// The units acted on.
    pub units: Vec<String>,
    /// What was done, step by step, when more than a signal (a start-first replacement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

/// Any error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a human.
    pub error: String,
}
