//! Deploy's daemon side: switching the running stack to a release. Stage the changed units
//! of the new release beside the running ones (fresh ports), gate on their readiness, promote
//! them (the edge swaps its table), drain and stop the old generation. A failed step discards
//! what was staged and leaves the running release serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_api::{DeployReport, DeployRequest};
use grove_config::Stack;
use grove_engine::{EngineHandle, UnitKind, UnitState, NEXT, OLD};
use grove_plan::{Plan, ReleaseInput};
use grove_state::Store;

use crate::{inputs, Loader};

/// The longest a reload's replaced units keep serving the requests they have before their
/// stop signal; they stop as soon as the edge has none in flight to them.
pub(crate) const RELOAD_DRAIN: Duration = Duration::from_secs(30);

/// How long a drain waits before it looks: a request that chose a unit an instant before the
/// switch is counted by then.
const DRAIN_SETTLE: Duration = Duration::from_millis(50);

/// What the daemon's deployer needs.
#[derive(Clone)]
pub(crate) struct Switcher {
    /// Re-reads the stack file.
    pub load: Loader,
    pub env: Option<String>,
    pub engine: EngineHandle,
    /// Called with each Plan once it runs (the edge swaps its table, remote probes follow).
    pub applied: Arc<dyn Fn(&Plan) + Send + Sync>,
    pub store: Arc<Mutex<Store>>,
    pub logs_dir: PathBuf,
    /// The edge, for what each unit still serves.
    pub edge: grove_edge::Edge,
    /// The stack the running Plan was built from: `restart` builds a unit's fresh port from
    /// it, so a stack file edited since is not applied by a restart.
    pub running: Arc<Mutex<Stack>>,
    /// The stack a reload in progress loaded, until its Plan runs.
    pub pending: Arc<Mutex<Option<Stack>>>,
}

impl Switcher {
    /// The API's deployer.
    pub(crate) fn into_deployer(self) -> grove_api::Deployer {
        Arc::new(move |req: DeployRequest| {
            let me = self.clone();
            Box::pin(async move { me.switch(req).await })
        })
    }

    /// Waits until the edge has no request in flight to any of `units` (as `plan` has them),
    /// at most `max`; returns how long that took.
    pub(crate) async fn drained(&self, plan: &Plan, units: &[String], max: Duration) -> Duration {
        let start = Instant::now();
        let authorities: Vec<String> = units
            .iter()
            .filter_map(|n| plan.units.get(n))
            .filter_map(grove_edge::unit_authority)
            .collect();
        tokio::time::sleep(DRAIN_SETTLE).await;
        while start.elapsed() < max && authorities.iter().any(|a| self.edge.in_flight(a) > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }

    /// Stops the old generation of `names` (`NAME~old`) once the edge has no request in
    /// flight to them (at most `max`), rather than after a fixed time.
    pub(crate) async fn retire_old(
        &self,
        current: &Plan,
        names: &[String],
        max: Duration,
    ) -> Duration {
        let olds: Vec<String> = names
            .iter()
            .filter(|n| current.units.contains_key(*n))
            .cloned()
            .collect();
        if olds.is_empty() {
            return Duration::ZERO;
        }
        let took = self.drained(current, &olds, max).await;
        if let Ok(status) = self.engine.status().await {
            let keys: Vec<String> = status
                .units
                .iter()
                .filter(|u| {
                    olds.iter()
                        .any(|n| u.name.starts_with(&format!("{n}{OLD}")))
                })
                .map(|u| u.name.clone())
                .collect();
            for k in &keys {
                self.engine.record(
                    Some(k),
                    "drained",
                    &format!(
                        "no request in flight after {} ms: stopping it",
                        took.as_millis()
                    ),
                );
            }
            if !keys.is_empty() {
                let _ = self.engine.stop_units(keys).await;
            }
        }
        took
    }

    /// Waits until the old generation of `olds` (`NAME~old`) has stopped: at most `drain`,
    /// their longest stop grace and ten seconds more.
    pub(crate) async fn until_old_gone(&self, current: &Plan, olds: &[String], drain: Duration) {
        let grace = current
            .units
            .values()
            .filter(|u| olds.contains(&u.name))
            .map(|u| u.stop_grace_ms)
            .max()
            .unwrap_or(0);
        let limit = drain + Duration::from_millis(grace) + Duration::from_secs(10);
        let start = Instant::now();
        while start.elapsed() < limit {
            let Ok(status) = self.engine.status().await else {
                return;
            };
            let draining = status.units.iter().any(|u| {
                olds.iter()
                    .any(|n| u.name.starts_with(&format!("{n}{OLD}")))
            });
            if !draining {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stack the running Plan now comes from.
    pub(crate) fn set_running(&self, stack: Stack) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = stack;
    }

    fn record(&self, kind: &str, message: &str) {
        self.engine.record(None, kind, message);
    }

    fn outcome(&self, req: &DeployRequest, outcome: &str, message: &str) {
        if let Ok(store) = self.store.lock() {
            if !req.rollback {
                let _ = store.set_release_outcome(&req.release, outcome, message);
            }
            if outcome == "deployed" {
                let _ = store.set_live_release(Some(&req.release));
            }
        }
    }

    async fn switch(&self, req: DeployRequest) -> Result<DeployReport, String> {
        match self.try_switch(&req).await {
            Ok(r) => Ok(r),
            Err(why) => {
                // Events and the releases table get the first line; the command gets it all.
                let first = why.lines().next().unwrap_or_default();
                self.record(
                    "deploy-failed",
                    &format!(
                        "release {}: {first}; the running release keeps serving",
                        req.release
                    ),
                );
                self.outcome(&req, "failed", first);
                Err(why)
            }
        }
    }

    async fn try_switch(&self, req: &DeployRequest) -> Result<DeployReport, String> {
        let gone = |_| "switch: grove is shutting down".to_string();
        let stack = (self.load)(self.env.clone())
            .map_err(|text| format!("plan: the stack file does not load:\n{text}"))?;
        let stack = &stack;
        let settings = stack
            .deploy
            .clone()
            .ok_or_else(|| "plan: the stack file has no [deploy] section".to_string())?;
        if !req.dir.is_dir() {
            return Err(format!("plan: {} is not a folder", req.dir.display()));
        }
        let current = self.engine.plan().await.map_err(gone)?;
        let release = ReleaseInput {
            id: req.release.clone(),
            dir: req.dir.clone(),
        };
        let plan_err = |e: inputs::InputsError| format!("plan: {e}");
        // The release's Plan with the serving ports, to see what it changes; then again with
        // fresh ports for the new generation (the serving one keeps its own).
        let nothing = grove_plan::Staging::default();
        let first = inputs::staged_plan(stack, &current, &nothing, Some(release.clone()))
            .map_err(plan_err)?;
        let staging = grove_plan::staging(&current, &first, &settings.before_switch);
        let plan =
            inputs::staged_plan(stack, &current, &staging, Some(release)).map_err(plan_err)?;
        let mut stage = staging.stage;
        let in_place = grove_plan::split_in_place(&current, &plan, &mut stage);
        inputs::recipes_installed(&plan).map_err(|e| format!("plan: {e}"))?;
        let mut steps = Vec::new();
        let keys = self
            .engine
            .stage(&plan, stage.clone())
            .await
            .map_err(gone)?
            .map_err(|e| format!("stage: {e}"))?;
        if !keys.is_empty() {
            let what = format!(
                "release {}: started {} beside the running units",
                req.release,
                keys.join(", ")
            );
            self.record("deploy", &what);
            steps.push(what);
        }
        let secrets = plan.secret_values();
        if let Err(why) = self.gate(&keys, settings.health_timeout, &secrets).await {
            let _ = self.engine.discard(stage.clone()).await;
            return Err(format!("health gate: {why}"));
        }
        if !keys.is_empty() {
            let what = format!("release {}: new units ready", req.release);
            self.record("deploy", &what);
            steps.push(what);
        }
        let applied = self
            .engine
            .promote(plan.clone(), stage.clone(), settings.drain)
            .await
            .map_err(gone)?;
        (self.applied)(&plan);
        self.set_running(stack.clone());
        self.outcome(req, "deployed", "");
        let what = format!("release {}: routes switched to the new units", req.release);
        self.record("deployed", &what);
        steps.push(what);
        if !in_place.is_empty() {
            steps.push(format!(
                "restarted in place (a fixed port cannot run twice): {}",
                in_place.join(", ")
            ));
        }
        // The old generation drains (until the edge has nothing in flight to it, at most
        // `drain`), then stops; answer once it is gone.
        let olds: Vec<String> = stage
            .iter()
            .filter(|n| current.units.contains_key(*n))
            .cloned()
            .collect();
        let drained_in = self.retire_old(&current, &stage, settings.drain).await;
        if !olds.is_empty() {
            self.until_old_gone(&current, &olds, settings.drain).await;
            steps.push(format!(
                "old generation drained in {} ms and stopped",
                drained_in.as_millis()
            ));
        }
        Ok(DeployReport {
            release: req.release.clone(),
            staged: stage,
            in_place,
            applied,
            steps,
        })
    }

    /// Waits until every staged unit is ready: a task completed, a service healthy (or, without
    /// a probe, running for a second). A failure, an exit or the timeout ends it with why.
    pub(crate) async fn gate(
        &self,
        keys: &[String],
        timeout: Duration,
        secrets: &[String],
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let status = self
                .engine
                .status()
                .await
                .map_err(|_| "grove is shutting down".to_string())?;
            let mut waiting = Vec::new();
            for key in keys {
                let Some(u) = status.units.iter().find(|u| &u.name == key) else {
                    return Err(format!("{key} is gone"));
                };
                let name = key.trim_end_matches(NEXT);
                let ready = match (u.kind, u.health.is_some()) {
                    (UnitKind::Task, _) => u.state == UnitState::Completed,
                    (_, true) => u.state == UnitState::Healthy,
                    (_, false) => u.state == UnitState::Running && u.uptime_ms.unwrap_or(0) >= 1000,
                };
                if ready {
                    continue;
                }
                let crashed = u.kind == UnitKind::Service
                    && (u.restarts > 0 || u.state == UnitState::Backoff);
                if u.is_failed() || crashed {
                    // A crash's cause is its exit; a probe error seen before it would hide it.
                    let why = match (&u.reason, u.is_failed()) {
                        (Some(r), true) => format!("{key} failed: {r}"),
                        _ => format!("{key} {}", self.last_exit(key)),
                    };
                    return Err(format!("{why}{}", self.last_lines(name, secrets)));
                }
                waiting.push(u);
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let names: Vec<String> = waiting
                    .iter()
                    .map(|u| match &u.reason {
                        Some(r) => format!("{} ({}: {r})", u.name, u.state),
                        None => format!("{} ({})", u.name, u.state),
                    })
                    .collect();
                return Err(format!(
                    "not ready within {}: {}",
                    humantime::format_duration(timeout),
                    names.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How a unit last failed, from its events: `exited with code 3`, `unhealthy after 3
    /// failed probes: ...`.
    fn last_exit(&self, key: &str) -> String {
        let events = match self.store.lock() {
            Ok(store) => store
                .last_events(20, &[key.to_string()])
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let newest: Vec<&grove_state::EventRecord> = events.iter().rev().collect();
        let Some(at) = newest
            .iter()
            .position(|e| matches!(e.kind.as_str(), "exited" | "unhealthy" | "spawn-failed"))
        else {
            return "exited".to_string();
        };
        let last = newest[at];
        // An exit autoheal caused says why autoheal acted: the probe's failures.
        let healed = newest[at + 1..].iter().take(3).any(|e| e.kind == "healed");
        let unhealthy = newest[at + 1..]
            .iter()
            .take(4)
            .find(|e| e.kind == "unhealthy");
        match (last.kind.as_str(), healed, unhealthy) {
            ("exited", true, Some(u)) => format!(
                "was {}; autoheal restarted it ({})",
                u.message, last.message
            ),
            _ => last.message.clone(),
        }
    }

    /// `\n` and the last lines of a unit's log, indented and scrubbed, or nothing.
    fn last_lines(&self, unit: &str, secrets: &[String]) -> String {
        let lines = grove_supervisor::logs::tail(&self.logs_dir.join(format!("{unit}.log")), 10)
            .unwrap_or_default();
        if lines.is_empty() {
            return String::new();
        }
        let mut out = format!("\nlast lines of {unit}'s log:");
        for l in lines {
            out.push_str("\n  ");
            out.push_str(&grove_plan::scrub(&l, secrets));
        }
        out
    }
}
