//! The scheduler of `kind = "job"` units: each job starts at the times its cron schedule
//! names (in its time zone), through the engine like `grove start`. A run due while the last
//! one still runs is skipped (`concurrency = "forbid"`, the default: two runs never
//! overlap, not even across a deploy, which never stages a job), replaces it (`"replace"`)
//! or starts beside it (`"allow"`, as `NAME~run2`); a run longer than its `timeout` is
//! stopped, an extra run too. A recipe's `backup` schedule
//! is kept the same way: its backups are made (and the oldest past `keep` removed) while the
//! server runs, one at a time. Each decision is an event.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use grove_engine::{EngineHandle, Status};
use grove_plan::{Concurrency, Job, Plan};

/// How often the scheduler looks (a schedule names whole seconds at most).
const TICK: Duration = Duration::from_millis(250);

/// What the scheduler does for one job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing (not due, no run to stop).
    Wait,
    /// Start a run.
    Start,
    /// A run is due and the last one runs: skip it.
    Skip,
    /// A run is due and the last one runs: stop it, start anew.
    Replace,
    /// A run is due and the last one runs: start another beside it.
    Overlap,
    /// The run has taken longer than its timeout: stop it.
    Timeout,
}

/// The decision for a job: `due` whether its time came, `running` how long its current run
/// has taken (if one runs).
pub(crate) fn decide(job: &Job, due: bool, running: Option<Duration>) -> Decision {
    if let (Some(ran), Some(limit)) = (running, job.timeout_ms) {
        if ran >= Duration::from_millis(limit) {
            return Decision::Timeout;
        }
    }
    match (due, running, job.concurrency) {
        (false, _, _) => Decision::Wait,
        (true, None, _) => Decision::Start,
        (true, Some(_), Concurrency::Forbid) => Decision::Skip,
        (true, Some(_), Concurrency::Replace) => Decision::Replace,
        (true, Some(_), Concurrency::Allow) => Decision::Overlap,
    }
}

/// How long each unit's current process has run, for the units that have one.
fn running(status: &Status) -> HashMap<&str, Duration> {
    status
        .units
        .iter()
        .filter(|u| u.pid.is_some())
        .map(|u| {
            (
                u.name.as_str(),
                Duration::from_millis(u.uptime_ms.unwrap_or(0)),
            )
        })
        .collect()
}

/// When each schedule (a job's, a recipe's backups) is next due, by unit: recomputed when
/// the schedule changes, forgotten when the unit goes.
#[derive(Default)]
struct Timetable {
    next: HashMap<String, (Job, Option<SystemTime>)>,
}

impl Timetable {
    /// Whether `name`'s schedule `when` is due at `now`; a due one moves on to its next time.
    fn due(&mut self, name: &str, when: &Job, now: SystemTime) -> bool {
        let slot = self
            .next
            .entry(name.to_string())
            .or_insert((when.clone(), None));
        if slot.0 != *when || slot.1.is_none() {
            *slot = (when.clone(), when.next_after(now));
        }
        let due = slot.1.is_some_and(|t| t <= now);
        if due {
            slot.1 = when.next_after(now);
        }
        due
    }

    /// Keeps only the units `keep` says still have such a schedule.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.next.retain(|name, _| keep(name));
    }
}

/// Runs the jobs of whatever Plan the engine runs, until the engine is gone.
pub(crate) async fn run(engine: EngineHandle) {
    let (mut jobs, mut backups) = (Timetable::default(), Timetable::default());
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::time::sleep(TICK).await;
        let (Ok(plan), Ok(status)) = (engine.plan().await, engine.status().await) else {
            return;
        };
        let now = SystemTime::now();
        let runs = running(&status);
        for u in plan.units.values() {
            let Some(job) = &u.job else { continue };
            let due = jobs.due(&u.name, job, now);
            let decision = decide(job, due, runs.get(u.name.as_str()).copied());
            act(&engine, &u.name, job, &decision).await;
            // Its extra runs (`concurrency = "allow"`) have the same timeout.
            let extra = format!("{}{}", u.name, grove_engine::RUN);
            for (key, ran) in runs.iter().filter(|(k, _)| k.starts_with(&extra)) {
                if decide(job, false, Some(*ran)) == Decision::Timeout {
                    act(&engine, key, job, &Decision::Timeout).await;
                }
            }
        }
        for u in plan.units.values() {
            let Some(b) = &u.backup else { continue };
            if backups.due(&u.name, &b.when, now) {
                let up = runs.contains_key(u.name.as_str());
                backup_now(&engine, &plan, u, up, &busy);
            }
        }
        let has =
            |name: &str, f: fn(&grove_plan::Unit) -> bool| plan.units.get(name).is_some_and(f);
        jobs.retain(|n| has(n, |u| u.job.is_some()));
        backups.retain(|n| has(n, |u| u.backup.is_some()));
    }
}

/// Makes a scheduled backup of the recipe unit `u` off the actor's way (one at a time; a
/// backup due while one is made, or while the server is down, is skipped with an event).
fn backup_now(
    engine: &EngineHandle,
    plan: &Plan,
    u: &grove_plan::Unit,
    up: bool,
    busy: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let Some(b) = u.backup.clone() else { return };
    let Some(server) = grove_recipes::Server::of(&plan.stack, &plan.root, u) else {
        return;
    };
    if !up {
        engine.record(
            Some(&u.name),
            "backup-skipped",
            "a backup was due while the server is not running",
        );
        return;
    }
    if busy.swap(true, Ordering::AcqRel) {
        engine.record(
            Some(&u.name),
            "backup-skipped",
            "a backup was due while another is being made",
        );
        return;
    }
    let (engine, busy) = (engine.clone(), busy.clone());
    tokio::task::spawn_blocking(move || {
        let stamp = grove_recipes::backup::stamp(SystemTime::now());
        match grove_recipes::backup::backup(&server, &b.dir, &stamp) {
            Ok(files) => {
                for f in &files {
                    engine.record(
                        Some(&server.unit),
                        "backup",
                        &format!(
                            "{} ({} bytes), verified (scheduled: {})",
                            f.file.display(),
                            f.bytes,
                            b.when.schedule
                        ),
                    );
                }
                for p in grove_recipes::backup::prune(&b.dir, &server.unit, &files, b.keep as usize)
                {
                    engine.record(
                        Some(&server.unit),
                        "backup-removed",
                        &format!("{} (keep {})", p.display(), b.keep),
                    );
                }
            }
            Err(e) => engine.record(Some(&server.unit), "backup-failed", &e.to_string()),
        }
        busy.store(false, Ordering::Release);
    });
}

/// Carries out a decision, with its event.
async fn act(engine: &EngineHandle, name: &str, job: &Job, decision: &Decision) {
    let unit = Some(name);
    let target = vec![name.to_string()];
    match decision {
        Decision::Wait => {}
        Decision::Start => {
            engine.record(
                unit,
                "job-due",
                &format!("its schedule ({}) says now", job.schedule),
            );
            let _ = engine.start_units(target).await;
        }
        Decision::Skip => engine.record(
            unit,
            "job-skipped",
            "a run was due while the last one still runs (concurrency = \"forbid\")",
        ),
        Decision::Replace => {
            engine.record(
                unit,
                "job-replaced",
                "a run was due while the last one still runs: it is stopped for the new one \
                 (concurrency = \"replace\")",
            );
            let _ = engine.restart_units(target).await;
        }
        Decision::Overlap => match engine.run_copy(name).await {
            Ok(Ok(key)) => engine.record(
                Some(&key),
                "job-due",
                &format!(
                    "its schedule ({}) says now; the last run still runs, this one starts \
                     beside it (concurrency = \"allow\")",
                    job.schedule
                ),
            ),
            Ok(Err(why)) => engine.record(unit, "job-skipped", &why),
            Err(_) => {}
        },
        Decision::Timeout => {
            let limit = job.timeout_ms.unwrap_or(0);
            engine.record(
                unit,
                "job-timeout",
                &format!(
                    "still running after its timeout ({} ms): stopping it",
                    limit
                ),
            );
            let _ = engine.stop_units(target).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(concurrency: Concurrency, timeout_ms: Option<u64>) -> Job {
        Job {
            schedule: "* * * * *".into(),
            timezone: None,
            concurrency,
            timeout_ms,
        }
    }

    #[test]
    fn a_due_run_starts_is_skipped_or_replaces_and_a_long_one_times_out() {
        let forbid = job(Concurrency::Forbid, Some(10_000));
        let replace = job(Concurrency::Replace, None);
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(decide(&forbid, false, None), Decision::Wait);
        assert_eq!(decide(&forbid, true, None), Decision::Start);
        assert_eq!(decide(&forbid, true, s(3)), Decision::Skip);
        assert_eq!(decide(&replace, true, s(3)), Decision::Replace);
        assert_eq!(decide(&forbid, false, s(11)), Decision::Timeout);
        assert_eq!(decide(&replace, false, s(3600)), Decision::Wait);
        let allow = job(Concurrency::Allow, Some(10_000));
        assert_eq!(decide(&allow, true, None), Decision::Start);
        assert_eq!(decide(&allow, true, s(3)), Decision::Overlap);
        assert_eq!(decide(&allow, true, s(11)), Decision::Timeout);
    }
}
