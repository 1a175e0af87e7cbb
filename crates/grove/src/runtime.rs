//! The commands that run or talk to a running stack: `up`, `down`, `ps`, `start`, `stop`,
//! `restart`, `reload`, `logs`, `events`, `exec`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use grove_api::{Acted, Client, ClientError, Targets};
use grove_engine::{ApplyReport, Status};
use indexmap::IndexMap;

use crate::render;
use grove_daemon::{
    build_plan, ensure_state_dir, make_private_dir, open_store, plan_inputs, read_store,
    sticky_ports,
};

/// What every runtime command needs from the command line.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub file: PathBuf,
    pub env: Option<String>,
    pub color: bool,
    pub err_color: bool,
}

/// A loaded stack file and its folders.
pub(crate) struct Loaded {
    pub(crate) stack: grove_config::Stack,
    pub(crate) state: PathBuf,
}

impl Ctx {
    /// Loads the stack file, printing its warnings; `Err` holds the rendered errors.
    pub(crate) fn load(&self, env: Option<String>) -> Result<Loaded, String> {
        self.load_with(&grove_config::LoadOptions::from_process(env), true)
    }

    /// Loads the stack file with `opts`, printing its warnings when `warn`.
    fn load_with(&self, opts: &grove_config::LoadOptions, warn: bool) -> Result<Loaded, String> {
        match grove_config::load(&self.file, opts) {
            Ok(l) => {
                for w in l.warnings.iter().filter(|_| warn) {
                    eprintln!("{w}");
                }
                let state = l.stack.root.join(&l.stack.state_dir);
                Ok(Loaded {
                    stack: l.stack,
                    state,
                })
            }
            Err(errors) => Err(format!("{}grove: {errors}", errors.render(self.err_color))),
        }
    }

    /// As [`Ctx::load`], with the replica counts `grove scale` keeps in the store applied
    /// (what the daemon runs, at its start and every reload).
    pub(crate) fn load_running(&self, env: Option<String>) -> Result<Loaded, String> {
        let first = self.load(env.clone())?;
        let scales = crate::scale::scales(&first.state);
        if scales.is_empty() {
            return Ok(first);
        }
        let mut opts = grove_config::LoadOptions::from_process(env);
        opts.scales = scales.into_iter().collect();
        // The first load said its warnings already.
        self.load_with(&opts, false)
    }

    /// The state folder: from the stack file when it loads, else `.grove` beside it.
    pub(crate) fn state_dir(&self) -> PathBuf {
        match self.load(self.env.clone()) {
            Ok(l) => l.state,
            Err(_) => {
                let dir = self.file.parent().unwrap_or(Path::new("."));
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                dir.join(".grove")
            }
        }
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(&self.state_dir().join("grove.sock"))
    }
}

/// Every secret value the stack's output could show (see [`grove_daemon::known_secrets`]),
/// for the running environment when the stack runs.
pub(crate) fn known_secrets(ctx: &Ctx) -> Vec<String> {
    let state = ctx.state_dir();
    let mut env = ctx.env.clone();
    if let Ok(Some(store)) = read_store(&state) {
        let running: Option<Option<String>> = store.get("environment").ok().flatten();
        env = running.flatten().or(env);
    }
    let loaded = ctx.load(env).ok();
    grove_daemon::known_secrets(loaded.as_ref().map(|l| &l.stack), &state)
}

/// `no unit or service named X (units: ...)` for the first of `targets` the stack file does
/// not name; `None` when all are known (or the file does not load: nothing to check against).
pub(crate) fn unknown_target(ctx: &Ctx, targets: &[String]) -> Option<String> {
    let loaded = ctx.load(ctx.env.clone()).ok()?;
    let inputs = plan_inputs(&loaded.stack, &IndexMap::new(), false).ok()?;
    let plan = grove_plan::build_with(&loaded.stack, &inputs).ok()?;
    let missing = targets
        .iter()
        .find(|t| !plan.units.contains_key(t.as_str()) && plan.units_of(t).next().is_none())?;
    let names: Vec<&str> = plan.units.keys().map(String::as_str).collect();
    Some(format!(
        "no unit or service named `{missing}` (units: {})",
        names.join(", ")
    ))
}

/// `grove export kubernetes|compose`: the Plan as manifests. Generated passwords are read
/// from `.grove/secrets/` (and generated there first only with `--include-secrets`, so the
/// values written are the ones kept).
pub fn export(
    ctx: &Ctx,
    kubernetes: bool,
    output: &Path,
    include_secrets: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(ExitCode::from(1));
        }
    };
    let stack = &loaded.stack;
    // Unknown passwords stay unknown: the output has empty Secrets anyway.
    let inputs = plan_inputs(stack, &IndexMap::new(), include_secrets)
        .map_err(|e| anyhow::anyhow!(e))?
        .with_placeholders(stack);
    let plan = match grove_plan::build_with(stack, &inputs) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("grove: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let opts = grove_export::Options { include_secrets };
    let to_stdout = output.as_os_str() == "-";
    if kubernetes {
        let (header, docs) = match grove_export::kubernetes(&plan, &opts) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("grove: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        if to_stdout {
            print!("{}", grove_export::to_stream(&header, &docs));
        } else {
            std::fs::create_dir_all(output)
                .with_context(|| format!("cannot create {}", output.display()))?;
            let width = docs.len().to_string().len();
            for (i, d) in docs.iter().enumerate() {
                let name = format!(
                    "{:0width$}-{}.yaml",
                    i + 1,
                    d.id.replace('/', "-").to_lowercase()
                );
                let path = output.join(name);
                let head = if i == 0 { header.as_slice() } else { &[] };
                std::fs::write(
                    &path,
                    grove_export::to_stream(head, std::slice::from_ref(d)),
                )
                .with_context(|| format!("cannot write {}", path.display()))?;
            }
            eprintln!("wrote {} manifests to {}", docs.len(), output.display());
        }
        not_mapped(&header);
    } else {
        let (header, body) = match grove_export::compose(&plan, &opts) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("grove: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        let mut text = String::new();
        for h in &header {
            text.push_str(&format!("# {h}\n"));
        }
        not_mapped(&header);
        text.push_str(&body);
        if to_stdout {
            print!("{text}");
        } else {
            std::fs::write(output, text)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("wrote {}", output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What an export could not map, said once more at its end (on standard error, so piping
/// the manifests stays clean): no peer says it, and kompose drops such settings silently.
fn not_mapped(header: &[String]) {
    let notes: Vec<&str> = header
        .iter()
        .filter_map(|h| h.strip_prefix("note: "))
        .collect();
    if notes.is_empty() {
        return;
    }
    eprintln!(
        "grove: {} setting(s) not mapped, each with why:",
        notes.len()
    );
    for n in notes {
        eprintln!("  - {n}");
    }
}

/// The admin token: `.grove/admin.token` (0600), generated the first time.
/// Whether a grove already answers on the socket (and says so).
pub(crate) async fn already_running(client: &Client) -> bool {
    match client.get::<Status>("/v1/status").await {
        Ok(s) => {
            eprintln!(
                "{}",
                grove_daemon::DaemonError::AlreadyRunning(s.pid).shown()
            );
            true
        }
        Err(_) => false,
    }
}

// ----- control -------------------------------------------------------------------------------

pub(crate) fn not_running(e: &ClientError) -> ExitCode {
    eprintln!("grove: {e}");
    if matches!(e, ClientError::NotRunning(_)) {
        eprintln!("grove: start it with `grove up` or `grove up -d`");
    }
    ExitCode::from(1)
}

/// `grove ps`.
pub async fn ps(ctx: &Ctx, json: bool) -> anyhow::Result<ExitCode> {
    match ctx.client().get::<Status>("/v1/status").await {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", render::ps(&s, ctx.color));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(not_running(&e)),
    }
}

/// `grove start|stop|restart`.
pub async fn act(
    ctx: &Ctx,
    verb: &str,
    targets: Vec<String>,
    wait: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let client = ctx.client();
    let before = pids(&client).await;
    let path = format!("/v1/{verb}");
    match client.post::<_, Acted>(&path, &Targets { targets }).await {
        Ok(a) => {
            let done = match verb {
                "start" => "starting",
                "stop" => "stopping",
                _ => "restarting",
            };
            println!("{done} {}", a.units.join(", "));
            for step in &a.steps {
                println!("  {step}");
            }
            let Some(timeout) = wait else {
                return Ok(ExitCode::SUCCESS);
            };
            // A restarted unit is ready again only with a new process.
            let fresh = |u: &str| {
                if verb == "restart" {
                    before.get(u).copied().flatten()
                } else {
                    None
                }
            };
            let units: Vec<(String, Option<i32>)> =
                a.units.iter().map(|u| (u.clone(), fresh(u))).collect();
            wait_until_ready(&client, &units, timeout).await
        }
        Err(e) => Ok(not_running(&e)),
    }
}

/// Every unit's pid now (empty when grove does not answer).
async fn pids(client: &Client) -> HashMap<String, Option<i32>> {
    match client.get::<Status>("/v1/status").await {
        Ok(s) => s.units.into_iter().map(|u| (u.name, u.pid)).collect(),
        Err(_) => HashMap::new(),
    }
}

/// Waits until each unit is ready (healthy, or running without a probe, or a completed task),
/// with another process than the one given when one is; prints the outcome. Exit 1 names a
/// unit that failed, or one still not ready after `timeout`.
pub(crate) async fn wait_until_ready(
    client: &Client,
    units: &[(String, Option<i32>)],
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    use grove_engine::{UnitKind, UnitState};
    let deadline = Instant::now() + timeout;
    loop {
        let status = match client.get::<Status>("/v1/status").await {
            Ok(s) => s,
            Err(e) => return Ok(not_running(&e)),
        };
        let mut waiting = Vec::new();
        for (name, old_pid) in units {
            let Some(u) = status.units.iter().find(|u| &u.name == name) else {
                continue;
            };
            if u.is_failed() {
                eprintln!(
                    "grove: {name} {}: {}",
                    u.state,
                    u.reason.as_deref().unwrap_or("no reason recorded")
                );
                return Ok(ExitCode::from(1));
            }
            let ready = match (u.kind, u.health.is_some()) {
                (UnitKind::Task, _) => u.state == UnitState::Completed,
                (_, true) => u.state == UnitState::Healthy,
                (_, false) => u.state == UnitState::Running,
            };
            let replaced = old_pid.is_none() || u.pid != *old_pid;
            if !(ready && replaced) {
                waiting.push(u);
            }
        }
        if waiting.is_empty() {
            let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
            if !names.is_empty() {
                println!("ready: {}", names.join(", "));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            for u in waiting {
                let why = u
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                eprintln!(
                    "grove: {} is still {} after {}{why}",
                    u.name,
                    u.state,
                    humantime::format_duration(timeout)
                );
            }
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `grove reload`.
pub async fn reload(ctx: &Ctx, wait: Option<Duration>) -> anyhow::Result<ExitCode> {
    let client = ctx.client();
    let before = pids(&client).await;
    match client
        .post::<_, ApplyReport>("/v1/reload", &serde_json::json!({}))
        .await
    {
        Ok(r) => {
            println!("reloaded: {}", r.summary());
            let Some(timeout) = wait else {
                return Ok(ExitCode::SUCCESS);
            };
            let mut units: Vec<(String, Option<i32>)> =
                r.added.iter().map(|u| (u.clone(), None)).collect();
            for (u, _) in &r.restarted {
                units.push((u.clone(), before.get(u).copied().flatten()));
            }
            wait_until_ready(&client, &units, timeout).await
        }
        Err(ClientError::Api { message, .. }) => {
            eprintln!("{message}");
            eprintln!("grove: reload refused; nothing changed");
            Ok(ExitCode::from(1))
        }
        Err(e) => Ok(not_running(&e)),
    }
}

/// `grove down`.
pub async fn down(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let client = ctx.client();
    let daemon = client.get::<Status>("/v1/status").await.ok().map(|s| s.pid);
    match client
        .post::<_, Acted>("/v1/down", &serde_json::json!({}))
        .await
    {
        Ok(_) => {
            // Return only once grove itself is gone, so an `up` right after cannot race it.
            for _ in 0..500 {
                let alive = daemon.is_some_and(|p| {
                    grove_supervisor::process::stat(p as i32).is_some_and(|s| !s.zombie)
                });
                if !alive && !client.socket().exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            println!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::NotRunning(_)) => {
            let state = ctx.state_dir();
            if state.join("state.db").exists() {
                let store = open_store(&state)?;
                let reaped = grove_engine::reap_leftovers(&store, &[]);
                grove_daemon::sockets::release(&state.join("run"));
                for line in &reaped {
                    eprintln!("grove: {line}");
                }
            }
            println!("not running");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(not_running(&e)),
    }
}

/// The Plan of the stack as it runs (its environment and ports, from the store), or as the
/// file says when it never ran; `Err` is the exit code after the error was printed.
pub(crate) fn running_plan(
    ctx: &Ctx,
) -> anyhow::Result<Result<(Loaded, grove_plan::Plan), ExitCode>> {
    let first = match ctx.load_running(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(Err(ExitCode::from(1)));
        }
    };
    // Use the running stack's environment and ports when there is one.
    let (env, ports) = match read_store(&first.state)? {
        Some(store) => {
            let env: Option<Option<String>> = store.get("environment").ok().flatten();
            (env.flatten().or(ctx.env.clone()), sticky_ports(&store))
        }
        None => (ctx.env.clone(), IndexMap::new()),
    };
    let loaded = if env != ctx.env {
        match ctx.load_running(env) {
            Ok(l) => l,
            Err(text) => {
                eprintln!("{text}");
                return Ok(Err(ExitCode::from(1)));
            }
        }
    } else {
        first
    };
    let plan = match build_plan(&loaded.stack, &ports) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", e.shown());
            return Ok(Err(ExitCode::from(1)));
        }
    };
    Ok(Ok((loaded, plan)))
}

/// `grove exec UNIT -- CMD...`: replaces this process with CMD in the unit's environment and
/// folder (stdin, stdout and stderr stay the terminal's, so it is interactive).
pub fn exec(ctx: &Ctx, unit: &str, cmd: Vec<String>) -> anyhow::Result<ExitCode> {
    let plan = match running_plan(ctx)? {
        Ok((_, plan)) => plan,
        Err(code) => return Ok(code),
    };
    let target = plan.units.get(unit).or_else(|| plan.units_of(unit).next());
    let Some(u) = target else {
        let names: Vec<&str> = plan.units.keys().map(String::as_str).collect();
        eprintln!(
            "grove: no unit or service named `{unit}` (units: {})",
            names.join(", ")
        );
        return Ok(ExitCode::from(1));
    };
    let argv = if cmd.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "sh".to_string())]
    } else {
        cmd
    };
    let Some((program, args)) = argv.split_first() else {
        return Ok(ExitCode::from(2));
    };
    let mut c = std::process::Command::new(program);
    c.args(args).current_dir(plan.root.join(&u.cwd));
    for (k, v) in &u.env {
        c.env(k, &v.value);
    }
    use std::os::unix::process::CommandExt;
    let err = c.exec();
    eprintln!("grove: cannot run `{program}`: {err}");
    Ok(ExitCode::from(127))
}

/// `grove trust`.
pub fn trust(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let state = ctx.state_dir();
    ensure_state_dir(&state)?;
    let ca = grove_edge::tls::ensure_ca(&state)?;
    let ca = std::fs::canonicalize(&ca).unwrap_or(ca);
    let p = ca.display();
    println!("grove's local certificate authority (tls = \"self-signed\"): {p}");
    println!();
    println!("Trust it, for this machine only:");
    println!("  curl:     curl --cacert {p} https://localhost:8443/");
    println!("  Python:   REQUESTS_CA_BUNDLE={p} (requests), SSL_CERT_FILE={p} (ssl, httpx)");
    println!("  Node:     NODE_EXTRA_CA_CERTS={p}");
    println!("  Debian:   sudo cp {p} /usr/local/share/ca-certificates/grove-local.crt && sudo update-ca-certificates");
    println!("  Firefox:  Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import");
    println!("  Chromium: Settings > Privacy and security > Security > Manage certificates > Authorities > Import");
    println!();
    println!(
        "Its key ({}) never leaves this folder; delete both files to start over.",
        ca.with_file_name("ca.key").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `grove ca export [--key] [-o FILE]`.
pub fn ca_export(ctx: &Ctx, key: bool, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let state = ctx.state_dir();
    ensure_state_dir(&state)?;
    let Some(path) = output else {
        if key {
            eprintln!(
                "grove: the CA's key goes to a file only (mode 0600): grove ca export --key -o FILE"
            );
            return Ok(ExitCode::from(2));
        }
        print!("{}", grove_edge::ca::export(&state, false)?);
        return Ok(ExitCode::SUCCESS);
    };
    let pem = grove_edge::ca::export(&state, key)?;
    if key {
        // Only the file: the folder (the current one, /tmp...) is the user's.
        grove_edge::tls::write_private_file(path, pem.as_bytes())?;
        println!(
            "wrote the CA's certificate and key to {} (mode 0600); on each other host: \
             grove ca import {}",
            path.display(),
            path.display()
        );
    } else {
        std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote the CA's certificate to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `grove ca import FILE [--force]`.
pub fn ca_import(ctx: &Ctx, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let bundle =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let state = ctx.state_dir();
    make_private_dir(&state)?;
    match grove_edge::ca::import(&state, &bundle, force) {
        Ok(grove_edge::ca::Imported::Same) => println!("this stack already has that CA"),
        Ok(outcome) => {
            let replaced = if outcome == grove_edge::ca::Imported::Replaced {
                " (its previous CA is gone: what it signed is no longer trusted)"
            } else {
                ""
            };
            println!(
                "imported the CA{replaced}: {}; grove signs with it from its next start \
                 (`grove upgrade` if it runs)",
                grove_edge::tls::ca_path(&state).display()
            );
        }
        Err(e) => {
            eprintln!("grove: {}: {e}", file.display());
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `grove certs`: the certificates the stack file points at, read from disk, so it works
/// whether or not the stack runs.
pub fn certs(ctx: &Ctx, json: bool) -> anyhow::Result<ExitCode> {
    use grove_edge::tls;
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let stack = &loaded.stack;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut bad = false;
    let mut row = |info: Result<tls::CertInfo, String>, what: String| match info {
        Ok(i) => rows.push(serde_json::json!({
            "names": i.names, "source": i.source, "issuer": i.issuer,
            "not_after": tls::date(i.not_after), "not_after_unix": i.not_after,
            "path": i.path.map(|p| p.display().to_string()), "problem": null,
        })),
        Err(problem) => {
            bad = bad || !problem.starts_with("not issued");
            rows.push(serde_json::json!({
                "names": [], "source": what, "issuer": null, "not_after": null,
                "not_after_unix": null, "path": null, "problem": problem,
            }))
        }
    };
    match &stack.edge.tls {
        grove_config::Tls::Off => {}
        grove_config::Tls::SelfSigned => {
            let ca = tls::ca_path(&loaded.state);
            let info = std::fs::read(&ca)
                .map_err(|_| {
                    "not issued yet: the local CA is created by `grove up` or `grove trust`"
                        .to_string()
                })
                .and_then(|pem| {
                    let mut i = tls::describe_pem(&pem, "self-signed CA")
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                    i.path = Some(ca.clone());
                    Ok(i)
                });
            row(info, "self-signed CA".into());
        }
        grove_config::Tls::Files { certs } => {
            for c in certs {
                let info = tls::load_files(&stack.root.join(&c.cert), &stack.root.join(&c.key))
                    .map(|l| l.info)
                    .map_err(|e| e.to_string());
                row(info, "files".into());
            }
        }
        grove_config::Tls::Acme => {
            let dir = loaded.state.join("certs").join("acme");
            for host in &stack.edge.hosts {
                let info = match grove_edge::acme::load_host(&dir, host) {
                    Ok(l) => Ok(l.info),
                    Err(tls::TlsError::Io { .. }) => Err(format!("not issued yet for {host}")),
                    Err(e) => Err(e.to_string()),
                };
                row(info, "acme".into());
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no certificates: the edge has no https:// listener");
    } else {
        let now = tls::unix_now();
        println!(
            "{:<40} {:<15} {:<22} {:>6}  FILE",
            "NAMES", "SOURCE", "EXPIRES", "DAYS"
        );
        for r in &rows {
            let names: Vec<&str> = r["names"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            match r["problem"].as_str() {
                Some(p) => println!("{:<40} {:<15} {p}", "-", r["source"].as_str().unwrap_or("")),
                None => println!(
                    "{:<40} {:<15} {:<22} {:>6}  {}",
                    names.join(","),
                    r["source"].as_str().unwrap_or(""),
                    r["not_after"].as_str().unwrap_or(""),
                    (r["not_after_unix"].as_i64().unwrap_or(0) - now) / 86_400,
                    r["path"].as_str().unwrap_or("-"),
                ),
            }
        }
    }
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
