//! The edge as Kubernetes objects: Ingresses for the routes (TLS by cert-manager or a
//! Secret), and Services with Endpoints for remote upstreams.

use super::*;

/// Routes -> Ingress; remote upstreams -> Services without selector; forwards ->
/// LoadBalancer Services; static mounts -> [`super::statics`].
pub(super) fn edge(m: &Model<'_>, out: &mut Out) -> Result<(), ExportError> {
    let plan = m.plan;
    for (i, r) in plan.routes.iter().enumerate() {
        route_ingress(m, i, r, out)?;
    }
    for f in &plan.edge.forward {
        forward_service(m, f, out)?;
    }
    super::statics::static_mounts(m, out)?;
    out.notes.extend(crate::model::edge_rule_notes(plan));
    Ok(())
}

/// The Service a route sends to, and its port: the workload's own, or (remote upstreams)
/// one emitted for them. `None` when the route has nothing to send to.
fn route_backend(
    m: &Model<'_>,
    r: &grove_plan::Route,
    out: &mut Out,
) -> Result<Option<(String, u16)>, ExportError> {
    match &r.target {
        Target::Units(units) => {
            let Some(w) = units.first().and_then(|u| m.workload_of(u)) else {
                return Ok(None);
            };
            let Some(p) = w.port else { return Ok(None) };
            Ok(Some((w.name.clone(), p)))
        }
        Target::Remote(ups) => {
            let Some(first) = ups.first() else {
                return Ok(None);
            };
            let name = dns_name(&format!("{}-remote", r.service));
            remote_service(&m.plan.stack, &r.service, &name, ups, out)?;
            Ok(Some((name, first.port)))
        }
    }
}

/// One route's Ingress: its host rules, path, ingress-nginx annotations and TLS.
fn route_ingress(
    m: &Model<'_>,
    i: usize,
    r: &grove_plan::Route,
    out: &mut Out,
) -> Result<(), ExportError> {
    let plan = m.plan;
    let stack = &plan.stack;
    let Some((backend_name, backend_port)) = route_backend(m, r, out)? else {
        return Ok(());
    };
    let name = dns_name(&format!(
        "{stack}-{}-{}",
        r.service,
        r.instance.clone().unwrap_or_else(|| i.to_string())
    ));
    let (ann, path, path_type) = route_annotations(plan, r);
    let hosts: Vec<String> = match &r.host {
        Some(h) => vec![h.clone()],
        None => plan.edge.hosts.clone(),
    };
    let tls = match &plan.edge.tls {
        Tls::Off => None,
        _ => Some(()),
    }
    .filter(|_| !hosts.is_empty())
    .map(|_| {
        vec![IngressTLS {
            hosts: Some(hosts.clone()),
            secret_name: Some(dns_name(&format!("{stack}-tls"))),
        }]
    });
    let http = HTTPIngressRuleValue {
        paths: vec![HTTPIngressPath {
            path: Some(path),
            path_type,
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: backend_name,
                    port: Some(ServiceBackendPort {
                        number: Some(i32::from(backend_port)),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            },
        }],
    };
    out.push(
        format!("Ingress/{name}"),
        route_comment(plan, r),
        &Ingress {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels(stack, &r.service, r.instance.as_deref())),
                annotations: Some(ann),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: Some("nginx".into()),
                rules: Some(ingress_rules(plan, r, http)),
                tls,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// A route's ingress-nginx annotations (prefix rewrite, body size, WebSocket timeouts,
/// cert-manager issuer), and its path with the path type.
fn route_annotations(
    plan: &Plan,
    r: &grove_plan::Route,
) -> (BTreeMap<String, String>, String, String) {
    let mut ann = BTreeMap::new();
    let (path, path_type) = if r.strip_prefix && r.prefix != "/" {
        ann.insert(
            "nginx.ingress.kubernetes.io/rewrite-target".to_string(),
            "/$2".to_string(),
        );
        ann.insert(
            "nginx.ingress.kubernetes.io/use-regex".into(),
            "true".into(),
        );
        ann.insert(
            "nginx.ingress.kubernetes.io/x-forwarded-prefix".into(),
            r.prefix.clone(),
        );
        (
            format!("{}(/|$)(.*)", r.prefix),
            "ImplementationSpecific".to_string(),
        )
    } else {
        (r.prefix.clone(), "Prefix".to_string())
    };
    ann.insert(
        "nginx.ingress.kubernetes.io/proxy-body-size".into(),
        format!("{}", r.max_body),
    );
    if r.buffer_body == 0 {
        // Streamed to the upstream as it arrives, as grove's `buffer_body = "0"` does.
        ann.insert(
            "nginx.ingress.kubernetes.io/proxy-request-buffering".into(),
            "off".into(),
        );
    } else if r.buffer_body != grove_plan::DEFAULT_BUFFER_BODY {
        ann.insert(
            "nginx.ingress.kubernetes.io/client-body-buffer-size".into(),
            format!("{}", r.buffer_body),
        );
    }
    if r.websocket {
        // ingress-nginx passes WebSocket upgrades; long-lived ones need long timeouts.
        ann.insert(
            "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
            "3600".into(),
        );
        ann.insert(
            "nginx.ingress.kubernetes.io/proxy-send-timeout".into(),
            "3600".into(),
        );
    }
    if let Tls::Acme = plan.edge.tls {
        ann.insert(
            "cert-manager.io/cluster-issuer".into(),
            "letsencrypt".into(),
        );
    }
    (ann, path, path_type)
}

/// A route's Ingress rules: its host, else one per edge host, else any host.
fn ingress_rules(
    plan: &Plan,
    r: &grove_plan::Route,
    http: HTTPIngressRuleValue,
) -> Vec<IngressRule> {
    match &r.host {
        Some(h) => vec![IngressRule {
            host: Some(h.clone()),
            http: Some(http),
        }],
        None if !plan.edge.hosts.is_empty() => plan
            .edge
            .hosts
            .iter()
            .map(|h| IngressRule {
                host: Some(h.clone()),
                http: Some(http.clone()),
            })
            .collect(),
        None => vec![IngressRule {
            host: None,
            http: Some(http),
        }],
    }
}

/// The comment above a route's Ingress: where it goes, and what strip_prefix and TLS need.
fn route_comment(plan: &Plan, r: &grove_plan::Route) -> Vec<String> {
    let stack = &plan.stack;
    let mut comment = vec![format!(
        "route {} -> service {}{}",
        r.key(),
        r.service,
        r.instance
            .as_ref()
            .map(|i| format!(", instance {i}"))
            .unwrap_or_default()
    )];
    if r.strip_prefix {
        comment.push(
            "strip_prefix: ingress-nginx rewrites the path and sets X-Forwarded-Prefix".into(),
        );
    }
    if matches!(plan.edge.tls, Tls::SelfSigned | Tls::Files { .. }) {
        comment.push(format!(
            "TLS: create the Secret {stack}-tls from your certificate (kubectl create secret tls)"
        ));
    }
    comment
}

/// An extra listener's LoadBalancer Service on its port (none for a remote target or a
/// workload without a port).
fn forward_service(
    m: &Model<'_>,
    f: &grove_plan::Forward,
    out: &mut Out,
) -> Result<(), ExportError> {
    let stack = &m.plan.stack;
    let Target::Units(units) = &f.target else {
        return Ok(());
    };
    let Some(w) = units.first().and_then(|u| m.workload_of(u)) else {
        return Ok(());
    };
    let Some(p) = w.port else { return Ok(()) };
    let port = f.listen.addr.port();
    let name = dns_name(&format!("{}-port-{port}", w.name));
    out.push(
        format!("Service/{name}"),
        vec![format!(
            "listener {} -> service {}: a LoadBalancer Service (Ingress carries HTTP(S) on 80/443 only)",
            f.listen, f.service
        )],
        &Service {
            metadata: meta(&name, labels(stack, &f.service, None)),
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                selector: Some(selector(stack, w.service, w.instance)),
                ports: Some(vec![ServicePort {
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(p))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// A remote upstream: an ExternalName Service for a host name, or a Service without selector
/// and its Endpoints for IP addresses.
pub(super) fn remote_service(
    stack: &str,
    service: &str,
    name: &str,
    ups: &[grove_plan::Upstream],
    out: &mut Out,
) -> Result<(), ExportError> {
    if out.docs.iter().any(|d| d.id == format!("Service/{name}")) {
        return Ok(());
    }
    let Some(first) = ups.first() else {
        return Ok(());
    };
    let l = labels(stack, service, None);
    let port = i32::from(first.port);
    let ip = first.host.parse::<std::net::IpAddr>().is_ok();
    if !ip {
        return out.push(
            format!("Service/{name}"),
            vec![format!(
                "service {service}: remote upstream {first} (ExternalName)"
            )],
            &Service {
                metadata: meta(name, l),
                spec: Some(ServiceSpec {
                    type_: Some("ExternalName".into()),
                    external_name: Some(first.host.clone()),
                    ports: Some(vec![ServicePort {
                        port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
    }
    out.push(
        format!("Service/{name}"),
        vec![format!(
            "service {service}: remote upstreams, no selector (see its Endpoints)"
        )],
        &Service {
            metadata: meta(name, l.clone()),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port,
                    target_port: Some(IntOrString::Int(port)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    let addresses: Vec<EndpointAddress> = ups
        .iter()
        .filter(|u| u.host.parse::<std::net::IpAddr>().is_ok() && u.port == first.port)
        .map(|u| EndpointAddress {
            ip: u.host.clone(),
            ..Default::default()
        })
        .collect();
    out.push(
        format!("Endpoints/{name}"),
        vec![format!(
            "service {service}: the remote upstreams' addresses"
        )],
        &Endpoints {
            metadata: meta(name, l),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(addresses),
                ports: Some(vec![EndpointPort {
                    port,
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
        },
    )
}
