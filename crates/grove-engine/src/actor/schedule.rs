//! Scheduling on the actor: which wanted units may start now, given their dependencies'
//! conditions (started, healthy, completed), and which are blocked by a failure.

use std::time::Instant;

use grove_plan::{Condition, ServiceKind};
use grove_supervisor::{Input, State};

use super::{Actor, NEXT};

pub(super) enum Deps {
    Ready,
    Wait,
    Blocked(String),
}

impl Actor {
    // ----- scheduling -----------------------------------------------------------------------

    pub(super) fn schedule(&mut self, now: Instant) {
        for _ in 0..(self.units.len() + 2) {
            let mut changed = false;
            let names: Vec<String> = self.units.keys().cloned().collect();
            for name in &names {
                let (start_pending, stop_pending) = match self.units.get(name) {
                    Some(rt) => (rt.start_pending, rt.stop_pending),
                    None => continue,
                };
                if start_pending && !self.shutting_down() {
                    match self.deps(name) {
                        Deps::Ready => {
                            if let Some(rt) = self.units.get_mut(name) {
                                rt.start_pending = false;
                                rt.blocked = None;
                            }
                            self.feed(name, Input::Start, now);
                            changed = true;
                        }
                        Deps::Wait => {}
                        Deps::Blocked(why) => {
                            if let Some(rt) = self.units.get_mut(name) {
                                rt.start_pending = false;
                                rt.blocked = Some(why.clone());
                            }
                            self.emit(Some(name), "blocked", &format!("not started: {why}"));
                            changed = true;
                        }
                    }
                }
                if stop_pending && !self.dependents_alive(name) {
                    if let Some(rt) = self.units.get_mut(name) {
                        rt.stop_pending = false;
                    }
                    self.feed(name, Input::Stop, now);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Drop removed units that have stopped.
        let gone: Vec<String> = self
            .units
            .iter()
            .filter(|(_, rt)| rt.remove_when_stopped && rt.proc.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(rt) = self.units.shift_remove(&n) {
                if let Some(p) = rt.probe {
                    p.abort();
                }
            }
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
            if let Some(why) = &dep.blocked {
                return Deps::Blocked(format!("{} is blocked ({why})", d.unit));
            }
            let state = dep.machine.state();
            let probed = dep.unit.health.is_some();
            let ok = match d.condition {
                Condition::Started => dep.proc.is_some() || matches!(state, State::Completed),
                Condition::Healthy => {
                    (matches!(state, State::Healthy) && !dep.provisioning)
                        || (!probed && matches!(state, State::Running))
                        || (dep.unit.kind == ServiceKind::Task && matches!(state, State::Completed))
                }
                Condition::Completed => matches!(state, State::Completed),
            };
            if ok {
                continue;
            }
            if let State::Failed { reason } = state {
                return Deps::Blocked(format!("{} failed: {reason}", d.unit));
            }
            let idle = dep.proc.is_none() && !dep.start_pending && dep.restart_with.is_none();
            if idle && matches!(state, State::Stopped | State::Completed) {
                return Deps::Blocked(format!("{} is stopped", d.unit));
            }
            return Deps::Wait;
        }
        Deps::Ready
    }

    pub(super) fn dependents_alive(&self, name: &str) -> bool {
        self.units
            .values()
            .any(|rt| rt.proc.is_some() && rt.unit.depends_on.iter().any(|d| d.unit == name))
    }
}
