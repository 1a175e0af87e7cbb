//! TLS end to end: certificate files chosen by SNI and reloaded when they change, the HTTP to
//! HTTPS redirect and HSTS, clear errors for bad files, and ACME against Debian's pebble
//! (issuance, a failing challenge, renewal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pki::{Ca, Pebble};
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// curl over HTTPS to `host` resolved to loopback; (exit code, body, response headers).
fn curl(port: u16, host: &str, path: &str, ca: &Path) -> (Option<i32>, String, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-D",
            "-",
            "--resolve",
            &resolve,
            "--cacert",
            &ca.display().to_string(),
            &format!("https://{host}:{port}{path}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        out.status.code(),
        body.to_string(),
        format!("{head}\n{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn kinds(s: &Stack) -> Vec<(String, String)> {
    s.events()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn certificate_files_sni_reload_redirect_and_hsts() {
    let s = Stack::new("");
    let ca = Ca::new();
    let dir = s.path();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    for (name, host) in [("a", "a.test"), ("b", "b.test")] {
        let (c, k) = ca.leaf(&[host], None);
        std::fs::write(dir.join(format!("{name}.pem")), c).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), k).unwrap();
    }
    let (http, https) = (free_port(), free_port());
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{http}", "https://127.0.0.1:{https}"]
tls = [{{ cert = "a.pem", key = "a.key" }}, {{ cert = "b.pem", key = "b.key" }}]
hsts = true

[services.app]
command = "python3 {echo}"
health = {{ http = "/" }}
route = {{}}
"#,
        echo = echo_app()
    ));
    let up = s.up();
    assert!(up.status.success(), "{}", text(&up.stderr));
    let ca_path = dir.join("ca.pem");
    // SNI: each host gets its own certificate (curl checks the name against the CA's leaf).
    for host in ["a.test", "b.test"] {
        let (code, body, head) = curl(https, host, "/x", &ca_path);
        assert_eq!(code, Some(0), "{host}: {head}");
        assert!(body.contains("\"path\": \"/x\""), "{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
            "{head}"
        );
    }
    // Plain HTTP for a host with a certificate: 308 to the HTTPS listener, path and query kept.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            "Host: a.test",
        ])
        .arg(format!("http://127.0.0.1:{http}/p/q?x=1"))
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        format!("308 https://a.test:{https}/p/q?x=1")
    );
    // A host without one is served over HTTP as before.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: plain.test",
        ])
        .arg(format!("http://127.0.0.1:{http}/"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "200");
    // The certificate file changes: the new one (which also names a2.test) is served without a
    // restart, and the change is an event.
    let (c, k) = ca.leaf(&["a.test", "a2.test"], None);
    std::fs::write(dir.join("a.key"), k).unwrap();
    std::fs::write(dir.join("a.pem"), c).unwrap();
    wait_until("the reloaded certificate", 15, || {
        curl(https, "a2.test", "/", &ca_path).0 == Some(0)
    });
    assert!(kinds(&s)
        .iter()
        .any(|(k, m)| k == "cert-reloaded" && m.contains("a2.test")));
    // A mismatched pair is refused with a clear event; the previous certificate keeps serving.
    let (_, other_key) = ca.leaf(&["x.test"], None);
    std::fs::write(dir.join("a.key"), other_key).unwrap();
    wait_until("the refusal", 15, || {
        kinds(&s)
            .iter()
            .any(|(k, m)| k == "cert-failed" && m.contains("does not belong"))
    });
    assert_eq!(curl(https, "a2.test", "/", &ca_path).0, Some(0));
    // `grove certs` reads the files as they are now: the mismatched pair is named, exit 1.
    let out = s.run(&["certs"]);
    assert_eq!(out.status.code(), Some(1));
    let listing = text(&out.stdout);
    assert!(
        listing.contains("b.test") && listing.contains("files"),
        "{listing}"
    );
    assert!(listing.contains("does not belong"), "{listing}");
}

#[test]
fn expired_or_mismatched_certificate_files_stop_up_with_a_clear_error() {
    let ca = Ca::new();
    for (case, want) in [("expired", "expired on"), ("mismatched", "does not belong")] {
        let s = Stack::new("");
        let dir = s.path();
        let (c, k) = if case == "expired" {
            ca.leaf(&["a.test"], Some((-100, -10)))
        } else {
            (ca.leaf(&["a.test"], None).0, ca.leaf(&["b.test"], None).1)
        };
        std::fs::write(dir.join("a.pem"), c).unwrap();
        std::fs::write(dir.join("a.key"), k).unwrap();
        s.write_stack(&format!(
            "[edge]\nlisten = [\"https://127.0.0.1:{}\"]\ntls = {{ cert = \"a.pem\", key = \"a.key\" }}\n",
            free_port()
        ));
        let out = s.run(&["up", "-d", "--wait-timeout", "20s"]);
        assert!(!out.status.success(), "{case}");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(all.contains(want) && all.contains("a.pem"), "{case}: {all}");
        let out = s.run(&["certs"]);
        assert_eq!(out.status.code(), Some(1), "{case}");
        assert!(
            text(&out.stdout).contains(want),
            "{case}: {}",
            text(&out.stdout)
        );
    }
}

/// Writes an ACME stack: `edge` is the `[edge]` lines before the ACME keys (listen, hosts,
/// acme_challenge); an echo app serves every path.
fn write_acme_stack(s: &Stack, pebble: &Pebble, edge: &str) {
    s.write_stack(&format!(
        r#"[edge]
{edge}
tls = "acme"
acme_email = "ops@example.org"
acme_directory = "{dir}"
acme_ca = "{ca}"

[services.app]
command = "python3 {echo}"
health = {{ http = "/" }}
route = {{}}
"#,
        dir = pebble.directory,
        ca = pebble.ca().display(),
        echo = echo_app()
    ));
}

#[test]
fn acme_issues_renews_and_reports_a_failing_challenge_against_pebble() {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https);
    pebble.break_dns("broken.test");
    let s = Stack::new("");
    let write = |hosts: &str| {
        write_acme_stack(
            &s,
            &pebble,
            &format!(
                "listen = [\"http://127.0.0.1:{http}\", \"https://127.0.0.1:{https}\"]\nhosts = [{hosts}]"
            ),
        )
    };
    write(r#""acme.test", "broken.test""#);
    let up = s.up();
    assert!(up.status.success(), "{}", text(&up.stderr));
    wait_until("the certificate for acme.test", 60, || {
        kinds(&s)
            .iter()
            .any(|(k, m)| k == "cert-issued" && m.contains("acme.test"))
    });
    let root = pebble.issuing_root();
    let (code, body, head) = curl(https, "acme.test", "/hi", &root);
    assert_eq!(code, Some(0), "{head}");
    assert!(body.contains("\"path\": \"/hi\""), "{body}");
    // The challenge for broken.test cannot be reached: a failure naming the host, retried.
    wait_until("the failure for broken.test", 60, || {
        kinds(&s)
            .iter()
            .any(|(k, m)| k == "cert-failed" && m.contains("broken.test") && m.contains("retrying"))
    });
    // `grove certs` lists the issued certificate and the one still missing.
    let out = s.run(&["certs", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["names"][0], "acme.test", "{rows}");
    assert_eq!(rows[0]["source"], "acme");
    assert!(rows[1]["problem"]
        .as_str()
        .unwrap()
        .contains("not issued yet for broken.test"));
    // Keys and the account are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["acme.test/key.pem", "account.json"] {
        let p = s.path().join(".grove/certs/acme").join(f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // Renewal: down, age the stored certificate past two thirds of its life, up again.
    assert!(s.run(&["down"]).status.success());
    let ca = Ca::new();
    let (c, k) = ca.leaf(&["acme.test"], Some((-80, 10)));
    let d = s.path().join(".grove/certs/acme/acme.test");
    std::fs::write(d.join("cert.pem"), c).unwrap();
    std::fs::write(d.join("key.pem"), k).unwrap();
    write(r#""acme.test""#);
    let up = s.up();
    assert!(up.status.success(), "{}", text(&up.stderr));
    wait_until("the renewal", 60, || {
        kinds(&s)
            .iter()
            .any(|(k, m)| k == "cert-renewed" && m.contains("acme.test"))
    });
    assert_eq!(curl(https, "acme.test", "/", &root).0, Some(0));
}

#[test]
fn https_upstreams_are_verified_against_the_configured_ca() {
    let ca = Ca::new();
    let s = Stack::new("");
    let dir = s.path();
    let (c, k) = ca.leaf(&["127.0.0.1"], None);
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.join("up.pem"), c).unwrap();
    std::fs::write(dir.join("up.key"), k).unwrap();
    let (edge, up) = (free_port(), free_port());
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{edge}"]
upstream_ca = "ca.pem"

[services.secure]
command = "python3 {echo}"
port = {up}
env = {{ NAME = "secure", TLS_CERT = "{d}/up.pem", TLS_KEY = "{d}/up.key" }}

[services.remote]
upstreams = ["https://127.0.0.1:{up}"]
route = {{ prefix = "/r" }}
"#,
        echo = echo_app(),
        d = dir.display()
    ));
    s.up();
    let get = |port: u16| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/r/x"))
            .output()
            .unwrap();
        text(&out.stdout)
    };
    wait_until("the https upstream", 20, || get(edge).ends_with("\n200"));
    assert!(get(edge).contains("\"name\": \"secure\""));
    // Another edge that does not trust that CA refuses the upstream: 502 naming the cause.
    let other = Stack::new("");
    let edge2 = free_port();
    other.write_stack(&format!(
        "[edge]\nlisten = [\"http://127.0.0.1:{edge2}\"]\n[services.remote]\nupstreams = [\"https://127.0.0.1:{up}\"]\nroute = {{ prefix = \"/r\" }}\n"
    ));
    other.up();
    let answer = get(edge2);
    assert!(answer.ends_with("\n502"), "{answer}");
    assert!(answer.to_lowercase().contains("certificate"), "{answer}");
}

#[test]
fn acme_over_tls_alpn_with_only_an_https_listener() {
    let https = free_port();
    // No HTTP listener at all: pebble's HTTP-01 port points at nothing.
    let pebble = Pebble::start(free_port(), https);
    let s = Stack::new("");
    write_acme_stack(
        &s,
        &pebble,
        &format!(
            "listen = [\"https://127.0.0.1:{https}\"]\nhosts = [\"alpn.test\"]\nacme_challenge = \"tls-alpn-01\""
        ),
    );
    s.up();
    let start = Instant::now();
    while !kinds(&s)
        .iter()
        .any(|(k, m)| k == "cert-issued" && m.contains("alpn.test"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no certificate; events: {:#?}",
            kinds(&s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body, head) = curl(https, "alpn.test", "/alpn", &pebble.issuing_root());
    assert_eq!(code, Some(0), "{head}");
    assert!(body.contains("\"path\": \"/alpn\""), "{body}");
}

/// Issue 26: one CA for several hosts. The web tier's stack exports its CA, the app server's
/// imports it; the app server's self-signed certificate is then trusted by the web tier's
/// edge (no `upstream_ca`: the stack's own CA is trusted by default) and by a client holding
/// the web tier's `ca.pem`.
#[test]
fn a_ca_shared_between_hosts_lets_each_trust_the_others_certificates() {
    let (web_port, app_port) = (free_port(), free_port());
    let web = Stack::new("");
    web.write_stack(&format!(
        r#"
[edge]
listen = ["http://127.0.0.1:{web_port}"]

[services.app]
upstreams = ["https://localhost:{app_port}"]
route = {{}}
"#
    ));
    let app = Stack::new("");
    app.write_stack(&format!(
        r#"
[edge]
listen = ["https://127.0.0.1:{app_port}"]
tls = "self-signed"

[services.web]
command = "python3 {echo}"
route = {{}}
"#,
        echo = echo_app()
    ));
    let bundle = web.path().join("ca-bundle.pem");
    let out = web.run(&["ca", "export", "--key"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the key never goes to a terminal"
    );
    let out = web.run(&["ca", "export", "--key", "-o", &bundle.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The folder the bundle went to is the user's: its mode is left alone.
    let folder = std::fs::metadata(web.path()).unwrap().permissions().mode();
    std::fs::set_permissions(web.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = web.run(&["ca", "export", "--key", "-o", &bundle.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = std::fs::metadata(web.path()).unwrap().permissions().mode();
    assert_eq!(
        after & 0o777,
        0o755,
        "the folder's mode changed (it was {folder:o})"
    );
    let out = app.run(&["ca", "import", &bundle.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Importing it again changes nothing; another CA is refused without --force.
    let out = app.run(&["ca", "import", &bundle.display().to_string()]);
    assert!(text(&out.stdout).contains("already has that CA"));
    app.up();
    web.up();
    let ca = web.path().join(".grove/certs/ca.pem");
    let (code, body, head) = curl(app_port, "localhost", "/direct", &ca);
    assert_eq!(code, Some(0), "{head}");
    assert!(body.contains("\"path\": \"/direct\""), "{body}");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{web_port}/through-the-web-tier"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "200", "{}", text(&out.stderr));
    // A stack with a CA of its own refuses the import unless forced.
    let other = Stack::new("");
    let out = other.run(&["ca", "export"]);
    assert!(text(&out.stdout).starts_with("-----BEGIN CERTIFICATE-----"));
    let out = other.run(&["ca", "import", &bundle.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already has its own CA"),
        "{}",
        text(&out.stderr)
    );
}
