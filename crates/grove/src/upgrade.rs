//! `grove upgrade [--binary PATH]`: a hitless upgrade of grove itself. The running grove hands
//! its units and the edge's sockets to a new one started from PATH (by default its own file,
//! which a package upgrade replaced), finishes its requests and ends; the new one adopts every
//! unit without restarting it. This command asks, waits, and reports what changed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use grove_engine::Status;

use crate::runtime::{not_running, wait_until_ready, Ctx};

/// The version a grove binary says it is (`grove --version`), or why it does not run.
fn version_of(binary: &Path) -> Result<String, String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed ({})",
            binary.display(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `grove upgrade`.
pub async fn run(ctx: &Ctx, binary: Option<&Path>, timeout: Duration) -> anyhow::Result<ExitCode> {
    let binary: Option<PathBuf> = match binary {
        Some(b) => {
            Some(std::fs::canonicalize(b).with_context(|| format!("cannot find {}", b.display()))?)
        }
        None => None,
    };
    if let Some(b) = &binary {
        match version_of(b) {
            Ok(v) => println!("upgrading to {v}"),
            Err(e) => {
                eprintln!("grove: {e}; nothing changed");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let client = ctx.client();
    let before = match client.get::<Status>("/v1/status").await {
        Ok(s) => s,
        Err(e) => return Ok(not_running(&e)),
    };
    let asked = grove_api::Handover { binary, pid: None };
    let answer: grove_api::Handover = match client.post("/v1/handover", &asked).await {
        Ok(a) => a,
        Err(e) => return Ok(not_running(&e)),
    };
    let old = answer.pid.unwrap_or(before.pid);
    // The next grove answers on the socket once it has adopted the stack.
    let deadline = Instant::now() + timeout;
    let after = loop {
        match client.get::<Status>("/v1/status").await {
            Ok(s) if s.pid != old => break s,
            _ if Instant::now() > deadline => {
                eprintln!(
                    "grove: no new grove answered within {timeout:?}; see .grove/logs/grove.log (the units run on; `grove up -d` adopts them)"
                );
                return Ok(ExitCode::from(1));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // The units that were not stopped before: a stopped one stays stopped (it is held). A
    // task that was running (a job's run) runs on under the new grove: its end is not the
    // upgrade's to wait for.
    let units: Vec<(String, Option<i32>)> = after
        .units
        .iter()
        .filter(|u| {
            before.units.iter().any(|b| {
                b.name == u.name
                    && b.state != grove_engine::UnitState::Stopped
                    && !(b.kind == grove_engine::UnitKind::Task
                        && b.state == grove_engine::UnitState::Running)
            })
        })
        .map(|u| (u.name.clone(), None))
        .collect();
    let ready = wait_until_ready(&client, &units, timeout).await?;
    // Counted once the new grove has adopted everything (its first answer may precede that).
    let after = client.get::<Status>("/v1/status").await.unwrap_or(after);
    let kept = before
        .units
        .iter()
        .filter(|u| {
            after
                .units
                .iter()
                .any(|a| a.name == u.name && a.pid.is_some() && a.pid == u.pid)
        })
        .count();
    let with_pid = before.units.iter().filter(|u| u.pid.is_some()).count();
    println!(
        "upgraded: grove pid {old} -> {}; {kept} of {with_pid} running units kept their processes",
        after.pid
    );
    Ok(ready)
}
