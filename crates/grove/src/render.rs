//! Human and JSON renderings of Plans and errors for the terminal.

use std::fmt::Write;

use grove_config::ConfigErrors;
use grove_engine::UnitState;
use grove_plan::{Plan, ProbeCheck, Run, Target, Tls};

/// Errors as JSON for `check --json`.
pub fn errors_json(errors: &ConfigErrors) -> serde_json::Value {
    serde_json::json!({
        "ok": false,
        "errors": errors.errors.iter().map(|e| serde_json::json!({
            "file": e.file.display().to_string(),
            "line": e.line,
            "column": e.column,
            "key": e.key,
            "message": e.message,
            "help": e.help,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn bold(s: &str, color: bool) -> String {
    if color {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `, environment NAME`, or nothing.
fn environment_suffix(env: Option<&str>) -> String {
    env.map(|e| format!(", environment {e}"))
        .unwrap_or_default()
}

/// The Plan as `grove check` prints it.
/// The Plan as `grove check` prints it; `fixed_port` says which services set their port.
pub fn plan(plan: &Plan, color: bool, fixed_port: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let env = environment_suffix(plan.environment.as_deref());
    let _ = writeln!(
        out,
        "{} {}{env}: {} unit{} in {} level{}, {} route{}",
        bold("stack", color),
        plan.stack,
        plan.units.len(),
        if plan.units.len() == 1 { "" } else { "s" },
        plan.levels.len(),
        if plan.levels.len() == 1 { "" } else { "s" },
        plan.routes.len(),
        if plan.routes.len() == 1 { "" } else { "s" },
    );
    let tls = match &plan.edge.tls {
        Tls::Off => "off".to_string(),
        Tls::SelfSigned => "self-signed".to_string(),
        Tls::Acme => format!("acme ({})", plan.edge.acme_directory),
        Tls::Files { certs } => format!(
            "files ({})",
            certs
                .iter()
                .map(|c| c.cert.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if !plan.edge.listen.is_empty() || !plan.edge.forward.is_empty() {
        let listen: Vec<String> = plan.edge.listen.iter().map(|l| l.to_string()).collect();
        let _ = writeln!(out, "\n{}", bold("edge", color));
        let _ = writeln!(out, "  listen  {}", listen.join(", "));
        if !plan.edge.hosts.is_empty() {
            let _ = writeln!(out, "  hosts   {}", plan.edge.hosts.join(", "));
        }
        let _ = writeln!(out, "  tls     {tls}");
        for m in &plan.edge.static_mounts {
            let _ = writeln!(out, "  static  {} -> {}", m.prefix, m.dir.display());
        }
        for f in &plan.edge.forward {
            let _ = writeln!(out, "  forward {} -> {}", f.listen, f.service);
        }
    }
    if !plan.units.is_empty() {
        let _ = writeln!(out, "\n{}", bold("units", color));
        let mut rows = vec![vec![
            "LEVEL".to_string(),
            "UNIT".into(),
            "KIND".into(),
            "PORT".into(),
            "HEALTH".into(),
            "WAITS FOR".into(),
            "REPLACED".into(),
            "RUNS".into(),
        ]];
        for level in &plan.levels {
            for name in level {
                let Some(u) = plan.units.get(name) else {
                    continue;
                };
                let deps: Vec<String> = u
                    .depends_on
                    .iter()
                    .map(|d| format!("{} ({})", d.unit, condition(d.condition)))
                    .collect();
                let health = match u.health.as_ref().map(|h| &h.check) {
                    None => "-".to_string(),
                    Some(ProbeCheck::Http { path, .. }) => format!("http {path}"),
                    Some(ProbeCheck::Tcp { addr }) => format!("tcp {addr}"),
                    Some(ProbeCheck::Exec { argv }) => {
                        format!("exec {}", argv.first().map(String::as_str).unwrap_or(""))
                    }
                    Some(ProbeCheck::Recipe) => "recipe".to_string(),
                };
                let runs = match &u.run {
                    Run::Command { argv } => shell_join(argv),
                    Run::Recipe { recipe, spec } => {
                        let dbs: Vec<&str> =
                            spec.databases.iter().map(|d| d.name.as_str()).collect();
                        if dbs.is_empty() {
                            format!("recipe {}", recipe.name())
                        } else {
                            format!("recipe {} (databases: {})", recipe.name(), dbs.join(", "))
                        }
                    }
                };
                rows.push(vec![
                    u.level.to_string(),
                    u.name.clone(),
                    format!("{:?}", u.kind).to_lowercase(),
                    u.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    health,
                    if deps.is_empty() {
                        "-".into()
                    } else {
                        deps.join(", ")
                    },
                    if grove_plan::start_first(plan, u, fixed_port(&u.service)) {
                        match u.max_surge {
                            0 | 1 => "start-first".into(),
                            n => format!("start-first, {n} at a time"),
                        }
                    } else {
                        "stop-first".into()
                    },
                    runs,
                ]);
            }
        }
        out.push_str(&table(&rows));
    }
    if !plan.routes.is_empty() {
        let _ = writeln!(out, "\n{}", bold("routes", color));
        let mut rows = vec![vec!["HOST".to_string(), "PREFIX".into(), "TO".into()]];
        for r in &plan.routes {
            let to = match &r.target {
                Target::Units(u) => u.join(", "),
                Target::Remote(u) => u
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let strip = if r.strip_prefix {
                " (prefix stripped)"
            } else {
                ""
            };
            rows.push(vec![
                r.host.clone().unwrap_or_else(|| "*".into()),
                r.prefix.clone(),
                format!("{to}{strip}"),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

fn condition(c: grove_plan::Condition) -> &'static str {
    match c {
        grove_plan::Condition::Started => "started",
        grove_plan::Condition::Healthy => "healthy",
        grove_plan::Condition::Completed => "completed",
    }
}

fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,${}*".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `grove ps`.
pub fn ps(s: &grove_engine::Status, color: bool) -> String {
    let mut out = String::new();
    let env = environment_suffix(s.environment.as_deref());
    let _ = writeln!(
        out,
        "{} {}{env}: grove pid {}, {} resident",
        bold("stack", color),
        s.stack,
        s.pid,
        bytes(s.rss_bytes)
    );
    let mut rows = vec![vec![
        "UNIT".to_string(),
        "STATE".into(),
        "HEALTH".into(),
        "PID".into(),
        "PORT".into(),
        "RESTARTS".into(),
        "UPTIME".into(),
        "CPU".into(),
        "RSS".into(),
        "NOTE".into(),
    ]];
    // The release column appears once something was deployed.
    let released = s.units.iter().any(|u| u.release.is_some());
    if released {
        rows[0].insert(9, "RELEASE".into());
    }
    // The user column appears once a unit runs as someone else than grove.
    let users = s.units.iter().any(|u| u.user.is_some());
    if users {
        rows[0].insert(1, "USER".into());
    }
    let dash = || "-".to_string();
    for u in &s.units {
        let mut row = vec![
            u.name.clone(),
            paint_state(u.state, color),
            u.health.map_or_else(dash, |h| h.to_string()),
            u.pid.map(|p| p.to_string()).unwrap_or_else(dash),
            u.port.map(|p| p.to_string()).unwrap_or_else(dash),
            u.restarts.to_string(),
            u.uptime_ms.map(duration).unwrap_or_else(dash),
            u.cpu_percent
                .map(|c| format!("{c:.1}%"))
                .unwrap_or_else(dash),
            match (u.rss_bytes, u.memory_limit) {
                (Some(r), Some(l)) => format!("{} / {}", bytes(r), grove_plan::size_text(l)),
                (r, _) => r.map(bytes).unwrap_or_else(dash),
            },
            u.reason.clone().unwrap_or_default(),
        ];
        if released {
            row.insert(9, u.release.clone().unwrap_or_else(dash));
        }
        if users {
            row.insert(1, u.user.clone().unwrap_or_else(dash));
        }
        rows.push(row);
    }
    out.push_str(&table(&rows));
    if !s.remotes.is_empty() {
        out.push_str(&remotes(&s.remotes));
    }
    out
}

/// `ps`'s second table: the remote targets an active health check follows.
fn remotes(remotes: &[grove_engine::RemoteStatus]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "TARGET".into(),
        "HEALTH".into(),
        "FOR".into(),
        "NOTE".into(),
    ]];
    for r in remotes {
        let note = match r.health {
            grove_engine::Health::Unhealthy => "out of the route",
            grove_engine::Health::Starting => "not probed yet",
            _ => "",
        };
        let note = match &r.reason {
            Some(why) if !note.is_empty() => format!("{note}: {why}"),
            _ => note.to_string(),
        };
        rows.push(vec![
            r.service.clone(),
            r.target.clone(),
            r.health.to_string(),
            duration(now.saturating_sub(r.since_unix_ms)),
            note,
        ]);
    }
    format!("remote upstreams\n{}", table(&rows))
}

fn paint_state(state: UnitState, color: bool) -> String {
    if !color {
        return state.to_string();
    }
    let code = match state {
        UnitState::Healthy | UnitState::Running | UnitState::Completed => "32",
        UnitState::Failed | UnitState::Blocked | UnitState::Unhealthy => "31",
        UnitState::Starting | UnitState::Waiting | UnitState::Backoff | UnitState::Stopping => "33",
        UnitState::Stopped => "2",
    };
    // Pad before colouring so the table stays aligned.
    format!("\x1b[{code}m{state}\x1b[0m")
}

/// `1.2 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `3s`, `4m12s`, `2h05m`, `3d04h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}
