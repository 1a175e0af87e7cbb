//! # grove-edge: the front door
//!
//! Owns the listeners and everything on the request path: the route table built from the Plan
//! (host, then longest prefix; static mounts; whole-port forwards), the reverse proxy (a lean
//! HTTP/1.1 fast path of its own for the common request, with pooled upstream connections,
//! and hyper for everything else: h2c with prior knowledge inbound, WebSocket and other
//! upgrades tunnelled, bodies streamed), forwarded headers, limits and timeouts, error pages,
//! and the access log. `Edge::update` swaps the whole table at once, so
//! a reload never shows a half-built table and in-flight requests keep the table they began
//! with.
//!
//! It must not know about processes or the supervisor: it learns which units are up through
//! [`Edge::set_health`], which the daemon feeds from the engine's events.

#![forbid(unsafe_code)]

mod access;
pub mod acme;
mod auth;
pub mod ca;
pub mod compress;
mod fast;
pub mod framing;
mod gate;
mod idle;
mod limit;
mod listen;
mod maintenance;
mod pages;
mod proxy;
mod rewrite;
pub mod rules;
pub mod split;
pub mod statics;
pub mod stats;
pub mod table;
pub mod tls;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use grove_plan::{Plan, Scheme};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

#[doc(hidden)]
pub use fast::fuzz_heads;
pub use pages::error_page;
pub use proxy::{BoxBody, Conn};
pub use rules::strip_hop_by_hop;
pub use table::{unit_authority, Balance, Table};

/// Limits and timeouts (sane defaults; see [`Limits::default`]).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line + headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Most request headers; more gets 431.
    pub max_headers: usize,
    /// A client must send its whole request head within this from its first byte, and a new
    /// connection its first byte within this (slowloris); else 408.
    pub header_read_timeout: Duration,
    /// A keep-alive connection waiting for its next request is closed after this.
    pub keepalive_timeout: Duration,
    /// Longest wait between two reads of a request body; else 408.
    pub body_read_timeout: Duration,
    /// Connecting to an upstream.
    pub upstream_connect: Duration,
    /// An upstream must start its response within this; else 504.
    pub upstream_response: Duration,
    /// Open client connections per edge; more wait in the accept queue.
    pub max_connections: usize,
    /// Idle upstream connections kept per host.
    pub pool_idle_per_host: usize,
    /// Serve the common HTTP/1.1 request on the fast path ([`fast`]); off, every request
    /// goes through hyper (the differential test compares the two).
    pub fast_path: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&grove_plan::EdgeLimits::default())
    }
}

impl From<&grove_plan::EdgeLimits> for Limits {
    fn from(l: &grove_plan::EdgeLimits) -> Self {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Limits {
            max_header_bytes: n(l.max_header_bytes),
            max_headers: n(l.max_headers),
            header_read_timeout: l.client_header_timeout,
            keepalive_timeout: l.keepalive_timeout,
            body_read_timeout: l.client_body_timeout,
            upstream_connect: l.upstream_connect_timeout,
            upstream_response: l.upstream_response_timeout,
            max_connections: n(l.max_connections),
            pool_idle_per_host: 64,
            fast_path: true,
        }
    }
}

/// Edge failures at start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error("TLS for {listen}: {source}")]
    Tls {
        /// The listener.
        listen: String,
        /// Why.
        #[source]
        source: tls::TlsError,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log {path}: {source}")]
    Log {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Something the edge wants in the stack's event log (certificates issued, renewed, failed or
/// reloaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeEvent {
    /// Short kind: `cert-issued`, `cert-renewed`, `cert-failed`, `cert-reloaded`.
    pub kind: String,
    /// One sentence.
    pub message: String,
}

/// State shared by every connection.
pub struct Shared {
    table: RwLock<Arc<Table>>,
    certs: Arc<tls::CertStore>,
    acme_tokens: acme::Tokens,
    health: RwLock<HashMap<String, bool>>,
    /// Notified when a unit turns ready or the table changes: requests held for a ready unit
    /// look again.
    ready: tokio::sync::Notify,
    /// Upstreams for requests that hyper serves.
    client: proxy::UpstreamClient,
    /// Plain-HTTP upstream connections for the fast path.
    upstreams: upstream::Pool,
    limits: Limits,
    access: Arc<access::AccessLog>,
    stats: stats::Registry,
    /// Set once the edge drains (a handover to the next grove): no new connection is taken,
    /// each open one ends after its current response.
    draining: std::sync::atomic::AtomicBool,
    drain: tokio::sync::Notify,
    /// Maintenance mode, when on (requests then go through hyper, which answers it).
    maintenance: RwLock<Option<Arc<maintenance::Active>>>,
    maintenance_on: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Maintenance mode, when it is on.
    pub(crate) fn maintenance(&self) -> Option<Arc<maintenance::Active>> {
        if !self
            .maintenance_on
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        match self.maintenance.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether the edge drains.
    fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once the edge drains.
    async fn drained(&self) {
        let notified = self.drain.notified();
        if self.draining() {
            return;
        }
        notified.await;
    }

    fn table(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether a unit can take requests, looked up under the read lock (no copy per request).
    fn health_of(&self, name: &str) -> Option<bool> {
        match self.health.read() {
            Ok(h) => h.get(name).copied(),
            Err(p) => p.into_inner().get(name).copied(),
        }
    }

    /// The ready backends of the route that `local`, `host` and `path` reach in the current
    /// table, waiting for one (until `deadline`) while there is none: the edge holds a request
    /// while its route's only unit restarts, and a reload or deploy that swaps the table in
    /// the meantime is seen (the request goes to the new units). Empty when none became ready
    /// in time.
    async fn wait_ready(
        &self,
        local: SocketAddr,
        host: &str,
        path: &str,
        deadline: tokio::time::Instant,
    ) -> Vec<Arc<table::Backend>> {
        loop {
            // Registered before looking, so a unit turning ready in between is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let table = self.table();
            let route = match table.forwards.get(&local) {
                Some(r) => Some(r),
                None => table.find(host, path),
            };
            let Some(table::Action::Proxy(pool)) = route.map(|r| &r.action) else {
                return Vec::new();
            };
            let ready = pool.candidates(&|name: &str| self.health_of(name));
            if !ready.is_empty() || pool.backends.is_empty() {
                return ready;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            // Woken by a unit turning ready or a new table; a look every 100 ms besides.
            let wake = deadline.min(now + Duration::from_millis(100));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// Logs one answered request.
    pub(crate) fn access(&self, e: &access::Entry<'_>) {
        self.access.write(e);
    }

    /// Whether the access log shows `Referer` and `User-Agent` (the combined format).
    pub(crate) fn access_wants_headers(&self) -> bool {
        self.access.wants_headers()
    }

    /// A request the framing guard refused (hyper answers it 400 and closes).
    fn refused(&self, r: &framing::Refused, conn: Conn) {
        tracing::info!(
            "refused {} {} from {}: {}{}",
            r.method,
            r.path,
            conn.peer,
            r.why.describe(),
            if r.why.is_smuggling() {
                " (request smuggling?)"
            } else {
                ""
            }
        );
        self.access(&access::Entry {
            peer: conn.peer,
            host: &r.host,
            method: &r.method,
            path: &r.path,
            proto: "HTTP/1.1",
            status: 400,
            bytes: Some(0),
            took: Duration::ZERO,
            upstream: None,
            id: "-",
            referer: "",
            agent: "",
        });
    }
}

/// A running edge.
#[derive(Debug, Clone)]
pub struct Edge {
    shared: Arc<Shared>,
    bound: Vec<SocketAddr>,
    /// One permit per open client connection.
    connections: Arc<Semaphore>,
    /// A descriptor of each listening socket with a fixed address, to hand over.
    held: Arc<Vec<(SocketAddr, std::os::fd::OwnedFd)>>,
    events: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<EdgeEvent>>>>,
}

impl Edge {
    /// Binds every listener and forward of `plan` and starts serving. `state` is the state
    /// folder: the access log goes to `state/logs/edge.access.log`, the local CA lives in
    /// `state/certs/`. `https://` listeners with `tls = "acme"` are skipped with a warning
    /// until ACME support lands.
    pub async fn start(plan: &Plan, state: &Path, limits: Limits) -> Result<Edge, EdgeError> {
        Edge::start_inheriting(plan, state, limits, Vec::new()).await
    }

    /// [`Edge::start`], serving on `inherited` listening sockets (handed over by the grove
    /// before, with the connections waiting in their backlogs) instead of binding their
    /// addresses again.
    pub async fn start_inheriting(
        plan: &Plan,
        state: &Path,
        limits: Limits,
        mut inherited: Vec<(SocketAddr, std::net::TcpListener)>,
    ) -> Result<Edge, EdgeError> {
        let access_log = match &plan.edge.access_log.path {
            Some(p) => plan.root.join(p),
            None => state.join("logs").join("edge.access.log"),
        };
        let access_log = access_log.as_path();
        let stats = stats::Registry::default();
        let certs = Arc::new(tls::CertStore::default());
        let table = Table::from_plan(plan, &stats);
        set_error_pages(plan);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.upstream_connect));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        // `https://` upstreams are verified against the system's roots plus `upstream_ca`, or
        // the stack's own CA when it has one (several hosts sharing one: `grove ca import`).
        let upstream_ca = match &plan.edge.upstream_ca {
            Some(p) => Some(plan.root.join(p)),
            None => Some(tls::ca_path(state)).filter(|p| p.exists()),
        };
        let tls_client =
            tls::client_config(upstream_ca.as_deref()).map_err(|source| EdgeError::Tls {
                listen: "https upstreams".into(),
                source,
            })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_client)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(limits.pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .timer(TokioTimer::new())
            .build(connector);
        let access = access::AccessLog::open(access_log, plan.edge.access_log.format, plan.logs)
            .map_err(|source| EdgeError::Log {
                path: access_log.display().to_string(),
                source,
            })?;
        let access = Arc::new(access);
        tokio::spawn(access::writer(Arc::downgrade(&access), access.full.clone()));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            table: RwLock::new(Arc::new(table)),
            certs: certs.clone(),
            acme_tokens: acme::Tokens::default(),
            health: RwLock::new(HashMap::new()),
            ready: tokio::sync::Notify::new(),
            client,
            upstreams: upstream::Pool::new(limits.pool_idle_per_host, limits.upstream_connect),
            limits,
            access,
            stats,
            draining: std::sync::atomic::AtomicBool::new(false),
            drain: tokio::sync::Notify::new(),
            maintenance: RwLock::new(None),
            maintenance_on: std::sync::atomic::AtomicBool::new(false),
        });
        let mut addrs: Vec<(SocketAddr, Option<TlsAcceptor>)> = Vec::new();
        let listens: Vec<&grove_plan::Listen> = plan
            .edge
            .listen
            .iter()
            .chain(plan.edge.forward.iter().map(|f| &f.listen))
            .collect();
        let acceptor = match listens.iter().find(|l| l.scheme == Scheme::Https) {
            Some(first) => Some(
                setup_tls(plan, state, &shared, events_tx).map_err(|source| EdgeError::Tls {
                    listen: first.to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        for l in listens {
            match l.scheme {
                Scheme::Http => addrs.push((l.addr, None)),
                Scheme::Https => addrs.push((l.addr, acceptor.clone())),
            }
        }
        let sem = Arc::new(Semaphore::new(shared.limits.max_connections));
        let mut bound = Vec::new();
        let mut held = Vec::new();
        for (addr, tls) in addrs {
            let taken = inherited
                .iter()
                .position(|(a, _)| *a == addr)
                .map(|i| inherited.swap_remove(i).1);
            let listener = match taken {
                Some(l) => l
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(l)),
                None => TcpListener::bind(addr).await,
            }
            .map_err(|source| EdgeError::Bind { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            bound.push(local);
            // A fixed address can be handed to the next grove (port 0 is a test's).
            if addr.port() != 0 {
                use std::os::fd::AsFd;
                if let Ok(fd) = listener.as_fd().try_clone_to_owned() {
                    held.push((addr, fd));
                }
            }
            tokio::spawn(listen::accept_loop(
                listener,
                local,
                addr,
                tls,
                shared.clone(),
                sem.clone(),
            ));
        }
        Ok(Edge {
            shared,
            bound,
            held: Arc::new(held),
            connections: sem,
            events: Arc::new(std::sync::Mutex::new(Some(events_rx))),
        })
    }

    /// The listening sockets with fixed addresses (new descriptors of them), for whoever keeps
    /// them open while no grove runs.
    pub fn listening(&self) -> Vec<(SocketAddr, std::os::fd::OwnedFd)> {
        self.held
            .iter()
            .filter_map(|(a, fd)| fd.try_clone().ok().map(|fd| (*a, fd)))
            .collect()
    }

    /// Takes no new connection from now on and ends each open one after its current
    /// response (see [`Edge::drain`]).
    pub fn start_draining(&self) {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.drain.notify_waiters();
    }

    /// Hands the edge over (to the next grove, which serves on the same sockets): takes no
    /// new connection from now on, answers each open one's current request with
    /// `Connection: close` (HTTP/2: `GOAWAY`), closes idle ones, and returns once none is
    /// left or `within` has passed.
    pub async fn drain(&self, within: Duration) {
        self.start_draining();
        let deadline = tokio::time::Instant::now() + within;
        while self.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Requests in flight to the upstream at `authority` (a unit's, see [`unit_authority`]),
    /// across every table since the start: what a replaced unit still serves.
    pub fn in_flight(&self, authority: &str) -> usize {
        self.shared.stats.in_flight_now(authority)
    }

    /// Client connections open now, on every listener.
    pub fn open_connections(&self) -> usize {
        self.shared
            .limits
            .max_connections
            .saturating_sub(self.connections.available_permits())
    }

    /// The edge's events (certificates); the first caller gets the receiver, which holds
    /// everything sent since the start.
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<EdgeEvent>> {
        match self.events.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    /// The certificates being served.
    pub fn certificates(&self) -> Vec<tls::CertInfo> {
        self.shared.certs.list()
    }

    /// The addresses actually bound (useful with port 0).
    pub fn bound(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// Swaps in the route table of `plan` (atomically; requests in flight keep the old one).
    pub fn update(&self, plan: &Plan) {
        self.shared.access.set_format(plan.edge.access_log.format);
        set_error_pages(plan);
        let t = Arc::new(Table::from_plan(plan, &self.shared.stats));
        match self.shared.table.write() {
            Ok(mut g) => *g = t,
            Err(p) => *p.into_inner() = t,
        }
        self.shared.ready.notify_waiters();
    }

    /// Whether `m` can be applied (its `allow` entries are networks); why not.
    pub fn check_maintenance(m: &grove_plan::Maintenance) -> Result<(), String> {
        maintenance::Active::new(m).map(|_| ())
    }

    /// Turns maintenance mode on (`Some`) or off; the next request sees it. An `allow` entry
    /// that is not a network is an error, and nothing changes.
    pub fn set_maintenance(&self, m: Option<&grove_plan::Maintenance>) -> Result<(), String> {
        let active = match m {
            Some(m) => Some(Arc::new(maintenance::Active::new(m)?)),
            None => None,
        };
        let on = active.is_some();
        {
            let mut g = match self.shared.maintenance.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *g = active;
        }
        self.shared
            .maintenance_on
            .store(on, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// What each route has served so far, by route key (`host/prefix`, `*/prefix` for any
    /// host, `:port` for a whole-port forward).
    pub fn route_stats(&self) -> std::collections::BTreeMap<String, stats::RouteSnapshot> {
        self.shared.stats.snapshot()
    }

    /// Tells the edge whether a unit can take requests. A unit never mentioned is not ready
    /// (remote upstreams need no report).
    pub fn set_health(&self, unit: &str, up: bool) {
        {
            let mut g = match self.shared.health.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.insert(unit.to_string(), up);
        }
        if up {
            self.shared.ready.notify_waiters();
        }
    }
}

/// The stack's own error pages, in place of grove's from now on.
fn set_error_pages(plan: &Plan) {
    let pages: Vec<(u16, String)> = plan
        .edge
        .error_pages
        .iter()
        .map(|p| (p.status, p.html.clone()))
        .collect();
    pages::set_custom_pages(&pages);
}

/// Loads the certificates `plan` asks for into the store, starts whatever keeps them fresh
/// (file watching, ACME), and returns the acceptor all `https://` listeners share.
fn setup_tls(
    plan: &Plan,
    state: &Path,
    shared: &Arc<Shared>,
    events: mpsc::UnboundedSender<EdgeEvent>,
) -> Result<TlsAcceptor, tls::TlsError> {
    let store = &shared.certs;
    let acme = plan.edge.tls == grove_plan::Tls::Acme;
    match &plan.edge.tls {
        grove_plan::Tls::SelfSigned | grove_plan::Tls::Off => {
            store.set("self-signed", tls::self_signed(state, &plan.edge.hosts)?);
        }
        grove_plan::Tls::Files { certs } => {
            let mut watched = Vec::new();
            for pair in certs {
                let (cert, key) = (plan.root.join(&pair.cert), plan.root.join(&pair.key));
                let slot = cert.display().to_string();
                store.set(&slot, tls::load_files(&cert, &key)?);
                watched.push((slot, cert, key));
            }
            tokio::spawn(watch_files(store.clone(), watched, events));
        }
        grove_plan::Tls::Acme => {
            let settings = acme::AcmeSettings {
                directory: plan.edge.acme_directory.clone(),
                ca: plan.edge.acme_ca.as_ref().map(|p| plan.root.join(p)),
                email: plan.edge.acme_email.clone(),
                hosts: plan.edge.hosts.clone(),
                dir: state.join("certs").join("acme"),
                prefer_alpn: plan.edge.acme_challenge == grove_plan::AcmeChallenge::TlsAlpn01,
            };
            acme::load_cached(&settings, store);
            // Until a host's certificate is issued, the local CA's stands in (last, so an
            // issued one always wins).
            store.set(tls::FALLBACK, tls::self_signed(state, &plan.edge.hosts)?);
            tokio::spawn(acme::manage(
                settings,
                store.clone(),
                shared.acme_tokens.clone(),
                events,
            ));
        }
    }
    Ok(TlsAcceptor::from(Arc::new(tls::server_config(
        store.clone(),
        acme,
    )?)))
}

/// How often certificate files are checked for changes.
pub const FILE_CHECK: Duration = Duration::from_secs(2);

fn stamp(paths: &[&Path]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Reloads certificate files when they change; a bad new pair is reported and the old one
/// keeps serving.
async fn watch_files(
    store: Arc<tls::CertStore>,
    files: Vec<(String, std::path::PathBuf, std::path::PathBuf)>,
    events: mpsc::UnboundedSender<EdgeEvent>,
) {
    let mut seen: Vec<_> = files.iter().map(|(_, c, k)| stamp(&[c, k])).collect();
    loop {
        tokio::time::sleep(FILE_CHECK).await;
        for (i, (slot, cert, key)) in files.iter().enumerate() {
            let now = stamp(&[cert, key]);
            if now == seen[i] {
                continue;
            }
            seen[i] = now;
            let (kind, message) = match tls::load_files(cert, key) {
                Ok(l) => {
                    let m = format!(
                        "reloaded {} ({}), valid until {}",
                        cert.display(),
                        l.info.names.join(", "),
                        tls::date(l.info.not_after)
                    );
                    store.set(slot, l);
                    ("cert-reloaded", m)
                }
                Err(e) => (
                    "cert-failed",
                    format!("{e}; the previous certificate keeps serving"),
                ),
            };
            tracing::info!("{message}");
            let _ = events.send(EdgeEvent {
                kind: kind.into(),
                message,
            });
        }
    }
}

/// How often a held request looks again at a unit that refused its connection.
pub(crate) const HOLD_POLL: Duration = Duration::from_millis(50);
