//! The seeds' stacks for real (issue 10): each example under `examples/` copied to a temp
//! folder and run with its real parts, driven over HTTP(S) as a user would, and stopped
//! leaving nothing behind. Python packages come from the workspace's `.venv` (scripts/test
//! builds it from examples/requirements.txt); servers from Debian's packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{alive, free_port, text, wait_until, workspace};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == ".grove"
            || name == "collected-static"
            || name == "staticfiles"
            || name == "__pycache__"
        {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// An example running from a private copy, with its own stack name and ports.
struct Example {
    dir: tempfile::TempDir,
    name: String,
    env: Vec<(String, String)>,
}

impl Example {
    fn new(example: &str, env: &[(&str, String)]) -> Example {
        let venv = workspace().join(".venv/bin");
        assert!(
            venv.join("gunicorn").exists(),
            "the example apps' venv is missing: scripts/test builds .venv from examples/requirements.txt"
        );
        let dir = tempfile::tempdir().unwrap();
        // As root, PostgreSQL runs as `postgres`, which must be able to enter the folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        copy_dir(&workspace().join("examples").join(example), dir.path());
        let name = format!("{example}{}", std::process::id());
        let file = dir.path().join("grove.toml");
        let toml = std::fs::read_to_string(&file).unwrap();
        let toml = toml.replacen(
            &format!("name = \"{example}\""),
            &format!("name = \"{name}\""),
            1,
        );
        std::fs::write(&file, toml).unwrap();
        let path = format!(
            "{}:{}",
            venv.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut all = vec![("PATH".to_string(), path)];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Example {
            dir,
            name,
            env: all,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `grove up -d` with `args` (and up to three minutes to start); asserts it worked.
    fn up(&self, args: &[&str]) {
        let out = self.grove(&[&["up", "-d", "--wait-timeout", "180s"], args].concat());
        assert!(
            out.status.success(),
            "up failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Rewrites the copied stack file.
    fn edit(&self, f: impl FnOnce(String) -> String) {
        let file = self.path().join("grove.toml");
        let toml = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, f(toml)).unwrap();
    }

    fn grove(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_grove"));
        c.args(args)
            .current_dir(self.path())
            .env_remove("GROVE_ENV")
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn ps(&self) -> serde_json::Value {
        let out = self.grove(&["ps", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn pid(&self, unit: &str) -> Option<i64> {
        self.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == unit)
            .and_then(|u| u["pid"].as_i64())
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.grove(&["down"]);
        for pid in common::stack_processes(&self.name) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// GET over HTTPS to localhost:`port` with curl, trusting the stack's local CA; (status, body).
fn https_get(ca: &Path, port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn json_body(body: &str) -> serde_json::Value {
    // Chunked or not: the JSON object is between the first `{` and the last `}`.
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map(|i| i + 1).unwrap_or(body.len());
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn cts_three_instances_with_their_own_databases_and_a_fourth_by_reload() {
    let http = free_port();
    let https = free_port();
    let ex = Example::new(
        "cts",
        &[
            ("CTS_HTTP_PORT", http.to_string()),
            ("CTS_HTTPS_PORT", https.to_string()),
        ],
    );
    ex.up(&[]);
    let ca = ex.path().join(".grove/certs/ca.pem");
    let tls = ca.as_path();

    // Each instance under its prefix, with its own settings, role and database.
    for (prefix, instance, name, currency) in [
        ("/TR", "turkey", "Turkey", "TRY"),
        ("/IQ", "iraq", "Iraq", "IQD"),
        ("/JO", "jordan", "Jordan", "JOD"),
    ] {
        let (code, page) = https_get(tls, https, &format!("{prefix}/"));
        assert_eq!(code, 200, "{prefix}: {page}");
        assert!(page.contains(&format!("<h1>CTS {name}</h1>")), "{page}");
        assert!(page.contains(&format!("currency {currency}")), "{page}");
        // Django builds URLs with the prefix the edge stripped.
        assert!(
            page.contains(&format!("href=\"{prefix}/visits\"")),
            "{page}"
        );
        let (code, body) = https_get(tls, https, &format!("{prefix}/visits"));
        assert_eq!(code, 200, "{body}");
        let v = json_body(&body);
        assert_eq!(v["instance"], instance);
        assert_eq!(v["database"], instance);
        assert_eq!(v["user"], instance);
    }
    // Isolation: Turkey's visits do not count in Iraq.
    for _ in 0..3 {
        https_get(tls, https, "/TR/visits");
    }
    let tr = json_body(&https_get(tls, https, "/TR/visits").1);
    let iq = json_body(&https_get(tls, https, "/IQ/visits").1);
    assert_eq!(tr["visits"], 6, "{tr}");
    assert_eq!(iq["visits"], 3, "{iq}");
    // Memcached keeps a counter per instance (its key prefix).
    assert_eq!(tr["cached_hits"], 6, "{tr}");
    // Static files come from the edge; HTTP redirects to HTTPS.
    let (code, svg) = https_get(tls, https, "/static/cts/logo.svg");
    assert_eq!(code, 200);
    assert!(svg.contains("<svg"), "{svg}");
    let mut plain = TcpStream::connect(("127.0.0.1", http)).unwrap();
    write!(
        plain,
        "GET /TR/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = plain.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 308"), "{reply}");

    // The seed's `fab staging instance:iraq manage_shell`.
    let out = ex.grove(&[
        "exec",
        "web@iraq",
        "--",
        "python3",
        "manage.py",
        "shell",
        "-c",
        "from country.models import Visit; from django.db import connection; print(connection.settings_dict['NAME'], Visit.objects.count())",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "iraq 3");

    // A fourth instance, by reload: its database, migration and route appear; the others keep
    // their processes.
    let before: Vec<i64> = ["db", "cache", "web@turkey", "web@iraq", "web@jordan"]
        .iter()
        .map(|u| ex.pid(u).unwrap())
        .collect();
    std::fs::write(
        ex.path().join("app/cts/settings/syria.py"),
        "from .base import *  # noqa: F401,F403\n",
    )
    .unwrap();
    let file = ex.path().join("grove.toml");
    let mut toml = std::fs::read_to_string(&file).unwrap();
    toml = toml.replacen(
        "[instances.jordan]",
        "[instances.syria]\nprefix = \"/SY\"\nname = \"Syria\"\ncurrency = \"SYP\"\nlanguage = \"ar\"\n\n[instances.jordan]",
        1,
    );
    std::fs::write(&file, toml).unwrap();
    let out = ex.grove(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let start = Instant::now();
    let mut sy = (0, String::new());
    while start.elapsed() < Duration::from_secs(60) {
        sy = https_get(tls, https, "/SY/visits");
        if sy.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(sy.0, 200, "{}", sy.1);
    let v = json_body(&sy.1);
    assert_eq!(
        (v["name"].as_str(), v["database"].as_str()),
        (Some("Syria"), Some("syria"))
    );
    let after: Vec<i64> = ["db", "cache", "web@turkey", "web@iraq", "web@jordan"]
        .iter()
        .map(|u| ex.pid(u).unwrap())
        .collect();
    assert_eq!(before, after, "untouched units were restarted");

    // The seed's Fabric deploy: a new commit of the app released beside the running
    // instances, each instance migrated first, the static files taken from the release.
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(ex.path())
            .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    std::fs::write(
        ex.path().join(".gitignore"),
        ".grove/\napp/collected-static/\n",
    )
    .unwrap();
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "v1"]);
    let views = ex.path().join("app/country/views.py");
    let code = std::fs::read_to_string(&views).unwrap();
    std::fs::write(&views, code.replace("<h1>CTS ", "<h1>CTS v2 ")).unwrap();
    git(&["commit", "-q", "-am", "v2"]);
    let out = ex.grove(&["deploy", "--ref", "HEAD"]);
    assert!(
        out.status.success(),
        "deploy failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for (prefix, name) in [("/TR/", "Turkey"), ("/SY/", "Syria")] {
        let (code, body) = https_get(tls, https, prefix);
        assert_eq!(code, 200);
        assert!(body.contains(&format!("<h1>CTS v2 {name}")), "{body}");
    }
    let (code, _) = https_get(tls, https, "/static/cts/logo.svg");
    assert_eq!(code, 200);
    assert_eq!(
        &before[..2],
        &[ex.pid("db").unwrap(), ex.pid("cache").unwrap()]
    );
    let web = ex.ps()["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "web@iraq")
        .cloned()
        .unwrap();
    assert!(web["release"].as_str().unwrap().starts_with("1-"), "{web}");

    // Down leaves nothing behind.
    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!before.iter().any(|p| alive(*p)));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}

/// curl over HTTPS to localhost:`port` trusting the stack's CA, with extra arguments;
/// (status, body).
fn https_call(ca: &Path, port: u16, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn canopsis_events_flow_from_the_api_through_rabbitmq_into_the_store_and_kill_9_heals() {
    let http = free_port();
    let https = free_port();
    let ex = Example::new(
        "canopsis",
        &[
            ("CANOPSIS_HTTP_PORT", http.to_string()),
            ("CANOPSIS_HTTPS_PORT", https.to_string()),
            ("COLLECTD_INTERVAL", "1".to_string()),
        ],
    );
    ex.up(&[]);
    let ca = ex.path().join(".grove/certs/ca.pem");

    // hypcontrol's three groups: each starts in parallel once the one before is up.
    let events: Vec<serde_json::Value> = text(&ex.grove(&["events", "--json", "-n", "500"]).stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |unit: &str, kind: &str| {
        events
            .iter()
            .position(|e| e["unit"] == unit && e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} for {unit}: {events:#?}"))
    };
    let group1_up = at("store", "healthy").max(at("rabbitmq", "healthy"));
    assert!(
        at("store", "started") < at("rabbitmq", "healthy"),
        "group 1 in parallel"
    );
    assert!(
        at("rabbitmq", "started") < at("store", "healthy"),
        "group 1 in parallel"
    );
    for u in ["collectd", "amqp2engines"] {
        assert!(at(u, "started") > group1_up, "{u} before group 1 was up");
    }
    assert!(
        at("webserver", "started") > at("collectd", "started").max(at("amqp2engines", "started"))
    );

    // The API has its own authentication.
    let (code, _) = https_call(&ca, https, "/api/events", &[]);
    assert_eq!(code, 401);
    let (code, _) = https_call(
        &ca,
        https,
        "/api/auth",
        &["-d", r#"{"username":"root","password":"wrong"}"#],
    );
    assert_eq!(code, 401);
    let login = || {
        let (code, body) = https_call(
            &ca,
            https,
            "/api/auth",
            &["-d", r#"{"username":"root","password":"root"}"#],
        );
        assert_eq!(code, 200, "{body}");
        format!(
            "Authorization: Bearer {}",
            json_body(&body)["token"].as_str().unwrap()
        )
    };
    let auth = login();

    // An event posted to the API goes over RabbitMQ to the engine, which stores it.
    let post = |component: &str| {
        let body = format!(
            r#"{{"component":"{component}","resource":"disk","state":2,"output":"disk full"}}"#
        );
        let (code, reply) = https_call(&ca, https, "/api/events", &["-H", &auth, "-d", &body]);
        assert_eq!(code, 202, "{reply}");
    };
    let stored = |component: &str| {
        let (code, body) = https_call(
            &ca,
            https,
            &format!("/api/events?component={component}"),
            &["-H", &auth],
        );
        assert_eq!(code, 200, "{body}");
        json_body(&body)["events"].as_array().unwrap().clone()
    };
    post("db1");
    wait_until("the event reaches the store", 20, || {
        !stored("db1").is_empty()
    });
    let e = &stored("db1")[0];
    assert_eq!(e["output"], "disk full");
    assert_eq!(e["author"], "root");
    assert_eq!(e["routing_key"], "check.db1");
    let (code, body) = https_call(&ca, https, "/api/events", &["-H", &auth, "-d", "[1]"]);
    assert_eq!(code, 400, "{body}");

    // Both data sources report: collectd the host, the engines themselves.
    wait_until("host and engine samples", 30, || {
        let (_, body) = https_call(&ca, https, "/api/perf", &["-H", &auth]);
        let perf = json_body(&body)["perf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = |c: &str| perf.iter().any(|p| p["connector"] == c);
        has("collectd") && has("engine")
    });

    // supervisord's job: a kill -9 of any process is healed, and the flow works again.
    let all_up = || {
        ex.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| matches!(u["state"].as_str(), Some("healthy" | "running")))
    };
    for unit in ["rabbitmq", "store", "amqp2engines", "collectd", "webserver"] {
        wait_until("every unit up again", 120, all_up);
        let pid = ex.pid(unit).unwrap();
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        wait_until(&format!("{unit} replaced and up"), 120, || {
            let ps = ex.ps();
            let u = ps["units"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == unit)
                .cloned()
                .unwrap();
            u["pid"].as_i64().is_some_and(|p| p != pid)
                && matches!(u["state"].as_str(), Some("healthy" | "running"))
        });
        assert!(!alive(pid));
    }
    let component = "after-heal";
    wait_until("the whole flow works after the heals", 120, || {
        if !all_up() {
            return false;
        }
        let (code, _) = https_call(&ca, https, "/api/health", &[]);
        if code != 200 {
            return false;
        }
        post(component);
        std::thread::sleep(Duration::from_millis(500));
        !stored(component).is_empty()
    });
    // The first event survived the store's crash.
    assert!(!stored("db1").is_empty());

    let pids: Vec<i64> = ["store", "rabbitmq", "webserver"]
        .iter()
        .map(|u| ex.pid(u).unwrap())
        .collect();
    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!pids.iter().any(|p| alive(*p)));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}

/// curl to `host` (resolved to loopback) on `port` with extra arguments; (status, body,
/// response head).
fn curl_host(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-D", "-", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .unwrap();
    let raw = text(&out.stdout);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string(), head.to_ascii_lowercase())
}

#[test]
fn candidates_prod_with_acme_static_media_firefly_and_autoheal_then_staging() {
    let (http, https) = (free_port(), free_port());
    let pebble = common::pki::Pebble::start(http, https);
    let ex = Example::new(
        "candidates",
        &[
            ("CANDIDATES_HTTP", format!("127.0.0.1:{http}")),
            ("CANDIDATES_HTTPS", format!("127.0.0.1:{https}")),
            ("CANDIDATES_HOST", "candidates.test".into()),
            ("CANDIDATES_STAGING_HOST", "staging.test".into()),
            (
                "DJANGO_SECRET_KEY",
                "test-only-secret-key-0123456789".into(),
            ),
            ("ACME_EMAIL", "ops@example.org".into()),
        ],
    );
    // The ACME server is the local pebble instead of Let's Encrypt.
    let acme = format!(
        "edge.acme_directory = \"{}\"\nedge.acme_ca = \"{}\"\n",
        pebble.directory,
        pebble.ca().display()
    );
    ex.edit(|t| {
        t.replace(
            "[environments.prod]\n",
            &format!("[environments.prod]\n{acme}"),
        )
        .replace(
            "[environments.staging]\n",
            &format!("[environments.staging]\n{acme}"),
        )
    });
    // dev is runserver without TLS.
    let dev = text(&ex.grove(&["check", "--env", "dev"]).stdout);
    assert!(
        dev.contains("manage.py runserver") && dev.contains("http://127.0.0.1:8000"),
        "{dev}"
    );

    ex.up(&["--env", "prod"]);
    let root = pebble.issuing_root();
    let root_arg = root.display().to_string();
    let tls = ["--cacert", root_arg.as_str()];
    let host = "candidates.test";
    wait_until("the ACME certificate from pebble", 60, || {
        curl_host("https", host, https, "/healthz", &tls).0 == 200
    });

    // The rating page through gunicorn, over HTTPS with HSTS.
    let (code, body, head) = curl_host("https", host, https, "/", &tls);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("environment prod") && body.contains("AT2026abc"),
        "{body}"
    );
    assert!(head.contains("strict-transport-security"), "{head}");
    // HTTP goes to HTTPS.
    let (code, _, head) = curl_host("http", host, http, "/?x=1", &[]);
    assert_eq!(code, 308, "{head}");
    assert!(
        head.contains(&format!("location: https://{host}:{https}/?x=1")),
        "{head}"
    );
    // Static and media files come from the edge (ETag), not from Django.
    let (code, css, head) = curl_host("https", host, https, "/static/rating/site.css", &tls);
    assert_eq!(code, 200);
    assert!(
        css.contains("iframe") && head.contains("content-type: text/css") && head.contains("etag"),
        "{head}"
    );
    let (code, fits, head) = curl_host(
        "https",
        host,
        https,
        "/media/candidates/AT2026abc.fits",
        &tls,
    );
    assert_eq!(code, 200);
    assert!(
        fits.starts_with("SIMPLE  =") && head.contains("etag"),
        "{head}"
    );
    // Firefly by its prefix.
    let (code, body, _) = curl_host(
        "https",
        host,
        https,
        "/firefly/api/header?file=candidates/AT2026xyz.fits",
        &tls,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_body(&body)["header"]["OBJECT"], "AT2026xyz");
    // Rating a candidate lands in PostgreSQL.
    let (code, _, _) = curl_host(
        "https",
        host,
        https,
        "/candidates/1/rate",
        &[&tls[..], &["-d", "score=4"]].concat(),
    );
    assert_eq!(code, 302);
    let (code, body, _) = curl_host(
        "https",
        host,
        https,
        "/candidates/1/rate",
        &[&tls[..], &["-d", "score=9"]].concat(),
    );
    assert_eq!(code, 400, "{body}");
    let (_, body, _) = curl_host("https", host, https, "/candidates.json", &tls);
    let j = json_body(&body);
    assert_eq!(j["environment"], "prod");
    assert_eq!(j["candidates"][0]["score"], 4.0, "{j}");

    // The seed's autoheal: a wedged Firefly fails its probe and is restarted.
    let before = ex.pid("firefly").unwrap();
    let (code, _, _) = curl_host(
        "https",
        host,
        https,
        "/firefly/debug/wedge",
        &[&tls[..], &["-X", "POST"]].concat(),
    );
    assert_eq!(code, 200);
    wait_until("firefly healed", 60, || {
        ex.pid("firefly").is_some_and(|p| p != before)
            && curl_host("https", host, https, "/firefly/healthz", &tls).0 == 200
    });
    let events = text(&ex.grove(&["events", "firefly"]).stdout);
    assert!(
        events.contains("unhealthy") && events.contains("healed"),
        "{events}"
    );
    assert!(!alive(before));

    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Staging: the same stack on its own host, with its banner and release notes.
    ex.up(&["--env", "staging"]);
    let host = "staging.test";
    wait_until("the staging certificate", 60, || {
        curl_host("https", host, https, "/healthz", &tls).0 == 200
    });
    let (code, body, _) = curl_host("https", host, https, "/", &tls);
    assert_eq!(code, 200);
    assert!(
        body.contains("[STAGING]") && body.contains("environment staging"),
        "{body}"
    );
    assert!(body.contains("Release notes"), "{body}");
    // The rating made in prod is in the same database (one stack folder, one server).
    assert!(body.contains("AT2026abc score 4"), "{body}");

    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}

#[test]
fn channels_needs_its_env_keys_then_echoes_websockets_through_redis() {
    let (http, https, api) = (free_port(), free_port(), free_port());
    let ex = Example::new(
        "channels",
        &[
            ("CHANNELS_HTTP_PORT", http.to_string()),
            ("CHANNELS_HTTPS_PORT", https.to_string()),
            ("CHANNELS_API_PORT", api.to_string()),
        ],
    );
    let example_env = std::fs::read_to_string(ex.path().join(".env.example")).unwrap();
    let nothing_started = |out: &Output, key: &str| {
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("required variable {key} is not set")),
            "{err}"
        );
        assert!(common::stack_processes(&ex.name).is_empty());
        assert!(!ex.path().join(".grove/grove.sock").exists());
    };
    // No .env at all: the first missing key is named, and nothing starts.
    nothing_started(&ex.grove(&["up", "-d"]), "POSTGRES_USER");
    // One key missing.
    let without: String = example_env
        .lines()
        .filter(|l| !l.starts_with("SECRET_EMAIL_USER_PSWD="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(ex.path().join(".env"), without).unwrap();
    nothing_started(&ex.grove(&["up", "-d"]), "SECRET_EMAIL_USER_PSWD");

    let password = "db-pass-Qw83Zx";
    let env_file = example_env
        .replace("change-me-db-password", password)
        .replace("POSTGRES_USER=channels", "POSTGRES_USER=chanuser")
        .replace("POSTGRES_DB=channels", "POSTGRES_DB=chandb");
    std::fs::write(ex.path().join(".env"), env_file).unwrap();
    ex.up(&[]);
    assert!(!text(&ex.grove(&["ps", "--json"]).stdout).contains(password));
    assert!(!text(&ex.grove(&["check"]).stdout).contains(password));
    let ca = ex.path().join(".grove/certs/ca.pem");

    // 443 -> the front end; it is told where the back end is.
    let (code, body) = https_get(&ca, https, "/");
    assert_eq!(code, 200);
    assert!(body.contains("Channels front end"), "{body}");
    let (_, config) = https_get(&ca, https, "/config.js");
    assert!(
        config.contains(&format!("http://127.0.0.1:{api}")),
        "{config}"
    );
    // /documentation on 443 and docs/ui on 2002 reach the back end; static files the edge.
    let (code, docs) = https_get(&ca, https, "/documentation/");
    assert_eq!(code, 200);
    assert!(docs.contains("Back-end API documentation"), "{docs}");
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        c,
        "GET /docs/ui/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.contains("Back-end API documentation"),
        "{raw}"
    );
    let (code, css) = https_get(&ca, https, "/static/docs/docs.css");
    assert_eq!(code, 200);
    assert!(css.contains("font-family"));

    // A WebSocket echo through the :2002 forward, to everyone in the room, over Redis.
    let url = format!("ws://127.0.0.1:{api}/ws/echo/lobby/");
    let (mut alice, _) = tungstenite::connect(&url).unwrap();
    let (mut bob, _) = tungstenite::connect(&url).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    alice
        .send(tungstenite::Message::text("hello from alice"))
        .unwrap();
    for ws in [&mut alice, &mut bob] {
        assert_eq!(
            ws.read().unwrap(),
            tungstenite::Message::text("hello from alice")
        );
    }
    // While they are connected, the room is a Redis publish/subscribe channel.
    let redis_port = ex.ps()["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "redis")
        .and_then(|u| u["port"].as_u64())
        .unwrap();
    let redis_pw = std::fs::read_to_string(ex.path().join(".grove/secrets/redis")).unwrap();
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &redis_port.to_string(),
            "--no-auth-warning",
            "-a",
            redis_pw.trim(),
        ])
        .args(["PUBSUB", "CHANNELS", "*"])
        .output()
        .unwrap();
    let channels = text(&out.stdout);
    assert!(channels.contains("echo.lobby"), "{channels}");
    let _ = alice.close(None);
    let _ = bob.close(None);

    // The message is in PostgreSQL, in the .env's database, as the .env's user.
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        c,
        "GET /api/messages?room=lobby HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert_eq!(json_body(&raw)["messages"][0], "hello from alice", "{raw}");
    let mut c = TcpStream::connect(("127.0.0.1", api)).unwrap();
    write!(
        c,
        "GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let status = json_body(&raw);
    assert_eq!(status["database"], "chandb");
    assert_eq!(status["user"], "chanuser");
    assert_eq!(status["environment"], "development");

    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}

/// Every TCP address the processes `pids` listen on, from /proc/net/tcp{,6} and their fds.
fn listening(pids: &[i32]) -> Vec<String> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let l = link.to_string_lossy().into_owned();
                if let Some(i) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let table = std::fs::read_to_string(file).unwrap_or_default();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode
            if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
                continue;
            }
            let (addr, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let ip = if v6 {
                let b: Vec<u8> = (0..16)
                    .map(|i| u8::from_str_radix(&addr[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                // /proc prints each 32-bit word in host (little-endian) order.
                let mut o = [0u8; 16];
                for w in 0..4 {
                    for k in 0..4 {
                        o[4 * w + k] = b[4 * w + 3 - k];
                    }
                }
                std::net::IpAddr::from(o)
            } else {
                let n = u32::from_str_radix(addr, 16).unwrap();
                std::net::IpAddr::from(n.to_le_bytes())
            };
            out.push(std::net::SocketAddr::new(ip, port).to_string());
        }
    }
    out
}

#[test]
fn canopy_record_to_queued_report_to_pdf_with_only_the_edge_beyond_loopback() {
    let (http, https) = (free_port(), free_port());
    let ex = Example::new(
        "canopy",
        &[
            ("CANOPY_HTTP_PORT", http.to_string()),
            ("CANOPY_HTTPS_PORT", https.to_string()),
            (
                "DJANGO_SECRET_KEY",
                "test-only-secret-key-0123456789".into(),
            ),
        ],
    );
    ex.up(&[]);
    let ca = ex.path().join(".grove/certs/ca.pem");

    // A record, through the edge's HTTPS to gunicorn.
    let (code, body) = https_call(
        &ca,
        https,
        "/records",
        &[
            "-d",
            r#"{"title":"Site survey 7","body":"North field\nSouth field"}"#,
        ],
    );
    assert_eq!(code, 201, "{body}");
    let record = json_body(&body)["id"].as_i64().unwrap();
    let (code, _) = https_call(&ca, https, "/records", &["-d", "[]"]);
    assert_eq!(code, 400);

    // A report job goes to the Celery worker over RabbitMQ; the docserver renders the
    // .docx, LibreOffice makes the PDF.
    let queue = |record: i64| {
        let (code, body) = https_call(
            &ca,
            https,
            &format!("/records/{record}/report"),
            &["-X", "POST"],
        );
        assert_eq!(code, 202, "{body}");
        assert_eq!(json_body(&body)["status"], "queued");
        json_body(&body)["report"].as_i64().unwrap()
    };
    let status = |report: i64| {
        let (_, body) = https_call(&ca, https, &format!("/reports/{report}"), &[]);
        json_body(&body)
    };
    let report = queue(record);
    wait_until("the report job", 120, || {
        matches!(status(report)["status"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(status(report)["status"], "done", "{}", status(report));
    let pdf_file = ex.path().join("report.pdf");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .arg("-o")
        .arg(&pdf_file)
        .args(["-w", "%{http_code} %{content_type}"])
        .arg(format!("https://localhost:{https}/reports/{report}/pdf"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "200 application/pdf");
    let pdf = std::fs::read(&pdf_file).unwrap();
    assert!(pdf.starts_with(b"%PDF"), "{:?}", &pdf[..pdf.len().min(16)]);
    assert!(pdf.len() > 1000);
    let worker = text(&ex.grove(&["logs", "-n", "200", "worker"]).stdout);
    assert!(
        worker.contains("reports.tasks.make_report") && worker.contains("succeeded"),
        "{worker}"
    );
    let docserver = text(&ex.grove(&["logs", "-n", "50", "docserver"]).stdout);
    assert!(docserver.contains("POST /render"), "{docserver}");

    // With the converter stopped, the job fails and says why; the PDF is not there.
    assert!(ex.grove(&["stop", "pdf"]).status.success());
    let failed = queue(record);
    wait_until("the failing job", 120, || {
        status(failed)["status"] == "failed"
    });
    assert!(
        status(failed)["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{}",
        status(failed)
    );
    let (code, _) = https_call(&ca, https, &format!("/reports/{failed}/pdf"), &[]);
    assert_eq!(code, 409);
    assert!(ex.grove(&["start", "pdf"]).status.success());

    // Only the edge would face the network: every unit listens on loopback here, and the
    // production environment moves only the edge to 0.0.0.0.
    let mut pids = common::stack_processes(&ex.name);
    pids.push(ex.ps()["pid"].as_i64().unwrap() as i32);
    let addrs = listening(&pids);
    assert!(addrs.len() >= 8, "{addrs:?}");
    for a in &addrs {
        let ip: std::net::SocketAddr = a.parse().unwrap();
        assert!(ip.ip().is_loopback(), "{a} is not loopback: {addrs:?}");
    }
    let out = ex.grove(&["check", "--json", "--env", "production"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listen: Vec<String> = plan["edge"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert!(listen.iter().all(|l| l.contains("0.0.0.0")), "{listen:?}");
    for (name, unit) in plan["units"].as_object().unwrap() {
        assert_eq!(unit["bind"], "127.0.0.1", "{name}");
    }

    let out = ex.grove(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        common::stack_processes(&ex.name).is_empty(),
        "left behind: {:?}",
        common::stack_processes(&ex.name)
    );
}
