//! `Plan::diff`: the difference between the running Plan and a new one.

use serde::Serialize;

use crate::{Plan, Run, Unit};

/// A unit that must restart, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restarted {
    /// The unit.
    pub unit: String,
    /// What changed: `command`, `env`, `cwd`, `port`, `bind`, `probe`, `kind`.
    pub reasons: Vec<&'static str>,
}

/// What applying a new Plan does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PlanDiff {
    /// Units to start.
    pub add: Vec<String>,
    /// Units to stop.
    pub remove: Vec<String>,
    /// Units to stop and start again.
    pub restart: Vec<Restarted>,
    /// Units whose supervision settings changed (restart policy, stop signal, grace,
    /// dependencies) or recipes given new roles or databases; applied without a restart.
    pub update: Vec<String>,
    /// Units left alone.
    pub keep: Vec<String>,
    /// Route keys (`host/prefix`) that appear.
    pub routes_added: Vec<String>,
    /// Route keys that disappear.
    pub routes_removed: Vec<String>,
    /// Route keys whose target or options change.
    pub routes_changed: Vec<String>,
    /// Listeners, TLS, static mounts or forwards changed.
    pub edge_changed: bool,
}

impl PlanDiff {
    /// Whether applying it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.restart.is_empty()
            && self.update.is_empty()
            && self.routes_added.is_empty()
            && self.routes_removed.is_empty()
            && self.routes_changed.is_empty()
            && !self.edge_changed
    }
}

fn restart_reasons(a: &Unit, b: &Unit) -> Vec<&'static str> {
    let mut r = Vec::new();
    if server_part(&a.run) != server_part(&b.run) {
        r.push("command");
    }
    if a.env != b.env {
        r.push("env");
    }
    if a.cwd != b.cwd {
        r.push("cwd");
    }
    if a.port != b.port {
        r.push("port");
    }
    if a.bind != b.bind {
        r.push("bind");
    }
    if a.health != b.health {
        r.push("probe");
    }
    if a.kind != b.kind {
        r.push("kind");
    }
    if a.run_as != b.run_as {
        r.push("user");
    }
    if a.limits != b.limits {
        r.push("limits");
    }
    if a.path != b.path {
        r.push("path");
    }
    if a.job != b.job {
        r.push("schedule");
    }
    if a.socket != b.socket {
        r.push("socket");
    }
    r
}

/// What a running unit cannot take without a restart: a recipe's new roles and databases
/// are created in the running server (an update), anything else about a run is a restart.
fn server_part(run: &Run) -> Run {
    match run {
        Run::Recipe { recipe, spec } => Run::Recipe {
            recipe: *recipe,
            spec: spec.server_part(),
        },
        other => other.clone(),
    }
}

pub(crate) fn diff(old: &Plan, new: &Plan) -> PlanDiff {
    let mut d = PlanDiff::default();
    for (name, nu) in &new.units {
        match old.units.get(name) {
            None => d.add.push(name.clone()),
            Some(ou) => {
                let reasons = restart_reasons(ou, nu);
                if !reasons.is_empty() {
                    d.restart.push(Restarted {
                        unit: name.clone(),
                        reasons,
                    });
                } else if ou.run != nu.run
                    || ou.restart != nu.restart
                    || ou.stop_signal != nu.stop_signal
                    || ou.stop_grace_ms != nu.stop_grace_ms
                    || ou.depends_on != nu.depends_on
                    || ou.level != nu.level
                {
                    d.update.push(name.clone());
                } else {
                    d.keep.push(name.clone());
                }
            }
        }
    }
    for name in old.units.keys() {
        if !new.units.contains_key(name) {
            d.remove.push(name.clone());
        }
    }
    for r in &new.routes {
        match old.routes.iter().find(|o| o.key() == r.key()) {
            None => d.routes_added.push(r.key()),
            Some(o) if o != r => d.routes_changed.push(r.key()),
            Some(_) => {}
        }
    }
    for o in &old.routes {
        if !new.routes.iter().any(|r| r.key() == o.key()) {
            d.routes_removed.push(o.key());
        }
    }
    d.edge_changed = old.edge != new.edge;
    d
}
