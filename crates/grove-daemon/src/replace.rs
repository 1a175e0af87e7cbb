//! Reload's and restart's start-first replacements: a routed unit that must restart gets a
//! new unit beside it on a fresh port, traffic moves once that one is ready, and the old one
//! drains (until the edge has nothing in flight to it) and stops. Replicas go one at a time
//! ([`grove_plan::rolling`]), so a service never has fewer ready units than when it began.
//! The decisions (what is staged, in which steps) are the Plan's; this module runs them.

use std::time::{Duration, Instant};

use grove_api::{ActError, Acted, ReloadError};
use grove_config::Stack;
use grove_engine::{ApplyReport, UnitState};
use grove_plan::Plan;

use crate::inputs;
use crate::switch::{Switcher, RELOAD_DRAIN};

/// The health gate's limit when the stack file's `[deploy]` does not set one.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a start-first step did not complete.
enum StepError {
    /// The engine is gone.
    Gone,
    /// The new units never got ready (or could not be staged); they were discarded.
    NotReady(String),
}

/// How long a replacement waits for its new units to be ready.
fn ready_timeout(stack: &Stack) -> Duration {
    stack
        .deploy
        .as_ref()
        .map(|d| d.health_timeout)
        .unwrap_or(DEFAULT_READY_TIMEOUT)
}

impl Switcher {
    /// One start-first step: stages `names` of `plan` beside the running units, waits until
    /// they are ready, promotes them (`plan` becomes the running Plan and the edge's table),
    /// then drains and stops the units they replace. New units that never get ready are
    /// discarded, and `serving` runs on.
    async fn step(
        &self,
        serving: &Plan,
        plan: &Plan,
        names: &[String],
        timeout: Duration,
    ) -> Result<ApplyReport, StepError> {
        let keys = self
            .engine
            .stage(plan, names.to_vec())
            .await
            .map_err(|_| StepError::Gone)?
            .map_err(StepError::NotReady)?;
        if let Err(why) = self.gate(&keys, timeout, &plan.secret_values()).await {
            let _ = self.engine.discard(names.to_vec()).await;
            return Err(StepError::NotReady(why));
        }
        let report = self
            .engine
            .promote(plan.clone(), names.to_vec(), RELOAD_DRAIN)
            .await
            .map_err(|_| StepError::Gone)?;
        (self.applied)(plan);
        self.retire_old(serving, names, RELOAD_DRAIN).await;
        // The next step starts only once this one's old units are gone: one more unit than
        // the service had, at most.
        let olds: Vec<String> = names
            .iter()
            .filter(|n| serving.units.contains_key(*n))
            .cloned()
            .collect();
        self.until_old_gone(serving, &olds, RELOAD_DRAIN).await;
        Ok(report)
    }

    /// The stack a reload loaded (kept by the reloader), or the file read again.
    fn reloaded_stack(&self) -> Result<Stack, ReloadError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match pending {
            Some(stack) => Ok(stack),
            None => (self.load)(self.env.clone()).map_err(ReloadError::Refused),
        }
    }

    /// Applies a reloaded Plan: the routed services that restart or are added start beside
    /// the running units on fresh ports, one replica at a time, traffic moves once each is
    /// ready, and the old one drains and stops (start-first, as a deploy); the rest of the
    /// difference is applied as before. A new unit that never gets ready is discarded and the
    /// reload is refused, with the running units serving on.
    pub(crate) async fn replace(
        &self,
        current: Plan,
        next: Plan,
    ) -> Result<ApplyReport, ReloadError> {
        let gone = |_| ReloadError::Gone;
        let refused = |why: String| ReloadError::Refused(format!("grove: reload: {why}"));
        let stack = self.reloaded_stack()?;
        let staging = grove_plan::reload_staging(&current, &next);
        // What changed, for the report (the staged Plan differs in its ports too).
        let diff = Plan::diff(&current, &next);
        let (plan, stage) = if staging.stage.is_empty() {
            (next, Vec::new())
        } else {
            // The staged units get fresh ports: the Plan again, the serving ports avoided.
            let plan = inputs::staged_plan(&stack, &current, &staging, None)
                .map_err(|e| refused(e.to_string()))?;
            let mut stage = staging.stage;
            grove_plan::split_in_place(&current, &plan, &mut stage);
            (plan, stage)
        };
        if stage.is_empty() {
            // Routed replicas that go (a smaller replica count) leave the route first and
            // stop once the edge has nothing in flight to them.
            let leaving: Vec<String> = diff
                .remove
                .iter()
                .filter(|n| {
                    current
                        .units
                        .get(*n)
                        .is_some_and(|u| grove_plan::start_first(&current, u, false))
                })
                .cloned()
                .collect();
            if !leaving.is_empty() {
                (self.applied)(&plan);
                self.drained(&current, &leaving, RELOAD_DRAIN).await;
            }
            let report = self.engine.apply(plan.clone()).await.map_err(gone)?;
            (self.applied)(&plan);
            self.set_running(stack);
            return Ok(report);
        }
        let timeout = ready_timeout(&stack);
        let mut serving = current.clone();
        let mut replaced: Vec<String> = Vec::new();
        let mut report = ApplyReport::default();
        for (step_plan, names) in grove_plan::rolling(&current, &plan, &stage) {
            match self.step(&serving, &step_plan, &names, timeout).await {
                Ok(r) => report = r,
                Err(StepError::Gone) => return Err(ReloadError::Gone),
                Err(StepError::NotReady(why)) if replaced.is_empty() => {
                    return Err(refused(format!(
                        "{why}; nothing changed, the running units keep serving"
                    )));
                }
                Err(StepError::NotReady(why)) => {
                    return Err(refused(format!(
                        "{why}; {} already run the new settings, the others keep serving \
                         the old ones (reload again once it is fixed)",
                        replaced.join(", ")
                    )));
                }
            }
            replaced.extend(names);
            serving = step_plan;
        }
        self.set_running(stack);
        // The report names what the reload replaced, as a stop-first reload's would.
        for n in &stage {
            match diff.restart.iter().find(|r| &r.unit == n) {
                Some(r) => report
                    .restarted
                    .push((n.clone(), r.reasons.iter().map(|s| s.to_string()).collect())),
                None if !current.units.contains_key(n) => report.added.push(n.clone()),
                None => {}
            }
            report.kept = report.kept.saturating_sub(1);
        }
        Ok(report)
    }

    /// `grove restart`: the routed units that serve now are replaced start-first, one at a
    /// time, on fresh ports built from the stack the running Plan came from (a stack file
    /// edited since is not applied); the rest (unrouted singletons, fixed ports, units not
    /// running) restart with their stop signal, as before.
    pub(crate) async fn restart(&self, targets: Vec<String>) -> Result<Acted, ActError> {
        let current = self.engine.plan().await.map_err(|_| ActError::Gone)?;
        let Ok(names) = grove_engine::resolve(&current, &targets) else {
            // A staged or draining unit (`web~old`) is the engine's alone to name.
            let units = self
                .engine
                .restart_units(targets)
                .await
                .map_err(|_| ActError::Gone)??;
            return Ok(Acted {
                units,
                steps: Vec::new(),
            });
        };
        let status = self.engine.status().await.map_err(|_| ActError::Gone)?;
        let serving = |n: &String| {
            status
                .units
                .iter()
                .any(|u| &u.name == n && matches!(u.state, UnitState::Running | UnitState::Healthy))
        };
        let (rolling, signalled): (Vec<String>, Vec<String>) =
            names.iter().cloned().partition(|n| {
                serving(n)
                    && current
                        .units
                        .get(n)
                        .is_some_and(|u| grove_plan::start_first(&current, u, false))
            });
        let mut steps = Vec::new();
        if !signalled.is_empty() {
            self.engine
                .restart_units(signalled.clone())
                .await
                .map_err(|_| ActError::Gone)??;
        }
        if !rolling.is_empty() {
            steps = self.restart_rolling(&current, &rolling).await?;
        }
        Ok(Acted {
            units: names,
            steps,
        })
    }

    /// Replaces the running units `names` start-first, `max_surge` of a service at a time;
    /// says what it did, one line per unit.
    async fn restart_rolling(
        &self,
        current: &Plan,
        names: &[String],
    ) -> Result<Vec<String>, ActError> {
        let refused = |why: String| ActError::Refused(format!("restart: {why}"));
        let stack = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let staging = grove_plan::restart_staging(current, names);
        let next = inputs::staged_plan(&stack, current, &staging, None)
            .map_err(|e| refused(e.to_string()))?;
        // The running Plan with only these units taken from the new one.
        let mut target = current.clone();
        let mut lines = Vec::new();
        let mut moving = Vec::new();
        for n in names {
            let port = |p: &Plan| p.units.get(n).and_then(|u| u.port);
            if port(&next) == port(current) {
                // A port the stack file fixes cannot run twice: restart in place.
                self.engine
                    .restart_units(vec![n.clone()])
                    .await
                    .map_err(|_| ActError::Gone)??;
                lines.push(format!("{n}: restarted in place (its port is fixed)"));
                continue;
            }
            target = grove_plan::with_unit_of(&target, &next, n);
            moving.push(n.clone());
        }
        let timeout = ready_timeout(&stack);
        let mut serving = current.clone();
        for (plan, batch) in grove_plan::rolling(current, &target, &moving) {
            for n in &batch {
                let port = plan.units.get(n).and_then(|u| u.port).unwrap_or_default();
                self.engine.record(
                    Some(n),
                    "restarting",
                    &format!("start-first: a new {n} starts beside the running one on port {port}"),
                );
            }
            let started = Instant::now();
            match self.step(&serving, &plan, &batch, timeout).await {
                Ok(_) => {}
                Err(StepError::Gone) => return Err(ActError::Gone),
                Err(StepError::NotReady(why)) => {
                    let keeps = if batch.len() == 1 { "keeps" } else { "keep" };
                    let mut text =
                        format!("{why}; the running {} {keeps} serving", batch.join(", "));
                    if !lines.is_empty() {
                        text.push_str(&format!(" (done before: {})", lines.join("; ")));
                    }
                    return Err(refused(text));
                }
            }
            for n in &batch {
                let port = plan.units.get(n).and_then(|u| u.port).unwrap_or_default();
                lines.push(format!(
                    "{n}: a new one started beside it on port {port} and was ready in {} ms; \
                     traffic moved to it and the old one drained and stopped",
                    started.elapsed().as_millis()
                ));
            }
            serving = plan;
        }
        Ok(lines)
    }
}
