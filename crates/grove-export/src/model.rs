//! What both exports share: units grouped into workloads (a service, or one instance of a
//! per-instance service, with its replicas), names valid in both worlds, the rewrite of local
//! addresses to in-cluster ones, and the classification of each variable (plain, a user
//! secret, or a value composed around a recipe's password).

use grove_plan::{
    client_host, host_port, Condition, Credentials, Plan, Recipe, RecipeSpec, Run, ServiceKind,
    Unit,
};

use indexmap::IndexMap;

use crate::ExportError;

/// A Deployment / StatefulSet / Job, or a compose service.
#[derive(Debug, Clone)]
pub(crate) struct Workload<'a> {
    /// DNS-1123 name: `web`, `web-turkey`.
    pub name: String,
    pub service: &'a str,
    pub instance: Option<&'a str>,
    /// The first replica (every replica runs the same definition).
    pub unit: &'a Unit,
    pub replicas: u32,
    /// The port inside the cluster (a recipe's standard port; else the unit's).
    pub port: Option<u16>,
    pub recipe: Option<(Recipe, &'a RecipeSpec)>,
}

/// A variable as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    /// A plain value (ConfigMap, or literal in compose).
    Plain(String),
    /// A user secret: its value (kept out of the output unless asked).
    Secret(String),
    /// A value built around recipe passwords: `$(NAME)` (Kubernetes) / `${NAME}` (compose)
    /// stand where each password was. `refs` are the password variables it needs.
    Composed {
        template: String,
        refs: Vec<PasswordRef>,
    },
}

/// A recipe password as a variable: where it lives and under which name the app sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PasswordRef {
    /// `GROVE_DB_PASSWORD`, `GROVE_DB_TURKEY_PASSWORD`.
    pub var: String,
    /// The recipe workload's credentials Secret: `db-credentials`.
    pub secret: String,
    /// Its key: `password`, `password-turkey`.
    pub key: String,
    /// The value (written only with `include_secrets`).
    pub value: String,
}

/// Lower-case letters, digits and `-`, starting and ending alphanumeric, at most 63.
pub(crate) fn dns_name(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "x".to_string()
    } else {
        out
    }
}

/// An environment variable name: `GROVE_DB_TURKEY_PASSWORD`.
fn var_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// The standard port of a recipe's upstream image.
pub(crate) fn recipe_port(r: Recipe) -> u16 {
    match r {
        Recipe::Postgres => 5432,
        Recipe::Redis => 6379,
        Recipe::Rabbitmq => 5672,
        Recipe::Memcached => 11211,
        Recipe::Mongodb => 27017,
    }
}

/// The upstream image of a recipe.
pub(crate) fn recipe_image(r: Recipe) -> &'static str {
    match r {
        Recipe::Postgres => "postgres:15",
        Recipe::Redis => "redis:7",
        Recipe::Rabbitmq => "rabbitmq:3.13-management",
        Recipe::Memcached => "memcached:1.6",
        Recipe::Mongodb => "mongo:7",
    }
}

/// The script that creates a RabbitMQ recipe's virtual hosts and gives its administrator
/// every right on them, through the management API at `host` (the password in the shell
/// variable `admin_var`): what grove does when the broker starts. Both exports run it.
pub(crate) fn rabbitmq_vhost_script(
    host: &str,
    user: &str,
    admin_var: &str,
    vhosts: &[&str],
) -> String {
    let mut s = format!(
        "until curl -fsS -u {user}:\"${admin_var}\" http://{host}:15672/api/overview >/dev/null; do sleep 2; done\n"
    );
    for v in vhosts {
        s.push_str(&format!(
            "curl -fsS -u {user}:\"${admin_var}\" -X PUT http://{host}:15672/api/vhosts/{v}\ncurl -fsS -u {user}:\"${admin_var}\" -X PUT -H 'content-type: application/json' -d '{{\"configure\":\".*\",\"write\":\".*\",\"read\":\".*\"}}' http://{host}:15672/api/permissions/{v}/{user}\n"
        ));
    }
    s
}

/// A command unit's folder when it names one inside the stack (`cwd = "app"`): where the
/// code lives inside an image is the image's business, so it is noted, not mapped.
fn foreign_cwd(w: &Workload<'_>) -> Option<String> {
    let cwd = &w.unit.cwd;
    let text = cwd.display().to_string();
    (cwd.is_relative()
        && !text.is_empty()
        && text != "."
        && matches!(w.unit.run, grove_plan::Run::Command { .. }))
    .then_some(text)
}

/// What of a command unit's settings an export cannot carry: its folder, its `path` and
/// its socket activation (a container binds its own port; the Service and the rolling
/// update keep connections from reaching a pod that is not ready instead).
pub(crate) fn command_notes(w: &Workload<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(cwd) = foreign_cwd(w) {
        notes.push(format!(
            "{}'s cwd `{cwd}` is not mapped: the image's WORKDIR applies (set it there)",
            w.name
        ));
    }
    if !w.unit.path.is_empty() {
        notes.push(format!(
            "{}'s path (folders first on PATH) is not mapped: the image's PATH applies",
            w.name
        ));
    }
    if w.unit.socket {
        notes.push(format!(
            "{}'s socket = true is not mapped: in a container its command binds the port \
             itself (as its `--bind` or `${{PORT}}` says)",
            w.name
        ));
    }
    notes
}

/// What of a recipe's network settings an export cannot carry: its TLS (the image serves
/// plain text; the cluster's or the host's network is trusted instead) and its `allow`
/// networks (a NetworkPolicy or a firewall is the place for them).
pub(crate) fn recipe_network_notes(w: &Workload<'_>) -> Vec<String> {
    let Some((_, spec)) = w.recipe else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    if spec.tls {
        notes.push(format!(
            "{}'s tls is not mapped: the exported server speaks plain text (its clients' \
             URLs lose their TLS settings); give the image a certificate to keep it",
            w.name
        ));
    }
    if !spec.allow.is_empty() {
        notes.push(format!(
            "{}'s allow ({}) is not mapped: write a NetworkPolicy (or a firewall rule) for it",
            w.name,
            spec.allow.join(", ")
        ));
    }
    notes
}

/// The edge's request-time rules an export does not carry: a route's header rules, the
/// redirects and the canonical host (Gateway API's HTTPRoute filters, or the ingress
/// controller's own settings, are where they go).
pub(crate) fn edge_rule_notes(plan: &Plan) -> Vec<String> {
    let mut notes = Vec::new();
    if !plan.edge.static_mounts.is_empty()
        && (plan.edge.auth.is_some() || plan.edge.forward_auth.is_some())
    {
        notes.push(
            "[edge] auth on the static mounts is not mapped: whatever serves the static files \
             must ask for it"
                .to_string(),
        );
    }
    for r in &plan.routes {
        if let Some(l) = &r.rate_limit {
            notes.push(format!(
                "route {}'s rate limit ({} per {} ms) is not mapped: the ingress controller's \
                 limits (e.g. ingress-nginx's limit-rpm) do it",
                r.key(),
                l.requests,
                l.per_ms
            ));
        }
        if let Some(f) = &r.forward_auth {
            notes.push(format!(
                "route {}'s forward auth ({}) is not mapped: the ingress controller's external \
                 auth (e.g. ingress-nginx's auth-url) does it",
                r.key(),
                f.url
            ));
        }
        if let Some(a) = &r.auth {
            notes.push(format!(
                "route {}'s basic auth ({}) is not mapped: the ingress controller's auth (a \
                 Secret made from the same file, e.g. ingress-nginx's auth-type: basic) does it",
                r.key(),
                a.users_file.display()
            ));
        }
        if !r.splits.is_empty() {
            let weights: Vec<String> = r
                .splits
                .iter()
                .map(|t| format!("{} {}", t.service, t.weight))
                .collect();
            notes.push(format!(
                "route {}'s split ({}{}) is not mapped: a Gateway API HTTPRoute's weighted \
                 backendRefs (or ingress-nginx's canary-weight) does it",
                r.key(),
                weights.join(", "),
                if r.sticky.is_some() { ", sticky" } else { "" }
            ));
        }
        if let Some(m) = &r.mirror {
            notes.push(format!(
                "route {}'s mirror to {} ({} per mille) is not mapped: a Gateway API \
                 HTTPRoute's RequestMirror filter (or ingress-nginx's mirror-target) does it",
                r.key(),
                m.service,
                m.per_mille
            ));
        }
        if !r.response_headers.is_empty() || !r.request_headers.is_empty() {
            notes.push(format!(
                "route {}'s header rules are not mapped: set them in the ingress controller \
                 (or a Gateway API HTTPRoute's RequestHeaderModifier/ResponseHeaderModifier)",
                r.key()
            ));
        }
    }
    let compressed: Vec<String> = plan
        .routes
        .iter()
        .filter(|r| r.compress.is_some())
        .map(|r| r.key())
        .collect();
    if !compressed.is_empty() || plan.edge.compress.is_some() {
        notes.push(format!(
            "compression ({}) is not mapped: turn it on in the ingress controller (e.g. \
             ingress-nginx's use-gzip in its ConfigMap, Traefik's compress middleware)",
            if compressed.is_empty() {
                "the static mounts".to_string()
            } else {
                format!("routes {}", compressed.join(", "))
            }
        ));
    }
    for d in &plan.edge.redirects {
        notes.push(format!(
            "the redirect of {}{} to {} ({}) is not mapped: an HTTPRoute RequestRedirect \
             filter or the ingress controller's redirect does it",
            d.host.as_deref().unwrap_or("*"),
            d.prefix,
            d.to,
            d.status
        ));
    }
    if let Some(c) = &plan.edge.canonical_host {
        notes.push(format!(
            "canonical_host ({c}) is not mapped: redirect the other hosts in the ingress \
             controller"
        ));
    }
    notes
}

/// The image the RabbitMQ init script runs in.
pub(crate) const CURL_IMAGE: &str = "curlimages/curl:8.10.1";

/// Where a recipe image keeps its data.
pub(crate) fn recipe_data_path(r: Recipe) -> Option<&'static str> {
    match r {
        Recipe::Postgres => Some("/var/lib/postgresql/data"),
        Recipe::Redis => Some("/data"),
        Recipe::Rabbitmq => Some("/var/lib/rabbitmq"),
        Recipe::Mongodb => Some("/data/db"),
        Recipe::Memcached => None,
    }
}

/// The Plan seen as workloads, with what the rewrites need.
#[derive(Debug)]
pub(crate) struct Model<'a> {
    pub plan: &'a Plan,
    pub workloads: Vec<Workload<'a>>,
    /// `127.0.0.1:23456` -> `db:5432`, longest key first.
    addresses: Vec<(String, String)>,
    /// Recipe passwords -> their variable.
    passwords: Vec<(String, PasswordRef)>,
    /// The in-cluster addresses of RabbitMQ recipes with `tls = true`: their clients'
    /// `amqps://` becomes `amqp://` (the exported broker speaks plain AMQP).
    plain_amqp: Vec<String>,
}

impl<'a> Model<'a> {
    pub(crate) fn new(plan: &'a Plan) -> Result<Model<'a>, ExportError> {
        let missing: Vec<String> = {
            let mut m: Vec<String> = plan
                .units
                .values()
                .filter(|u| matches!(u.run, Run::Command { .. }) && u.image.is_none())
                .map(|u| u.service.clone())
                .collect();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            return Err(ExportError::MissingImages(missing));
        }
        let mut groups: IndexMap<(String, Option<String>), Vec<&'a Unit>> = IndexMap::new();
        for u in plan.units.values() {
            groups
                .entry((u.service.clone(), u.instance.clone()))
                .or_default()
                .push(u);
        }
        let mut workloads = Vec::new();
        let mut addresses = Vec::new();
        let mut plain_amqp = Vec::new();
        let mut passwords = Vec::new();
        for ((service, instance), units) in &groups {
            let Some(first) = units.first() else { continue };
            let name = match instance {
                Some(i) => dns_name(&format!("{service}-{i}")),
                None => dns_name(service),
            };
            let recipe = match &first.run {
                Run::Recipe { recipe, spec } => Some((*recipe, spec)),
                Run::Command { .. } => None,
            };
            let port = match recipe {
                Some((r, _)) => Some(recipe_port(r)),
                None => first.port,
            };
            if let Some(p) = port {
                for u in units {
                    if let Some(local) = u.port {
                        addresses.push((
                            host_port(&client_host(u.bind), local),
                            format!("{name}:{p}"),
                        ));
                    }
                }
            }
            if let (Some((Recipe::Rabbitmq, spec)), Some(p)) = (recipe, port) {
                if spec.tls {
                    plain_amqp.push(format!("{name}:{p}"));
                }
            }
            if let Some((_, spec)) = recipe {
                let secret = format!("{name}-credentials");
                let mut add = |c: &Credentials, key: String, var: String| {
                    if !c.password.is_empty() {
                        passwords.push((
                            c.password.clone(),
                            PasswordRef {
                                var,
                                secret: secret.clone(),
                                key,
                                value: c.password.clone(),
                            },
                        ));
                    }
                };
                add(
                    &spec.admin,
                    "password".into(),
                    var_name(&["grove", &name, "password"]),
                );
                for r in &spec.roles {
                    add(
                        r,
                        format!("password-{}", dns_name(&r.user)),
                        var_name(&["grove", &name, &r.user, "password"]),
                    );
                }
            }
            workloads.push(Workload {
                name,
                service: &first.service,
                instance: first.instance.as_deref(),
                unit: first,
                replicas: u32::try_from(units.len()).unwrap_or(1),
                port,
                recipe,
            });
        }
        addresses.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        passwords.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        Ok(Model {
            plan,
            workloads,
            addresses,
            passwords,
            plain_amqp,
        })
    }

    /// Local addresses become in-cluster ones; the workload's own address becomes `0.0.0.0`
    /// (a container must listen on every interface to be reached).
    pub(crate) fn rewrite(&self, w: &Workload<'_>, text: &str) -> String {
        let mut out = text.to_string();
        if let (Some(local), Some(p)) = (w.unit.port, w.port) {
            let own = host_port(&client_host(w.unit.bind), local);
            out = replace_addr(&out, &own, &format!("0.0.0.0:{p}"));
        }
        for (from, to) in &self.addresses {
            out = replace_addr(&out, from, to);
        }
        for addr in &self.plain_amqp {
            out = plain_amqp(&out, addr);
        }
        strip_local_tls(&out)
    }

    /// A variable of a workload, rewritten and classified. `style` turns a password variable
    /// name into its reference: `$(NAME)` for Kubernetes, `${NAME}` for compose.
    pub(crate) fn var(
        &self,
        w: &Workload<'_>,
        key: &str,
        value: &str,
        secret: bool,
        style: fn(&str) -> String,
    ) -> Var {
        if key == "HOST" {
            return Var::Plain("0.0.0.0".into());
        }
        if key == "GROVE_UNIT" {
            return Var::Plain(w.name.clone());
        }
        if key == "PORT" {
            if let Some(p) = w.port {
                return Var::Plain(p.to_string());
            }
        }
        let rewritten = self.rewrite(w, value);
        let (template, refs) = self.passwords_to_refs(&rewritten, style);
        if !refs.is_empty() {
            Var::Composed { template, refs }
        } else if secret {
            Var::Secret(value.to_string())
        } else {
            Var::Plain(rewritten)
        }
    }

    /// Replaces each secret variable's value that the stack file interpolated into `text` (a
    /// command line) by a reference to the variable, and names the variables it refers to.
    pub(crate) fn secrets_to_refs(
        &self,
        text: &str,
        style: fn(&str) -> String,
    ) -> (String, Vec<(String, String)>) {
        let mut out = text.to_string();
        let mut used = Vec::new();
        for (name, value) in &self.plan.interpolated_secrets {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &style(name));
                used.push((name.clone(), value.clone()));
            }
        }
        (out, used)
    }

    /// Replaces each recipe password in `text` by its variable reference.
    pub(crate) fn passwords_to_refs(
        &self,
        text: &str,
        style: fn(&str) -> String,
    ) -> (String, Vec<PasswordRef>) {
        let mut out = text.to_string();
        let mut refs = Vec::new();
        for (pw, r) in &self.passwords {
            if pw.len() >= 4 && out.contains(pw.as_str()) {
                out = out.replace(pw.as_str(), &style(&r.var));
                refs.push(r.clone());
            }
        }
        refs.sort();
        refs.dedup();
        (out, refs)
    }

    /// The workload a dependency names (a unit of the Plan).
    pub(crate) fn workload_of(&self, unit: &str) -> Option<&Workload<'a>> {
        let u = self.plan.units.get(unit)?;
        self.workloads
            .iter()
            .find(|w| w.service == u.service && w.instance == u.instance.as_deref())
    }

    /// A workload's dependencies, one per workload, with the strongest condition.
    pub(crate) fn deps(&self, w: &Workload<'_>) -> Vec<(&Workload<'a>, Condition)> {
        let mut out: Vec<(&Workload<'a>, Condition)> = Vec::new();
        for d in &w.unit.depends_on {
            let Some(dw) = self.workload_of(&d.unit) else {
                continue;
            };
            match out.iter_mut().find(|(x, _)| x.name == dw.name) {
                Some(_) => {}
                None => out.push((dw, d.condition)),
            }
        }
        out
    }

    /// The password variables of one recipe workload.
    pub(crate) fn recipe_passwords(&self, w: &Workload<'_>) -> Vec<PasswordRef> {
        let secret = format!("{}-credentials", w.name);
        let mut v: Vec<PasswordRef> = self
            .passwords
            .iter()
            .filter(|(_, r)| r.secret == secret)
            .map(|(_, r)| r.clone())
            .collect();
        v.sort();
        v
    }
}

/// Replaces `from` where it is a whole address (not followed by another digit).
/// `amqps://user:pw@ADDR/...` becomes `amqp://...` for the broker at `addr`.
fn plain_amqp(text: &str, addr: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("amqps://") {
        let after = &rest[at + "amqps://".len()..];
        let authority = after.split(['/', '?', '"', '\'', ' ']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        out.push_str(&rest[..at]);
        out.push_str(if host == addr { "amqp://" } else { "amqps://" });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A recipe URL's TLS settings point at this machine's CA file and ask for a TLS server,
/// which the exported one is not (`recipe_network_notes`): they are taken out, and
/// `rediss://` becomes `redis://`.
fn strip_local_tls(text: &str) -> String {
    let mut out = text.to_string();
    for (query, scheme) in [
        ("sslmode=verify-full&sslrootcert=", None),
        (
            "ssl_cert_reqs=required&ssl_ca_certs=",
            Some(("rediss://", "redis://")),
        ),
    ] {
        while let Some(at) = out.find(query) {
            let value_end = out[at + query.len()..]
                .find(['&', '"', '\'', ' '])
                .map_or(out.len(), |i| at + query.len() + i);
            if !out[at..value_end].ends_with("certs/ca.pem") {
                break;
            }
            let (start, end) = match (out[..at].chars().last(), out[value_end..].starts_with('&')) {
                // `?ours&rest`: keep `?rest`.
                (Some('?'), true) => (at, value_end + 1),
                // `?ours` or `&ours`: the separator goes too.
                (Some('?' | '&'), _) => (at - 1, value_end),
                _ => (at, value_end),
            };
            out.replace_range(start..end, "");
            if let Some((from, to)) = scheme {
                out = out.replace(from, to);
            }
        }
    }
    out
}

fn replace_addr(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Seconds, rounded up, at least `min`.
pub(crate) fn secs(ms: u64, min: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000).max(min)).unwrap_or(i32::MAX)
}

/// The SQL that creates a PostgreSQL recipe's roles and databases in a fresh cluster,
/// reading each role's password from a psql variable (`-v pw_turkey=...`).
pub(crate) fn postgres_init_sql(spec: &RecipeSpec) -> String {
    let mut sql = String::new();
    for r in &spec.roles {
        let var = format!("pw_{}", var_name(&[&r.user]).to_lowercase());
        sql.push_str(&format!(
            "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '{u}', :'{var}') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{u}')\\gexec\n",
            u = r.user
        ));
    }
    for d in &spec.databases {
        sql.push_str(&format!(
            "SELECT format('CREATE DATABASE %I OWNER %I', '{n}', '{o}') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{n}')\\gexec\n",
            n = d.name,
            o = d.owner
        ));
        if d.private {
            sql.push_str(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE \"{n}\" FROM PUBLIC;\nGRANT CONNECT, TEMPORARY ON DATABASE \"{n}\" TO \"{o}\";\n",
                n = d.name,
                o = d.owner
            ));
        }
    }
    sql
}

/// The psql variables `postgres_init_sql` reads, as `-v name="$(VAR)"` arguments built by
/// `style`.
pub(crate) fn postgres_init_vars(
    spec: &RecipeSpec,
    refs: &[PasswordRef],
    style: fn(&str) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in &spec.roles {
        let var = format!("pw_{}", var_name(&[&r.user]).to_lowercase());
        if let Some(p) = refs
            .iter()
            .find(|p| p.key == format!("password-{}", dns_name(&r.user)))
        {
            out.push(format!("-v {var}=\"{}\"", style(&p.var)));
        }
    }
    out
}

/// Whether a unit runs to completion.
pub(crate) fn is_task(u: &Unit) -> bool {
    u.kind == ServiceKind::Task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_url_loses_the_local_tls_settings_and_keeps_its_own() {
        let ca = "/srv/app/.grove/certs/ca.pem";
        assert_eq!(
            strip_local_tls(&format!(
                "postgresql://grove:pw@db:5432/app?sslmode=verify-full&sslrootcert={ca}"
            )),
            "postgresql://grove:pw@db:5432/app"
        );
        assert_eq!(
            strip_local_tls(&format!(
                "postgresql://db:5432/app?sslmode=verify-full&sslrootcert={ca}&application_name=x"
            )),
            "postgresql://db:5432/app?application_name=x"
        );
        assert_eq!(
            strip_local_tls(&format!(
                "rediss://default:pw@cache:6379?ssl_cert_reqs=required&ssl_ca_certs={ca}"
            )),
            "redis://default:pw@cache:6379"
        );
        assert_eq!(
            plain_amqp(
                "amqps://grove:$(P)@mq:5672/app amqps://x@other:5671",
                "mq:5672"
            ),
            "amqp://grove:$(P)@mq:5672/app amqps://x@other:5671"
        );
        // Somebody else's CA file is the user's own setting.
        let theirs = "postgresql://db/app?sslmode=verify-full&sslrootcert=/etc/ssl/corp.pem";
        assert_eq!(strip_local_tls(theirs), theirs);
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(dns_name("web@Turkey#2"), "web-turkey-2");
        assert_eq!(dns_name("__"), "x");
        assert_eq!(
            replace_addr(
                "a 127.0.0.1:2000 b 127.0.0.1:20001",
                "127.0.0.1:2000",
                "db:5432"
            ),
            "a db:5432 b 127.0.0.1:20001"
        );
        assert_eq!(
            var_name(&["grove", "db-x", "password"]),
            "GROVE_DB_X_PASSWORD"
        );
        assert_eq!(secs(1500, 1), 2);
        assert_eq!(secs(0, 1), 1);
    }
}
