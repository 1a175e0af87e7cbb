//! `[edge]`: listeners, hosts, TLS, static mounts, forwards, certificate files and limits.

use super::*;

impl<'a> Builder<'a> {
    pub(super) fn edge(&mut self, node: &Node) -> Option<Edge> {
        let map = self.table(node, "edge", &EDGE_KEYS)?;
        let mut edge = default_edge();
        self.edge_listen(map, &mut edge);
        self.edge_hosts(map, &mut edge);
        self.edge_tls(map, &mut edge);
        self.edge_acme(map, node, &mut edge);
        self.edge_settings(map, &mut edge);
        self.edge_static(map, &mut edge);
        self.edge_forward(map, &mut edge);
        self.edge_redirects(map, &mut edge);
        self.edge_canonical_host(map, &mut edge);
        self.edge_error_pages(map, &mut edge);
        self.edge_route_defaults(map, &mut edge);
        Some(edge)
    }

    /// `listen`: the edge's listeners, each port once.
    fn edge_listen(&mut self, map: &Map, edge: &mut Edge) {
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
    }

    /// `hosts`: the DNS names the edge answers for.
    fn edge_hosts(&mut self, map: &Map, edge: &mut Edge) {
        if let Some(e) = map.get("hosts") {
            edge.hosts = self.host_names(&e.node, "edge.hosts", true);
        }
    }

    /// `tls`: self-signed by default behind an https:// listener, `acme`, `off` or
    /// certificate files.
    fn edge_tls(&mut self, map: &Map, edge: &mut Edge) {
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
    }

    /// `acme_*`: the ACME account, directory, CA and challenge.
    fn edge_acme(&mut self, map: &Map, node: &Node, edge: &mut Edge) {
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
    }

    /// `upstream_ca`, `hsts`, `redirect_https`, `trusted_proxies`, `limits`.
    fn edge_settings(&mut self, map: &Map, edge: &mut Edge) {
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
        if let Some(e) = map.get("access_log") {
            self.access_log(&e.node, edge);
        }
        if let Some(e) = map.get("limits") {
            if let Some(l) = self.limits(&e.node) {
                edge.limits = l;
            }
        }
    }

    /// `static`: the static mounts, each under a prefix.
    fn edge_static(&mut self, map: &Map, edge: &mut Edge) {
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
    }

    /// `forward`: whole ports forwarded to a service.
    fn edge_forward(&mut self, map: &Map, edge: &mut Edge) {
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
    }

    /// `access_log = { format = "grove" | "combined" | "json", path = "...", off = true }`.
    fn access_log(&mut self, node: &Node, edge: &mut Edge) {
        let path = "edge.access_log";
        let Some(map) = self.table(node, path, &["format", "path", "off"]) else {
            return;
        };
        if let Some(e) = map.get("format") {
            let formats = [
                ("grove", AccessFormat::Grove),
                ("combined", AccessFormat::Combined),
                ("json", AccessFormat::Json),
            ];
            if let Some(f) = self.enum_str(&e.node, &join(path, "format"), &formats) {
                edge.access_log.format = Some(f);
            }
        }
        if let Some(e) = map.get("path") {
            edge.access_log.path = self.path(&e.node, &join(path, "path"));
        }
        if let Some(e) = map.get("off") {
            if self.bool(&e.node, &join(path, "off")) == Some(true) {
                edge.access_log.format = None;
            }
        }
    }

    pub(super) fn cert_files(&mut self, node: &Node, path: &str) -> Option<CertFiles> {
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

    pub(super) fn limits(&mut self, node: &Node) -> Option<EdgeLimits> {
        let map = self.table(node, "edge.limits", &LIMIT_KEYS)?;
        let mut l = EdgeLimits::default();
        let durations = [
            ("client_header_timeout", &mut l.client_header_timeout),
            ("keepalive_timeout", &mut l.keepalive_timeout),
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
}

/// Every route gets the `[edge]` defaults under its own rules; `given` names the keys each
/// service's route wrote itself.
pub(super) fn route_defaults(
    edge: &Edge,
    services: &mut IndexMap<String, Service>,
    given: &HashSet<(String, &'static str)>,
) {
    let d = &edge.route_defaults;
    for (name, s) in services.iter_mut() {
        let own = |key: &'static str| given.contains(&(name.clone(), key));
        if let Some(r) = s.route.as_mut() {
            if !own("auth") {
                r.auth = d.auth.clone();
                r.forward_auth = d.forward_auth.clone();
            }
            if let (false, Some(n)) = (own("max_body"), d.max_body) {
                r.max_body = n;
            }
            if let (false, Some(n)) = (own("buffer_body"), d.buffer_body) {
                r.buffer_body = n;
            }
            r.response_headers = d.response_headers.under(&r.response_headers);
            r.request_headers = d.request_headers.under(&r.request_headers);
            if r.rate_limit.is_none() {
                r.rate_limit = d.rate_limit.clone();
            }
            if r.compress.is_none() {
                r.compress = d.compress.clone();
            }
        }
    }
}

/// `[edge]` when the file says nothing.
pub(super) fn default_edge() -> Edge {
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
        access_log: AccessLogSettings::default(),
        redirects: Vec::new(),
        canonical_host: None,
        error_pages: Vec::new(),
        route_defaults: Default::default(),
    }
}
