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
    let is_app = |n: &String| {
        next.units
            .get(n)
            .is_some_and(|u| matches!(u.run, Run::Command { .. }) && u.release.is_some())
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
    let mut avoid = BTreeSet::new();
    let mut unpin = Vec::new();
    for n in &stage {
        if let Some(p) = current.units.get(n).and_then(|u| u.port) {
            avoid.insert(p);
            unpin.push(n.clone());
        }
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
