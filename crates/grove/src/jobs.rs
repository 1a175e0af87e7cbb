//! `grove jobs` and `grove run JOB`: the scheduled jobs, their last and next runs, and a run
//! now.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use grove_api::{Acted, Targets};
use grove_engine::{Status, UnitState};

use crate::runtime::{not_running, Ctx};

/// The running stack's jobs (name, job), from the control socket's Plan, and its status.
async fn jobs(ctx: &Ctx) -> Result<(Vec<(String, grove_plan::Job)>, Status), ExitCode> {
    let client = ctx.client();
    let plan = client
        .get::<serde_json::Value>("/v1/plan")
        .await
        .map_err(|e| not_running(&e))?;
    let status = client
        .get::<Status>("/v1/status")
        .await
        .map_err(|e| not_running(&e))?;
    let mut out = Vec::new();
    for (name, u) in plan["units"].as_object().into_iter().flatten() {
        if u.get("job").is_some_and(|j| !j.is_null()) {
            if let Ok(job) = serde_json::from_value::<grove_plan::Job>(u["job"].clone()) {
                out.push((name.clone(), job));
            }
        }
    }
    Ok((out, status))
}

/// `grove jobs`: each job's schedule, state, last run and its outcome, and next run.
pub async fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (jobs, status) = match jobs(ctx).await {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    if jobs.is_empty() {
        println!("this stack has no job (kind = \"job\" with a schedule)");
        return Ok(ExitCode::SUCCESS);
    }
    let store = grove_daemon::read_store(&ctx.state_dir()).ok().flatten();
    let mut rows = vec![[
        "JOB", "SCHEDULE", "STATE", "LAST RUN", "OUTCOME", "NEXT RUN",
    ]
    .map(String::from)
    .to_vec()];
    for (name, job) in &jobs {
        let state = status
            .units
            .iter()
            .find(|u| &u.name == name)
            .map(|u| u.state.to_string())
            .unwrap_or_else(|| "-".into());
        // The last run is its last exit.
        let last = store.as_ref().and_then(|s| {
            s.last_events(200, std::slice::from_ref(name))
                .ok()?
                .into_iter()
                .find(|e| e.kind == "exited")
        });
        let (when, outcome) = match last {
            Some(e) => (crate::history::format_ts(e.ts_ms), e.message),
            None => ("-".to_string(), "-".to_string()),
        };
        let next = job
            .next_after(SystemTime::now())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "-".into());
        let schedule = match &job.timezone {
            Some(tz) => format!("{} ({tz})", job.schedule),
            None => format!("{} (UTC)", job.schedule),
        };
        rows.push(vec![name.clone(), schedule, state, when, outcome, next]);
    }
    print!("{}", crate::render::table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// `grove run JOB [--wait]`: a run now, outside the schedule (refused while one runs, as the
/// schedule would skip it); with `--wait`, until it ends, exiting 1 when it failed.
pub async fn run(ctx: &Ctx, name: &str, wait: Option<Duration>) -> anyhow::Result<ExitCode> {
    let (jobs, status) = match jobs(ctx).await {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    if !jobs.iter().any(|(n, _)| n == name) {
        let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "grove: `{name}` is not a job (jobs: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return Ok(ExitCode::from(1));
    }
    let before = status.units.iter().find(|u| u.name == name);
    if before.is_some_and(|u| u.pid.is_some()) {
        eprintln!("grove: {name} is running; its next run starts once this one ends");
        return Ok(ExitCode::from(1));
    }
    let client = ctx.client();
    let targets = Targets {
        targets: vec![name.to_string()],
    };
    if let Err(e) = client.post::<_, Acted>("/v1/start", &targets).await {
        return Ok(not_running(&e));
    }
    println!("started {name}");
    let Some(limit) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let started = Instant::now();
    let mut seen_running = false;
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(s) = client.get::<Status>("/v1/status").await else {
            continue;
        };
        let Some(u) = s.units.iter().find(|u| u.name == name) else {
            continue;
        };
        seen_running |= u.pid.is_some();
        match (u.pid, u.state) {
            (None, UnitState::Completed)
                if seen_running || started.elapsed() > Duration::from_secs(1) =>
            {
                println!("{name} completed");
                return Ok(ExitCode::SUCCESS);
            }
            (None, UnitState::Failed)
                if seen_running || started.elapsed() > Duration::from_secs(1) =>
            {
                eprintln!(
                    "grove: {name} failed: {}",
                    u.reason.as_deref().unwrap_or("see `grove logs`")
                );
                return Ok(ExitCode::from(1));
            }
            _ => {}
        }
    }
    eprintln!(
        "grove: {name} still runs after {}",
        humantime::format_duration(limit)
    );
    Ok(ExitCode::from(1))
}
