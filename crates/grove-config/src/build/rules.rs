//! The edge's request-time rules: a route's `headers` (responses) and `request_headers`, its
//! `auth`, `rate_limit` and `compress`, `[edge] redirects` and `[edge] canonical_host`, each checked
//! where it is written.

use super::*;
use crate::edge_rules::{
    is_header_name, parse_htpasswd_line, BasicAuth, Compress, Encoding, ErrorPage, ForwardAuth,
    HeaderRules, RateKey, RateLimit, Redirect, Text,
};

/// Headers grove itself sets or must keep: a rule may not remove or replace them (the
/// framing, the hop-by-hop ones, the forwarded ones and the request id).
const PROTECTED: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
];

impl<'a> Builder<'a> {
    /// A `{placeholder}` text.
    pub(super) fn placeholders(&mut self, node: &Node, path: &str) -> Option<Text> {
        let s = self.string(node, path)?;
        match Text::parse(&s) {
            Ok(t) => Some(t),
            Err(why) => {
                self.err(&node.loc, path, why, None);
                None
            }
        }
    }

    /// A header name of a rule, lowercased.
    fn header_name(&mut self, name: &str, loc: &Loc, path: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if !is_header_name(name) {
            self.err(loc, path, format!("`{name}` is not a header name"), None);
            return None;
        }
        if PROTECTED.contains(&lower.as_str()) {
            self.err(
                loc,
                path,
                format!("`{name}` is the edge's to manage: a rule cannot change it"),
                None,
            );
            return None;
        }
        Some(lower)
    }

    /// `headers = { set = { NAME = "text" }, add = { ... }, remove = ["NAME"] }`.
    pub(super) fn header_rules(&mut self, node: &Node, path: &str) -> HeaderRules {
        let mut rules = HeaderRules::default();
        let Some(map) = self.table(node, path, &["set", "add", "remove"]) else {
            return rules;
        };
        for (key, into) in [("set", 0), ("add", 1)] {
            let Some(e) = map.get(key) else { continue };
            let at = join(path, key);
            let Some(entries) = self.any_table(&e.node, &at) else {
                continue;
            };
            for (name, v) in entries {
                let p = join(&at, name);
                let (Some(n), Some(t)) = (
                    self.header_name(name, &v.key_loc, &p),
                    self.placeholders(&v.node, &p),
                ) else {
                    continue;
                };
                if into == 0 {
                    rules.set.push((n, t));
                } else {
                    rules.add.push((n, t));
                }
            }
        }
        if let Some(e) = map.get("remove") {
            let at = join(path, "remove");
            for (name, loc) in self.strings(&e.node, &at).unwrap_or_default() {
                if let Some(n) = self.header_name(&name, &loc, &at) {
                    rules.remove.push(n);
                }
            }
        }
        rules
    }

    /// `redirects = { "[host]/prefix" = "to" | { to = "...", status = 301 } }`.
    pub(super) fn edge_redirects(&mut self, map: &Map, edge: &mut Edge) {
        let Some(e) = map.get("redirects") else {
            return;
        };
        let Some(entries) = self.any_table(&e.node, "edge.redirects") else {
            return;
        };
        for (key, v) in entries {
            let path = join("edge.redirects", key);
            let (host, prefix) = match key.find('/') {
                Some(0) => (None, key.clone()),
                Some(i) => (Some(key[..i].to_ascii_lowercase()), key[i..].to_string()),
                None => {
                    self.err(
                        &v.key_loc,
                        &path,
                        format!("`{key}` names no path: write `/old` or `old.example.org/`"),
                        None,
                    );
                    continue;
                }
            };
            let (to, status) = match &v.node.kind {
                Kind::Table(_) => {
                    let Some(t) = self.table(&v.node, &path, &["to", "status"]) else {
                        continue;
                    };
                    let Some(to) = t.get("to") else {
                        self.err(&v.node.loc, &path, "a redirect needs `to`", None);
                        continue;
                    };
                    let status = match t.get("status") {
                        Some(s) => {
                            let sp = join(&path, "status");
                            match self.int(&s.node, &sp, 0, 999) {
                                Some(n) if [301, 302, 303, 307, 308].contains(&n) => n as u16,
                                Some(n) => {
                                    self.err(
                                        &s.node.loc,
                                        &sp,
                                        format!("{n} is not a redirect status"),
                                        Some("301, 302, 303, 307 or 308".to_string()),
                                    );
                                    continue;
                                }
                                None => continue,
                            }
                        }
                        None => 302,
                    };
                    (self.placeholders(&to.node, &join(&path, "to")), status)
                }
                _ => (self.placeholders(&v.node, &path), 302),
            };
            if let Some(to) = to {
                edge.redirects.push(Redirect {
                    host,
                    prefix,
                    to,
                    status,
                });
            }
        }
    }

    /// `canonical_host = "example.org"`: one of `hosts`; requests for the others are sent
    /// there (301).
    pub(super) fn edge_canonical_host(&mut self, map: &Map, edge: &mut Edge) {
        let Some(e) = map.get("canonical_host") else {
            return;
        };
        let Some(h) = self.string(&e.node, "edge.canonical_host") else {
            return;
        };
        let h = h.to_ascii_lowercase();
        if !edge.hosts.contains(&h) {
            self.err(
                &e.node.loc,
                "edge.canonical_host",
                format!("`{h}` is not one of `hosts`"),
                Some(format!("hosts = [{:?}, \"www.{h}\"]", h)),
            );
            return;
        }
        edge.canonical_host = Some(h);
    }

    /// `auth = { forward = { url = "http://...", copy_headers = ["X-User"] } }`.
    pub(super) fn forward_auth(
        &mut self,
        service: &str,
        node: &Node,
        path: &str,
    ) -> Option<ForwardAuth> {
        let map = self.table(node, path, &["url", "copy_headers"])?;
        let Some(u) = map.get("url") else {
            self.err(
                &node.loc,
                path,
                "`forward` needs `url`",
                Some("forward = { url = \"${auth.url}/check\" }".to_string()),
            );
            return None;
        };
        let up = join(path, "url");
        let url = self.template(&u.node, &up)?;
        let text = url.to_string();
        if !text.starts_with("http://") && !text.starts_with("https://") && !text.starts_with("${")
        {
            self.err(
                &u.node.loc,
                &up,
                format!("`{text}` is not an http:// or https:// URL"),
                None,
            );
            return None;
        }
        self.templates
            .push((service.to_string(), up, url.clone(), u.node.loc.clone()));
        let mut copy_headers = Vec::new();
        if let Some(c) = map.get("copy_headers") {
            let cp = join(path, "copy_headers");
            for (h, loc) in self.strings(&c.node, &cp).unwrap_or_default() {
                if is_header_name(&h) {
                    copy_headers.push(h.to_ascii_lowercase());
                } else {
                    self.err(&loc, &cp, format!("`{h}` is not a header name"), None);
                }
            }
        }
        Some(ForwardAuth { url, copy_headers })
    }

    /// `auth = { basic = {...} }` or `{ forward = {...} }`: exactly one.
    pub(super) fn route_auth(
        &mut self,
        service: &str,
        node: &Node,
        path: &str,
    ) -> (Option<BasicAuth>, Option<ForwardAuth>) {
        let Some(map) = self.table(node, path, &["basic", "forward"]) else {
            return (None, None);
        };
        match (map.get("basic"), map.get("forward")) {
            (Some(_), Some(f)) => {
                self.err(
                    &f.key_loc,
                    path,
                    "`auth` is `basic` or `forward`, not both",
                    None,
                );
                (None, None)
            }
            (Some(_), None) => (self.basic_auth(node, path), None),
            (None, Some(f)) => (
                None,
                self.forward_auth(service, &f.node, &join(path, "forward")),
            ),
            (None, None) => {
                self.err(
                    &node.loc,
                    path,
                    "`auth` needs `basic` or `forward`",
                    Some("auth = { basic = { users_file = \"htpasswd\" } }".to_string()),
                );
                (None, None)
            }
        }
    }

    /// `auth = { basic = { users_file = "htpasswd", realm = "..." } }`; each line of the file
    /// checked where it is.
    fn basic_auth(&mut self, node: &Node, path: &str) -> Option<BasicAuth> {
        let map = self.table(node, path, &["basic", "forward"])?;
        let b = map.get("basic")?;
        let bp = join(path, "basic");
        let basic = self.table(&b.node, &bp, &["users_file", "realm"])?;
        let realm = match basic.get("realm") {
            Some(r) => self.string(&r.node, &join(&bp, "realm"))?,
            None => "grove".to_string(),
        };
        if realm.contains('"') || realm.chars().any(char::is_control) {
            self.err(
                &b.node.loc,
                &join(&bp, "realm"),
                "a realm cannot hold `\"`",
                None,
            );
            return None;
        }
        let Some(f) = basic.get("users_file") else {
            self.err(
                &b.node.loc,
                &bp,
                "`basic` needs `users_file`",
                Some("make one with `htpasswd -cB htpasswd alice`".to_string()),
            );
            return None;
        };
        let fp = join(&bp, "users_file");
        let file = PathBuf::from(self.string(&f.node, &fp)?);
        let (id, text) = match self.users_files.get(&file) {
            Some(Ok((id, text))) => (*id, text.clone()),
            Some(Err(why)) => {
                self.err(
                    &f.node.loc,
                    &fp,
                    why.clone(),
                    Some("the path is relative to the stack file's folder".to_string()),
                );
                return None;
            }
            // Never silently without authentication: every users file is read by the loader.
            None => {
                self.err(
                    &f.node.loc,
                    &fp,
                    format!("`{}` was not read with the stack file", file.display()),
                    None,
                );
                return None;
            }
        };
        let mut users = Vec::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            let span = at..at + line.trim_end_matches(['\n', '\r']).len();
            at += line.len();
            match parse_htpasswd_line(line.trim_end_matches('\n')) {
                Ok(Some(u)) => users.push(u),
                Ok(None) => {}
                Err(why) => self.err(&Loc::new(id, span), &fp, why, None),
            }
        }
        if users.is_empty() {
            self.err(
                &f.node.loc,
                &fp,
                format!("`{}` has no users", file.display()),
                Some("add one with `htpasswd -B FILE alice`".to_string()),
            );
            return None;
        }
        Some(BasicAuth {
            realm,
            users_file: file,
            users,
        })
    }

    /// `rate_limit = { requests = 100, per = "1m", burst = 20, by = "client" | "header:NAME" }`.
    pub(super) fn rate_limit(&mut self, node: &Node, path: &str) -> Option<RateLimit> {
        let map = self.table(node, path, &["requests", "per", "burst", "by"])?;
        let Some(r) = map.get("requests") else {
            self.err(
                &node.loc,
                path,
                "a rate limit needs `requests`",
                Some("rate_limit = { requests = 100, per = \"1m\" }".to_string()),
            );
            return None;
        };
        let requests = self.int(&r.node, &join(path, "requests"), 1, 1_000_000)? as u32;
        let per_ms = match map.get("per") {
            Some(p) => {
                let d = self.duration(&p.node, &join(path, "per"))?;
                if d.as_millis() < 1 {
                    self.err(
                        &p.node.loc,
                        &join(path, "per"),
                        "the window must be at least 1ms",
                        None,
                    );
                    return None;
                }
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            }
            None => 1000,
        };
        let burst = match map.get("burst") {
            Some(b) => self.int(&b.node, &join(path, "burst"), 1, 1_000_000)? as u32,
            None => requests,
        };
        let by = match map.get("by") {
            None => RateKey::Client,
            Some(b) => {
                let bp = join(path, "by");
                let s = self.string(&b.node, &bp)?;
                match s.strip_prefix("header:") {
                    None if s == "client" => RateKey::Client,
                    Some(h) if is_header_name(h) => RateKey::Header(h.to_ascii_lowercase()),
                    _ => {
                        self.err(
                            &b.node.loc,
                            &bp,
                            format!("`{s}` is not what a rate limit can count by"),
                            Some("\"client\" (the default) or \"header:X-Api-Key\"".to_string()),
                        );
                        return None;
                    }
                }
            }
        };
        Some(RateLimit {
            requests,
            per_ms,
            burst,
            by,
        })
    }

    /// `compress = true | false | ["zstd", "br", "gzip"] | { encodings = [...], min_length = "1KB" }`.
    pub(super) fn compress(&mut self, node: &Node, path: &str) -> Option<Compress> {
        let help = || {
            Some(
                "compress = true (zstd, then gzip), [\"zstd\", \"br\", \"gzip\"] or \
                 { encodings = [\"gzip\"], min_length = \"1KB\" }"
                    .to_string(),
            )
        };
        let mut out = Compress {
            encodings: Compress::DEFAULT_ENCODINGS.to_vec(),
            min_length: Compress::DEFAULT_MIN_LENGTH,
        };
        match &node.kind {
            Kind::Bool(on) => {
                if !on {
                    out.encodings.clear();
                }
            }
            Kind::Array(_) => out.encodings = self.encodings(node, path)?,
            Kind::Table(_) => {
                let map = self.table(node, path, &["encodings", "min_length"])?;
                if let Some(e) = map.get("encodings") {
                    out.encodings = self.encodings(&e.node, &join(path, "encodings"))?;
                }
                if let Some(e) = map.get("min_length") {
                    let p = join(path, "min_length");
                    out.min_length = match &e.node.kind {
                        Kind::Int(_) => self.int(&e.node, &p, 0, 1 << 30)? as u64,
                        _ => {
                            let s = self.string(&e.node, &p)?;
                            let Some(n) = parse_size(&s) else {
                                self.err(
                                    &e.node.loc,
                                    &p,
                                    format!("`{s}` is not a size"),
                                    Some("a number of bytes, or 512B, 1KB".to_string()),
                                );
                                return None;
                            };
                            n
                        }
                    };
                }
            }
            _ => {
                self.err(&node.loc, path, "not a compression setting", help());
                return None;
            }
        }
        Some(out)
    }

    /// `["zstd", "gzip"]`: known codings, each once, at least one.
    fn encodings(&mut self, node: &Node, path: &str) -> Option<Vec<Encoding>> {
        let mut out = Vec::new();
        for (name, loc) in self.strings(node, path)? {
            match Encoding::parse(&name) {
                Some(e) if !out.contains(&e) => out.push(e),
                Some(_) => self.err(&loc, path, format!("`{name}` is named twice"), None),
                None => self.err(
                    &loc,
                    path,
                    format!("`{name}` is not a coding grove compresses with"),
                    Some("\"zstd\", \"br\" or \"gzip\"".to_string()),
                ),
            }
        }
        if out.is_empty() {
            self.err(
                &node.loc,
                path,
                "no coding to compress with",
                Some("compress = false turns compression off".to_string()),
            );
            return None;
        }
        Some(out)
    }

    /// `error_pages = { 502 = "pages/502.html" }`: a status from 400 to 599 and a readable
    /// file of at most 1 MB.
    pub(super) fn edge_error_pages(&mut self, map: &Map, edge: &mut Edge) {
        let Some(e) = map.get("error_pages") else {
            return;
        };
        let Some(entries) = self.any_table(&e.node, "edge.error_pages") else {
            return;
        };
        for (key, v) in entries {
            let path = join("edge.error_pages", key);
            let status = match key.parse::<u16>() {
                Ok(s) if (400..=599).contains(&s) => s,
                _ => {
                    self.err(
                        &v.key_loc,
                        &path,
                        format!("`{key}` is not an error status"),
                        Some(
                            "a status from 400 to 599: error_pages = { 502 = \"pages/502.html\" }"
                                .to_string(),
                        ),
                    );
                    continue;
                }
            };
            let Some(file) = self.string(&v.node, &path).map(PathBuf::from) else {
                continue;
            };
            match self.page_files.get(&file) {
                Some(Ok(html)) if html.len() <= 1 << 20 => edge.error_pages.push(ErrorPage {
                    status,
                    file,
                    html: html.clone(),
                }),
                Some(Ok(_)) => self.err(&v.node.loc, &path, "a page of more than 1 MB", None),
                Some(Err(why)) => self.err(
                    &v.node.loc,
                    &path,
                    why.clone(),
                    Some("the path is relative to the stack file's folder".to_string()),
                ),
                None => {}
            }
        }
    }

    /// `[edge]`'s `headers`, `request_headers`, `rate_limit`, `compress`, `auth`, `max_body`
    /// and `buffer_body`: every route's defaults.
    pub(super) fn edge_route_defaults(&mut self, map: &Map, edge: &mut Edge) {
        if let Some(e) = map.get("headers") {
            edge.route_defaults.response_headers = self.header_rules(&e.node, "edge.headers");
        }
        if let Some(e) = map.get("request_headers") {
            edge.route_defaults.request_headers =
                self.header_rules(&e.node, "edge.request_headers");
        }
        if let Some(e) = map.get("rate_limit") {
            edge.route_defaults.rate_limit = self.rate_limit(&e.node, "edge.rate_limit");
        }
        if let Some(e) = map.get("compress") {
            edge.route_defaults.compress = self.compress(&e.node, "edge.compress");
        }
        if let Some(e) = map.get("auth") {
            let (basic, forward) = self.route_auth(EDGE, &e.node, "edge.auth");
            edge.route_defaults.auth = basic;
            edge.route_defaults.forward_auth = forward;
        }
        if let Some(e) = map.get("max_body") {
            edge.route_defaults.max_body = self.size(&e.node, "edge.max_body");
        }
        if let Some(e) = map.get("buffer_body") {
            edge.route_defaults.buffer_body = self.size(&e.node, "edge.buffer_body");
        }
    }
}
