//! The Plan as a docker compose file (the Compose Specification), for containers on one host.

use grove_plan::{
    Condition, Plan, Probe, ProbeCheck, Recipe, RecipeSpec, RestartPolicy, Run, Target,
};
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
    /// `user` (and `group`): `www-data` or `www-data:adm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// `limits`: memory in bytes, CPUs, processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ulimits: Option<IndexMap<String, u64>>,
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
    let mut b = Build {
        m: &m,
        opts,
        services: IndexMap::new(),
        volumes: IndexMap::new(),
        needed: Vec::new(),
        user_secrets: Vec::new(),
        notes: Vec::new(),
    };
    for w in &m.workloads {
        match w.recipe {
            Some((r, spec)) => {
                b.notes.extend(crate::model::recipe_network_notes(w));
                b.recipe_services(w, r, spec)
            }
            None => b.command_service(w),
        }
    }
    b.publish_ports();
    b.finish()
}

/// The compose file being built, with what its header needs to say.
#[derive(Debug)]
struct Build<'a> {
    m: &'a Model<'a>,
    opts: &'a Options,
    services: IndexMap<String, Svc>,
    volumes: IndexMap<String, Volume>,
    /// Recipe passwords the file refers to.
    needed: Vec<PasswordRef>,
    /// User secrets the file refers to (set in `.env`).
    user_secrets: Vec<String>,
    notes: Vec<String>,
}

/// A compose service with what every workload has: restart, stop signal and grace, labels.
fn base_service(plan: &Plan, w: &Workload<'_>) -> Svc {
    Svc {
        restart: restart(w),
        stop_signal: (w.unit.stop_signal != "SIGTERM").then(|| w.unit.stop_signal.clone()),
        stop_grace_period: dur(w.unit.stop_grace_ms),
        user: compose_user(&w.unit.run_as),
        mem_limit: w.unit.limits.memory,
        cpus: w.unit.limits.cpu_milli.map(|c| f64::from(c) / 1000.0),
        pids_limit: w.unit.limits.pids,
        ulimits: w
            .unit
            .limits
            .nofile
            .map(|n| [("nofile".to_string(), n)].into_iter().collect()),
        labels: labels(plan, w),
        ..Default::default()
    }
}

/// compose's `user`: the user, and the group after a colon.
fn compose_user(run_as: &grove_plan::RunAs) -> Option<String> {
    match (&run_as.user, &run_as.group) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.clone()),
        // compose sets a group only with a user.
        (None, _) => None,
    }
}

/// The healthcheck of a recipe service: the image's own check, on a fixed schedule.
fn recipe_healthcheck(test: Vec<String>) -> Healthcheck {
    Healthcheck {
        test,
        interval: "5s".into(),
        timeout: "5s".into(),
        retries: 5,
        start_period: "60s".into(),
    }
}

/// Whether a recipe needs a one-shot `-init` service (PostgreSQL roles and databases).
fn recipe_init_needed(r: Recipe, spec: &RecipeSpec) -> bool {
    match r {
        Recipe::Postgres => {
            !spec.roles.is_empty() || spec.databases.iter().any(|d| d.name != spec.admin.user)
        }
        _ => false,
    }
}

impl Build<'_> {
    /// A password as the file writes it: its value when asked, else `${VAR}` from `.env`.
    fn secret_value(&self, r: &PasswordRef) -> String {
        if self.opts.include_secrets {
            r.value.clone()
        } else {
            format!("${{{}}}", r.var)
        }
    }

    /// A recipe's service, its data volume, and its `-init` service or a note.
    fn recipe_services(&mut self, w: &Workload<'_>, r: Recipe, spec: &RecipeSpec) {
        let mut svc = base_service(self.m.plan, w);
        svc.image = recipe_image(r).into();
        let pws = self.m.recipe_passwords(w);
        self.needed.extend(pws.iter().cloned());
        let admin = pws.iter().find(|p| p.key == "password");
        self.recipe_settings(&mut svc, r, spec, admin);
        if let Some(path) = recipe_data_path(r) {
            let vol = format!("{}-data", w.name);
            svc.volumes.push(format!("{vol}:{path}"));
            self.volumes.insert(vol, Volume {});
        }
        self.services.insert(w.name.clone(), svc);
        if recipe_init_needed(r, spec) {
            self.postgres_init_service(w, r, spec, &pws, admin);
        } else if r == Recipe::Rabbitmq && !spec.databases.is_empty() {
            self.rabbitmq_init_service(w, spec, admin);
        }
    }

    /// A recipe's environment, command and healthcheck, as its upstream image wants them.
    fn recipe_settings(
        &self,
        svc: &mut Svc,
        r: Recipe,
        spec: &RecipeSpec,
        admin: Option<&PasswordRef>,
    ) {
        match r {
            Recipe::Postgres => {
                svc.environment
                    .insert("POSTGRES_USER".into(), spec.admin.user.clone());
                if let Some(a) = admin {
                    svc.environment
                        .insert("POSTGRES_PASSWORD".into(), self.secret_value(a));
                }
                svc.environment
                    .insert("POSTGRES_DB".into(), spec.admin.user.clone());
                svc.healthcheck = Some(recipe_healthcheck(vec![
                    "CMD".into(),
                    "pg_isready".into(),
                    "-U".into(),
                    spec.admin.user.clone(),
                ]));
            }
            Recipe::Redis => {
                let mut cmd = vec!["redis-server".to_string()];
                if let Some(a) = admin {
                    cmd.extend(["--requirepass".into(), self.secret_value(a)]);
                }
                if !spec.persistence {
                    cmd.extend(["--save".into(), String::new()]);
                }
                svc.command = Some(cmd);
                svc.healthcheck = Some(recipe_healthcheck(vec![
                    "CMD-SHELL".into(),
                    "redis-cli -a \"$$REDIS_PASSWORD\" --no-auth-warning ping | grep -q PONG"
                        .into(),
                ]));
                if let Some(a) = admin {
                    svc.environment
                        .insert("REDIS_PASSWORD".into(), self.secret_value(a));
                }
            }
            Recipe::Rabbitmq => {
                svc.environment
                    .insert("RABBITMQ_DEFAULT_USER".into(), spec.admin.user.clone());
                if let Some(a) = admin {
                    svc.environment
                        .insert("RABBITMQ_DEFAULT_PASS".into(), self.secret_value(a));
                }
                svc.healthcheck = Some(recipe_healthcheck(vec![
                    "CMD".into(),
                    "rabbitmq-diagnostics".into(),
                    "-q".into(),
                    "ping".into(),
                ]));
            }
            Recipe::Mongodb => {
                svc.healthcheck = Some(recipe_healthcheck(vec![
                    "CMD".into(),
                    "mongosh".into(),
                    "--quiet".into(),
                    "--eval".into(),
                    "db.runCommand({ping: 1})".into(),
                ]));
            }
            Recipe::Memcached => {}
        }
    }

    /// The `-init` service that creates a PostgreSQL recipe's roles and databases once the
    /// server is healthy.
    fn postgres_init_service(
        &mut self,
        w: &Workload<'_>,
        r: Recipe,
        spec: &RecipeSpec,
        pws: &[PasswordRef],
        admin: Option<&PasswordRef>,
    ) {
        let vars = postgres_init_vars(spec, pws, |v| format!("${v}"));
        let script = format!(
            "psql -h {h} -U {u} -d postgres -v ON_ERROR_STOP=1 {vars} <<'SQL'\n{sql}SQL\n",
            h = w.name,
            u = spec.admin.user,
            vars = vars.join(" "),
            sql = postgres_init_sql(spec)
        );
        let mut env = IndexMap::new();
        if let Some(a) = admin {
            env.insert("PGPASSWORD".to_string(), self.secret_value(a));
        }
        for p in pws {
            env.insert(p.var.clone(), self.secret_value(p));
        }
        self.init_service(w, recipe_image(r), &script, env, "service_healthy");
    }

    /// `NAME-init`: a one-off service that runs `script` in `image` once the recipe `w` is
    /// `condition` (`service_healthy`, `service_started`).
    fn init_service(
        &mut self,
        w: &Workload<'_>,
        image: &str,
        script: &str,
        env: IndexMap<String, String>,
        condition: &'static str,
    ) {
        let mut deps = IndexMap::new();
        deps.insert(w.name.clone(), DependsOn { condition });
        self.services.insert(
            format!("{}-init", w.name),
            Svc {
                image: image.into(),
                command: Some(vec!["sh".into(), "-c".into(), script.replace('$', "$$")]),
                environment: env,
                depends_on: deps,
                restart: "no".into(),
                stop_grace_period: "10s".into(),
                labels: labels(self.m.plan, w),
                ..Default::default()
            },
        );
    }

    /// `NAME-init`: creates a RabbitMQ recipe's virtual hosts once the broker answers, as
    /// grove does (and as the Kubernetes export's init Job does).
    fn rabbitmq_init_service(
        &mut self,
        w: &Workload<'_>,
        spec: &RecipeSpec,
        admin: Option<&PasswordRef>,
    ) {
        let vhosts: Vec<&str> = spec.databases.iter().map(|d| d.name.as_str()).collect();
        let script = crate::model::rabbitmq_vhost_script(
            &w.name,
            &spec.admin.user,
            "ADMIN_PASSWORD",
            &vhosts,
        );
        let mut env = IndexMap::new();
        if let Some(a) = admin {
            env.insert("ADMIN_PASSWORD".to_string(), self.secret_value(a));
        }
        self.init_service(w, crate::model::CURL_IMAGE, &script, env, "service_started");
    }

    /// The service of a command workload: image, command, environment, healthcheck,
    /// dependencies and replicas.
    fn command_service(&mut self, w: &Workload<'_>) {
        let Run::Command { argv } = &w.unit.run else {
            return;
        };
        let mut svc = base_service(self.m.plan, w);
        svc.image = w.unit.image.clone().unwrap_or_default();
        svc.command = Some(argv.iter().map(|a| self.command_arg(w, a)).collect());
        for (k, v) in &w.unit.env {
            let value = self.env_value(w, k, &v.value, v.secret);
            svc.environment.insert(k.clone(), value);
        }
        if let (Some(h), Some(p)) = (&w.unit.health, w.port) {
            svc.healthcheck = self.healthcheck(w, h, p);
        }
        svc.depends_on = self.depends_on(w);
        self.notes.extend(crate::model::command_notes(w));
        if w.unit.job.is_some() {
            self.notes.push(format!(
                "{} is a job: compose has no schedule, so it is a service that runs once \
                 (run it on a schedule with cron: `docker compose run --rm {}`)",
                w.name, w.name
            ));
        }
        if !is_task(w.unit) && w.replicas > 1 {
            svc.deploy = Some(Deploy {
                replicas: w.replicas,
            });
        }
        self.services.insert(w.name.clone(), svc);
    }

    /// One command-line argument, rewritten, with passwords and secrets as `${NAME}`.
    fn command_arg(&mut self, w: &Workload<'_>, a: &str) -> String {
        let (t, refs) = self.m.passwords_to_refs(&self.m.rewrite(w, a), marker);
        self.needed.extend(refs);
        if self.opts.include_secrets {
            return finish(&t);
        }
        // A secret on the command line: compose fills it in from `.env`.
        let (t, used) = self.m.secrets_to_refs(&t, marker);
        self.user_secrets.extend(used.into_iter().map(|(n, _)| n));
        finish(&t)
    }

    /// One environment variable's value: plain, a user secret, or composed around passwords.
    fn env_value(&mut self, w: &Workload<'_>, k: &str, value: &str, secret: bool) -> String {
        match self.m.var(w, k, value, secret, marker) {
            Var::Plain(s) => finish(&s),
            Var::Secret(s) => {
                if self.opts.include_secrets {
                    finish(&s)
                } else {
                    self.user_secrets.push(k.to_string());
                    format!("${{{k}}}")
                }
            }
            Var::Composed { template, refs } => {
                let t = if self.opts.include_secrets {
                    let mut t = template;
                    for r in &refs {
                        t = t.replace(&marker(&r.var), &r.value);
                    }
                    t
                } else {
                    template
                };
                self.needed.extend(refs);
                finish(&t)
            }
        }
    }

    /// The healthcheck of a command workload's probe on port `p` (none for a recipe probe).
    fn healthcheck(&self, w: &Workload<'_>, h: &Probe, p: u16) -> Option<Healthcheck> {
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
                t.extend(argv.iter().map(|a| finish(&self.m.rewrite(w, a))));
                Some(t)
            }
            ProbeCheck::Recipe => None,
        };
        test.map(|test| Healthcheck {
            test,
            interval: dur(h.interval_ms),
            timeout: dur(h.timeout_ms),
            retries: h.retries.max(1),
            start_period: dur(h.start_period_ms),
        })
    }

    /// A workload's `depends_on`: each dependency with its condition, and the `-init`
    /// service of a recipe it depends on.
    fn depends_on(&self, w: &Workload<'_>) -> IndexMap<String, DependsOn> {
        let mut out = IndexMap::new();
        for (dw, cond) in self.m.deps(w) {
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
            out.insert(dw.name.clone(), DependsOn { condition });
            let init = format!("{}-init", dw.name);
            if self.services.contains_key(&init) {
                out.insert(
                    init,
                    DependsOn {
                        condition: "service_completed_successfully",
                    },
                );
            }
        }
        out
    }

    /// Routes and forwards as published ports (compose has no router; put a reverse proxy
    /// in front for hosts and prefixes).
    fn publish_ports(&mut self) {
        let m = self.m;
        let plan = m.plan;
        for r in &plan.routes {
            if let Target::Units(units) = &r.target {
                if let Some(w) = units.first().and_then(|u| m.workload_of(u)) {
                    if let (Some(p), Some(svc)) = (w.port, self.services.get_mut(&w.name)) {
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
                    if let (Some(p), Some(svc)) = (w.port, self.services.get_mut(&w.name)) {
                        svc.ports.push(format!("{}:{}", f.listen.addr.port(), p));
                        svc.deploy = None;
                    }
                }
            }
        }
        if !plan.routes.is_empty() {
            self.notes.push("routed services publish their port on 127.0.0.1; routing by host and path prefix, TLS and static files need a reverse proxy in front (or keep grove's edge)".into());
        }
        self.notes.extend(crate::model::edge_rule_notes(plan));
    }

    /// The header lines (the stack, the variables to set in `.env`, the notes) and the YAML.
    fn finish(self) -> Result<(Vec<String>, String), ExportError> {
        let plan = self.m.plan;
        let file = File {
            name: dns_name(&plan.stack),
            services: self.services,
            volumes: self.volumes,
        };
        let mut header = vec![format!(
            "grove export compose: stack {}{}",
            plan.stack,
            plan.environment
                .as_ref()
                .map(|e| format!(", environment {e}"))
                .unwrap_or_default()
        )];
        let mut needed = self.needed;
        needed.sort();
        needed.dedup();
        let mut user_secrets = self.user_secrets;
        user_secrets.sort();
        user_secrets.dedup();
        if !self.opts.include_secrets && (!needed.is_empty() || !user_secrets.is_empty()) {
            header.push("set these in .env beside this file (docker compose reads it):".into());
            for n in &needed {
                header.push(format!("  {}=<a password>", n.var));
            }
            for k in &user_secrets {
                header.push(format!("  {k}=<its value>"));
            }
        }
        header.extend(self.notes.into_iter().map(|n| format!("note: {n}")));
        Ok((header, yaml(&file)?))
    }
}
