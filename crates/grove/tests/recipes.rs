//! Backing services for real: the real binary running Debian's PostgreSQL, Redis, Memcached
//! and RabbitMQ in temp folders, checked with their own clients (`psql`, `redis-cli`,
//! `rabbitmqctl`, memcached's text protocol). Each test's guard stops its stack and kills
//! anything left carrying its `GROVE_STACK`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::servers::{open_stack, psql_as};
use common::{alive, echo_app, free_port, text, Stack};

fn up(s: &Stack, env: Option<&str>) {
    let mut args = vec!["up", "-d", "--wait-timeout", "45s"];
    if let Some(e) = env {
        args.extend(["--env", e]);
    }
    let out = s.run(&args);
    assert!(
        out.status.success(),
        "up failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn secret(s: &Stack, name: &str) -> String {
    let path = s.path().join(".grove/secrets").join(name);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is not private", path.display());
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn port(s: &Stack, unit: &str) -> u16 {
    s.unit(unit)["port"].as_u64().unwrap() as u16
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf)
}

#[test]
fn postgres_gives_each_instance_its_own_database_and_keeps_data() {
    let edge = free_port();
    let s = open_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{edge}"]

[services.db]
recipe = "postgres"
databases = "per-instance"

[instances.turkey]
prefix = "/TR"
[instances.iraq]
prefix = "/IQ"

[services.web]
command = "python3 {app}"
for_each_instance = true
depends_on = {{ db = "healthy" }}
route = {{ strip_prefix = true }}
health = {{ http = "/", interval = "1s" }}
env = {{ DATABASE_URL = "${{db.url}}" }}

[services.reports]
command = "sleep 600"
depends_on = {{ db = "healthy" }}
env = {{ REPORTS_DB = "${{db.url}}/reports" }}

[environments.staging.services.reports]
command = "sleep 601"
"#,
        app = echo_app()
    ));
    up(&s, Some("staging"));
    let ps = s.ps();
    assert_eq!(ps["environment"], "staging", "{ps}");
    let ps_text = text(&s.run(&["ps"]).stdout);
    assert!(ps_text.contains("environment staging"), "{ps_text}");

    let db = port(&s, "db");
    let admin = secret(&s, "db");
    let turkey = secret(&s, "db.turkey");
    let iraq = secret(&s, "db.iraq");
    assert_ne!(turkey, iraq);
    // The databases: one per instance owned by its role, plus the one `reports` asked for.
    let dbs = psql_as(db, "grove", &admin, "postgres", "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database WHERE datname NOT LIKE 'template%' ORDER BY 1").unwrap();
    assert_eq!(
        dbs.lines().collect::<Vec<_>>(),
        [
            "grove:grove",
            "iraq:iraq",
            "postgres:grove",
            "reports:grove",
            "turkey:turkey"
        ]
    );
    // Isolation: an instance reaches its own database and not another's.
    psql_as(
        db,
        "turkey",
        &turkey,
        "turkey",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kebab')",
    )
    .unwrap();
    let denied = psql_as(db, "turkey", &turkey, "iraq", "SELECT 1").unwrap_err();
    assert!(
        denied.contains("permission denied for database \"iraq\""),
        "{denied}"
    );
    assert!(psql_as(db, "iraq", &iraq, "turkey", "SELECT 1").is_err());
    assert!(psql_as(db, "turkey", "wrong-password", "turkey", "SELECT 1").is_err());

    // The unit's URL logs in as its instance; `grove exec` runs in that environment.
    let out = s.run(&[
        "exec",
        "web@iraq",
        "--",
        "sh",
        "-c",
        "psql -X -Atc 'SELECT current_user, current_database()' \"$DATABASE_URL\"",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "iraq|iraq");
    // Secrets stay out of ps and events.
    let ps_json = text(&s.run(&["ps", "--json"]).stdout);
    let events = text(&s.run(&["events", "-n", "1000"]).stdout);
    for pw in [&admin, &turkey, &iraq] {
        assert!(!ps_json.contains(pw.as_str()) && !events.contains(pw.as_str()));
    }
    let check = text(&s.run(&["check", "--env", "staging"]).stdout);
    assert!(!check.contains(turkey.as_str()), "{check}");

    // A reload that adds an instance creates its role, database and route; the others keep
    // their processes.
    let (code, _) = http_get(edge, "/JO/x");
    assert_eq!(code, 404);
    let before: Vec<i64> = ["db", "web@turkey", "web@iraq", "reports"]
        .iter()
        .map(|u| s.pid(u).unwrap())
        .collect();
    let file = s.path().join("grove.toml");
    let mut body = std::fs::read_to_string(&file).unwrap();
    body.push_str("\n[instances.jordan]\nprefix = \"/JO\"\n");
    std::fs::write(&file, body).unwrap();
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("web@jordan healthy", 30, |s| {
        s.unit("web@jordan")["health"] == "healthy"
    });
    let after: Vec<i64> = ["db", "web@turkey", "web@iraq", "reports"]
        .iter()
        .map(|u| s.pid(u).unwrap())
        .collect();
    assert_eq!(before, after, "untouched units were restarted");
    let events = text(&s.run(&["events", "db"]).stdout);
    let last = events
        .lines()
        .rev()
        .find(|l| l.contains("provisioned"))
        .unwrap_or("");
    assert!(
        last.contains("roles and databases in place: grove, iraq, jordan, reports, turkey"),
        "{events}"
    );
    let jordan = secret(&s, "db.jordan");
    assert_eq!(
        psql_as(db, "jordan", &jordan, "jordan", "SELECT current_database()").unwrap(),
        "jordan"
    );
    let (code, body) = http_get(edge, "/JO/x");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"path\": \"/x\""), "{body}");

    // Data survives down and up, with the same passwords.
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!before.iter().any(|p| alive(*p)), "a process outlived down");
    up(&s, Some("staging"));
    assert_eq!(
        psql_as(
            port(&s, "db"),
            "turkey",
            &turkey,
            "turkey",
            "SELECT v FROM t"
        )
        .unwrap(),
        "kebab"
    );
    let log = s.log("db");
    assert!(log.contains("database system is shut down"), "{log}");
}

fn memcached(port: u16, request: &str, until: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&out).contains(until) {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    text(&out)
}

fn redis_cli(s: &Stack, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .env("REDISCLI_AUTH", secret(s, "cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn redis_and_memcached_answer_their_clients_and_two_stacks_do_not_clash() {
    let body = r#"
[services.cache]
recipe = "redis"

[services.mc]
recipe = "memcached"

[services.app]
command = "sleep 600"
depends_on = { cache = "healthy", mc = "healthy" }
env = { REDIS_URL = "${cache.url}", MEMCACHED = "${mc.host}:${mc.port}" }
"#;
    let a = open_stack(body);
    let b = open_stack(body);
    up(&a, None);
    up(&b, None);
    let ports = |s: &Stack| (port(s, "cache"), port(s, "mc"));
    let (ra, ma) = ports(&a);
    let (rb, mb) = ports(&b);
    assert!(ra != rb && ma != mb, "two stacks share a port");

    // Redis wants its password; each stack has its own data.
    let denied = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &ra.to_string(), "get", "k"])
        .env_remove("REDISCLI_AUTH")
        .output()
        .unwrap();
    assert!(
        text(&denied.stdout).contains("NOAUTH"),
        "{}",
        text(&denied.stdout)
    );
    assert_eq!(redis_cli(&a, ra, &["set", "k", "from-a"]), "OK");
    assert_eq!(redis_cli(&b, rb, &["get", "k"]), "");
    // The app's URL carries the password (and is therefore secret).
    let out = a.run(&[
        "exec",
        "app",
        "--",
        "sh",
        "-c",
        "redis-cli -u \"$REDIS_URL\" --no-auth-warning get k",
    ]);
    assert_eq!(text(&out.stdout).trim(), "from-a", "{}", text(&out.stderr));

    // Memcached speaks its text protocol.
    let stored = memcached(ma, "set greeting 0 0 5\r\nhello\r\n", "\r\n");
    assert_eq!(stored.trim(), "STORED");
    let got = memcached(ma, "get greeting\r\n", "END\r\n");
    assert!(got.contains("VALUE greeting 0 5\r\nhello\r\n"), "{got}");
    let other = memcached(mb, "get greeting\r\n", "END\r\n");
    assert_eq!(other, "END\r\n");

    // Redis saves on stop and loads on start.
    let out = a.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        a.log("cache").contains("DB saved on disk"),
        "{}",
        a.log("cache")
    );
    up(&a, None);
    assert_eq!(redis_cli(&a, port(&a, "cache"), &["get", "k"]), "from-a");
}

#[test]
fn rabbitmq_runs_its_own_node_with_users_and_virtual_hosts() {
    let s = open_stack(
        r#"
[services.mq]
recipe = "rabbitmq"
databases = ["jobs"]

[services.worker]
command = "sleep 600"
depends_on = { mq = "healthy" }
env = { BROKER_URL = "${mq.url}/events" }
"#,
    );
    up(&s, None);
    let data = s.path().join(".grove/data/mq");
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("grove-ports.json")).unwrap())
            .unwrap();
    let ctl = |args: &[&str]| {
        let out = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-q", "-n", &format!("grove-{}-mq@localhost", s.name)])
            .args(args)
            .env("HOME", &data)
            .env("ERL_EPMD_PORT", ports["epmd"].to_string())
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    };
    let (ok, vhosts) = ctl(&["list_vhosts"]);
    assert!(ok, "{vhosts}");
    let mut names: Vec<&str> = vhosts.lines().skip(1).map(str::trim).collect();
    names.sort();
    assert_eq!(names, ["/", "events", "jobs"]);
    let password = secret(&s, "mq");
    let (ok, out) = ctl(&["authenticate_user", "grove", &password]);
    assert!(ok, "{out}");
    let (ok, _) = ctl(&["authenticate_user", "grove", "not-the-password"]);
    assert!(!ok);
    // The worker's URL names its virtual host; the password stays out of the Plan's output.
    let env = text(
        &s.run(&["exec", "worker", "--", "sh", "-c", "echo $BROKER_URL"])
            .stdout,
    );
    assert_eq!(
        env.trim(),
        format!(
            "amqp://grove:{password}@127.0.0.1:{}/events",
            port(&s, "mq")
        )
    );
    let check = text(&s.run(&["check", "--json"]).stdout);
    assert!(!check.contains(&password));
    // They were loaded as the node booted (no CLI import was needed); a reload that asks for
    // another virtual host creates it in the running node, which keeps running.
    let log = std::fs::read_to_string(s.path().join(".grove/logs/mq.log")).unwrap();
    assert!(log.contains("Applying definitions from file"), "{log}");
    let pid = s.pid("mq").unwrap();
    let text_now = std::fs::read_to_string(s.path().join("grove.toml")).unwrap();
    std::fs::write(
        s.path().join("grove.toml"),
        text_now.replace(r#"databases = ["jobs"]"#, r#"databases = ["jobs", "more"]"#),
    )
    .unwrap();
    let out = s.run(&["reload", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("the new virtual host", 30, |_| {
        ctl(&["list_vhosts"]).1.lines().any(|l| l.trim() == "more")
    });
    assert_eq!(s.pid("mq"), Some(pid), "the server was not restarted");
    // It stops cleanly, port mapper included.
    let pid = s.pid("mq").unwrap();
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    assert!(s.processes().is_empty(), "left behind: {:?}", s.processes());
}

#[test]
fn a_missing_server_binary_stops_up_before_anything_starts() {
    let s = Stack::new(
        r#"
[services.app]
command = "sleep 600"

[services.docs]
recipe = "mongodb"
"#,
    );
    let out = s.run(&["up", "-d", "--wait-timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("service `docs`: the mongodb recipe needs `mongod`, which is not installed"),
        "{err}"
    );
    assert!(err.contains("not packaged by Debian"), "{err}");
    assert!(s.processes().is_empty());
}

/// This machine's first address beyond loopback, if it has one.
fn outside_address() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    text(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

#[test]
fn postgres_takes_clients_only_from_the_networks_it_allows() {
    let Some(ip) = outside_address() else {
        eprintln!("no address beyond loopback here; skipped");
        return;
    };
    let s = open_stack("");
    let file = |allow: &str| {
        format!("[edge]\nlisten = []\n\n[services.db]\nrecipe = \"postgres\"\nbind = \"0.0.0.0\"\nallow = [\"{allow}\"]\n")
    };
    s.write_stack(&file(&format!("{ip}/32")));
    s.up();
    let port = s.unit("db")["port"].as_u64().unwrap().to_string();
    let password = secret(&s, "db");
    // Issue 26, point 2: a client on the network `allow` names logs in with the password.
    let from_outside = || {
        Command::new("psql")
            .args([
                "-X", "-Atc", "SELECT 1", "-h", &ip, "-p", &port, "-U", "grove", "-d", "postgres",
            ])
            .env("PGPASSWORD", &password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap()
    };
    let out = from_outside();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");
    // Another network: the same client is refused by pg_hba.conf.
    s.write_stack(&file("10.255.255.0/24"));
    let out = s.run(&["reload", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = from_outside();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no pg_hba.conf entry"),
        "{}",
        text(&out.stderr)
    );
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Runs `script` in the venv's Python with `U` set to `url` and `SSL_CERT_FILE` to `ca`
/// (none: Python's default trust); its output.
fn python(script: &str, url: &str, ca: Option<&std::path::Path>) -> std::process::Output {
    let mut c = Command::new(common::venv_tool("python3"));
    c.args(["-c", script]).env("U", url);
    if let Some(ca) = ca {
        c.env("SSL_CERT_FILE", ca);
    }
    c.output().unwrap()
}

/// A recipe with `tls = true` and an app that waits for it, its URL in `var`: the stack and
/// the URL the app was given.
fn tls_recipe(recipe: &str, var: &str, suffix: &str) -> (Stack, String) {
    let s = open_stack(&format!(
        "[edge]\nlisten = []\n\n[services.srv]\nrecipe = \"{recipe}\"\ntls = true\n\n[services.app]\ncommand = \"sleep 600\"\ndepends_on = {{ srv = \"healthy\" }}\nenv = {{ {var} = \"${{srv.url}}{suffix}\" }}\n"
    ));
    up(&s, None);
    let pid = s.pid("app").unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let url = String::from_utf8_lossy(&environ)
        .split('\0')
        .find_map(|kv| kv.strip_prefix(&format!("{var}=")).map(str::to_string))
        .unwrap();
    (s, url)
}

#[test]
fn postgres_with_tls_serves_a_certificate_its_clients_verify() {
    let (s, url) = tls_recipe("postgres", "DATABASE_URL", "/app");
    assert!(
        url.contains("/app?sslmode=verify-full&sslrootcert="),
        "{url}"
    );
    // The app's own URL: TLS, the server verified against the stack's CA and its name.
    let out = std::process::Command::new("psql")
        .args([
            "-X",
            "-Atc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &url,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "t");
    // A client that trusts another CA is refused: verify-full means it.
    let other = tempfile::tempdir().unwrap();
    let foreign = other.path().join("other.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&foreign, cert.pem()).unwrap();
    let wrong = url.replace(
        &url[url.find("sslrootcert=").unwrap()..],
        &format!("sslrootcert={}", foreign.display()),
    );
    let out = std::process::Command::new("psql")
        .args(["-X", "-Atc", "SELECT 1", &wrong])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a foreign CA must not verify the server"
    );
    // Loopback without TLS still works (grove's probe, local tools).
    let admin = secret(&s, "srv");
    let plain = std::process::Command::new("psql")
        .args(["-X", "-Atc", "SELECT 1", "-h", "127.0.0.1", "-p"])
        .arg(port(&s, "srv").to_string())
        .args(["-U", "grove", "-d", "postgres"])
        .env("PGPASSWORD", &admin)
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    assert_eq!(text(&plain.stdout).trim(), "1", "{}", text(&plain.stderr));
}

#[test]
fn redis_with_tls_speaks_only_tls_and_its_url_works_in_redis_py() {
    let (s, url) = tls_recipe("redis", "REDIS_URL", "");
    assert!(
        url.starts_with("rediss://default:")
            && url.contains("?ssl_cert_reqs=required&ssl_ca_certs="),
        "{url}"
    );
    // redis-py (as Celery and Django use it) with the unit's own URL: TLS, verified.
    let out = python(
        "import os, redis; r = redis.from_url(os.environ['U']); r.set('k', 'over tls'); print(r.get('k').decode())",
        &url,
        None,
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "over tls",
        "{}",
        text(&out.stderr)
    );
    // The port speaks TLS only: a plain-text client gets no answer.
    let p = port(&s, "srv");
    let plain = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &p.to_string(), "PING"])
        .env("REDISCLI_AUTH", secret(&s, "srv"))
        .output()
        .unwrap();
    assert!(
        !text(&plain.stdout).contains("PONG"),
        "{}",
        text(&plain.stdout)
    );
    let ca = s.path().join(".grove/certs/ca.pem");
    let tls = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &p.to_string(), "--tls", "--cacert"])
        .arg(&ca)
        .arg("PING")
        .env("REDISCLI_AUTH", secret(&s, "srv"))
        .output()
        .unwrap();
    assert_eq!(text(&tls.stdout).trim(), "PONG", "{}", text(&tls.stderr));
    // A backup is made over TLS too.
    let out = s.run(&["backup", "srv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("backed up srv (data)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn rabbitmq_with_tls_serves_amqps_on_its_port_to_a_verifying_client() {
    let s = open_stack(
        r#"
[services.mq]
recipe = "rabbitmq"
tls = true

[services.worker]
command = "sleep 600"
depends_on = { mq = "healthy" }
env = { BROKER_URL = "${mq.url}" }
"#,
    );
    up(&s, None);
    let url = text(
        &s.run(&["exec", "worker", "--", "sh", "-c", "echo $BROKER_URL"])
            .stdout,
    )
    .trim()
    .to_string();
    let p = port(&s, "mq");
    assert!(
        url.starts_with("amqps://grove:") && url.ends_with(&format!("@127.0.0.1:{p}")),
        "{url}"
    );
    // pika, trusting the stack's CA as a client would (SSL_CERT_FILE), over the unit's URL.
    let ca = s.path().join(".grove/certs/ca.pem");
    let script = "import os, pika\nc = pika.BlockingConnection(pika.URLParameters(os.environ['U']))\nch = c.channel()\nch.queue_declare('q')\nch.basic_publish('', 'q', b'over tls')\nprint(ch.basic_get('q', auto_ack=True)[2].decode())\nc.close()\n";
    let out = python(script, &url, Some(&ca));
    assert_eq!(
        text(&out.stdout).trim(),
        "over tls",
        "{}",
        text(&out.stderr)
    );
    // Plain AMQP on that port is not spoken, and a client trusting no such CA is refused.
    let plain = url.replacen("amqps://", "amqp://", 1);
    let connect = "import os, pika\npika.BlockingConnection(pika.URLParameters(os.environ['U']))";
    let out = python(connect, &plain, None);
    assert!(
        !out.status.success(),
        "plain AMQP must not work on a TLS port"
    );
    let out = python(
        connect,
        &url,
        Some(std::path::Path::new("/nonexistent.pem")),
    );
    assert!(
        !out.status.success(),
        "an unverified server must be refused"
    );
}
