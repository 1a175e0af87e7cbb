//! # grove-plan: the Plan
//!
//! Owns the expansion of a validated [`grove_config::Stack`] into the [`Plan`]: one [`Unit`] per
//! service x instance x replica (`web@turkey#2`) with its resolved command, environment, working
//! folder, port, probe, restart policy and dependencies; the start levels; the route table; and
//! [`Plan::diff`], which names what a change adds, removes, restarts and keeps.
//!
//! The Plan is plain data: no I/O, no clock, no tokio, no TOML. Two Plans built from the same
//! Stack are equal, and every later part of grove (supervisor, edge, export) reads only this.
//! Paths in the Plan are relative to [`Plan::root`] unless absolute.

#![forbid(unsafe_code)]

mod build;
mod diff;
mod maintenance;
mod staging;

use std::net::IpAddr;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;

pub use build::{
    build, build_with, client_host, credentials_needed, host_port, Inputs, PlanError, ReleaseInput,
};
pub use diff::{PlanDiff, Restarted};
pub use grove_config::edge_rules;
pub use grove_config::edge_rules::{
    BasicAuth, Compress, Encoding, HeaderRules, RateKey, RateLimit, Redirect, RequestVars, Text,
};
pub use grove_config::{
    AccessFormat, AccessLogSettings, AcmeChallenge, Admin, Balance, CertFiles, Concurrency,
    Condition, Databases, EdgeLimits, Listen, LogRotation, Recipe, Replace, RestartPolicy, Scheme,
    ServiceKind, StaticMount, Tls, Upstream, DEFAULT_BUFFER_BODY, DEFAULT_HOLD_MS,
    DEFAULT_MAX_BODY,
};
pub use maintenance::{Maintenance, MAINTENANCE_KEY};
pub use staging::{
    reload_staging, restart_staging, rolling, split_in_place, staging, start_first, with_unit_of,
    Staging,
};

/// Everything grove will run and route, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The stack's name.
    pub stack: String,
    /// The environment overlay applied, if any.
    pub environment: Option<String>,
    /// The deployed release the application code runs from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The stack file's folder.
    pub root: PathBuf,
    /// The state folder (relative to `root` unless absolute).
    pub state_dir: PathBuf,
    /// Rotation of each unit's log file.
    pub logs: LogRotation,
    /// Units by name, in service order, then instance, then replica.
    pub units: IndexMap<String, Unit>,
    /// Start levels: every unit of a level can start once the previous levels are up.
    pub levels: Vec<Vec<String>>,
    /// The route table, sorted by host then prefix.
    pub routes: Vec<Route>,
    /// Edge settings.
    pub edge: Edge,
    /// Admin listener, sampling, notifications.
    pub admin: AdminSettings,
    /// Probes of remote `upstreams` targets (the daemon runs them; the edge routes only to
    /// targets that pass).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_health: Vec<RemoteHealth>,
    /// Secret variables the stack file interpolates (into a command line, say), with their
    /// values: masked by [`Plan::secret_values`], referred to by name in exports. Never
    /// serialized.
    #[serde(skip)]
    pub interpolated_secrets: Vec<(String, String)>,
}

/// The probe of a remote `upstreams` service, run against each of its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteHealth {
    /// The service.
    pub service: String,
    /// Each target as the edge names it (`host:port`) and its check.
    pub targets: Vec<(String, ProbeCheck)>,
    /// Milliseconds between probes.
    pub interval_ms: u64,
    /// Milliseconds a probe may take.
    pub timeout_ms: u64,
    /// Failures in a row that take a target out (and passes that bring it back: one).
    pub retries: u32,
}

/// `[admin]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminSettings {
    /// The admin listener, if on.
    pub listen: Option<std::net::SocketAddr>,
    /// Milliseconds between metric samples.
    pub sample_interval_ms: u64,
    /// Webhook URL for notified events.
    pub webhook: Option<String>,
    /// AMQP URL for notified events (may carry a recipe's password: secret).
    pub amqp: Option<String>,
    /// The topic exchange events are published to.
    pub amqp_exchange: String,
    /// Event kinds notified (`*` = all).
    pub notify: Vec<String>,
}

/// The response header with which grove answers a request that reached a socket-activated
/// unit while it stopped: nothing of the request was served, so grove's edge sends it to
/// another target whatever its method (see `grove_engine::sockets`).
pub const NOT_SERVED_HEADER: &str = "grove-not-served";

/// One process (or backing server) grove supervises.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// `service`, `service#2`, `service@instance` or `service@instance#2`.
    pub name: String,
    /// The service it comes from.
    pub service: String,
    /// Its instance, for per-instance services.
    pub instance: Option<String>,
    /// 1-based replica number.
    pub replica: u32,
    /// Service or task.
    pub kind: ServiceKind,
    /// What to run.
    pub run: Run,
    /// Working folder.
    pub cwd: PathBuf,
    /// Environment, including `PORT`, `HOST` and `GROVE_*`.
    pub env: IndexMap<String, EnvVar>,
    /// Its port.
    pub port: Option<u16>,
    /// Its bind address.
    pub bind: IpAddr,
    /// Health probe.
    pub health: Option<Probe>,
    /// Restart policy.
    pub restart: Restart,
    /// Stop signal name.
    pub stop_signal: String,
    /// Grace before SIGKILL, in milliseconds.
    pub stop_grace_ms: u64,
    /// How a change replaces it (`replace`; `auto` unless the stack file says).
    #[serde(skip_serializing_if = "is_auto")]
    pub replace: Replace,
    /// Who its process runs as (`user`, `group`, `umask`); grove's own user when not set.
    #[serde(skip_serializing_if = "RunAs::is_default")]
    pub run_as: RunAs,
    /// A recipe's scheduled backups (the daemon makes them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupPlan>,
    /// A scheduled job: the daemon starts it at its times; `up` and `reload` do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// Folders first on its `PATH` (absolute), before grove's own `PATH`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<PathBuf>,
    /// What its process may use (`limits`), enforced through its cgroup and rlimits.
    #[serde(skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// How many of its service's units a start-first replacement replaces at once.
    #[serde(skip_serializing_if = "is_one")]
    pub max_surge: u32,
    /// `socket = true`: grove opens `bind:port` and hands the listening socket to the
    /// process (systemd's socket activation: fd 3, `LISTEN_FDS`, `LISTEN_PID`), kept open
    /// across its restarts so connections wait in its backlog.
    #[serde(skip_serializing_if = "is_false")]
    pub socket: bool,
    /// Units this one waits for.
    pub depends_on: Vec<Dependency>,
    /// Start level (0 = no dependencies).
    pub level: usize,
    /// Container image for export (not used to run locally).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The release its code comes from (its folder is inside that release's checkout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl Unit {
    /// Where grove opens the socket of a socket-activated unit (`socket = true`); `None` for
    /// every other unit.
    pub fn socket_address(&self) -> Option<std::net::SocketAddr> {
        let port = self.port.filter(|_| self.socket)?;
        Some(std::net::SocketAddr::new(self.bind, port))
    }
}

/// A recipe's scheduled backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BackupPlan {
    /// When (the schedule of a job that never overlaps itself).
    pub when: Job,
    /// The newest backups kept per database.
    pub keep: u32,
    /// Where, absolute.
    pub dir: PathBuf,
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Job {
    /// Its cron schedule.
    pub schedule: String,
    /// The time zone of the schedule (UTC when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What a run due while the last one runs does.
    pub concurrency: Concurrency,
    /// A run is stopped after this many milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl Job {
    /// The first run after `after` (in the job's time zone); `None` when the schedule has
    /// none, or names a time zone this machine does not know.
    pub fn next_after(&self, after: std::time::SystemTime) -> Option<std::time::SystemTime> {
        let cron = grove_config::Cron::parse(&self.schedule).ok()?;
        let tz = match &self.timezone {
            Some(name) => jiff::tz::TimeZone::get(name).ok()?,
            None => jiff::tz::TimeZone::UTC,
        };
        let ts = jiff::Timestamp::try_from(after).ok()?;
        let next = cron.next_after(&ts.to_zoned(tz))?;
        Some(std::time::SystemTime::from(next.timestamp()))
    }
}

/// A unit's resource limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU time, in thousandths of a CPU (1500: one and a half).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_milli: Option<u32>,
    /// Processes and threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Open files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
}

impl Limits {
    /// No limit set.
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }

    /// `memory 512MB, cpu 1.5, pids 200, nofile 65536`, the set ones only.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory {
            parts.push(format!("memory {}", size_text(m)));
        }
        if let Some(c) = self.cpu_milli {
            parts.push(format!("cpu {}", f64::from(c) / 1000.0));
        }
        if let Some(p) = self.pids {
            parts.push(format!("pids {p}"));
        }
        if let Some(n) = self.nofile {
            parts.push(format!("nofile {n}"));
        }
        parts.join(", ")
    }
}

/// A byte count as the stack file writes it: `512MB`, `1GB`, `256MiB`.
pub fn size_text(bytes: u64) -> String {
    let units = [
        ("GB", 1_000_000_000u64),
        ("MB", 1_000_000),
        ("KB", 1_000),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in units {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Who a unit's process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunAs {
    /// A user name or numeric id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A group name or numeric id (the user's own group when not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The file mode creation mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
}

impl RunAs {
    /// Nothing set: grove's own user, group and mask.
    pub fn is_default(&self) -> bool {
        *self == RunAs::default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn is_auto(r: &Replace) -> bool {
    *r == Replace::Auto
}

/// What a unit runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Run {
    /// A command line.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// A backing server recipe.
    Recipe {
        /// Which.
        recipe: Recipe,
        /// Where its data lives, who logs in, what it creates.
        spec: RecipeSpec,
    },
}

/// What a recipe server is given: its folder, its accounts and its databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipeSpec {
    /// Its data folder (relative to the Plan's root unless absolute): `.grove/data/<unit>`.
    pub data_dir: PathBuf,
    /// The administrator account (user `grove`); no password for memcached and mongodb.
    pub admin: Credentials,
    /// Further login roles (one per instance with `databases = "per-instance"`).
    pub roles: Vec<Credentials>,
    /// Databases (PostgreSQL, MongoDB) or virtual hosts (RabbitMQ) to create, sorted.
    pub databases: Vec<Database>,
    /// Redis: snapshots on disk and a save on stop.
    pub persistence: bool,
    /// PostgreSQL: networks whose clients may log in with a password, beyond loopback.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// PostgreSQL: TLS with a certificate from the stack's CA (clients beyond loopback must
    /// use it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// PostgreSQL with TLS: names its certificate carries besides the machine's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_names: Vec<String>,
}

impl RecipeSpec {
    /// Every password in the spec.
    pub fn passwords(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.admin)
            .chain(self.roles.iter())
            .map(|c| c.password.as_str())
            .filter(|p| !p.is_empty())
    }

    /// The spec without what provisioning creates (roles and databases): two specs equal here
    /// differ only in what a running server can be given without a restart.
    pub fn server_part(&self) -> RecipeSpec {
        RecipeSpec {
            roles: Vec::new(),
            databases: Vec::new(),
            ..self.clone()
        }
    }
}

/// A login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// User (role) name.
    pub user: String,
    /// Its password (generated by grove; secret).
    pub password: String,
}

/// A database a recipe creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// The role that owns it (and alone may connect, for per-instance databases).
    pub owner: String,
    /// Only its owner may connect.
    pub private: bool,
}

/// An environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    /// Its value.
    pub value: String,
    /// Never shown.
    pub secret: bool,
}

/// A health probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// What is checked.
    pub check: ProbeCheck,
    /// Milliseconds between probes.
    pub interval_ms: u64,
    /// Milliseconds one probe may take.
    pub timeout_ms: u64,
    /// Consecutive failures before unhealthy.
    pub retries: u32,
    /// Milliseconds after start in which failures do not count.
    pub start_period_ms: u64,
}

/// The probe's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeCheck {
    /// `GET http://host:port/path`.
    Http {
        /// host:port.
        addr: String,
        /// Path.
        path: String,
        /// The statuses that pass; empty: any 2xx or 3xx (as Kubernetes' probes).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        status: Vec<u16>,
    },
    /// TCP connect.
    Tcp {
        /// host:port.
        addr: String,
    },
    /// Command exit status.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// The recipe's own readiness check (pg_isready, PING, ...).
    Recipe,
}

/// Restart policy of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// When.
    pub policy: RestartPolicy,
    /// First delay, ms.
    pub backoff_ms: u64,
    /// Largest delay, ms.
    pub max_backoff_ms: u64,
    /// Restarts before giving up (0 = unlimited).
    pub max_restarts: u32,
}

/// A unit this one waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// The unit.
    pub unit: String,
    /// The condition.
    pub condition: Condition,
}

/// `units` and everything they wait for, transitively: what `grove up SERVICE...` starts.
pub fn with_dependencies(plan: &Plan, units: &[String]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = units.to_vec();
    while let Some(u) = todo.pop() {
        if !out.insert(u.clone()) {
            continue;
        }
        if let Some(unit) = plan.units.get(&u) {
            todo.extend(unit.depends_on.iter().map(|d| d.unit.clone()));
        }
    }
    out
}

/// A route's forward authentication, its URL resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardAuthTarget {
    pub url: String,
    /// Headers of a 2xx answer copied onto the request (lowercase).
    pub copy_headers: Vec<String>,
}

/// One entry of the route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Host to match, `None` for any.
    pub host: Option<String>,
    /// Path prefix.
    pub prefix: String,
    /// Strip the prefix before proxying (with `X-Forwarded-Prefix`).
    pub strip_prefix: bool,
    /// Pass WebSocket upgrades.
    pub websocket: bool,
    /// Largest request body, bytes.
    pub max_body: u64,
    /// Request bodies up to this size are held whole (retried, mirrored); larger ones stream.
    #[serde(skip_serializing_if = "is_default_buffer")]
    pub buffer_body: u64,
    /// How requests spread over the units.
    pub balance: Balance,
    /// How long a request waits for a ready unit before 503, in milliseconds.
    pub hold_ms: u64,
    /// Header rules on its responses.
    #[serde(skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
    /// Header rules on its requests.
    #[serde(skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Basic authentication (its users are never shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
    /// Requests per key and time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The authentication service each request is first asked of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<ForwardAuthTarget>,
    /// Compression of its answers, when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// The services its requests are split over, by weight (empty: all go to `target`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
    /// The cookie that keeps a client on the split target it got first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky: Option<String>,
    /// Where copies of some of its requests go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorTarget>,
    /// The service it routes to.
    pub service: String,
    /// The instance, for per-instance services.
    pub instance: Option<String>,
    /// Where it goes.
    pub target: Target,
}

impl Route {
    /// `host/prefix` (or `*/prefix`), the route's identity in diffs.
    pub fn key(&self) -> String {
        format!("{}{}", self.host.as_deref().unwrap_or("*"), self.prefix)
    }
}

/// One target of a split route: a service, its weight, its units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub service: String,
    pub weight: u32,
    pub target: Target,
}

/// A route's mirror: the service that gets copies of `per_mille` thousandths of its requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorTarget {
    pub service: String,
    pub per_mille: u32,
    pub target: Target,
}

/// Where traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Local units (load-balanced).
    Units(Vec<String>),
    /// Remote servers.
    Remote(Vec<Upstream>),
}

/// Edge settings carried into the Plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Listeners.
    pub listen: Vec<Listen>,
    /// Hosts served.
    pub hosts: Vec<String>,
    /// Certificate source.
    pub tls: Tls,
    /// ACME contact.
    pub acme_email: Option<String>,
    /// ACME directory URL.
    pub acme_directory: String,
    /// CA bundle for the ACME directory.
    pub acme_ca: Option<PathBuf>,
    /// Which ACME challenge to answer first.
    pub acme_challenge: AcmeChallenge,
    /// CA bundle for `https://` upstreams (besides the system roots).
    pub upstream_ca: Option<PathBuf>,
    /// HSTS.
    pub hsts: bool,
    /// HTTP -> HTTPS redirect.
    pub redirect_https: bool,
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpAddr>,
    /// Static mounts.
    pub static_mounts: Vec<StaticMount>,
    /// Whole-port forwards.
    pub forward: Vec<Forward>,
    /// Limits and timeouts.
    pub limits: EdgeLimits,
    /// The access log's format and file.
    pub access_log: AccessLogSettings,
    /// Prefixes answered with a redirect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Redirect>,
    /// The host the others of `hosts` are redirected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_host: Option<String>,
    /// The stack's own error pages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_pages: Vec<grove_config::edge_rules::ErrorPage>,
    /// `[edge] compress`, when on: the static mounts' compression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// `[edge] auth = { basic = ... }`: the static mounts' authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<BasicAuth>,
    /// `[edge] auth = { forward = ... }`: the static mounts' authentication service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<ForwardAuthTarget>,
}

fn is_default_buffer(n: &u64) -> bool {
    *n == DEFAULT_BUFFER_BODY
}

/// A whole-port forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forward {
    /// The listener.
    pub listen: Listen,
    /// The service.
    pub service: String,
    /// Where it goes.
    pub target: Target,
}

/// The mask printed for secret values.
pub const MASK: &str = "***";

impl Plan {
    /// Compares two plans: what to add, remove, restart, update and keep.
    pub fn diff(old: &Plan, new: &Plan) -> PlanDiff {
        diff::diff(old, new)
    }

    /// A copy safe to print: secret values (and any argument that contains one) become `***`.
    pub fn redacted(&self) -> Plan {
        let secrets = self.secret_values();
        let scrub = |s: &str| scrub(s, &secrets);
        let mut plan = self.clone();
        if let Some(a) = &mut plan.admin.amqp {
            *a = scrub(a);
        }
        for unit in plan.units.values_mut() {
            for var in unit.env.values_mut() {
                if var.secret {
                    var.value = MASK.to_string();
                } else {
                    var.value = scrub(&var.value);
                }
            }
            match &mut unit.run {
                Run::Command { argv } => {
                    for a in argv.iter_mut() {
                        *a = scrub(a);
                    }
                }
                Run::Recipe { spec, .. } => {
                    for c in std::iter::once(&mut spec.admin).chain(spec.roles.iter_mut()) {
                        if !c.password.is_empty() {
                            c.password = MASK.to_string();
                        }
                    }
                }
            }
            if let Some(Probe {
                check: ProbeCheck::Exec { argv },
                ..
            }) = &mut unit.health
            {
                for a in argv.iter_mut() {
                    *a = scrub(a);
                }
            }
        }
        plan
    }

    /// Each unit's port, by unit name (what a later Plan keeps sticky).
    pub fn ports(&self) -> IndexMap<String, u16> {
        self.units
            .values()
            .filter_map(|u| Some((u.name.clone(), u.port?)))
            .collect()
    }

    /// The recipes' passwords by the names [`credentials_needed`] gives (what a later Plan
    /// keeps).
    pub fn credentials(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        for u in self.units.values() {
            if let Run::Recipe { spec, .. } = &u.run {
                if !spec.admin.password.is_empty() {
                    out.insert(u.name.clone(), spec.admin.password.clone());
                }
                for r in &spec.roles {
                    out.insert(format!("{}.{}", u.name, r.user), r.password.clone());
                }
            }
        }
        out
    }

    /// Every secret value of at least 4 characters, longest first (for [`scrub`]).
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .units
            .values()
            .flat_map(|u| u.env.values())
            .filter(|v| v.secret && v.value.len() >= 4)
            .map(|v| v.value.clone())
            .chain(self.interpolated_secrets.iter().map(|(_, v)| v.clone()))
            .chain(self.units.values().flat_map(|u| {
                match &u.run {
                    Run::Recipe { spec, .. } => spec
                        .passwords()
                        .filter(|p| p.len() >= 4)
                        .map(str::to_string)
                        .collect(),
                    Run::Command { .. } => Vec::new(),
                }
            }))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        secrets
    }

    /// The units of one service, in order.
    pub fn units_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Unit> + 'a {
        self.units.values().filter(move |u| u.service == service)
    }
}

/// Replaces every occurrence of a secret in `text` with [`MASK`]; `secrets` comes from
/// [`Plan::secret_values`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}
