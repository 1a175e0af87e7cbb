//! Issue 23: the edge's header rules, redirects and canonical host, through the real binary
//! with curl as the client and `tests/fixtures/echo.py` as the upstream (it answers with the
//! headers it was sent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

/// curl to `host` on loopback `port`; (status, response head, body).
fn get(port: u16, host: &str, target: &str, extra: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-D", "-", "-H"])
        .arg(format!("Host: {host}"))
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}{target}"))
        .output()
        .unwrap();
    let raw = text(&out.stdout);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A service running the echo upstream, probed, with `route`.
fn echo_service(name: &str, route: &str) -> String {
    format!(
        "[services.{name}]\ncommand = \"python3 {}\"\nenv = {{ PORT = \"${{PORT}}\" }}\nhealth = {{ http = \"/healthz\", interval = \"100ms\", start_period = \"20s\" }}\nroute = {route}\n",
        echo_app()
    )
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn header_rules_redirects_and_the_canonical_host_apply_to_a_routes_requests() {
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]
hosts = ["example.org", "www.example.org"]
canonical_host = "example.org"
redirects = {{ "/old" = {{ to = "https://new.example.org{{uri}}", status = 301 }}, "/docs/" = "/manual{{path}}" }}

{svc_web}
"#,
        svc_web = echo_service("web", r#"{ prefix = "/", hold = "0s", headers = { set = { X-Frame-Options = "DENY", X-Seen-Id = "{request_id}" }, add = { Vary = "X-Tenant" }, remove = ["Server"] }, request_headers = { set = { X-Tenant = "{host}", X-Asked = "{method} {uri}" }, remove = ["Cookie"] } }"#)
    ));
    s.up();
    // The response rules, on the upstream's answer.
    let (status, head, body) = get(port, "example.org", "/a?b=1", &["-H", "Cookie: s=1"]);
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(header(&head, "x-frame-options"), ["DENY"]);
    assert_eq!(header(&head, "x-seen-id"), header(&head, "x-request-id"));
    assert!(header(&head, "server").is_empty(), "{head}");
    assert!(header(&head, "vary").contains(&"X-Tenant"), "{head}");
    // The request rules, as the upstream heard them.
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-tenant"], "example.org");
    assert_eq!(seen["headers"]["x-asked"], "GET /a?b=1");
    assert!(seen["headers"].get("cookie").is_none(), "{seen}");
    // grove's own answers on that route get them too (a 502 once the app is gone).
    assert!(s.run(&["stop", "web"]).status.success());
    s.wait_for("web stopped", 10, |s| s.unit("web")["pid"].is_null());
    let (status, head, _) = get(port, "example.org", "/", &["-H", "Cookie: s=1"]);
    assert!(status >= 500, "{head}");
    assert_eq!(header(&head, "x-frame-options"), ["DENY"]);
    assert!(s.run(&["start", "web", "--wait"]).status.success());

    // The canonical host: www. is sent to the bare name, path and query kept.
    let (status, head, _) = get(port, "www.example.org", "/a/b?c=2", &[]);
    assert_eq!(status, 301, "{head}");
    assert_eq!(
        header(&head, "location"),
        [format!("http://example.org:{port}/a/b?c=2").as_str()]
    );
    // Redirects: the longest prefix wins over the route, placeholders filled.
    let (status, head, _) = get(port, "example.org", "/old/page?x=1", &[]);
    assert_eq!(status, 301, "{head}");
    assert_eq!(
        header(&head, "location"),
        ["https://new.example.org/old/page?x=1"]
    );
    let (status, head, _) = get(port, "example.org", "/docs/intro", &[]);
    assert_eq!(status, 302, "{head}");
    assert_eq!(header(&head, "location"), ["/manual/docs/intro"]);
    // `/oldies` is not under `/old`.
    let (status, _, _) = get(port, "example.org", "/oldies", &[]);
    assert_eq!(status, 200);

    // A reload that changes the rules applies them to the next request.
    let toml = std::fs::read_to_string(s.path().join("grove.toml")).unwrap();
    std::fs::write(
        s.path().join("grove.toml"),
        toml.replace(
            "X-Frame-Options = \"DENY\"",
            "X-Frame-Options = \"SAMEORIGIN\"",
        ),
    )
    .unwrap();
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, head, _) = get(port, "example.org", "/", &[]);
    assert_eq!(header(&head, "x-frame-options"), ["SAMEORIGIN"]);
}

/// Basic authentication from an htpasswd file in the three formats Debian's `htpasswd`
/// writes (bcrypt, apr1, SHA), against curl: the right password passes, a wrong one, an
/// unknown user and none get 401 with the challenge; a reload reads the file again.
#[test]
fn basic_auth_takes_the_users_htpasswd_wrote_and_nobody_else() {
    let port = free_port();
    let s = Stack::new("");
    let users = [
        ("alice", "secret1", "B"),
        ("bob", "secret2", "m"),
        ("carol", "secret3", "s"),
    ];
    let file = s.path().join("htpasswd");
    for (i, (u, p, how)) in users.iter().enumerate() {
        let create = if i == 0 { "c" } else { "" };
        let flags = format!("-b{how}{create}");
        let out = std::process::Command::new("htpasswd")
            .args([flags.as_str(), file.to_str().unwrap(), u, p])
            .output()
            .expect("htpasswd (apache2-utils; scripts/test installs it)");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]

{svc_web}
"#,
        svc_web = echo_service(
            "web",
            r#"{ prefix = "/", auth = { basic = { users_file = "htpasswd", realm = "staff" } } }"#
        )
    ));
    s.up();
    for (u, p, _) in users {
        let (status, _, body) = get(port, "x", "/", &["-u", &format!("{u}:{p}")]);
        assert_eq!(status, 200, "{u}: {body}");
        // Twice: the second is answered from what was verified.
        let (status, _, _) = get(port, "x", "/", &["-u", &format!("{u}:{p}")]);
        assert_eq!(status, 200, "{u}");
    }
    for creds in [
        vec!["-u", "alice:wrong"],
        vec!["-u", "mallory:secret1"],
        vec![],
    ] {
        let (status, head, _) = get(port, "x", "/", &creds);
        assert_eq!(status, 401, "{creds:?}: {head}");
        assert_eq!(
            header(&head, "www-authenticate"),
            ["Basic realm=\"staff\", charset=\"UTF-8\""]
        );
    }
    // A user added to the file counts after a reload.
    let out = std::process::Command::new("htpasswd")
        .args(["-bB", file.to_str().unwrap(), "dave", "secret4"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(get(port, "x", "/", &["-u", "dave:secret4"]).0, 401);
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(get(port, "x", "/", &["-u", "dave:secret4"]).0, 200);
    // A corrupt line is an error at check, located in the file.
    std::fs::write(
        &file,
        format!("{}eve:plaintext\n", std::fs::read_to_string(&file).unwrap()),
    )
    .unwrap();
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("htpasswd:5:1"), "{err}");
    assert!(
        err.contains("eve's password is in a format grove does not take"),
        "{err}"
    );
}

/// A rate limit is a bucket per client (or per header value): each client gets its own
/// burst, then 429 with `Retry-After`; the refusals are counted in `/metrics`.
#[test]
fn a_rate_limit_gives_each_client_its_own_bucket() {
    let (port, admin) = (free_port(), free_port());
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]

[admin]
listen = "127.0.0.1:{admin}"

{svc_web}

{svc_api}
"#,
        svc_web = echo_service("web", r#"{ prefix = "/", rate_limit = { requests = 3, per = "1m" } }"#),
        svc_api = echo_service("api", r#"{ prefix = "/api", rate_limit = { requests = 1, per = "1h", burst = 2, by = "header:X-Api-Key" } }"#)
    ));
    s.up();
    let from = |ip: &str| get(port, "x", "/", &["--interface", ip]).0;
    // Client 127.0.0.1: three pass, the fourth waits.
    for _ in 0..3 {
        assert_eq!(from("127.0.0.1"), 200);
    }
    let (status, head, _) = get(port, "x", "/", &["--interface", "127.0.0.1"]);
    assert_eq!(status, 429, "{head}");
    let retry: u64 = header(&head, "retry-after")[0].parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Another client has its own bucket.
    for _ in 0..3 {
        assert_eq!(from("127.0.0.2"), 200);
    }
    assert_eq!(from("127.0.0.2"), 429);
    // By header: each key its own burst of 2.
    let key = |k: &str| get(port, "x", "/api/x", &["-H", &format!("X-Api-Key: {k}")]).0;
    assert_eq!((key("a"), key("a"), key("a")), (200, 200, 429));
    assert_eq!((key("b"), key("b")), (200, 200));
    // Counted, by route.
    let token = std::fs::read_to_string(s.path().join(".grove/admin.token")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("http://127.0.0.1:{admin}/metrics"))
        .output()
        .unwrap();
    let metrics = text(&out.stdout);
    let count = |route: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("grove_http_rate_limited_total")
                    && l.contains(&format!("route=\"{route}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {route} in {metrics}"))
    };
    assert_eq!(count("*/"), 2.0);
    assert_eq!(count("*/api"), 1.0);
}

/// `grove maintenance on` answers a route with 503, the message and Retry-After, except to
/// the clients it lets through; it holds across a reload and a new grove, and `off` ends it.
#[test]
fn maintenance_mode_answers_503_but_lets_the_allowed_through_and_survives_a_restart() {
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]

{svc_web}

{svc_api}
"#,
        svc_web = echo_service("web", r#"{ prefix = "/" }"#),
        svc_api = echo_service("api", r#"{ prefix = "/api" }"#)
    ));
    s.up();
    // Bad input first: a route the stack does not have, a network that is not one.
    let out = s.run(&["maintenance", "on", "--route", "/nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no route `/nope`"),
        "{}",
        text(&out.stderr)
    );
    let out = s.run(&["maintenance", "on", "--allow", "not-a-net"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`not-a-net` is not a network"));

    let out = s.run(&[
        "maintenance",
        "on",
        "--route",
        "/api",
        "--message",
        "upgrading the database",
        "--retry-after",
        "10m",
        "--allow",
        "127.0.0.2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let check = |s: &Stack| {
        let (status, head, body) = get(port, "x", "/api/orders", &["--interface", "127.0.0.1"]);
        assert_eq!(status, 503, "{head}");
        assert!(body.contains("upgrading the database"), "{body}");
        assert_eq!(header(&head, "retry-after"), ["600"]);
        // The allowed client and the other route are served.
        assert_eq!(
            get(port, "x", "/api/orders", &["--interface", "127.0.0.2"]).0,
            200
        );
        assert_eq!(get(port, "x", "/", &[]).0, 200);
        let shown = text(&s.run(&["maintenance"]).stdout);
        assert!(shown.contains("maintenance is on for /api"), "{shown}");
    };
    check(&s);
    assert!(s.run(&["reload"]).status.success());
    check(&s);
    let out = s.run(&["upgrade", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    check(&s);
    let out = s.run(&["maintenance", "off"]);
    assert!(out.status.success());
    assert_eq!(get(port, "x", "/api/orders", &[]).0, 200);
    assert!(text(&s.run(&["maintenance"]).stdout).contains("maintenance is off"));
}

/// `[edge] error_pages` replaces grove's own pages, with the status, message and request id
/// filled in, on both request paths (a 404 of no route, a 502 of a unit gone).
#[test]
fn the_stacks_own_error_pages_replace_groves() {
    let port = free_port();
    let s = Stack::new("");
    std::fs::create_dir_all(s.path().join("pages")).unwrap();
    std::fs::write(
        s.path().join("pages/502.html"),
        "<html><style>p { color: red }</style><p>Our app hiccuped ({status} {reason}). Ref {request_id}.</p></html>\n",
    )
    .unwrap();
    std::fs::write(
        s.path().join("pages/404.html"),
        "<p>Nothing here: {message}</p>\n",
    )
    .unwrap();
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]
error_pages = {{ 502 = "pages/502.html", 404 = "pages/404.html" }}

{svc_web}

[services.gone]
upstreams = ["127.0.0.1:{closed}"]
route = {{ prefix = "/gone" }}
"#,
        svc_web = echo_service("web", r#"{ prefix = "/app", hold = "0s" }"#),
        closed = free_port()
    ));
    s.up();
    let (status, head, body) = get(port, "x", "/gone", &[]);
    assert_eq!(status, 502, "{head}");
    let id = header(&head, "x-request-id")[0].to_string();
    assert_eq!(
        body,
        format!("<html><style>p {{ color: red }}</style><p>Our app hiccuped (502 Bad Gateway). Ref {id}.</p></html>\n")
    );
    let (status, _, body) = get(port, "x", "/elsewhere", &[]);
    assert_eq!(status, 404);
    assert_eq!(
        body,
        "<p>Nothing here: no route for this host and path</p>\n"
    );
    assert!(s.run(&["stop", "web"]).status.success());
    s.wait_for("web stopped", 10, |s| s.unit("web")["pid"].is_null());
    // No ready unit is a 503, which has no page of the stack's: grove's own.
    let (status, head, body) = get(port, "x", "/app", &[]);
    assert_eq!(status, 503, "{head}");
    assert!(body.contains("grove"), "grove's own 503: {body}");
    // A page that cannot be read is an error at check.
    std::fs::remove_file(s.path().join("pages/502.html")).unwrap();
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("edge.error_pages.\"502\": cannot read"),
        "{}",
        text(&out.stderr)
    );
}

/// Forward authentication with Traefik's semantics: a 2xx from the auth service lets the
/// request through with the headers it names copied; anything else is the client's answer as
/// the service gave it; an auth service that is down is a 503, never a pass.
#[test]
fn forward_auth_asks_the_auth_service_and_fails_closed() {
    let port = free_port();
    let s = Stack::new("");
    let auth = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth.py");
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]

[services.auth]
command = "python3 {auth}"
health = {{ http = "/healthz", interval = "100ms", start_period = "20s" }}

{web}"#,
        auth = auth.display(),
        web = echo_service(
            "web",
            r#"{ prefix = "/", auth = { forward = { url = "${auth.url}/check", copy_headers = ["X-User", "X-Checked"] } } }"#
        )
    ));
    s.up();
    let (status, _, body) = get(
        port,
        "x",
        "/orders?id=7",
        &["-X", "POST", "-d", "{}", "-H", "Authorization: Bearer good"],
    );
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-user"], "alice");
    assert_eq!(seen["headers"]["x-checked"], "POST /orders?id=7");
    assert!(seen["headers"].get("x-other").is_none(), "{seen}");
    assert_eq!(seen["method"], "POST");
    // Denied: the auth service's own answer.
    let (status, head, body) = get(port, "x", "/orders", &["-H", "Authorization: Bearer bad"]);
    assert_eq!(status, 401, "{head}");
    assert_eq!(header(&head, "www-authenticate"), ["Bearer realm=\"api\""]);
    assert_eq!(body, "denied by the auth service\n");
    // The auth service down: 503, not a pass.
    assert!(s.run(&["stop", "auth"]).status.success());
    s.wait_for("auth stopped", 10, |s| s.unit("auth")["pid"].is_null());
    let (status, _, body) = get(port, "x", "/orders", &["-H", "Authorization: Bearer good"]);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the authentication service cannot be reached"),
        "{body}"
    );
}

/// `[edge]`'s `headers` and `rate_limit` are every route's, under the route's own: its `set`
/// of a name wins, its own rate limit replaces the edge's.
#[test]
fn edge_defaults_apply_to_every_route_under_its_own_rules() {
    let port = free_port();
    let s = Stack::new("");
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]
headers = {{ set = {{ X-Frame-Options = "DENY", X-Edge = "grove" }}, remove = ["Server"] }}
rate_limit = {{ requests = 2, per = "1m" }}

{web}
{api}"#,
        web = echo_service("web", r#"{ prefix = "/" }"#),
        api = echo_service(
            "api",
            r#"{ prefix = "/api", headers = { set = { X-Frame-Options = "SAMEORIGIN" } }, rate_limit = { requests = 100, per = "1m" } }"#
        )
    ));
    s.up();
    let (_, head, _) = get(port, "x", "/", &[]);
    assert_eq!(header(&head, "x-frame-options"), ["DENY"]);
    assert_eq!(header(&head, "x-edge"), ["grove"]);
    assert!(header(&head, "server").is_empty(), "{head}");
    let (_, head, _) = get(port, "x", "/api/x", &[]);
    assert_eq!(header(&head, "x-frame-options"), ["SAMEORIGIN"]);
    assert_eq!(header(&head, "x-edge"), ["grove"]);
    // The edge's limit on `/` (2 a minute, one request used above), the route's own on /api.
    assert_eq!(get(port, "x", "/", &[]).0, 200);
    assert_eq!(get(port, "x", "/", &[]).0, 429);
    for _ in 0..5 {
        assert_eq!(get(port, "x", "/api/x", &[]).0, 200);
    }
}

/// The compression upstream, probed, with `route`.
fn compressible_service(name: &str, route: &str) -> String {
    format!(
        "[services.{name}]\ncommand = \"python3 {}\"\nhealth = {{ http = \"/healthz\", interval = \"100ms\", start_period = \"20s\" }}\nroute = {route}\n",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/compressible.py")
            .display()
    )
}

/// curl's raw answer to `target` with `extra` arguments: (status, head, body bytes).
fn raw(port: u16, target: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-D", "/dev/stderr", "-o", "-"])
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}{target}"))
        .output()
        .unwrap();
    let head = text(&out.stderr);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, out.stdout)
}

/// Python with the test venv's httpx and requests; its stdout.
fn python(code: &str) -> String {
    let out = std::process::Command::new(venv_tool("python3"))
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The page `compressible.py` serves.
fn page() -> Vec<u8> {
    (0..800)
        .flat_map(|i| format!("<p>row {i} of the report</p>\n").into_bytes())
        .take(20000)
        .collect()
}

/// Issue 23, compression: the coding follows the client's Accept-Encoding and the route's
/// order, only compressible answers of at least `min_length` are encoded, never twice, ranges
/// and HEAD stay right, streams are compressed as they stream, static files keep their
/// precompressed siblings, and a route or a reload turns it off.
#[test]
fn compression_follows_accept_encoding_and_never_encodes_twice() {
    let port = free_port();
    let s = Stack::new("");
    let public = s.path().join("public");
    std::fs::create_dir(&public).unwrap();
    let js: String = (0..2000).map(|i| format!("var v{i} = {i};\n")).collect();
    std::fs::write(public.join("app.js"), &js).unwrap();
    std::fs::write(
        public.join("style.css"),
        "body { color: red }\n".repeat(100),
    )
    .unwrap();
    std::process::Command::new("sh")
        .arg("-c")
        .arg("gzip -k -9 style.css")
        .current_dir(&public)
        .status()
        .unwrap();
    let file = |compress: &str| {
        format!(
            "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\nstatic = {{ \"/assets\" = \"public/\" }}\n{compress}\n\n{}\n{}",
            compressible_service("app", r#"{ prefix = "/", hold = "0s" }"#),
            compressible_service(
                "plain",
                r#"{ prefix = "/plain", strip_prefix = true, hold = "0s", compress = false }"#
            ),
        )
    };
    s.write_stack(&file("compress = true"));
    s.up();
    let page = page();
    // curl --compressed offers deflate, gzip, br and zstd: the route's order (zstd, then
    // gzip) chooses, and curl decodes it to the page.
    let (status, head, body) = raw(port, "/page", &["--compressed"]);
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "content-encoding"), ["zstd"], "{head}");
    assert_eq!(body, page);
    assert!(header(&head, "vary").contains(&"Accept-Encoding"), "{head}");
    assert_eq!(header(&head, "etag"), ["W/\"page-1\""], "{head}");
    assert!(header(&head, "accept-ranges").is_empty(), "{head}");
    assert!(header(&head, "content-length").is_empty(), "{head}");
    // The client's weights first; a coding the route does not offer is never used.
    let (_, head, gz) = raw(
        port,
        "/page",
        &["-H", "Accept-Encoding: zstd;q=0, gzip;q=0.5"],
    );
    assert_eq!(header(&head, "content-encoding"), ["gzip"], "{head}");
    assert!(gz.len() < page.len() / 4, "{}", gz.len());
    let (_, head, body) = raw(port, "/page", &["-H", "Accept-Encoding: br"]);
    assert!(header(&head, "content-encoding").is_empty(), "{head}");
    assert_eq!(body, page);
    assert!(header(&head, "vary").contains(&"Accept-Encoding"), "{head}");
    assert_eq!(header(&head, "etag"), ["\"page-1\""], "{head}");
    // Too small, not compressible, or encoded by the app already: as the upstream sent it.
    let gzip = ["-H", "Accept-Encoding: gzip"];
    let (_, head, body) = raw(port, "/small", &gzip);
    assert!(header(&head, "content-encoding").is_empty(), "{head}");
    assert_eq!(body.len(), 100);
    let (_, head, body) = raw(port, "/image", &gzip);
    assert!(header(&head, "content-encoding").is_empty(), "{head}");
    assert_eq!(body.len(), page.len());
    let (_, head, body) = raw(port, "/encoded", &["--compressed"]);
    assert_eq!(header(&head, "content-encoding"), ["gzip"], "{head}");
    assert_eq!(
        body, page,
        "decoded once, it is the page: never encoded twice"
    );
    // A range is of the identity body; HEAD says what GET would get, without a body.
    let (status, head, body) = raw(
        port,
        "/page",
        &["-H", "Range: bytes=0-99", gzip[0], gzip[1]],
    );
    assert_eq!(status, 206, "{head}");
    assert!(header(&head, "content-encoding").is_empty(), "{head}");
    assert_eq!(body, page[..100]);
    let (status, head, body) = raw(port, "/page", &["-I", gzip[0], gzip[1]]);
    assert_eq!(status, 200, "{head}{}", text(&body));
    assert!(
        text(&body)
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{}",
        text(&body)
    );
    // The route that says `compress = false` sends everything as it is.
    let (_, head, body) = raw(port, "/plain/page", &["--compressed"]);
    assert!(header(&head, "content-encoding").is_empty(), "{head}");
    assert_eq!(body, page);
    // Static files: compressed on the fly, unless a precompressed sibling is there.
    let (_, head, body) = raw(port, "/assets/app.js", &["--compressed"]);
    assert_eq!(header(&head, "content-encoding"), ["zstd"], "{head}");
    assert_eq!(text(&body), js);
    assert!(header(&head, "etag")[0].starts_with("W/"), "{head}");
    let (_, head, body) = raw(port, "/assets/style.css", &["--compressed"]);
    assert_eq!(header(&head, "content-encoding"), ["gzip"], "{head}");
    assert!(!header(&head, "etag")[0].starts_with("W/"), "{head}");
    assert_eq!(text(&body), "body { color: red }\n".repeat(100));

    // Real clients: requests and httpx decode what they asked for; a stream is compressed as
    // it streams (its first event arrives long before the last).
    let url = format!("http://127.0.0.1:{port}");
    let out = python(&format!(
        r#"
import time, httpx, requests
page = "".join("<p>row %d of the report</p>\n" % i for i in range(800))[:20000]
r = requests.get("{url}/page")
assert r.text == page, len(r.text)
print("requests", r.headers["content-encoding"])
r = httpx.get("{url}/page")
assert r.text == page, len(r.text)
print("httpx", r.headers["content-encoding"])
start = time.monotonic()
with httpx.stream("GET", "{url}/stream", headers={{"Accept-Encoding": "gzip"}}) as r:
    assert r.headers["content-encoding"] == "gzip", r.headers
    for chunk in r.iter_text():
        if chunk:
            print("first event after %.1f s" % (time.monotonic() - start), repr(chunk))
            break
"#
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        ["requests gzip", "requests zstd"].contains(&lines[0]),
        "{out}"
    );
    assert_eq!(lines[1], "httpx zstd", "{out}");
    let after: f64 = lines[2]
        .strip_prefix("first event after ")
        .and_then(|r| r.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(99.0);
    assert!(after < 1.5, "{out}");
    assert!(lines[2].contains("event 0"), "{out}");

    // A reload that turns it off applies to the next request.
    s.write_stack(&file(""));
    let out = s.run(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, head, body) = raw(port, "/page", &["--compressed"]);
    assert!(header(&head, "content-encoding").is_empty(), "{head}");
    assert_eq!(body, page);
}

/// The echo upstream as `name` (it answers with its NAME), probed; with `route` when given.
fn named_echo(name: &str, route: Option<&str>) -> String {
    format!(
        "[services.{name}]\ncommand = \"python3 {}\"\nenv = {{ NAME = \"{name}\" }}\nhealth = {{ http = \"/healthz\", interval = \"100ms\", start_period = \"20s\" }}\n{}\n",
        echo_app(),
        route.map(|r| format!("route = {r}")).unwrap_or_default()
    )
}

/// Issue 23, weighted and mirrored routing: a route split 3:1 sends exactly three of every
/// four requests to `web`; sticky, a client stays on the target it got first, until that
/// target has no ready unit; a mirror gets a copy of half the requests (bodies too) and its
/// answers never reach the client.
#[test]
fn a_split_route_keeps_its_weights_its_sticky_clients_and_its_mirror() {
    let port = free_port();
    let s = Stack::new("");
    let file = |route: &str| {
        format!(
            "[edge]\nlisten = [\"http://127.0.0.1:{port}\"]\n\n{}{}{}",
            named_echo("web", Some(route)),
            named_echo("canary", None),
            named_echo("shadow", None)
        )
    };
    s.write_stack(&file(
        r#"{ hold = "0s", targets = { web = 3, canary = 1 } }"#,
    ));
    s.up();
    let url = format!("http://127.0.0.1:{port}");
    let count = |code: &str| {
        python(&format!(
            r#"
import collections, json, requests
url = "{url}"
{code}
"#
        ))
    };
    let out = count(
        r#"seen = collections.Counter(requests.get(url + "/split").json()["name"] for _ in range(100))
print(json.dumps(seen, sort_keys=True))"#,
    );
    assert_eq!(out.trim(), r#"{"canary": 25, "web": 75}"#);

    // Sticky: the first answer sets the cookie, and the client stays there.
    s.write_stack(&file(
        r#"{ hold = "0s", targets = { web = 3, canary = 1 }, sticky = true }"#,
    ));
    assert!(s.run(&["reload"]).status.success());
    let out = count(
        r#"for _ in range(4):
    c = requests.Session()
    first = c.get(url + "/sticky")
    target = first.cookies["grove_target"]
    names = {c.get(url + "/sticky").json()["name"] for _ in range(20)}
    assert names == {target}, (target, names)
    print(target)"#,
    );
    let targets: std::collections::BTreeSet<&str> = out.lines().collect();
    assert_eq!(
        targets,
        ["canary", "web"].into_iter().collect(),
        "four new clients, split 3:1, reach both: {out}"
    );
    // A target with no ready unit is skipped, cookie or not: nothing fails.
    assert!(s.run(&["stop", "canary"]).status.success());
    s.wait_for("canary stopped", 10, |s| s.unit("canary")["pid"].is_null());
    let out = count(
        r#"names = [requests.get(url + "/", cookies={"grove_target": "canary"}).json()["name"] for _ in range(20)]
print(set(names))"#,
    );
    assert_eq!(out.trim(), "{'web'}");

    // A mirror: every second request is copied to shadow, a body with it; the clients only
    // ever hear web.
    s.write_stack(&file(
        r#"{ hold = "0s", mirror = { service = "shadow", fraction = 0.5 } }"#,
    ));
    assert!(s.run(&["reload"]).status.success());
    let out = count(
        r#"names = {requests.get(url + "/mirrored").json()["name"] for _ in range(10)}
names |= {requests.post(url + "/posted", data=b"x" * 100).json()["name"] for _ in range(2)}
print(names)"#,
    );
    assert_eq!(out.trim(), "{'web'}");
    let logs = || text(&s.run(&["logs", "shadow"]).stdout);
    wait_until("the copies at the shadow", 10, || {
        logs().matches("GET /mirrored").count() == 5 && logs().contains("POST /posted")
    });
    assert_eq!(logs().matches("POST /posted").count(), 1, "{}", logs());
    // A request that never reaches its own target (none ready, hold 0s: 503) is not copied.
    assert!(s.run(&["stop", "web"]).status.success());
    s.wait_for("web stopped", 10, |s| s.unit("web")["pid"].is_null());
    let out = count(r#"print([requests.get(url + "/unserved").status_code for _ in range(4)])"#);
    assert_eq!(out.trim(), "[503, 503, 503, 503]");
    assert!(s.run(&["start", "web"]).status.success());
    s.wait_for("web healthy", 20, |s| s.unit("web")["state"] == "healthy");
    // Two: one of every two is copied.
    let out =
        count(r#"print({requests.get(url + "/served-again").json()["name"] for _ in range(2)})"#);
    assert_eq!(out.trim(), "{'web'}");
    wait_until("the copy of the request after the restart", 10, || {
        logs().contains("GET /served-again")
    });
    assert!(!logs().contains("/unserved"), "{}", logs());
}

/// A POST whose head and first 10 of 100 body bytes are sent, then nothing: the answer read
/// within `wait`, or `None` when none came (the edge still holds the body).
fn early_answer(port: u16, target: &str, wait: std::time::Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWxpY2U6c2VjcmV0MQ==\r\n\
         Content-Length: 100\r\n\r\n0123456789"
    )
    .unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).to_string()),
        _ => None,
    }
}

/// `[edge]`'s `auth`, `max_body` and `buffer_body` are every route's (and `auth` the static
/// mounts' too) unless the route sets its own; `auth = false` opens one route.
#[test]
fn edge_auth_and_body_sizes_are_every_routes_unless_it_sets_its_own() {
    let port = free_port();
    let s = Stack::new("");
    let file = s.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-bcB", file.to_str().unwrap(), "alice", "secret1"])
        .output()
        .expect("htpasswd (apache2-utils; scripts/test installs it)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::create_dir_all(s.path().join("public")).unwrap();
    std::fs::write(s.path().join("public/a.txt"), "static file\n").unwrap();
    s.write_stack(&format!(
        r#"[edge]
listen = ["http://127.0.0.1:{port}"]
auth = {{ basic = {{ users_file = "htpasswd" }} }}
max_body = "1KB"
static = {{ "/static" = "public" }}

{web}
{open}
{upload}"#,
        web = echo_service("web", r#"{ prefix = "/" }"#),
        open = echo_service(
            "open",
            r#"{ prefix = "/open", auth = false, buffer_body = "0" }"#
        ),
        upload = echo_service(
            "upload",
            r#"{ prefix = "/upload", max_body = "100KB", buffer_body = "0" }"#
        ),
    ));
    s.up();
    let alice = ["-u", "alice:secret1"];
    // Authentication: every route's and the static mount's, but the one that opted out.
    assert_eq!(get(port, "x", "/", &[]).0, 401);
    assert_eq!(get(port, "x", "/", &alice).0, 200);
    assert_eq!(get(port, "x", "/upload/x", &[]).0, 401);
    assert_eq!(get(port, "x", "/static/a.txt", &[]).0, 401);
    let (status, _, body) = get(port, "x", "/static/a.txt", &alice);
    assert_eq!((status, body.as_str()), (200, "static file\n"));
    let (status, _, body) = get(port, "x", "/open/x", &[]);
    assert_eq!(status, 200, "{body}");
    // Body sizes: the edge's 1 KB everywhere, the upload route's own 100 KB.
    let post = |target: &str, bytes: usize| {
        let file = s.path().join("body");
        std::fs::write(&file, "x".repeat(bytes)).unwrap();
        let data = format!("@{}", file.display());
        let mut args = vec!["-X", "POST", "--data-binary", data.as_str()];
        args.extend(alice);
        get(port, "x", target, &args).0
    };
    assert_eq!(post("/", 2000), 413);
    assert_eq!(post("/open/x", 2000), 413);
    assert_eq!(post("/upload/x", 2000), 200);
    assert_eq!(post("/upload/x", 150_000), 413);
    // buffer_body = "0": the upload route's body streams, so its upstream can answer before
    // the body has arrived; `/` holds bodies whole (up to 1 MiB) before asking its upstream.
    let wait = std::time::Duration::from_secs(3);
    let early = early_answer(port, "/upload/early", wait);
    assert!(
        early
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{early:?}"
    );
    let held = early_answer(port, "/early", std::time::Duration::from_millis(1500));
    assert_eq!(held, None);
    // The same on a route the fast path would take (no rules): a body over its buffer size
    // is handed to the streaming path.
    let early = early_answer(port, "/open/early", wait);
    assert!(
        early
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{early:?}"
    );
    // `check` says what each route got.
    let out = s.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
