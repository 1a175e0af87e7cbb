//! The checks across the whole file once every part is built: dependencies and their
//! cycles, references, port and route clashes.

use super::*;
use crate::ServiceAttr;

/// The whole stack, as the cross-checks see it.
#[derive(Clone, Copy)]
struct Whole<'s> {
    services: &'s IndexMap<String, Service>,
    instances: &'s IndexMap<String, Instance>,
    edge: &'s Edge,
    top: &'s Map,
}

/// `services: a, b` (or that there are none), for a help line.
fn services_list(names: &[&str]) -> String {
    if names.is_empty() {
        "there are no services".to_string()
    } else {
        format!("services: {}", names.join(", "))
    }
}

impl<'a> Builder<'a> {
    /// Checks that need the whole stack, one rule each, in order: dependencies, cycles,
    /// instances, references, ports, forwards, routes, deploy tasks.
    pub(super) fn cross_check(
        &mut self,
        services: &IndexMap<String, Service>,
        instances: &IndexMap<String, Instance>,
        edge: &Edge,
        top: &Map,
    ) {
        let w = Whole {
            services,
            instances,
            edge,
            top,
        };
        let dep_locs = std::mem::take(&mut self.dep_locs);
        self.check_dependencies(&w, &dep_locs);
        self.check_cycles(&w, &dep_locs);
        self.check_instances(&w);
        self.check_references(&w);
        self.check_fixed_ports(&w);
        self.check_forwards(&w);
        self.check_routes(&w);
        self.check_splits(&w);
        self.check_deploy_tasks(&w);
    }

    /// A route's `targets` and `mirror` name services it can send requests to: ones that
    /// run a command on a port, or remote `upstreams`; neither side per instance.
    fn check_splits(&mut self, w: &Whole<'_>) {
        let Whole { services, .. } = *w;
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        let locs = std::mem::take(&mut self.split_locs);
        for (owner, named) in &locs {
            let per_instance = services.get(owner).is_some_and(|s| s.for_each_instance);
            for (target, path, loc) in named {
                let why = match services.get(target) {
                    None => {
                        let help = match suggest(target, names.iter().copied()) {
                            Some(n) => format!("did you mean `{n}`? {}", services_list(&names)),
                            None => services_list(&names),
                        };
                        self.err(
                            loc,
                            path,
                            format!("`{target}` is not a service"),
                            Some(help),
                        );
                        continue;
                    }
                    Some(_) if per_instance => Some(format!(
                        "`{owner}` runs per instance: its route goes to its own instance's units"
                    )),
                    Some(t) if t.for_each_instance => Some(format!(
                        "`{target}` runs per instance: a split goes to one set of units"
                    )),
                    Some(t) => match &t.source {
                        Source::Upstreams(_) => None,
                        Source::Command(_)
                            if t.kind == ServiceKind::Service && t.port != PortSpec::None =>
                        {
                            None
                        }
                        _ => Some(format!(
                            "`{target}` has no port to send requests to (a long-running command \
                             with a `port`, or `upstreams`)"
                        )),
                    },
                };
                if let Some(why) = why {
                    self.err(loc, path, why, None);
                }
            }
        }
    }

    /// Each dependency names a service it can wait for, with a condition it can reach.
    fn check_dependencies(
        &mut self,
        w: &Whole<'_>,
        dep_locs: &HashMap<String, HashMap<String, Loc>>,
    ) {
        let Whole { services, .. } = *w;
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        let list = |names: &[&str]| services_list(names);
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
                if target.job.is_some() {
                    self.err(
                        &loc,
                        &path,
                        format!(
                            "`{dep}` is a job: it runs on its schedule, so nothing can wait for it"
                        ),
                        None,
                    );
                }
                if matches!(target.source, Source::Upstreams(_)) {
                    self.err(&loc, &path, format!("`{dep}` is remote; grove does not start it, so nothing can wait for it"), None);
                }
            }
        }
    }

    /// No dependency cycle.
    fn check_cycles(&mut self, w: &Whole<'_>, dep_locs: &HashMap<String, HashMap<String, Loc>>) {
        let Whole { services, .. } = *w;
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
    }

    /// A `for_each_instance` service has instances to run for.
    fn check_instances(&mut self, w: &Whole<'_>) {
        let Whole {
            services,
            instances,
            ..
        } = *w;
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
    }

    /// Every `${...}` in a template names something that exists where it is used.
    fn check_references(&mut self, w: &Whole<'_>) {
        let Whole {
            services,
            instances,
            ..
        } = *w;
        let templates = std::mem::take(&mut self.templates);
        for (svc_name, path, t, loc) in &templates {
            if svc_name == EDGE {
                self.check_edge_template(services, path, t, loc);
                continue;
            }
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
                    Part::Service(other, attr) => {
                        if let Some(target) = self.service_ref(services, other, *attr, path, loc) {
                            if target.for_each_instance && !svc.for_each_instance {
                                self.err(loc, path, format!("`{other}` runs once per instance, so `${{{other}.{}}}` is ambiguous here", attr.as_str()), Some("refer to it from a service with for_each_instance = true".to_string()));
                            }
                        }
                    }
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
    }

    /// `${other.attr}` in a template: the service it names, else an error (with the nearest
    /// name); one without a port to refer to is an error too.
    fn service_ref<'s>(
        &mut self,
        services: &'s IndexMap<String, Service>,
        other: &str,
        attr: ServiceAttr,
        path: &str,
        loc: &Loc,
    ) -> Option<&'s Service> {
        let Some(target) = services.get(other) else {
            let names: Vec<&str> = services.keys().map(String::as_str).collect();
            let help = match suggest(other, names.iter().copied()) {
                Some(n) => format!("did you mean `{n}`? {}", services_list(&names)),
                None => services_list(&names),
            };
            self.err(
                loc,
                path,
                format!("`${{{other}.{}}}` names no service", attr.as_str()),
                Some(help),
            );
            return None;
        };
        if target.port == PortSpec::None && !matches!(target.source, Source::Upstreams(_)) {
            self.err(
                loc,
                path,
                format!("`{other}` has no port to refer to"),
                Some(format!("give services.{other} a port")),
            );
        }
        Some(target)
    }

    /// A template written at `[edge]` (forward authentication's URL): used by every route, so
    /// it may name services (not for_each_instance ones), never `${port}` or `${instance}`.
    fn check_edge_template(
        &mut self,
        services: &IndexMap<String, Service>,
        path: &str,
        t: &Template,
        loc: &Loc,
    ) {
        for part in &t.parts {
            match part {
                Part::Service(other, attr) => {
                    let target = self.service_ref(services, other, *attr, path, loc);
                    if target.is_some_and(|t| t.for_each_instance) {
                        self.err(
                            loc,
                            path,
                            format!("`{other}` runs once per instance, so `${{{other}.{}}}` is ambiguous at [edge]", attr.as_str()),
                            Some("set this auth on the routes of each instance's service".to_string()),
                        );
                    }
                }
                Part::Lit(_) => {}
                _ => self.err(
                    loc,
                    path,
                    "at [edge], a URL may refer to services only (`${auth.url}/check`)",
                    None,
                ),
            }
        }
    }

    /// A fixed port belongs to one unit: not shared by replicas or instances, by another
    /// service or by an edge listener.
    fn check_fixed_ports(&mut self, w: &Whole<'_>) {
        let Whole {
            services,
            instances,
            edge,
            top,
        } = *w;
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
    }

    /// Each whole-port forward names a service that has a port.
    fn check_forwards(&mut self, w: &Whole<'_>) {
        let Whole {
            services,
            edge,
            top,
            ..
        } = *w;
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        let list = |names: &[&str]| services_list(names);
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
    }

    /// Two services may not claim the same host and prefix (nor a static mount).
    fn check_routes(&mut self, w: &Whole<'_>) {
        let Whole {
            services,
            instances,
            edge,
            top,
        } = *w;
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
    }

    /// `[deploy] before_switch` names tasks.
    fn check_deploy_tasks(&mut self, w: &Whole<'_>) {
        let Whole { services, top, .. } = *w;
        let names: Vec<&str> = services.keys().map(String::as_str).collect();
        let list = |names: &[&str]| services_list(names);
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

    pub(super) fn port_loc(&self, top: &Map, service: &str) -> Loc {
        if let Some(Kind::Table(s)) = top.get("services").map(|e| &e.node.kind) {
            if let Some(Kind::Table(svc)) = s.get(service).map(|e| &e.node.kind) {
                if let Some(p) = svc.get("port") {
                    return p.node.loc.clone();
                }
            }
        }
        self.service_locs.get(service).cloned().unwrap_or_default()
    }

    pub(super) fn forward_loc(&self, top: &Map, i: usize) -> Loc {
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
