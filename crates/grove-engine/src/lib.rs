//! # grove-engine: the one apply path
//!
//! Owns the running stack: an actor task holding every unit's [`UnitMachine`], its process,
//! probe and log file. Everything that changes the machine goes through
//! [`EngineHandle::apply`] with a new Plan (startup is the diff from an empty Plan; reload is
//! the diff from the running one; a deploy stages the changed units beside the running ones
//! with [`EngineHandle::stage`], then [`EngineHandle::promote`]s them and applies the rest) or through the start/stop/restart/shutdown
//! requests. It starts units as soon as their dependencies' conditions hold (so each
//! dependency level starts in parallel), blocks dependents of a failed unit with an event,
//! stops in reverse dependency order, and records every event in the state store.
//!
//! It must not know about TOML, the CLI, the control API's transport, or HTTP routing: it gets
//! Plans, answers with plain data, and publishes events and log lines on broadcast channels.

#![forbid(unsafe_code)]

mod actor;
pub mod sockets;
mod status;
mod targets;

use std::sync::{Arc, Mutex};

use grove_plan::Plan;
use grove_state::{EventRecord, Store};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use actor::{describe_exit, reap_leftovers, HELD, NEXT, OLD, RUN};
pub use status::{
    ApplyReport, Health, LogLine, RemoteStatus, Status, UnitKind, UnitState, UnitStatus,
};
pub use targets::resolve;

/// The engine is gone (it shut down).
#[derive(Debug, thiserror::Error)]
#[error("the engine has shut down")]
pub struct Gone;

/// A request that named nothing runnable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// No unit or service has this name.
    #[error("no unit or service named `{name}`{hint}")]
    Unknown {
        /// What was asked for.
        name: String,
        /// ", did you mean ...?" or empty.
        hint: String,
    },
}

pub(crate) enum Request {
    Status(oneshot::Sender<Status>),
    Plan(oneshot::Sender<Plan>),
    Apply(Box<Plan>, oneshot::Sender<ApplyReport>),
    Start(
        Vec<String>,
        oneshot::Sender<Result<Vec<String>, TargetError>>,
    ),
    Stop(
        Vec<String>,
        oneshot::Sender<Result<Vec<String>, TargetError>>,
    ),
    Restart(
        Vec<String>,
        oneshot::Sender<Result<Vec<String>, TargetError>>,
    ),
    Shutdown(oneshot::Sender<()>),
    Detach(oneshot::Sender<()>),
    Stage(
        Box<Plan>,
        Vec<String>,
        oneshot::Sender<Result<Vec<String>, String>>,
    ),
    Promote {
        plan: Box<Plan>,
        names: Vec<String>,
        drain: std::time::Duration,
        reply: oneshot::Sender<ApplyReport>,
    },
    Discard(Vec<String>, oneshot::Sender<()>),
    RunCopy(String, oneshot::Sender<Result<String, String>>),
    Record {
        unit: Option<String>,
        kind: String,
        message: String,
    },
    Remote(RemoteStatus),
}

/// A cheap, cloneable handle on the running engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<EventRecord>,
    lines: broadcast::Sender<LogLine>,
}

/// Starts the engine with nothing running; [`EngineHandle::apply`] the first Plan to bring
/// the stack up. Must be called inside a multi-threaded tokio runtime.
pub fn start(store: Store) -> EngineHandle {
    start_adopting(store, Vec::new())
}

/// [`start`], adopting the units an earlier grove left running (found by
/// [`grove_supervisor::shim::discover`]): each is supervised again, without a restart, when
/// the first Plan still defines its unit the same way; the others are stopped.
pub fn start_adopting(store: Store, found: Vec<grove_supervisor::shim::Attached>) -> EngineHandle {
    start_with(store, found, Arc::default())
}

/// [`start_adopting`], with the registry of the socket-activated units' sockets (seeded
/// with those a holder kept from the last grove), which the caller hands to its holder.
pub fn start_with(
    store: Store,
    found: Vec<grove_supervisor::shim::Attached>,
    sockets: Arc<sockets::UnitSockets>,
) -> EngineHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let (lines, _) = broadcast::channel(4096);
    let actor = actor::Actor::new(Arc::new(Mutex::new(store)), events.clone(), lines.clone())
        .adopting(found)
        .with_sockets(sockets);
    tokio::spawn(actor.run(rx));
    EngineHandle { tx, events, lines }
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Gone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// Every unit's state now.
    pub async fn status(&self) -> Result<Status, Gone> {
        self.ask(Request::Status).await
    }

    /// The running Plan (with secrets; redact before showing it).
    pub async fn plan(&self) -> Result<Plan, Gone> {
        self.ask(Request::Plan).await
    }

    /// Converges to `plan`: starts added units, stops removed ones, restarts changed ones,
    /// updates settings of the rest. Returns at once with what it will do.
    pub async fn apply(&self, plan: Plan) -> Result<ApplyReport, Gone> {
        self.ask(|tx| Request::Apply(Box::new(plan), tx)).await
    }

    /// Starts units or services (and lets blocked ones try again).
    pub async fn start_units(
        &self,
        targets: Vec<String>,
    ) -> Result<Result<Vec<String>, TargetError>, Gone> {
        self.ask(|tx| Request::Start(targets, tx)).await
    }

    /// Stops units or services (they stay stopped until started).
    pub async fn stop_units(
        &self,
        targets: Vec<String>,
    ) -> Result<Result<Vec<String>, TargetError>, Gone> {
        self.ask(|tx| Request::Stop(targets, tx)).await
    }

    /// Restarts units or services.
    pub async fn restart_units(
        &self,
        targets: Vec<String>,
    ) -> Result<Result<Vec<String>, TargetError>, Gone> {
        self.ask(|tx| Request::Restart(targets, tx)).await
    }

    /// A deploy's first step: starts the units `names` of `plan` beside the running ones,
    /// as `NAME~next` (on the new Plan's ports), each once its dependencies allow. Their
    /// progress shows in [`EngineHandle::status`] under those keys.
    pub async fn stage(
        &self,
        plan: &Plan,
        names: Vec<String>,
    ) -> Result<Result<Vec<String>, String>, Gone> {
        let plan = Box::new(plan.clone());
        self.ask(|tx| Request::Stage(plan, names, tx)).await
    }

    /// A deploy's switch: every staged `NAME~next` takes the name `NAME`, the unit it
    /// replaces becomes `NAME~old` and stops after `drain`, and the rest of `plan` is applied
    /// as a reload. Swap the edge's routes right after.
    pub async fn promote(
        &self,
        plan: Plan,
        names: Vec<String>,
        drain: std::time::Duration,
    ) -> Result<ApplyReport, Gone> {
        self.ask(|reply| Request::Promote {
            plan: Box::new(plan),
            names,
            drain,
            reply,
        })
        .await
    }

    /// Starts one more run of the job `name` beside the one still running (`concurrency =
    /// "allow"`), as `NAME~run2` (the next free number): supervised like the job, stopped by
    /// `grove stop NAME`, forgotten once it has ended. Returns its key.
    pub async fn run_copy(&self, name: &str) -> Result<Result<String, String>, Gone> {
        let name = name.to_string();
        self.ask(|tx| Request::RunCopy(name, tx)).await
    }

    /// Stops and forgets the staged units of `names` (a deploy given up before its switch).
    pub async fn discard(&self, names: Vec<String>) -> Result<(), Gone> {
        self.ask(|tx| Request::Discard(names, tx)).await
    }

    /// Stops everything in reverse dependency order; returns when every process is gone and
    /// the engine has ended.
    pub async fn shutdown(&self) -> Result<(), Gone> {
        self.ask(Request::Shutdown).await
    }

    /// Lets go of every unit without stopping one (a handover to the next grove, which adopts
    /// them): no probe, restart or stop from this engine any more; it ends.
    pub async fn detach(&self) -> Result<(), Gone> {
        self.ask(Request::Detach).await
    }

    /// Records an event from another part of grove (the edge's certificates, say) in the same
    /// log as the units' events; secrets are scrubbed from the message as for any event.
    pub fn record(&self, unit: Option<&str>, kind: &str, message: &str) {
        let _ = self.tx.send(Request::Record {
            unit: unit.map(str::to_string),
            kind: kind.to_string(),
            message: message.to_string(),
        });
    }

    /// What the active health check of a remote target found (shown by `ps`); a change of
    /// health is also an event, which the caller records.
    pub fn remote_seen(&self, status: RemoteStatus) {
        let _ = self.tx.send(Request::Remote(status));
    }

    /// Events as they are recorded.
    pub fn subscribe_events(&self) -> broadcast::Receiver<EventRecord> {
        self.events.subscribe()
    }

    /// Units' output lines as they are written (lagging receivers lose lines; the log files
    /// keep everything).
    pub fn subscribe_lines(&self) -> broadcast::Receiver<LogLine> {
        self.lines.subscribe()
    }
}
