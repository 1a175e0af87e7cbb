//! Deploys end to end: a git repository in a temporary folder holds a small Python app and
//! the stack file; `grove deploy` releases new commits of it while clients keep requesting
//! through the edge, and `grove rollback` goes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers every GET with `<instance> <VERSION> <schema> <GROVE_RELEASE>`; `/health` with
/// 200, or 500 when the file UNHEALTHY is in the release.
const APP: &str = r#"
import http.server, os, sqlite3
here = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(here, "VERSION")).read().strip()
SICK = os.path.exists(os.path.join(here, "UNHEALTHY"))
INSTANCE = os.environ.get("GROVE_INSTANCE", "-")
DB = os.environ.get("APP_DB")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.endswith("/health"):
            code, body = (500 if SICK else 200), b"ok\n"
        else:
            schema = "-"
            if DB:
                with sqlite3.connect(DB) as c:
                    schema = str(c.execute("select max(v) from schema").fetchone()[0])
            code = 200
            body = f"{INSTANCE} {VERSION} {schema} {os.environ.get('GROVE_RELEASE', '-')}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A migration: brings the instance's database up to the schema version in SCHEMA.
const MIGRATE: &str = r#"
import os, sqlite3
here = os.path.dirname(os.path.abspath(__file__))
want = int(open(os.path.join(here, "SCHEMA")).read())
with sqlite3.connect(os.environ["APP_DB"]) as c:
    c.execute("create table if not exists schema(v integer)")
    have = c.execute("select coalesce(max(v), 0) from schema").fetchone()[0]
    for v in range(have + 1, want + 1):
        c.execute("insert into schema values (?)", (v,))
        print(f"migrated {os.environ['GROVE_INSTANCE']} to {v}")
"#;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@example.org", "-c", "user.name=t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

/// Writes the app at `version` and commits everything.
fn commit(s: &Stack, version: &str) {
    std::fs::write(s.path().join("VERSION"), version).unwrap();
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "--allow-empty", "-m", version]);
}

fn repo(s: &Stack, body: &str) -> u16 {
    let port = free_port();
    s.write_stack(&format!(
        "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\n\n{body}"
    ));
    std::fs::write(s.path().join("app.py"), APP).unwrap();
    std::fs::write(s.path().join(".gitignore"), ".grove/\ndata/\n").unwrap();
    git(s.path(), &["init", "-q"]);
    commit(s, "v1");
    port
}

/// One GET over a new connection: (status, body).
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    c.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    parse(&raw)
}

fn parse(raw: &str) -> Result<(u16, String), String> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {raw:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {raw:?}"))?;
    Ok((status, body.to_string()))
}

/// GETs over one keep-alive connection, reconnecting only when the server closed it cleanly
/// after a complete response.
struct KeepAlive {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        if self.conn.is_none() {
            let c = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
            c.set_read_timeout(Some(Duration::from_secs(10))).ok();
            self.conn = Some(BufReader::new(c));
        }
        let r = self.conn.as_mut().unwrap();
        write!(
            r.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut status_line = String::new();
        r.read_line(&mut status_line).map_err(|e| e.to_string())?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut len = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).map_err(|e| e.to_string())?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| format!("bad length {h}"))?;
            }
            if lower == "connection: close" {
                close = true;
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        if close {
            self.conn = None;
        }
        Ok((status, text(&body)))
    }
}

/// A client thread's result: the bodies it got, in order, and its failures.
type Client = std::thread::JoinHandle<(Vec<String>, Vec<String>)>;

/// Clients that request `path` through the edge until told to stop (at most 120 s and
/// 200 000 requests), one over new connections and one over a keep-alive connection; each
/// returns every body it got, in order, and every failure.
fn load(port: u16, path: &'static str) -> (Arc<AtomicBool>, Vec<Client>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for keep_alive in [false, true] {
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut bodies = Vec::new();
            let mut failures = Vec::new();
            let mut ka = KeepAlive { port, conn: None };
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(120)
                && bodies.len() + failures.len() < 200_000
            {
                let r = if keep_alive {
                    ka.get(path)
                } else {
                    get(port, path)
                };
                match r {
                    Ok((200, b)) => bodies.push(b),
                    Ok((code, b)) => failures.push(format!("{code}: {b}")),
                    Err(e) => {
                        ka.conn = None;
                        failures.push(e)
                    }
                }
            }
            (bodies, failures)
        }));
    }
    (stop, handles)
}

fn version_of(body: &str) -> &str {
    body.split_whitespace().nth(1).unwrap_or("")
}

const WEB: &str = r#"
[services.web]
command = "python3 app.py"
health = { http = "/health", interval = "200ms", start_period = "10s" }
route = { prefix = "/" }
"#;

#[test]
fn a_deploy_under_load_drops_no_request_and_then_serves_only_the_new_code() {
    let s = Stack::new("");
    let port = repo(
        &s,
        &format!(
            "{WEB}\n[deploy]\nrepository = \".\"\nref = \"HEAD\"\nbuild = [\"echo building $$GROVE_RELEASE\"]\ndrain = \"1s\"\nhealth_timeout = \"30s\"\n"
        ),
    );
    s.up();
    let (_, first) = get(port, "/").unwrap();
    assert_eq!(version_of(&first), "v1", "{first}");
    let old_pid = s.pid("web").unwrap();
    commit(&s, "v2");

    let (stop, clients) = load(port, "/");
    std::thread::sleep(Duration::from_millis(500));
    let out = s.run(&["deploy"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // The build's output is shown, with the release in its environment.
    assert!(stdout.contains("building 1-"), "{stdout}");
    assert!(stdout.contains("is live"), "{stdout}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        let (bodies, failures) = c.join().unwrap();
        assert!(
            failures.is_empty(),
            "failed requests during the deploy: {failures:?}"
        );
        total += bodies.len();
        let versions: Vec<&str> = bodies.iter().map(|b| version_of(b)).collect();
        let switch = versions
            .iter()
            .position(|v| *v == "v2")
            .unwrap_or_else(|| panic!("no response from the new code: {versions:?}"));
        assert!(switch > 0, "the old code answered first");
        assert!(
            versions[switch..].iter().all(|v| *v == "v2"),
            "old code answered after the switch: {:?}",
            &versions[switch..]
        );
    }
    assert!(total > 50, "the clients made only {total} requests");

    // The new generation runs from the release and took over the unit's name.
    let web = s.unit("web");
    assert_ne!(web["pid"].as_i64().unwrap(), old_pid);
    let release = web["release"].as_str().unwrap().to_string();
    assert!(release.starts_with("1-"), "{web}");
    assert!(!alive(old_pid), "the old generation still runs");
    let (_, body) = get(port, "/").unwrap();
    assert!(body.trim_end().ends_with(&release), "{body}");
    let ps = text(&s.run(&["ps"]).stdout);
    assert!(ps.contains("RELEASE") && ps.contains(&release), "{ps}");
    assert!(
        s.path()
            .join(".grove/releases")
            .join(&release)
            .join("app.py")
            .exists(),
        "the release folder holds the checkout"
    );
    let releases = text(&s.run(&["releases"]).stdout);
    assert!(
        releases.contains(&release) && releases.contains("live"),
        "{releases}"
    );
    assert!(
        std::fs::read_to_string(s.path().join(".grove/logs/deploy.log"))
            .unwrap()
            .contains("building 1-"),
        "the build output is kept"
    );

    // An event for each step, in order.
    let events = s.events();
    let kinds: Vec<String> = events
        .iter()
        .filter(|e| e["unit"].is_null() || e["unit"] == "web" || e["unit"] == "web~old")
        .map(|e| {
            format!(
                "{} {}",
                e["unit"].as_str().unwrap_or("-"),
                e["kind"].as_str().unwrap()
            )
        })
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("no `{k}` in {kinds:#?}"))
    };
    assert!(at("- deploy") < at("web switched"));
    assert!(at("web switched") < at("- deployed"));
    assert!(at("- deployed") < at("web~old drained"));
    assert!(at("web~old drained") < at("web~old stopped"));
}

#[test]
fn a_failing_build_or_health_gate_leaves_the_old_release_serving() {
    let s = Stack::new("");
    // Probe failures during the start period do not count, so a unit that never turns
    // healthy is still starting when the gate's time runs out.
    let web = WEB.replace("start_period = \"10s\"", "start_period = \"60s\"");
    let port = repo(
        &s,
        &format!(
            "{web}\n[deploy]\nbuild = [\"test -f BUILD_OK || {{ echo no BUILD_OK here; exit 4; }}\"]\ndrain = \"500ms\"\nhealth_timeout = \"3s\"\n"
        ),
    );
    s.up();
    let pid = s.pid("web").unwrap();

    // 1. The build fails: nothing starts.
    commit(&s, "v2");
    let out = s.run(&["deploy"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed at build"), "{stderr}");
    assert!(stderr.contains("exited with code 4"), "{stderr}");
    assert!(text(&out.stdout).contains("no BUILD_OK here"));
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v1");

    // 2. The new code crashes at start: the gate stops it.
    std::fs::write(s.path().join("BUILD_OK"), "").unwrap();
    std::fs::write(
        s.path().join("app.py"),
        "import sys\nprint('boom')\nsys.exit(3)\n",
    )
    .unwrap();
    commit(&s, "v3");
    let out = s.run(&["deploy"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed at health gate"), "{stderr}");
    assert!(stderr.contains("web~next exited with code 3"), "{stderr}");
    assert!(
        stderr.contains("boom"),
        "the unit's last lines are shown: {stderr}"
    );
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v1");

    // 3. The new code never turns healthy: the gate times out.
    std::fs::write(s.path().join("app.py"), APP).unwrap();
    std::fs::write(s.path().join("UNHEALTHY"), "").unwrap();
    commit(&s, "v4");
    let started = Instant::now();
    let out = s.run(&["deploy"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed at health gate: not ready within 3s"),
        "{stderr}"
    );
    assert!(stderr.contains("web~next"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // The old process served throughout, and nothing of the failed releases is left.
    assert_eq!(s.pid("web"), Some(pid));
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v1");
    let names: Vec<String> = s.ps()["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["web"]);
    let releases: serde_json::Value =
        serde_json::from_slice(&s.run(&["releases", "--json"]).stdout).unwrap();
    let outcomes: Vec<&str> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["failed", "failed", "failed"]);
    assert!(releases[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("health gate: not ready"));
    assert!(releases[2]["message"]
        .as_str()
        .unwrap()
        .starts_with("build:"));
    let left: Vec<_> = std::fs::read_dir(s.path().join(".grove/releases"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "failed releases' folders are removed: {left:?}"
    );
    assert!(s.events().iter().any(|e| e["kind"] == "deploy-failed"));

    // A ref that does not exist is refused before anything is made.
    let out = s.run(&["deploy", "--ref", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no commit named `no-such-branch`"));
}

#[test]
fn rollback_restores_the_previous_release_and_deploys_take_a_lock() {
    let s = Stack::new("");
    let port = repo(
        &s,
        &format!("{WEB}\n[deploy]\nbuild = [\"sleep 1\"]\ndrain = \"200ms\"\nkeep = 2\n"),
    );
    // Not running: the release is made and `up` starts it.
    commit(&s, "v2");
    let out = s.run(&["deploy"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("`grove up` starts it"));
    s.up();
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v2");

    // Two deploys at once: the second is refused while the first builds.
    commit(&s, "v3");
    let first = s
        .cmd(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let second = s.run(&["deploy"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("another deploy or rollback is running"),
        "{}",
        text(&second.stderr)
    );
    let status = first.wait_with_output().unwrap().status;
    assert!(status.success());
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v3");

    // Back to v2, by the same path.
    let out = s.run(&["rollback"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v2");
    let releases: serde_json::Value =
        serde_json::from_slice(&s.run(&["releases", "--json"]).stdout).unwrap();
    assert_eq!(releases[0]["outcome"], "rolled back");
    assert_eq!(releases[1]["live"], true);
    assert_eq!(s.unit("web")["release"], releases[1]["id"]);

    // Nothing earlier to go back to; a release that does not exist.
    let out = s.run(&["rollback"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no earlier deployed release"));
    let out = s.run(&["rollback", "99-nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no release 99-nope"));

    // A reload keeps the live release; `keep = 2` removed the oldest folders.
    let out = s.run(&["reload"]);
    assert!(out.status.success());
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v2");
    commit(&s, "v4");
    assert!(s.run(&["deploy"]).status.success());
    commit(&s, "v5");
    assert!(s.run(&["deploy"]).status.success());
    let kept: Vec<_> = std::fs::read_dir(s.path().join(".grove/releases"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v5");
}

#[test]
fn a_per_instance_deploy_runs_each_instances_migration_before_the_switch() {
    let s = Stack::new("");
    let data = s.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port = repo(
        &s,
        &format!(
            r#"
[instances.north]
prefix = "/north"

[instances.south]
prefix = "/south"

[services.migrate]
kind = "task"
command = "python3 migrate.py"
for_each_instance = true
env = {{ APP_DB = "{data}/${{instance}}.db" }}

[services.web]
command = "python3 app.py"
for_each_instance = true
health = {{ http = "/health", interval = "200ms" }}
route = {{ prefix = "${{instance.prefix}}", strip_prefix = true }}
depends_on = {{ migrate = "completed" }}
env = {{ APP_DB = "{data}/${{instance}}.db" }}

[deploy]
before_switch = ["migrate"]
drain = "300ms"
"#,
            data = data.display()
        ),
    );
    std::fs::write(s.path().join("migrate.py"), MIGRATE).unwrap();
    std::fs::write(s.path().join("SCHEMA"), "1").unwrap();
    commit(&s, "v1");
    s.up();
    for i in ["north", "south"] {
        let (_, body) = get(port, &format!("/{i}/")).unwrap();
        assert_eq!(
            body.split_whitespace().take(3).collect::<Vec<_>>(),
            vec![i, "v1", "1"]
        );
    }

    std::fs::write(s.path().join("SCHEMA"), "2").unwrap();
    commit(&s, "v2");
    let out = s.run(&["deploy"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for i in ["north", "south"] {
        let (_, body) = get(port, &format!("/{i}/")).unwrap();
        assert_eq!(
            body.split_whitespace().take(3).collect::<Vec<_>>(),
            vec![i, "v2", "2"],
            "{body}"
        );
    }
    // Each instance's migration ran for the new release, before its web unit switched.
    let events = s.events();
    for i in ["north", "south"] {
        let migrated = s.event_index(&events, &format!("migrate@{i}~next"), "completed");
        let switched = s.event_index(&events, &format!("web@{i}"), "switched");
        assert!(migrated < switched, "{events:#?}");
    }
    let log = s.log("migrate@north");
    assert!(log.contains("migrated north to 2"), "{log}");
    let ps = s.ps();
    for u in ps["units"].as_array().unwrap() {
        assert!(
            u["release"].as_str().is_some_and(|r| r.starts_with("1-")),
            "{u}"
        );
        assert!(!u["name"].as_str().unwrap().contains('~'), "{ps}");
    }
}

#[test]
fn a_deployed_release_is_adopted_after_grove_is_killed() {
    let s = Stack::new("");
    let port = repo(&s, &format!("{WEB}\n[deploy]\ndrain = \"200ms\"\n"));
    s.up();
    commit(&s, "v2");
    let out = s.run(&["deploy"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v2");
    let pid = s.pid("web").unwrap();
    // Issue 22: the switch renamed the new unit (`web~next` to `web`); its shim knows, so the
    // next grove adopts it as `web` instead of stopping it.
    servers::kill_daemon(&s);
    let out = s.run(&["up", "-d", "--wait-timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.pid("web"), Some(pid), "the deployed unit was restarted");
    assert_eq!(version_of(&get(port, "/").unwrap().1), "v2");
    let events = s.events();
    let last_up = events
        .iter()
        .rposition(|e| e["kind"] == "up")
        .expect("an up event");
    assert!(
        events[last_up..]
            .iter()
            .any(|e| e["unit"] == "web" && e["kind"] == "adopted"),
        "{events:?}"
    );
    assert!(
        !events[last_up..].iter().any(|e| e["kind"] == "reaped"),
        "{events:?}"
    );
}
