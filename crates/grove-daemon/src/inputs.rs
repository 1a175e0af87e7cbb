//! The Plan's inputs and the Plan a running stack gets: the recipes' passwords (from
//! `.grove/secrets/`), sticky ports, the live release, the check that every recipe is
//! installed and every port free.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use grove_config::Stack;
use grove_plan::{Plan, ReleaseInput, Run};
use grove_state::Store;
use indexmap::IndexMap;

use crate::ports;

/// Why the Plan a running stack needs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The recipes' passwords could not be read or kept.
    #[error("cannot keep the recipes' passwords: {0}")]
    Credentials(#[from] grove_state::credentials::CredentialsError),
    /// The stack does not make a Plan.
    #[error(transparent)]
    Plan(#[from] grove_plan::PlanError),
    /// Recipes whose server is not installed: one line per service.
    #[error("{}", .0.join("\n"))]
    RecipesMissing(Vec<String>),
    /// A unit's port is taken (a fixed one, or automatic ones again and again).
    #[error("{0}")]
    Ports(String),
}

impl InputsError {
    /// The text to show: each line as `grove: ...`.
    pub fn shown(&self) -> String {
        self.to_string()
            .lines()
            .map(|l| format!("grove: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The Plan's inputs: `ports`, and the recipes' passwords from `.grove/secrets/`, the missing
/// ones generated there when `generate` (else left out).
pub fn plan_inputs(
    stack: &Stack,
    ports: &IndexMap<String, u16>,
    generate: bool,
) -> Result<grove_plan::Inputs, InputsError> {
    let needed = grove_plan::credentials_needed(stack);
    let dir = stack.root.join(&stack.state_dir).join("secrets");
    let credentials = grove_state::credentials::load(&dir, &needed, generate)?;
    Ok(grove_plan::Inputs {
        ports: ports.clone(),
        credentials,
        ..Default::default()
    })
}

/// The Plan of `stack` with `ports` kept, its passwords and its live release.
pub fn build_plan(stack: &Stack, ports: &IndexMap<String, u16>) -> Result<Plan, InputsError> {
    let mut inputs = plan_inputs(stack, ports, true)?;
    inputs.release = live_release(&stack.root.join(&stack.state_dir));
    Ok(grove_plan::build_with(stack, &inputs)?)
}

/// The Plan of `stack` for a start-first change of `current`: the staged units of
/// `staging` get fresh ports (the serving ones avoided, not kept as their sticky ports), the
/// rest keep theirs; `release` is the release it runs (the live one when `None`). A fresh
/// port another program holds is moved, as at `up`.
pub fn staged_plan(
    stack: &Stack,
    current: &Plan,
    staging: &grove_plan::Staging,
    release: Option<ReleaseInput>,
) -> Result<Plan, InputsError> {
    let release = release.or_else(|| live_release(&stack.root.join(&stack.state_dir)));
    let held = |plan: &Plan| holding(plan, current);
    settle(stack, held, |avoid| {
        let mut inputs = plan_inputs(stack, &current.ports(), true)?;
        inputs.release = release.clone();
        inputs.avoid = avoid.clone();
        inputs.avoid.extend(staging.avoid.iter().copied());
        for n in &staging.unpin {
            inputs.ports.shift_remove(n);
        }
        Ok(inputs)
    })
}

/// The Plan a reload applies: as [`build_plan`] with the running ports, the ports of the units
/// it adds (or moves) checked free first, as at `up`.
pub fn reloaded_plan(stack: &Stack, current: &Plan) -> Result<Plan, InputsError> {
    let release = live_release(&stack.root.join(&stack.state_dir));
    settle(
        stack,
        |plan| holding(plan, current),
        |avoid| {
            let mut inputs = plan_inputs(stack, &current.ports(), true)?;
            inputs.release = release.clone();
            inputs.avoid = avoid.clone();
            Ok(inputs)
        },
    )
}

/// The Plan `up` starts: as [`build_plan`], with every unit's port checked free first. An
/// automatic port another program holds is moved (the store keeps the new one); a fixed one
/// is an error naming the holder. The units in `adopting` (left running by an earlier grove)
/// hold their own ports.
pub fn free_ports_plan(
    stack: &Stack,
    ports: &IndexMap<String, u16>,
    adopting: &[String],
    held_sockets: &[std::net::SocketAddr],
) -> Result<Plan, InputsError> {
    let release = live_release(&stack.root.join(&stack.state_dir));
    settle(
        stack,
        // Units being adopted hold their ports, and so does grove's holder for the
        // socket-activated units whose sockets it kept.
        |plan| {
            let mut held = adopting.to_vec();
            held.extend(plan.units.iter().filter_map(|(n, u)| {
                let addr = u.socket_address()?;
                held_sockets.contains(&addr).then(|| n.clone())
            }));
            held
        },
        |avoid| {
            let mut inputs = plan_inputs(stack, ports, true)?;
            inputs.release = release.clone();
            inputs.avoid = avoid.clone();
            Ok(inputs)
        },
    )
}

/// The most Plans [`settle`] builds before it gives up.
const ROUNDS: usize = 100;

/// The units of `plan` that keep the port they run on in `current`: they hold it themselves.
fn holding(plan: &Plan, current: &Plan) -> Vec<String> {
    plan.units
        .iter()
        .filter(|(n, u)| u.port.is_some() && current.units.get(*n).and_then(|c| c.port) == u.port)
        .map(|(n, _)| n.clone())
        .collect()
}

/// Builds the Plan from `inputs(avoid)` until no unit outside `held(plan)` is given a port
/// another program holds: each round moves every taken automatic port (and never back as a
/// unit's sticky one), so it takes as many rounds as a unit meets taken ports on its way
/// through the range (bounded); a taken fixed one is an error naming the holder.
fn settle(
    stack: &Stack,
    held: impl Fn(&Plan) -> Vec<String>,
    inputs: impl Fn(&BTreeSet<u16>) -> Result<grove_plan::Inputs, InputsError>,
) -> Result<Plan, InputsError> {
    let mut avoid = BTreeSet::new();
    for _ in 0..ROUNDS {
        let mut inputs = inputs(&avoid)?;
        inputs.ports.retain(|_, p| !avoid.contains(p));
        let plan = grove_plan::build_with(stack, &inputs)?;
        match ports::verdict(&ports::taken(&plan, stack, &held(&plan))) {
            ports::Verdict::Free => return Ok(plan),
            ports::Verdict::Refuse(b) => return Err(InputsError::Ports(ports::refusal(&b))),
            ports::Verdict::Avoid(more) => {
                for p in &more {
                    tracing::warn!("port {p} is taken by another program; moving its unit");
                }
                avoid.extend(more);
            }
        }
    }
    Err(InputsError::Ports(
        "the units' ports kept being taken by other programs; try again".into(),
    ))
}

/// Every recipe's binaries are installed (before anything starts); `Err` names what to install.
pub fn recipes_installed(plan: &Plan) -> Result<(), InputsError> {
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for u in plan.units.values() {
        if let Run::Recipe { recipe, .. } = &u.run {
            if seen.contains(recipe) {
                continue;
            }
            seen.push(*recipe);
            if let Err(e) = grove_recipes::preflight(*recipe) {
                errors.push(format!("service `{}`: {e}", u.service));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InputsError::RecipesMissing(errors))
    }
}

/// The live release as the Plan's input, if one is recorded and its folder is still there.
pub fn live_release(state: &Path) -> Option<ReleaseInput> {
    if !state.join("state.db").exists() {
        return None;
    }
    let store = Store::open(&state.join("state.db")).ok()?;
    let id = store.live_release().ok()??;
    let r = store.release(&id).ok()??;
    let dir = PathBuf::from(&r.dir);
    if !dir.is_dir() {
        eprintln!(
            "grove: warning: the folder of release {id} ({}) is gone; running the stack's own folder",
            dir.display()
        );
        return None;
    }
    Some(ReleaseInput { id, dir })
}

/// Every secret value the stack's output could show, for masking what is printed from log
/// files (`grove logs`, the last lines after a failed `up -d`): the Plan's secrets (declared,
/// named like one, or built from one) of `stack` when it loaded, and the recipes' passwords
/// kept in `state/secrets/`, which are masked even when the stack file no longer loads.
pub fn known_secrets(stack: Option<&Stack>, state: &Path) -> Vec<String> {
    let mut secrets = stack
        .and_then(|stack| {
            let inputs = plan_inputs(stack, &IndexMap::new(), false).ok()?;
            grove_plan::build_with(stack, &inputs).ok()
        })
        .map(|plan| plan.secret_values())
        .unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir(state.join("secrets")) {
        for e in dir.flatten() {
            if let Ok(v) = std::fs::read_to_string(e.path()) {
                let v = v.trim();
                if v.len() >= 4 {
                    secrets.push(v.to_string());
                }
            }
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}
