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
