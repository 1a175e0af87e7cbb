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
//!
//! It must not know how a stack file is read (the daemon passes a reload function) nor how
//! units run (it asks the engine).

#![forbid(unsafe_code)]

mod client;
mod server;

pub use client::{Client, ClientError};
pub use server::{serve, ApiContext, Reloader};

use serde::{Deserialize, Serialize};

/// Body of start/stop/restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Targets {
    /// Unit or service names.
    pub targets: Vec<String>,
}

/// Answer of start/stop/restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acted {
    /// The units acted on.
    pub units: Vec<String>,
}

/// Any error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a human.
    pub error: String,
}
