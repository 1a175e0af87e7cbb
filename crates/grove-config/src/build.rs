//! The merged tree -> a typed [`Stack`], collecting every error instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use crate::error::{one_of, suggest, ConfigError, Warning};
use crate::interp::{interpolate, Part, Template};
use crate::node::{Entry, Kind, Node};
use crate::source::{Loc, Sources};
use crate::stack::normalize_prefix;
use crate::stack::*;
use crate::units::{parse_duration, parse_signal, parse_size, SIGNALS};

type Map = IndexMap<String, Entry>;

const TOP_KEYS: [&str; 7] = [
    "stack",
    "edge",
    "services",
    "instances",
    "environments",
    "deploy",
    "admin",
];
const ADMIN_KEYS: [&str; 6] = [
    "listen",
    "sample_interval",
    "webhook",
    "amqp",
    "amqp_exchange",
    "notify",
];
const STACK_KEYS: [&str; 6] = [
    "name",
    "ports",
    "env_file",
    "state_dir",
    "log_max_size",
    "log_keep",
];
const EDGE_KEYS: [&str; 14] = [
    "listen",
    "acme_challenge",
    "upstream_ca",
    "hosts",
    "tls",
    "acme_email",
    "acme_directory",
    "acme_ca",
    "hsts",
    "redirect_https",
    "trusted_proxies",
    "static",
    "forward",
    "limits",
];
const LIMIT_KEYS: [&str; 8] = [
    "client_header_timeout",
    "client_body_timeout",
    "max_header_bytes",
    "max_headers",
    "upstream_connect_timeout",
    "upstream_response_timeout",
    "max_connections",
    "upstream_down_time",
];
const SERVICE_KEYS: [&str; 22] = [
    "command",
    "recipe",
    "upstreams",
    "cwd",
    "env",
    "env_file",
    "port",
    "bind",
    "kind",
    "replicas",
    "for_each_instance",
    "depends_on",
    "health",
    "restart",
    "stop_signal",
    "stop_grace",
    "route",
    "description",
    "secret",
    "databases",
    "persistence",
    "image",
];
const HEALTH_KEYS: [&str; 8] = [
    "http",
    "tcp",
    "exec",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "status",
];
const RESTART_KEYS: [&str; 4] = ["policy", "backoff", "max_backoff", "max_restarts"];
const ROUTE_KEYS: [&str; 7] = [
    "host",
    "prefix",
    "strip_prefix",
    "websocket",
    "max_body",
    "balance",
    "hold",
];
const DEPLOY_KEYS: [&str; 7] = [
    "repository",
    "ref",
    "build",
    "keep",
    "before_switch",
    "health_timeout",
    "drain",
];

/// Converts and validates; `strict_vars` off skips `${VAR:?}` errors (other environments).
pub(crate) struct Builder<'a> {
    pub sources: &'a Sources,
    pub vars: &'a BTreeMap<String, String>,
    pub root: PathBuf,
    pub strict_vars: bool,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
    /// Where each service was declared, for cross-checks.
    service_locs: HashMap<String, Loc>,
    /// Where each template was written, for reference checks: (service, key path, template, loc).
    templates: Vec<(String, String, Template, Loc)>,
    /// Where each dependency was written: service -> dependency -> location.
    dep_locs: HashMap<String, HashMap<String, Loc>>,
    /// Where `deploy.before_switch` was written.
    before_switch_loc: Option<Loc>,
    /// Values left empty because a required variable is unset in a non-selected environment:
    /// errors there would only echo that.
    lenient_locs: Vec<Loc>,
    /// Set when a template interpolated a secret variable (one named like a secret): the
    /// value it is part of is a secret too. Read and cleared by whoever builds that value.
    used_secret: bool,
    /// The secret variables interpolated so far, with their values.
    secret_values: Vec<(String, String)>,
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A database name that needs no quoting anywhere: a letter, then letters, digits, `_`.
pub fn valid_database(s: &str) -> bool {
    let mut c = s.chars();
    s.len() <= 63
        && matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else if valid_name(key) {
        format!("{path}.{key}")
    } else {
        format!("{path}.\"{key}\"")
    }
}

impl<'a> Builder<'a> {
    pub fn new(
        sources: &'a Sources,
        vars: &'a BTreeMap<String, String>,
        root: PathBuf,
        strict_vars: bool,
    ) -> Self {
        Builder {
            sources,
            vars,
            root,
            strict_vars,
            errors: Vec::new(),
            warnings: Vec::new(),
            service_locs: HashMap::new(),
            templates: Vec::new(),
            dep_locs: HashMap::new(),
            before_switch_loc: None,
            lenient_locs: Vec::new(),
            used_secret: false,
            secret_values: Vec::new(),
        }
    }

    fn err(&mut self, loc: &Loc, key: &str, message: impl Into<String>, help: Option<String>) {
        if self.lenient_locs.contains(loc) {
            return;
        }
        let e = ConfigError::at(self.sources, loc, key, message.into(), help);
        self.errors.push(e);
    }

    fn warn(&mut self, loc: &Loc, message: String) {
        let (line, col) = self.sources.line_col(loc.file, loc.span.start);
        let file = self
            .sources
            .get(loc.file)
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        let w = Warning {
            location: format!("{file}:{line}:{col}"),
            message,
        };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    fn type_err(&mut self, node: &Node, path: &str, want: &str) {
        let msg = format!("expected {want}, found {}", node.kind.type_name());
        self.err(&node.loc, path, msg, None);
    }

    /// The entries of a table, with unknown keys reported.
    fn table<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<&'n Map> {
        let Kind::Table(map) = &node.kind else {
            self.type_err(node, path, "a table");
            return None;
        };
        for (k, e) in map {
            if !allowed.contains(&k.as_str()) {
                let help = match suggest(k, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? valid keys: {}", allowed.join(", ")),
                    None => format!("valid keys: {}", allowed.join(", ")),
                };
                self.err(
                    &e.key_loc,
                    &join(path, k),
                    format!("unknown key `{k}`"),
                    Some(help),
                );
            }
        }
        Some(map)
    }

    fn any_table<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n Map> {
        match &node.kind {
            Kind::Table(m) => Some(m),
            _ => {
                self.type_err(node, path, "a table");
                None
            }
        }
    }

    fn template(&mut self, node: &Node, path: &str) -> Option<Template> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            _ => {
                self.type_err(node, path, "a string");
                return None;
            }
        };
        self.interp(&text, &node.loc, path)
    }

    fn interp(&mut self, text: &str, loc: &Loc, path: &str) -> Option<Template> {
        match interpolate(text, self.vars) {
            Ok(out) => {
                for v in out.used.iter().filter(|v| is_secret_name(v)) {
                    self.used_secret = true;
                    if let Some(value) = self.vars.get(v).filter(|x| x.len() >= 4) {
                        if !self.secret_values.iter().any(|(n, _)| n == v) {
                            self.secret_values.push((v.clone(), value.clone()));
                        }
                    }
                }
                for var in out.unset {
                    self.warn(
                        loc,
                        format!("{path}: variable {var} is not set; using an empty string"),
                    );
                }
                Some(out.template)
            }
            Err(crate::interp::InterpError::Required { .. }) if !self.strict_vars => {
                self.lenient_locs.push(loc.clone());
                Some(Template::default())
            }
            Err(e) => {
                let help = match &e {
                    crate::interp::InterpError::Required { var, .. } => Some(format!(
                        "set {var} in the environment or in the stack's .env file"
                    )),
                    _ => Some(
                        "forms: ${VAR}, ${VAR:-default}, ${VAR:?message}, $$, ${PORT}, ${HOST}, \
                         ${instance}, ${instance.KEY}, ${SERVICE.url|host|port}"
                            .to_string(),
                    ),
                };
                self.err(loc, path, e.to_string(), help);
                None
            }
        }
    }

    /// A string with variables resolved and no unit references.
    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        let t = self.template(node, path)?;
        match t.as_literal() {
            Some(s) => Some(s),
            None => {
                self.err(
                    &node.loc,
                    path,
                    "unit references (${PORT}, ${instance}, ${SERVICE.url}) cannot be used here",
                    Some("they work in command, cwd, env, health and route".to_string()),
                );
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.type_err(node, path, "true or false");
                None
            }
        }
    }

    fn int(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        match node.kind {
            Kind::Int(i) if i >= min && i <= max => Some(i),
            Kind::Int(i) => {
                self.err(
                    &node.loc,
                    path,
                    format!("{i} is out of range"),
                    Some(format!("a whole number from {min} to {max}")),
                );
                None
            }
            _ => {
                self.type_err(node, path, "an integer");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let s = self.string(node, path)?;
        match parse_duration(&s) {
            Some(d) => Some(d),
            None => {
                self.err(
                    &node.loc,
                    path,
                    format!("`{s}` is not a duration"),
                    Some("a number and a unit: 500ms, 5s, 1m30s, 2h, 1d".to_string()),
                );
                None
            }
        }
    }

    fn enum_str<T: Copy>(&mut self, node: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
        let s = self.string(node, path)?;
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == s) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let help = match suggest(&s, names.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? valid: {}", one_of(&names)),
            None => format!("valid: {}", one_of(&names)),
        };
        self.err(
            &node.loc,
            path,
            format!("`{s}` is not valid here"),
            Some(help),
        );
        None
    }

    fn strings(&mut self, node: &Node, path: &str) -> Option<Vec<(String, Loc)>> {
        let Kind::Array(items) = &node.kind else {
            self.type_err(node, path, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(item, &format!("{path}[{i}]")) {
                out.push((s, item.loc.clone()));
            }
        }
        Some(out)
    }

    fn path(&mut self, node: &Node, path: &str) -> Option<PathBuf> {
        self.string(node, path).map(PathBuf::from)
    }

    fn listen(&mut self, s: &str, loc: &Loc, path: &str) -> Option<Listen> {
        let help = Some("a URL such as http://127.0.0.1:8080 or https://0.0.0.0:443".to_string());
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            self.err(
                loc,
                path,
                format!("`{s}` must start with http:// or https://"),
                help,
            );
            return None;
        };
        let rest = rest.trim_end_matches('/');
        let rest = rest.replace("localhost:", "127.0.0.1:");
        match rest.parse::<SocketAddr>() {
            Ok(addr) => Some(Listen { scheme, addr }),
            Err(_) => {
                self.err(
                    loc,
                    path,
                    format!("`{s}` is not an IP address and port"),
                    help,
                );
                None
            }
        }
    }

    pub fn build(
        &mut self,
        root: &Node,
        environment: Option<String>,
        environments: Vec<String>,
    ) -> Option<Stack> {
        let top = self.table(root, "", &TOP_KEYS)?;
        let name = match top.get("stack") {
            Some(e) => self.stack_section(&e.node),
            None => {
                self.err(
                    &root.loc,
                    "stack",
                    "the `[stack]` table is missing",
                    Some("start the file with [stack] and name = \"...\"".to_string()),
                );
                None
            }
        };
        let (ports, state_dir, logs) = top
            .get("stack")
            .map(|e| self.stack_extras(&e.node))
            .unwrap_or((
                (20000, 29999),
                PathBuf::from(".grove"),
                LogRotation::default(),
            ));
        let instances = match top.get("instances") {
            Some(e) => self.instances(&e.node),
            None => IndexMap::new(),
        };
        let mut services = IndexMap::new();
        if let Some(e) = top.get("services") {
            if let Some(map) = self.any_table(&e.node, "services") {
                for (name, entry) in map {
                    let path = join("services", name);
                    if !valid_name(name) {
                        self.err(
                            &entry.key_loc,
                            &path,
                            format!("`{name}` is not a valid service name"),
                            Some(
                                "letters, digits, '-' and '_', starting with a letter".to_string(),
                            ),
                        );
                        continue;
                    }
                    self.service_locs
                        .insert(name.clone(), entry.key_loc.clone());
                    if let Some(s) = self.service(name, &entry.node, &path) {
                        services.insert(name.clone(), s);
                    }
                }
            }
        }
        let edge = match top.get("edge") {
            Some(e) => self.edge(&e.node),
            None => Some(default_edge()),
        };
        let deploy = top.get("deploy").and_then(|e| self.deploy(&e.node));
        let admin = match top.get("admin") {
            Some(e) => self.admin(&e.node)?,
            None => Admin::default(),
        };
        let edge = edge?;
        self.cross_check(&services, &instances, &edge, top);
        let name = name?;
        if !self.errors.is_empty() {
            return None;
        }
        Some(Stack {
            name,
            root: self.root.clone(),
            environment,
            environments,
            ports,
            state_dir,
            logs,
            edge,
            services,
            instances,
            deploy,
            admin,
            secret_values: std::mem::take(&mut self.secret_values),
        })
    }

    /// `[admin]`: the admin listener (off unless `listen` is given) and metric sampling.
    fn admin(&mut self, node: &Node) -> Option<Admin> {
        let map = self.table(node, "admin", &ADMIN_KEYS)?;
        let mut admin = Admin::default();
        if let Some(e) = map.get("listen") {
            let s = self.string(&e.node, "admin.listen")?;
            // A bare port means loopback.
            let parsed = s
                .parse::<u16>()
                .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
                .or_else(|_| s.parse::<SocketAddr>());
            match parsed {
                Ok(a) => admin.listen = Some(a),
                Err(_) => {
                    self.err(
                        &e.node.loc,
                        "admin.listen",
                        format!("`{s}` is not an address and port"),
                        Some(
                            "for example 127.0.0.1:9090 (loopback unless you mean it)".to_string(),
                        ),
                    );
                    return None;
                }
            }
        }
        if let Some(e) = map.get("sample_interval") {
            let d = self.duration(&e.node, "admin.sample_interval")?;
            if d < Duration::from_millis(200) || d > Duration::from_secs(3600) {
                self.err(
                    &e.node.loc,
                    "admin.sample_interval",
                    "the sample interval must be between 200ms and 1h",
                    Some("10s is the default".to_string()),
                );
                return None;
            }
            admin.sample_interval = d;
        }
        if let Some(e) = map.get("webhook") {
            let s = self.string(&e.node, "admin.webhook")?;
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                self.err(
                    &e.node.loc,
                    "admin.webhook",
                    format!("`{s}` is not an http:// or https:// URL"),
                    None,
                );
                return None;
            }
            admin.webhook = Some(s);
        }
        if let Some(e) = map.get("amqp") {
            // May name the stack's own broker: amqp = "${mq.url}".
            let t = self.template(&e.node, "admin.amqp")?;
            if t.uses_port() || t.uses_instance() {
                self.err(
                    &e.node.loc,
                    "admin.amqp",
                    "only ${SERVICE.url|host|port} references work here",
                    Some("for example amqp = \"${mq.url}\" or an amqp:// URL".to_string()),
                );
                return None;
            }
            admin.amqp = Some(t);
        }
        if let Some(e) = map.get("amqp_exchange") {
            admin.amqp_exchange = self.string(&e.node, "admin.amqp_exchange")?;
        }
        if let Some(e) = map.get("notify") {
            let list = self.strings(&e.node, "admin.notify")?;
            admin.notify = list.into_iter().map(|(s, _)| s).collect();
        }
        Some(admin)
    }

    fn stack_section(&mut self, node: &Node) -> Option<String> {
        let map = self.table(node, "stack", &STACK_KEYS)?;
        let Some(e) = map.get("name") else {
            self.err(
                &node.loc,
                "stack.name",
                "the stack needs a name",
                Some("name = \"myapp\"".to_string()),
            );
            return None;
        };
        let name = self.string(&e.node, "stack.name")?;
        if !valid_name(&name) {
            self.err(
                &e.node.loc,
                "stack.name",
                format!("`{name}` is not a valid stack name"),
                Some("letters, digits, '-' and '_', starting with a letter".to_string()),
            );
            return None;
        }
        Some(name)
    }

    fn stack_extras(&mut self, node: &Node) -> ((u16, u16), PathBuf, LogRotation) {
        let mut ports = (20000, 29999);
        let mut state = PathBuf::from(".grove");
        let mut logs = LogRotation::default();
        let Kind::Table(map) = &node.kind else {
            return (ports, state, logs);
        };
        if let Some(e) = map.get("log_max_size") {
            if let Some(s) = self.string(&e.node, "stack.log_max_size") {
                match parse_size(&s) {
                    Some(n) if n >= 1000 => logs.max_size = n,
                    _ => self.err(
                        &e.node.loc,
                        "stack.log_max_size",
                        format!("`{s}` is not a log size"),
                        Some("a size of at least 1KB: 512KB, 10MB, 1GiB".to_string()),
                    ),
                }
            }
        }
        if let Some(e) = map.get("log_keep") {
            if let Some(n) = self.int(&e.node, "stack.log_keep", 1, 100) {
                logs.keep = n as u32;
            }
        }
        if let Some(e) = map.get("ports") {
            if let Some(s) = self.string(&e.node, "stack.ports") {
                let parsed = s.split_once('-').and_then(|(a, b)| {
                    let a: u16 = a.trim().parse().ok()?;
                    let b: u16 = b.trim().parse().ok()?;
                    (a >= 1024 && b >= a && b - a >= 16).then_some((a, b))
                });
                match parsed {
                    Some(p) => ports = p,
                    None => self.err(
                        &e.node.loc,
                        "stack.ports",
                        format!("`{s}` is not a port range"),
                        Some(
                            "LOW-HIGH with 1024 <= LOW and at least 16 ports, e.g. \"20000-29999\""
                                .to_string(),
                        ),
                    ),
                }
            }
        }
        if let Some(e) = map.get("state_dir") {
            if let Some(p) = self.path(&e.node, "stack.state_dir") {
                state = p;
            }
        }
        if let Some(e) = map.get("env_file") {
            // Read by the loader before the build; here only its type is checked.
            self.string(&e.node, "stack.env_file");
        }
        (ports, state, logs)
    }

    fn instances(&mut self, node: &Node) -> IndexMap<String, Instance> {
        let mut out = IndexMap::new();
        let Some(map) = self.any_table(node, "instances") else {
            return out;
        };
        for (name, e) in map {
            let path = join("instances", name);
            if !valid_name(name) {
                self.err(
                    &e.key_loc,
                    &path,
                    format!("`{name}` is not a valid instance name"),
                    Some("letters, digits, '-' and '_', starting with a letter".to_string()),
                );
                continue;
            }
            let Some(vars) = self.any_table(&e.node, &path) else {
                continue;
            };
            let mut prefix = format!("/{name}");
            let mut values = IndexMap::new();
            for (k, v) in vars {
                let kp = join(&path, k);
                let value = match &v.node.kind {
                    Kind::Str(_) => self.string(&v.node, &kp),
                    Kind::Int(i) => Some(i.to_string()),
                    Kind::Float(f) => Some(f.to_string()),
                    Kind::Bool(b) => Some(b.to_string()),
                    _ => {
                        self.type_err(&v.node, &kp, "a string, number or boolean");
                        None
                    }
                };
                let Some(value) = value else { continue };
                if k == "prefix" {
                    if !value.starts_with('/') {
                        self.err(
                            &v.node.loc,
                            &kp,
                            format!("`{value}` must start with `/`"),
                            Some("a path prefix such as \"/TR\", or \"/\" for none".to_string()),
                        );
                        continue;
                    }
                    prefix = value;
                } else {
                    values.insert(k.clone(), value);
                }
            }
            out.insert(
                name.clone(),
                Instance {
                    name: name.clone(),
                    prefix,
                    vars: values,
                },
            );
        }
        out
    }

    fn edge(&mut self, node: &Node) -> Option<Edge> {
        let map = self.table(node, "edge", &EDGE_KEYS)?;
        let mut edge = default_edge();
        if let Some(e) = map.get("listen") {
            for (s, loc) in self.strings(&e.node, "edge.listen").unwrap_or_default() {
                if let Some(l) = self.listen(&s, &loc, "edge.listen") {
                    if edge.listen.iter().any(|x| x.addr.port() == l.addr.port()) {
                        self.err(
                            &loc,
                            "edge.listen",
                            format!("port {} is listed twice", l.addr.port()),
                            None,
                        );
                    }
                    edge.listen.push(l);
                }
            }
        }
        if let Some(e) = map.get("hosts") {
            for (h, loc) in self.strings(&e.node, "edge.hosts").unwrap_or_default() {
                let bare = h.strip_prefix("*.").unwrap_or(&h);
                let ok = !bare.is_empty()
                    && bare
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    && !bare.starts_with('.')
                    && !bare.ends_with('.');
                if ok {
                    edge.hosts.push(h.to_ascii_lowercase());
                } else {
                    self.err(
                        &loc,
                        "edge.hosts",
                        format!("`{h}` is not a host name"),
                        Some("a DNS name such as app.example.org or *.example.org".to_string()),
                    );
                }
            }
        }
        let has_https = edge.listen.iter().any(|l| l.scheme == Scheme::Https);
        edge.tls = if has_https { Tls::SelfSigned } else { Tls::Off };
        if let Some(e) = map.get("tls") {
            match &e.node.kind {
                Kind::Table(_) => {
                    if let Some(pair) = self.cert_files(&e.node, "edge.tls") {
                        edge.tls = Tls::Files { certs: vec![pair] };
                    }
                }
                Kind::Array(items) => {
                    let mut certs = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        if let Some(pair) = self.cert_files(item, &format!("edge.tls[{i}]")) {
                            certs.push(pair);
                        }
                    }
                    if items.is_empty() {
                        self.err(
                            &e.node.loc,
                            "edge.tls",
                            "an empty list of certificates",
                            Some("tls = [{ cert = \"a.pem\", key = \"a.key\" }]".to_string()),
                        );
                    } else if certs.len() == items.len() {
                        edge.tls = Tls::Files { certs };
                    }
                }
                _ => {
                    if let Some(t) = self.enum_str(
                        &e.node,
                        "edge.tls",
                        &[
                            ("acme", Tls::Acme),
                            ("self-signed", Tls::SelfSigned),
                            ("off", Tls::Off),
                        ]
                        .map(|(n, t)| (n, TlsTag::from(&t))),
                    ) {
                        edge.tls = t.into();
                    }
                }
            }
            if has_https && edge.tls == Tls::Off {
                self.err(
                    &e.node.loc,
                    "edge.tls",
                    "an https:// listener needs certificates, but tls is off",
                    Some("use tls = \"self-signed\", \"acme\" or { cert, key }, or listen on http://".to_string()),
                );
            }
        }
        if let Some(e) = map.get("acme_email") {
            edge.acme_email = self.string(&e.node, "edge.acme_email");
            if let Some(m) = &edge.acme_email {
                if !m.contains('@') {
                    let msg = format!("`{m}` is not an email address");
                    self.err(&e.node.loc, "edge.acme_email", msg, None);
                }
            }
        }
        if edge.tls == Tls::Acme {
            if edge.acme_email.is_none() && !map.contains_key("acme_email") {
                let loc = map
                    .get("tls")
                    .map(|e| e.node.loc.clone())
                    .unwrap_or(node.loc.clone());
                self.err(
                    &loc,
                    "edge.acme_email",
                    "tls = \"acme\" needs an account email",
                    Some("acme_email = \"ops@example.org\"".to_string()),
                );
            }
            if edge.hosts.is_empty() {
                let loc = map
                    .get("tls")
                    .map(|e| e.node.loc.clone())
                    .unwrap_or(node.loc.clone());
                self.err(
                    &loc,
                    "edge.hosts",
                    "tls = \"acme\" needs the host names to certify",
                    Some("hosts = [\"app.example.org\"]".to_string()),
                );
            }
        }
        if let Some(e) = map.get("acme_directory") {
            if let Some(s) = self.string(&e.node, "edge.acme_directory") {
                match s.as_str() {
                    "production" => edge.acme_directory = ACME_PRODUCTION.to_string(),
                    "staging" => edge.acme_directory = ACME_STAGING.to_string(),
                    url if url.starts_with("https://") || url.starts_with("http://") => {
                        edge.acme_directory = url.to_string()
                    }
                    other => self.err(
                        &e.node.loc,
                        "edge.acme_directory",
                        format!("`{other}` is not an ACME directory"),
                        Some("`production`, `staging` or an https:// URL".to_string()),
                    ),
                }
            }
        }
        if let Some(e) = map.get("acme_ca") {
            edge.acme_ca = self.path(&e.node, "edge.acme_ca");
        }
        if let Some(e) = map.get("acme_challenge") {
            if let Some(c) = self.enum_str(
                &e.node,
                "edge.acme_challenge",
                &[
                    ("http-01", AcmeChallenge::Http01),
                    ("tls-alpn-01", AcmeChallenge::TlsAlpn01),
                ],
            ) {
                edge.acme_challenge = c;
            }
        }
        if let Some(e) = map.get("upstream_ca") {
            edge.upstream_ca = self.path(&e.node, "edge.upstream_ca");
        }
        if let Some(e) = map.get("hsts") {
            edge.hsts = self.bool(&e.node, "edge.hsts").unwrap_or(false);
        }
        if let Some(e) = map.get("redirect_https") {
            edge.redirect_https = self.bool(&e.node, "edge.redirect_https").unwrap_or(true);
        }
        if let Some(e) = map.get("trusted_proxies") {
            for (s, loc) in self
                .strings(&e.node, "edge.trusted_proxies")
                .unwrap_or_default()
            {
                match s.parse::<IpAddr>() {
                    Ok(ip) => edge.trusted_proxies.push(ip),
                    Err(_) => self.err(
                        &loc,
                        "edge.trusted_proxies",
                        format!("`{s}` is not an IP address"),
                        None,
                    ),
                }
            }
        }
        if let Some(e) = map.get("limits") {
            if let Some(l) = self.limits(&e.node) {
                edge.limits = l;
            }
        }
        if let Some(e) = map.get("static") {
            if let Some(mounts) = self.any_table(&e.node, "edge.static") {
                for (prefix, m) in mounts {
                    let path = join("edge.static", prefix);
                    if !prefix.starts_with('/') {
                        self.err(
                            &m.key_loc,
                            &path,
                            format!("the mount prefix `{prefix}` must start with `/`"),
                            Some("\"/static\" = \"collected-static/\"".to_string()),
                        );
                        continue;
                    }
                    if let Some(dir) = self.path(&m.node, &path) {
                        edge.static_mounts.push(StaticMount {
                            prefix: prefix.clone(),
                            dir,
                        });
                    }
                }
            }
        }
        if let Some(e) = map.get("forward") {
            if let Kind::Array(items) = &e.node.kind {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("edge.forward[{i}]");
                    let Some(t) = self.table(item, &path, &["listen", "service"]) else {
                        continue;
                    };
                    let listen = match t.get("listen") {
                        Some(l) => self
                            .string(&l.node, &format!("{path}.listen"))
                            .and_then(|s| self.listen(&s, &l.node.loc, &format!("{path}.listen"))),
                        None => {
                            self.err(&item.loc, &path, "a forward needs `listen`", None);
                            None
                        }
                    };
                    let service = match t.get("service") {
                        Some(s) => self.string(&s.node, &format!("{path}.service")),
                        None => {
                            self.err(&item.loc, &path, "a forward needs `service`", None);
                            None
                        }
                    };
                    if let (Some(listen), Some(service)) = (listen, service) {
                        if edge
                            .listen
                            .iter()
                            .chain(edge.forward.iter().map(|f| &f.listen))
                            .any(|x| x.addr.port() == listen.addr.port())
                        {
                            self.err(
                                &item.loc,
                                &path,
                                format!("port {} is already an edge listener", listen.addr.port()),
                                None,
                            );
                        }
                        edge.forward.push(Forward { listen, service });
                    }
                }
            } else {
                self.type_err(
                    &e.node,
                    "edge.forward",
                    "an array of { listen, service } tables",
                );
            }
        }
        Some(edge)
    }

    fn service(&mut self, name: &str, node: &Node, path: &str) -> Option<Service> {
        let map = self.table(node, path, &SERVICE_KEYS)?;
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

        let mut env = IndexMap::new();
        if let Some(e) = map.get("env_file") {
            if let Some(file) = self.path(&e.node, &p("env_file")) {
                let full = self.root.join(&file);
                match std::fs::read_to_string(&full) {
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

        let kind = map
            .get("kind")
            .and_then(|e| {
                self.enum_str(
                    &e.node,
                    &p("kind"),
                    &[
                        ("service", ServiceKind::Service),
                        ("task", ServiceKind::Task),
                    ],
                )
            })
            .unwrap_or(ServiceKind::Service);

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

        let replicas = map
            .get("replicas")
            .and_then(|e| self.int(&e.node, &p("replicas"), 1, 64))
            .unwrap_or(1) as u32;
        let for_each_instance = map
            .get("for_each_instance")
            .and_then(|e| self.bool(&e.node, &p("for_each_instance")))
            .unwrap_or(false);

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
        let depends_on: IndexMap<String, Condition> =
            depends_on.into_iter().map(|(k, (c, _))| (k, c)).collect();

        let health = map
            .get("health")
            .and_then(|e| self.health(name, &e.node, &p("health")));

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

        // Recipes default to their server's clean and quick shutdown, with time to finish it.
        let (default_signal, default_grace) = match &source {
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
        let mut recipe_options = RecipeOptions::default();
        let recipe = match &source {
            Some(Source::Recipe(r)) => Some(*r),
            _ => None,
        };
        for k in ["secret", "databases", "persistence"] {
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
                _ => {
                    self.bool(&e.node, &p(k));
                }
            }
        }

        let source = source?;
        if !ok {
            return None;
        }
        let uses_port = match &source {
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
                        health.as_ref().map(|h| &h.check),
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
            if let Some(h) = &health {
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
            route,
            recipe: recipe_options,
            image,
        })
    }

    /// `databases = "per-instance"` or `["name", ...]`.
    fn databases(&mut self, node: &Node, path: &str) -> Option<Databases> {
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

    fn command(&mut self, node: &Node, path: &str, service: &str) -> Option<Vec<Template>> {
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

    fn health(&mut self, service: &str, node: &Node, path: &str) -> Option<Health> {
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
    fn probe_statuses(&mut self, node: &Node, path: &str, check: &Check) -> Option<Vec<u16>> {
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

    fn cert_files(&mut self, node: &Node, path: &str) -> Option<CertFiles> {
        let t = self.table(node, path, &["cert", "key"])?;
        let cert = t
            .get("cert")
            .and_then(|c| self.path(&c.node, &join(path, "cert")));
        let key = t
            .get("key")
            .and_then(|k| self.path(&k.node, &join(path, "key")));
        match (cert, key) {
            (Some(cert), Some(key)) => Some(CertFiles { cert, key }),
            _ => {
                self.err(
                    &node.loc,
                    path,
                    "certificate files need both `cert` and `key`",
                    Some(
                        "tls = { cert = \"certs/site.pem\", key = \"certs/site.key\" }".to_string(),
                    ),
                );
                None
            }
        }
    }

    fn limits(&mut self, node: &Node) -> Option<EdgeLimits> {
        let map = self.table(node, "edge.limits", &LIMIT_KEYS)?;
        let mut l = EdgeLimits::default();
        let durations = [
            ("client_header_timeout", &mut l.client_header_timeout),
            ("client_body_timeout", &mut l.client_body_timeout),
            ("upstream_connect_timeout", &mut l.upstream_connect_timeout),
            (
                "upstream_response_timeout",
                &mut l.upstream_response_timeout,
            ),
            ("upstream_down_time", &mut l.upstream_down_time),
        ];
        for (key, slot) in durations {
            if let Some(e) = map.get(key) {
                let path = join("edge.limits", key);
                if let Some(d) = self.duration(&e.node, &path) {
                    if d.is_zero() {
                        self.err(&e.node.loc, &path, "must be more than 0", None);
                    } else {
                        *slot = d;
                    }
                }
            }
        }
        let counts = [
            ("max_header_bytes", &mut l.max_header_bytes, 1024, 1 << 20),
            ("max_headers", &mut l.max_headers, 8, 1000),
            ("max_connections", &mut l.max_connections, 1, 1_000_000),
        ];
        for (key, slot, lo, hi) in counts {
            if let Some(e) = map.get(key) {
                let path = join("edge.limits", key);
                let n = match &e.node.kind {
                    Kind::Int(n) => u64::try_from(*n).ok(),
                    Kind::Str(s) if key == "max_header_bytes" => parse_size(s),
                    _ => None,
                };
                match n {
                    Some(n) if (lo..=hi).contains(&n) => *slot = n,
                    _ => self.err(
                        &e.node.loc,
                        &path,
                        format!("must be a whole number from {lo} to {hi}"),
                        None,
                    ),
                }
            }
        }
        Some(l)
    }

    fn route(&mut self, service: &str, node: &Node, path: &str) -> Option<Route> {
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
        let max_body = match map.get("max_body") {
            Some(e) => {
                let s = self.string(&e.node, &join(path, "max_body"))?;
                match parse_size(&s) {
                    Some(n) => n,
                    None => {
                        self.err(
                            &e.node.loc,
                            &join(path, "max_body"),
                            format!("`{s}` is not a size"),
                            Some("a number and a unit: 512KB, 10MB, 1GiB".to_string()),
                        );
                        return None;
                    }
                }
            }
            None => DEFAULT_MAX_BODY,
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
        Some(Route {
            host,
            prefix,
            strip_prefix,
            websocket,
            max_body,
            balance,
            hold_ms,
        })
    }

    fn deploy(&mut self, node: &Node) -> Option<Deploy> {
        let map = self.table(node, "deploy", &DEPLOY_KEYS)?;
        let s = |b: &mut Self, k: &str, d: &str| {
            map.get(k)
                .and_then(|e| b.string(&e.node, &join("deploy", k)))
                .unwrap_or_else(|| d.to_string())
        };
        let repository = s(self, "repository", ".");
        let git_ref = s(self, "ref", "HEAD");
        let list = |b: &mut Self, k: &str| -> Vec<String> {
            map.get(k)
                .map(|e| match &e.node.kind {
                    Kind::Str(_) => b.string(&e.node, &join("deploy", k)).into_iter().collect(),
                    _ => b
                        .strings(&e.node, &join("deploy", k))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect(),
                })
                .unwrap_or_default()
        };
        let build = list(self, "build");
        let before_switch = list(self, "before_switch");
        let keep = map
            .get("keep")
            .and_then(|e| self.int(&e.node, "deploy.keep", 1, 100))
            .unwrap_or(5) as u32;
        let health_timeout = map
            .get("health_timeout")
            .and_then(|e| self.duration(&e.node, "deploy.health_timeout"))
            .unwrap_or(Duration::from_secs(60));
        let drain = map
            .get("drain")
            .and_then(|e| self.duration(&e.node, "deploy.drain"))
            .unwrap_or(Duration::from_secs(10));
        if let Some(e) = map.get("before_switch") {
            self.before_switch_loc = Some(e.node.loc.clone());
        }
        Some(Deploy {
            repository,
            git_ref,
            build,
            keep,
            before_switch,
            health_timeout,
            drain,
        })
    }

    /// Checks that need the whole stack: dependencies, cycles, references, ports, routes.
    fn cross_check(
        &mut self,
        services: &IndexMap<String, Service>,
        instances: &IndexMap<String, Instance>,
        edge: &Edge,
        top: &Map,
    ) {
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        let list = |names: &[&str]| {
            if names.is_empty() {
                "there are no services".to_string()
            } else {
                format!("services: {}", names.join(", "))
            }
        };
        // Dependencies.
        let dep_locs = std::mem::take(&mut self.dep_locs);
        for (name, svc) in services {
            for (dep, cond) in &svc.depends_on {
                let loc = dep_locs
                    .get(name)
                    .and_then(|m| m.get(dep))
                    .cloned()
                    .unwrap_or_default();
                let path = format!("services.{name}.depends_on");
                let Some(target) = services.get(dep) else {
                    let help = match suggest(dep, names.iter().copied()) {
                        Some(n) => format!("did you mean `{n}`? {}", list(&names)),
                        None => list(&names),
                    };
                    self.err(&loc, &path, format!("`{dep}` is not a service"), Some(help));
                    continue;
                };
                match cond {
                    Condition::Completed if target.kind != ServiceKind::Task => self.err(
                        &loc,
                        &path,
                        format!("`{dep}` is a long-running service and never completes"),
                        Some(format!("use `healthy` or `started`, or make `{dep}` a task with kind = \"task\"")),
                    ),
                    Condition::Healthy if target.health.is_none() && !matches!(target.source, Source::Recipe(_)) => self.err(
                        &loc,
                        &path,
                        format!("`{dep}` has no health probe, so it can never be healthy"),
                        Some(format!("add `health` to services.{dep}, or wait for `started`")),
                    ),
                    Condition::Healthy | Condition::Started if target.kind == ServiceKind::Task && *cond == Condition::Healthy => {
                        self.err(&loc, &path, format!("`{dep}` is a task; wait for it with `completed`"), None)
                    }
                    _ => {}
                }
                if matches!(target.source, Source::Upstreams(_)) {
                    self.err(&loc, &path, format!("`{dep}` is remote; grove does not start it, so nothing can wait for it"), None);
                }
            }
        }
        // Cycles.
        if let Some(cycle) = find_cycle(services) {
            let first = &cycle[0];
            let loc = dep_locs
                .get(first)
                .and_then(|m| m.get(&cycle[1]))
                .cloned()
                .unwrap_or_default();
            self.err(
                &loc,
                &format!("services.{first}.depends_on"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
                Some("remove one of these dependencies".to_string()),
            );
        }
        // Instances.
        for (name, svc) in services {
            if svc.for_each_instance && instances.is_empty() {
                let loc = self.service_locs.get(name).cloned().unwrap_or_default();
                self.err(
                    &loc,
                    &format!("services.{name}.for_each_instance"),
                    "there are no instances to run this service for",
                    Some("add [instances.NAME] tables, or remove for_each_instance".to_string()),
                );
            }
        }
        // References in templates.
        let templates = std::mem::take(&mut self.templates);
        for (svc_name, path, t, loc) in &templates {
            let Some(svc) = services.get(svc_name) else {
                continue;
            };
            for part in &t.parts {
                match part {
                    Part::Instance | Part::InstanceVar(_) if !svc.for_each_instance => {
                        self.err(loc, path, "`${instance}` is only known in a service with for_each_instance = true", None);
                    }
                    Part::InstanceVar(k) if k != "prefix" => {
                        let missing: Vec<&str> = instances
                            .values()
                            .filter(|i| !i.vars.contains_key(k))
                            .map(|i| i.name.as_str())
                            .collect();
                        if !missing.is_empty() {
                            self.err(
                                loc,
                                path,
                                format!(
                                    "`${{instance.{k}}}` is not defined by instance {}",
                                    one_of(&missing)
                                ),
                                Some(format!("add `{k} = ...` to [instances.{}]", missing[0])),
                            );
                        }
                    }
                    Part::Service(other, attr) => match services.get(other) {
                        None => {
                            let help = match suggest(other, names.iter().copied()) {
                                Some(n) => format!("did you mean `{n}`? {}", list(&names)),
                                None => list(&names),
                            };
                            self.err(
                                loc,
                                path,
                                format!("`${{{other}.{}}}` names no service", attr.as_str()),
                                Some(help),
                            );
                        }
                        Some(target) => {
                            if target.port == PortSpec::None
                                && !matches!(target.source, Source::Upstreams(_))
                            {
                                self.err(
                                    loc,
                                    path,
                                    format!("`{other}` has no port to refer to"),
                                    Some(format!("give services.{other} a port")),
                                );
                            }
                            if target.for_each_instance && !svc.for_each_instance {
                                self.err(loc, path, format!("`{other}` runs once per instance, so `${{{other}.{}}}` is ambiguous here", attr.as_str()), Some("refer to it from a service with for_each_instance = true".to_string()));
                            }
                        }
                    },
                    Part::Port if svc.port == PortSpec::None && path.contains(".health") => {}
                    _ => {}
                }
            }
            if (path.ends_with("route.host") || path.ends_with("route.prefix"))
                && t.parts
                    .iter()
                    .any(|p| matches!(p, Part::Port | Part::Host | Part::Service(..)))
            {
                self.err(
                    loc,
                    path,
                    "a route may refer to ${instance} and ${instance.KEY} only",
                    None,
                );
            }
        }
        // Fixed ports.
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        for l in edge
            .listen
            .iter()
            .chain(edge.forward.iter().map(|f| &f.listen))
        {
            taken.insert(l.addr.port(), format!("the edge listener {l}"));
        }
        for (name, svc) in services {
            let PortSpec::Fixed(port) = svc.port else {
                continue;
            };
            let loc = self.port_loc(top, name);
            let path = format!("services.{name}.port");
            let units = svc.replicas as usize
                * if svc.for_each_instance {
                    instances.len().max(1)
                } else {
                    1
                };
            if units > 1 {
                self.err(
                    &loc,
                    &path,
                    format!("fixed port {port} would be shared by {units} units"),
                    Some("use port = \"auto\" for replicated or per-instance services".to_string()),
                );
            }
            if let Some(owner) = taken.get(&port) {
                self.err(
                    &loc,
                    &path,
                    format!("port {port} is already used by {owner}"),
                    Some("pick another port, or port = \"auto\"".to_string()),
                );
            } else {
                taken.insert(port, format!("services.{name}"));
            }
        }
        // Forwards.
        for (i, f) in edge.forward.iter().enumerate() {
            match services.get(&f.service) {
                None => {
                    let loc = self.forward_loc(top, i);
                    let help = match suggest(&f.service, names.iter().copied()) {
                        Some(n) => format!("did you mean `{n}`? {}", list(&names)),
                        None => list(&names),
                    };
                    self.err(
                        &loc,
                        &format!("edge.forward[{i}].service"),
                        format!("`{}` is not a service", f.service),
                        Some(help),
                    );
                }
                Some(s)
                    if s.port == PortSpec::None && !matches!(s.source, Source::Upstreams(_)) =>
                {
                    let loc = self.forward_loc(top, i);
                    self.err(
                        &loc,
                        &format!("edge.forward[{i}].service"),
                        format!("`{}` has no port to forward to", f.service),
                        None,
                    );
                }
                _ => {}
            }
        }
        // Routes: two services may not claim the same host and prefix.
        let mut claimed: BTreeMap<(String, String), String> = BTreeMap::new();
        for (name, svc) in services {
            let Some(route) = &svc.route else { continue };
            let mut keys = BTreeSet::new();
            let render =
                |t: &Option<Template>, inst: Option<&Instance>, default: String| -> String {
                    match t {
                        None => default,
                        Some(t) => t
                            .render(|p| -> Result<String, ()> {
                                Ok(match (p, inst) {
                                    (Part::Instance, Some(i)) => i.name.clone(),
                                    (Part::InstanceVar(k), Some(i)) if k == "prefix" => {
                                        i.prefix.clone()
                                    }
                                    (Part::InstanceVar(k), Some(i)) => {
                                        i.vars.get(k).cloned().unwrap_or_default()
                                    }
                                    _ => String::new(),
                                })
                            })
                            .unwrap_or_default(),
                    }
                };
            if svc.for_each_instance {
                for inst in instances.values() {
                    keys.insert((
                        render(&route.host, Some(inst), String::new()),
                        render(&route.prefix, Some(inst), inst.prefix.clone()),
                    ));
                }
            } else {
                keys.insert((
                    render(&route.host, None, String::new()),
                    render(&route.prefix, None, "/".to_string()),
                ));
            }
            for (host, prefix) in keys {
                let key = (host, normalize_prefix(&prefix));
                if let Some(other) = claimed.get(&key) {
                    let loc = self.service_locs.get(name).cloned().unwrap_or_default();
                    let host = if key.0.is_empty() {
                        "any host".to_string()
                    } else {
                        key.0.clone()
                    };
                    self.err(
                        &loc,
                        &format!("services.{name}.route"),
                        format!("the route {host} {} is already taken by `{other}`", key.1),
                        Some("give one of them another prefix or host".to_string()),
                    );
                } else {
                    claimed.insert(key, name.clone());
                }
            }
        }
        for m in &edge.static_mounts {
            if claimed.keys().any(|(h, p)| h.is_empty() && p == &m.prefix) {
                let loc = top
                    .get("edge")
                    .map(|e| e.node.loc.clone())
                    .unwrap_or_default();
                self.err(
                    &loc,
                    &join("edge.static", &m.prefix),
                    format!("the static mount {} is also a service route", m.prefix),
                    None,
                );
            }
        }
        // Deploy tasks must be tasks.
        if let Some(loc) = self.before_switch_loc.take() {
            let deploy_tasks: Vec<String> = match top.get("deploy").map(|d| &d.node.kind) {
                Some(Kind::Table(m)) => match m.get("before_switch").map(|e| &e.node.kind) {
                    Some(Kind::Array(a)) => a
                        .iter()
                        .filter_map(|n| {
                            if let Kind::Str(s) = &n.kind {
                                Some(s.clone())
                            } else {
                                None
                            }
                        })
                        .collect(),
                    Some(Kind::Str(s)) => vec![s.clone()],
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            for t in deploy_tasks {
                match services.get(&t) {
                    Some(s) if s.kind == ServiceKind::Task => {}
                    Some(_) => self.err(
                        &loc,
                        "deploy.before_switch",
                        format!("`{t}` is not a task"),
                        Some(format!("set kind = \"task\" on services.{t}")),
                    ),
                    None => self.err(
                        &loc,
                        "deploy.before_switch",
                        format!("`{t}` is not a service"),
                        Some(list(&names)),
                    ),
                }
            }
        }
    }

    fn port_loc(&self, top: &Map, service: &str) -> Loc {
        if let Some(Kind::Table(s)) = top.get("services").map(|e| &e.node.kind) {
            if let Some(Kind::Table(svc)) = s.get(service).map(|e| &e.node.kind) {
                if let Some(p) = svc.get("port") {
                    return p.node.loc.clone();
                }
            }
        }
        self.service_locs.get(service).cloned().unwrap_or_default()
    }

    fn forward_loc(&self, top: &Map, i: usize) -> Loc {
        if let Some(Kind::Table(e)) = top.get("edge").map(|e| &e.node.kind) {
            if let Some(Kind::Array(items)) = e.get("forward").map(|e| &e.node.kind) {
                if let Some(item) = items.get(i) {
                    if let Kind::Table(t) = &item.kind {
                        if let Some(s) = t.get("service") {
                            return s.node.loc.clone();
                        }
                    }
                    return item.loc.clone();
                }
            }
        }
        Loc::default()
    }
}

/// Whether a variable name marks its value as secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["SECRET", "PASSWORD", "TOKEN", "KEY"]
        .iter()
        .any(|w| upper.contains(w))
}

fn default_edge() -> Edge {
    Edge {
        listen: Vec::new(),
        hosts: Vec::new(),
        tls: Tls::Off,
        acme_email: None,
        acme_directory: ACME_PRODUCTION.to_string(),
        acme_ca: None,
        acme_challenge: AcmeChallenge::Http01,
        upstream_ca: None,
        hsts: false,
        redirect_https: true,
        trusted_proxies: Vec::new(),
        static_mounts: Vec::new(),
        forward: Vec::new(),
        limits: EdgeLimits::default(),
    }
}

fn parse_upstream(s: &str) -> Option<Upstream> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        (Scheme::Http, s)
    };
    let rest = rest.trim_end_matches('/');
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Some(Upstream {
            scheme,
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    let (host, port) = rest.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (ok && port > 0).then(|| Upstream {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// A dependency cycle as service names, first repeated at the end.
fn find_cycle(services: &IndexMap<String, Service>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = services.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        services: &'a IndexMap<String, Service>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(n, Mark::Active);
        stack.push(n);
        if let Some(s) = services.get(n) {
            for dep in s.depends_on.keys() {
                match marks.get(dep.as_str()).copied() {
                    Some(Mark::Active) => {
                        let start = stack.iter().position(|x| *x == dep.as_str()).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[start..].iter().map(|s| s.to_string()).collect();
                        cycle.push(dep.clone());
                        return Some(cycle);
                    }
                    Some(Mark::New) => {
                        if let Some(c) = visit(dep.as_str(), services, marks, stack) {
                            return Some(c);
                        }
                    }
                    _ => {}
                }
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    for name in services.keys() {
        if marks.get(name.as_str()).copied() == Some(Mark::New) {
            let mut stack = Vec::new();
            if let Some(c) = visit(name.as_str(), services, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Tls without its file paths, for the enum parser.
#[derive(Clone, Copy)]
enum TlsTag {
    Acme,
    SelfSigned,
    Off,
}

impl From<&Tls> for TlsTag {
    fn from(t: &Tls) -> Self {
        match t {
            Tls::Acme => TlsTag::Acme,
            Tls::SelfSigned => TlsTag::SelfSigned,
            _ => TlsTag::Off,
        }
    }
}

impl From<TlsTag> for Tls {
    fn from(t: TlsTag) -> Self {
        match t {
            TlsTag::Acme => Tls::Acme,
            TlsTag::SelfSigned => Tls::SelfSigned,
            TlsTag::Off => Tls::Off,
        }
    }
}
