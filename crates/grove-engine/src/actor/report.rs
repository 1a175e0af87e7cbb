//! The actor's answer to `status`: each unit's state, health, process and resource use,
//! read from `/proc` in one scan.

use std::time::Instant;

use grove_plan::ServiceKind;
use grove_supervisor::process;
use grove_supervisor::State;

use super::{state_label, Actor, Intent};
use crate::status::{Health, RemoteStatus, Status, UnitKind, UnitState, UnitStatus};

impl Actor {
    pub(super) fn status(&mut self, now: Instant) -> Status {
        let leaders: std::collections::HashSet<i32> = self
            .units
            .values()
            .filter_map(|rt| rt.proc.as_ref().map(|p| p.pid))
            .collect();
        let usage = process::usage_by_group(&leaders);
        let hz = process::ticks_per_second() as f64;
        let me = std::process::id();
        let own_rss = process::stat(me as i32).map(|s| s.rss_bytes()).unwrap_or(0);
        let mut units = Vec::new();
        let probes: Vec<Option<String>> = self
            .units
            .values()
            .map(|rt| self.describe_probe(&rt.unit))
            .collect();
        for ((key, rt), probe_text) in self.units.iter_mut().zip(probes) {
            let u = &rt.unit;
            let blocked = match &rt.intent {
                Intent::Blocked(why) => Some(why.clone()),
                _ => None,
            };
            let state_name = if blocked.is_some() {
                UnitState::Blocked
            } else if rt.intent == Intent::Start && rt.proc.is_none() {
                UnitState::Waiting
            } else {
                state_label(rt.machine.state())
            };
            let health = u.health.as_ref().map(|_| match rt.machine.state() {
                State::Healthy => Health::Healthy,
                State::Unhealthy => Health::Unhealthy,
                State::Starting | State::Running if rt.proc.is_some() => Health::Starting,
                _ => Health::Unknown,
            });
            let reason = blocked.or_else(|| match rt.machine.state() {
                State::Failed { reason } => Some(reason.clone()),
                State::Starting | State::Unhealthy => rt.last_probe_error.clone(),
                _ => rt.note.clone(),
            });
            let (pid, uptime_ms, cpu_percent, rss_bytes, processes, open_fds) = match &rt.proc {
                Some(p) => {
                    let use_ = usage.get(&p.pid).copied().unwrap_or_default();
                    let elapsed = now.saturating_duration_since(p.started);
                    let (since, before) = rt.cpu_sample.unwrap_or((p.started, 0));
                    let span = now.saturating_duration_since(since).as_secs_f64();
                    let cpu = if span > 0.0 {
                        (use_.cpu_ticks.saturating_sub(before) as f64 / hz) / span * 100.0
                    } else {
                        0.0
                    };
                    rt.cpu_sample = Some((now, use_.cpu_ticks));
                    (
                        Some(p.pid),
                        Some(elapsed.as_millis() as u64),
                        Some((cpu * 10.0).round() / 10.0),
                        Some(use_.rss_bytes),
                        use_.processes,
                        Some(use_.open_fds),
                    )
                }
                None => (None, None, None, None, 0, None),
            };
            units.push(UnitStatus {
                name: key.clone(),
                release: u.release.clone(),
                user: u.run_as.user.clone(),
                memory_limit: u.limits.memory,
                limits: Some(u.limits.describe()).filter(|d| !d.is_empty()),
                service: u.service.clone(),
                instance: u.instance.clone(),
                kind: match u.kind {
                    ServiceKind::Service => UnitKind::Service,
                    ServiceKind::Task => UnitKind::Task,
                },
                state: state_name,
                health,
                reason: reason.map(|r| grove_plan::scrub(&r, &self.secrets)),
                probe: probe_text.map(|p| grove_plan::scrub(&p, &self.secrets)),
                pid,
                port: u.port,
                restarts: rt.machine.restarts(),
                uptime_ms,
                cpu_percent,
                rss_bytes,
                processes,
                open_fds,
            });
        }
        // Only the targets the running Plan still probes.
        let remotes = self
            .remotes
            .values()
            .filter(|r| {
                self.plan.as_ref().is_some_and(|p| {
                    p.remote_health.iter().any(|h| {
                        h.service == r.service && h.targets.iter().any(|(t, _)| *t == r.target)
                    })
                })
            })
            .map(|r| RemoteStatus {
                reason: r
                    .reason
                    .as_ref()
                    .map(|why| grove_plan::scrub(why, &self.secrets)),
                ..r.clone()
            })
            .collect();
        Status {
            remotes,
            stack: self
                .plan
                .as_ref()
                .map(|p| p.stack.clone())
                .unwrap_or_default(),
            environment: self.plan.as_ref().and_then(|p| p.environment.clone()),
            pid: me,
            rss_bytes: own_rss,
            units,
        }
    }
}
