//! Deploys on the actor: the next generation staged beside the serving one (`~next`),
//! promoted (the serving one becomes `~old` and drains) or discarded.

use std::time::{Duration, Instant};

use grove_plan::{Plan, Unit};
use grove_state::ProcessRecord;
use grove_supervisor::{Input, Settings, UnitMachine};

use super::{Actor, AfterStop, Intent, Rt, NEXT, OLD, RUN};
use crate::status::ApplyReport;

impl Actor {
    // ----- deploys: the next generation beside the serving one ------------------------------

    pub(super) fn fresh_rt(&mut self, unit: &Unit) -> Rt {
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        Rt {
            unit: unit.clone(),
            machine: UnitMachine::new(Settings::from_unit(unit), self.seed),
            gen: 0,
            proc: None,
            probe: None,
            log: None,
            // A job waits for its schedule (the daemon starts it).
            intent: if unit.job.is_some() {
                Intent::Idle
            } else {
                Intent::Start
            },
            after_stop: AfterStop::Stay,
            note: None,
            last_probe_error: None,
            cpu_sample: None,
            exit_note: None,
        }
    }

    /// Another run of the job `name` beside the running one, under the next free
    /// `NAME~runN`: started at once (its dependencies allowing), dropped once it has ended.
    pub(super) fn run_copy(&mut self, name: &str) -> Result<String, String> {
        if self.shutting_down() {
            return Err("the stack is stopping".into());
        }
        let Some(rt) = self.units.get(name) else {
            return Err(format!("no unit {name}"));
        };
        if rt.unit.job.is_none() {
            return Err(format!("{name} is not a job"));
        }
        let unit = rt.unit.clone();
        let key = (2..)
            .map(|n| format!("{name}{RUN}{n}"))
            .find(|k| !self.units.contains_key(k))
            .unwrap_or_default();
        let mut copy = self.fresh_rt(&unit);
        copy.intent = Intent::Start;
        self.units.insert(key.clone(), copy);
        Ok(key)
    }

    /// The extra runs of `plan`'s jobs an earlier grove left running (`NAME~runN`, found in
    /// `adoptable`): each becomes a run copy again, adopted when it is started (its
    /// fingerprint is its job's), so a `grove upgrade` or a restarted grove keeps them.
    pub(super) fn readopt_runs(&mut self, plan: &Plan) {
        let runs: Vec<(String, Unit)> = self
            .adoptable
            .keys()
            .filter(|k| !self.units.contains_key(*k))
            .filter_map(|k| {
                let (job, n) = k.rsplit_once(RUN)?;
                n.parse::<u32>().ok()?;
                let unit = plan.units.get(job).filter(|u| u.job.is_some())?;
                Some((k.clone(), unit.clone()))
            })
            .collect();
        for (key, unit) in runs {
            let mut copy = self.fresh_rt(&unit);
            copy.intent = Intent::Start;
            self.units.insert(key, copy);
        }
    }

    /// Starts `names` of `plan` as `NAME~next` beside the running units. They wait for their
    /// dependencies as usual, preferring a dependency's own `~next` (a migration task run
    /// for the new code). Returns the keys, or why nothing was staged.
    pub(super) fn stage(&mut self, plan: &Plan, names: &[String]) -> Result<Vec<String>, String> {
        if self.shutting_down() {
            return Err("the stack is stopping".into());
        }
        if let Some(k) = self.units.keys().find(|k| k.ends_with(NEXT)) {
            return Err(format!("{k} is still staged from another deploy"));
        }
        let mut keys = Vec::new();
        for name in names {
            let Some(unit) = plan.units.get(name) else {
                return Err(format!("the new Plan has no unit {name}"));
            };
            let rt = self.fresh_rt(unit);
            let key = format!("{name}{NEXT}");
            self.units.insert(key.clone(), rt);
            keys.push(key);
        }
        Ok(keys)
    }

    /// The switch: each staged `NAME~next` becomes `NAME`, the unit it replaces becomes
    /// `NAME~old` and is stopped once `drain` has passed, and the rest of `plan` is applied
    /// as a reload would.
    pub(super) fn promote(
        &mut self,
        plan: Plan,
        names: &[String],
        drain: Duration,
        now: Instant,
    ) -> ApplyReport {
        let mut running = match self.plan.clone() {
            Some(p) => p,
            None => plan.clone(),
        };
        for name in names {
            let Some(mut next) = self.units.shift_remove(&format!("{name}{NEXT}")) else {
                continue;
            };
            if let Some(mut old) = self.units.shift_remove(name) {
                if old.proc.is_some() || old.restarting() {
                    let mut key = format!("{name}{OLD}");
                    let mut n = 2;
                    while self.units.contains_key(&key) {
                        key = format!("{name}{OLD}{n}");
                        n += 1;
                    }
                    old.intent = Intent::DrainUntil(now + drain);
                    old.after_stop = AfterStop::Remove;
                    self.move_record(name, &key, &old);
                    self.units.insert(key, old);
                } else if let Some(p) = old.probe.take() {
                    p.abort();
                }
            }
            if let Some(u) = plan.units.get(name) {
                next.unit = u.clone();
                running.units.insert(name.clone(), u.clone());
            }
            self.move_record(&format!("{name}{NEXT}"), name, &next);
            self.units.insert(name.clone(), next);
            self.emit(Some(name), "switched", "now serving the new release");
        }
        self.plan = Some(running);
        let what = match &plan.release {
            Some(r) => format!("release {r} live"),
            None => "switched".to_string(),
        };
        self.apply(plan, now, Some(("switched", &what)))
    }

    /// Moves the pid record of a renamed unit's process from key `from` to key `to`, so
    /// leftovers of a killed grove are still found under the unit's new name, and tells its
    /// shim the new name, so the next grove adopts it as that unit.
    pub(super) fn move_record(&self, from: &str, to: &str, rt: &Rt) {
        let proc = rt.proc.as_ref();
        if let Some(c) = proc.and_then(|p| p.control.as_ref()) {
            c.rename(to, &super::fingerprint(&rt.unit));
        }
        if let (Ok(store), Some(p)) = (self.store.lock(), proc) {
            let _ = store.forget_process(from);
            let _ = store.record_process(&ProcessRecord {
                unit: to.to_string(),
                pid: p.pid,
                start_ticks: p.start_ticks,
            });
        }
    }

    /// Stops and forgets staged units (a deploy that failed before its switch).
    pub(super) fn discard(&mut self, names: &[String], now: Instant) {
        for name in names {
            let key = format!("{name}{NEXT}");
            if let Some(rt) = self.units.get_mut(&key) {
                if rt.intent == Intent::Start {
                    rt.intent = Intent::Idle;
                }
                rt.after_stop = AfterStop::Remove;
                self.feed(&key, Input::Stop, now);
            }
        }
    }
}
