//! # grove-daemon: the running stack, as a library
//!
//! Owns what a running grove is, in linkerd2-proxy's shape (load, bind, spawn, drain):
//! [`Daemon::bind`] does everything that can fail before a unit starts (the state folder,
//! leftovers of a killed grove, the Plan with its passwords, sticky ports, live release and
//! free ports, the edge's listeners, the admin listener, the control socket), and
//! [`Daemon::run`] starts the units and serves until SIGINT, SIGTERM or a `down` request,
//! then stops everything. Inside: [`inputs`] (the Plan's inputs), [`state`] (the state
//! folder's mode, the store), one reload path shared by SIGHUP and the API
//! ([`grove_api::reload`]), deploy's switch (`switch`: stage, gate, promote, drain),
//! notifications (`notify`), the metric sampler and the edge's health feed (`observe`), the
//! port check (`ports`).
//!
//! It must not know the command line: no argument parsing, no rendering of tables or
//! stack-file errors (the caller's [`Loader`] turns a stack file into a [`grove_config::Stack`]
//! or the text to show), no terminal. The `grove` binary is its only user.

pub mod handover;
pub mod inputs;
mod jobs;
mod memory;
mod notify;
mod observe;
mod ports;
mod remote;
mod replace;
pub mod sd_notify;
pub mod sockets;
pub mod state;
mod switch;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grove_api::{ApiContext, Client};
use grove_engine::{EngineHandle, Status};
use grove_plan::{Plan, Unit};
use tokio::sync::Notify;

pub use inputs::{
    build_plan, known_secrets, live_release, plan_inputs, recipes_installed, InputsError,
};
pub use state::{ensure_state_dir, make_private_dir, open_store, read_store, sticky_ports};

impl DaemonError {
    /// The message as the command line shows it (`grove: ...`).
    pub fn shown(&self) -> String {
        match self {
            // Already worded as shown (stack-file errors, plan and port checks).
            DaemonError::Refused(text) => text.clone(),
            other => format!("grove: {other}"),
        }
    }
}

/// Loads the stack file for an environment: the Stack, or the text to show (the caller
/// renders stack-file errors and prints warnings).
pub type Loader = Arc<dyn Fn(Option<String>) -> Result<grove_config::Stack, String> + Send + Sync>;

/// Why the daemon did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The stack was refused before anything started; the text says why, as shown to users.
    #[error("{0}")]
    Refused(String),
    /// Another grove runs this stack.
    #[error(
        "this stack is already running (grove pid {0}); see `grove ps`, apply changes with `grove reload`"
    )]
    AlreadyRunning(u32),
    /// Another grove is starting this stack right now.
    #[error("this stack is already running (another grove is starting it); see `grove ps`")]
    Starting,
    /// A file or socket could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state store.
    #[error("{0}")]
    State(#[from] grove_state::StateError),
    /// The engine ended before the stack started.
    #[error("the engine stopped before the stack started")]
    EngineGone,
}

impl DaemonError {
    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
        move |source| DaemonError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

/// What the daemon is started with.
#[allow(missing_debug_implementations)]
pub struct Config {
    /// Loads the stack file (again at each reload and deploy).
    pub load: Loader,
    /// The environment overlay.
    pub env: Option<String>,
    /// The stack file, absolute (a handover's successor loads it again).
    pub file: PathBuf,
    /// What `grove up` asked for: `Some([])` everything, `Some(services)` those and what they
    /// depend on (the rest stays stopped), `None` (a handover's successor) what the store's
    /// held units say.
    pub only: Option<Vec<String>>,
}

/// Turns maintenance on or off: at the edge first (where a bad network is refused), then in
/// the store, so it holds after a reload and a restart of grove.
fn maintainer(
    edge: grove_edge::Edge,
    store: Arc<std::sync::Mutex<grove_state::Store>>,
) -> grove_api::Maintainer {
    Arc::new(move |m: Option<grove_plan::Maintenance>| {
        edge.set_maintenance(m.as_ref())?;
        let store = store
            .lock()
            .map_err(|_| "the store is poisoned".to_string())?;
        store
            .set(grove_plan::MAINTENANCE_KEY, &m)
            .map_err(|e| e.to_string())
    })
}

/// The units `grove up SERVICE...` leaves stopped: all but `only` and what they depend on
/// (none for a plain `grove up`), never one that outlived the last grove and runs still.
fn held_units(
    plan: &Plan,
    only: &[String],
    running: &[String],
) -> Result<std::collections::BTreeSet<String>, String> {
    if only.is_empty() {
        return Ok(Default::default());
    }
    let wanted = grove_engine::resolve(plan, only).map_err(|e| format!("grove: {e}"))?;
    let keep = grove_plan::with_dependencies(plan, &wanted);
    Ok(plan
        .units
        .keys()
        .filter(|k| !keep.contains(*k) && !running.contains(k))
        .cloned()
        .collect())
}

/// A stack whose listeners are bound and whose Plan is built, ready to run.
#[allow(missing_debug_implementations)]
pub struct Daemon {
    plan: Plan,
    state: PathBuf,
    socket: PathBuf,
    edge: grove_edge::Edge,
    engine: EngineHandle,
    api: Arc<ApiContext>,
    listener: tokio::net::UnixListener,
    admin: Option<tokio::net::TcpListener>,
    /// Called with each Plan once it runs.
    applied: Arc<dyn Fn(&Plan) + Send + Sync>,
    /// `state/grove.lock`, locked while this grove runs the stack.
    lock: std::fs::File,
    /// The stack file and environment, for a handover's successor.
    file: PathBuf,
    env: Option<String>,
    /// Handover requests from the API.
    handovers: tokio::sync::mpsc::UnboundedReceiver<grove_api::Handover>,
}

impl Daemon {
    /// Everything that can fail before a unit starts; on `Err` nothing runs.
    pub async fn bind(cfg: Config) -> Result<Daemon, DaemonError> {
        let stack = (cfg.load)(cfg.env.clone()).map_err(DaemonError::Refused)?;
        let state = stack.root.join(&stack.state_dir);
        make_private_dir(&state)?;
        let socket = state.join("grove.sock");
        // One grove per stack: held for the daemon's whole life, so two starts at once never
        // both get past here (the loser used to fail on a taken port).
        let lock = lock_stack(&state).await?;
        if let Ok(s) = Client::new(&socket).get::<Status>("/v1/status").await {
            return Err(DaemonError::AlreadyRunning(s.pid));
        }
        let _ = std::fs::remove_file(&socket);
        let (store, damaged) = state::open_checked_store(&state)?;
        if let Some(note) = &damaged {
            eprintln!("grove: {note}");
            let _ = store.append(None, "store-reset", note);
        }
        let found = leftovers(&state, &store).await;
        let adopting: Vec<String> = found.iter().map(|a| a.hello.unit.clone()).collect();
        // The sockets the last grove served on (the edge's and its socket-activated units'),
        // with what waits in their backlogs.
        let run_dir = state.join("run");
        let inherited = sockets::take(&run_dir);
        let kept: Vec<std::net::SocketAddr> = inherited.iter().map(|(a, _)| *a).collect();
        let plan = inputs::free_ports_plan(&stack, &sticky_ports(&store), &adopting, &kept)
            .and_then(|p| recipes_installed(&p).map(|_| p))
            .map_err(|e| DaemonError::Refused(e.shown()))?;
        if let Some(only) = &cfg.only {
            let held = held_units(&plan, only, &adopting).map_err(DaemonError::Refused)?;
            store
                .set(grove_engine::HELD, &held)
                .map_err(|e| DaemonError::Refused(format!("grove: {e}")))?;
        }
        let limits = grove_edge::Limits::from(&plan.edge.limits);
        let (for_units, inherited) = units_sockets(&plan, inherited);
        let unit_sockets = Arc::new(grove_engine::sockets::UnitSockets::new(for_units));
        let edge = grove_edge::Edge::start_inheriting(&plan, &state, limits, inherited)
            .await
            .map_err(|e| DaemonError::Refused(format!("grove: {e}")))?;
        restore_maintenance(&store, &edge);
        hold_all(&plan.stack, &run_dir, &edge, &unit_sockets).await;
        // The admin listener binds before anything starts, so a taken port stops `up` cleanly.
        let admin = match plan.admin.listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                DaemonError::Refused(format!(
                    "grove: cannot listen on {addr} for [admin] listen: {e}"
                ))
            })?),
            None => None,
        };
        let token = match admin {
            Some(_) => state::admin_token(&state)?,
            None => String::new(),
        };
        let api_store = Arc::new(std::sync::Mutex::new(open_store(&state)?));
        let api_store_for_maintenance = api_store.clone();
        let engine = grove_engine::start_with(store, found, unit_sockets.clone());
        tokio::spawn(rehold_sockets(
            plan.stack.clone(),
            run_dir.clone(),
            edge.clone(),
            unit_sockets,
        ));
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(DaemonError::io("cannot listen on", &socket))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(DaemonError::io("cannot restrict", &socket))?;
        let host = Arc::new(std::sync::Mutex::new(grove_metrics::HostSample::default()));
        let edge_for_metrics = edge.clone();
        let observe = grove_api::Observe {
            store: api_store.clone(),
            routes: Arc::new(move || observe::route_metrics(&edge_for_metrics)),
            host,
            logs_dir: state.join("logs"),
            token,
        };
        let edge_for_api = edge.clone();
        let probes = Arc::new(remote::RemoteProbes::default());
        let (probes_for_api, engine_for_api) = (probes.clone(), engine.clone());
        let applied: Arc<dyn Fn(&Plan) + Send + Sync> = Arc::new(move |p: &Plan| {
            edge_for_api.update(p);
            probes_for_api.apply(p, &edge_for_api, &engine_for_api);
        });
        let switcher = switch::Switcher {
            load: cfg.load.clone(),
            env: plan.environment.clone(),
            engine: engine.clone(),
            applied: applied.clone(),
            store: api_store,
            logs_dir: state.join("logs"),
            edge: edge.clone(),
            running: Arc::new(std::sync::Mutex::new(stack)),
            pending: Arc::new(std::sync::Mutex::new(None)),
        };
        let (load, pending) = (cfg.load.clone(), switcher.pending.clone());
        let reload_env = plan.environment.clone();
        let reload: grove_api::Reloader = Arc::new(move |current: &Plan| {
            let stack = load(reload_env.clone())?;
            let plan = inputs::reloaded_plan(&stack, current).map_err(|e| e.shown())?;
            recipes_installed(&plan).map_err(|e| e.shown())?;
            // The applier takes it: the stack the Plan comes from, once the Plan runs.
            *pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(stack);
            Ok(plan)
        });
        let replacer = switcher.clone();
        let apply: grove_api::Applier = Arc::new(move |current: Plan, next: Plan| {
            let me = replacer.clone();
            Box::pin(async move { me.replace(current, next).await })
        });
        let restarter = switcher.clone();
        let restart: grove_api::Restarter = Arc::new(move |targets: Vec<String>| {
            let me = restarter.clone();
            Box::pin(async move { me.restart(targets).await })
        });
        let deploy = switcher.into_deployer();
        let maintenance = maintainer(edge.clone(), api_store_for_maintenance);
        let (handover_tx, handovers) = tokio::sync::mpsc::unbounded_channel();
        let api = Arc::new(ApiContext {
            engine: engine.clone(),
            reload,
            deploy,
            changes: Arc::new(tokio::sync::Mutex::new(())),
            down: Arc::new(Notify::new()),
            handover: handover_tx,
            apply,
            restart,
            observe,
            maintenance,
        });
        Ok(Daemon {
            plan,
            state,
            socket,
            edge,
            engine,
            api,
            listener,
            admin,
            applied,
            lock,
            file: cfg.file.clone(),
            env: cfg.env.clone(),
            handovers,
        })
    }

    /// The Plan it will start.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The units' output lines as they come (for a foreground printer).
    pub fn lines(&self) -> tokio::sync::broadcast::Receiver<grove_engine::LogLine> {
        self.engine.subscribe_lines()
    }

    /// Starts the units and the background work (sampling, notifications, the health feed,
    /// the API), then serves until SIGINT, SIGTERM or a `down` request; a SIGHUP reloads.
    /// `stopping` is called once a signal asked to stop, before the units are stopped.
    pub async fn run(self, stopping: impl FnOnce()) -> Result<(), DaemonError> {
        let Daemon {
            plan,
            state,
            socket,
            edge,
            engine,
            api,
            listener,
            admin,
            applied,
            lock,
            file,
            env,
            mut handovers,
        } = self;
        tokio::spawn(observe::sample_metrics(
            engine.clone(),
            api.observe.clone(),
            state.clone(),
            Duration::from_millis(plan.admin.sample_interval_ms),
        ));
        notify::start(&plan.stack, &plan.admin, engine.subscribe_events());
        let manager = sd_notify::notifier();
        manager.start_watchdog();
        tokio::spawn(observe::feed_health(engine.clone(), edge.clone()));
        tokio::spawn(memory::run(edge.clone()));
        tokio::spawn(jobs::run(engine.clone()));
        if let Some(mut edge_events) = edge.take_events() {
            let engine = engine.clone();
            tokio::spawn(async move {
                while let Some(e) = edge_events.recv().await {
                    engine.record(None, &e.kind, &e.message);
                }
            });
        }
        if let Some(l) = admin {
            if let Ok(addr) = l.local_addr() {
                tracing::info!("admin listener on http://{addr}/ (token in .grove/admin.token)");
            }
            tokio::spawn(grove_api::serve_admin(l, api.clone()));
        }
        applied(&plan);
        if engine.apply(plan).await.is_err() {
            return Err(DaemonError::EngineGone);
        }
        // Answered only once the first Plan is applied: a status asked earlier (`up -d`
        // waiting for its units) would see no unit at all and take that for "all started".
        let server = tokio::spawn(grove_api::serve(listener, api.clone()));
        tokio::spawn(sd_notify::announce_ready(manager.clone(), engine.clone()));
        let ending = until_stopped(&api, &manager, &mut handovers).await?;
        if let Ending::Handover(asked) = ending {
            // The units and the edge's sockets go on with the successor.
            edge.start_draining();
            let _ = engine.detach().await;
            server.abort();
            let _ = std::fs::remove_file(&socket);
            drop(lock);
            let started = handover::binary(asked.binary).and_then(|b| {
                handover::successor(&b, &file, env.as_deref(), &state, &manager)?.spawn()
            });
            match started {
                Ok(child) => {
                    if let Some(pid) = child.id() {
                        manager.send(&format!(
                            "MAINPID={pid}\nSTATUS=handed over to grove pid {pid}"
                        ));
                    }
                    edge.drain(handover::DRAIN).await;
                }
                Err(e) => {
                    // Nothing took over: the units run on under their shims, and the next
                    // `grove up -d` adopts them.
                    eprintln!("grove: cannot start the next grove: {e}");
                }
            }
            return Ok(());
        }
        manager.send("STOPPING=1\nSTATUS=stopping the units");
        if ending == Ending::Signal {
            stopping();
            let _ = engine.shutdown().await;
        }
        server.abort();
        let _ = std::fs::remove_file(&socket);
        // Stopped on purpose: the edge's sockets go with it.
        sockets::release(&state.join("run"));
        drop(lock);
        Ok(())
    }
}

/// Maintenance mode, as the operator left it.
fn restore_maintenance(store: &grove_state::Store, edge: &grove_edge::Edge) {
    let kept: Option<grove_plan::Maintenance> = store
        .get::<Option<grove_plan::Maintenance>>(grove_plan::MAINTENANCE_KEY)
        .ok()
        .flatten()
        .flatten();
    if let Err(e) = edge.set_maintenance(kept.as_ref()) {
        tracing::warn!("the stored maintenance mode is not applied: {e}");
    }
}

/// Listening sockets by address, as a holder hands them over.
type Listeners = Vec<(std::net::SocketAddr, std::net::TcpListener)>;

/// Splits the sockets a holder kept: those at a socket-activated unit's address go to the
/// engine, the rest to the edge.
fn units_sockets(plan: &Plan, inherited: Listeners) -> (Listeners, Listeners) {
    let units: Vec<std::net::SocketAddr> = plan
        .units
        .values()
        .filter_map(Unit::socket_address)
        .collect();
    inherited.into_iter().partition(|(a, _)| units.contains(a))
}

/// Hands the edge's sockets and the socket-activated units' to a new holder, so they stay
/// open (and connections wait in their backlogs) if grove dies.
async fn hold_all(
    stack: &str,
    run_dir: &Path,
    edge: &grove_edge::Edge,
    units: &grove_engine::sockets::UnitSockets,
) {
    match grove_supervisor::process::own_binary() {
        Ok(exe) => {
            let env = [("GROVE_STACK", stack)];
            let mut all = edge.listening();
            all.extend(units.listening());
            if let Err(e) = sockets::hold(&exe, run_dir, all, &env).await {
                tracing::warn!("the edge's and units' sockets will close with grove: {e}");
            }
        }
        Err(e) => tracing::warn!("the edge's and units' sockets will close with grove: {e}"),
    }
}

/// Hands the set to a new holder whenever a unit's socket opens or closes (a moment after,
/// so a burst of changes is one new holder); ends when the engine stops announcing them.
async fn rehold_sockets(
    stack: String,
    run_dir: PathBuf,
    edge: grove_edge::Edge,
    units: Arc<grove_engine::sockets::UnitSockets>,
) {
    let mut changed = units.changed();
    while changed.changed().await.is_ok() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if units.frozen() {
            return;
        }
        changed.borrow_and_update();
        hold_all(&stack, &run_dir, &edge, &units).await;
    }
}

/// The units an earlier grove left running (it was killed, or is being replaced), to be
/// supervised again; those that ended meanwhile get their exit recorded, and only what
/// nobody can adopt is reaped.
async fn leftovers(
    state: &Path,
    store: &grove_state::Store,
) -> Vec<grove_supervisor::shim::Attached> {
    let (found, ended) = grove_supervisor::shim::discover(&state.join("run")).await;
    for e in &ended {
        let _ = store.append(
            Some(&e.hello.unit),
            "exited",
            &format!(
                "pid {} ended while no grove was running: {}",
                e.hello.pid,
                grove_engine::describe_exit(&e.status)
            ),
        );
    }
    let adopted: Vec<i32> = found.iter().map(|a| a.hello.pid).collect();
    for line in grove_engine::reap_leftovers(store, &adopted) {
        eprintln!("grove: {line}");
    }
    found
}

/// Takes `state/grove.lock` (an exclusive `flock`, released when grove ends, even killed).
/// A grove that is ending (a `down` just answered, a killed one being torn down) lets go
/// within moments, so a held lock is tried again for up to two seconds.
pub async fn lock_stack(state: &Path) -> Result<std::fs::File, DaemonError> {
    let path = state.join("grove.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(DaemonError::io("cannot open", &path))?;
    for _ in 0..100 {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(DaemonError::io("cannot lock", &path)(e))
            }
        }
    }
    Err(DaemonError::Starting)
}

/// Why the daemon's serving ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// SIGINT or SIGTERM: stop everything.
    Signal,
    /// A `down` request stopped everything already.
    Down,
    /// Hand the stack over to the next grove (`grove upgrade`, SIGUSR2).
    Handover(grove_api::Handover),
}

/// Serves signals until one asks to stop, a `down` request has stopped everything, or a
/// handover is asked for. SIGHUP reloads through the API's own reload path.
async fn until_stopped(
    api: &ApiContext,
    manager: &sd_notify::Notifier,
    handovers: &mut tokio::sync::mpsc::UnboundedReceiver<grove_api::Handover>,
) -> Result<Ending, DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |kind| {
        signal(kind).map_err(DaemonError::io(
            "cannot watch signals for",
            Path::new("grove"),
        ))
    };
    let mut sigint = sig(SignalKind::interrupt())?;
    let mut sigterm = sig(SignalKind::terminate())?;
    let mut sighup = sig(SignalKind::hangup())?;
    let mut sigusr2 = sig(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = sigint.recv() => return Ok(Ending::Signal),
            _ = sigterm.recv() => return Ok(Ending::Signal),
            _ = sigusr2.recv() => return Ok(Ending::Handover(grove_api::Handover::default())),
            Some(h) = handovers.recv() => return Ok(Ending::Handover(h)),
            _ = sighup.recv() => {
                manager.send("RELOADING=1\nSTATUS=reloading the stack file");
                match grove_api::reload(api).await {
                    Ok(r) => {
                        eprintln!("grove: reloaded: {}", r.summary());
                        manager.send(&format!("READY=1\nSTATUS=reloaded: {}", r.summary()));
                    }
                    Err(grove_api::ReloadError::Refused(text)) => {
                        eprintln!("{text}\ngrove: reload refused; nothing changed");
                        manager.send("READY=1\nSTATUS=reload refused; nothing changed");
                    }
                    Err(grove_api::ReloadError::Gone) => return Ok(Ending::Signal),
                }
            }
            _ = api.down.notified() => return Ok(Ending::Down),
        }
    }
}
