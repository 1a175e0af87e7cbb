//! The Plan: expansion, ports, references, levels, routes, diff, and snapshots of the examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use grove_config::{load, load_str, LoadOptions};
use grove_plan::{build, Condition, Plan, ProbeCheck, Run, Target};

fn plan_of(text: &str) -> Plan {
    let loaded = load_str(
        Path::new("/nonexistent/grove.toml"),
        text,
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    build(&loaded.stack, None).unwrap()
}

const CTS: &str = r#"
[stack]
name = "cts"

[services.db]
recipe = "postgres"

[services.migrate]
command = "migrate --db ${db.url}/cts_${instance}"
kind = "task"
for_each_instance = true
depends_on = { db = "healthy" }

[services.web]
command = "serve --port ${PORT} --cur ${instance.currency}"
for_each_instance = true
replicas = 2
depends_on = { db = "healthy", migrate = "completed" }
health = { http = "/healthz" }
env = { SECRET_KEY = "s3cr3t-value", PREFIX = "${instance.prefix}" }
route = { strip_prefix = true }

[services.reports]
upstreams = ["10.0.0.5:8181", "https://reports.internal:8443"]
route = { prefix = "/reports", host = "Reports.Example.org" }

[instances.turkey]
prefix = "/TR"
currency = "TRY"

[instances.iraq]
prefix = "/IQ/"
currency = "IQD"
"#;

#[test]
fn units_expand_per_instance_and_replica() {
    let plan = plan_of(CTS);
    let names: Vec<&str> = plan.units.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "db",
            "migrate@turkey",
            "migrate@iraq",
            "web@turkey#1",
            "web@turkey#2",
            "web@iraq#1",
            "web@iraq#2"
        ]
    );
    let w = &plan.units["web@iraq#2"];
    assert_eq!(w.instance.as_deref(), Some("iraq"));
    assert_eq!(w.replica, 2);
    let port = w.port.unwrap();
    assert_eq!(
        w.run,
        Run::Command {
            argv: vec![
                "serve".into(),
                "--port".into(),
                port.to_string(),
                "--cur".into(),
                "IQD".into()
            ]
        }
    );
    assert_eq!(w.env["PORT"].value, port.to_string());
    assert_eq!(w.env["PREFIX"].value, "/IQ/");
    assert_eq!(w.env["GROVE_UNIT"].value, "web@iraq#2");
    assert_eq!(w.env["GROVE_INSTANCE"].value, "iraq");
    assert!(w.env["SECRET_KEY"].secret);
}

#[test]
fn ports_are_distinct_stable_and_in_range() {
    let a = plan_of(CTS);
    let b = plan_of(CTS);
    let mut ports: Vec<u16> = a.units.values().filter_map(|u| u.port).collect();
    assert_eq!(
        ports.len(),
        5,
        "db and four web units have ports; tasks none"
    );
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5);
    assert!(ports.iter().all(|p| (20000..=29999).contains(p)));
    assert_eq!(a, b, "the same stack gives the same plan");
}

#[test]
fn adding_an_instance_keeps_the_other_ports() {
    let before = plan_of(CTS);
    let more = CTS.replace(
        "[instances.iraq]",
        "[instances.jordan]\nprefix = \"/JO\"\ncurrency = \"JOD\"\n\n[instances.iraq]",
    );
    let loaded = load_str(
        Path::new("/nonexistent/grove.toml"),
        &more,
        &LoadOptions::default(),
    )
    .unwrap();
    let after = build(&loaded.stack, Some(&before)).unwrap();
    for (name, u) in &before.units {
        assert_eq!(after.units[name].port, u.port, "{name}");
    }
    let d = Plan::diff(&before, &after);
    assert_eq!(
        d.add,
        vec!["migrate@jordan", "web@jordan#1", "web@jordan#2"]
    );
    assert!(d.remove.is_empty() && d.restart.is_empty());
    assert_eq!(d.routes_added, vec!["*/JO"]);
}

#[test]
fn references_resolve_per_unit() {
    let plan = plan_of(CTS);
    let db_port = plan.units["db"].port.unwrap();
    let Run::Command { argv } = &plan.units["migrate@turkey"].run else {
        panic!("a command")
    };
    assert_eq!(
        argv[2],
        format!("postgresql://grove:not-generated-yet-db@127.0.0.1:{db_port}/cts_turkey")
    );
    assert_eq!(plan.units["migrate@turkey"].port, None);
    let Run::Recipe { recipe, spec } = &plan.units["db"].run else {
        panic!("a recipe")
    };
    assert_eq!(*recipe, grove_plan::Recipe::Postgres);
    assert_eq!(spec.data_dir, PathBuf::from(".grove/data/db"));
    // The databases the dependents asked for by URL path, and the administrator's own.
    let names: Vec<(&str, &str)> = spec
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d.owner.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("cts_iraq", "grove"),
            ("cts_turkey", "grove"),
            ("grove", "grove")
        ]
    );
    assert_eq!(plan.units["db"].stop_signal, "SIGINT");
    assert_eq!(
        plan.units["db"].health.as_ref().map(|h| &h.check),
        Some(&ProbeCheck::Recipe)
    );
}

#[test]
fn per_instance_dependencies_join_the_same_instance() {
    let plan = plan_of(CTS);
    let deps: Vec<(String, Condition)> = plan.units["web@iraq#1"]
        .depends_on
        .iter()
        .map(|d| (d.unit.clone(), d.condition))
        .collect();
    assert_eq!(
        deps,
        vec![
            ("db".to_string(), Condition::Healthy),
            ("migrate@iraq".to_string(), Condition::Completed)
        ]
    );
}

#[test]
fn levels_follow_dependencies() {
    let plan = plan_of(CTS);
    assert_eq!(
        plan.levels,
        vec![
            vec!["db".to_string()],
            vec!["migrate@turkey".to_string(), "migrate@iraq".to_string()],
            vec![
                "web@turkey#1".to_string(),
                "web@turkey#2".to_string(),
                "web@iraq#1".to_string(),
                "web@iraq#2".to_string()
            ],
        ]
    );
}

#[test]
fn routes_per_instance_and_remote() {
    let plan = plan_of(CTS);
    let table: Vec<(String, Target, bool)> = plan
        .routes
        .iter()
        .map(|r| (r.key(), r.target.clone(), r.strip_prefix))
        .collect();
    assert_eq!(table.len(), 3);
    assert_eq!(table[0].0, "*/IQ");
    assert_eq!(
        table[0].1,
        Target::Units(vec!["web@iraq#1".into(), "web@iraq#2".into()])
    );
    assert!(table[0].2);
    assert_eq!(table[1].0, "*/TR");
    assert_eq!(table[2].0, "reports.example.org/reports");
    let Target::Remote(ups) = &table[2].1 else {
        panic!("remote")
    };
    assert_eq!(ups[1].to_string(), "https://reports.internal:8443");
}

#[test]
fn redaction_masks_secret_values_everywhere() {
    let plan = plan_of(&CTS.replace("--cur ${instance.currency}", "--key s3cr3t-value"));
    let shown = plan.redacted();
    let json = serde_json::to_string(&shown).unwrap();
    assert!(!json.contains("s3cr3t-value"), "{json}");
    assert_eq!(shown.units["web@iraq#1"].env["SECRET_KEY"].value, "***");
    let Run::Command { argv } = &shown.units["web@iraq#1"].run else {
        panic!()
    };
    assert_eq!(argv[4], "***");
}

fn plan_with_passwords(text: &str) -> Result<Plan, grove_plan::PlanError> {
    let loaded = load_str(
        Path::new("/nonexistent/grove.toml"),
        text,
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let inputs = grove_plan::Inputs {
        ports: Default::default(),
        credentials: grove_plan::credentials_needed(&loaded.stack)
            .into_iter()
            .map(|k| {
                let pw = format!("pw-for-{k}");
                (k, pw)
            })
            .collect(),
        ..Default::default()
    };
    grove_plan::build_with(&loaded.stack, &inputs)
}

const PER_INSTANCE: &str = r#"
[stack]
name = "cts"

[services.db]
recipe = "postgres"
databases = "per-instance"

[services.mq]
recipe = "rabbitmq"

[services.cache]
recipe = "redis"

[services.web]
command = "serve"
for_each_instance = true
env = { DATABASE_URL = "${db.url}", BROKER = "${mq.url}/jobs", CACHE = "${cache.url}/1", PLAIN = "${db.host}" }

[services.admin]
command = "admin"
env = { DATABASE_URL = "${db.url}/admin" }

[instances.turkey]
[instances.iraq]
"#;

#[test]
fn recipes_get_passwords_roles_and_databases_per_instance() {
    let loaded = load_str(
        Path::new("/nonexistent/grove.toml"),
        PER_INSTANCE,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        grove_plan::credentials_needed(&loaded.stack),
        ["cache", "db", "db.iraq", "db.turkey", "mq"]
    );
    let plan = plan_with_passwords(PER_INSTANCE).unwrap();
    let port = |u: &str| plan.units[u].port.unwrap();
    let env = |u: &str, k: &str| plan.units[u].env[k].clone();
    let url = env("web@turkey", "DATABASE_URL");
    assert_eq!(
        url.value,
        format!(
            "postgresql://turkey:pw-for-db.turkey@127.0.0.1:{}/turkey",
            port("db")
        )
    );
    assert!(url.secret, "a URL with a password is secret");
    assert!(!env("web@turkey", "PLAIN").secret);
    assert_eq!(
        env("admin", "DATABASE_URL").value,
        format!(
            "postgresql://grove:pw-for-db@127.0.0.1:{}/admin",
            port("db")
        )
    );
    assert_eq!(
        env("web@iraq", "BROKER").value,
        format!("amqp://grove:pw-for-mq@127.0.0.1:{}/jobs", port("mq"))
    );
    assert_eq!(
        env("web@iraq", "CACHE").value,
        format!("redis://default:pw-for-cache@127.0.0.1:{}/1", port("cache"))
    );
    let Run::Recipe { spec, .. } = &plan.units["db"].run else {
        panic!()
    };
    let roles: Vec<&str> = spec.roles.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(roles, ["turkey", "iraq"]);
    let dbs: Vec<(&str, &str, bool)> = spec
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d.owner.as_str(), d.private))
        .collect();
    assert_eq!(
        dbs,
        [
            ("admin", "grove", false),
            ("grove", "grove", false),
            ("iraq", "iraq", true),
            ("turkey", "turkey", true)
        ]
    );
    let Run::Recipe { spec, .. } = &plan.units["mq"].run else {
        panic!()
    };
    assert_eq!(spec.databases.len(), 1);
    assert_eq!(spec.databases[0].name, "jobs");
    // Redaction hides every password, in the spec and in the variables.
    let json = serde_json::to_string(&plan.redacted()).unwrap();
    assert!(!json.contains("pw-for-"), "{json}");
    assert_eq!(plan.credentials().len(), 5);
}

#[test]
fn a_path_after_a_per_instance_url_and_a_bad_database_name_are_errors() {
    let e = plan_with_passwords(&PER_INSTANCE.replace(
        "DATABASE_URL = \"${db.url}\", BROKER",
        "DATABASE_URL = \"${db.url}/x\", BROKER",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("already names this instance's database"),
        "{e}"
    );
    let e = plan_with_passwords(&PER_INSTANCE.replace("${mq.url}/jobs", "${mq.url}/jobs-1"))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("`/jobs-1` after `${mq.url}` is not a database name grove can create"),
        "{e}"
    );
}

#[test]
fn new_databases_update_a_recipe_without_restarting_it() {
    let base = plan_with_passwords(PER_INSTANCE).unwrap();
    let more = plan_with_passwords(&format!("{PER_INSTANCE}[instances.jordan]\n")).unwrap();
    let d = Plan::diff(&base, &more);
    assert!(d.update.contains(&"db".to_string()), "{d:?}");
    assert!(d.restart.is_empty(), "{d:?}");
    assert_eq!(d.add, ["web@jordan"]);
}

fn edit(text: &str, from: &str, to: &str) -> Plan {
    assert!(text.contains(from), "{from}");
    plan_of(&text.replace(from, to))
}

#[test]
fn diff_every_case() {
    let base = plan_of(CTS);
    assert!(Plan::diff(&base, &base).is_empty());

    // command changed -> restart of that service's units only
    let d = Plan::diff(&base, &edit(CTS, "serve --port", "serve2 --port"));
    let restarted: Vec<&str> = d.restart.iter().map(|r| r.unit.as_str()).collect();
    assert_eq!(
        restarted,
        vec!["web@turkey#1", "web@turkey#2", "web@iraq#1", "web@iraq#2"]
    );
    assert_eq!(d.restart[0].reasons, vec!["command"]);
    assert!(d.keep.contains(&"db".to_string()));

    // env changed
    let d = Plan::diff(&base, &edit(CTS, "s3cr3t-value", "other"));
    assert_eq!(d.restart[0].reasons, vec!["env"]);

    // probe changed
    let d = Plan::diff(&base, &edit(CTS, "/healthz", "/ready"));
    assert_eq!(d.restart[0].reasons, vec!["probe"]);

    // port changed (a fixed port on db, which also changes the URL given to migrate)
    let d = Plan::diff(
        &base,
        &edit(
            CTS,
            "recipe = \"postgres\"",
            "recipe = \"postgres\"\nport = 15432",
        ),
    );
    let db = d.restart.iter().find(|r| r.unit == "db").unwrap();
    assert_eq!(db.reasons, vec!["env", "port"], "PORT is in the env too");
    let mig = d.restart.iter().find(|r| r.unit == "migrate@iraq").unwrap();
    assert_eq!(mig.reasons, vec!["command"]);

    // supervision-only change -> update, no restart
    let d = Plan::diff(
        &base,
        &edit(CTS, "replicas = 2", "replicas = 2\nstop_grace = \"30s\""),
    );
    assert!(d.restart.is_empty());
    assert_eq!(d.update.len(), 4);

    // replicas down -> remove, and renaming (web@x#1 -> web@x) adds
    let d = Plan::diff(&base, &edit(CTS, "replicas = 2\n", ""));
    assert_eq!(
        d.remove,
        vec!["web@turkey#1", "web@turkey#2", "web@iraq#1", "web@iraq#2"]
    );
    assert_eq!(d.add, vec!["web@turkey", "web@iraq"]);
    assert_eq!(d.routes_changed, vec!["*/IQ", "*/TR"]);

    // route removed, edge changed
    let d = Plan::diff(
        &base,
        &edit(
            CTS,
            "route = { prefix = \"/reports\", host = \"Reports.Example.org\" }",
            "",
        ),
    );
    assert_eq!(d.routes_removed, vec!["reports.example.org/reports"]);
    assert!(!d.edge_changed);
    let d = Plan::diff(
        &base,
        &edit(
            CTS,
            "[services.db]",
            "[edge]\nlisten = [\"http://127.0.0.1:18080\"]\n\n[services.db]",
        ),
    );
    assert!(d.edge_changed);
}

fn example(name: &str, env: Option<&str>) -> Plan {
    let root: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "examples",
        name,
        "grove.toml",
    ]
    .iter()
    .collect();
    let opts = LoadOptions {
        environment: env.map(String::from),
        vars: [
            ("DJANGO_SECRET_KEY", "example-secret-key"),
            ("SECRET_KEY", "example-secret-key"),
            ("ACME_EMAIL", "ops@example.org"),
            ("POSTGRES_PASSWORD", "example-password"),
            ("ENVIRONMENT", "development"),
            ("POSTGRES_USER", "channels"),
            ("POSTGRES_DB", "channels"),
            ("SECRET_EMAIL_USER", "noreply@example.org"),
            ("SECRET_EMAIL_USER_PSWD", "example-mail-password"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    };
    let loaded = load(&root, &opts).unwrap_or_else(|e| panic!("{name}: {:#?}", e.errors));
    build(&loaded.stack, None).unwrap().redacted()
}

#[test]
fn example_plans() {
    let mut settings = insta::Settings::clone_current();
    settings.add_redaction(".root", "[root]");
    settings.bind(|| {
        for name in [
            "quickstart",
            "canopy",
            "canopsis",
            "channels",
            "candidates",
            "cts",
        ] {
            insta::assert_yaml_snapshot!(name, example(name, None));
        }
        insta::assert_yaml_snapshot!("candidates-prod", example("candidates", Some("prod")));
        insta::assert_yaml_snapshot!("cts-dev", example("cts", Some("dev")));
        insta::assert_yaml_snapshot!("cts-staging", example("cts", Some("staging")));
    });
}

const RELEASED: &str = r#"
[stack]
name = "app"

[edge]
listen = ["http://127.0.0.1:8080"]
static = { "/static" = "public/", "/media" = "/srv/media" }

[services.db]
recipe = "redis"

[services.web]
command = "python3 app.py ${PORT}"
cwd = "app"
route = { prefix = "/" }

[services.tool]
command = "true"
cwd = "/opt/tool"
kind = "task"
"#;

fn released() -> grove_config::Loaded {
    load_str(
        Path::new("/srv/app/grove.toml"),
        RELEASED,
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.errors))
}

#[test]
fn a_release_moves_application_code_and_static_files_but_not_servers() {
    let loaded = released();
    let stack = &loaded.stack;
    let before = grove_plan::build(stack, None).unwrap();
    let inputs = grove_plan::Inputs {
        ports: before.ports(),
        release: Some(grove_plan::ReleaseInput {
            id: "3-abc1234".into(),
            dir: "/srv/app/.grove/releases/3-abc1234".into(),
        }),
        ..Default::default()
    }
    .with_placeholders(stack);
    let after = grove_plan::build_with(stack, &inputs).unwrap();
    let web = &after.units["web"];
    assert_eq!(
        web.cwd,
        Path::new("/srv/app/.grove/releases/3-abc1234/app"),
        "relative cwd is taken inside the release"
    );
    assert_eq!(web.release.as_deref(), Some("3-abc1234"));
    assert_eq!(web.env["GROVE_RELEASE"].value, "3-abc1234");
    assert_eq!(after.release.as_deref(), Some("3-abc1234"));
    // An absolute folder and a backing server are not part of the release.
    assert_eq!(after.units["tool"].cwd, Path::new("/opt/tool"));
    assert_eq!(after.units["tool"].release, None);
    assert_eq!(after.units["db"].release, None);
    assert!(!after.units["db"].env.contains_key("GROVE_RELEASE"));
    let mounts: Vec<_> = after
        .edge
        .static_mounts
        .iter()
        .map(|m| (m.prefix.as_str(), m.dir.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        mounts,
        vec![
            (
                "/static",
                "/srv/app/.grove/releases/3-abc1234/public/".to_string()
            ),
            ("/media", "/srv/media".to_string()),
        ]
    );
    // The diff restarts the application unit (its folder moved) and keeps the server.
    let diff = Plan::diff(&before, &after);
    assert!(diff
        .restart
        .iter()
        .any(|r| r.unit == "web" && r.reasons.contains(&"cwd")));
    assert!(diff.keep.contains(&"db".to_string()));
}

#[test]
fn avoided_ports_are_never_assigned() {
    let loaded = released();
    let stack = &loaded.stack;
    let before = grove_plan::build(stack, None).unwrap();
    let old = before.units["web"].port.unwrap();
    let mut ports = before.ports();
    ports.shift_remove("web");
    let inputs = grove_plan::Inputs {
        ports,
        avoid: [old].into_iter().collect(),
        ..Default::default()
    }
    .with_placeholders(stack);
    let after = grove_plan::build_with(stack, &inputs).unwrap();
    let new = after.units["web"].port.unwrap();
    assert_ne!(new, old, "the serving generation's port is left to it");
    assert_eq!(after.units["db"].port, before.units["db"].port);
}

#[test]
fn a_deploy_stages_changed_app_units_and_restarts_fixed_ports_in_place() {
    let text = r#"
[stack]
name = "s"

[services.db]
recipe = "postgres"

[services.web]
command = "serve --port ${PORT}"
replicas = 2

[services.admin]
command = "admin --port ${PORT}"
port = 9100

[services.beat]
command = "beat"
replace = "stop-first"

[services.migrate]
command = "migrate"
kind = "task"

[deploy]
repository = "."
before_switch = ["migrate"]
"#;
    let loaded = load_str(
        Path::new("/srv/app/grove.toml"),
        text,
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let stack = &loaded.stack;
    let release = |id: &str| grove_plan::ReleaseInput {
        id: id.into(),
        dir: PathBuf::from(format!("/srv/app/.grove/releases/{id}")),
    };
    let mut inputs = grove_plan::Inputs {
        release: Some(release("1")),
        credentials: [("db".to_string(), "pw-0123456789".to_string())].into(),
        ..Default::default()
    };
    let current = grove_plan::build_with(stack, &inputs).unwrap();
    inputs.release = Some(release("2"));
    inputs.ports = current.ports();
    let next = grove_plan::build_with(stack, &inputs).unwrap();
    let s = grove_plan::staging(&current, &next, &["migrate".to_string()]);
    let mut staged = s.stage.clone();
    staged.sort();
    // The recipe is not the release's code: it stays as it is; `beat` (stop-first) restarts
    // at the switch instead of running twice.
    assert_eq!(staged, ["admin", "migrate", "web#1", "web#2"]);
    let web_ports: Vec<u16> = ["web#1", "web#2"]
        .iter()
        .map(|n| current.units[*n].port.unwrap())
        .collect();
    for p in web_ports.iter().chain([&9100]) {
        assert!(s.avoid.contains(p), "{p} in {:?}", s.avoid);
    }
    // Built again avoiding the serving ports: the web units move, the fixed port cannot.
    inputs.avoid = s.avoid.clone();
    for n in &s.unpin {
        inputs.ports.shift_remove(n);
    }
    let plan = grove_plan::build_with(stack, &inputs).unwrap();
    let mut stage = s.stage;
    let in_place = grove_plan::split_in_place(&current, &plan, &mut stage);
    assert_eq!(in_place, ["admin"]);
    assert_eq!(stage, ["web#1", "web#2", "migrate"]);
    for n in ["web#1", "web#2"] {
        assert!(!web_ports.contains(&plan.units[n].port.unwrap()));
    }
}

#[test]
fn a_reload_stages_only_routed_services_that_are_replaced() {
    let plan = |replicas: u32, env: &str, extra_instance: bool| {
        let text = format!(
            r#"
[stack]
name = "r"

[services.web]
command = "serve --port ${{PORT}}"
replicas = {replicas}
env = {{ V = "{env}" }}
route = {{}}

[services.beat]
command = "beat"
env = {{ V = "{env}" }}

[services.migrate]
command = "migrate"
kind = "task"
env = {{ V = "{env}" }}

[services.api]
command = "api --port ${{PORT}}"
for_each_instance = true
route = {{}}

[instances.a]
prefix = "/a"
{more}
"#,
            more = if extra_instance {
                "[instances.b]\nprefix = \"/b\"\n"
            } else {
                ""
            }
        );
        plan_of(&text)
    };
    let current = plan(1, "1", false);
    // An env change: the routed service is staged; the unrouted one and the task are not
    // (two copies of a singleton must never run at once).
    let s = grove_plan::reload_staging(&current, &plan(1, "2", false));
    assert_eq!(s.stage, ["web"]);
    assert_eq!(s.unpin, ["web"]);
    // A new replica count renames the units: the new ones replace the old, start-first.
    let s = grove_plan::reload_staging(&current, &plan(2, "1", false));
    assert_eq!(s.stage, ["web#1", "web#2"]);
    assert!(s.unpin.is_empty());
    // `web` serves until the switch: its port is not for the new replicas (a CI run saw
    // `web#1~next` crash on it with "Address already in use").
    let web_port = current.units["web"].port.unwrap();
    assert!(s.avoid.contains(&web_port), "{:?}", s.avoid);
    // A new instance replaces nothing: it starts as any added unit, after the rest.
    let s = grove_plan::reload_staging(&current, &plan(1, "1", true));
    assert!(s.stage.is_empty(), "{:?}", s.stage);
}

#[test]
fn replace_overrides_the_default_order() {
    let plan = |env: &str| {
        plan_of(&format!(
            r#"
[stack]
name = "r"

[services.web]
command = "web --port ${{PORT}}"
route = {{}}
replace = "stop-first"
env = {{ V = "{env}" }}

[services.worker]
command = "worker --port ${{PORT}}"
port = "auto"
replace = "start-first"
env = {{ V = "{env}" }}

[services.beat]
command = "beat"
env = {{ V = "{env}" }}
"#
        ))
    };
    let current = plan("1");
    let next = plan("2");
    // A routed service told stop-first is not staged; an unrouted one told start-first is.
    let s = grove_plan::reload_staging(&current, &next);
    assert_eq!(s.stage, ["worker"]);
    let order = |name: &str| grove_plan::start_first(&next, &next.units[name], false);
    assert!(!order("web"));
    assert!(order("worker"));
    assert!(
        !order("beat"),
        "the default for an unrouted service stays stop-first"
    );
}

#[test]
fn a_rolling_replacement_takes_one_replica_at_a_time() {
    let plan = |env: &str, db: bool| {
        plan_of(&format!(
            r#"
[stack]
name = "r"

[services.cache]
command = "cache --port ${{PORT}}"
port = "auto"

[services.web]
command = "web --port ${{PORT}}"
replicas = 3
route = {{}}
env = {{ V = "{env}" }}
{deps}
"#,
            deps = if db { "depends_on = [\"cache\"]" } else { "" }
        ))
    };
    let current = plan("1", false);
    let next = plan("2", false);
    let stage = grove_plan::reload_staging(&current, &next).stage;
    assert_eq!(stage, ["web#1", "web#2", "web#3"]);
    let steps = grove_plan::rolling(&current, &next, &stage);
    let names: Vec<&[String]> = steps.iter().map(|(_, n)| n.as_slice()).collect();
    assert_eq!(names, [["web#1"], ["web#2"], ["web#3"]]);
    // Each step changes one unit more than the last, and nothing else.
    let v = |p: &Plan, n: &str| format!("{:?}", p.units[n].env.get("V"));
    assert_eq!(v(&steps[0].0, "web#1"), v(&next, "web#1"));
    assert_eq!(v(&steps[0].0, "web#2"), v(&current, "web#2"));
    assert_eq!(v(&steps[1].0, "web#2"), v(&next, "web#2"));
    assert_eq!(v(&steps[1].0, "web#3"), v(&current, "web#3"));
    assert_eq!(steps[2].0, next);
    // Units whose dependencies change go together in the last step, which applies them.
    let next = plan("2", true);
    let steps = grove_plan::rolling(&current, &next, &stage);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].1, stage);
    // Nothing staged: one step, the new Plan.
    let steps = grove_plan::rolling(&current, &current, &[]);
    assert_eq!(steps.len(), 1);
    assert!(steps[0].1.is_empty());
}

#[test]
fn max_surge_replaces_that_many_replicas_per_step() {
    let plan = |env: &str| {
        plan_of(&format!(
            r#"
[stack]
name = "r"

[services.web]
command = "web --port ${{PORT}}"
replicas = 5
max_surge = 2
route = {{}}
env = {{ V = "{env}" }}

[services.api]
command = "api --port ${{PORT}}"
replicas = 2
route = {{ prefix = "/api" }}
env = {{ V = "{env}" }}
"#
        ))
    };
    let (current, next) = (plan("1"), plan("2"));
    let stage = grove_plan::reload_staging(&current, &next).stage;
    let steps = grove_plan::rolling(&current, &next, &stage);
    let names: Vec<Vec<String>> = steps.into_iter().map(|(_, n)| n).collect();
    // A batch never mixes services; the last one goes with the whole new Plan.
    assert_eq!(
        names,
        [
            vec!["web#1", "web#2"],
            vec!["web#3", "web#4"],
            vec!["web#5"],
            vec!["api#1"],
            vec!["api#2"],
        ]
    );
}

#[test]
fn a_tls_postgres_url_asks_for_verify_full_after_the_database_name() {
    let p = plan_of(
        r#"
[stack]
name = "t"

[services.db]
recipe = "postgres"
tls = true

[services.web]
command = "web"
env = { A = "${db.url}", B = "${db.url}/app", C = "${db.url}/app?connect_timeout=5" }
"#,
    );
    let env = &p.units["web"].env;
    let port = p.units["db"].port.unwrap();
    let q = "sslmode=verify-full&sslrootcert=/nonexistent/.grove/certs/ca.pem";
    let v = |k: &str| {
        env[k]
            .value
            .split('@')
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(v("A"), format!("127.0.0.1:{port}?{q}"));
    assert_eq!(v("B"), format!("127.0.0.1:{port}/app?{q}"));
    assert_eq!(
        v("C"),
        format!("127.0.0.1:{port}/app?{q}&connect_timeout=5")
    );
    let Run::Recipe { spec, .. } = &p.units["db"].run else {
        panic!("db is a recipe")
    };
    assert!(spec.tls);
    assert!(spec.databases.iter().any(|d| d.name == "app"));
}
