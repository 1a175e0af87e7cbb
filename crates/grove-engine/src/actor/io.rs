//! The actor's effects on the machine: starting a recipe's process, a unit's variables, the
//! pumps that carry output into log files, the leftovers of a killed grove, the cgroup tree.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_plan::{Plan, Unit};
use grove_state::Store;
use grove_supervisor::cgroup;
use grove_supervisor::process::{self, Signal};
use grove_supervisor::{probe, ExitStatus, State};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{broadcast, mpsc};

use super::{Internal, SharedLog};
use crate::status::{LogLine, UnitState};

/// A process's command line and environment.
pub(super) type Launch = (Vec<String>, Vec<(String, String)>);

/// What a unit's process runs: its argv and environment. A recipe unit runs grove itself
/// (`grove __recipe`), which prepares the data folder and then replaces itself with the
/// server, so the unit's pid is the server's.
pub(super) fn launch(stack: &str, root: &std::path::Path, unit: &Unit) -> Result<Launch, String> {
    let owned = |env: Vec<(&str, &str)>| -> Vec<(String, String)> {
        env.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    match &unit.run {
        grove_plan::Run::Command { argv } => {
            let mut env = owned(spawn_env(unit));
            if let Some(path) = search_path(unit, std::env::var("PATH").ok().as_deref()) {
                env.push(("PATH".to_string(), path));
            }
            Ok((argv.clone(), env))
        }
        grove_plan::Run::Recipe { .. } => {
            let Some(server) = grove_recipes::Server::of(stack, root, unit) else {
                return Err(format!("the recipe unit {} has no port", unit.name));
            };
            grove_recipes::preflight(server.recipe).map_err(|e| e.to_string())?;
            let exe = process::own_binary()
                .map_err(|e| format!("cannot find grove's own binary: {e}"))?;
            let job = serde_json::to_string(&server.job()).map_err(|e| e.to_string())?;
            let mut env = owned(spawn_env(unit));
            env.push((grove_recipes::JOB_VAR.to_string(), job));
            Ok((vec![exe.display().to_string(), "__recipe".to_string()], env))
        }
    }
}

/// The unit's `PATH` when its `path` puts folders first: those, then `inherited` (grove's
/// own), so the host's PATH is never copied into the stack file or its exports. `None` when
/// it sets no `path`, or sets `PATH` itself in `env`.
pub(super) fn search_path(unit: &Unit, inherited: Option<&str>) -> Option<String> {
    if unit.path.is_empty() || unit.env.contains_key("PATH") {
        return None;
    }
    let mut parts: Vec<String> = unit.path.iter().map(|p| p.display().to_string()).collect();
    parts.extend(inherited.filter(|p| !p.is_empty()).map(str::to_string));
    Some(parts.join(":"))
}

/// What a running process of the unit is known by: a digest of what its process is (what it
/// runs, where, with which environment, port and release), so a grove that finds a unit left
/// running by an earlier one adopts it only when the stack file still says the same. The
/// supervision settings (probe, restart policy, grace) are left out: they apply to an
/// adopted process as they are, and a newer grove's Plan may carry new ones.
pub(super) fn fingerprint(unit: &Unit) -> String {
    let mut what = serde_json::json!({
        "run": unit.run,
        "cwd": unit.cwd,
        "env": unit.env,
        "port": unit.port,
        "bind": unit.bind,
        "release": unit.release,
    });
    // Only when set, so units that set none keep the fingerprint they had.
    if !unit.run_as.is_default() {
        what["run_as"] = serde_json::json!(unit.run_as);
    }
    if !unit.path.is_empty() {
        what["path"] = serde_json::json!(unit.path);
    }
    if unit.socket {
        what["socket"] = serde_json::json!(true);
    }
    let text = serde_json::to_vec(&what).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &text);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The unit's variables, plus `PYTHONUNBUFFERED=1` unless the unit sets it, so a Python
/// program's output reaches its log line by line instead of dying in a buffer when it crashes.
pub(super) fn spawn_env(unit: &Unit) -> Vec<(&str, &str)> {
    let mut env: Vec<(&str, &str)> = unit
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    if !unit.env.contains_key("PYTHONUNBUFFERED") {
        env.push(("PYTHONUNBUFFERED", "1"));
    }
    env
}

pub(super) fn state_label(s: &State) -> UnitState {
    match s {
        State::Stopped => UnitState::Stopped,
        State::Starting => UnitState::Starting,
        State::Running => UnitState::Running,
        State::Healthy => UnitState::Healthy,
        State::Unhealthy => UnitState::Unhealthy,
        State::Backoff { .. } => UnitState::Backoff,
        State::Completed => UnitState::Completed,
        State::Failed { .. } => UnitState::Failed,
        State::Stopping => UnitState::Stopping,
    }
}

/// How a process ended, in words: `exited with code 1`, `killed by signal 9 (SIGKILL)`.
pub fn describe_exit(s: &ExitStatus) -> String {
    match (s.code, s.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(name) => format!("killed by signal {sig} ({name})"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "exited".to_string(),
    }
}

/// The absolute state folder of a Plan.
pub(crate) fn state_dir(plan: &Plan) -> PathBuf {
    plan.root.join(&plan.state_dir)
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Copies a pipe into the unit's log file and the live line channel until end of file.
pub(super) async fn pump(
    pipe: impl AsyncRead + Unpin,
    stream: &'static str,
    unit: Arc<str>,
    log: Option<SharedLog>,
    lines: broadcast::Sender<LogLine>,
    internal: mpsc::UnboundedSender<Internal>,
) {
    let mut reader = BufReader::with_capacity(4 * 1024, pipe);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        // Lines longer than 64 KiB are cut into pieces rather than buffered without bound.
        let n = match (&mut reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        if let Some(log) = &log {
            let resumed = match log.lock() {
                Ok(mut f) => f.line(stream, &buf).ok().flatten(),
                Err(_) => None,
            };
            if let Some(bytes) = resumed {
                let _ = internal.send(Internal::OutputLost {
                    unit: unit.clone(),
                    bytes,
                });
            }
        }
        if lines.receiver_count() > 0 {
            let text = String::from_utf8_lossy(&buf);
            let _ = lines.send(LogLine {
                unit: unit.clone(),
                stream,
                text: text.trim_end_matches(['\n', '\r']).to_string(),
            });
        }
    }
}

/// Probes a unit for as long as its process runs. Until the first success it probes every
/// 100 ms so a ready unit is seen at once, but reports failures only at the configured
/// interval, so a slow starter is not condemned by the fast polling.
pub(super) async fn probe_loop(
    unit: String,
    gen: u64,
    h: grove_plan::Probe,
    server: Option<grove_recipes::Server>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Internal>,
) {
    let interval = Duration::from_millis(h.interval_ms.max(10));
    let fast = interval.min(Duration::from_millis(100));
    let timeout = Duration::from_millis(h.timeout_ms.max(10));
    let ctx = probe::ExecContext {
        cwd: &cwd,
        env: env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
    };
    let mut seen_healthy = false;
    let mut provisioned = false;
    let mut last_report = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(if seen_healthy { interval } else { fast }).await;
        let result = match &server {
            // A recipe's own readiness check, which also creates its roles and databases the
            // first time it passes (bounded inside).
            Some(s) => grove_recipes::check(s, &mut provisioned).await,
            None => probe::run(&h.check, timeout, &ctx).await,
        };
        let ok = result.is_ok();
        let report = ok || seen_healthy || last_report.elapsed() >= interval;
        if ok {
            seen_healthy = true;
        }
        if report {
            last_report = tokio::time::Instant::now();
            if tx
                .send(Internal::Probe {
                    unit: unit.clone(),
                    gen,
                    result,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// Kills what a previous grove left running (it was killed before it could stop its units),
/// using the pid records in the store, except the units in `adopted` (pids of units the next
/// grove supervises again, with what they started); returns one line per unit that had
/// leftovers.
pub fn reap_leftovers(store: &Store, adopted: &[i32]) -> Vec<String> {
    let mut out = Vec::new();
    // What a killed grove's units left in their cgroups (setsid children and double-forked
    // daemons among them, which their process groups no longer reach).
    if let Ok(Some(base)) = store.get::<String>("cgroup") {
        let tree = cgroup::Tree::at(&base);
        for g in tree.groups() {
            let pids = g.pids();
            if pids.iter().any(|p| adopted.contains(p)) {
                continue;
            }
            let n = g.kill_and_remove();
            if n > 0 {
                let unit = g
                    .dir()
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .and_then(|f| f.rsplit_once('.').map(|(u, _)| u.to_string()))
                    .unwrap_or_default();
                let list: Vec<String> = pids.iter().map(i32::to_string).collect();
                let msg = format!(
                    "reaped {n} leftover process(es) of a previous run: pid {}",
                    list.join(", ")
                );
                let _ = store.append(Some(&unit), "reaped", &msg);
                out.push(format!("{unit}: {msg}"));
            }
        }
        tree.remove_if_empty();
    }
    let Ok(records) = store.processes() else {
        return out;
    };
    for r in records {
        if adopted.contains(&r.pid) {
            continue;
        }
        let left = process::leftovers(r.pid, r.start_ticks);
        if !left.is_empty() {
            let _ = process::signal_group(r.pid, Signal::SIGKILL);
            for p in &left {
                if p.pgid != r.pid {
                    let _ = nix_kill(p.pid);
                }
            }
            let pids: Vec<String> = left.iter().map(|p| p.pid.to_string()).collect();
            let msg = format!(
                "reaped {} leftover process(es) of a previous run: pid {}",
                left.len(),
                pids.join(", ")
            );
            let _ = store.append(Some(&r.unit), "reaped", &msg);
            out.push(format!("{}: {msg}", r.unit));
        }
        let _ = store.forget_process(&r.unit);
    }
    out
}

/// The stack's cgroup tree, recorded in the store so the next grove finds what a killed one
/// left; `None` where this machine or user has none.
pub(super) fn open_cgroups(stack: &str, store: &Arc<Mutex<Store>>) -> Option<cgroup::Tree> {
    let tree = cgroup::Tree::open(stack)?;
    if let Ok(store) = store.lock() {
        let _ = store.set("cgroup", &tree.base().display().to_string());
    }
    Some(tree)
}

pub(super) fn nix_kill(pid: i32) -> std::io::Result<()> {
    process::signal_pid(pid, Signal::SIGKILL)
}
