//! `[services.NAME]`: one service's keys, validated into a `Service`.

use super::*;

/// What the port decision of a service looks at.
struct ServiceParts<'s> {
    source: &'s Source,
    env: &'s IndexMap<String, EnvValue>,
    port: Option<PortSpec>,
    bind: IpAddr,
    kind: ServiceKind,
    health: Option<&'s Health>,
    route: Option<&'s Route>,
    recipe: &'s RecipeOptions,
}

impl<'a> Builder<'a> {
    pub(super) fn service(&mut self, name: &str, node: &Node, path: &str) -> Option<Service> {
        let map = self.table(node, path, &SERVICE_KEYS)?;
        let p = |k: &str| join(path, k);
        let (source, ok) = self.service_source(name, node, map, path)?;
        self.not_for_upstreams(&source, map, path);
        let cwd = self.service_cwd(name, map, path);
        let mut env = IndexMap::new();
        self.env_file(name, map, path, &mut env);
        self.env_table(name, map, path, &mut env);
        // A job is a task its schedule starts.
        let is_job = map
            .get("kind")
            .is_some_and(|e| matches!(&e.node.kind, Kind::Str(s) if s == "job"));
        let kind = map
            .get("kind")
            .and_then(|e| {
                self.enum_str(
                    &e.node,
                    &p("kind"),
                    &[
                        ("service", ServiceKind::Service),
                        ("task", ServiceKind::Task),
                        ("job", ServiceKind::Task),
                    ],
                )
            })
            .unwrap_or(ServiceKind::Service);
        let job = self.job_settings(is_job, map, path);
        let port = self.port_spec(map, path);
        let bind = self.bind_addr(map, path);
        let replicas = map
            .get("replicas")
            .and_then(|e| self.int(&e.node, &p("replicas"), 1, 64))
            .unwrap_or(1) as u32;
        let for_each_instance = map
            .get("for_each_instance")
            .and_then(|e| self.bool(&e.node, &p("for_each_instance")))
            .unwrap_or(false);
        let depends_on = self.depends_on(name, map, path);
        let health = map
            .get("health")
            .and_then(|e| self.health(name, &e.node, &p("health")));
        let restart = self.restart_policy(kind, map, path);
        let (stop_signal, stop_grace) = self.stop_settings(&source, map, path);
        let route = self.service_route(name, kind, map, path);
        let image = self.image(&source, map, path);
        let recipe_options = self.recipe_options(&source, map, path);
        let run_as = self.run_as(&source, map, path);
        let search_path = self.search_path(&source, map, path);
        let limits = match map.get("limits") {
            Some(e) if matches!(source, Some(Source::Command(_))) => {
                self.unit_limits(&e.node, &p("limits"))
            }
            Some(e) => {
                self.err(
                    &e.key_loc,
                    &p("limits"),
                    "`limits` applies to services that run a command",
                    None,
                );
                UnitLimits::default()
            }
            None => UnitLimits::default(),
        };
        let source = source?;
        if !ok {
            return None;
        }
        let port = self.settle_port(
            &ServiceParts {
                source: &source,
                env: &env,
                port,
                bind,
                kind,
                health: health.as_ref(),
                route: route.as_ref(),
                recipe: &recipe_options,
            },
            map,
            path,
        );
        let replace = map
            .get("replace")
            .and_then(|e| self.replace(&e.node, &p("replace"), &source, port, kind))
            .unwrap_or_default();
        let max_surge = map
            .get("max_surge")
            .and_then(|e| self.int(&e.node, &p("max_surge"), 1, 64))
            .unwrap_or(1) as u32;
        let socket = map
            .get("socket")
            .is_some_and(|e| self.socket(&e.node, &p("socket"), &source, port, kind));
        Some(Service {
            name: name.to_string(),
            source,
            cwd,
            env,
            port,
            bind,
            kind,
            replicas,
            for_each_instance,
            depends_on,
            health,
            restart,
            stop_signal,
            stop_grace,
            replace,
            run_as,
            limits,
            job,
            path: search_path,
            max_surge,
            socket,
            route,
            recipe: recipe_options,
            image,
        })
    }

    /// The port a service gets when `port` is not written (one when anything needs it), and
    /// the checks between its port, its probe and its bind.
    fn settle_port(&mut self, parts: &ServiceParts<'_>, map: &Map, path: &str) -> PortSpec {
        let p = |k: &str| join(path, k);
        let ServiceParts {
            source,
            env,
            port,
            bind,
            kind,
            health,
            route,
            recipe,
        } = *parts;
        let uses_port = match source {
            Source::Command(argv) => argv.iter().any(Template::uses_port),
            _ => false,
        } || env.values().any(|v| v.value.uses_port());
        let port = match port {
            Some(p) => p,
            None => {
                let needs = route.is_some()
                    || uses_port
                    || matches!(source, Source::Recipe(_))
                    || matches!(
                        health.map(|h| &h.check),
                        Some(Check::Http(_)) | Some(Check::Tcp(None))
                    );
                if (needs && kind == ServiceKind::Service) || uses_port {
                    PortSpec::Auto
                } else {
                    PortSpec::None
                }
            }
        };
        if matches!(source, Source::Upstreams(_))
            && port != PortSpec::None
            && map.contains_key("port")
        {
            self.err(
                &map["port"].key_loc,
                &p("port"),
                "a service of remote upstreams has no port of its own",
                None,
            );
        }
        let port = if matches!(source, Source::Upstreams(_)) {
            PortSpec::None
        } else {
            port
        };
        if port == PortSpec::None {
            if let Some(h) = health {
                if matches!(h.check, Check::Http(_) | Check::Tcp(None))
                    && !matches!(source, Source::Upstreams(_))
                {
                    self.err(
                        &map["health"].node.loc,
                        &p("health"),
                        "this probe needs the unit's port, but port is \"none\"",
                        None,
                    );
                }
            }
        }
        if let (Source::Recipe(Recipe::Postgres), Some(e)) = (source, map.get("bind")) {
            if !bind.is_loopback() && recipe.allow.is_empty() {
                self.err(
                    &e.node.loc,
                    &p("bind"),
                    "a postgres reachable beyond loopback needs `allow`: the networks whose clients may log in",
                    Some("allow = [\"10.77.0.0/24\"] (each is written to pg_hba.conf, with scram-sha-256)".to_string()),
                );
            }
        }
        port
    }

    /// The service's one source (`command`, `recipe` or `upstreams`) and whether every
    /// upstream address parsed; `None` ends the service.
    fn service_source(
        &mut self,
        name: &str,
        node: &Node,
        map: &Map,
        path: &str,
    ) -> Option<(Option<Source>, bool)> {
        let p = |k: &str| join(path, k);
        let sources: Vec<&str> = ["command", "recipe", "upstreams"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        if sources.len() != 1 {
            let msg = if sources.is_empty() {
                "a service needs one of `command`, `recipe` or `upstreams`".to_string()
            } else {
                format!("a service takes only one of {}", one_of(&sources))
            };
            let loc = self
                .service_locs
                .get(name)
                .cloned()
                .unwrap_or(node.loc.clone());
            self.err(
                &loc,
                path,
                msg,
                Some("command runs a process, recipe a backing server, upstreams names remote servers".to_string()),
            );
        }
        let mut ok = true;
        let source = match sources
            .first()
            .copied()
            .filter(|_| sources.len() == 1)
            .unwrap_or("")
        {
            "" => None,
            "command" => {
                let e = &map["command"];
                self.command(&e.node, &p("command"), name)
                    .map(Source::Command)
            }
            "recipe" => {
                let e = &map["recipe"];
                let s = self.string(&e.node, &p("recipe"))?;
                match Recipe::parse(&s) {
                    Some(r) => Some(Source::Recipe(r)),
                    None => {
                        let help = match suggest(&s, Recipe::NAMES) {
                            Some(n) => {
                                format!("did you mean `{n}`? valid: {}", one_of(&Recipe::NAMES))
                            }
                            None => format!("valid: {}", one_of(&Recipe::NAMES)),
                        };
                        self.err(
                            &e.node.loc,
                            &p("recipe"),
                            format!("unknown recipe `{s}`"),
                            Some(help),
                        );
                        None
                    }
                }
            }
            _ => {
                let e = &map["upstreams"];
                let mut ups = Vec::new();
                let list = self.strings(&e.node, &p("upstreams")).unwrap_or_default();
                if list.is_empty() {
                    self.err(
                        &e.node.loc,
                        &p("upstreams"),
                        "an upstreams list needs at least one address",
                        None,
                    );
                }
                for (s, loc) in list {
                    match parse_upstream(&s) {
                        Some(u) => ups.push(u),
                        None => {
                            self.err(
                                &loc,
                                &p("upstreams"),
                                format!("`{s}` is not an upstream address"),
                                Some(
                                    "host:port, http://host:port or https://host:port".to_string(),
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Some(Source::Upstreams(ups))
            }
        };
        Some((source, ok))
    }

    /// The keys that mean nothing for remote upstreams, refused there.
    fn not_for_upstreams(&mut self, source: &Option<Source>, map: &Map, path: &str) {
        let p = |k: &str| join(path, k);
        let is_process = matches!(source, Some(Source::Command(_)));
        if !is_process {
            for k in [
                "cwd",
                "kind",
                "replicas",
                "stop_signal",
                "stop_grace",
                "restart",
            ] {
                if let Some(e) = map.get(k) {
                    if matches!(source, Some(Source::Upstreams(_))) {
                        self.err(
                            &e.key_loc,
                            &p(k),
                            format!("`{k}` has no meaning for a service of remote upstreams"),
                            None,
                        );
                    }
                }
            }
        }
    }

    /// `cwd`, a template (its references checked with the others).
    fn service_cwd(&mut self, name: &str, map: &Map, path: &str) -> Option<Template> {
        let p = |k: &str| join(path, k);
        let cwd = map
            .get("cwd")
            .and_then(|e| self.template(&e.node, &p("cwd")));
        if let Some(t) = &cwd {
            self.templates.push((
                name.to_string(),
                p("cwd"),
                t.clone(),
                map["cwd"].node.loc.clone(),
            ));
        }
        cwd
    }

    /// `env_file`: each line interpolated exactly as an `env` value.
    fn env_file(
        &mut self,
        name: &str,
        map: &Map,
        path: &str,
        env: &mut IndexMap<String, EnvValue>,
    ) {
        let p = |k: &str| join(path, k);
        if let Some(e) = map.get("env_file") {
            if let Some(file) = self.path(&e.node, &p("env_file")) {
                let read = self
                    .env_files
                    .get(&file)
                    .cloned()
                    .unwrap_or_else(|| Err("it was not read with the stack file".to_string()));
                match read {
                    Ok(text) => match crate::dotenv::parse(&text) {
                        Ok(lines) => {
                            // Interpolated exactly as `env` values, references included
                            // (issue 27: `${db.url}/app` reached the process literally).
                            for (k, v, off) in lines {
                                let (line, _) = crate::source::line_col(&text, off);
                                let kp = format!("{} ({}:{line})", p("env_file"), file.display());
                                self.used_secret = false;
                                // A single-quoted value stays literal (as in docker compose).
                                let raw = text[off..].lines().next().unwrap_or_default();
                                let quoted = raw
                                    .split_once('=')
                                    .is_some_and(|(_, v)| v.trim_start().starts_with('\''));
                                let value = if quoted {
                                    Some(Template::literal(v))
                                } else {
                                    self.interp(&v, &e.node.loc, &kp)
                                };
                                let Some(value) = value else {
                                    continue;
                                };
                                let secret =
                                    is_secret_name(&k) || std::mem::take(&mut self.used_secret);
                                self.templates.push((
                                    name.to_string(),
                                    join(&p("env"), &k),
                                    value.clone(),
                                    e.node.loc.clone(),
                                ));
                                env.insert(k, EnvValue { value, secret });
                            }
                        }
                        Err((off, msg)) => {
                            let (line, _) = crate::source::line_col(&text, off);
                            self.err(
                                &e.node.loc,
                                &p("env_file"),
                                format!("{}:{line}: {msg}", file.display()),
                                None,
                            );
                        }
                    },
                    Err(err) => self.err(
                        &e.node.loc,
                        &p("env_file"),
                        format!("cannot read `{}`: {err}", file.display()),
                        Some("the path is relative to the stack file's folder".to_string()),
                    ),
                }
            }
        }
    }

    /// `env`: each variable a string, number, boolean or `{ value, secret }`.
    fn env_table(
        &mut self,
        name: &str,
        map: &Map,
        path: &str,
        env: &mut IndexMap<String, EnvValue>,
    ) {
        let p = |k: &str| join(path, k);
        if let Some(e) = map.get("env") {
            if let Some(vars) = self.any_table(&e.node, &p("env")) {
                for (k, v) in vars {
                    let kp = join(&p("env"), k);
                    if !k
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        self.err(
                            &v.key_loc,
                            &kp,
                            format!("`{k}` is not a valid variable name"),
                            Some("letters, digits and '_'".to_string()),
                        );
                        continue;
                    }
                    self.used_secret = false;
                    let (value, secret) = match &v.node.kind {
                        Kind::Str(_) => (self.template(&v.node, &kp), is_secret_name(k)),
                        Kind::Int(i) => (Some(Template::literal(i.to_string())), is_secret_name(k)),
                        Kind::Float(f) => {
                            (Some(Template::literal(f.to_string())), is_secret_name(k))
                        }
                        Kind::Bool(b) => {
                            (Some(Template::literal(b.to_string())), is_secret_name(k))
                        }
                        Kind::Table(_) => {
                            let Some(t) = self.table(&v.node, &kp, &["value", "secret"]) else {
                                continue;
                            };
                            let value = match t.get("value") {
                                Some(x) => self.template(&x.node, &join(&kp, "value")),
                                None => {
                                    self.err(
                                        &v.node.loc,
                                        &kp,
                                        "needs `value`",
                                        Some("{ value = \"...\", secret = true }".to_string()),
                                    );
                                    None
                                }
                            };
                            let secret = t
                                .get("secret")
                                .and_then(|x| self.bool(&x.node, &join(&kp, "secret")))
                                .unwrap_or(false)
                                || is_secret_name(k);
                            (value, secret)
                        }
                        _ => {
                            self.type_err(
                                &v.node,
                                &kp,
                                "a string, number, boolean or { value, secret }",
                            );
                            (None, false)
                        }
                    };
                    // A value built from a secret is a secret.
                    let secret = secret || std::mem::take(&mut self.used_secret);
                    if let Some(value) = value {
                        self.templates.push((
                            name.to_string(),
                            kp,
                            value.clone(),
                            v.node.loc.clone(),
                        ));
                        env.insert(k.clone(), EnvValue { value, secret });
                    }
                }
            }
        }
    }

    /// `port`: a number, `"auto"` or `"none"`; `None` when not written.
    fn port_spec(&mut self, map: &Map, path: &str) -> Option<PortSpec> {
        let p = |k: &str| join(path, k);
        let port = match map.get("port") {
            None => None,
            Some(e) => match &e.node.kind {
                Kind::Int(_) => self
                    .int(&e.node, &p("port"), 1, 65535)
                    .map(|i| PortSpec::Fixed(i as u16)),
                Kind::Str(_) => self.enum_str(
                    &e.node,
                    &p("port"),
                    &[("auto", PortSpec::Auto), ("none", PortSpec::None)],
                ),
                _ => {
                    self.type_err(&e.node, &p("port"), "\"auto\", \"none\" or a port number");
                    None
                }
            },
        };
        port
    }

    /// `bind`: an IP address (loopback when not written or wrong).
    fn bind_addr(&mut self, map: &Map, path: &str) -> IpAddr {
        let p = |k: &str| join(path, k);
        let bind = match map.get("bind") {
            Some(e) => match self.string(&e.node, &p("bind")) {
                Some(s) => match s.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        self.err(
                            &e.node.loc,
                            &p("bind"),
                            format!("`{s}` is not an IP address"),
                            Some("127.0.0.1, ::1 or 0.0.0.0".to_string()),
                        );
                        IpAddr::V4(Ipv4Addr::LOCALHOST)
                    }
                },
                None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        bind
    }

    /// `depends_on`: names (started) or a table of conditions; their locations are kept for
    /// the cross-checks.
    fn depends_on(&mut self, name: &str, map: &Map, path: &str) -> IndexMap<String, Condition> {
        let p = |k: &str| join(path, k);
        let mut depends_on = IndexMap::new();
        if let Some(e) = map.get("depends_on") {
            match &e.node.kind {
                Kind::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(s) = self.string(item, &format!("{}[{i}]", p("depends_on"))) {
                            depends_on.insert(s, (Condition::Started, item.loc.clone()));
                        }
                    }
                }
                Kind::Table(deps) => {
                    for (dep, c) in deps {
                        let cond = self.enum_str(
                            &c.node,
                            &join(&p("depends_on"), dep),
                            &[
                                ("started", Condition::Started),
                                ("healthy", Condition::Healthy),
                                ("completed", Condition::Completed),
                            ],
                        );
                        if let Some(cond) = cond {
                            depends_on.insert(dep.clone(), (cond, c.key_loc.clone()));
                        }
                    }
                }
                _ => self.type_err(
                    &e.node,
                    &p("depends_on"),
                    "an array of service names or a table of conditions",
                ),
            }
        }
        self.dep_locs.insert(
            name.to_string(),
            depends_on
                .iter()
                .map(|(k, (_, l))| (k.clone(), l.clone()))
                .collect(),
        );
        depends_on.into_iter().map(|(k, (c, _))| (k, c)).collect()
    }

    /// `restart`: a policy, or a table with the policy and its backoff.
    fn restart_policy(&mut self, kind: ServiceKind, map: &Map, path: &str) -> Restart {
        let p = |k: &str| join(path, k);
        let default_policy = if kind == ServiceKind::Task {
            RestartPolicy::Never
        } else {
            RestartPolicy::Always
        };
        let mut restart = Restart {
            policy: default_policy,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_restarts: 10,
        };
        let policies = [
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure),
            ("never", RestartPolicy::Never),
        ];
        if let Some(e) = map.get("restart") {
            match &e.node.kind {
                Kind::Table(_) => {
                    if let Some(t) = self.table(&e.node, &p("restart"), &RESTART_KEYS) {
                        if let Some(x) = t.get("policy") {
                            if let Some(pol) =
                                self.enum_str(&x.node, &join(&p("restart"), "policy"), &policies)
                            {
                                restart.policy = pol;
                            }
                        }
                        if let Some(x) = t.get("backoff") {
                            if let Some(d) = self.duration(&x.node, &join(&p("restart"), "backoff"))
                            {
                                restart.backoff = d;
                            }
                        }
                        if let Some(x) = t.get("max_backoff") {
                            if let Some(d) =
                                self.duration(&x.node, &join(&p("restart"), "max_backoff"))
                            {
                                restart.max_backoff = d;
                            }
                        }
                        if let Some(x) = t.get("max_restarts") {
                            if let Some(n) = self.int(
                                &x.node,
                                &join(&p("restart"), "max_restarts"),
                                0,
                                1_000_000,
                            ) {
                                restart.max_restarts = n as u32;
                            }
                        }
                        if restart.max_backoff < restart.backoff {
                            self.err(
                                &e.node.loc,
                                &p("restart"),
                                "max_backoff is shorter than backoff",
                                None,
                            );
                        }
                    }
                }
                _ => {
                    if let Some(pol) = self.enum_str(&e.node, &p("restart"), &policies) {
                        restart.policy = pol;
                    }
                }
            }
        }
        restart
    }

    /// `stop_signal` and `stop_grace` (a recipe's defaults are its server's clean shutdown).
    fn stop_settings(
        &mut self,
        source: &Option<Source>,
        map: &Map,
        path: &str,
    ) -> (String, Duration) {
        let p = |k: &str| join(path, k);
        // Recipes default to their server's clean and quick shutdown, with time to finish it.
        let (default_signal, default_grace) = match source {
            Some(Source::Recipe(r)) => (r.stop_signal(), Duration::from_secs(30)),
            _ => ("SIGTERM", Duration::from_secs(10)),
        };
        let stop_signal = match map.get("stop_signal") {
            Some(e) => match self.string(&e.node, &p("stop_signal")) {
                Some(s) => match parse_signal(&s) {
                    Some(sig) => sig.to_string(),
                    None => {
                        self.err(
                            &e.node.loc,
                            &p("stop_signal"),
                            format!("`{s}` is not a stop signal"),
                            Some(format!("valid: {}", one_of(&SIGNALS))),
                        );
                        default_signal.to_string()
                    }
                },
                None => default_signal.to_string(),
            },
            None => default_signal.to_string(),
        };
        let stop_grace = map
            .get("stop_grace")
            .and_then(|e| self.duration(&e.node, &p("stop_grace")))
            .unwrap_or(default_grace);
        (stop_signal, stop_grace)
    }

    /// `route` (a task has none) and `description`.
    fn service_route(
        &mut self,
        name: &str,
        kind: ServiceKind,
        map: &Map,
        path: &str,
    ) -> Option<Route> {
        let p = |k: &str| join(path, k);
        let route = map
            .get("route")
            .and_then(|e| self.route(name, &e.node, &p("route")));
        if let (Some(e), ServiceKind::Task) = (map.get("route"), kind) {
            self.err(
                &e.key_loc,
                &p("route"),
                "a task cannot have a route",
                Some("routes send traffic to long-running services".to_string()),
            );
        }
        if let Some(e) = map.get("description") {
            self.string(&e.node, &p("description"));
        }
        route
    }

    /// `image`, for the exports of a command service.
    fn image(&mut self, source: &Option<Source>, map: &Map, path: &str) -> Option<String> {
        let p = |k: &str| join(path, k);
        let image = map.get("image").and_then(|e| {
            if !matches!(source, Some(Source::Command(_))) {
                self.err(
                    &e.key_loc,
                    &p("image"),
                    "`image` applies to services that run a command",
                    Some(
                        "recipes export with their upstream images; remote upstreams need none"
                            .to_string(),
                    ),
                );
                return None;
            }
            let s = self.string(&e.node, &p("image"))?;
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                self.err(
                    &e.node.loc,
                    &p("image"),
                    format!("`{s}` is not a container image reference"),
                    Some("for example ghcr.io/acme/cts:1.4 or cts-web:latest".to_string()),
                );
                return None;
            }
            Some(s)
        });
        image
    }

    /// The recipe-only keys: `secret`, `databases`, `persistence`, `allow`.
    fn recipe_options(&mut self, source: &Option<Source>, map: &Map, path: &str) -> RecipeOptions {
        let p = |k: &str| join(path, k);
        let mut recipe_options = RecipeOptions::default();
        let recipe = match source {
            Some(Source::Recipe(r)) => Some(*r),
            _ => None,
        };
        for k in [
            "secret",
            "databases",
            "persistence",
            "allow",
            "tls",
            "backup",
        ] {
            let Some(e) = map.get(k) else { continue };
            let Some(r) = recipe else {
                self.err(
                    &e.key_loc,
                    &p(k),
                    format!("`{k}` applies to recipe services only"),
                    None,
                );
                continue;
            };
            match k {
                "databases" if !r.has_databases() => self.err(
                    &e.key_loc,
                    &p(k),
                    format!("the `{}` recipe has no named databases", r.name()),
                    Some("`databases` applies to postgres, rabbitmq and mongodb".to_string()),
                ),
                "databases" => {
                    if let Some(d) = self.databases(&e.node, &p(k)) {
                        recipe_options.databases = d;
                    }
                }
                "persistence" if r != Recipe::Redis => self.err(
                    &e.key_loc,
                    &p(k),
                    "`persistence` applies to the redis recipe only",
                    Some("the other recipes always keep their data".to_string()),
                ),
                "persistence" => {
                    if let Some(b) = self.bool(&e.node, &p(k)) {
                        recipe_options.persistence = b;
                    }
                }
                "allow" if r != Recipe::Postgres => self.err(
                    &e.key_loc,
                    &p(k),
                    "`allow` applies to the postgres recipe only",
                    Some("the other recipes log in with their password from any address they are bound to".to_string()),
                ),
                "allow" => recipe_options.allow = self.networks(&e.node, &p(k)),
                "backup" if !matches!(r, Recipe::Postgres | Recipe::Redis | Recipe::Rabbitmq) => self.err(
                    &e.key_loc,
                    &p(k),
                    format!("grove does not back up the {} recipe yet", r.name()),
                    Some("backups are made for postgres, redis and rabbitmq".to_string()),
                ),
                "backup" => recipe_options.backup = self.backup_settings(&e.node, &p(k)),
                "tls" if !matches!(r, Recipe::Postgres | Recipe::Redis | Recipe::Rabbitmq) => self.err(
                    &e.key_loc,
                    &p(k),
                    "`tls` applies to the postgres, redis and rabbitmq recipes only",
                    Some("the edge's TLS is set in [edge]".to_string()),
                ),
                "tls" => self.recipe_tls(&e.node, &p(k), &mut recipe_options),
                _ => {
                    self.bool(&e.node, &p(k));
                }
            }
        }
        recipe_options
    }

    /// `user`, `group` and `umask`, for a command service; the loader found whether the user
    /// and group exist on this machine.
    fn run_as(&mut self, source: &Option<Source>, map: &Map, path: &str) -> RunAs {
        let p = |k: &str| join(path, k);
        let mut run_as = RunAs::default();
        for (k, what) in [("user", "user"), ("group", "group")] {
            let Some(e) = map.get(k) else { continue };
            if !matches!(source, Some(Source::Command(_))) {
                self.err(
                    &e.key_loc,
                    &p(k),
                    format!("`{k}` applies to services that run a command"),
                    Some(
                        "a recipe runs its server as its own user (postgres runs as `postgres`)"
                            .to_string(),
                    ),
                );
                continue;
            }
            let name = match &e.node.kind {
                Kind::Int(i) if *i >= 0 => i.to_string(),
                _ => match self.string(&e.node, &p(k)) {
                    Some(s) => s,
                    None => continue,
                },
            };
            if self.accounts.get(&format!("{k}:{name}")) == Some(&false) {
                self.err(
                    &e.node.loc,
                    &p(k),
                    format!("there is no {what} `{name}` on this machine"),
                    Some(format!(
                        "create it (`adduser --system {name}`), or name one that exists"
                    )),
                );
                continue;
            }
            if k == "user" {
                run_as.user = Some(name);
            } else {
                run_as.group = Some(name);
            }
        }
        if let Some(e) = map.get("umask") {
            let text = self.string(&e.node, &p("umask"));
            match text.as_deref().map(|t| (t, u32::from_str_radix(t, 8))) {
                Some((t, Ok(m))) if m <= 0o777 && (3..=4).contains(&t.len()) => {
                    run_as.umask = Some(m)
                }
                Some((t, _)) => self.err(
                    &e.node.loc,
                    &p("umask"),
                    format!("`{t}` is not a file mode mask"),
                    Some("three or four octal digits, as a string: umask = \"0027\"".to_string()),
                ),
                None => {}
            }
        }
        run_as
    }

    /// `path = [".venv/bin"]`: folders first on the unit's `PATH`, for a command service.
    fn search_path(&mut self, source: &Option<Source>, map: &Map, path: &str) -> Vec<PathBuf> {
        let Some(e) = map.get("path") else {
            return Vec::new();
        };
        let p = join(path, "path");
        if !matches!(source, Some(Source::Command(_))) {
            self.err(
                &e.key_loc,
                &p,
                "`path` applies to services that run a command",
                None,
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for (dir, loc) in self.strings(&e.node, &p).unwrap_or_default() {
            if dir.is_empty() || dir.contains(':') {
                self.err(
                    &loc,
                    &p,
                    format!("`{dir}` cannot be a PATH entry"),
                    Some("a folder, without `:`: path = [\".venv/bin\"]".to_string()),
                );
                continue;
            }
            out.push(PathBuf::from(dir));
        }
        out
    }

    /// `databases = "per-instance"` or `["name", ...]`.
    pub(super) fn databases(&mut self, node: &Node, path: &str) -> Option<Databases> {
        let help = "\"per-instance\", or an array of names made of letters, digits and `_`";
        if let Kind::Str(_) = node.kind {
            let s = self.string(node, path)?;
            if s == "per-instance" {
                return Some(Databases::PerInstance);
            }
            self.err(
                &node.loc,
                path,
                format!("`{s}` is not valid here"),
                Some(format!("valid: {help}")),
            );
            return None;
        }
        let names = self.strings(node, path)?;
        let mut out = Vec::new();
        for (i, (n, loc)) in names.into_iter().enumerate() {
            if !valid_database(&n) {
                self.err(
                    &loc,
                    &format!("{path}[{i}]"),
                    format!("`{n}` is not a database name grove creates"),
                    Some(format!("valid: {help}, at most 63 characters")),
                );
            } else {
                out.push(n);
            }
        }
        Some(Databases::Named(out))
    }
}
