//! The merged tree -> a typed [`Stack`], collecting every error instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Who owns a template written at `[edge]` (forward authentication's URL) in the reference
/// checks: no service, so it may refer to services only.
const EDGE: &str = "[edge]";

mod checks;
mod edge;
mod keys;
mod parts;
mod rules;
mod service;
mod split;

use keys::*;

/// Converts and validates; `strict_vars` off skips `${VAR:?}` errors (other environments).
/// The services' `env_file`s as the loader read them: by the path as written, the text or
/// why it could not be read.
pub(crate) type EnvFiles = BTreeMap<PathBuf, Result<String, String>>;

/// The users and groups the stack file names, as the loader found them on this machine
/// (`true`: it exists).
pub(crate) type Accounts = BTreeMap<String, bool>;

/// No accounts (a builder the loader did not give any).
static NO_ACCOUNTS: Accounts = BTreeMap::new();

/// No env files (a builder the loader did not give any).
static NO_ENV_FILES: EnvFiles = BTreeMap::new();

/// The routes' htpasswd files as the loader read them: by the path as written, the source
/// they were registered as and their text, or why they could not be read.
pub(crate) type UsersFiles = BTreeMap<PathBuf, Result<(crate::source::FileId, String), String>>;

static NO_USERS_FILES: UsersFiles = BTreeMap::new();

/// `[edge] error_pages` files as the loader read them: by the path as written, the HTML or
/// why it could not be read.
pub(crate) type PageFiles = BTreeMap<PathBuf, Result<String, String>>;

static NO_PAGE_FILES: PageFiles = BTreeMap::new();

pub(crate) struct Builder<'a> {
    pub sources: &'a Sources,
    /// The env files, read by the loader: validation does no I/O.
    pub env_files: &'a EnvFiles,
    /// `user:NAME` and `group:NAME` looked up by the loader.
    pub accounts: &'a Accounts,
    /// The routes' htpasswd files, read by the loader.
    pub users_files: &'a UsersFiles,
    /// The edge's error pages, read by the loader.
    pub page_files: &'a PageFiles,
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
    /// Where a route named another service (`targets`, `mirror`): service -> (named, key
    /// path, location).
    split_locs: HashMap<String, Vec<(String, String, Loc)>>,
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
    /// The route keys a service wrote itself (`max_body`, `buffer_body`, `auth`), which
    /// `[edge]`'s defaults then leave alone.
    route_given: HashSet<(String, &'static str)>,
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
            env_files: &NO_ENV_FILES,
            users_files: &NO_USERS_FILES,
            page_files: &NO_PAGE_FILES,
            accounts: &NO_ACCOUNTS,
            vars,
            root,
            strict_vars,
            errors: Vec::new(),
            warnings: Vec::new(),
            service_locs: HashMap::new(),
            templates: Vec::new(),
            dep_locs: HashMap::new(),
            split_locs: HashMap::new(),
            before_switch_loc: None,
            lenient_locs: Vec::new(),
            used_secret: false,
            secret_values: Vec::new(),
            route_given: HashSet::new(),
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
            None => Some(edge::default_edge()),
        };
        let deploy = top.get("deploy").and_then(|e| self.deploy(&e.node));
        let admin = match top.get("admin") {
            Some(e) => self.admin(&e.node)?,
            None => Admin::default(),
        };
        let edge = edge?;
        edge::route_defaults(&edge, &mut services, &self.route_given);
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
            overrides: Vec::new(),
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
                    (a >= 1024 && b >= a && b - a + 1 >= 16).then_some((a, b))
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
}

/// Whether a variable name marks its value as secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["SECRET", "PASSWORD", "TOKEN", "KEY"]
        .iter()
        .any(|w| upper.contains(w))
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
