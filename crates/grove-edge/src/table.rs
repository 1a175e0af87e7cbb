//! The route table: built from a Plan, matched per request, swapped whole on reload.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use grove_plan::Balance;
use grove_plan::{Plan, Target};

use crate::stats::{Registry, RouteStats};

/// How long an upstream that refused a connection is skipped.
pub const PASSIVE_DOWN: Duration = Duration::from_secs(5);

/// One place a request can be sent.
#[derive(Debug)]
pub struct Backend {
    /// The unit name, or `host:port` of a remote upstream.
    pub name: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// `http` or `https`.
    pub https: bool,
    /// One of the stack's own units (its readiness comes from the daemon), not a remote
    /// upstream.
    pub unit: bool,
    /// `authority`, parsed once for request URIs (`None` if it is not a valid authority).
    pub uri_authority: Option<hyper::http::uri::Authority>,
    /// Requests in flight (least-connections, and the drain of a replaced unit); shared by
    /// every table that has this upstream address.
    pub active: Arc<AtomicUsize>,
    /// Skipped until this many ms after the table's epoch (passive health).
    down_until_ms: AtomicU64,
    /// How long a refused connection puts it last (`[edge.limits] upstream_down_time`).
    down_for: Duration,
    epoch: Instant,
}

impl Backend {
    fn new(name: String, authority: String, https: bool, epoch: Instant) -> Backend {
        Backend {
            name,
            uri_authority: authority.parse().ok(),
            authority,
            https,
            unit: false,
            active: Arc::new(AtomicUsize::new(0)),
            down_until_ms: AtomicU64::new(0),
            down_for: PASSIVE_DOWN,
            epoch,
        }
    }

    /// Marks it refused: skipped for [`PASSIVE_DOWN`].
    pub fn mark_down(&self) {
        let until = self.epoch.elapsed() + self.down_for;
        self.down_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether passive health lets it be tried now.
    pub fn passively_up(&self) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        until == 0 || (self.epoch.elapsed().as_millis() as u64) >= until
    }
}

/// The backends of a route.
#[derive(Debug)]
pub struct Pool {
    /// The service it belongs to.
    pub service: String,
    /// Its backends.
    pub backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
    /// Policy.
    pub balance: Balance,
}

impl Pool {
    /// A pool of `service` without backends.
    pub fn empty(service: &str) -> Pool {
        Pool {
            service: service.to_string(),
            backends: Vec::new(),
            next: AtomicUsize::new(0),
            balance: Balance::RoundRobin,
        }
    }

    /// Whether a backend is ready (as [`Pool::candidates`] says, without taking a turn).
    pub fn has_ready(&self, health: &dyn Fn(&str) -> Option<bool>) -> bool {
        self.backends.iter().any(|b| match health(&b.name) {
            Some(up) => up,
            None => !b.unit,
        })
    }

    /// Backends in the order to try them: healthy (by `health`) and passively up first, in
    /// the policy's order; the others after, as a last resort.
    pub fn candidates(&self, health: &dyn Fn(&str) -> Option<bool>) -> Vec<Arc<Backend>> {
        let n = self.backends.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<Arc<Backend>> = (0..n)
            .map(|i| self.backends[(start + i) % n].clone())
            .collect();
        if self.balance == Balance::LeastConn {
            order.sort_by_key(|b| b.active.load(Ordering::Relaxed));
        }
        // A unit that is not ready (not yet healthy, unhealthy, stopping, gone) gets nothing;
        // one the edge could not reach lately goes last. A stable sort keeps the policy's
        // order within each group.
        // A unit the daemon has not reported on yet (just added by a reload) is not ready.
        order.retain(|b| match health(&b.name) {
            Some(up) => up,
            None => !b.unit,
        });
        order.sort_by_key(|b| !b.passively_up());
        order
    }
}

/// Host part of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host (lowercase, no port).
    Exact(String),
    /// `*.example.org`: stored as `.example.org`.
    Wildcard(String),
}

impl HostMatch {
    /// As a route key writes it: `*`, `app.example.org`, `*.example.org`.
    pub fn text(&self) -> String {
        match self {
            HostMatch::Any => "*".to_string(),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Wildcard(d) => format!("*{d}"),
        }
    }

    fn parse(h: Option<&str>) -> HostMatch {
        match h {
            None => HostMatch::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(rest) => HostMatch::Wildcard(rest.to_string()),
                    None => HostMatch::Exact(h),
                }
            }
        }
    }

    /// 0 no match; higher is more specific.
    fn rank(&self, host: &str) -> usize {
        match self {
            HostMatch::Any => 1,
            HostMatch::Exact(h) => {
                if h == host {
                    1_000_000
                } else {
                    0
                }
            }
            HostMatch::Wildcard(suffix) => {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    1000 + suffix.len()
                } else {
                    0
                }
            }
        }
    }
}

/// What a route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Proxy to a pool.
    Proxy(Arc<Pool>),
    /// Serve files from a folder.
    Static(PathBuf),
    /// Answer with a redirect (`[edge] redirects`).
    Redirect { to: grove_plan::Text, status: u16 },
}

/// A route's header rules (`request_headers`, `headers`).
#[derive(Debug, Clone, Default)]
pub struct RouteHeaders {
    pub request: grove_plan::HeaderRules,
    pub response: grove_plan::HeaderRules,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Host part.
    pub host: HostMatch,
    /// Path prefix (`/` or `/x` without trailing slash).
    pub prefix: String,
    /// Remove the prefix before proxying (and send `X-Forwarded-Prefix`).
    pub strip_prefix: bool,
    /// Largest request body.
    pub max_body: u64,
    /// Request bodies up to this size are read whole before the upstream is asked (so they
    /// can be retried and mirrored, and the fast path takes them); larger ones stream.
    pub buffer_body: u64,
    /// Whether `Upgrade` requests are passed.
    pub websocket: bool,
    /// How long a request waits for a ready unit (then 503).
    pub hold: std::time::Duration,
    /// Where it goes.
    pub action: Action,
    /// Its counters (shared with the same route of earlier tables).
    pub stats: Arc<RouteStats>,
    /// Its header rules, when it has any (requests with them go through hyper).
    pub headers: Option<Arc<RouteHeaders>>,
    /// Its users, when it asks for Basic authentication (through hyper too).
    pub auth: Option<Arc<crate::auth::Basic>>,
    /// Its rate limit's buckets (through hyper too).
    pub limit: Option<Arc<crate::limit::Buckets>>,
    /// Its forward authentication (through hyper too).
    pub forward: Option<Arc<crate::auth::Forward>>,
    /// Compression of its answers (through hyper too).
    pub compress: Option<Arc<grove_plan::Compress>>,
    /// The services its requests are split over (through hyper too).
    pub split: Option<Arc<crate::split::Split>>,
    /// Where copies of some of its requests go (through hyper too).
    pub mirror: Option<Arc<crate::split::Mirror>>,
}

/// The routes of one listener set, plus the forwards.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Routes for the main listeners.
    pub routes: Vec<Route>,
    /// Whole-port forwards: listener address -> a route to the service.
    pub forwards: HashMap<SocketAddr, Route>,
    /// Peers whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Vec<IpAddr>,
    /// Port of the first `https://` listener when plain HTTP requests for hosts with a
    /// certificate are redirected there (308).
    pub redirect_to: Option<u16>,
    /// Send `Strict-Transport-Security` on HTTPS answers.
    pub hsts: bool,
    /// `canonical_host`, with the other `hosts` that are sent there.
    pub canonical: Option<(String, Vec<String>)>,
}

/// The routes of `[edge] static`, under `[edge]`'s authentication and compression.
fn static_routes(plan: &Plan, stats: &crate::stats::Registry) -> Vec<Route> {
    let auth = plan
        .edge
        .auth
        .as_ref()
        .map(|a| Arc::new(crate::auth::Basic::new(a)));
    let forward = plan
        .edge
        .forward_auth
        .as_ref()
        .and_then(crate::auth::Forward::new)
        .map(Arc::new);
    let compress = plan.edge.compress.clone().map(Arc::new);
    let mut routes = Vec::new();
    for m in &plan.edge.static_mounts {
        let dir = if m.dir.is_absolute() {
            m.dir.clone()
        } else {
            plan.root.join(&m.dir)
        };
        routes.push(Route {
            host: HostMatch::Any,
            prefix: m.prefix.clone(),
            strip_prefix: true,
            max_body: 0,
            buffer_body: 0,
            websocket: false,
            hold: std::time::Duration::ZERO,
            action: Action::Static(dir),
            stats: stats.get(&format!("*{}", m.prefix)),
            headers: None,
            auth: auth.clone(),
            limit: None,
            forward: forward.clone(),
            compress: compress.clone(),
            split: None,
            mirror: None,
        });
    }
    routes
}

/// The routes of `[edge] redirects`.
fn redirect_routes(plan: &Plan, stats: &crate::stats::Registry) -> Vec<Route> {
    let mut routes = Vec::new();
    for r in &plan.edge.redirects {
        let prefix = match r.prefix.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        routes.push(Route {
            host: HostMatch::parse(r.host.as_deref()),
            stats: stats.get(&format!("{}{prefix}", r.host.as_deref().unwrap_or("*"))),
            prefix,
            strip_prefix: false,
            max_body: 0,
            buffer_body: 0,
            websocket: false,
            hold: std::time::Duration::ZERO,
            action: Action::Redirect {
                to: r.to.clone(),
                status: r.status,
            },
            headers: None,
            auth: None,
            limit: None,
            forward: None,
            compress: None,
            split: None,
            mirror: None,
        });
    }
    routes
}

/// Whether `path` is under `prefix` (`/TR` covers `/TR`, `/TR/`, `/TR/x`, not `/TRx`).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

impl Table {
    /// Builds the table for `plan`, taking each route's counters from `stats`.
    pub fn from_plan(plan: &Plan, stats: &Registry) -> Table {
        let epoch = Instant::now();
        let down_for = plan.edge.limits.upstream_down_time;
        let unit_backend = |name: &str| -> Option<Arc<Backend>> {
            let u = plan.units.get(name)?;
            let authority = unit_authority(u)?;
            let mut b = Backend::new(name.to_string(), authority, false, epoch);
            b.active = stats.in_flight(&b.authority);
            b.unit = true;
            b.down_for = down_for;
            Some(Arc::new(b))
        };
        let pool = |service: &str, target: &Target, balance: Balance| -> Arc<Pool> {
            let backends = match target {
                Target::Units(units) => units.iter().filter_map(|u| unit_backend(u)).collect(),
                Target::Remote(ups) => ups
                    .iter()
                    .map(|u| {
                        let mut b = Backend::new(
                            format!("{}:{}", u.host, u.port),
                            format!("{}:{}", u.host, u.port),
                            u.scheme == grove_plan::Scheme::Https,
                            epoch,
                        );
                        b.active = stats.in_flight(&b.authority);
                        b.down_for = down_for;
                        Arc::new(b)
                    })
                    .collect(),
            };
            Arc::new(Pool {
                service: service.to_string(),
                backends,
                next: AtomicUsize::new(0),
                balance,
            })
        };
        let mut routes: Vec<Route> =
            plan.routes
                .iter()
                .map(|r| Route {
                    host: HostMatch::parse(r.host.as_deref()),
                    prefix: r.prefix.clone(),
                    strip_prefix: r.strip_prefix,
                    max_body: r.max_body,
                    buffer_body: r.buffer_body,
                    websocket: r.websocket,
                    hold: std::time::Duration::from_millis(r.hold_ms),
                    action: Action::Proxy(pool(&r.service, &r.target, r.balance)),
                    stats: stats.get(&r.key()),
                    headers: (!r.request_headers.is_empty() || !r.response_headers.is_empty())
                        .then(|| {
                            Arc::new(RouteHeaders {
                                request: r.request_headers.clone(),
                                response: r.response_headers.clone(),
                            })
                        }),
                    auth: r
                        .auth
                        .as_ref()
                        .map(|a| Arc::new(crate::auth::Basic::new(a))),
                    limit: r.rate_limit.as_ref().map(|l| stats.buckets(&r.key(), l)),
                    forward: r
                        .forward_auth
                        .as_ref()
                        .and_then(crate::auth::Forward::new)
                        .map(Arc::new),
                    compress: r.compress.clone().map(Arc::new),
                    split: crate::split::Split::of(r, &pool),
                    mirror: crate::split::Mirror::of(r, &pool),
                })
                .collect();
        routes.extend(redirect_routes(plan, stats));
        routes.extend(static_routes(plan, stats));
        let forwards = plan
            .edge
            .forward
            .iter()
            .map(|f| {
                let route = Route {
                    host: HostMatch::Any,
                    prefix: "/".to_string(),
                    strip_prefix: false,
                    max_body: grove_plan::DEFAULT_MAX_BODY,
                    buffer_body: grove_plan::DEFAULT_BUFFER_BODY,
                    websocket: true,
                    hold: std::time::Duration::from_millis(grove_plan::DEFAULT_HOLD_MS),
                    action: Action::Proxy(pool(&f.service, &f.target, Balance::RoundRobin)),
                    stats: stats.get(&format!(":{}", f.listen.addr.port())),
                    headers: None,
                    auth: None,
                    limit: None,
                    forward: None,
                    compress: None,
                    split: None,
                    mirror: None,
                };
                (f.listen.addr, route)
            })
            .collect();
        let https_port = plan
            .edge
            .listen
            .iter()
            .find(|l| l.scheme == grove_plan::Scheme::Https)
            .map(|l| l.addr.port());
        Table {
            routes,
            forwards,
            trusted_proxies: plan.edge.trusted_proxies.clone(),
            redirect_to: https_port.filter(|_| plan.edge.redirect_https),
            hsts: plan.edge.hsts && https_port.is_some(),
            canonical: plan.edge.canonical_host.as_ref().map(|c| {
                let others = plan
                    .edge
                    .hosts
                    .iter()
                    .filter(|h| *h != c)
                    .cloned()
                    .collect();
                (c.clone(), others)
            }),
        }
    }

    /// Where a request for `host` (lowercase, no port) is sent instead, when `host` is one
    /// of the edge's hosts but not its `canonical_host`.
    pub fn canonical_for(&self, host: &str) -> Option<&str> {
        let (canonical, others) = self.canonical.as_ref()?;
        others
            .iter()
            .any(|h| h == host)
            .then_some(canonical.as_str())
    }

    /// The route for `host` (lowercase, no port) and `path`: the most specific host, then the
    /// longest prefix; a static mount wins a tie.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let mut best: Option<(&Route, (usize, usize, u8))> = None;
        for r in &self.routes {
            let rank = r.host.rank(host);
            if rank == 0 || !prefix_matches(&r.prefix, path) {
                continue;
            }
            // At the same host and prefix: a redirect, then a static mount, then a proxy.
            let kind = match r.action {
                Action::Redirect { .. } => 2,
                Action::Static(_) => 1,
                Action::Proxy(_) => 0,
            };
            let key = (rank, r.prefix.len(), kind);
            if best.as_ref().is_none_or(|(_, k)| key > *k) {
                best = Some((r, key));
            }
        }
        best.map(|(r, _)| r)
    }
}

/// Where the edge connects to a unit: its bind address (loopback for an unspecified one) and
/// port; `None` for a unit without a port.
pub fn unit_authority(u: &grove_plan::Unit) -> Option<String> {
    let port = u.port?;
    let ip = if u.bind.is_unspecified() {
        match u.bind {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        }
    } else {
        u.bind
    };
    Some(SocketAddr::new(ip, port).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: &str) -> Route {
        Route {
            host: HostMatch::parse(host),
            prefix: prefix.to_string(),
            strip_prefix: false,
            max_body: 0,
            buffer_body: 0,
            websocket: true,
            hold: std::time::Duration::ZERO,
            action: Action::Static(PathBuf::from(format!("{host:?}{prefix}"))),
            stats: Arc::default(),
            headers: None,
            auth: None,
            limit: None,
            forward: None,
            compress: None,
            split: None,
            mirror: None,
        }
    }

    fn dir(r: Option<&Route>) -> String {
        match r.map(|r| &r.action) {
            Some(Action::Static(p)) => p.display().to_string(),
            _ => "none".into(),
        }
    }

    #[test]
    fn host_then_longest_prefix() {
        let t = Table {
            routes: vec![
                route(None, "/"),
                route(None, "/api"),
                route(Some("*.example.org"), "/"),
                route(Some("shop.example.org"), "/"),
                route(Some("shop.example.org"), "/TR"),
            ],
            ..Default::default()
        };
        assert_eq!(dir(t.find("other.net", "/x")), "None/");
        assert_eq!(dir(t.find("other.net", "/api/v1")), "None/api");
        assert_eq!(dir(t.find("other.net", "/apix")), "None/");
        assert_eq!(
            dir(t.find("a.example.org", "/")),
            "Some(\"*.example.org\")/"
        );
        assert_eq!(dir(t.find("example.org", "/")), "None/");
        assert_eq!(
            dir(t.find("shop.example.org", "/TR/x")),
            "Some(\"shop.example.org\")/TR"
        );
        assert_eq!(
            dir(t.find("shop.example.org", "/TRY")),
            "Some(\"shop.example.org\")/"
        );
        // A path the exact host does not cover falls through to the catch-all host.
        let t2 = Table {
            routes: vec![route(None, "/"), route(Some("a.org"), "/only")],
            ..Default::default()
        };
        assert_eq!(dir(t2.find("a.org", "/else")), "None/");
        assert!(Table::default().find("x", "/").is_none());
    }

    #[test]
    fn prefixes() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/TR", "/TR"));
        assert!(prefix_matches("/TR", "/TR/a"));
        assert!(!prefix_matches("/TR", "/TRY"));
        assert!(!prefix_matches("/TR", "/"));
    }

    #[test]
    fn candidates_prefer_healthy_then_rotate() {
        let epoch = Instant::now();
        let b = |n: &str| Arc::new(Backend::new(n.into(), n.into(), false, epoch));
        let pool = Pool {
            service: "web".into(),
            backends: vec![b("a"), b("b"), b("c")],
            next: AtomicUsize::new(0),
            balance: Balance::RoundRobin,
        };
        let health = |n: &str| Some(n != "b");
        let names = |v: Vec<Arc<Backend>>| v.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
        // A unit that is not ready gets no request at all (issue 25).
        assert_eq!(names(pool.candidates(&health)), ["a", "c"]);
        assert_eq!(names(pool.candidates(&health)), ["c", "a"]);
        pool.backends[0].mark_down();
        assert_eq!(names(pool.candidates(&health)), ["c", "a"]);
        assert_eq!(names(pool.candidates(&health)), ["c", "a"]);
        assert!(pool.candidates(&|_| Some(false)).is_empty());
        // A unit the daemon never reported on is not ready; a remote upstream is.
        let mut unit = Backend::new("u".into(), "u".into(), false, epoch);
        unit.unit = true;
        let mixed = Pool {
            service: "m".into(),
            backends: vec![Arc::new(unit), b("10.0.0.5:80")],
            next: AtomicUsize::new(0),
            balance: Balance::RoundRobin,
        };
        assert_eq!(names(mixed.candidates(&|_| None)), ["10.0.0.5:80"]);
        // The passive down time is `[edge.limits] upstream_down_time`.
        let mut quick = Backend::new("q".into(), "q".into(), false, epoch);
        quick.down_for = Duration::from_millis(30);
        quick.mark_down();
        assert!(!quick.passively_up());
        std::thread::sleep(Duration::from_millis(40));
        assert!(quick.passively_up());
        let lc = Pool {
            balance: Balance::LeastConn,
            next: AtomicUsize::new(0),
            service: "w".into(),
            backends: vec![b("x"), b("y")],
        };
        lc.backends[0].active.store(3, Ordering::Relaxed);
        assert_eq!(names(lc.candidates(&|_| None)), ["y", "x"]);
    }
}
