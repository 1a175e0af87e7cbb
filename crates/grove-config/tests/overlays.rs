//! Environments, `.env`, interpolation through the whole loader, and arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{ok, Dir};
use grove_config::{PortSpec, Source, Tls};

const BASE: &str = r#"
[stack]
name = "t"

[edge]
listen = ["http://127.0.0.1:8080"]
hosts = ["a.example.org"]
static = { "/static" = "s/" }

[services.web]
command = "serve --port ${PORT}"
env = { A = "1", B = "2" }
replicas = 2
route = { prefix = "/" }

[services.worker]
command = "work"

[environments.staging]
edge.hosts = ["staging.example.org"]
services.web.env = { B = "staged", C = "3" }
services.web.replicas = 1

[environments.lean]
remove = ["services.worker", "edge.static"]
"#;

fn broken() -> String {
    format!("{BASE}\n[environments.broken]\nremove = [\"services.nothere\"]\n")
}

#[test]
fn tables_merge_arrays_replace_values_replace() {
    let dir = Dir::new(BASE);
    let s = dir.load(Some("staging"), &[]).unwrap().stack;
    assert_eq!(s.environment.as_deref(), Some("staging"));
    assert_eq!(s.edge.hosts, vec!["staging.example.org"]);
    let web = &s.services["web"];
    assert_eq!(web.replicas, 1);
    let env: Vec<(String, String)> = web
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.value.to_string()))
        .collect();
    assert_eq!(
        env,
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "staged".to_string()),
            ("C".to_string(), "3".to_string())
        ]
    );
    assert_eq!(s.edge.static_mounts.len(), 1);
    assert!(s.services.contains_key("worker"));
}

#[test]
fn remove_deletes_before_the_merge() {
    let s = Dir::new(BASE).load(Some("lean"), &[]).unwrap().stack;
    assert!(!s.services.contains_key("worker"));
    assert!(s.edge.static_mounts.is_empty());
}

#[test]
fn removing_something_absent_is_an_error() {
    let err = Dir::new(&broken()).load(Some("broken"), &[]).unwrap_err();
    assert_eq!(
        err,
        vec!["grove.toml:28:11: environments.broken.remove: `services.nothere` is not in the base stack, so it cannot be removed"]
    );
}

#[test]
fn base_check_reports_mistakes_inside_other_environments() {
    let err = Dir::new(&broken()).load(None, &[]).unwrap_err();
    assert_eq!(
        err,
        vec!["grove.toml:28:11: environments.broken.remove: `services.nothere` is not in the base stack, so it cannot be removed (environment broken)"]
    );
}

#[test]
fn unknown_environment_lists_the_known_ones() {
    let dir = Dir::new(BASE);
    let path = dir.path();
    let opts = grove_config::LoadOptions {
        environment: Some("prod".into()),
        vars: Default::default(),
        ..Default::default()
    };
    let err = grove_config::load(&path, &opts).unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].message, "unknown environment `prod`");
    assert_eq!(
        err.errors[0].help.as_deref(),
        Some("known environments: `lean` or `staging`")
    );
}

#[test]
fn sibling_file_overlays_after_the_inline_one() {
    let dir = Dir::new(BASE).file(
        "grove.staging.toml",
        "[services.web]\nreplicas = 3\n[edge]\ntls = \"off\"\n",
    );
    let s = dir.load(Some("staging"), &[]).unwrap().stack;
    assert_eq!(s.services["web"].replicas, 3);
    assert_eq!(s.edge.hosts, vec!["staging.example.org"]);
    assert_eq!(s.edge.tls, Tls::Off);
    let dir = Dir::new(BASE).file("grove.prod.toml", "[services.web]\nreplicas = 4\n");
    let s = dir.load(Some("prod"), &[]).unwrap().stack;
    assert_eq!(s.services["web"].replicas, 4);
    assert!(s.environments.contains(&"prod".to_string()));
}

#[test]
fn errors_in_a_sibling_file_point_into_it() {
    let dir = Dir::new(BASE).file("grove.prod.toml", "[services.web]\nreplicaz = 4\n");
    let err = dir.load(Some("prod"), &[]).unwrap_err();
    assert_eq!(
        err,
        vec!["grove.prod.toml:2:1: services.web.replicaz: unknown key `replicaz`"]
    );
}

#[test]
fn dotenv_feeds_interpolation_and_the_process_wins() {
    let stack = "[stack]\nname = \"t\"\n[services.a]\ncommand = \"run ${WHO} ${WHAT:-default} $${LITERAL}\"\n";
    let dir = Dir::new(stack).file(".env", "WHO=dotenv\nWHAT=fromfile\n");
    let s = dir.load(None, &[]).unwrap().stack;
    let Source::Command(argv) = &s.services["a"].source else {
        panic!("a command")
    };
    let words: Vec<String> = argv.iter().map(|t| t.as_literal().unwrap()).collect();
    assert_eq!(words, vec!["run", "dotenv", "fromfile", "${LITERAL}"]);
    let s = dir.load(None, &[("WHO", "process")]).unwrap().stack;
    let Source::Command(argv) = &s.services["a"].source else {
        panic!("a command")
    };
    assert_eq!(argv[1].as_literal().unwrap(), "process");
}

#[test]
fn unset_variables_warn_and_become_empty() {
    let loaded = ok("[stack]\nname = \"t\"\n[services.a]\ncommand = \"run x${NOPE_UNSET}\"\n");
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0]
        .to_string()
        .ends_with("grove.toml:4:11: warning: services.a.command: variable NOPE_UNSET is not set; using an empty string"));
}

#[test]
fn required_variables_in_other_environments_do_not_fail_the_base() {
    let stack = "[stack]\nname = \"t\"\n[services.a]\ncommand = \"x\"\n[environments.prod]\nservices.a.env = { K = \"${PROD_KEY:?set PROD_KEY}\" }\n";
    let dir = Dir::new(stack);
    assert!(dir.load(None, &[]).is_ok());
    assert_eq!(
        dir.load(Some("prod"), &[]).unwrap_err(),
        vec!["grove.toml:6:24: services.a.env.K: required variable PROD_KEY is not set: set PROD_KEY"]
    );
    assert!(dir.load(Some("prod"), &[("PROD_KEY", "k")]).is_ok());
}

#[test]
fn command_strings_split_like_a_shell_and_variables_stay_one_word() {
    let dir = Dir::new(
        "[stack]\nname = \"t\"\n[services.a]\ncommand = \"sh -c 'echo \\\"a b\\\"' ${ARG}\"\n",
    );
    let s = dir.load(None, &[("ARG", "x y")]).unwrap().stack;
    let Source::Command(argv) = &s.services["a"].source else {
        panic!("a command")
    };
    let words: Vec<String> = argv.iter().map(|t| t.as_literal().unwrap()).collect();
    assert_eq!(words, vec!["sh", "-c", "echo \"a b\"", "x y"]);
}

#[test]
fn defaults_and_secrets() {
    let s = ok(r#"
[stack]
name = "t"
[services.a]
command = ["serve", "--port", "${PORT}"]
env = { DB_PASSWORD = "p", PLAIN = "v", HIDDEN = { value = "h", secret = true } }
[services.b]
command = "b"
kind = "task"
"#)
    .stack;
    let a = &s.services["a"];
    assert_eq!(a.port, PortSpec::Auto);
    assert!(a.env["DB_PASSWORD"].secret);
    assert!(!a.env["PLAIN"].secret);
    assert!(a.env["HIDDEN"].secret);
    let b = &s.services["b"];
    assert_eq!(b.port, PortSpec::None);
    assert_eq!(b.restart.policy, grove_config::RestartPolicy::Never);
    assert_eq!(a.restart.policy, grove_config::RestartPolicy::Always);
    assert_eq!(a.stop_signal, "SIGTERM");
}

mod arbitrary {
    use proptest::prelude::*;

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[stack]\nname = \"t\"\n".to_string()),
            Just("[services.a]\n".to_string()),
            Just("[services.b]\nrecipe = \"redis\"\n".to_string()),
            Just("[edge]\nlisten = [\"https://127.0.0.1:1\"]\n".to_string()),
            Just("[instances.x]\nprefix = \"/x\"\n".to_string()),
            Just("[environments.e]\nremove = [\"services.a\"]\n".to_string()),
            Just("depends_on = [\"b\", \"a\"]\n".to_string()),
            Just("for_each_instance = true\n".to_string()),
            Just("command = \"x ${PORT} ${instance.y} ${b.url}\"\n".to_string()),
            Just("port = 1\n".to_string()),
            Just("health = { tcp = true }\n".to_string()),
            Just("route = { prefix = \"${instance.prefix}\" }\n".to_string()),
            "[a-z_.\\[\\]=\"{}$ \n0-9:-]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = grove_config::load_str(std::path::Path::new("/nonexistent/grove.toml"), &text, &Default::default());
        }

        #[test]
        fn stack_shaped_text_never_panics(parts in proptest::collection::vec(fragment(), 0..12)) {
            let text: String = parts.concat();
            if let Ok(loaded) = grove_config::load_str(std::path::Path::new("/nonexistent/grove.toml"), &text, &Default::default()) {
                // Whatever loads also plans or fails cleanly; never a panic.
                let _ = loaded.stack.services.len();
            }
        }
    }
}

#[test]
fn environments_compose_in_order() {
    // Issue 26, point 1: `--env staging,lean` applies both overlays, the later one last.
    let dir = Dir::new(BASE).file("grove.solo.toml", "[services.web]\nreplicas = 3\n");
    let s = dir.load(Some("staging,lean"), &[]).unwrap().stack;
    assert_eq!(s.environment.as_deref(), Some("staging,lean"));
    assert_eq!(s.edge.hosts, vec!["staging.example.org"]);
    assert!(!s.services.contains_key("worker"), "lean removed it");
    assert!(s.edge.static_mounts.is_empty());
    assert_eq!(s.services["web"].replicas, 1);
    // Order matters: a sibling file after staging sets what staging set.
    let s = dir.load(Some("staging, solo"), &[]).unwrap().stack;
    assert_eq!(s.services["web"].replicas, 3);
    let s = dir.load(Some("solo,staging"), &[]).unwrap().stack;
    assert_eq!(s.services["web"].replicas, 1);
    // Every name must be known.
    let errs = dir.load(Some("staging,nope"), &[]).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown environment `nope`")),
        "{errs:?}"
    );
}

const WEBTIER: &str = r#"
[stack]
name = "t"

[edge]
listen = ["https://127.0.0.1:8443"]
hosts = ["app.example.org"]

[services.web]
command = "web"
route = {}

[environments.webtier.edge]
tls = "acme"
acme_email = "ops@example.org"
"#;

#[test]
fn a_set_value_wins_over_the_file_and_its_environments_and_is_recorded() {
    let d = Dir::new(WEBTIER);
    // Issue 26: `tls = "acme"` in an environment could not be changed without an edit.
    let l = d
        .load_with(
            Some("webtier"),
            &[],
            &["edge.tls=self-signed", "services.web.replicas=3"],
        )
        .unwrap();
    assert_eq!(l.stack.edge.tls, grove_config::Tls::SelfSigned);
    assert_eq!(l.stack.services["web"].replicas, 3);
    let shown: Vec<String> = l
        .stack
        .overrides
        .iter()
        .map(|o| format!("{} = {} ({})", o.path, o.value, o.origin))
        .collect();
    assert_eq!(
        shown,
        [
            "edge.tls = \"self-signed\" (--set)",
            "services.web.replicas = 3 (--set)"
        ]
    );
    // The environment's variables do the same; the command line comes last and wins.
    let l = d
        .load_with(
            Some("webtier"),
            &[
                ("GROVE_SET_edge__tls", "off"),
                ("GROVE_SET_edge__listen", "[\"http://127.0.0.1:8080\"]"),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(l.stack.edge.tls, grove_config::Tls::Off);
    assert_eq!(l.stack.overrides[0].origin, "GROVE_SET_edge__listen");
    let l = d
        .load_with(
            None,
            &[("GROVE_SET_services__web__replicas", "2")],
            &["services.web.replicas=4"],
        )
        .unwrap();
    assert_eq!(l.stack.services["web"].replicas, 4);
}

#[test]
fn a_set_value_is_validated_like_the_file_with_its_origin_as_the_location() {
    let d = Dir::new(WEBTIER);
    let err = d
        .load_with(None, &[], &["services.web.replicas=0"])
        .unwrap_err();
    assert_eq!(
        err,
        ["(--set):1:25: services.web.replicas: 0 is out of range"]
    );
    let err = d
        .load_with(None, &[], &["services.web.replicaz=2"])
        .unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with("(--set):1:14: services.web.replicaz: unknown key"),
        "{err:?}"
    );
    let err = d.load_with(None, &[], &["edge.tls"]).unwrap_err();
    assert_eq!(
        err,
        ["(--set):1:1: `edge.tls`: expected KEY=VALUE, such as --set edge.tls=off"]
    );
}

#[test]
fn defaults_go_under_every_command_service_and_each_service_wins() {
    let d = Dir::new(
        r#"
[stack]
name = "t"

[defaults]
cwd = "app"
image = "ghcr.io/acme/app:1"
path = [".venv/bin"]
env = { DJANGO_SETTINGS_MODULE = "site.settings", LOG = "info" }

[services.web]
command = "gunicorn site.wsgi"
env = { LOG = "debug" }

[services.worker]
command = "celery -A site worker"
cwd = "worker"

[services.cache]
recipe = "redis"

[environments.prod.defaults]
env = { LOG = "warning" }
"#,
    );
    let l = d.load(None, &[]).unwrap();
    let s = &l.stack.services;
    assert!(format!("{:?}", s["web"].env["LOG"].value).contains("debug"));
    assert!(format!("{:?}", s["worker"].env["LOG"].value).contains("info"));
    assert!(s["web"].env.contains_key("DJANGO_SETTINGS_MODULE"));
    assert_eq!(s["worker"].image.as_deref(), Some("ghcr.io/acme/app:1"));
    assert_eq!(s["worker"].path, [std::path::PathBuf::from(".venv/bin")]);
    assert!(format!("{:?}", s["worker"].cwd).contains("worker"));
    assert!(format!("{:?}", s["web"].cwd).contains("app"));
    // A recipe keeps its own settings: no cwd, image or env from [defaults].
    assert!(s["cache"].env.is_empty());
    assert!(s["cache"].image.is_none());
    // An environment changes the defaults like anything else.
    let l = d.load(Some("prod"), &[]).unwrap();
    assert!(format!("{:?}", l.stack.services["worker"].env["LOG"].value).contains("warning"));
}

#[test]
fn what_belongs_to_each_service_is_refused_in_defaults() {
    let d = Dir::new(
        "[stack]\nname = \"t\"\n\n[defaults]\ncommand = \"x\"\nroute = {}\n\n[services.web]\ncommand = \"web\"\n",
    );
    let err = d.load(None, &[]).unwrap_err();
    assert_eq!(
        err,
        [
            "grove.toml:5:1: defaults.command: `command` belongs to each service, not to [defaults]",
            "grove.toml:6:1: defaults.route: `route` belongs to each service, not to [defaults]",
        ]
    );
}
