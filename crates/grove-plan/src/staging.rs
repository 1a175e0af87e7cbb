//! Which units a deploy starts beside the running ones: a pure decision on two Plans, so a
//! deploy's shape can be read (and tested) without running anything.

use std::collections::BTreeSet;

use crate::{Plan, Run};

/// What a deploy stages, decided from the running Plan and the release's first Plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Staging {
    /// The units that run the new release's code and changed (or are new), plus the tasks
    /// `before_switch` names: they start beside the running ones.
    pub stage: Vec<String>,
    /// Ports no automatic assignment may take while both generations run: the serving
    /// generation's.
    pub avoid: BTreeSet<u16>,
    /// Staged units whose running port must not be kept as their sticky port (the new
    /// generation gets a fresh one).
    pub unpin: Vec<String>,
}

/// The staging of a deploy from `current` (running) to `next` (the release's Plan built with
/// the running ports); `before_switch` names the services whose tasks run for every release.
pub fn staging(current: &Plan, next: &Plan, before_switch: &[String]) -> Staging {
    let diff = Plan::diff(current, next);
    // A unit told `replace = "stop-first"` is not staged: it restarts at the switch, when
    // the rest of the Plan is applied.
    let is_app = |n: &String| {
        next.units.get(n).is_some_and(|u| {
            matches!(u.run, Run::Command { .. })
                && u.release.is_some()
                && u.replace != crate::Replace::StopFirst
                // A job runs on its schedule, never as part of a switch.
                && u.job.is_none()
        })
    };
    let mut stage: Vec<String> = diff
        .restart
        .iter()
        .map(|r| r.unit.clone())
        .chain(diff.add.iter().cloned())
        .filter(is_app)
        .collect();
    // Tasks named in before_switch run for the new release even when unchanged.
    for u in next.units.values() {
        if before_switch.contains(&u.service) && !stage.contains(&u.name) {
            stage.push(u.name.clone());
        }
    }
    with_serving_ports(current, next, stage)
}

/// `stage` with the ports its units serve on now: avoided by the new generation, and not
/// kept as their sticky ports. The ports of the units `next` removes are avoided too: they
/// serve until the switch (`web` while `web#1`, `web#2` of a new replica count start).
fn with_serving_ports(current: &Plan, next: &Plan, stage: Vec<String>) -> Staging {
    let mut avoid = BTreeSet::new();
    let mut unpin = Vec::new();
    for n in &stage {
        if let Some(p) = current.units.get(n).and_then(|u| u.port) {
            avoid.insert(p);
            unpin.push(n.clone());
        }
    }
    if !stage.is_empty() {
        let removed = current
            .units
            .iter()
            .filter(|(n, _)| !next.units.contains_key(*n));
        avoid.extend(removed.filter_map(|(_, u)| u.port));
    }
    Staging {
        stage,
        avoid,
        unpin,
    }
}

/// Takes out of `stage` the units that kept their running port in `plan` (the Plan built
/// avoiding the serving ports): a fixed port cannot run twice, so those restart in place at
/// the switch. Returns them; `stage` is left in Plan order, so it reads like `ps`.
pub fn split_in_place(current: &Plan, plan: &Plan, stage: &mut Vec<String>) -> Vec<String> {
    let in_place: Vec<String> = stage
        .iter()
        .filter(|n| {
            let old = current.units.get(*n).and_then(|u| u.port);
            old.is_some() && plan.units.get(*n).and_then(|u| u.port) == old
        })
        .cloned()
        .collect();
    stage.retain(|n| !in_place.contains(n));
    stage.sort_by_key(|n| plan.units.get_index_of(n).unwrap_or(usize::MAX));
    in_place
}

/// Whether a reload that changes `unit` replaces it start-first (a new one beside it on a
/// fresh port, traffic moved once it is ready): by default a routed command service with a
/// port the Plan chose (`fixed_port` false), everything else stop-first; `replace` in the
/// stack file decides otherwise (start-first only where a second copy can run).
pub fn start_first(plan: &Plan, unit: &crate::Unit, fixed_port: bool) -> bool {
    let possible = matches!(unit.run, Run::Command { .. })
        && unit.kind == crate::ServiceKind::Service
        && unit.port.is_some()
        && !fixed_port;
    match unit.replace {
        crate::Replace::StopFirst => false,
        crate::Replace::StartFirst => possible,
        crate::Replace::Auto => possible && routed(plan, &unit.service),
    }
}

/// Whether a route (or a whole-port forward) sends traffic to `service`'s units.
fn routed(plan: &Plan, service: &str) -> bool {
    plan.routes
        .iter()
        .map(|r| (&r.service, &r.target))
        .chain(plan.edge.forward.iter().map(|f| (&f.service, &f.target)))
        .any(|(s, t)| s == service && matches!(t, crate::Target::Units(_)))
}

/// The staging of a reload from `current` to `next` (the stack file's Plan with the running
/// ports): the routed command services that restart or are added start beside the running
/// ones, so traffic moves only once they are ready (start-first, as deploy does). Tasks and
/// services without a route are left to the reload's stop-first apply: two copies of a
/// singleton (a Celery beat, a cron runner) must never run at once.
pub fn reload_staging(current: &Plan, next: &Plan) -> Staging {
    let diff = Plan::diff(current, next);
    // An added unit replaces something only when its service loses units in the same step
    // (a change of replica count renames them: `web` becomes `web#1`, `web#2`); one that is
    // simply new (another instance) starts as any added unit does, after the rest of the
    // change (its databases) is applied.
    let replacing = |n: &String| {
        next.units.get(n).is_some_and(|u| {
            diff.remove
                .iter()
                .any(|r| current.units.get(r).is_some_and(|o| o.service == u.service))
        })
    };
    let stage: Vec<String> = diff
        .restart
        .iter()
        .map(|r| r.unit.clone())
        .chain(diff.add.iter().filter(|n| replacing(n)).cloned())
        // A fixed port cannot run twice: `split_in_place` takes those back out.
        .filter(|n| {
            next.units
                .get(n)
                .is_some_and(|u| start_first(next, u, false))
        })
        .collect();
    with_serving_ports(current, next, stage)
}

/// The staging of `grove restart` for `names` (units of `current` replaced start-first): each
/// gets a fresh port, its serving one avoided and not kept as its sticky port.
pub fn restart_staging(current: &Plan, names: &[String]) -> Staging {
    with_serving_ports(current, current, names.to_vec())
}

/// The running Plan with one unit taken from `next`: a step of a rolling replacement, in
/// which nothing else changes.
pub fn with_unit_of(current: &Plan, next: &Plan, name: &str) -> Plan {
    let mut plan = current.clone();
    if let (Some(slot), Some(unit)) = (plan.units.get_mut(name), next.units.get(name)) {
        *slot = unit.clone();
    }
    plan
}

/// A start-first replacement a few units at a time: the Plans to stage and promote in turn,
/// each with the units it replaces. Each step but the last replaces up to `max_surge` (1 by
/// default) running units of one service and changes nothing else, so the service's other
/// replicas keep serving (never fewer ready units than when it began, `max_surge` more at
/// most); the last step is `next` itself with the rest of `stage` (the last batch, and units
/// a new replica count adds, which replace their service's old ones together). A unit whose
/// dependencies change waits for the last step, where they are applied.
pub fn rolling(current: &Plan, next: &Plan, stage: &[String]) -> Vec<(Plan, Vec<String>)> {
    let alone = |n: &String| match (current.units.get(n), next.units.get(n)) {
        (Some(old), Some(new)) => old.depends_on == new.depends_on,
        _ => false,
    };
    let mut batches: Vec<Vec<String>> = Vec::new();
    for n in stage.iter().filter(|n| alone(n)) {
        let unit = &next.units[n];
        let fits = |b: &Vec<String>| {
            b.len() < unit.max_surge.max(1) as usize
                && next
                    .units
                    .get(&b[0])
                    .is_some_and(|f| f.service == unit.service)
        };
        match batches.last_mut() {
            Some(b) if fits(b) => b.push(n.clone()),
            _ => batches.push(vec![n.clone()]),
        }
    }
    // The last batch goes with the last step, which applies everything else too.
    batches.pop();
    let mut steps = Vec::new();
    let mut plan = current.clone();
    for batch in &batches {
        for n in batch {
            plan = with_unit_of(&plan, next, n);
        }
        steps.push((plan.clone(), batch.clone()));
    }
    let rest: Vec<String> = stage
        .iter()
        .filter(|n| !batches.iter().any(|b| b.contains(n)))
        .cloned()
        .collect();
    if !rest.is_empty() || steps.is_empty() {
        steps.push((next.clone(), rest));
    }
    steps
}
