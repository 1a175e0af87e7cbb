//! The parts of a service: its command, health probe and route.

use super::*;

impl<'a> Builder<'a> {
    /// An array of networks (`10.77.0.0/24`, `2001:db8::/32`; an address alone is one host),
    /// each as CIDR text.
    pub(super) fn networks(&mut self, node: &Node, path: &str) -> Vec<String> {
        let Kind::Array(items) = &node.kind else {
            self.type_err(node, path, "an array of networks such as \"10.77.0.0/24\"");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Some(text) = self.string(item, &at) else {
                continue;
            };
            match parse_network(&text) {
                Some(net) => out.push(net),
                None => self.err(
                    &item.loc,
                    &at,
                    format!("`{text}` is not a network"),
                    Some("an address with a prefix length, such as 10.77.0.0/24".to_string()),
                ),
            }
        }
        out
    }

    /// An array of DNS names (`app.example.org`; `*.example.org` too when `wildcards`),
    /// lowercased.
    pub(super) fn host_names(&mut self, node: &Node, path: &str, wildcards: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (h, loc) in self.strings(node, path).unwrap_or_default() {
            let bare = match h.strip_prefix("*.") {
                Some(b) if wildcards => b,
                _ => &h,
            };
            let ok = !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !bare.starts_with('.')
                && !bare.ends_with('.');
            if ok {
                out.push(h.to_ascii_lowercase());
            } else {
                let example = if wildcards {
                    "a DNS name such as app.example.org or *.example.org"
                } else {
                    "a DNS name such as db.internal"
                };
                self.err(
                    &loc,
                    path,
                    format!("`{h}` is not a host name"),
                    Some(example.to_string()),
                );
            }
        }
        out
    }

    /// A recipe's `tls`: `true`, `false`, or `{ names = ["db.internal"] }` (on, and the
    /// certificate also names those hosts, the ones clients on other machines dial).
    pub(super) fn recipe_tls(&mut self, node: &Node, path: &str, options: &mut RecipeOptions) {
        if let Kind::Table(_) = &node.kind {
            let Some(map) = self.table(node, path, &["names"]) else {
                return;
            };
            options.tls = true;
            if let Some(e) = map.get("names") {
                options.tls_names = self.host_names(&e.node, &join(path, "names"), false);
            }
            return;
        }
        match &node.kind {
            Kind::Bool(b) => options.tls = *b,
            _ => self.type_err(
                node,
                path,
                "true, false or a table such as { names = [\"db.internal\"] }",
            ),
        }
    }

    /// `replace = "start-first" | "stop-first"`: start-first needs a second copy to be
    /// possible (a command service whose port grove chooses).
    /// A job's `schedule`, `timezone`, `concurrency` and `timeout` (`kind = "job"`), refused
    /// on anything else.
    pub(super) fn job_settings(
        &mut self,
        is_job: bool,
        map: &Map,
        path: &str,
    ) -> Option<JobSettings> {
        let p = |k: &str| join(path, k);
        let keys = ["schedule", "timezone", "concurrency", "timeout"];
        if !is_job {
            for k in keys {
                if let Some(e) = map.get(k) {
                    self.err(
                        &e.key_loc,
                        &p(k),
                        format!("`{k}` applies to kind = \"job\""),
                        Some("a job is a task that runs on a schedule: kind = \"job\", schedule = \"0 3 * * *\"".to_string()),
                    );
                }
            }
            return None;
        }
        let Some(e) = map.get("schedule") else {
            let loc = map
                .get("kind")
                .map(|e| e.node.loc.clone())
                .unwrap_or_default();
            self.err(
                &loc,
                &p("schedule"),
                "a job needs a `schedule`",
                Some(
                    "cron's five fields: schedule = \"*/15 * * * *\", or @daily, @hourly"
                        .to_string(),
                ),
            );
            return None;
        };
        let help = "minute hour day-of-month month day-of-week: \"0 3 * * *\" is 03:00 every day";
        let (schedule, timezone) = self.schedule(e, map.get("timezone"), path, Some(help))?;
        let concurrency = map
            .get("concurrency")
            .and_then(|e| {
                self.enum_str(
                    &e.node,
                    &p("concurrency"),
                    &[
                        ("forbid", Concurrency::Forbid),
                        ("replace", Concurrency::Replace),
                        ("allow", Concurrency::Allow),
                    ],
                )
            })
            .unwrap_or(Concurrency::Forbid);
        let timeout = map
            .get("timeout")
            .and_then(|e| self.duration(&e.node, &p("timeout")));
        if let Some(e) = map.get("replicas") {
            self.err(
                &e.key_loc,
                &p("replicas"),
                "a job runs one process at a time",
                None,
            );
        }
        Some(JobSettings {
            schedule,
            timezone,
            concurrency,
            timeout,
        })
    }

    /// A `schedule` (cron, checked) and its `timezone` (known to this machine), under `path`;
    /// `help` goes with a bad schedule. A bad time zone is an error, and none is used.
    fn schedule(
        &mut self,
        schedule: &Entry,
        timezone: Option<&Entry>,
        path: &str,
        help: Option<&str>,
    ) -> Option<(String, Option<String>)> {
        let sp = join(path, "schedule");
        let text = self.string(&schedule.node, &sp)?;
        if let Err(why) = crate::cron::Cron::parse(&text) {
            self.err(&schedule.node.loc, &sp, why, help.map(str::to_string));
            return None;
        }
        let zone = timezone.and_then(|e| {
            let tp = join(path, "timezone");
            let tz = self.string(&e.node, &tp)?;
            if jiff::tz::TimeZone::get(&tz).is_err() {
                self.err(
                    &e.node.loc,
                    &tp,
                    format!("`{tz}` is not a time zone this machine knows"),
                    help.map(|_| "an IANA name such as Europe/Paris or UTC".to_string()),
                );
                return None;
            }
            Some(tz)
        });
        Some((text, zone))
    }

    /// A recipe's `backup = { schedule, timezone, keep, dir }`.
    pub(super) fn backup_settings(&mut self, node: &Node, path: &str) -> Option<BackupSettings> {
        let map = self.table(node, path, &["schedule", "timezone", "keep", "dir"])?;
        let Some(e) = map.get("schedule") else {
            self.err(
                &node.loc,
                path,
                "a backup needs a `schedule`",
                Some("backup = { schedule = \"0 3 * * *\", keep = 7 }".to_string()),
            );
            return None;
        };
        let (schedule, timezone) = self.schedule(e, map.get("timezone"), path, None)?;
        let keep = map
            .get("keep")
            .and_then(|e| self.int(&e.node, &join(path, "keep"), 1, 10_000))
            .unwrap_or(7) as u32;
        let dir = map
            .get("dir")
            .and_then(|e| self.path(&e.node, &join(path, "dir")));
        Some(BackupSettings {
            schedule,
            timezone,
            keep,
            dir,
        })
    }

    /// `limits = { memory = "512MB", cpu = 1.5, pids = 200, nofile = 65536 }`.
    pub(super) fn unit_limits(&mut self, node: &Node, path: &str) -> UnitLimits {
        let mut l = UnitLimits::default();
        let Some(map) = self.table(node, path, &["memory", "cpu", "pids", "nofile"]) else {
            return l;
        };
        if let Some(e) = map.get("memory") {
            let p = join(path, "memory");
            if let Some(s) = self.string(&e.node, &p) {
                match parse_size(&s) {
                    // Less than a few megabytes cannot even start a shell.
                    Some(n) if n >= 4 << 20 => l.memory = Some(n),
                    Some(_) => self.err(
                        &e.node.loc,
                        &p,
                        format!("`{s}` is too little memory to run anything"),
                        Some("4MB at least; 256MB is typical for a small web app".to_string()),
                    ),
                    None => self.err(
                        &e.node.loc,
                        &p,
                        format!("`{s}` is not a size"),
                        Some("a number and a unit: 512MB, 2GiB".to_string()),
                    ),
                }
            }
        }
        if let Some(e) = map.get("cpu") {
            let p = join(path, "cpu");
            let v = match &e.node.kind {
                Kind::Float(f) => Some(*f),
                Kind::Int(i) => Some(*i as f64),
                _ => {
                    self.type_err(&e.node, &p, "a number of CPUs (1, 0.5, 1.5)");
                    None
                }
            };
            match v {
                Some(v) if (0.01..=1024.0).contains(&v) => l.cpu = Some(v),
                Some(v) => self.err(
                    &e.node.loc,
                    &p,
                    format!("{v} CPUs is out of range"),
                    Some("from 0.01 to 1024".to_string()),
                ),
                None => {}
            }
        }
        if let Some(e) = map.get("pids") {
            l.pids = self
                .int(&e.node, &join(path, "pids"), 1, 4_194_304)
                .map(|n| n as u64);
        }
        if let Some(e) = map.get("nofile") {
            l.nofile = self
                .int(&e.node, &join(path, "nofile"), 16, 1_048_576)
                .map(|n| n as u64);
        }
        l
    }

    pub(super) fn replace(
        &mut self,
        node: &Node,
        path: &str,
        source: &Source,
        port: PortSpec,
        kind: ServiceKind,
    ) -> Option<Replace> {
        let order = self.enum_str(
            node,
            path,
            &[
                ("start-first", Replace::StartFirst),
                ("stop-first", Replace::StopFirst),
            ],
        )?;
        if order == Replace::StartFirst {
            let why = match (source, port, kind) {
                (Source::Recipe(_), _, _) => Some("a recipe's server keeps one data folder"),
                (Source::Upstreams(_), _, _) => Some("grove runs no process for remote upstreams"),
                (_, _, ServiceKind::Task) => Some("a task runs to completion; it is not replaced"),
                (_, PortSpec::Fixed(_), _) => {
                    Some("a fixed port cannot be held by two processes at once")
                }
                _ => None,
            };
            if let Some(why) = why {
                self.err(
                    &node.loc,
                    path,
                    format!("start-first is not possible here: {why}"),
                    Some("use replace = \"stop-first\", or let grove choose the port".to_string()),
                );
                return None;
            }
        }
        Some(order)
    }

    /// `socket = true`: grove opens the unit's port and passes the listening socket to its
    /// process (systemd's socket activation); only a command service with a port serves on
    /// one.
    pub(super) fn socket(
        &mut self,
        node: &Node,
        path: &str,
        source: &Source,
        port: PortSpec,
        kind: ServiceKind,
    ) -> bool {
        if !self.bool(node, path).unwrap_or(false) {
            return false;
        }
        let why = match (source, port, kind) {
            (Source::Recipe(_), _, _) => "a recipe's server opens its own port",
            (Source::Upstreams(_), _, _) => "grove runs no process for remote upstreams",
            (_, _, ServiceKind::Task) => "a task or a job serves no connections",
            (_, PortSpec::None, _) => "the service has no port",
            _ => return true,
        };
        self.err(
            &node.loc,
            path,
            format!("socket activation is not possible here: {why}"),
            Some("socket = true is for a service that runs a command and has a port".to_string()),
        );
        false
    }

    pub(super) fn command(
        &mut self,
        node: &Node,
        path: &str,
        service: &str,
    ) -> Option<Vec<Template>> {
        let words: Vec<(String, Loc)> = match &node.kind {
            Kind::Str(s) => match shell_words::split(s) {
                Ok(w) => w.into_iter().map(|w| (w, node.loc.clone())).collect(),
                Err(_) => {
                    self.err(
                        &node.loc,
                        path,
                        "unbalanced quotes in the command",
                        Some("close every quote, or write the command as an array".to_string()),
                    );
                    return None;
                }
            },
            Kind::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match &item.kind {
                        Kind::Str(s) => out.push((s.clone(), item.loc.clone())),
                        _ => self.type_err(item, &format!("{path}[{i}]"), "a string"),
                    }
                }
                out
            }
            _ => {
                self.type_err(node, path, "a string or an array of strings");
                return None;
            }
        };
        if words.is_empty() {
            self.err(&node.loc, path, "the command is empty", None);
            return None;
        }
        let mut argv = Vec::new();
        for (w, loc) in words {
            let t = self.interp(&w, &loc, path)?;
            self.templates
                .push((service.to_string(), path.to_string(), t.clone(), loc));
            argv.push(t);
        }
        Some(argv)
    }

    pub(super) fn health(&mut self, service: &str, node: &Node, path: &str) -> Option<Health> {
        let map = self.table(node, path, &HEALTH_KEYS)?;
        let kinds: Vec<&str> = ["http", "tcp", "exec"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        if kinds.len() != 1 {
            let msg = if kinds.is_empty() {
                "a health probe needs one of `http`, `tcp` or `exec`".to_string()
            } else {
                format!("a health probe takes only one of {}", one_of(&kinds))
            };
            self.err(
                &node.loc,
                path,
                msg,
                Some(
                    "health = { http = \"/healthz\" }, { tcp = true } or { exec = \"pg_isready\" }"
                        .to_string(),
                ),
            );
            return None;
        }
        let kp = join(path, kinds[0]);
        let e = &map[kinds[0]];
        let check = match kinds[0] {
            "http" => {
                let t = self.template(&e.node, &kp)?;
                if !t.to_string().starts_with('/') && !t.to_string().starts_with("${") {
                    self.err(
                        &e.node.loc,
                        &kp,
                        format!("`{t}` must be a path starting with `/`"),
                        Some("http = \"/healthz\"".to_string()),
                    );
                    return None;
                }
                self.templates.push((
                    service.to_string(),
                    kp.clone(),
                    t.clone(),
                    e.node.loc.clone(),
                ));
                Check::Http(t)
            }
            "tcp" => match &e.node.kind {
                Kind::Bool(true) => Check::Tcp(None),
                Kind::Str(_) => {
                    let t = self.template(&e.node, &kp)?;
                    self.templates.push((
                        service.to_string(),
                        kp.clone(),
                        t.clone(),
                        e.node.loc.clone(),
                    ));
                    Check::Tcp(Some(t))
                }
                _ => {
                    self.type_err(&e.node, &kp, "true (the unit's port) or \"host:port\"");
                    return None;
                }
            },
            _ => Check::Exec(self.command(&e.node, &kp, service)?),
        };
        let interval = map
            .get("interval")
            .and_then(|x| self.duration(&x.node, &join(path, "interval")))
            .unwrap_or(Duration::from_secs(5));
        let timeout = map
            .get("timeout")
            .and_then(|x| self.duration(&x.node, &join(path, "timeout")))
            .unwrap_or(Duration::from_secs(2));
        let retries = map
            .get("retries")
            .and_then(|x| self.int(&x.node, &join(path, "retries"), 1, 1000))
            .unwrap_or(3) as u32;
        let start_period = map
            .get("start_period")
            .and_then(|x| self.duration(&x.node, &join(path, "start_period")))
            .unwrap_or(Duration::ZERO);
        if interval.is_zero() {
            if let Some(x) = map.get("interval") {
                self.err(
                    &x.node.loc,
                    &join(path, "interval"),
                    "the interval must be longer than 0",
                    None,
                );
            }
        }
        let status = match map.get("status") {
            Some(x) => self.probe_statuses(&x.node, &join(path, "status"), &check)?,
            None => Vec::new(),
        };
        Some(Health {
            check,
            interval,
            timeout,
            retries,
            start_period,
            status,
        })
    }

    /// `status = [200, 204]` of an `http` probe: the statuses that pass.
    pub(super) fn probe_statuses(
        &mut self,
        node: &Node,
        path: &str,
        check: &Check,
    ) -> Option<Vec<u16>> {
        if !matches!(check, Check::Http(_)) {
            self.err(
                &node.loc,
                path,
                "`status` applies to `http` probes only",
                None,
            );
            return None;
        }
        let Kind::Array(items) = &node.kind else {
            self.type_err(node, path, "an array of HTTP statuses, such as [200]");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let code = self.int(item, &format!("{path}[{i}]"), 100, 599)?;
            out.push(u16::try_from(code).unwrap_or(200));
        }
        if out.is_empty() {
            self.err(
                &node.loc,
                path,
                "needs at least one status",
                Some("status = [200]".to_string()),
            );
            return None;
        }
        Some(out)
    }

    pub(super) fn route(&mut self, service: &str, node: &Node, path: &str) -> Option<Route> {
        let map = self.table(node, path, &ROUTE_KEYS)?;
        let host = map
            .get("host")
            .and_then(|e| self.template(&e.node, &join(path, "host")));
        let prefix = map
            .get("prefix")
            .and_then(|e| self.template(&e.node, &join(path, "prefix")));
        if let (Some(t), Some(e)) = (&host, map.get("host")) {
            self.templates.push((
                service.to_string(),
                join(path, "host"),
                t.clone(),
                e.node.loc.clone(),
            ));
        }
        if let (Some(t), Some(e)) = (&prefix, map.get("prefix")) {
            self.templates.push((
                service.to_string(),
                join(path, "prefix"),
                t.clone(),
                e.node.loc.clone(),
            ));
            let s = t.to_string();
            if !s.starts_with('/') && !s.starts_with("${") {
                self.err(
                    &e.node.loc,
                    &join(path, "prefix"),
                    format!("`{s}` must start with `/`"),
                    Some("prefix = \"/api\"".to_string()),
                );
            }
        }
        let strip_prefix = map
            .get("strip_prefix")
            .and_then(|e| self.bool(&e.node, &join(path, "strip_prefix")))
            .unwrap_or(false);
        let websocket = map
            .get("websocket")
            .and_then(|e| self.bool(&e.node, &join(path, "websocket")))
            .unwrap_or(true);
        let max_body = match self.given_size(service, map, path, "max_body") {
            Some(n) => n?,
            None => DEFAULT_MAX_BODY,
        };
        let buffer_body = match self.given_size(service, map, path, "buffer_body") {
            Some(n) => n?,
            None => DEFAULT_BUFFER_BODY,
        };
        let balance = map
            .get("balance")
            .and_then(|e| {
                self.enum_str(
                    &e.node,
                    &join(path, "balance"),
                    &[
                        ("round_robin", Balance::RoundRobin),
                        ("least_conn", Balance::LeastConn),
                    ],
                )
            })
            .unwrap_or_default();
        let hold_ms = match map.get("hold") {
            Some(e) => {
                let d = self.duration(&e.node, &join(path, "hold"))?;
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            }
            None => DEFAULT_HOLD_MS,
        };
        let response_headers = map
            .get("headers")
            .map(|e| self.header_rules(&e.node, &join(path, "headers")))
            .unwrap_or_default();
        let request_headers = map
            .get("request_headers")
            .map(|e| self.header_rules(&e.node, &join(path, "request_headers")))
            .unwrap_or_default();
        let (auth, forward_auth) = match map.get("auth") {
            Some(e) => {
                self.route_given.insert((service.to_string(), "auth"));
                match e.node.kind {
                    // `auth = false`: none, not even `[edge]`'s.
                    Kind::Bool(false) => (None, None),
                    _ => self.route_auth(service, &e.node, &join(path, "auth")),
                }
            }
            None => (None, None),
        };
        let rate_limit = map
            .get("rate_limit")
            .and_then(|e| self.rate_limit(&e.node, &join(path, "rate_limit")));
        let compress = map
            .get("compress")
            .and_then(|e| self.compress(&e.node, &join(path, "compress")));
        let targets = map
            .get("targets")
            .map(|e| self.route_targets(service, &e.node, &join(path, "targets")))
            .unwrap_or_default();
        let sticky = map
            .get("sticky")
            .and_then(|e| self.route_sticky(&targets, &e.node, &join(path, "sticky")));
        let mirror = map
            .get("mirror")
            .and_then(|e| self.route_mirror(service, &e.node, &join(path, "mirror")));
        Some(Route {
            host,
            prefix,
            strip_prefix,
            websocket,
            max_body,
            buffer_body,
            balance,
            hold_ms,
            response_headers,
            request_headers,
            auth,
            forward_auth,
            rate_limit,
            compress,
            targets,
            sticky,
            mirror,
        })
    }
}

impl Builder<'_> {
    /// A route's size key (`max_body`, `buffer_body`) when the route writes it (noted, so
    /// `[edge]`'s default leaves it alone): its bytes, or `None` inside after an error.
    fn given_size(
        &mut self,
        service: &str,
        map: &Map,
        path: &str,
        key: &'static str,
    ) -> Option<Option<u64>> {
        let e = map.get(key)?;
        self.route_given.insert((service.to_string(), key));
        Some(self.size(&e.node, &join(path, key)))
    }

    /// A size written as text (`512KB`, `10MB`, `1GiB`): its bytes, else a located error.
    pub(super) fn size(&mut self, node: &Node, path: &str) -> Option<u64> {
        let s = self.string(node, path)?;
        let n = parse_size(&s);
        if n.is_none() {
            self.err(
                &node.loc,
                path,
                format!("`{s}` is not a size"),
                Some("a number and a unit: 512KB, 10MB, 1GiB".to_string()),
            );
        }
        n
    }
}

/// `10.77.0.0/24` (or an address alone: one host) as CIDR text; `None` when it is not one.
pub(crate) fn parse_network(text: &str) -> Option<String> {
    let (ip, len) = crate::edge_rules::network(text)?;
    Some(format!("{ip}/{len}"))
}

#[cfg(test)]
mod tests {
    use super::parse_network;

    #[test]
    fn networks_are_cidr() {
        assert_eq!(
            parse_network("10.77.0.0/24").as_deref(),
            Some("10.77.0.0/24")
        );
        assert_eq!(
            parse_network("10.77.0.11").as_deref(),
            Some("10.77.0.11/32")
        );
        assert_eq!(
            parse_network("2001:db8::/32").as_deref(),
            Some("2001:db8::/32")
        );
        assert_eq!(parse_network("10.77.0.0/33"), None);
        assert_eq!(parse_network("ten/8"), None);
    }
}
