//! # grove-supervisor: keeping units alive
//!
//! Owns the life of one unit as a pure state machine, [`UnitMachine`]: start, exit, restart
//! with exponential backoff and jitter, giving up after too many quick crashes, health probe
//! results, autoheal (restart after `retries` consecutive probe failures), task completion and
//! graceful stop. Time is injected (every input carries `now`), so the whole policy is tested
//! without sleeping; the process layer (spawning, process groups, signals, logs) drives it.
//!
//! It must not know about the edge, HTTP routing, TOML, or the state store: it reads a unit's
//! settings from the Plan and emits [`Action`]s and [`Event`]s for the caller to carry out.

#![forbid(unsafe_code)]

mod machine;

pub use machine::{Action, Event, ExitStatus, Input, Settings, State, UnitMachine};
