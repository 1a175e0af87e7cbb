//! # grove-config: the stack file
//!
//! Owns everything about what a user writes: TOML parsing with locations, environment overlays
//! (inline `[environments.NAME]` and sibling `grove.NAME.toml` files), `.env` files,
//! `${...}` interpolation, and validation into a typed [`Stack`]. Every problem in a file is
//! reported at once, each as a [`ConfigError`] with file, line, column, key and what is valid.
//!
//! It must not know about units, ports assigned at run time, processes, sockets or the Plan:
//! references such as `${PORT}` or `${db.url}` stay as [`Template`] parts for `grove-plan`.
//! It reads files (the stack file, overlays, `.env`, `env_file`) and nothing else: no network,
//! no process environment except what the caller passes in [`LoadOptions`].

#![forbid(unsafe_code)]

mod build;
mod cron;
mod dotenv;
pub mod edge_rules;
mod error;
mod interp;
mod load;
mod node;
mod overrides;
mod source;
mod stack;
mod units;

pub use build::{is_secret_name, valid_database};
pub use cron::Cron;
pub use error::{suggest, ConfigError, ConfigErrors, Warning};
pub use interp::{interpolate, InterpError, Part, ServiceAttr, Template};
pub use load::{load, load_str, LoadOptions, Loaded};
pub use overrides::{check_sets, Override, CLI_SETS_VAR, ENV_PREFIX as SET_PREFIX};
pub use stack::*;
pub use units::{parse_duration, parse_signal, parse_size, SIGNALS};

/// The starter stack file `grove init` writes; it passes `grove check`.
pub const STARTER: &str = include_str!("starter.toml");
