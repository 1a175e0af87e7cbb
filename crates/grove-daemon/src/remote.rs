//! Active health checks of remote upstreams: `health` on an `upstreams` service probes each
//! of its targets (the service's http, tcp or exec check, interval, timeout and retries). A
//! target that fails `retries` probes in a row leaves the edge's route (`Edge::set_health`)
//! and comes back at its first pass, each with an event naming it, and `ps` shows each
//! target's health (`EngineHandle::remote_seen`). The probes follow the running Plan: a
//! reload that changes them restarts them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use grove_engine::{EngineHandle, Health, RemoteStatus};
use grove_plan::{Plan, RemoteHealth};
use grove_supervisor::probe;
use tokio::task::JoinHandle;

/// The running probes and what they were started from.
#[derive(Default)]
pub(crate) struct RemoteProbes {
    running: Mutex<(Vec<RemoteHealth>, Vec<JoinHandle<()>>)>,
}

impl RemoteProbes {
    /// Runs `plan`'s remote probes (restarting them only when they changed).
    pub(crate) fn apply(&self, plan: &Plan, edge: &grove_edge::Edge, engine: &EngineHandle) {
        let mut running = match self.running.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if running.0 == plan.remote_health && !running.1.is_empty() {
            return;
        }
        for t in running.1.drain(..) {
            t.abort();
        }
        running.0 = plan.remote_health.clone();
        // One task per target: a target whose probes time out never delays another's.
        for h in &plan.remote_health {
            for t in 0..h.targets.len() {
                running.1.push(tokio::spawn(watch(
                    h.clone(),
                    t,
                    plan.root.clone(),
                    edge.clone(),
                    engine.clone(),
                )));
            }
        }
    }
}

/// What one target's probes found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not probed yet: the edge counts it in.
    Unknown,
    In,
    Out,
}

/// The decision after one probe of a target: its new state and whether that is a change to
/// announce. Pure, so it is tested without sockets.
fn decide(seen: Seen, failures: u32, retries: u32, passed: bool) -> (Seen, bool) {
    match (passed, seen) {
        (true, Seen::In) => (Seen::In, false),
        (true, Seen::Out) => (Seen::In, true),
        (true, Seen::Unknown) => (Seen::In, false),
        (false, Seen::Out) => (Seen::Out, false),
        (false, _) if failures >= retries.max(1) => (Seen::Out, true),
        (false, s) => (s, false),
    }
}

/// Probes target `t` of `h` every interval, for as long as the running Plan has it.
async fn watch(
    h: RemoteHealth,
    t: usize,
    root: PathBuf,
    edge: grove_edge::Edge,
    engine: EngineHandle,
) {
    let Some((name, check)) = h.targets.get(t) else {
        return;
    };
    let (mut seen, mut failures) = (Seen::Unknown, 0u32);
    let timeout = Duration::from_millis(h.timeout_ms);
    let interval = Duration::from_millis(h.interval_ms.max(50));
    let ctx = probe::ExecContext {
        cwd: &root,
        env: Vec::new(),
    };
    let report = |seen: Seen, reason: Option<String>| {
        engine.remote_seen(RemoteStatus {
            service: h.service.clone(),
            target: name.clone(),
            health: match seen {
                Seen::Unknown => Health::Starting,
                Seen::In => Health::Healthy,
                Seen::Out => Health::Unhealthy,
            },
            reason,
            since_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        })
    };
    report(Seen::Unknown, None);
    let mut next_at = tokio::time::Instant::now();
    loop {
        let result = probe::run(check, timeout, &ctx).await;
        failures = if result.is_ok() { 0 } else { failures + 1 };
        let (next, changed) = decide(seen, failures, h.retries, result.is_ok());
        let why = result.as_ref().err().map(|e| e.to_string());
        if next != seen {
            edge.set_health(name, next == Seen::In);
            report(next, why.clone());
        } else if next == Seen::Out {
            // Out and still failing: keep `ps`'s reason current (a timeout, then a refusal).
            report(next, why.clone());
        }
        if changed {
            match &why {
                None => engine.record(
                    Some(&h.service),
                    "healthy",
                    &format!("{name} passes its probe again: back in the route"),
                ),
                Some(why) => engine.record(
                    Some(&h.service),
                    "unhealthy",
                    &format!("{name} out of the route after {failures} failed probes: {why}"),
                ),
            }
        }
        seen = next;
        // Probes start every interval (a slow probe does not push the next one back).
        next_at += interval;
        let now = tokio::time::Instant::now();
        if next_at < now {
            next_at = now;
        }
        tokio::time::sleep_until(next_at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_leaves_after_retries_failures_and_returns_at_its_first_pass() {
        assert_eq!(decide(Seen::Unknown, 1, 3, false), (Seen::Unknown, false));
        assert_eq!(decide(Seen::In, 2, 3, false), (Seen::In, false));
        assert_eq!(decide(Seen::In, 3, 3, false), (Seen::Out, true));
        assert_eq!(decide(Seen::Out, 4, 3, false), (Seen::Out, false));
        assert_eq!(decide(Seen::Out, 0, 3, true), (Seen::In, true));
        assert_eq!(decide(Seen::Unknown, 0, 3, true), (Seen::In, false));
        assert_eq!(decide(Seen::Unknown, 1, 1, false), (Seen::Out, true));
    }
}
