//! `grove backup`, `grove backups` and `grove restore`: the recipes' data saved with their
//! servers' own tools (`grove_recipes::backup`), into `.grove/backups/` unless `--dir` says
//! where, each file verified and recorded as an event.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use grove_api::{Acted, Record};
use grove_engine::{Status, UnitState};

use crate::runtime::{running_plan, Ctx};

/// The recipe servers of `plan` that `targets` name (all of them when empty).
fn servers(
    plan: &grove_plan::Plan,
    targets: &[String],
) -> Result<Vec<grove_recipes::Server>, String> {
    let names = if targets.is_empty() {
        plan.units.keys().cloned().collect()
    } else {
        grove_engine::resolve(plan, targets).map_err(|e| e.to_string())?
    };
    let root = plan.root.clone();
    let out: Vec<grove_recipes::Server> = names
        .iter()
        .filter_map(|n| plan.units.get(n))
        .filter_map(|u| grove_recipes::Server::of(&plan.stack, &root, u))
        .collect();
    if out.is_empty() {
        return Err(match targets {
            [] => "this stack runs no recipe, so there is nothing to back up".to_string(),
            _ => format!("{} runs no recipe", targets.join(", ")),
        });
    }
    Ok(out)
}

/// Whether each unit runs, as the control socket says (`None`: grove is not running).
async fn running(ctx: &Ctx) -> Option<Vec<(String, bool)>> {
    let status = ctx.client().get::<Status>("/v1/status").await.ok()?;
    Some(
        status
            .units
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    u.pid.is_some() && !matches!(u.state, UnitState::Stopping),
                )
            })
            .collect(),
    )
}

/// Records an event through the running grove (best effort: a backup stands without it).
async fn record(ctx: &Ctx, kind: &str, message: &str) {
    let r = Record {
        kind: kind.to_string(),
        message: message.to_string(),
    };
    let _ = ctx.client().post::<_, Acted>("/v1/record", &r).await;
}

/// The backup folder: `--dir`, else `.grove/backups`.
fn folder(plan: &grove_plan::Plan, dir: Option<&Path>) -> PathBuf {
    match dir {
        Some(d) => d.to_path_buf(),
        None => plan.root.join(&plan.state_dir).join("backups"),
    }
}

/// `grove backup [SERVICE...] [--dir DIR] [--keep N]`.
pub async fn backup(
    ctx: &Ctx,
    targets: Vec<String>,
    dir: Option<&Path>,
    keep: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let plan = match running_plan(ctx)? {
        Ok((_, plan)) => plan,
        Err(code) => return Ok(code),
    };
    let servers = match servers(&plan, &targets) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("grove: {why}");
            return Ok(ExitCode::from(1));
        }
    };
    let Some(units) = running(ctx).await else {
        eprintln!("grove: the stack is not running; a backup is taken from the running servers (`grove up -d`)");
        return Ok(ExitCode::from(1));
    };
    let dir = folder(&plan, dir);
    let stamp = grove_recipes::backup::stamp(std::time::SystemTime::now());
    let mut failed = false;
    for server in &servers {
        if !units.iter().any(|(n, up)| n == &server.unit && *up) {
            eprintln!(
                "grove: {} is not running; start it to back it up",
                server.unit
            );
            failed = true;
            continue;
        }
        match grove_recipes::backup::backup(server, &dir, &stamp) {
            Ok(files) => {
                for b in &files {
                    let what = format!(
                        "{} ({}): {} ({}), verified",
                        server.unit,
                        b.what,
                        b.file.display(),
                        crate::render::bytes(b.bytes)
                    );
                    println!("backed up {what}");
                    record(ctx, "backup", &what).await;
                }
                if let Some(n) = keep {
                    for p in grove_recipes::backup::prune(&dir, &server.unit, &files, n) {
                        println!("removed {} (--keep {n})", p.display());
                    }
                }
            }
            Err(e) => {
                eprintln!("grove: {}: backup failed: {e}", server.unit);
                record(ctx, "backup-failed", &format!("{}: {e}", server.unit)).await;
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `grove backups [--dir DIR]`.
pub fn backups(ctx: &Ctx, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let plan = match running_plan(ctx)? {
        Ok((_, plan)) => plan,
        Err(code) => return Ok(code),
    };
    let dir = folder(&plan, dir);
    let list = grove_recipes::backup::listed(&dir);
    if list.is_empty() {
        println!("no backups in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec!["FILE".to_string(), "SIZE".into()]];
    for (p, bytes) in list {
        rows.push(vec![p.display().to_string(), crate::render::bytes(bytes)]);
    }
    print!("{}", crate::render::table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// `grove restore SERVICE FILE`.
pub async fn restore(ctx: &Ctx, target: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let plan = match running_plan(ctx)? {
        Ok((_, plan)) => plan,
        Err(code) => return Ok(code),
    };
    let server = match servers(&plan, &[target.to_string()]) {
        Ok(s) if s.len() == 1 => s.into_iter().next(),
        Ok(_) => {
            eprintln!("grove: {target} names several servers; name one unit");
            return Ok(ExitCode::from(1));
        }
        Err(why) => {
            eprintln!("grove: {why}");
            return Ok(ExitCode::from(1));
        }
    };
    let Some(server) = server else {
        return Ok(ExitCode::from(1));
    };
    if !file.is_file() {
        eprintln!("grove: {} is not a backup file", file.display());
        return Ok(ExitCode::from(1));
    }
    let up = running(ctx)
        .await
        .unwrap_or_default()
        .iter()
        .any(|(n, up)| n == &server.unit && *up);
    match grove_recipes::backup::restore(&server, file, up) {
        Ok(what) => {
            println!("{what}");
            record(ctx, "restored", &format!("{}: {what}", server.unit)).await;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("grove: {}: restore refused: {e}", server.unit);
            Ok(ExitCode::from(1))
        }
    }
}
