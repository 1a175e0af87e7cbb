//! Issue 26: Canopy's Enterprise deployment across hosts, as a user runs it. Six network
//! namespaces on two private networks stand for the machines: the database server, two app
//! servers, the report server, the web tier and a client (the front network joins the web
//! tier, the app servers and the client; the back one the app servers, the database and the
//! report server). Each host runs grove from its own
//! copy of `examples/canopy` with the one command its README gives, and one certificate
//! authority (exported by one host, imported by the others) signs the report server's and
//! the database's certificates; the web tier's comes over ACME from a private ACME server
//! (pebble) on the client's host. The client creates a record and downloads its PDF through
//! the web tier, then, under a GET+POST load, app1's grove is killed (the app serves on) and app1
//! is taken down three ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::example::{json_body, Example};
use common::netns::Net;
use common::{text, wait_until};

/// The front network (the web tier, the app servers, the client) and the back one (the app
/// servers, the database, the report server), as enterprise layouts keep them apart: an app
/// server that loses its front link keeps its database.
const NETWORKS: &[(&str, &str)] = &[("front", "10.77.0"), ("back", "10.78.0")];
const HOSTS: &[(&str, &[(&str, u8)])] = &[
    ("db", &[("back", 10)]),
    ("app1", &[("front", 11), ("back", 11)]),
    ("app2", &[("front", 12), ("back", 12)]),
    ("rep", &[("back", 13)]),
    ("web", &[("front", 20)]),
    ("cli", &[("front", 30)]),
];
const NAMES: &[(&str, &str, &str)] = &[
    ("db.internal", "db", "back"),
    ("app1.internal", "app1", "front"),
    ("app2.internal", "app2", "front"),
    ("reports.internal", "rep", "back"),
    ("canopy.example.org", "web", "front"),
];
const SECRET_KEY: &str = "DJANGO_SECRET_KEY=test-only-secret-key-0123456789\n";

/// curl on the client host to the web tier, trusting the stack's CA; (status, body).
fn client(net: &Net, ca: &Path, path: &str, extra: &[&str]) -> (u16, String) {
    let out = net
        .cmd("cli", "curl")
        .args(["-s", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://canopy.example.org{path}"))
        .output()
        .unwrap();
    let t = text(&out.stdout);
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The GET+POST load of `tests/fixtures/canopy_load.py`, running on the client host until
/// [`Load::finish`].
struct Load {
    child: Child,
    stop: std::path::PathBuf,
}

impl Load {
    fn start(net: &Net, ca: &Path, dir: &Path, phase: &str) -> Load {
        let stop = dir.join(format!("stop-{phase}"));
        let script = common::workspace().join("crates/grove/tests/fixtures/canopy_load.py");
        let child = net
            .cmd("cli", "python3")
            .arg(script)
            .arg("https://canopy.example.org")
            .arg(ca)
            .arg(&stop)
            .arg("4")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it reach its pace before the fault.
        std::thread::sleep(std::time::Duration::from_secs(2));
        Load { child, stop }
    }

    /// Stops the load; its counts and failures.
    fn finish(self) -> serde_json::Value {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn count(load: &serde_json::Value, key: &str) -> u64 {
    load["counts"][key].as_u64().unwrap_or(0)
}

/// The app unit's pid on an app server.
fn app_pid(host: &Example) -> i64 {
    host.pid("app").expect("the app runs")
}

#[test]
fn canopy_enterprise_across_hosts_serves_a_pdf_and_survives_app1_going_down() {
    if let Err(why) = Net::possible() {
        eprintln!("skipped: {why}");
        return;
    }
    let net = Net::new(NETWORKS, HOSTS, NAMES);
    let db = Example::host("canopy", "db", &net.ns("db"), &[]);
    let rep = Example::host("canopy", "rep", &net.ns("rep"), &[]);
    let app1 = Example::host("canopy", "app1", &net.ns("app1"), &[]);
    let app2 = Example::host("canopy", "app2", &net.ns("app2"), &[]);
    let web = Example::host("canopy", "web", &net.ns("web"), &[]);

    // One CA for every host: the report server's is exported, the others import it.
    let bundle = rep.path().join("ca-bundle.pem");
    let out = rep.grove(&["ca", "export", "--key", "-o", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for host in [&db, &app1, &app2, &web] {
        let out = host.grove(&["ca", "import", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    // The database server: PostgreSQL on 0.0.0.0:5432 over TLS, for the app servers' network.
    std::fs::write(
        db.path().join(".env"),
        format!("CANOPY_DB_ALLOW={}.0/24\n", net.subnet("back")),
    )
    .unwrap();
    db.up(&["--env", "database"]);
    // The report server: docserver and PDF converter over TLS on :8181 and :9016.
    rep.up(&["--env", "reportserver"]);

    // Each app server: no database of its own, the app on 0.0.0.0:8000, the remote
    // PostgreSQL verified against the shared CA. One after the other: the first runs the
    // migrations, the second finds them done.
    let password = std::fs::read_to_string(db.path().join(".grove/secrets/db")).unwrap();
    for app in [&app1, &app2] {
        let ca = app.path().join(".grove/certs/ca.pem");
        std::fs::write(
            app.path().join(".env"),
            format!(
                "{SECRET_KEY}CANOPY_DATABASE_URL=postgresql://grove:{}@db.internal:5432/canopy?sslmode=verify-full&sslrootcert={}\n",
                password.trim(),
                ca.display()
            ),
        )
        .unwrap();
        app.up(&["--env", "split,appserver"]);
    }
    // The web tier in front of both, its certificate from a private ACME server inside the
    // network (pebble on the client's host, validating HTTP-01 against the web tier's :80;
    // every name it looks up is the web tier's address). Only the directory and the ACME
    // server's own CA are set on the command line: `tls = "acme"` is the example's.
    let pebble = common::pki::Pebble::start_at(
        80,
        443,
        common::pki::PebbleAt {
            prefix: ["ip", "netns", "exec", &net.ns("cli")]
                .map(String::from)
                .to_vec(),
            ip: net.addr("cli", "front"),
            target: net.addr("web", "front"),
        },
    );
    let directory = format!("edge.acme_directory={}", pebble.directory);
    let acme_ca = format!("edge.acme_ca={}", pebble.ca().display());
    web.up(&["--env", "webtier", "--set", &directory, "--set", &acme_ca]);
    let ca = pebble.issuing_root();
    wait_until(
        "the web tier's certificate from the ACME server",
        90,
        || client(&net, &ca, "/healthz", &[]).0 == 200,
    );

    // Nothing of an app server listens beyond loopback but the app itself.
    let ps = app1.ps();
    let units: Vec<&str> = ps["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert!(
        !units.contains(&"db"),
        "an app server runs no database: {units:?}"
    );

    // A record, a report job on an app server's Celery worker (docserver and converter on
    // the report server over TLS), and the PDF, all through the web tier.
    let (code, body) = client(
        &net,
        &ca,
        "/records",
        &["-d", r#"{"title":"Site survey","body":"North field"}"#],
    );
    assert_eq!(code, 201, "{body}");
    let record = json_body(&body)["id"].as_i64().unwrap();
    let (code, body) = client(
        &net,
        &ca,
        &format!("/records/{record}/report"),
        &["-X", "POST"],
    );
    assert_eq!(code, 202, "{body}");
    let report = json_body(&body)["report"].as_i64().unwrap();
    let status = || json_body(&client(&net, &ca, &format!("/reports/{report}"), &[]).1);
    wait_until("the report job", 120, || {
        matches!(status()["status"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(status()["status"], "done", "{}", status());
    let pdf = web.path().join("report.pdf");
    let out = net
        .cmd("cli", "curl")
        .args(["-s", "--max-time", "30", "--cacert"])
        .arg(&ca)
        .arg("-o")
        .arg(&pdf)
        .args(["-w", "%{http_code} %{content_type}"])
        .arg(format!("https://canopy.example.org/reports/{report}/pdf"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "200 application/pdf");
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
    let rendered = text(&rep.grove(&["logs", "-n", "50", "docserver"]).stdout);
    assert!(rendered.contains("POST /render"), "{rendered}");

    // The web tier's active health check shows both app servers in the route.
    let remotes = |w: &Example| w.ps()["remotes"].as_array().cloned().unwrap_or_default();
    wait_until("both app servers probed healthy", 20, || {
        let r = remotes(&web);
        r.len() == 2 && r.iter().all(|t| t["health"] == "healthy")
    });

    let dir = web.path();
    // 0. kill -9 of app1's grove: the app outlives it and serves on, the next `grove up`
    //    adopts it. Nothing fails.
    let load = Load::start(&net, &ca, dir, "grove");
    let app_before = app_pid(&app1);
    let daemon = common::daemon_pid(app1.path()).expect("app1's grove runs");
    assert!(Command::new("kill")
        .args(["-9", &daemon.to_string()])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_secs(2));
    app1.up(&["--env", "split,appserver"]);
    assert_eq!(
        app_pid(&app1),
        app_before,
        "the app was adopted, not restarted"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let orphaned = load.finish();
    let failures = orphaned["failures"].as_array().unwrap();
    assert!(failures.is_empty(), "kill -9 of app1's grove: {orphaned}");
    assert!(count(&orphaned, "POST 201") > 20, "{orphaned}");

    // 1. kill -9 of app1's gunicorn: its workers finish what they hold (they get the stop
    //    signal, not SIGKILL), grove restarts it on the socket it kept (the one the last
    //    grove's holder handed over), and what arrived meanwhile is the new gunicorn's.
    let load = Load::start(&net, &ca, dir, "kill");
    let old = app_pid(&app1);
    assert!(Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("app1's app back", 60, || {
        app1.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "app" && u["state"] == "healthy" && u["pid"] != old)
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let killed = load.finish();
    assert_survived("kill -9 of app1's app", &killed);

    // 2. `grove stop app` on app1, then start: what reaches it while it drains is answered
    //    "not served" and goes to app2, and so do the connections it refuses once stopped.
    let load = Load::start(&net, &ca, dir, "stop");
    assert!(app1.grove(&["stop", "app"]).status.success());
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(app1.grove(&["start", "app"]).status.success());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let stopped = load.finish();
    assert_survived("grove stop on app1", &stopped);

    // 3. app1's front link down for several seconds (its database, on the back network,
    //    stays): connects time out and go to app2, the probe takes app1 out of the route
    //    (shown by ps and an event), and back when the link returns.
    let load = Load::start(&net, &ca, dir, "link");
    net.link("app1", "front", false);
    wait_until("app1 out of the web tier's route", 20, || {
        remotes(&web)
            .iter()
            .any(|t| t["target"] == "app1.internal:8000" && t["health"] == "unhealthy")
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    net.link("app1", "front", true);
    wait_until("app1 back in the route", 20, || {
        remotes(&web).iter().all(|t| t["health"] == "healthy")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let cut = load.finish();
    let failures = cut["failures"].as_array().unwrap();
    assert!(failures.is_empty(), "link down: {cut}");
    assert!(count(&cut, "POST 201") > 20, "{cut}");
    let events = text(&web.grove(&["events"]).stdout);
    assert!(
        events.contains("app1.internal:8000 out of the route")
            && events.contains("app1.internal:8000 passes its probe again"),
        "{events}"
    );
    let shown = text(&web.grove(&["ps"]).stdout);
    assert!(shown.contains("remote upstreams") && shown.contains("app1.internal:8000"));

    // Every host stops cleanly (a unit's keeper may take a moment to exit after it answers);
    // the namespaces go with `net`.
    for host in [&web, &app1, &app2, &rep, &db] {
        let out = host.grove(&["down"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let left = || -> Vec<String> {
            common::stack_processes(&host.name)
                .iter()
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{p} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !left().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            left().is_empty(),
            "left behind on {}: {:?}",
            host.name,
            left()
        );
    }
}

/// After app1 was killed or stopped under load: no request failed. app1's app is
/// socket-activated (`socket = true` in the example): while it restarts, connections wait in
/// the socket grove holds for the next gunicorn; while it stops for good, what reaches it is
/// answered "not served" by app1's grove and sent to app2 by the web tier, whatever its
/// method; once it is gone, connections are refused (and retried). Before, the POSTs in
/// gunicorn's listen queue when its last worker exited were reset and answered 502.
fn assert_survived(what: &str, load: &serde_json::Value) {
    let total: u64 = load["counts"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert!(
        count(load, "GET 200") > 20 && count(load, "POST 201") > 20,
        "{what}: {load}"
    );
    let failures = load["failures"].as_array().unwrap();
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} failed: {load}",
        failures.len()
    );
    eprintln!("{what}: {total} requests, none failed");
}
