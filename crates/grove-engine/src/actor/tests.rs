//! The actor's decisions without a process: its spawns and kills are recorded, stand-in
//! processes take their place, and the tests report exits and probe results themselves.

use std::time::Duration;

use super::*;

pub(super) fn plan_of(body: &str) -> Plan {
    let text = format!("[stack]\nname = \"t\"\n\n{body}");
    let loaded = grove_config::load_str(
        std::path::Path::new("/nonexistent/grove.toml"),
        &text,
        &grove_config::LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    grove_plan::build(&loaded.stack, None).expect("plan")
}

struct T {
    actor: Actor,
    now: Instant,
    _dir: tempfile::TempDir,
}

fn actor() -> T {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("state.db")).expect("store");
    let (events, _) = broadcast::channel(256);
    let (lines, _) = broadcast::channel(256);
    let mut actor = Actor::new(Arc::new(Mutex::new(store)), events, lines);
    actor.recorded = Some(Vec::new());
    T {
        actor,
        now: Instant::now(),
        _dir: dir,
    }
}

impl T {
    /// What the actor did since the last look.
    fn did(&mut self) -> Vec<String> {
        self.actor
            .recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn settle(&mut self) {
        self.actor.timers(self.now);
        self.actor.schedule(self.now);
    }

    fn apply(&mut self, plan: Plan) -> ApplyReport {
        let report = self.actor.apply(plan, self.now, None);
        self.settle();
        report
    }

    fn gen(&self, key: &str) -> u64 {
        self.actor.units.get(key).map(|rt| rt.gen).unwrap_or(0)
    }

    fn exited(&mut self, key: &str, code: Option<i32>, signal: Option<i32>) {
        let gen = self.gen(key);
        let status = ExitStatus { code, signal };
        let msg = Internal::Exited {
            unit: key.to_string(),
            gen,
            status,
            oom: None,
        };
        self.actor.internal(msg, self.now);
        self.settle();
    }

    fn probe(&mut self, key: &str, result: Result<(), String>) {
        let gen = self.gen(key);
        let msg = Internal::Probe {
            unit: key.to_string(),
            gen,
            result,
        };
        self.actor.internal(msg, self.now);
        self.settle();
    }

    fn intent(&self, key: &str) -> Intent {
        self.actor
            .units
            .get(key)
            .map(|rt| rt.intent.clone())
            .expect("a unit")
    }

    fn keys(&self) -> Vec<String> {
        self.actor.units.keys().cloned().collect()
    }
}

#[test]
fn units_start_in_dependency_order_and_wait_for_a_healthy_dependency() {
    let mut t = actor();
    t.apply(plan_of(
        r#"
[services.db]
command = "db"
port = "auto"
health = { tcp = true }

[services.web]
command = "web"
depends_on = { db = "healthy" }
"#,
    ));
    assert_eq!(t.did(), ["spawn db"]);
    assert_eq!(t.intent("web"), Intent::Start);
    t.probe("db", Err("connection refused".into()));
    assert!(t.did().is_empty(), "web must wait for a healthy db");
    t.probe("db", Ok(()));
    assert_eq!(t.did(), ["spawn web"]);
    assert_eq!(t.intent("web"), Intent::Idle);
}

#[test]
fn a_failed_task_blocks_its_dependents_and_a_completed_one_lets_them_start() {
    let body = r#"
[services.migrate]
command = "migrate"
kind = "task"

[services.web]
command = "web"
depends_on = { migrate = "completed" }
"#;
    let mut t = actor();
    t.apply(plan_of(body));
    assert_eq!(t.did(), ["spawn migrate"]);
    t.exited("migrate", Some(3), None);
    match t.intent("web") {
        Intent::Blocked(why) => assert!(why.starts_with("migrate failed"), "{why}"),
        other => panic!("web is {other:?}"),
    }
    assert!(t.did().is_empty());

    let mut t = actor();
    t.apply(plan_of(body));
    t.did();
    t.exited("migrate", Some(0), None);
    assert_eq!(t.did(), ["spawn web"]);
}

#[test]
fn a_reload_restarts_what_changed_and_removes_what_went() {
    let mut t = actor();
    let first = r#"
[services.web]
command = "web"
env = { V = "1" }

[services.worker]
command = "worker"
"#;
    t.apply(plan_of(first));
    assert_eq!(t.did(), ["spawn web", "spawn worker"]);
    let report = t.apply(plan_of(
        r#"
[services.web]
command = "web"
env = { V = "2" }
"#,
    ));
    assert_eq!(report.removed, ["worker"]);
    assert_eq!(report.restarted.len(), 1, "{report:?}");
    let mut did = t.did();
    did.sort();
    assert_eq!(did, ["kill web", "kill worker"]);
    // Each goes once its process has stopped: web comes back with the new definition, the
    // worker is dropped.
    t.exited("web", None, Some(15));
    assert_eq!(t.did(), ["spawn web"]);
    let env = &t.actor.units["web"].unit.env;
    assert_eq!(env.get("V").map(|v| v.value.as_str()), Some("2"));
    assert!(t.keys().contains(&"worker".to_string()));
    t.exited("worker", None, Some(15));
    assert_eq!(t.keys(), ["web"]);
}

#[test]
fn a_deploy_stages_beside_promotes_and_drains_the_old_generation() {
    let mut t = actor();
    let plan = |v: &str| {
        plan_of(&format!(
            "[services.web]\ncommand = \"web\"\nenv = {{ V = \"{v}\" }}\nroute = {{}}\n"
        ))
    };
    t.apply(plan("1"));
    assert_eq!(t.did(), ["spawn web"]);
    let serving = t.gen("web");
    let next = plan("2");
    let keys = t.actor.stage(&next, &["web".to_string()]).expect("staged");
    t.settle();
    assert_eq!(keys, ["web~next"]);
    assert_eq!(t.did(), ["spawn web~next"]);
    let staged = t.gen("web~next");
    t.actor
        .promote(next, &["web".to_string()], Duration::from_secs(30), t.now);
    t.settle();
    // The staged process now answers to `web`; the serving one drains as `web~old`.
    assert_eq!(t.gen("web"), staged);
    assert_eq!(t.gen("web~old"), serving);
    assert_eq!(
        t.intent("web~old"),
        Intent::DrainUntil(t.now + Duration::from_secs(30))
    );
    assert!(t.did().is_empty(), "nothing stops before the drain ends");
    t.now += Duration::from_secs(31);
    t.settle();
    assert_eq!(t.did(), ["kill web~old"]);
    t.exited("web~old", None, Some(15));
    assert_eq!(t.keys(), ["web"]);
    assert!(t.did().is_empty(), "the new generation keeps running");
}

#[test]
fn a_discarded_stage_stops_and_leaves_the_serving_unit_alone() {
    let mut t = actor();
    let plan = |v: &str| {
        plan_of(&format!(
            "[services.web]\ncommand = \"web {v}\"\nroute = {{}}\n"
        ))
    };
    t.apply(plan("1"));
    t.did();
    t.actor
        .stage(&plan("2"), &["web".to_string()])
        .expect("staged");
    t.settle();
    assert_eq!(t.did(), ["spawn web~next"]);
    t.actor.discard(&["web".to_string()], t.now);
    t.settle();
    assert_eq!(t.did(), ["kill web~next"]);
    t.exited("web~next", None, Some(15));
    assert_eq!(t.keys(), ["web"]);
}

#[test]
fn shutdown_stops_dependents_before_what_they_depend_on() {
    let mut t = actor();
    t.apply(plan_of(
        r#"
[services.db]
command = "db"

[services.web]
command = "web"
depends_on = ["db"]
"#,
    ));
    assert_eq!(t.did(), ["spawn db", "spawn web"]);
    t.actor.begin_shutdown();
    t.settle();
    assert_eq!(t.did(), ["kill web"]);
    assert_eq!(t.intent("db"), Intent::Stop);
    t.exited("web", None, Some(15));
    assert_eq!(t.did(), ["kill db"]);
    t.exited("db", None, Some(15));
    assert!(t.actor.all_down());
}
