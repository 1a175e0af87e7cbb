//! `grove export`: every example in every environment exports to Kubernetes manifests that
//! pass `kubernetes-validate --strict` (Kubernetes 1.32 schemas) and to a compose file that
//! passes the Compose Specification's schema (`check-jsonschema`); secrets stay out unless
//! asked for; a service without an image is refused. The validators come from PyPI into
//! `.venv` (scripts/test installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{text, venv_tool, workspace, Stack};

/// Values the examples' environments require, all of them secret-looking, so the test can
/// check none reaches an export.
/// Plain values the examples require (examples/channels' .env keys).
const VARS: [(&str, &str); 4] = [
    ("ENVIRONMENT", "development"),
    ("CANOPY_DB_ALLOW", "10.77.0.0/24"),
    ("POSTGRES_USER", "channels"),
    ("POSTGRES_DB", "channels"),
];

const SECRETS: [(&str, &str); 7] = [
    ("DJANGO_SECRET_KEY", "django-secret-Zq81xW"),
    ("CANOPSIS_SECRET_KEY", "canopsis-secret-Pm20tR"),
    ("CANOPSIS_PASSWORD", "canopsis-pass-Hh37cV"),
    ("POSTGRES_PASSWORD", "postgres-pass-Tt71mB"),
    (
        "CANOPY_DATABASE_URL",
        "postgresql://canopy:db-secret-Lk55bN@10.0.0.9/canopy",
    ),
    ("SECRET_EMAIL_USER", "mail-user-secret-Uu19qA"),
    ("SECRET_EMAIL_USER_PSWD", "mail-pass-secret-Yy62kD"),
];

fn grove(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_grove"));
    c.args(args)
        .current_dir(dir)
        .env_remove("GROVE_ENV")
        .env("NO_COLOR", "1")
        .env("ACME_EMAIL", "ops@example.org");
    for (k, v) in SECRETS.iter().chain(&VARS) {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn environments(file: &Path) -> Vec<Option<String>> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut envs: Vec<Option<String>> = vec![None];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("[environments.") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if !envs.contains(&Some(name.clone())) {
                envs.push(Some(name));
            }
        }
    }
    envs
}

#[test]
fn every_example_in_every_environment_exports_valid_manifests() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut k8s_files = Vec::new();
    let mut compose_files = Vec::new();
    let examples = workspace().join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("grove.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        let dir = examples.join(name);
        for env in environments(&dir.join("grove.toml")) {
            let mut args = vec![];
            if let Some(e) = &env {
                args.extend(["--env", e.as_str()]);
            }
            let label = format!("{name}-{}", env.as_deref().unwrap_or("base"));
            let check = grove(&dir, &[&args[..], &["check"]].concat());
            assert!(
                check.status.success(),
                "check {label}: {}",
                text(&check.stderr)
            );
            let k = grove(&dir, &[&args[..], &["export", "kubernetes"]].concat());
            assert!(k.status.success(), "export {label}: {}", text(&k.stderr));
            let c = grove(&dir, &[&args[..], &["export", "compose"]].concat());
            assert!(c.status.success(), "compose {label}: {}", text(&c.stderr));
            for (out, kind) in [(&k, "k8s"), (&c, "compose")] {
                let body = text(&out.stdout);
                for (_, secret) in SECRETS {
                    assert!(
                        !body.contains(secret),
                        "{label} {kind} leaks a secret:\n{body}"
                    );
                }
                assert!(body.contains(&format!("stack {}", body_stack(&body))));
            }
            claims_are_mounted(&label, &text(&k.stdout));
            let kf = out_dir.path().join(format!("{label}.yaml"));
            std::fs::write(&kf, &k.stdout).unwrap();
            k8s_files.push(kf);
            let cf = out_dir.path().join(format!("{label}.compose.yaml"));
            std::fs::write(&cf, &c.stdout).unwrap();
            compose_files.push(cf);
        }
    }
    validate(&k8s_files, &compose_files);
}

/// Issue 28: every PersistentVolumeClaim the export makes is mounted by a pod (the static
/// files' claim was made and mounted by none, while collectstatic wrote into its own Job).
fn claims_are_mounted(label: &str, body: &str) {
    for doc in body.split("\n---\n") {
        if !doc.contains("\nkind: PersistentVolumeClaim\n") {
            continue;
        }
        let name = doc
            .lines()
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap_or_else(|| panic!("{label}: a claim without a name:\n{doc}"));
        let mounts = body.matches(&format!("claimName: {name}\n")).count();
        // A static mount's claim: its server and the task that fills it, or a note saying
        // to copy the files in when no task writes them.
        let noted = body.contains(&format!("copy the files into the volume {name} "));
        let needed = if name.contains("-static-") && !noted {
            2
        } else {
            1
        };
        assert!(
            mounts >= needed,
            "{label}: the claim {name} is mounted by {mounts} pod(s)"
        );
    }
}

/// Kubernetes manifests through `kubernetes-validate --strict`, compose files through the
/// compose schema (both from the `.venv` scripts/test builds).
fn validate(k8s_files: &[std::path::PathBuf], compose_files: &[std::path::PathBuf]) {
    let v = Command::new(venv_tool("kubernetes-validate"))
        .args(["--strict", "-k", "1.32.0", "--quiet"])
        .args(k8s_files)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "kubernetes-validate:\n{}\n{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    let v = Command::new(venv_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .args(compose_files)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "check-jsonschema:\n{}\n{}",
        text(&v.stdout),
        text(&v.stderr)
    );
}

/// The stack named in an export's header line.
fn body_stack(body: &str) -> String {
    body.lines()
        .next()
        .and_then(|l| l.split("stack ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

const STACK: &str = r#"
[services.db]
recipe = "postgres"
databases = "per-instance"

[services.web]
command = "gunicorn app:wsgi --bind 127.0.0.1:${PORT}"
image = "registry.example.org/app:1"
for_each_instance = true
depends_on = { db = "healthy", migrate = "completed" }
health = { http = "/healthz" }
route = { strip_prefix = true }
env = { DATABASE_URL = "${db.url}", API_TOKEN = { value = "${API_TOKEN}", secret = true } }

[services.migrate]
command = "python manage.py migrate"
image = "registry.example.org/app:1"
kind = "task"
for_each_instance = true
depends_on = { db = "healthy" }
env = { DATABASE_URL = "${db.url}" }

[instances.turkey]
prefix = "/TR"
"#;

#[test]
fn secrets_reach_the_output_only_when_asked() {
    let s = Stack::new("");
    s.write_stack(STACK);
    std::fs::write(s.path().join(".env"), "API_TOKEN=token-from-dotenv-991\n").unwrap();
    let plain = s.run(&["export", "kubernetes"]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let body = text(&plain.stdout);
    assert!(!body.contains("token-from-dotenv-991"), "{body}");
    // The Secrets are there, empty, with the command that fills them.
    assert!(body.contains("kind: Secret"), "{body}");
    assert!(
        body.contains(
            "kubectl create secret generic web-turkey-secrets --from-literal=API_TOKEN=..."
        ),
        "{body}"
    );
    // In-cluster addresses: the URL points at the recipe's Service, its password at the
    // recipe's Secret; the app listens on every interface.
    assert!(
        body.contains("value: postgresql://turkey:$(GROVE_DB_TURKEY_PASSWORD)@db:5432/turkey"),
        "{body}"
    );
    assert!(body.contains("- 0.0.0.0:"), "{body}");
    assert!(
        body.contains("kubectl wait --for=condition=complete")
            || body.contains("- --for=condition=complete"),
        "{body}"
    );
    assert!(
        body.contains("nginx.ingress.kubernetes.io/x-forwarded-prefix: /TR"),
        "{body}"
    );
    // No password was generated just to export.
    assert!(!s.path().join(".grove/secrets/db").exists());

    let with = s.run(&["export", "kubernetes", "--include-secrets"]);
    assert!(with.status.success(), "{}", text(&with.stderr));
    let body = text(&with.stdout);
    assert!(body.contains("API_TOKEN: token-from-dotenv-991"), "{body}");
    let generated = std::fs::read_to_string(s.path().join(".grove/secrets/db.turkey")).unwrap();
    assert!(
        body.contains(&format!("password-turkey: {}", generated.trim())),
        "{body}"
    );

    let compose = text(&s.run(&["export", "compose"]).stdout);
    assert!(!compose.contains("token-from-dotenv-991"));
    assert!(compose.contains("API_TOKEN: ${API_TOKEN}"), "{compose}");
    assert!(
        compose.contains("condition: service_completed_successfully"),
        "{compose}"
    );
    assert!(compose.contains("condition: service_healthy"), "{compose}");
    let compose = text(&s.run(&["export", "compose", "--include-secrets"]).stdout);
    assert!(
        compose.contains("API_TOKEN: token-from-dotenv-991"),
        "{compose}"
    );
}

#[test]
fn a_folder_gets_one_file_per_object() {
    let s = Stack::new("");
    s.write_stack(STACK);
    let out = s.run(&["export", "kubernetes", "-o", "k8s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut files: Vec<String> = std::fs::read_dir(s.path().join("k8s"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        files.contains(&"01-secret-db-credentials.yaml".to_string()),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("-deployment-web-turkey.yaml")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("-job-migrate-turkey.yaml")),
        "{files:?}"
    );
    let first = std::fs::read_to_string(s.path().join("k8s").join(&files[0])).unwrap();
    assert!(
        first.starts_with("# grove export kubernetes: stack"),
        "{first}"
    );
}

#[test]
fn a_service_without_an_image_is_named() {
    let s = Stack::new("");
    s.write_stack(
        "[services.a]\ncommand = \"x\"\n[services.b]\ncommand = \"y\"\nimage = \"b:1\"\n[services.c]\ncommand = \"z\"\n",
    );
    for target in ["kubernetes", "compose"] {
        let out = s.run(&["export", target]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr).trim(),
            "grove: every service that runs a command needs `image = \"...\"` to be exported; missing for: a, c"
        );
        assert!(out.stdout.is_empty());
    }
}

/// Issue 28: what grove now runs (users, limits, jobs, RabbitMQ virtual hosts) reaches both
/// exports, and both still pass their schema checks.
#[test]
fn users_limits_jobs_and_vhosts_export_valid_manifests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grove.toml"),
        r#"
[stack]
name = "ops"

[defaults]
image = "registry.example.org/app:1"

[services.mq]
recipe = "rabbitmq"
databases = ["jobs"]

[services.web]
command = "gunicorn app:wsgi --bind 127.0.0.1:${PORT}"
user = "33"
group = "33"
limits = { memory = "512MB", cpu = 1.5, pids = 200 }
route = { compress = true, targets = { web = 9, canary = 1 }, sticky = true, mirror = { service = "canary", fraction = 0.1 } }

[services.canary]
command = "gunicorn app:wsgi --bind 127.0.0.1:${PORT}"
port = "auto"

[services.report]
command = "python manage.py report"
kind = "job"
schedule = "0 3 * * *"
timezone = "Europe/Paris"
concurrency = "replace"
timeout = "10m"
"#,
    )
    .unwrap();
    let k = grove(dir.path(), &["export", "kubernetes"]);
    assert!(k.status.success(), "{}", text(&k.stderr));
    let c = grove(dir.path(), &["export", "compose"]);
    assert!(c.status.success(), "{}", text(&c.stderr));
    let (kb, cb) = (text(&k.stdout), text(&c.stdout));
    // What could not be mapped is listed at the end, with why.
    let said = text(&c.stderr);
    assert!(said.contains("not mapped, each with why:"), "{said}");
    assert!(
        said.contains("report is a job: compose has no schedule"),
        "{said}"
    );
    // What the edge does per request and no export carries: said, for both.
    for said in [&said, &text(&k.stderr)] {
        for want in [
            "route */'s split (web 9, canary 1, sticky) is not mapped",
            "route */'s mirror to canary (100 per mille) is not mapped",
            "compression (routes */) is not mapped",
        ] {
            assert!(said.contains(want), "no `{want}` in:\n{said}");
        }
    }
    for want in [
        "kind: CronJob",
        "timeZone: Europe/Paris",
        "concurrencyPolicy: Replace",
        "activeDeadlineSeconds: 600",
        "runAsUser: 33",
        "memory: '512000000'",
        "cpu: 1500m",
        "api/vhosts/jobs",
    ] {
        assert!(kb.contains(want), "no `{want}` in:\n{kb}");
    }
    for want in [
        "user: 33:33",
        "mem_limit: 512000000",
        "cpus: 1.5",
        "pids_limit: 200",
        "mq-init:",
        "api/vhosts/jobs",
    ] {
        assert!(cb.contains(want), "no `{want}` in:\n{cb}");
    }
    let kf = dir.path().join("k.yaml");
    std::fs::write(&kf, &k.stdout).unwrap();
    let cf = dir.path().join("c.compose.yaml");
    std::fs::write(&cf, &c.stdout).unwrap();
    validate(&[kf], &[cf]);
}
