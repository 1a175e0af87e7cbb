//! The seeds' stacks for real (issue 10): each example under `examples/` copied to a temp
//! folder and run with its real parts, driven over HTTP(S) as a user would, and stopped
//! leaving nothing behind. Python packages come from the workspace's `.venv` (scripts/test
//! builds it from examples/requirements.txt); servers from Debian's packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::example::*;
use common::{alive, free_port, text, wait_until};

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
