//! # grove-supervisor: keeping units alive
//!
//! Owns the life of one unit. [`UnitMachine`] is the pure state machine: start, exit, restart
//! with exponential backoff and jitter, giving up after too many quick crashes, health probe
//! results, autoheal (restart after `retries` consecutive probe failures), task completion and
//! graceful stop. Time is injected (every input carries `now`), so the whole policy is tested
//! without sleeping.
//!
//! Beside it sits the thin process layer the engine drives: [`process`] spawns a unit in its
//! own process group with a parent-death signal, signals whole groups, reads `/proc` for pids,
//! start times and resource use, and finds leftovers of a killed grove; [`probe`] runs http,
//! tcp and exec probes; [`logs`] writes timestamped, size-rotated log files.
//!
//! It must not know about the edge, HTTP routing, TOML, or the state store: it reads a unit's
//! settings from the Plan and emits [`Action`]s and [`Event`]s for the caller to carry out.

#![deny(unsafe_code)]

pub mod activation;
pub mod cgroup;
pub mod logs;
mod machine;
pub mod probe;
pub mod process;
pub mod shim;

pub use machine::{Action, Event, ExitStatus, Input, Settings, State, UnitMachine};
