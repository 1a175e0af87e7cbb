//! # grove-recipes: real backing servers from the system's own binaries
//!
//! Owns everything grove knows about PostgreSQL, Redis, RabbitMQ, Memcached and MongoDB:
//! where their binaries live and which Debian package brings them ([`find`]); how a data
//! folder is prepared and the server started in the foreground on its own loopback port
//! ([`launch`], which runs inside the unit's process: grove re-executes itself as
//! `grove __recipe`, prepares, then replaces itself with the server so the unit's pid is the
//! server's); and how readiness is checked and roles, databases and virtual hosts created in
//! a running server ([`check`]).
//!
//! It must not know the engine's scheduling, the edge, the state store or TOML: the engine
//! hands it a [`Server`] built from a Plan unit and gets back commands and probe results.

#![deny(unsafe_code)]

pub mod backup;
pub mod find;
pub mod launch;
mod probe;
mod rabbit;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use grove_plan::{Recipe, RecipeSpec, Run, Unit};
use serde::{Deserialize, Serialize};

pub use find::{binary, preflight, Missing};
pub use probe::{check, describe};

/// The environment variable that carries a [`Job`] to `grove __recipe`.
pub const JOB_VAR: &str = "GROVE_RECIPE_JOB";

/// A recipe failure while preparing or starting a server.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// A binary is missing.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// A file or folder could not be prepared.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A preparation step failed.
    #[error("{0}")]
    Step(String),
}

impl RecipeError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| RecipeError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

/// One recipe server as the engine sees it: a Plan unit resolved against the stack's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Which server.
    pub recipe: Recipe,
    /// The stack's name (part of RabbitMQ's node name).
    pub stack: String,
    /// The unit's name.
    pub unit: String,
    /// The absolute data folder.
    pub data_dir: PathBuf,
    /// The address it binds.
    pub bind: IpAddr,
    /// Its port.
    pub port: u16,
    /// Accounts and databases.
    pub spec: RecipeSpec,
}

impl Server {
    /// The server of a recipe unit, or `None` for other units.
    pub fn of(stack: &str, root: &Path, unit: &Unit) -> Option<Server> {
        let Run::Recipe { recipe, spec } = &unit.run else {
            return None;
        };
        Some(Server {
            recipe: *recipe,
            stack: stack.to_string(),
            unit: unit.name.clone(),
            data_dir: root.join(&spec.data_dir),
            bind: unit.bind,
            port: unit.port?,
            spec: spec.clone(),
        })
    }

    /// The address clients dial (loopback for an unspecified bind address).
    pub fn client_addr(&self) -> String {
        grove_plan::host_port(&self.client_host(), self.port)
    }

    /// The stack's certificate authority, which signs a TLS server's certificate: the state
    /// folder's `certs/ca.pem` (the data folder is `<state>/data/<unit>`).
    pub fn ca_file(&self) -> PathBuf {
        let data = self.data_dir.parent().unwrap_or(&self.data_dir);
        data.parent().unwrap_or(data).join("certs").join("ca.pem")
    }

    /// The host part of [`Server::client_addr`].
    pub fn client_host(&self) -> String {
        grove_plan::client_host(self.bind)
    }

    /// What `grove __recipe` needs to prepare and start it.
    pub fn job(&self) -> Job {
        Job {
            recipe: self.recipe.name().to_string(),
            stack: self.stack.clone(),
            unit: self.unit.clone(),
            data_dir: self.data_dir.clone(),
            bind: self.bind,
            port: self.port,
            user: self.spec.admin.user.clone(),
            password: self.spec.admin.password.clone(),
            persistence: self.spec.persistence,
            allow: self.spec.allow.clone(),
            tls: None,
            tls_wanted: self.spec.tls,
            tls_names: self.spec.tls_names.clone(),
            definitions: match self.recipe {
                Recipe::Rabbitmq => rabbit::boot_definitions(self),
                _ => None,
            },
        }
    }
}

/// What the unit's process (`grove __recipe`) is told, as JSON in [`JOB_VAR`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The recipe's name (`postgres`, ...).
    pub recipe: String,
    /// The stack's name.
    pub stack: String,
    /// The unit's name.
    pub unit: String,
    /// The absolute data folder.
    pub data_dir: PathBuf,
    /// The address to bind.
    pub bind: IpAddr,
    /// The port.
    pub port: u16,
    /// The administrator (empty when the server has no accounts).
    pub user: String,
    /// The administrator's password.
    pub password: String,
    /// Redis persistence.
    pub persistence: bool,
    /// PostgreSQL: networks whose clients may log in, beyond loopback.
    #[serde(default)]
    pub allow: Vec<String>,
    /// PostgreSQL with `tls = true`: the server's certificate chain and key (PEM), signed
    /// with the stack's CA by `grove __recipe` before it starts the server; never sent
    /// through the environment (`tls_wanted` says to make them).
    #[serde(skip)]
    pub tls: Option<(String, String)>,
    /// PostgreSQL: serve TLS.
    #[serde(default)]
    pub tls_wanted: bool,
    /// PostgreSQL with TLS: the names its certificate carries besides the machine's own.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// RabbitMQ: the users, virtual hosts and permissions to load as the node boots (JSON,
    /// passwords as RabbitMQ's salted hashes), and the key of the spec they come from.
    #[serde(default)]
    pub definitions: Option<(String, String)>,
}

/// RabbitMQ's Erlang node name for a unit: unique per stack and unit, so two stacks (and a
/// system RabbitMQ) never meet.
pub fn node_name(stack: &str, unit: &str) -> String {
    let clean: String = format!("grove-{stack}-{unit}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}@localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_distinct_per_stack_and_unit() {
        assert_eq!(node_name("cts", "mq"), "grove-cts-mq@localhost");
        assert_eq!(node_name("cts", "mq@iraq"), "grove-cts-mq_iraq@localhost");
        assert_ne!(node_name("a", "mq"), node_name("b", "mq"));
    }
}
