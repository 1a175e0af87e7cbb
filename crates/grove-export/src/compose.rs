//! The Plan as a docker compose file (the Compose Specification), for containers on one host.

use grove_plan::{Condition, Plan, ProbeCheck, Recipe, RestartPolicy, Run, Target};
use indexmap::IndexMap;
use serde::Serialize;

use crate::model::{
    dns_name, is_task, postgres_init_sql, postgres_init_vars, recipe_data_path, recipe_image,
    Model, PasswordRef, Var, Workload,
};
use crate::{yaml, ExportError, Options};

#[derive(Debug, Serialize)]
struct File {
    name: String,
    services: IndexMap<String, Svc>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    volumes: IndexMap<String, Volume>,
}

#[derive(Debug, Serialize, Default)]
struct Volume {}

#[derive(Debug, Serialize, Default)]
struct Svc {
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    environment: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    depends_on: IndexMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    restart: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
    stop_grace_period: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    labels: IndexMap<String, String>,
}

#[derive(Debug, Serialize)]
struct DependsOn {
    condition: &'static str,
}

#[derive(Debug, Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    timeout: String,
    retries: u32,
    start_period: String,
}

#[derive(Debug, Serialize)]
struct Deploy {
    replicas: u32,
}

/// A marker for a password variable, replaced by `${NAME}` after `$` is escaped.
fn marker(name: &str) -> String {
    format!("\u{1}{name}\u{2}")
}

/// Escapes `$` for compose interpolation, then turns markers into `${NAME}`.
fn finish(text: &str) -> String {
    text.replace('$', "$$")
        .replace('\u{1}', "${")
        .replace('\u{2}', "}")
}

fn dur(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn restart(w: &Workload<'_>) -> String {
    if is_task(w.unit) {
        return "no".into();
    }
    match w.unit.restart.policy {
        RestartPolicy::Always => "always".into(),
        RestartPolicy::OnFailure => "on-failure".into(),
        RestartPolicy::Never => "no".into(),
    }
}

fn labels(plan: &Plan, w: &Workload<'_>) -> IndexMap<String, String> {
    let mut l = IndexMap::new();
    l.insert("grove.stack".into(), plan.stack.clone());
    l.insert("grove.service".into(), w.service.to_string());
    if let Some(i) = w.instance {
        l.insert("grove.instance".into(), i.to_string());
    }
    l
}

/// The compose file of a Plan: its YAML, and the header lines (notes, variables to set).
pub fn compose(plan: &Plan, opts: &Options) -> Result<(Vec<String>, String), ExportError> {
    let m = Model::new(plan)?;
    let mut services = IndexMap::new();
    let mut volumes = IndexMap::new();
    let mut needed: Vec<PasswordRef> = Vec::new();
    let mut user_secrets: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let secret_value = |r: &PasswordRef| {
        if opts.include_secrets {
            r.value.clone()
        } else {
            format!("${{{}}}", r.var)
        }
    };
    for w in &m.workloads {
        let mut svc = Svc {
            restart: restart(w),
            stop_signal: (w.unit.stop_signal != "SIGTERM").then(|| w.unit.stop_signal.clone()),
            stop_grace_period: dur(w.unit.stop_grace_ms),
            labels: labels(plan, w),
            ..Default::default()
        };
        if let Some((r, spec)) = w.recipe {
            let port = w.port.unwrap_or(0);
            svc.image = recipe_image(r).into();
            let pws = m.recipe_passwords(w);
            needed.extend(pws.iter().cloned());
            let admin = pws.iter().find(|p| p.key == "password");
            let hc = |test: Vec<String>| Healthcheck {
                test,
                interval: "5s".into(),
                timeout: "5s".into(),
                retries: 5,
                start_period: "60s".into(),
            };
            match r {
                Recipe::Postgres => {
                    svc.environment
                        .insert("POSTGRES_USER".into(), spec.admin.user.clone());
                    if let Some(a) = admin {
                        svc.environment
                            .insert("POSTGRES_PASSWORD".into(), secret_value(a));
                    }
                    svc.environment
                        .insert("POSTGRES_DB".into(), spec.admin.user.clone());
                    svc.healthcheck = Some(hc(vec![
                        "CMD".into(),
                        "pg_isready".into(),
                        "-U".into(),
                        spec.admin.user.clone(),
                    ]));
                }
                Recipe::Redis => {
                    let mut cmd = vec!["redis-server".to_string()];
                    if let Some(a) = admin {
                        cmd.extend(["--requirepass".into(), secret_value(a)]);
                    }
                    if !spec.persistence {
                        cmd.extend(["--save".into(), String::new()]);
                    }
                    svc.command = Some(cmd);
                    svc.healthcheck = Some(hc(vec![
                        "CMD-SHELL".into(),
                        "redis-cli -a \"$$REDIS_PASSWORD\" --no-auth-warning ping | grep -q PONG"
                            .into(),
                    ]));
                    if let Some(a) = admin {
                        svc.environment
                            .insert("REDIS_PASSWORD".into(), secret_value(a));
                    }
                }
                Recipe::Rabbitmq => {
                    svc.environment
                        .insert("RABBITMQ_DEFAULT_USER".into(), spec.admin.user.clone());
                    if let Some(a) = admin {
                        svc.environment
                            .insert("RABBITMQ_DEFAULT_PASS".into(), secret_value(a));
                    }
                    svc.healthcheck = Some(hc(vec![
                        "CMD".into(),
                        "rabbitmq-diagnostics".into(),
                        "-q".into(),
                        "ping".into(),
                    ]));
                }
                Recipe::Mongodb => {
                    svc.healthcheck = Some(hc(vec![
                        "CMD".into(),
                        "mongosh".into(),
                        "--quiet".into(),
                        "--eval".into(),
                        "db.runCommand({ping: 1})".into(),
                    ]));
                }
                Recipe::Memcached => {}
            }
            if let Some(path) = recipe_data_path(r) {
                let vol = format!("{}-data", w.name);
                svc.volumes.push(format!("{vol}:{path}"));
                volumes.insert(vol, Volume {});
            }
            let _ = port;
            let init_needed = match r {
                Recipe::Postgres => {
                    !spec.roles.is_empty()
                        || spec.databases.iter().any(|d| d.name != spec.admin.user)
                }
                _ => false,
            };
            services.insert(w.name.clone(), svc);
            if init_needed {
                let vars = postgres_init_vars(spec, &pws, |v| format!("${v}"));
                let script = format!(
                    "psql -h {h} -U {u} -d postgres -v ON_ERROR_STOP=1 {vars} <<'SQL'\n{sql}SQL\n",
                    h = w.name,
                    u = spec.admin.user,
                    vars = vars.join(" "),
                    sql = postgres_init_sql(spec)
                );
                let mut env = IndexMap::new();
                if let Some(a) = admin {
                    env.insert("PGPASSWORD".to_string(), secret_value(a));
                }
                for p in &pws {
                    env.insert(p.var.clone(), secret_value(p));
                }
                let mut deps = IndexMap::new();
                deps.insert(
                    w.name.clone(),
                    DependsOn {
                        condition: "service_healthy",
                    },
                );
                services.insert(
                    format!("{}-init", w.name),
                    Svc {
                        image: recipe_image(r).into(),
                        command: Some(vec!["sh".into(), "-c".into(), script.replace('$', "$$")]),
                        environment: env,
                        depends_on: deps,
                        restart: "no".into(),
                        stop_grace_period: "10s".into(),
                        labels: labels(plan, w),
                        ..Default::default()
                    },
                );
            } else if r == Recipe::Rabbitmq && !spec.databases.is_empty() {
                notes.push(format!(
                    "{}: create the virtual hosts {} (rabbitmqctl add_vhost) once it runs",
                    w.name,
                    spec.databases
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            continue;
        }
        let Run::Command { argv } = &w.unit.run else {
            continue;
        };
        svc.image = w.unit.image.clone().unwrap_or_default();
        svc.command = Some(
            argv.iter()
                .map(|a| {
                    let (t, refs) = m.passwords_to_refs(&m.rewrite(w, a), marker);
                    needed.extend(refs);
                    if opts.include_secrets {
                        return finish(&t);
                    }
                    // A secret on the command line: compose fills it in from `.env`.
                    let (t, used) = m.secrets_to_refs(&t, marker);
                    user_secrets.extend(used.into_iter().map(|(n, _)| n));
                    finish(&t)
                })
                .collect(),
        );
        for (k, v) in &w.unit.env {
            let value = match m.var(w, k, &v.value, v.secret, marker) {
                Var::Plain(s) => finish(&s),
                Var::Secret(s) => {
                    if opts.include_secrets {
                        finish(&s)
                    } else {
                        user_secrets.push(k.clone());
                        format!("${{{k}}}")
                    }
                }
                Var::Composed { template, refs } => {
                    let t = if opts.include_secrets {
                        let mut t = template;
                        for r in &refs {
                            t = t.replace(&marker(&r.var), &r.value);
                        }
                        t
                    } else {
                        template
                    };
                    needed.extend(refs);
                    finish(&t)
                }
            };
            svc.environment.insert(k.clone(), value);
        }
        if let (Some(h), Some(p)) = (&w.unit.health, w.port) {
            let test = match &h.check {
                ProbeCheck::Http { path, .. } => Some(vec![
                    "CMD-SHELL".to_string(),
                    format!(
                        "curl -fsS http://127.0.0.1:{p}{path} >/dev/null || wget -qO- http://127.0.0.1:{p}{path} >/dev/null"
                    ),
                ]),
                ProbeCheck::Tcp { .. } => Some(vec![
                    "CMD-SHELL".to_string(),
                    format!("nc -z 127.0.0.1 {p}"),
                ]),
                ProbeCheck::Exec { argv } => {
                    let mut t = vec!["CMD".to_string()];
                    t.extend(argv.iter().map(|a| finish(&m.rewrite(w, a))));
                    Some(t)
                }
                ProbeCheck::Recipe => None,
            };
            svc.healthcheck = test.map(|test| Healthcheck {
                test,
                interval: dur(h.interval_ms),
                timeout: dur(h.timeout_ms),
                retries: h.retries.max(1),
                start_period: dur(h.start_period_ms),
            });
        }
        for (dw, cond) in m.deps(w) {
            let condition = if is_task(dw.unit) || cond == Condition::Completed {
                "service_completed_successfully"
            } else if cond == Condition::Healthy
                && (dw.unit.health.is_some()
                    && dw.recipe.is_none_or(|(r, _)| r != Recipe::Memcached))
            {
                "service_healthy"
            } else {
                "service_started"
            };
            svc.depends_on
                .insert(dw.name.clone(), DependsOn { condition });
            let init = format!("{}-init", dw.name);
            if services.contains_key(&init) {
                svc.depends_on.insert(
                    init,
                    DependsOn {
                        condition: "service_completed_successfully",
                    },
                );
            }
        }
        if !is_task(w.unit) && w.replicas > 1 {
            svc.deploy = Some(Deploy {
                replicas: w.replicas,
            });
        }
        services.insert(w.name.clone(), svc);
    }
    // Routes and forwards: published ports (compose has no router; put a reverse proxy in
    // front for hosts and prefixes).
    for r in &plan.routes {
        if let Target::Units(units) = &r.target {
            if let Some(w) = units.first().and_then(|u| m.workload_of(u)) {
                if let (Some(p), Some(svc)) = (w.port, services.get_mut(&w.name)) {
                    let published = format!("127.0.0.1:{p}:{p}");
                    if !svc.ports.contains(&published) {
                        svc.ports.push(published);
                    }
                    svc.deploy = None;
                }
            }
        }
    }
    for f in &plan.edge.forward {
        if let Target::Units(units) = &f.target {
            if let Some(w) = units.first().and_then(|u| m.workload_of(u)) {
                if let (Some(p), Some(svc)) = (w.port, services.get_mut(&w.name)) {
                    svc.ports.push(format!("{}:{}", f.listen.addr.port(), p));
                    svc.deploy = None;
                }
            }
        }
    }
    if !plan.routes.is_empty() {
        notes.push("routed services publish their port on 127.0.0.1; routing by host and path prefix, TLS and static files need a reverse proxy in front (or keep grove's edge)".into());
    }
    let file = File {
        name: dns_name(&plan.stack),
        services,
        volumes,
    };
    let mut header = vec![format!(
        "grove export compose: stack {}{}",
        plan.stack,
        plan.environment
            .as_ref()
            .map(|e| format!(", environment {e}"))
            .unwrap_or_default()
    )];
    needed.sort();
    needed.dedup();
    user_secrets.sort();
    user_secrets.dedup();
    if !opts.include_secrets && (!needed.is_empty() || !user_secrets.is_empty()) {
        header.push("set these in .env beside this file (docker compose reads it):".into());
        for n in &needed {
            header.push(format!("  {}=<a password>", n.var));
        }
        for k in &user_secrets {
            header.push(format!("  {k}=<its value>"));
        }
    }
    header.extend(notes.into_iter().map(|n| format!("note: {n}")));
    Ok((header, yaml(&file)?))
}
