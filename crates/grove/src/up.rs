//! `grove up`: in the foreground (the daemon library runs here, its output shown as
//! `unit | line`), detached (`-d`: a background daemon, waited for until every unit is up or
//! one fails), and `grove up SERVICE...` (those and what they depend on; the rest stays
//! stopped, or, on a running stack, they are started).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use grove_engine::Status;

use crate::render;
use crate::runtime::{already_running, known_secrets, Ctx};
use grove_api::Client;
use grove_daemon::make_private_dir;

/// `grove up` in the foreground, or the detached daemon's body (`daemon_child`): the
/// daemon library does the work; this prints.
pub async fn up(
    ctx: &Ctx,
    daemon_child: bool,
    only: Option<Vec<String>>,
) -> anyhow::Result<ExitCode> {
    if !daemon_child {
        if let Some(code) = start_on_running(ctx, only.as_deref().unwrap_or(&[])).await? {
            return Ok(code);
        }
    }
    let loader = ctx.clone();
    let cfg = grove_daemon::Config {
        load: Arc::new(move |env| loader.load_running(env).map(|l| l.stack)),
        env: ctx.env.clone(),
        file: std::fs::canonicalize(&ctx.file).unwrap_or_else(|_| ctx.file.clone()),
        only,
    };
    if daemon_child && !grove_daemon::sd_notify::notifier().enabled() {
        grove_daemon::handover::respawn_on_panic(cfg.file.clone(), cfg.env.clone());
        // For the test of exactly that (debug builds only): panic once, after a while.
        #[cfg(debug_assertions)]
        if let (Some(ms), None) = (
            std::env::var("GROVE_TEST_PANIC_AFTER_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok()),
            std::env::var_os("GROVE_PANICKED"),
        ) {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                panic!("the panic GROVE_TEST_PANIC_AFTER_MS asked for");
            });
        }
    }
    let daemon = match grove_daemon::Daemon::bind(cfg).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}", e.shown());
            return Ok(ExitCode::from(1));
        }
    };
    let printer = if daemon_child {
        None
    } else {
        let names: Vec<String> = daemon.plan().units.keys().cloned().collect();
        Some(tokio::spawn(print_lines(daemon.lines(), names, ctx.color)))
    };
    let result = daemon
        .run(|| {
            if !daemon_child {
                eprintln!(
                    "grove: stopping (Ctrl-C again does not hurry it; each unit gets its grace period)"
                );
            }
        })
        .await;
    if let Some(p) = printer {
        // Let the last lines drain.
        tokio::time::sleep(Duration::from_millis(50)).await;
        p.abort();
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("{}", e.shown());
            Ok(ExitCode::from(1))
        }
    }
}

const PALETTE: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

async fn print_lines(
    mut rx: tokio::sync::broadcast::Receiver<grove_engine::LogLine>,
    names: Vec<String>,
    color: bool,
) {
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(4);
    let colors: HashMap<String, &str> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), PALETTE[i % PALETTE.len()]))
        .collect();
    loop {
        match rx.recv().await {
            Ok(line) => {
                let mut out = std::io::stdout().lock();
                let name = format!("{:<width$}", &*line.unit);
                let _ = if color {
                    let c = colors.get(&*line.unit).copied().unwrap_or("37");
                    if line.stream == "grove" {
                        writeln!(out, "\x1b[{c}m{name} |\x1b[0m \x1b[2m{}\x1b[0m", line.text)
                    } else {
                        writeln!(out, "\x1b[{c}m{name} |\x1b[0m {}", line.text)
                    }
                } else {
                    writeln!(out, "{name} | {}", line.text)
                };
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                println!("grove | ({n} lines not shown; they are in the log files)");
            }
            Err(_) => return,
        }
    }
}

/// `grove up -d`: validate, start the daemon, wait until every unit is up or one fails.
pub async fn up_detached(
    ctx: &Ctx,
    timeout: Duration,
    services: &[String],
) -> anyhow::Result<ExitCode> {
    if let Some(code) = start_on_running(ctx, services).await? {
        return Ok(code);
    }
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(ExitCode::from(1));
        }
    };
    match grove_plan::build(&loaded.stack, None) {
        Err(e) => {
            eprintln!("grove: {e}");
            return Ok(ExitCode::from(1));
        }
        Ok(plan) if !services.is_empty() => {
            if let Err(e) = grove_engine::resolve(&plan, services) {
                eprintln!("grove: {e}");
                return Ok(ExitCode::from(1));
            }
        }
        Ok(_) => {}
    }
    let state = loaded.state;
    make_private_dir(&state)?;
    let socket = state.join("grove.sock");
    let client = Client::new(&socket);
    if already_running(&client).await {
        return Ok(ExitCode::from(1));
    }
    // Reap here rather than in the daemon, so the user sees what was left behind; under the
    // stack's lock, so two starts at once never touch the store together (the daemon takes
    // the lock again once it runs).
    let lock = match grove_daemon::lock_stack(&state).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}", e.shown());
            return Ok(ExitCode::from(1));
        }
    };
    {
        let (store, damaged) = grove_daemon::state::open_checked_store(&state)?;
        if let Some(note) = &damaged {
            eprintln!("grove: {note}");
            let _ = store.append(None, "store-reset", note);
        }
        // Leftovers are the daemon's to reap: it first adopts the units that outlived the
        // last grove.
    }
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join("grove.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the grove binary")?;
    let file = std::fs::canonicalize(&ctx.file).unwrap_or_else(|_| ctx.file.clone());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(grove_daemon::handover::daemon_child_args(
        &file,
        ctx.env.as_deref(),
        Some(services),
    ));
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    drop(lock);
    let progress = crate::progress::Progress::start(&state, ctx.err_color);
    let mut child = cmd.spawn().context("cannot start the grove daemon")?;
    let began = Instant::now();
    let deadline = began + timeout;
    // Wait for the socket.
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("grove: the daemon exited at once ({status}); its log says:");
            print_file_tail_from(&log_path, start_len);
            return Ok(ExitCode::from(1));
        }
        match client.get::<Status>("/v1/status").await {
            Ok(s) if s.pid == child.id() => break,
            // Another `up -d` won the race: its daemon answers, ours is refused by the
            // stack's lock. Never report the other one's start as ours.
            Ok(s) => {
                let _ = child.wait();
                eprintln!(
                    "{}",
                    grove_daemon::DaemonError::AlreadyRunning(s.pid).shown()
                );
                return Ok(ExitCode::from(1));
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                eprintln!("grove: the daemon did not answer within {timeout:?}: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    // Wait for the units. The child is the daemon; it outlives us.
    drop(child);
    let mut summary = None;
    let result = loop {
        let status = match client.get::<Status>("/v1/status").await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("grove: lost the daemon while starting: {e}");
                print_file_tail_from(&log_path, start_len);
                break Ok(ExitCode::from(1));
            }
        };
        let failed: Vec<_> = status.units.iter().filter(|u| u.is_failed()).collect();
        if !failed.is_empty() {
            report_failed(ctx, &state, &failed);
            break Ok(ExitCode::from(1));
        }
        if status.units.iter().all(|u| u.is_settled_ok()) {
            summary = Some(format!(
                "{}started in {} ms; `grove logs -F` follows the output, `grove down` stops it",
                render::ps(&status, ctx.color),
                began.elapsed().as_millis()
            ));
            break Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            report_late(&status, timeout);
            break Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    progress.finish().await;
    if let Some(s) = summary {
        println!("{s}");
    }
    result
}

/// Says which units failed, why, and their last log lines.
fn report_failed(ctx: &Ctx, state: &Path, failed: &[&grove_engine::UnitStatus]) {
    for u in failed {
        eprintln!(
            "grove: {} {}: {}",
            u.name,
            u.state,
            u.reason.as_deref().unwrap_or("no reason recorded")
        );
        let lines =
            grove_supervisor::logs::tail(&state.join("logs").join(format!("{}.log", u.name)), 10)
                .unwrap_or_default();
        if !lines.is_empty() {
            let secrets = known_secrets(ctx);
            eprintln!("  last lines of its log:");
            for l in lines {
                eprintln!("  | {}", grove_plan::scrub(&l, &secrets));
            }
        }
    }
    eprintln!("grove: the rest keeps running; see `grove ps`, stop it all with `grove down`");
}

/// Says which units are not up after `timeout`, and how their probes fare.
fn report_late(status: &Status, timeout: Duration) {
    eprintln!("grove: not every unit is up after {} s:", timeout.as_secs());
    for u in status.units.iter().filter(|u| !u.is_settled_ok()) {
        let probe = u
            .probe
            .as_ref()
            .map(|p| format!("; probe {p}"))
            .unwrap_or_default();
        let why = u
            .reason
            .as_ref()
            .map(|r| format!(" failed: {r}"))
            .unwrap_or_default();
        eprintln!("  {} is {}{probe}{why}", u.name, u.state);
    }
    eprintln!("grove: it keeps trying; see `grove ps`, stop it all with `grove down`");
}

fn print_file_tail_from(path: &Path, from: u64) {
    if let Ok(text) = std::fs::read(path) {
        let start = usize::try_from(from).unwrap_or(0).min(text.len());
        let text = String::from_utf8_lossy(&text[start..]);
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("  | {l}");
        }
    }
}

/// `grove up SERVICE...` on a stack that runs already: starts those and what they depend on,
/// and returns once they are ready (`Some(exit code)`). `None` when nothing runs (or no
/// service was named: a plain `grove up` on a running stack says it runs).
async fn start_on_running(ctx: &Ctx, services: &[String]) -> anyhow::Result<Option<ExitCode>> {
    if services.is_empty() || ctx.client().get::<Status>("/v1/status").await.is_err() {
        return Ok(None);
    }
    let loaded = match ctx.load_running(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(Some(ExitCode::from(1)));
        }
    };
    let plan = match grove_plan::build(&loaded.stack, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("grove: {e}");
            return Ok(Some(ExitCode::from(1)));
        }
    };
    let wanted = match grove_engine::resolve(&plan, services) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("grove: {e}");
            return Ok(Some(ExitCode::from(1)));
        }
    };
    let targets: Vec<String> = grove_plan::with_dependencies(&plan, &wanted)
        .into_iter()
        .filter(|u| plan.units.get(u).is_some_and(|u| u.job.is_none()))
        .collect();
    crate::runtime::act(ctx, "start", targets, Some(Duration::from_secs(120)))
        .await
        .map(Some)
}
