//! Active health checks of remote upstreams: `health` on an `upstreams` service probes each
//! of its targets (the service's http, tcp or exec check, interval, timeout and retries). A
//! target that fails `retries` probes in a row leaves the edge's route (`Edge::set_health`)
//! and comes back at its first pass, each with an event naming it. The probes follow the
//! running Plan: a reload that changes them restarts them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use grove_engine::EngineHandle;
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
        for h in &plan.remote_health {
            running.1.push(tokio::spawn(watch(
                h.clone(),
                plan.root.clone(),
                edge.clone(),
                engine.clone(),
            )));
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

async fn watch(h: RemoteHealth, root: PathBuf, edge: grove_edge::Edge, engine: EngineHandle) {
    let mut state: Vec<(Seen, u32)> = vec![(Seen::Unknown, 0); h.targets.len()];
    let timeout = Duration::from_millis(h.timeout_ms);
    let interval = Duration::from_millis(h.interval_ms.max(50));
    let ctx = probe::ExecContext {
        cwd: &root,
        env: Vec::new(),
    };
    loop {
        for ((name, check), (seen, failures)) in h.targets.iter().zip(state.iter_mut()) {
            let result = probe::run(check, timeout, &ctx).await;
            *failures = if result.is_ok() { 0 } else { *failures + 1 };
            let (next, changed) = decide(*seen, *failures, h.retries, result.is_ok());
            if next != *seen {
                edge.set_health(name, next == Seen::In);
            }
            if changed {
                match &result {
                    Ok(()) => engine.record(
                        Some(&h.service),
                        "healthy",
                        &format!("{name} passes its probe again: back in the route"),
                    ),
                    Err(why) => engine.record(
                        Some(&h.service),
                        "unhealthy",
                        &format!("{name} out of the route after {failures} failed probes: {why}"),
                    ),
                }
            }
            *seen = next;
        }
        tokio::time::sleep(interval).await;
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
