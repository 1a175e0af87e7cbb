//! The engine's actor: one task owns every unit; processes, probes and pumps report to it
//! through a channel, so no state is shared and every decision happens in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_plan::{Plan, Run, Unit};
use grove_state::{EventRecord, Store};
use grove_supervisor::cgroup;
use grove_supervisor::logs::LogFile;
use grove_supervisor::process::{self, Signal};
use grove_supervisor::shim;
use grove_supervisor::{probe, Action, Event, ExitStatus, Input, Settings, State, UnitMachine};
use indexmap::IndexMap;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::status::{ApplyReport, LogLine};
use crate::{Request, TargetError};

/// Messages from the engine's helpers (process waiters, probes) to the actor.
pub(crate) enum Internal {
    Exited {
        unit: String,
        gen: u64,
        status: ExitStatus,
        /// The memory limit, when the kernel killed it for going over it.
        oom: Option<u64>,
    },
    Probe {
        unit: String,
        gen: u64,
        result: Result<(), String>,
    },
    /// A unit's log could not take its output (a full disk) and takes it again now.
    OutputLost { unit: Arc<str>, bytes: u64 },
}

pub(crate) enum Msg {
    Request(Request),
    Internal(Internal),
}

type SharedLog = Arc<Mutex<LogFile>>;

struct Proc {
    pid: i32,
    started: Instant,
    start_ticks: u64,
    /// Its cgroup, when the machine has one for it (every process it starts stays inside).
    group: Option<cgroup::Group>,
    /// Its shim's ear.
    control: Option<shim::Control>,
    /// SIGKILL the group at this time (the stop grace period ran out).
    kill_at: Option<Instant>,
    /// A recipe server whose roles and databases are being created: dependents that wait
    /// for `healthy` wait for this too.
    provisioning: bool,
}

/// What the actor means to do with a unit next, beside what its machine does now. One of
/// these at a time: a unit waiting to start is neither blocked nor waiting to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    /// Nothing beyond what its machine does.
    Idle,
    /// Start as soon as its dependencies allow.
    Start,
    /// Not started: a dependency failed, or is stopped (why).
    Blocked(String),
    /// Stop as soon as no dependent runs (ordered shutdown).
    Stop,
    /// A previous generation draining: stop it at this time.
    DrainUntil(Instant),
}

impl Intent {
    /// When a draining generation is to be stopped.
    fn drain_until(&self) -> Option<Instant> {
        match self {
            Intent::DrainUntil(t) => Some(*t),
            _ => None,
        }
    }
}

/// What becomes of a unit once its process has stopped.
#[derive(Debug, Clone)]
enum AfterStop {
    /// It stays, stopped (or as its restart policy decides).
    Stay,
    /// It starts again with this definition (a reload's restart, `restart`).
    Restart(Box<Unit>),
    /// It is dropped (a reload removed it, a drained generation).
    Remove,
}

/// The key suffix of a unit of the next generation, started beside the serving one by a
/// deploy: `web@turkey~next`.
pub const NEXT: &str = "~next";
/// The key suffix of a unit of the previous generation while it drains: `web@turkey~old`.
pub const OLD: &str = "~old";
/// The key infix of another run of a job beside the one still running (`concurrency =
/// "allow"`): `report~run2`.
pub const RUN: &str = "~run";
/// The store's key for the units kept stopped: those `grove stop` stopped and those
/// `grove up SERVICE...` left out, until `grove start` (or a plain `grove up`).
pub const HELD: &str = "held";

struct Rt {
    unit: Unit,
    machine: UnitMachine,
    /// Incremented at every spawn; stale reports from an older process are ignored.
    gen: u64,
    proc: Option<Proc>,
    probe: Option<tokio::task::AbortHandle>,
    log: Option<SharedLog>,
    /// What the actor means to do with it next.
    intent: Intent,
    /// What becomes of it once stopped.
    after_stop: AfterStop,
    /// Something to say in `ps` while nothing else is (output lost to a full disk).
    note: Option<String>,
    last_probe_error: Option<String>,
    cpu_sample: Option<(Instant, u64)>,
    /// What its last exit was, when grove knows more than the status (out of memory).
    exit_note: Option<String>,
}

impl Rt {
    /// Whether it starts again once its process has stopped.
    fn restarting(&self) -> bool {
        matches!(self.after_stop, AfterStop::Restart(_))
    }

    /// Whether it is a recipe server still creating its roles and databases.
    fn provisioning(&self) -> bool {
        self.proc.as_ref().is_some_and(|p| p.provisioning)
    }
}

pub(crate) struct Actor {
    plan: Option<Plan>,
    units: IndexMap<String, Rt>,
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<EventRecord>,
    lines: broadcast::Sender<LogLine>,
    internal: mpsc::UnboundedSender<Internal>,
    internal_rx: Option<mpsc::UnboundedReceiver<Internal>>,
    shutdown: Vec<oneshot::Sender<()>>,
    secrets: Vec<String>,
    seed: u64,
    /// Spawn counter shared by every unit, so a report names exactly one process even after
    /// its unit was renamed (a deploy's switch).
    last_gen: u64,
    /// The stack's cgroups (`None` inside: this machine has none for us); made at the first
    /// spawn.
    cgroups: Option<Option<cgroup::Tree>>,
    /// Units an earlier grove left running (they outlived it), by key, until the Plan's unit
    /// of that key is started: then adopted instead.
    adoptable: HashMap<String, shim::Attached>,
    /// Set at a handover: the processes' watchers leave them alone.
    detached: Arc<std::sync::atomic::AtomicBool>,
    /// `Some` in the actor's own tests: the process effects its decisions call for
    /// (`spawn NAME`, `kill NAME`) are recorded here and stand-in processes take their place,
    /// so scheduling, apply and a deploy's stage and promote are tested without a process.
    recorded: Option<Vec<String>>,
    /// Remote targets as their probes last saw them, by service and target.
    remotes: std::collections::BTreeMap<(String, String), crate::status::RemoteStatus>,
    /// Discards waiting for their staged units to be gone.
    discarding: Vec<(Vec<String>, oneshot::Sender<()>)>,
    /// Socket-activated units' sockets.
    listen: listen::Listen,
}

impl Actor {
    pub(crate) fn new(
        store: Arc<Mutex<Store>>,
        events: broadcast::Sender<EventRecord>,
        lines: broadcast::Sender<LogLine>,
    ) -> Actor {
        let (internal, internal_rx) = mpsc::unbounded_channel();
        Actor {
            plan: None,
            units: IndexMap::new(),
            store,
            events,
            lines,
            internal,
            internal_rx: Some(internal_rx),
            shutdown: Vec::new(),
            secrets: Vec::new(),
            seed: u64::from(std::process::id()) << 32 | 0x9e37,
            last_gen: 0,
            cgroups: None,
            adoptable: HashMap::new(),
            detached: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            recorded: None,
            remotes: std::collections::BTreeMap::new(),
            discarding: Vec::new(),
            listen: listen::Listen::default(),
        }
    }

    pub(crate) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let Some(mut internal) = self.internal_rx.take() else {
            return;
        };
        loop {
            let deadline = self.next_deadline();
            let msg = tokio::select! {
                biased;
                m = internal.recv() => m.map(Msg::Internal),
                r = requests.recv() => match r {
                    Some(r) => Some(Msg::Request(r)),
                    // Every handle dropped: behave as a shutdown nobody waits for.
                    None => { self.begin_shutdown(); None }
                },
                _ = sleep_until(deadline) => None,
            };
            let now = Instant::now();
            if let Some(Msg::Request(Request::Detach(tx))) = msg {
                self.detach();
                let _ = tx.send(());
                return;
            }
            match msg {
                Some(Msg::Request(r)) => self.request(r, now),
                Some(Msg::Internal(i)) => self.internal(i, now),
                None => {}
            }
            self.timers(Instant::now());
            self.schedule(Instant::now());
            if self.shutting_down() && self.all_down() {
                // Nothing a unit started outlives `down`, not even what left its group.
                if let Some(plan) = &self.plan {
                    cgroup::remove_v1_stack(&plan.stack);
                }
                if let Some(Some(tree)) = &self.cgroups {
                    for g in tree.groups() {
                        g.kill_and_remove();
                    }
                    tree.remove_if_empty();
                }
                for tx in self.shutdown.drain(..) {
                    let _ = tx.send(());
                }
                self.emit(None, "down", "every unit stopped");
                return;
            }
            if requests.is_closed() && self.shutdown.is_empty() && self.all_down() {
                return;
            }
        }
    }

    fn shutting_down(&self) -> bool {
        !self.shutdown.is_empty()
    }

    fn all_down(&self) -> bool {
        self.units
            .values()
            .all(|rt| rt.proc.is_none() && rt.intent != Intent::Stop && !rt.restarting())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.units
            .values()
            .flat_map(|rt| {
                [
                    rt.machine.deadline(),
                    rt.proc.as_ref().and_then(|p| p.kill_at),
                    rt.intent.drain_until(),
                ]
            })
            .flatten()
            .min()
    }

    // ----- requests -------------------------------------------------------------------------

    fn request(&mut self, r: Request, now: Instant) {
        match r {
            Request::Status(tx) => {
                let s = self.status(now);
                let _ = tx.send(s);
            }
            Request::Plan(tx) => {
                if let Some(p) = &self.plan {
                    let _ = tx.send(p.clone());
                }
            }
            Request::Apply(plan, tx) => {
                let report = self.apply(*plan, now, None);
                let _ = tx.send(report);
            }
            Request::Stage(plan, names, tx) => {
                let _ = tx.send(self.stage(&plan, &names));
            }
            Request::Promote {
                plan,
                names,
                drain,
                reply,
            } => {
                let report = self.promote(*plan, &names, drain, now);
                let _ = reply.send(report);
            }
            Request::RunCopy(name, tx) => {
                let _ = tx.send(self.run_copy(&name));
            }
            Request::Discard(names, tx) => {
                self.discard(&names, now);
                // Answered once the staged units are gone, so that the next deploy (or
                // reload) finds no leftover of this one.
                let keys = names.iter().map(|n| format!("{n}{NEXT}")).collect();
                self.discarding.push((keys, tx));
            }
            Request::Start(targets, tx) => {
                let r = self.resolve(&targets);
                if let Ok(names) = &r {
                    self.hold(names, false);
                    for n in names {
                        if let Some(rt) = self.units.get_mut(n) {
                            if matches!(rt.intent, Intent::Blocked(_) | Intent::Stop) {
                                rt.intent = Intent::Idle;
                            }
                            if matches!(rt.after_stop, AfterStop::Remove) {
                                rt.after_stop = AfterStop::Stay;
                            }
                            if rt.proc.is_none() || rt.restarting() {
                                rt.intent = Intent::Start;
                            } else if matches!(rt.machine.state(), State::Stopping) {
                                // Still in its stop grace (issue 27): the later request wins,
                                // so it starts again once the stop completes.
                                rt.after_stop = AfterStop::Restart(Box::new(rt.unit.clone()));
                            }
                        }
                    }
                }
                let _ = tx.send(r);
            }
            Request::Stop(targets, tx) => {
                let r = self.resolve(&targets);
                if let Ok(names) = &r {
                    self.hold(names, true);
                    for n in names {
                        if let Some(rt) = self.units.get_mut(n) {
                            if rt.intent == Intent::Start {
                                rt.intent = Intent::Idle;
                            }
                            if rt.restarting() {
                                rt.after_stop = AfterStop::Stay;
                            }
                        }
                        self.feed(n, Input::Stop, now);
                    }
                }
                let _ = tx.send(r);
            }
            Request::Restart(targets, tx) => {
                let r = self.resolve(&targets);
                if let Ok(names) = &r {
                    self.hold(names, false);
                    for n in names.clone() {
                        let running = self.units.get(&n).is_some_and(|rt| rt.proc.is_some());
                        if let Some(rt) = self.units.get_mut(&n) {
                            if matches!(rt.intent, Intent::Blocked(_)) {
                                rt.intent = Intent::Idle;
                            }
                            if !running {
                                rt.intent = Intent::Start;
                            } else if !matches!(rt.after_stop, AfterStop::Remove) {
                                // A unit on its way out is not brought back.
                                rt.after_stop = AfterStop::Restart(Box::new(rt.unit.clone()));
                            }
                        }
                        if running {
                            self.feed(&n, Input::Stop, now);
                        }
                    }
                }
                let _ = tx.send(r);
            }
            // Handled by the loop itself, which then ends.
            Request::Detach(tx) => {
                self.detach();
                let _ = tx.send(());
            }
            Request::Shutdown(tx) => {
                self.shutdown.push(tx);
                self.begin_shutdown();
            }
            Request::Record {
                unit,
                kind,
                message,
            } => {
                self.emit(unit.as_deref(), &kind, &message);
            }
            Request::Remote(mut r) => {
                let key = (r.service.clone(), r.target.clone());
                if let Some(old) = self.remotes.get(&key).filter(|o| o.health == r.health) {
                    // Still failing, with a fresh reason: its health changed back then.
                    r.since_unix_ms = old.since_unix_ms;
                }
                self.remotes.insert(key, r);
            }
        }
    }

    /// Unit names for targets that are unit, service or instance names.
    fn resolve(&self, targets: &[String]) -> Result<Vec<String>, TargetError> {
        crate::targets::resolve_in(self.units.iter().map(|(n, rt)| (n, &rt.unit)), targets)
    }

    // ----- apply ----------------------------------------------------------------------------

    /// Converges to `plan`. `event` names the event recorded (`reloaded` when `None`).
    /// The units kept stopped across restarts of grove (the store's `held`).
    fn held(&self) -> std::collections::BTreeSet<String> {
        self.store
            .lock()
            .ok()
            .and_then(|s| s.get(HELD).ok().flatten())
            .unwrap_or_default()
    }

    /// Marks `names` as stopped by the operator (`true`) or wanted again.
    fn hold(&self, names: &[String], stopped: bool) {
        let mut held = self.held();
        let before = held.clone();
        for n in names.iter().filter(|n| !n.contains('~')) {
            if stopped {
                held.insert(n.clone());
            } else {
                held.remove(n);
            }
        }
        if held != before {
            if let Ok(store) = self.store.lock() {
                if let Err(e) = store.set(HELD, &held) {
                    tracing::warn!("cannot record the stopped units: {e}");
                }
            }
        }
    }

    fn apply(&mut self, plan: Plan, now: Instant, event: Option<(&str, &str)>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let first = self.plan.is_none();
        let diff = match &self.plan {
            Some(old) => Plan::diff(old, &plan),
            None => grove_plan::PlanDiff {
                add: plan.units.keys().cloned().collect(),
                ..Default::default()
            },
        };
        self.secrets = plan.secret_values();
        // Processes left running for units this Plan no longer has.
        self.readopt_runs(&plan);
        let gone: Vec<String> = self
            .adoptable
            .keys()
            .filter(|k| !plan.units.contains_key(*k) && !self.units.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(a) = self.adoptable.remove(&key) {
                self.retire(&key, &a.hello, "the stack file no longer has it");
            }
        }
        // A removed job's extra runs (`NAME~runN`) go with it.
        let extra_runs: Vec<String> = self
            .units
            .keys()
            .filter(|k| {
                diff.remove
                    .iter()
                    .any(|n| k.starts_with(&format!("{n}{RUN}")))
            })
            .cloned()
            .collect();
        for name in diff.remove.iter().chain(&extra_runs) {
            if let Some(rt) = self.units.get_mut(name) {
                if rt.intent == Intent::Start {
                    rt.intent = Intent::Idle;
                }
                rt.after_stop = AfterStop::Remove;
            }
            self.feed(name, Input::Stop, now);
        }
        report.removed.extend(diff.remove.iter().cloned());
        for r in &diff.restart {
            let Some(unit) = plan.units.get(&r.unit) else {
                continue;
            };
            if unit.job.is_some() {
                // A job's next run takes the new definition; a run under way finishes.
                if let Some(rt) = self.units.get_mut(&r.unit) {
                    rt.machine.update(Settings::from_unit(unit));
                    rt.unit = unit.clone();
                }
                report.updated.push(r.unit.clone());
                continue;
            }
            let running = self.units.get(&r.unit).is_some_and(|rt| rt.proc.is_some());
            if let Some(rt) = self.units.get_mut(&r.unit) {
                if running {
                    rt.after_stop = AfterStop::Restart(Box::new(unit.clone()));
                } else {
                    let was_wanted = rt.intent == Intent::Start
                        || !matches!(rt.machine.state(), State::Stopped | State::Completed);
                    rt.machine.update(Settings::from_unit(unit));
                    rt.unit = unit.clone();
                    if was_wanted {
                        rt.intent = Intent::Start;
                    } else if rt.intent == Intent::Start {
                        rt.intent = Intent::Idle;
                    }
                }
            }
            if running {
                self.feed(&r.unit, Input::Stop, now);
            }
            report.restarted.push((
                r.unit.clone(),
                r.reasons.iter().map(|s| s.to_string()).collect(),
            ));
        }
        let mut reprovision = Vec::new();
        for name in &diff.update {
            if let (Some(rt), Some(unit)) = (self.units.get_mut(name), plan.units.get(name)) {
                rt.machine.update(Settings::from_unit(unit));
                if rt.unit.run != unit.run && rt.proc.is_some() {
                    reprovision.push(name.clone());
                }
                rt.unit = unit.clone();
                report.updated.push(name.clone());
            }
        }
        // Units the operator stopped (or left out of `grove up SERVICE...`) stay stopped.
        let held = self.held();
        for name in &diff.add {
            let Some(unit) = plan.units.get(name) else {
                continue;
            };
            let mut rt = self.fresh_rt(unit);
            if held.contains(name) {
                rt.intent = Intent::Idle;
            }
            self.units.insert(name.clone(), rt);
            report.added.push(name.clone());
        }
        // Keep Plan order for display and scheduling.
        let order: HashMap<&String, usize> =
            plan.units.keys().enumerate().map(|(i, k)| (k, i)).collect();
        self.units.sort_by(|a, _, b, _| {
            order
                .get(a)
                .copied()
                .unwrap_or(usize::MAX)
                .cmp(&order.get(b).copied().unwrap_or(usize::MAX))
        });
        report.kept = diff.keep.len();
        let ports = plan.ports();
        if let Ok(store) = self.store.lock() {
            if let Err(e) = store
                .set("ports", &ports)
                .and_then(|_| store.set("environment", &plan.environment))
                .and_then(|_| store.set("stack", &plan.stack))
            {
                tracing::warn!("cannot record the running stack: {e}");
            }
        }
        self.plan = Some(plan);
        // A running recipe given new roles or databases: probe it again with the new spec;
        // its dependents that wait for `healthy` wait until they exist.
        for name in reprovision {
            self.start_probe(&name);
        }
        if first {
            let env = self
                .plan
                .as_ref()
                .and_then(|p| p.environment.clone())
                .map(|e| format!(" (environment {e})"))
                .unwrap_or_default();
            let n = self.units.len();
            self.emit(None, "up", &format!("starting {n} units{env}"));
        } else {
            let (kind, what) = event.unwrap_or(("reloaded", "reloaded"));
            self.emit(None, kind, &format!("{what}: {}", report.summary()));
        }
        self.sweep_sockets();
        report
    }

    // ----- machine and actions --------------------------------------------------------------

    fn feed(&mut self, name: &str, input: Input, now: Instant) {
        let actions = match self.units.get_mut(name) {
            Some(rt) => rt.machine.handle(input, now),
            None => return,
        };
        for a in actions {
            match (a, self.recorded.as_mut()) {
                (Action::Spawn, Some(log)) => {
                    log.push(format!("spawn {name}"));
                    self.stand_in(name, now);
                }
                (Action::Kill, Some(log)) => log.push(format!("kill {name}")),
                (Action::Spawn, None) => self.spawn(name, now),
                (Action::Kill, None) => self.kill(name, now),
                (Action::Event(e), _) => self.machine_event(name, e),
            }
        }
    }

    /// A process that is not there, for a recorded spawn: the unit runs as far as the actor
    /// can tell, until the test reports its exit.
    fn stand_in(&mut self, name: &str, now: Instant) {
        self.last_gen += 1;
        let gen = self.last_gen;
        let Some(rt) = self.units.get_mut(name) else {
            return;
        };
        rt.gen = gen;
        rt.proc = Some(Proc {
            pid: 0,
            started: now,
            start_ticks: 0,
            group: None,
            control: None,
            kill_at: None,
            provisioning: false,
        });
        self.feed(name, Input::Spawned, now);
    }

    fn machine_event(&mut self, name: &str, e: Event) {
        let (kind, message) = match &e {
            Event::Started => {
                let pid = self
                    .units
                    .get(name)
                    .and_then(|rt| rt.proc.as_ref().map(|p| p.pid))
                    .unwrap_or(0);
                ("started", format!("started (pid {pid})"))
            }
            Event::Adopted => {
                let (pid, age) = self
                    .units
                    .get(name)
                    .and_then(|rt| rt.proc.as_ref())
                    .map(|p| (p.pid, p.started.elapsed().as_secs()))
                    .unwrap_or((0, 0));
                (
                    "adopted",
                    format!("adopted (pid {pid}, running for {age} s, left by an earlier grove)"),
                )
            }
            Event::Exited { status } => {
                let note = self.units.get_mut(name).and_then(|rt| rt.exit_note.take());
                ("exited", note.unwrap_or_else(|| describe_exit(status)))
            }
            Event::Healthy => {
                let probe = self
                    .units
                    .get(name)
                    .and_then(|rt| self.describe_probe(&rt.unit))
                    .unwrap_or_default();
                ("healthy", format!("healthy ({probe})"))
            }
            Event::Unhealthy { failures } => {
                let why = self
                    .units
                    .get(name)
                    .and_then(|rt| rt.last_probe_error.clone())
                    .unwrap_or_default();
                (
                    "unhealthy",
                    format!("unhealthy after {failures} failed probes: {why}"),
                )
            }
            Event::Healed => ("healed", "restarting it to heal it (autoheal)".to_string()),
            Event::Restarting { delay_ms, attempt } => (
                "restarting",
                if *delay_ms == 0 {
                    format!("restarting now (restart {attempt} in a row)")
                } else {
                    format!("restarting in {delay_ms} ms (restart {attempt} in a row)")
                },
            ),
            Event::GaveUp { restarts } => (
                "gave-up",
                format!(
                    "gave up after {restarts} quick restarts; `grove start {name}` tries again"
                ),
            ),
            Event::Completed => ("completed", "completed (exit code 0)".to_string()),
            Event::Stopped => ("stopped", "stopped".to_string()),
        };
        self.emit(Some(name), kind, &message);
    }

    /// The unit's probe in words: `http GET 127.0.0.1:8000/health`, `pg_isready 127.0.0.1:5432`.
    fn describe_probe(&self, unit: &Unit) -> Option<String> {
        let h = unit.health.as_ref()?;
        let plan = self.plan.as_ref()?;
        Some(
            match grove_recipes::Server::of(&plan.stack, &plan.root, unit) {
                Some(s) if h.check == grove_plan::ProbeCheck::Recipe => grove_recipes::describe(&s),
                _ => probe::describe(&h.check),
            },
        )
    }

    /// Starts (or restarts) the probe loop of a running unit, with its current definition.
    fn start_probe(&mut self, name: &str) {
        let Some(plan) = &self.plan else {
            return;
        };
        let root = plan.root.clone();
        let stack = plan.stack.clone();
        let Some(rt) = self.units.get_mut(name) else {
            return;
        };
        if let Some(p) = rt.probe.take() {
            p.abort();
        }
        let Some(h) = rt.unit.health.clone() else {
            return;
        };
        let server = grove_recipes::Server::of(&stack, &root, &rt.unit);
        if let Some(p) = rt.proc.as_mut() {
            p.provisioning = server.is_some();
        }
        let env: Vec<(String, String)> = rt
            .unit
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        let task = tokio::spawn(probe_loop(
            name.to_string(),
            rt.gen,
            h,
            server,
            root.join(&rt.unit.cwd),
            env,
            self.internal.clone(),
        ));
        rt.probe = Some(task.abort_handle());
    }

    fn kill(&mut self, name: &str, now: Instant) {
        let Some(rt) = self.units.get_mut(name) else {
            return;
        };
        let sig = process::parse_signal(&rt.unit.stop_signal).unwrap_or(Signal::SIGTERM);
        let grace = Duration::from_millis(rt.unit.stop_grace_ms);
        let Some(p) = rt.proc.as_mut() else {
            return;
        };
        // Never pid 0 or below: that would signal grove's own group, or every process.
        if p.pid <= 0 {
            return;
        }
        if let Err(e) = process::signal_group(p.pid, sig) {
            tracing::warn!("cannot signal {name}: {e}");
        }
        if let Some(g) = &p.group {
            g.signal_escaped(p.pid, sig);
        }
        p.kill_at = Some(now + grace);
        self.stopping_socket(name);
    }

    fn timers(&mut self, now: Instant) {
        let names: Vec<String> = self.units.keys().cloned().collect();
        for name in names {
            let (kill_due, tick_due, grace, drained) = match self.units.get(&name) {
                Some(rt) => (
                    rt.proc
                        .as_ref()
                        .and_then(|p| p.kill_at)
                        .is_some_and(|t| t <= now),
                    rt.machine.deadline().is_some_and(|t| t <= now),
                    rt.unit.stop_grace_ms,
                    rt.intent.drain_until().is_some_and(|t| t <= now),
                ),
                None => continue,
            };
            if drained {
                if let Some(rt) = self.units.get_mut(&name) {
                    rt.intent = Intent::Idle;
                }
                self.emit(Some(&name), "drained", "drain time over: stopping it");
                self.feed(&name, Input::Stop, now);
            }
            if kill_due {
                let pid = self.units.get_mut(&name).and_then(|rt| {
                    let p = rt.proc.as_mut()?;
                    p.kill_at = None;
                    Some((p.pid, p.group.clone()))
                });
                if let Some((pid, group)) = pid {
                    let _ = process::signal_group(pid, Signal::SIGKILL);
                    if let Some(g) = group {
                        g.kill();
                    }
                    self.emit(
                        Some(&name),
                        "killed",
                        &format!("still running {grace} ms after the stop signal: sent SIGKILL"),
                    );
                }
            }
            if tick_due {
                self.feed(&name, Input::Tick, now);
            }
        }
    }

    // ----- reports from helpers -------------------------------------------------------------

    /// The unit whose current process is spawn `gen` (reported under `unit`, its key then;
    /// a deploy's switch may have renamed it since).
    fn key_of(&self, unit: &str, gen: u64) -> Option<String> {
        if self.units.get(unit).is_some_and(|rt| rt.gen == gen) {
            return Some(unit.to_string());
        }
        self.units
            .iter()
            .find(|(_, rt)| rt.gen == gen)
            .map(|(k, _)| k.clone())
    }

    fn internal(&mut self, msg: Internal, now: Instant) {
        match msg {
            Internal::Exited {
                unit,
                gen,
                status,
                oom,
            } => {
                let Some(unit) = self.key_of(&unit, gen) else {
                    return;
                };
                let Some(rt) = self.units.get_mut(&unit) else {
                    return;
                };
                rt.proc = None;
                rt.cpu_sample = None;
                rt.exit_note = oom.map(|limit| {
                    format!(
                        "killed: out of memory (limit {})",
                        grove_plan::size_text(limit)
                    )
                });
                if let Some(p) = rt.probe.take() {
                    p.abort();
                }
                if let Ok(store) = self.store.lock() {
                    let _ = store.forget_process(&unit);
                }
                self.feed(&unit, Input::Exited(status), now);
                let replace = self.units.get_mut(&unit).and_then(|rt| {
                    let idle = rt.proc.is_none()
                        && !matches!(rt.machine.state(), State::Backoff { .. } | State::Starting);
                    if !idle {
                        return None;
                    }
                    match std::mem::replace(&mut rt.after_stop, AfterStop::Stay) {
                        AfterStop::Restart(def) => Some(*def),
                        other => {
                            rt.after_stop = other;
                            None
                        }
                    }
                });
                if let Some(def) = replace {
                    if let Some(rt) = self.units.get_mut(&unit) {
                        rt.machine.update(Settings::from_unit(&def));
                        rt.unit = def;
                        rt.intent = Intent::Start;
                    }
                }
                self.exited_socket(&unit);
            }
            Internal::OutputLost { unit, bytes } => {
                let note = format!(
                    "{bytes} bytes of output lost to a full disk (no space left on device)"
                );
                for rt in self.units.values_mut() {
                    if *rt.unit.name == *unit {
                        rt.note = Some(note.clone());
                    }
                }
                self.emit(Some(&unit), "output-lost", &note);
            }
            Internal::Probe { unit, gen, result } => {
                let Some(unit) = self.key_of(&unit, gen) else {
                    return;
                };
                let Some(rt) = self.units.get_mut(&unit) else {
                    return;
                };
                if rt.proc.is_none() {
                    return;
                }
                let ok = result.is_ok();
                let provisioned = ok && rt.provisioning();
                if let (true, Some(p)) = (ok, rt.proc.as_mut()) {
                    p.provisioning = false;
                }
                if let Err(e) = result {
                    rt.last_probe_error = Some(e);
                }
                let created = match &rt.unit.run {
                    Run::Recipe { spec, .. } if provisioned => Some(
                        spec.databases
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    _ => None,
                };
                self.feed(&unit, Input::Probe(ok), now);
                if let Some(names) = created.filter(|n| !n.is_empty()) {
                    self.emit(
                        Some(&unit),
                        "provisioned",
                        &format!("roles and databases in place: {names}"),
                    );
                }
            }
        }
    }

    // ----- events and status ----------------------------------------------------------------

    fn emit(&mut self, unit: Option<&str>, kind: &str, message: &str) {
        let message = grove_plan::scrub(message, &self.secrets);
        let record = match self.store.lock() {
            Ok(store) => store.append(unit, kind, &message),
            Err(_) => {
                tracing::error!("state store lock poisoned");
                return;
            }
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot record event: {e}");
                EventRecord {
                    id: 0,
                    ts_ms: grove_state::now_ms(),
                    unit: unit.map(str::to_string),
                    kind: kind.to_string(),
                    message: message.clone(),
                }
            }
        };
        tracing::info!(unit = unit.unwrap_or("-"), kind, "{message}");
        if let Some(u) = unit {
            if let Some(log) = self.units.get(u).and_then(|rt| rt.log.clone()) {
                if let Ok(mut f) = log.lock() {
                    let _ = f.line("grove", message.as_bytes());
                }
            }
            let _ = self.lines.send(LogLine {
                unit: Arc::from(u),
                stream: "grove",
                text: message.clone(),
            });
        }
        let _ = self.events.send(record);
    }
}

mod deploy;
mod io;
mod listen;
mod report;
mod schedule;
mod spawn;

pub(crate) use io::state_dir;
pub use io::{describe_exit, reap_leftovers};
use io::{fingerprint, probe_loop, sleep_until, state_label};
#[cfg(test)]
mod tests;
