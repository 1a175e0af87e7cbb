//! Scheduling on the actor: which wanted units may start now, given their dependencies'
//! conditions (started, healthy, completed), and which are blocked by a failure.

use std::time::Instant;

use grove_plan::{Condition, ServiceKind};
use grove_supervisor::{Input, State};

use super::{Actor, AfterStop, Intent, NEXT, RUN};

/// Whether a wanted unit may start now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Deps {
    /// Every dependency allows it.
    Ready,
    /// A dependency is on its way (starting, not healthy yet).
    Wait,
    /// A dependency failed or is stopped, so it never will be (why).
    Blocked(String),
}

/// What the scheduler sees of a dependency.
pub(super) struct DepView<'a> {
    /// Why it is blocked itself, if it is.
    pub blocked: Option<&'a str>,
    pub state: &'a State,
    /// It has a process.
    pub running: bool,
    /// It has a health probe.
    pub probed: bool,
    pub task: bool,
    /// A recipe server still creating its roles and databases.
    pub provisioning: bool,
    /// No process, and none about to start or restart.
    pub idle: bool,
}

/// What dependency `name` (seen as `dep`) says about a unit waiting for it under
/// `condition`: `None` when it allows the start, else wait or blocked (with why). The
/// scheduler's one decision, without processes.
pub(super) fn dep_verdict(name: &str, dep: &DepView<'_>, condition: Condition) -> Option<Deps> {
    if let Some(why) = dep.blocked {
        return Some(Deps::Blocked(format!("{name} is blocked ({why})")));
    }
    let state = dep.state;
    let ok = match condition {
        Condition::Started => dep.running || matches!(state, State::Completed),
        Condition::Healthy => {
            (matches!(state, State::Healthy) && !dep.provisioning)
                || (!dep.probed && matches!(state, State::Running))
                || (dep.task && matches!(state, State::Completed))
        }
        Condition::Completed => matches!(state, State::Completed),
    };
    if ok {
        return None;
    }
    if let State::Failed { reason } = state {
        return Some(Deps::Blocked(format!("{name} failed: {reason}")));
    }
    if dep.idle && matches!(state, State::Stopped | State::Completed) {
        return Some(Deps::Blocked(format!("{name} is stopped")));
    }
    Some(Deps::Wait)
}

/// Whether a job's extra run (`NAME~runN`) is over: nothing more is asked of it (`idle`) and
/// its process has ended for good (no restart is coming).
pub(super) fn ended(idle: bool, state: &State) -> bool {
    idle && matches!(
        state,
        State::Completed | State::Failed { .. } | State::Stopped
    )
}

impl Actor {
    /// Every unit is to stop (the running and the restarting) or stay idle; the loop ends
    /// once all are down.
    pub(super) fn begin_shutdown(&mut self) {
        self.listen.sockets.freeze();
        for rt in self.units.values_mut() {
            if rt.restarting() {
                rt.after_stop = AfterStop::Stay;
            }
            let active = rt.proc.is_some() || matches!(rt.machine.state(), State::Backoff { .. });
            if active {
                rt.intent = Intent::Stop;
            } else if !matches!(rt.intent, Intent::Blocked(_)) {
                rt.intent = Intent::Idle;
            }
        }
        if self.shutdown.is_empty() {
            // Keep the loop's exit condition true for a shutdown nobody waits for.
            let (tx, _rx) = tokio::sync::oneshot::channel();
            self.shutdown.push(tx);
        }
    }

    // ----- scheduling -----------------------------------------------------------------------

    pub(super) fn schedule(&mut self, now: Instant) {
        for _ in 0..(self.units.len() + 2) {
            let mut changed = false;
            let names: Vec<String> = self.units.keys().cloned().collect();
            for name in &names {
                let (start_pending, stop_pending) = match self.units.get(name) {
                    Some(rt) => (rt.intent == Intent::Start, rt.intent == Intent::Stop),
                    None => continue,
                };
                if start_pending && !self.shutting_down() {
                    match self.deps(name) {
                        Deps::Ready => {
                            if let Some(rt) = self.units.get_mut(name) {
                                rt.intent = Intent::Idle;
                            }
                            self.feed(name, Input::Start, now);
                            changed = true;
                        }
                        Deps::Wait => {}
                        Deps::Blocked(why) => {
                            if let Some(rt) = self.units.get_mut(name) {
                                rt.intent = Intent::Blocked(why.clone());
                            }
                            self.emit(Some(name), "blocked", &format!("not started: {why}"));
                            changed = true;
                        }
                    }
                }
                if stop_pending && !self.dependents_alive(name) {
                    if let Some(rt) = self.units.get_mut(name) {
                        rt.intent = Intent::Idle;
                    }
                    self.feed(name, Input::Stop, now);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Drop removed units that have stopped, and a job's extra runs that have ended.
        let gone: Vec<String> = self
            .units
            .iter()
            .filter(|(n, rt)| {
                rt.proc.is_none()
                    && (matches!(rt.after_stop, AfterStop::Remove)
                        || (n.contains(RUN)
                            && ended(rt.intent == Intent::Idle, rt.machine.state())))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(rt) = self.units.shift_remove(&n) {
                if let Some(p) = rt.probe {
                    p.abort();
                }
            }
        }
        let units = &self.units;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.discarding)
            .into_iter()
            .partition(|(keys, _)| keys.iter().all(|k| !units.contains_key(k)));
        self.discarding = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    pub(super) fn deps(&self, name: &str) -> Deps {
        let Some(rt) = self.units.get(name) else {
            return Deps::Ready;
        };
        let staged = name.ends_with(NEXT);
        for d in &rt.unit.depends_on {
            let next = format!("{}{NEXT}", d.unit);
            let dep = match self.units.get(&next) {
                Some(dep) if staged => dep,
                _ => match self.units.get(&d.unit) {
                    Some(dep) => dep,
                    None => continue,
                },
            };
            let state = dep.machine.state();
            let view = DepView {
                blocked: match &dep.intent {
                    Intent::Blocked(why) => Some(why.as_str()),
                    _ => None,
                },
                state,
                running: dep.proc.is_some(),
                probed: dep.unit.health.is_some(),
                task: dep.unit.kind == ServiceKind::Task,
                provisioning: dep.provisioning(),
                idle: dep.proc.is_none() && dep.intent != Intent::Start && !dep.restarting(),
            };
            if let Some(verdict) = dep_verdict(&d.unit, &view, d.condition) {
                return verdict;
            }
        }
        Deps::Ready
    }

    pub(super) fn dependents_alive(&self, name: &str) -> bool {
        self.units
            .values()
            .any(|rt| rt.proc.is_some() && rt.unit.depends_on.iter().any(|d| d.unit == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &State) -> DepView<'_> {
        DepView {
            blocked: None,
            state,
            running: matches!(state, State::Starting | State::Running | State::Healthy),
            probed: true,
            task: false,
            provisioning: false,
            idle: false,
        }
    }

    #[test]
    fn an_extra_run_of_a_job_is_over_once_idle_and_ended_for_good() {
        assert!(ended(true, &State::Completed));
        assert!(ended(true, &State::Failed { reason: "x".into() }));
        assert!(ended(true, &State::Stopped));
        // Not started yet (its start is pending), or still running, or restarting.
        assert!(!ended(false, &State::Stopped));
        assert!(!ended(true, &State::Starting));
        assert!(!ended(true, &State::Running));
        assert!(!ended(true, &State::Backoff { delay_ms: 100 }));
    }

    #[test]
    fn started_waits_for_a_process_healthy_for_a_probe_and_its_provisioning() {
        let healthy = State::Healthy;
        let starting = State::Starting;
        assert_eq!(
            dep_verdict("db", &view(&starting), Condition::Started),
            None
        );
        assert_eq!(
            dep_verdict("db", &view(&starting), Condition::Healthy),
            Some(Deps::Wait)
        );
        assert_eq!(dep_verdict("db", &view(&healthy), Condition::Healthy), None);
        // A recipe server creating its databases is not healthy enough yet.
        let provisioning = DepView {
            provisioning: true,
            ..view(&healthy)
        };
        assert_eq!(
            dep_verdict("db", &provisioning, Condition::Healthy),
            Some(Deps::Wait)
        );
        // Without a probe, running is as healthy as it gets.
        let running = State::Running;
        let unprobed = DepView {
            probed: false,
            ..view(&running)
        };
        assert_eq!(dep_verdict("db", &unprobed, Condition::Healthy), None);
    }

    #[test]
    fn a_task_allows_its_dependents_once_completed() {
        let done = State::Completed;
        let task = DepView {
            task: true,
            running: false,
            ..view(&done)
        };
        for c in [Condition::Started, Condition::Healthy, Condition::Completed] {
            assert_eq!(dep_verdict("migrate", &task, c), None, "{c:?}");
        }
        let running = State::Running;
        let busy = DepView {
            task: true,
            ..view(&running)
        };
        assert_eq!(
            dep_verdict("migrate", &busy, Condition::Completed),
            Some(Deps::Wait)
        );
    }

    #[test]
    fn a_failed_stopped_or_blocked_dependency_blocks_with_why() {
        let failed = State::Failed {
            reason: "exited with code 3".into(),
        };
        assert_eq!(
            dep_verdict("db", &view(&failed), Condition::Healthy),
            Some(Deps::Blocked("db failed: exited with code 3".into()))
        );
        let stopped = State::Stopped;
        let idle = DepView {
            idle: true,
            running: false,
            ..view(&stopped)
        };
        assert_eq!(
            dep_verdict("db", &idle, Condition::Started),
            Some(Deps::Blocked("db is stopped".into()))
        );
        // Stopped but about to start (wanted, or restarting): wait for it.
        let coming = DepView {
            idle: false,
            running: false,
            ..view(&stopped)
        };
        assert_eq!(
            dep_verdict("db", &coming, Condition::Started),
            Some(Deps::Wait)
        );
        let blocked = DepView {
            blocked: Some("cache failed: no such file"),
            ..view(&stopped)
        };
        assert_eq!(
            dep_verdict("db", &blocked, Condition::Started),
            Some(Deps::Blocked(
                "db is blocked (cache failed: no such file)".into()
            ))
        );
    }
}
