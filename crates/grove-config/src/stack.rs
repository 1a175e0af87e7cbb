//! The typed, validated stack: what the rest of grove reads. No TOML in here.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use crate::interp::Template;
use crate::overrides::Override;

/// A validated stack file with its overlays applied.
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// `[stack] name`.
    pub name: String,
    /// The folder of the stack file; relative paths are relative to it.
    pub root: PathBuf,
    /// The selected environment, if any.
    pub environment: Option<String>,
    /// Every environment the file knows (inline and sibling files).
    pub environments: Vec<String>,
    /// Range for automatic ports, inclusive.
    pub ports: (u16, u16),
    /// Where grove keeps its state (relative to `root` unless absolute).
    pub state_dir: PathBuf,
    /// Size-based rotation of each unit's log file.
    pub logs: LogRotation,
    /// The edge.
    pub edge: Edge,
    /// Services in file order.
    pub services: IndexMap<String, Service>,
    /// Instances (tenants) in file order.
    pub instances: IndexMap<String, Instance>,
    /// How to deploy, when configured.
    pub deploy: Option<Deploy>,
    /// The admin listener and metrics sampling.
    pub admin: Admin,
    /// The secret variables (named like a secret) that the file interpolates anywhere, a
    /// command line among them, with their values: masked wherever grove prints, left out
    /// of exports. Never serialized.
    #[serde(skip)]
    pub secret_values: Vec<(String, String)>,
    /// The values set from outside the file (`--set`, `GROVE_SET_...`), in the order applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Admin {
    /// The admin listener (API, `/metrics`, dashboard); off when `None`.
    pub listen: Option<std::net::SocketAddr>,
    /// How often host, unit and route metrics are sampled.
    #[serde(with = "ms")]
    pub sample_interval: Duration,
    /// A URL that receives a JSON POST for each notified event.
    pub webhook: Option<String>,
    /// An AMQP broker that receives each notified event (may be `${mq.url}`).
    pub amqp: Option<Template>,
    /// The topic exchange events are published to.
    pub amqp_exchange: String,
    /// The event kinds notified (`*` for all).
    pub notify: Vec<String>,
}

/// The event kinds notified when `[admin] notify` is not given: the ones someone should see.
pub const DEFAULT_NOTIFY: [&str; 6] = [
    "unhealthy",
    "healed",
    "gave-up",
    "blocked",
    "spawn-failed",
    "reaped",
];

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: None,
            sample_interval: Duration::from_secs(10),
            webhook: None,
            amqp: None,
            amqp_exchange: "grove".to_string(),
            notify: DEFAULT_NOTIFY.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Size-based rotation of log files: `[stack] log_max_size` and `log_keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogRotation {
    /// Rotate a log file once it would grow past this many bytes.
    pub max_size: u64,
    /// Rotated files kept (`unit.log.1` .. `unit.log.N`).
    pub keep: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_size: 10_000_000,
            keep: 5,
        }
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// A listener address with its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Listen {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Address and port.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{s}://{}", self.addr)
    }
}

/// Where the edge's certificates come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Tls {
    /// No TLS.
    Off,
    /// A local CA in the state folder signs leaf certificates.
    SelfSigned,
    /// ACME (Let's Encrypt or another directory).
    Acme,
    /// Certificate and key files; with several, SNI picks the one whose names match and the
    /// first is the default.
    Files {
        /// The pairs, in file order.
        certs: Vec<CertFiles>,
    },
}

/// One certificate chain and its key, PEM files (relative to the stack root unless absolute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A static file mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticMount {
    /// URL prefix, starting with `/`.
    pub prefix: String,
    /// Folder (relative to the stack root unless absolute).
    pub dir: PathBuf,
}

/// An extra listener sending a whole port to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forward {
    /// The listener.
    pub listen: Listen,
    /// The service it sends to.
    pub service: String,
}

/// `[edge]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Listeners.
    pub listen: Vec<Listen>,
    /// Host names served.
    pub hosts: Vec<String>,
    /// Certificate source.
    pub tls: Tls,
    /// ACME contact.
    pub acme_email: Option<String>,
    /// ACME directory URL.
    pub acme_directory: String,
    /// CA bundle for a private ACME directory.
    pub acme_ca: Option<PathBuf>,
    /// Which ACME challenge to answer first.
    pub acme_challenge: AcmeChallenge,
    /// CA bundle trusted, besides the system roots, for `https://` upstreams.
    pub upstream_ca: Option<PathBuf>,
    /// Send HSTS.
    pub hsts: bool,
    /// Redirect HTTP to HTTPS for hosts with TLS.
    pub redirect_https: bool,
    /// Peers whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Vec<IpAddr>,
    /// Static mounts.
    pub static_mounts: Vec<StaticMount>,
    /// Port forwards.
    pub forward: Vec<Forward>,
    /// Limits and timeouts (`[edge.limits]`).
    pub limits: EdgeLimits,
    /// The access log.
    pub access_log: AccessLogSettings,
    /// `redirects`: prefixes answered with a redirect.
    pub redirects: Vec<crate::edge_rules::Redirect>,
    /// `canonical_host`: the host the others of `hosts` are sent to.
    pub canonical_host: Option<String>,
    /// `error_pages`: the stack's own pages by status.
    pub error_pages: Vec<crate::edge_rules::ErrorPage>,
    /// `headers`, `request_headers`, `rate_limit` and `compress` at `[edge]`: every route's,
    /// under its own.
    pub route_defaults: crate::edge_rules::RouteDefaults,
}

/// A route's `max_body` when it sets none (10 MB, nginx's `client_max_body_size` is 1 MB;
/// uploads in the seeds are larger).
pub const DEFAULT_MAX_BODY: u64 = 10_000_000;

/// A route's `buffer_body` when neither it nor `[edge]` sets one (1 MiB).
pub const DEFAULT_BUFFER_BODY: u64 = 1 << 20;

/// How long the edge holds a request while its route has no ready unit, when the route sets
/// no `hold` (a restart of a single replica takes about this long).
pub const DEFAULT_HOLD_MS: u64 = 5_000;

/// `[edge.limits]`: the edge's limits and timeouts, named as nginx names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeLimits {
    /// A client must send its whole request head within this from its first byte (and the
    /// first byte of a new connection within this too; slowloris); else 408 and the
    /// connection is closed.
    #[serde(with = "ms")]
    pub client_header_timeout: Duration,
    /// How long a keep-alive connection may wait, doing nothing, for its next request; then
    /// it is closed without an answer (nginx's `keepalive_timeout`, 75 s).
    #[serde(with = "ms")]
    pub keepalive_timeout: Duration,
    /// Longest wait between two reads of a request body; else 408.
    #[serde(with = "ms")]
    pub client_body_timeout: Duration,
    /// Largest request head in bytes; larger gets 431.
    pub max_header_bytes: u64,
    /// Most request headers; more gets 431.
    pub max_headers: u64,
    /// Connecting to an upstream; else the next one, then 502.
    #[serde(with = "ms")]
    pub upstream_connect_timeout: Duration,
    /// An upstream must start its response within this; else 504.
    #[serde(with = "ms")]
    pub upstream_response_timeout: Duration,
    /// Open client connections; more wait in the accept queue.
    pub max_connections: u64,
    /// How long an upstream that refused a connection is tried last (passive health).
    #[serde(with = "ms")]
    pub upstream_down_time: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            client_header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            client_body_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            upstream_down_time: Duration::from_secs(5),
        }
    }
}

/// The ACME challenge the edge answers (the other one is used when the CA does not offer it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcmeChallenge {
    /// HTTP-01 on the edge's `http://` listener (port 80 in production).
    #[default]
    Http01,
    /// TLS-ALPN-01 on its `https://` listener (port 443 in production).
    TlsAlpn01,
}

/// How a route spreads requests over its units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight.
    LeastConn,
}

/// Let's Encrypt's production directory.
pub const ACME_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const ACME_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// A backing server grove runs from the system's binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// RabbitMQ.
    Rabbitmq,
    /// Memcached.
    Memcached,
    /// MongoDB.
    Mongodb,
}

impl Recipe {
    /// Recipe names as written in a stack file.
    pub const NAMES: [&'static str; 5] = ["postgres", "redis", "rabbitmq", "memcached", "mongodb"];

    /// Parses a recipe name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "postgres" => Some(Recipe::Postgres),
            "redis" => Some(Recipe::Redis),
            "rabbitmq" => Some(Recipe::Rabbitmq),
            "memcached" => Some(Recipe::Memcached),
            "mongodb" => Some(Recipe::Mongodb),
            _ => None,
        }
    }

    /// The name as written in a stack file.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Postgres => "postgres",
            Recipe::Redis => "redis",
            Recipe::Rabbitmq => "rabbitmq",
            Recipe::Memcached => "memcached",
            Recipe::Mongodb => "mongodb",
        }
    }

    /// The stop signal that shuts the server down cleanly and quickly (PostgreSQL's fast
    /// shutdown is SIGINT; the others save and exit on SIGTERM).
    pub fn stop_signal(self) -> &'static str {
        match self {
            Recipe::Postgres => "SIGINT",
            _ => "SIGTERM",
        }
    }

    /// Whether the server has named databases (PostgreSQL databases, RabbitMQ virtual hosts,
    /// MongoDB databases) that `databases` can ask for.
    pub fn has_databases(self) -> bool {
        matches!(self, Recipe::Postgres | Recipe::Rabbitmq | Recipe::Mongodb)
    }

    /// Whether grove generates a password for the server (the ones with authentication).
    pub fn has_password(self) -> bool {
        matches!(self, Recipe::Postgres | Recipe::Redis | Recipe::Rabbitmq)
    }

    /// The URL scheme dependents see in `${svc.url}`.
    pub fn url_scheme(self) -> &'static str {
        match self {
            Recipe::Postgres => "postgresql",
            Recipe::Redis => "redis",
            Recipe::Rabbitmq => "amqp",
            Recipe::Memcached => "memcached",
            Recipe::Mongodb => "mongodb",
        }
    }
}

/// Which databases a recipe creates besides its default one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Databases {
    /// Only the ones dependents ask for by appending `/NAME` to `${svc.url}`.
    #[default]
    Asked,
    /// These, plus the ones dependents ask for.
    Named(Vec<String>),
    /// One role and one database per instance, both named after the instance; a
    /// per-instance dependent's `${svc.url}` logs in as its instance and names its database.
    PerInstance,
}

/// Settings of a recipe service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipeOptions {
    /// Databases (or RabbitMQ virtual hosts) to create.
    pub databases: Databases,
    /// Redis: keep data on disk (RDB snapshots and a save on stop).
    pub persistence: bool,
    /// PostgreSQL: the networks (CIDR, `10.77.0.0/24`) whose clients may log in with a
    /// password, beyond loopback.
    pub allow: Vec<String>,
    /// PostgreSQL: serve TLS with a certificate from the stack's CA; clients of other hosts
    /// must use it, and `${db.url}` asks for `sslmode=verify-full`.
    pub tls: bool,
    /// PostgreSQL with TLS: further names its certificate carries (`tls = { names = [...] }`).
    pub tls_names: Vec<String>,
    /// PostgreSQL and Redis: backups on a schedule.
    pub backup: Option<BackupSettings>,
}

/// `backup = { schedule = "0 3 * * *", keep = 7, dir = "/var/backups/grove" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSettings {
    /// When (cron, UTC unless `timezone`).
    pub schedule: String,
    pub timezone: Option<String>,
    /// The newest backups kept per database.
    pub keep: u32,
    /// Where (relative to the stack's folder); `.grove/backups` when `None`.
    pub dir: Option<PathBuf>,
}

impl Default for RecipeOptions {
    fn default() -> Self {
        RecipeOptions {
            databases: Databases::Asked,
            persistence: true,
            allow: Vec::new(),
            tls: false,
            tls_names: Vec::new(),
            backup: None,
        }
    }
}

/// A remote server behind the edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        if self.host.contains(':') {
            write!(f, "{s}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{s}://{}:{}", self.host, self.port)
        }
    }
}

/// What a service runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A process: argv templates.
    Command(Vec<Template>),
    /// A backing server.
    Recipe(Recipe),
    /// Remote servers only.
    Upstreams(Vec<Upstream>),
}

/// How a change replaces a service's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replace {
    /// Start-first for a routed service whose port grove chooses, else stop-first.
    #[default]
    Auto,
    /// The new unit starts beside the old one and takes over once ready.
    StartFirst,
    /// The old unit stops before the new one starts (a singleton must never run twice).
    StopFirst,
}

/// A service's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortSpec {
    /// Drawn from the stack's range, stable per unit.
    Auto,
    /// This port.
    Fixed(u16),
    /// No port.
    None,
}

/// Runs forever, or to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A long-running process.
    Service,
    /// Runs to completion; exit 0 is success.
    Task,
}

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// The dependency's process has started.
    Started,
    /// Its health probe passed.
    Healthy,
    /// The task exited 0.
    Completed,
}

/// A probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// `GET path` answers 2xx or 3xx (or one of the probe's `status`).
    Http(Template),
    /// A TCP connect succeeds; `None` means the unit's own port.
    Tcp(Option<Template>),
    /// The command exits 0.
    Exec(Vec<Template>),
}

/// A health probe with its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The check.
    pub check: Check,
    /// Time between probes.
    #[serde(with = "ms")]
    pub interval: Duration,
    /// Time one probe may take.
    #[serde(with = "ms")]
    pub timeout: Duration,
    /// Consecutive failures that make the unit unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count.
    #[serde(with = "ms")]
    pub start_period: Duration,
    /// The HTTP statuses that pass (`http` probes); empty: any 2xx or 3xx.
    pub status: Vec<u16>,
}

/// When to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After any exit.
    Always,
    /// After a non-zero exit or a signal.
    OnFailure,
    /// Never.
    Never,
}

/// Restart policy with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// When.
    pub policy: RestartPolicy,
    /// First delay.
    #[serde(with = "ms")]
    pub backoff: Duration,
    /// Largest delay.
    #[serde(with = "ms")]
    pub max_backoff: Duration,
    /// Restarts before giving up (0 = never give up).
    pub max_restarts: u32,
}

/// `route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Host to match (exact or `*.domain`), none = any.
    pub host: Option<Template>,
    /// Path prefix (the instance's prefix for per-instance services when not given).
    pub prefix: Option<Template>,
    /// Remove the prefix before proxying.
    pub strip_prefix: bool,
    /// Pass WebSocket upgrades.
    pub websocket: bool,
    /// Largest request body, in bytes.
    pub max_body: u64,
    /// Request bodies up to this size are read whole before the upstream is asked (so they
    /// can be retried or mirrored); larger ones stream (`buffer_body`; 0: always stream).
    pub buffer_body: u64,
    /// How requests spread over the service's units.
    pub balance: Balance,
    /// How long a request waits for a ready unit before 503, in milliseconds.
    pub hold_ms: u64,
    /// Header rules on its responses (`headers`).
    pub response_headers: crate::edge_rules::HeaderRules,
    /// Header rules on its requests (`request_headers`).
    pub request_headers: crate::edge_rules::HeaderRules,
    /// Basic authentication (`auth.basic`).
    pub auth: Option<crate::edge_rules::BasicAuth>,
    /// Forward authentication (`auth.forward`).
    pub forward_auth: Option<crate::edge_rules::ForwardAuth>,
    /// Requests per key and time (`rate_limit`).
    pub rate_limit: Option<crate::edge_rules::RateLimit>,
    /// Compression of its answers (`compress`; off when it compresses nothing).
    pub compress: Option<crate::edge_rules::Compress>,
    /// The services its requests are split over, by weight (`targets`; empty: its own).
    pub targets: Vec<crate::edge_rules::WeightedTarget>,
    /// The cookie that keeps a client on the target it got first (`sticky`).
    pub sticky: Option<String>,
    /// A shadow service that gets a copy of some requests (`mirror`).
    pub mirror: Option<crate::edge_rules::Mirror>,
}

/// An environment variable's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvValue {
    /// The value.
    pub value: Template,
    /// Never shown.
    pub secret: bool,
}

/// `[services.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// What it runs.
    pub source: Source,
    /// Working directory (relative to the stack root unless absolute).
    pub cwd: Option<Template>,
    /// Environment, `env_file` first and `env` over it.
    pub env: IndexMap<String, EnvValue>,
    /// Port.
    pub port: PortSpec,
    /// Bind address.
    pub bind: IpAddr,
    /// Service or task.
    pub kind: ServiceKind,
    /// Copies per instance.
    pub replicas: u32,
    /// One unit per instance.
    pub for_each_instance: bool,
    /// Dependencies in file order.
    pub depends_on: IndexMap<String, Condition>,
    /// Health probe.
    pub health: Option<Health>,
    /// Restart policy.
    pub restart: Restart,
    /// Stop signal name (`SIGTERM`).
    pub stop_signal: String,
    /// Grace period before SIGKILL.
    #[serde(with = "ms")]
    pub stop_grace: Duration,
    /// How a change replaces its units (`replace`); `Auto` decides by route and port.
    pub replace: Replace,
    /// Who its processes run as (`user`, `group`, `umask`).
    pub run_as: RunAs,
    /// What each of its processes may use (`limits`).
    pub limits: UnitLimits,
    /// `kind = "job"`: when it runs, and how runs may overlap.
    pub job: Option<JobSettings>,
    /// Folders put first on its processes' `PATH` (`path = [".venv/bin"]`), relative to its
    /// `cwd` unless absolute.
    pub path: Vec<PathBuf>,
    /// How many of its units a start-first replacement replaces at once (`max_surge`, 1):
    /// the new units beside the old ones, at most.
    pub max_surge: u32,
    /// `socket = true`: grove opens the service's port and hands each unit's process the
    /// listening socket (systemd's socket activation), kept open across its restarts.
    pub socket: bool,
    /// Edge route.
    pub route: Option<Route>,
    /// Recipe settings (defaults for other services).
    pub recipe: RecipeOptions,
    /// Container image for `grove export` (ignored when grove runs the stack).
    pub image: Option<String>,
}

/// Who a command service's processes run as: grove (root on a server, to bind 80 and 443)
/// starts them as this user, in this group, with this file mode mask.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunAs {
    /// A user name or numeric id (`www-data`, `1000`).
    pub user: Option<String>,
    /// A group name or numeric id; the user's own group when not given.
    pub group: Option<String>,
    /// The file mode creation mask (`0027`).
    pub umask: Option<u32>,
}

/// A command service's resource limits: enforced through each unit's cgroup (memory, CPU,
/// processes) and its open-files limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UnitLimits {
    /// Memory, in bytes: over it the kernel kills the unit.
    pub memory: Option<u64>,
    /// CPUs' worth of time (1.5: one and a half cores).
    pub cpu: Option<f64>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// Open files.
    pub nofile: Option<u64>,
}

/// A scheduled job's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSettings {
    /// The cron schedule, as written.
    pub schedule: String,
    /// The time zone it is read in (`Europe/Paris`); UTC when not given.
    pub timezone: Option<String>,
    /// What a run due while the last one still runs does.
    pub concurrency: Concurrency,
    /// A run is stopped after this long.
    #[serde(with = "opt_ms")]
    pub timeout: Option<Duration>,
}

mod opt_ms {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
}

/// What a job's run due while the last one still runs does (Kubernetes' and Dokku's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// It is skipped (an event says so): two runs never overlap.
    Forbid,
    /// The running one is stopped and the new one starts.
    Replace,
    /// The new one starts beside it (as `NAME~run2`, ...), as Kubernetes' `Allow`.
    Allow,
}

/// How the edge writes its access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// grove's own: time, client, host, method, path, status, bytes, duration, unit, id.
    Grove,
    /// Apache's and nginx's `combined`.
    Combined,
    /// One JSON object per line (Caddy's and Traefik's structured logs).
    Json,
}

/// `[edge] access_log = { format, path, off }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogSettings {
    /// The format; `None` when `off = true`.
    pub format: Option<AccessFormat>,
    /// The file (relative to the stack's folder); `.grove/logs/edge.access.log` when `None`.
    pub path: Option<PathBuf>,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings {
            format: Some(AccessFormat::Grove),
            path: None,
        }
    }
}

/// `[instances.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Its name.
    pub name: String,
    /// Route prefix.
    pub prefix: String,
    /// Other variables.
    pub vars: IndexMap<String, String>,
}

/// `[deploy]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deploy {
    /// Repository path or URL.
    pub repository: String,
    /// Ref to deploy by default.
    pub git_ref: String,
    /// Build commands, run in order in the release folder.
    pub build: Vec<String>,
    /// Releases kept.
    pub keep: u32,
    /// Tasks run before traffic moves.
    pub before_switch: Vec<String>,
    /// How long the new generation has to turn healthy.
    #[serde(with = "ms")]
    pub health_timeout: Duration,
    /// How long the old generation keeps serving in-flight requests.
    #[serde(with = "ms")]
    pub drain: Duration,
}

/// Serializes durations as whole milliseconds.
pub mod ms {
    use serde::Serializer;
    use std::time::Duration;

    /// Serializes `d` as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A route prefix in its canonical form: `/TR/` -> `/TR`, `` -> `/`, `api` -> `/api`.
pub fn normalize_prefix(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}
