//! Stack -> Plan: expansion, ports, references, dependencies, levels and routes.

mod units;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use grove_config::{
    normalize_prefix, valid_database, Check, Databases, Instance, Part, PortSpec, Recipe, Service,
    ServiceAttr, Source, Stack, StaticMount, Template,
};
use indexmap::IndexMap;

use crate::{
    AdminSettings, Compress, Credentials, Database, Dependency, Edge, EnvVar, Forward, Plan, Probe,
    ProbeCheck, RecipeSpec, RemoteHealth, Restart, Route, Run, Target, Unit,
};

/// The administrator account of every recipe server.
pub const ADMIN_USER: &str = "grove";

/// A stack that validates but cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Too many automatic ports for the range.
    #[error("the port range {0}-{1} has no free port left for unit `{2}`; widen [stack] ports")]
    PortsExhausted(u16, u16, String),
    /// A generated password the caller did not supply (see [`credentials_needed`]).
    #[error("no password was supplied for `{0}`")]
    MissingCredential(String),
    /// A reference that cannot be resolved for a unit.
    #[error("unit `{unit}`: {message}")]
    Reference {
        /// The unit.
        unit: String,
        /// Why.
        message: String,
    },
}

struct Slot<'a> {
    name: String,
    service: &'a Service,
    instance: Option<&'a Instance>,
    replica: u32,
}

fn unit_name(service: &str, instance: Option<&str>, replica: u32, replicas: u32) -> String {
    let mut n = service.to_string();
    if let Some(i) = instance {
        n.push('@');
        n.push_str(i);
    }
    if replicas > 1 {
        n.push('#');
        n.push_str(&replica.to_string());
    }
    n
}

/// FNV-1a: a stable hash, so a unit keeps its automatic port across runs and machines.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The address a client uses to reach something bound to `ip` (loopback for an unspecified
/// address).
pub fn client_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) if v.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(v) if v.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
        other => other.to_string(),
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What a Plan is built from besides the Stack: state the running stack keeps.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Ports to keep: a unit named here keeps that automatic port when it is still in range
    /// and free (the running stack's ports, remembered across restarts of grove).
    pub ports: IndexMap<String, u16>,
    /// Generated passwords by the names [`credentials_needed`] gives.
    pub credentials: BTreeMap<String, String>,
    /// Ports no automatic assignment may take: those of a generation still serving while
    /// the next one starts beside it (a deploy).
    pub avoid: BTreeSet<u16>,
    /// The release the application code runs from, if one is deployed.
    pub release: Option<ReleaseInput>,
}

/// A deployed release: command units with a relative working folder, and static mounts with
/// a relative folder, are taken from `dir` instead of the stack's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInput {
    /// Its id, given to the units as `GROVE_RELEASE`.
    pub id: String,
    /// Where the stack's folder is inside the release's checkout (absolute).
    pub dir: PathBuf,
}

/// The password placeholder of a Plan built without its credentials (`grove check`): such a
/// Plan is for showing, and shows passwords masked anyway.
const UNSET_PASSWORD: &str = "not-generated-yet";

/// Builds the Plan for `stack`. With `previous`, units that still exist keep their automatic
/// ports and recipes keep their passwords; passwords nobody has yet are placeholders, so use
/// [`build_with`] for a Plan that will run.
pub fn build(stack: &Stack, previous: Option<&Plan>) -> Result<Plan, PlanError> {
    let inputs = Inputs {
        ports: previous.map(Plan::ports).unwrap_or_default(),
        credentials: previous.map(Plan::credentials).unwrap_or_default(),
        ..Inputs::default()
    };
    build_with(stack, &inputs.with_placeholders(stack))
}

impl Inputs {
    /// Gives every password nobody has yet a placeholder, distinct per name so a reader of
    /// the Plan can still tell them apart: for a Plan that is shown or exported, never run.
    pub fn with_placeholders(mut self, stack: &Stack) -> Inputs {
        for name in credentials_needed(stack) {
            let placeholder = format!("{UNSET_PASSWORD}-{name}");
            self.credentials.entry(name).or_insert(placeholder);
        }
        self
    }
}

/// The names of the passwords a Plan of `stack` needs: one per recipe unit with
/// authentication (`db`, `db@turkey`), and one per instance role (`db.turkey`) of a recipe
/// with `databases = "per-instance"`.
pub fn credentials_needed(stack: &Stack) -> Vec<String> {
    let mut out = Vec::new();
    for svc in stack.services.values() {
        let Source::Recipe(r) = svc.source else {
            continue;
        };
        if !r.has_password() {
            continue;
        }
        for unit in recipe_units(stack, svc) {
            if svc.recipe.databases == Databases::PerInstance {
                for i in stack.instances.keys() {
                    out.push(role_key(&unit, i));
                }
            }
            out.push(unit);
        }
    }
    out.sort();
    out
}

fn recipe_units(stack: &Stack, svc: &Service) -> Vec<String> {
    let instances: Vec<Option<&str>> = if svc.for_each_instance {
        stack.instances.keys().map(|k| Some(k.as_str())).collect()
    } else {
        vec![None]
    };
    instances
        .into_iter()
        .flat_map(|i| (1..=svc.replicas).map(move |r| unit_name(&svc.name, i, r, svc.replicas)))
        .collect()
}

fn role_key(unit: &str, instance: &str) -> String {
    format!("{unit}.{instance}")
}

/// Builds the Plan for `stack` from `inputs`.
pub fn build_with(stack: &Stack, inputs: &Inputs) -> Result<Plan, PlanError> {
    let credentials = &inputs.credentials;
    let asked: RefCell<Vec<Asked>> = RefCell::new(Vec::new());
    let slots = units::slots(stack);
    let ports = units::assign_ports(stack, inputs, &slots)?;
    let mut units: IndexMap<String, Unit> = IndexMap::new();
    for s in &slots {
        if let Some(unit) = units::unit_of(stack, inputs, s, &ports, &asked)? {
            units.insert(s.name.clone(), unit);
        }
    }
    units::databases_and_secrets(&mut units, asked.take());
    units::link_dependencies(stack, &mut units);
    let levels = units::assign_levels(&mut units);
    let routes = routes(stack, inputs, &ports, &asked, &units)?;
    let forward = forwards(stack, &units);
    let remote_health = stack.services.values().filter_map(remote_health).collect();
    // `[edge]`'s own templates (forward authentication of the static mounts) name services
    // only.
    let edge_ctx = Ctx::outside_units(stack, "[edge]", &ports, credentials, &asked);
    Ok(Plan {
        remote_health,
        interpolated_secrets: stack.secret_values.clone(),
        stack: stack.name.clone(),
        environment: stack.environment.clone(),
        release: inputs.release.as_ref().map(|r| r.id.clone()),
        root: stack.root.clone(),
        state_dir: stack.state_dir.clone(),
        logs: stack.logs,
        units,
        levels,
        routes,
        edge: Edge {
            listen: stack.edge.listen.clone(),
            hosts: stack.edge.hosts.clone(),
            tls: stack.edge.tls.clone(),
            acme_email: stack.edge.acme_email.clone(),
            acme_directory: stack.edge.acme_directory.clone(),
            acme_ca: stack.edge.acme_ca.clone(),
            upstream_ca: stack.edge.upstream_ca.clone(),
            acme_challenge: stack.edge.acme_challenge,
            hsts: stack.edge.hsts,
            redirect_https: stack.edge.redirect_https,
            trusted_proxies: stack.edge.trusted_proxies.clone(),
            static_mounts: stack
                .edge
                .static_mounts
                .iter()
                .map(|m| match &inputs.release {
                    Some(r) if m.dir.is_relative() => StaticMount {
                        prefix: m.prefix.clone(),
                        dir: r.dir.join(&m.dir),
                    },
                    _ => m.clone(),
                })
                .collect(),
            forward,
            limits: stack.edge.limits.clone(),
            access_log: stack.edge.access_log.clone(),
            redirects: stack.edge.redirects.clone(),
            canonical_host: stack.edge.canonical_host.clone(),
            error_pages: stack.edge.error_pages.clone(),
            compress: stack
                .edge
                .route_defaults
                .compress
                .clone()
                .filter(Compress::is_on),
            auth: stack.edge.route_defaults.auth.clone(),
            forward_auth: match &stack.edge.route_defaults.forward_auth {
                Some(f) => Some(crate::ForwardAuthTarget {
                    url: edge_ctx.render(&f.url)?,
                    copy_headers: f.copy_headers.clone(),
                }),
                None => None,
            },
        },
        admin: AdminSettings {
            listen: stack.admin.listen,
            sample_interval_ms: ms(stack.admin.sample_interval),
            webhook: stack.admin.webhook.clone(),
            amqp: match &stack.admin.amqp {
                Some(t) => Some(
                    Ctx::outside_units(stack, "[admin]", &ports, credentials, &asked).render(t)?,
                ),
                None => None,
            },
            amqp_exchange: stack.admin.amqp_exchange.clone(),
            notify: stack.admin.notify.clone(),
        },
    })
}

/// Phase 6: the route table, sorted by host then prefix.
fn routes(
    stack: &Stack,
    inputs: &Inputs,
    ports: &BTreeMap<String, u16>,
    asked: &RefCell<Vec<Asked>>,
    units: &IndexMap<String, Unit>,
) -> Result<Vec<Route>, PlanError> {
    let credentials = &inputs.credentials;
    let mut routes = Vec::new();
    for svc in stack.services.values() {
        let Some(route) = &svc.route else { continue };
        let instances: Vec<Option<&Instance>> = if svc.for_each_instance {
            stack.instances.values().map(Some).collect()
        } else {
            vec![None]
        };
        for inst in instances {
            let ctx = Ctx {
                stack,
                unit: &svc.name,
                port: None,
                bind: svc.bind,
                instance: inst,
                ports,
                credentials,
                asked,
            };
            let host = match &route.host {
                Some(t) => Some(ctx.render(t)?).filter(|h| !h.is_empty()),
                None => None,
            };
            let prefix = match (&route.prefix, inst) {
                (Some(t), _) => ctx.render(t)?,
                (None, Some(i)) => i.prefix.clone(),
                (None, None) => "/".to_string(),
            };
            routes.push(Route {
                host: host.map(|h| h.to_ascii_lowercase()),
                prefix: normalize_prefix(&prefix),
                strip_prefix: route.strip_prefix,
                websocket: route.websocket,
                max_body: route.max_body,
                buffer_body: route.buffer_body,
                balance: route.balance,
                hold_ms: route.hold_ms,
                response_headers: route.response_headers.clone(),
                request_headers: route.request_headers.clone(),
                auth: route.auth.clone(),
                rate_limit: route.rate_limit.clone(),
                compress: route.compress.clone().filter(Compress::is_on),
                splits: route
                    .targets
                    .iter()
                    .filter_map(|t| {
                        Some(crate::Split {
                            service: t.service.clone(),
                            weight: t.weight,
                            target: target(stack.services.get(&t.service)?, None, units),
                        })
                    })
                    .collect(),
                sticky: route.sticky.clone(),
                mirror: route.mirror.as_ref().and_then(|m| {
                    Some(crate::MirrorTarget {
                        service: m.service.clone(),
                        per_mille: m.per_mille,
                        target: target(stack.services.get(&m.service)?, None, units),
                    })
                }),
                forward_auth: match &route.forward_auth {
                    Some(f) => Some(crate::ForwardAuthTarget {
                        url: ctx.render(&f.url)?,
                        copy_headers: f.copy_headers.clone(),
                    }),
                    None => None,
                },
                service: svc.name.clone(),
                instance: inst.map(|i| i.name.clone()),
                target: target(svc, inst, units),
            });
        }
    }
    routes.sort_by(|a, b| (&a.host, &a.prefix).cmp(&(&b.host, &b.prefix)));
    Ok(routes)
}

/// The edge's whole-port forwards, each to its service's units.
fn forwards(stack: &Stack, units: &IndexMap<String, Unit>) -> Vec<Forward> {
    stack
        .edge
        .forward
        .iter()
        .filter_map(|f| {
            let svc = stack.services.get(&f.service)?;
            Some(Forward {
                listen: f.listen,
                service: f.service.clone(),
                target: target(svc, None, units),
            })
        })
        .collect()
}

/// The probes of a remote `upstreams` service with `health`: the same check against each
/// target (an `http` path on its address, `tcp` to it, or a given address or command).
fn remote_health(svc: &Service) -> Option<RemoteHealth> {
    let Source::Upstreams(ups) = &svc.source else {
        return None;
    };
    let h = svc.health.as_ref()?;
    let targets = ups
        .iter()
        .filter_map(|u| {
            let addr = host_port(&u.host, u.port);
            let name = format!("{}:{}", u.host, u.port);
            let check = match &h.check {
                Check::Http(path) => ProbeCheck::Http {
                    addr,
                    path: path.as_literal()?,
                    status: h.status.clone(),
                },
                Check::Tcp(None) => ProbeCheck::Tcp { addr },
                Check::Tcp(Some(t)) => ProbeCheck::Tcp {
                    addr: t.as_literal()?,
                },
                Check::Exec(argv) => ProbeCheck::Exec {
                    argv: argv.iter().map(|t| t.as_literal()).collect::<Option<_>>()?,
                },
            };
            Some((name, check))
        })
        .collect();
    Some(RemoteHealth {
        service: svc.name.clone(),
        targets,
        interval_ms: ms(h.interval),
        timeout_ms: ms(h.timeout),
        retries: h.retries,
    })
}

fn target(svc: &Service, inst: Option<&Instance>, units: &IndexMap<String, Unit>) -> Target {
    match &svc.source {
        Source::Upstreams(ups) => Target::Remote(ups.clone()),
        _ => Target::Units(
            units
                .values()
                .filter(|u| {
                    u.service == svc.name
                        && (inst.is_none()
                            || u.instance.as_deref() == inst.map(|i| i.name.as_str()))
                })
                .map(|u| u.name.clone())
                .collect(),
        ),
    }
}

/// A recipe unit's spec before its dependents' requests are added: data folder, accounts,
/// and the databases the stack file names.
fn recipe_spec(
    stack: &Stack,
    svc: &Service,
    recipe: Recipe,
    unit: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<RecipeSpec, PlanError> {
    let password = |key: &str| -> Result<String, PlanError> {
        if !recipe.has_password() {
            return Ok(String::new());
        }
        credentials
            .get(key)
            .cloned()
            .ok_or_else(|| PlanError::MissingCredential(key.to_string()))
    };
    let mut roles = Vec::new();
    let mut databases = Vec::new();
    match &svc.recipe.databases {
        Databases::Asked => {}
        Databases::Named(names) => {
            for n in names {
                databases.push(Database {
                    name: n.clone(),
                    owner: ADMIN_USER.to_string(),
                    private: false,
                });
            }
        }
        Databases::PerInstance => {
            for i in stack.instances.keys() {
                if recipe.has_password() {
                    roles.push(Credentials {
                        user: i.clone(),
                        password: password(&role_key(unit, i))?,
                    });
                }
                databases.push(Database {
                    name: i.clone(),
                    owner: if recipe.has_password() {
                        i.clone()
                    } else {
                        ADMIN_USER.to_string()
                    },
                    private: true,
                });
            }
        }
    }
    // PostgreSQL connects to the database named after the user when a URL names none.
    if recipe == Recipe::Postgres {
        databases.push(Database {
            name: ADMIN_USER.to_string(),
            owner: ADMIN_USER.to_string(),
            private: false,
        });
    }
    Ok(RecipeSpec {
        data_dir: stack.state_dir.join("data").join(unit),
        admin: Credentials {
            user: if recipe.has_password() {
                ADMIN_USER.to_string()
            } else {
                String::new()
            },
            password: password(unit)?,
        },
        roles,
        databases,
        persistence: svc.recipe.persistence,
        allow: svc.recipe.allow.clone(),
        tls: svc.recipe.tls,
        tls_names: svc.recipe.tls_names.clone(),
    })
}

/// The query a TLS PostgreSQL URL carries: verify the server against the stack's CA.
fn pg_tls_query(stack: &Stack) -> String {
    format!(
        "sslmode=verify-full&sslrootcert={}",
        ca_file(stack).display()
    )
}

/// The stack's certificate authority (`.grove/certs/ca.pem`).
fn ca_file(stack: &Stack) -> std::path::PathBuf {
    stack
        .root
        .join(&stack.state_dir)
        .join("certs")
        .join("ca.pem")
}

/// A database a dependent asked for by appending `/NAME` to a recipe's URL.
struct Asked {
    server: String,
    database: String,
    owner: String,
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a template's references mean for one unit.
struct Ctx<'a> {
    stack: &'a Stack,
    unit: &'a str,
    port: Option<u16>,
    bind: IpAddr,
    instance: Option<&'a Instance>,
    ports: &'a BTreeMap<String, u16>,
    credentials: &'a BTreeMap<String, String>,
    asked: &'a RefCell<Vec<Asked>>,
}

impl<'a> Ctx<'a> {
    /// The context of a template written outside any service (`[edge]`, `[admin]`, named
    /// by `unit` in errors): it may refer to services only.
    fn outside_units(
        stack: &'a Stack,
        unit: &'a str,
        ports: &'a BTreeMap<String, u16>,
        credentials: &'a BTreeMap<String, String>,
        asked: &'a RefCell<Vec<Asked>>,
    ) -> Ctx<'a> {
        Ctx {
            stack,
            unit,
            port: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            instance: None,
            ports,
            credentials,
            asked,
        }
    }

    fn err(&self, message: String) -> PlanError {
        PlanError::Reference {
            unit: self.unit.to_string(),
            message,
        }
    }

    /// Renders a template; a recipe URL followed by `/NAME` asks that recipe for database NAME.
    fn render(&self, t: &Template) -> Result<String, PlanError> {
        let out = self.render_asking(t)?;
        Ok(self.query_after_path(t, out))
    }

    /// A TLS PostgreSQL URL ends in `?sslmode=...`; one written `${db.url}/app` gets its
    /// query after the database name, where libpq reads it.
    fn query_after_path(&self, t: &Template, out: String) -> String {
        if !t
            .parts
            .iter()
            .any(|p| matches!(p, Part::Service(_, ServiceAttr::Url)))
        {
            return out;
        }
        let query = format!("?{}", pg_tls_query(self.stack));
        let mut out = out;
        let mut from = 0;
        while let Some(at) = out[from..].find(&query).map(|i| i + from) {
            let after = at + query.len();
            if !out[after..].starts_with('/') {
                from = after;
                continue;
            }
            let path_len = out[after..]
                .find(|c: char| c.is_whitespace() || matches!(c, '?' | '#' | '"' | '\''))
                .unwrap_or(out.len() - after);
            let path = out[after..after + path_len].to_string();
            let joiner = if out[after + path_len..].starts_with('?') {
                "&"
            } else {
                ""
            };
            let rest = out[after + path_len..].trim_start_matches('?').to_string();
            let q = if joiner.is_empty() {
                query.clone()
            } else {
                format!("{query}&")
            };
            out = format!("{}{path}{q}{rest}", &out[..at]);
            from = at + path.len() + q.len();
        }
        out
    }

    fn render_asking(&self, t: &Template) -> Result<String, PlanError> {
        for (i, part) in t.parts.iter().enumerate() {
            let Part::Service(name, ServiceAttr::Url) = part else {
                continue;
            };
            let Some(svc) = self.stack.services.get(name) else {
                continue;
            };
            let Source::Recipe(r) = svc.source else {
                continue;
            };
            if !r.has_databases() {
                continue;
            }
            let rest = Template {
                parts: t.parts[i + 1..].to_vec(),
            };
            let tail = rest.render(|p| self.part(p))?;
            let Some(path) = tail.strip_prefix('/') else {
                continue;
            };
            let db: String = path
                .chars()
                .take_while(|c| !matches!(c, '/' | '?' | '#') && !c.is_whitespace())
                .collect();
            if db.is_empty() {
                continue;
            }
            let server = self.server_unit(name, svc)?;
            let per_instance = svc.recipe.databases == Databases::PerInstance;
            if per_instance && self.instance.is_some() {
                return Err(self.err(format!(
                    "`${{{name}.url}}` already names this instance's database (`{name}` has databases = \"per-instance\"); drop the `/{db}`"
                )));
            }
            if !valid_database(&db) {
                return Err(self.err(format!(
                    "`/{db}` after `${{{name}.url}}` is not a database name grove can create (a letter, then letters, digits and `_`)"
                )));
            }
            self.asked.borrow_mut().push(Asked {
                server,
                database: db,
                owner: ADMIN_USER.to_string(),
            });
        }
        t.render(|p| self.part(p))
    }

    /// The unit of service `name` this unit talks to (its own instance's, for per-instance
    /// services).
    fn server_unit(&self, name: &str, svc: &Service) -> Result<String, PlanError> {
        let inst = if svc.for_each_instance {
            Some(
                self.instance
                    .ok_or_else(|| {
                        self.err(format!(
                            "`{name}` runs per instance; refer to it from a per-instance service"
                        ))
                    })?
                    .name
                    .as_str(),
            )
        } else {
            None
        };
        Ok(unit_name(name, inst, 1, svc.replicas))
    }

    fn part(&self, p: &Part) -> Result<String, PlanError> {
        match p {
            Part::Lit(s) => Ok(s.clone()),
            Part::Port => self
                .port
                .map(|p| p.to_string())
                .ok_or_else(|| self.err("${PORT} is used but the unit has no port".into())),
            Part::Host => Ok(self.bind.to_string()),
            Part::Instance => self
                .instance
                .map(|i| i.name.clone())
                .ok_or_else(|| self.err("${instance} outside a per-instance service".into())),
            Part::InstanceVar(k) => {
                let i = self.instance.ok_or_else(|| {
                    self.err(format!("${{instance.{k}}} outside a per-instance service"))
                })?;
                if k == "prefix" {
                    return Ok(i.prefix.clone());
                }
                i.vars
                    .get(k)
                    .cloned()
                    .ok_or_else(|| self.err(format!("instance `{}` has no `{k}`", i.name)))
            }
            Part::Service(name, attr) => self.service_ref(name, *attr),
        }
    }

    fn service_ref(&self, name: &str, attr: ServiceAttr) -> Result<String, PlanError> {
        let svc = self
            .stack
            .services
            .get(name)
            .ok_or_else(|| self.err(format!("`{name}` is not a service")))?;
        if let Source::Upstreams(ups) = &svc.source {
            let first = ups
                .first()
                .ok_or_else(|| self.err(format!("`{name}` has no upstreams")))?;
            return Ok(match attr {
                ServiceAttr::Url => first.to_string(),
                ServiceAttr::Host => first.host.clone(),
                ServiceAttr::Port => first.port.to_string(),
            });
        }
        let target = self.server_unit(name, svc)?;
        let port = self
            .ports
            .get(&target)
            .copied()
            .ok_or_else(|| self.err(format!("`{name}` has no port")))?;
        let host = client_host(svc.bind);
        Ok(match attr {
            ServiceAttr::Host => host,
            ServiceAttr::Port => port.to_string(),
            ServiceAttr::Url => match &svc.source {
                Source::Recipe(r) => self.recipe_url(*r, svc, &target, &host_port(&host, port))?,
                _ => format!("http://{}", host_port(&host, port)),
            },
        })
    }

    /// A recipe's URL as this unit sees it: the administrator's, or with
    /// `databases = "per-instance"` the instance's role and database.
    fn recipe_url(
        &self,
        r: Recipe,
        svc: &Service,
        server: &str,
        addr: &str,
    ) -> Result<String, PlanError> {
        let scheme = r.url_scheme();
        let instance = self
            .instance
            .filter(|_| svc.recipe.databases == Databases::PerInstance)
            .map(|i| i.name.as_str());
        let (user, key) = match instance {
            Some(i) => (i.to_string(), role_key(server, i)),
            None => (ADMIN_USER.to_string(), server.to_string()),
        };
        let password = || {
            self.credentials
                .get(&key)
                .cloned()
                .ok_or_else(|| PlanError::MissingCredential(key.clone()))
        };
        let path = instance.map(|i| format!("/{i}")).unwrap_or_default();
        Ok(match r {
            Recipe::Postgres if svc.recipe.tls => format!(
                "{scheme}://{user}:{}@{addr}{path}?{}",
                password()?,
                pg_tls_query(self.stack)
            ),
            Recipe::Rabbitmq if svc.recipe.tls => {
                format!("amqps://{user}:{}@{addr}{path}", password()?)
            }
            Recipe::Postgres | Recipe::Rabbitmq => {
                format!("{scheme}://{user}:{}@{addr}{path}", password()?)
            }
            // rediss://, verified against the stack's CA (redis-py's and Celery's names).
            Recipe::Redis if svc.recipe.tls => format!(
                "rediss://default:{}@{addr}?ssl_cert_reqs=required&ssl_ca_certs={}",
                password()?,
                ca_file(self.stack).display()
            ),
            Recipe::Redis => format!("{scheme}://default:{}@{addr}", password()?),
            Recipe::Mongodb => format!("{scheme}://{addr}{path}"),
            Recipe::Memcached => format!("{scheme}://{addr}"),
        })
    }
}
