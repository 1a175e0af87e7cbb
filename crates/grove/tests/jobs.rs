//! Issue 28: scheduled jobs through the real binary: a job runs at its times and not at
//! `up`, a run due while the last one runs is skipped, a long one is stopped at its timeout,
//! `grove jobs` shows them and `grove run` runs one now.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn jobs_run_on_their_schedule_never_twice_at_once_and_within_their_timeout() {
    let s = Stack::new("");
    let ticks = s.path().join("ticks");
    s.write(&format!(
        r#"
[services.tick]
kind = "job"
command = "sh -c 'date +%s%N >> {ticks}'"
schedule = "*/2 * * * * *"

[services.slow]
kind = "job"
command = "sleep 30"
schedule = "* * * * * *"
timeout = "2500ms"

[services.web]
command = "sleep 300"

[defaults]
image = "debian:bookworm-slim"
"#,
        ticks = ticks.display()
    ));
    s.up();
    // `up` starts the service, not the jobs.
    assert!(s.unit("tick")["pid"].is_null());
    wait_until("two runs of tick", 15, || {
        std::fs::read_to_string(&ticks)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    let kinds = |s: &Stack, unit: &str, kind: &str| {
        s.events()
            .iter()
            .filter(|e| e["unit"] == unit && e["kind"] == kind)
            .count()
    };
    // The slow job's next runs are skipped while it runs, and the run is stopped at 2.5 s.
    s.wait_for("a skipped run", 15, |s| {
        kinds(s, "slow", "job-skipped") >= 1
    });
    s.wait_for("the timeout", 15, |s| kinds(s, "slow", "job-timeout") >= 1);
    let out = s.run(&["jobs"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.contains("*/2 * * * * * (UTC)"), "{said}");
    let tick = said
        .lines()
        .find(|l| l.trim_start().starts_with("tick "))
        .unwrap();
    assert!(tick.contains("exited with code 0"), "{said}");
    // `grove run` runs one now, and waits for it; a name that is no job is refused.
    let before = std::fs::read_to_string(&ticks).unwrap().lines().count();
    let out = s.run(&["run", "tick", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&ticks).unwrap().lines().count() > before);
    // Exported as a CronJob (minute precision: the seconds field is noted).
    let out = s.run(&["export", "kubernetes"]);
    let k8s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(k8s.contains("kind: CronJob"), "{k8s}");
    assert!(k8s.contains("schedule: '* * * * *'"), "{k8s}");
    assert!(k8s.contains("concurrencyPolicy: Forbid"), "{k8s}");
    assert!(k8s.contains("activeDeadlineSeconds: 3"), "{k8s}");
    let out = s.run(&["run", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`web` is not a job"),
        "{}",
        text(&out.stderr)
    );
}

/// `concurrency = "allow"`: a run due while the last one runs starts beside it (as
/// `NAME~run2`), each run within the timeout; the extra runs are forgotten once they end,
/// and `grove stop JOB` stops them all.
#[test]
fn an_allowed_job_runs_beside_itself_and_its_extra_runs_survive_an_upgrade_and_end_or_stop_with_it()
{
    let s = Stack::new("");
    let marks = s.path().join("marks");
    s.write(&format!(
        r#"
[services.sweep]
kind = "job"
command = "sh -c 'echo start >> {marks}; sleep 4; echo end >> {marks}'"
schedule = "* * * * * *"
concurrency = "allow"
timeout = "10s"

[services.web]
command = "sleep 300"

[defaults]
image = "debian:bookworm-slim"
"#,
        marks = marks.display()
    ));
    s.up();
    let lines = || std::fs::read_to_string(&marks).unwrap_or_default();
    // Runs overlap: two or more have started before the first has ended.
    wait_until("runs beside each other", 15, || {
        lines().lines().take_while(|l| *l == "start").count() >= 2
    });
    let names = |s: &Stack| -> Vec<String> {
        s.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u["name"].as_str().map(str::to_string))
            .collect()
    };
    s.wait_for("an extra run in ps", 10, |s| {
        names(s).iter().any(|n| n.starts_with("sweep~run"))
    });
    assert!(
        s.events().iter().any(|e| e["kind"] == "job-due"
            && e["unit"]
                .as_str()
                .is_some_and(|u| u.starts_with("sweep~run"))),
        "{:?}",
        s.events()
    );
    // Extra runs end (and are forgotten) on their own; runs complete.
    wait_until("a run that ended", 15, || lines().contains("end"));
    // A reload without the job stops every run of it, its extra runs too, and forgets them.
    s.wait_for("an extra run running", 10, |s| {
        s.ps()["units"].as_array().unwrap().iter().any(|u| {
            u["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("sweep~run"))
                && !u["pid"].is_null()
        })
    });
    // A `grove upgrade` hands the extra runs over with the rest: the next grove adopts
    // each under its name (same pid), and it ends on its own as before.
    let extra = |s: &Stack| -> Option<(String, i64)> {
        s.ps()["units"].as_array().unwrap().iter().find_map(|u| {
            let name = u["name"].as_str().filter(|n| n.starts_with("sweep~run"))?;
            Some((name.to_string(), u["pid"].as_i64()?))
        })
    };
    let (run, pid) = extra(&s).expect("an extra run with a pid");
    let out = s.run(&["upgrade", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kept = s.ps()["units"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == run.as_str() && u["pid"].as_i64() == Some(pid));
    assert!(
        kept || !alive(pid),
        "{run} (pid {pid}) was neither adopted nor had ended: {}",
        s.ps()
    );
    assert!(
        !s.events().iter().any(|e| e["kind"] == "reaped"
            && e["unit"]
                .as_str()
                .is_some_and(|u| u.starts_with("sweep~run"))),
        "an extra run was stopped by the upgrade: {:?}",
        s.events()
    );
    s.wait_for("the extra run ended and forgotten", 15, |s| {
        !alive(pid) && !names(s).contains(&run)
    });
    let export = s.run(&["export", "kubernetes"]);
    s.write("\n[services.web]\ncommand = \"sleep 300\"\n");
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("every run of sweep gone", 15, |s| {
        !names(s).iter().any(|n| n.starts_with("sweep"))
    });
    let gone = lines();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        lines().matches("start").count(),
        gone.matches("start").count()
    );
    // Exported as Kubernetes' Allow.
    assert!(export.status.success(), "{}", text(&export.stderr));
    assert!(text(&export.stdout).contains("concurrencyPolicy: Allow"));
}
