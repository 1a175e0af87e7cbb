//! The edge's request-time texts and header rules, as the stack file writes them: a text with
//! `{placeholders}` filled per request (`"https://example.org{uri}"`, `"{request_id}"`), a
//! route's header rules (`set`, `add`, `remove`), and the redirects of `[edge] redirects`.
//! Parsed and checked here, when the file is read; filled by the edge for each request.

use serde::Serialize;

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Var {
    /// The request's id (`X-Request-Id`).
    RequestId,
    /// The host the client asked for, without a port.
    Host,
    /// The path.
    Path,
    /// The query string, with its `?` (empty when there is none).
    Query,
    /// Path and query: `/a?b=1`.
    Uri,
    /// `http` or `https`.
    Scheme,
    /// The client's address.
    Client,
    /// The method.
    Method,
}

impl Var {
    const ALL: [Var; 8] = [
        Var::RequestId,
        Var::Host,
        Var::Path,
        Var::Query,
        Var::Uri,
        Var::Scheme,
        Var::Client,
        Var::Method,
    ];

    /// Its name in braces.
    pub fn name(self) -> &'static str {
        match self {
            Var::RequestId => "request_id",
            Var::Host => "host",
            Var::Path => "path",
            Var::Query => "query",
            Var::Uri => "uri",
            Var::Scheme => "scheme",
            Var::Client => "client",
            Var::Method => "method",
        }
    }
}

/// One piece of a [`Text`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    Literal(String),
    Var(Var),
}

/// A text with placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Text(pub Vec<Piece>);

/// What a request fills a [`Text`] with.
#[derive(Debug, Clone, Copy)]
pub struct RequestVars<'a> {
    pub request_id: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    /// Without the `?`.
    pub query: Option<&'a str>,
    pub scheme: &'a str,
    pub client: &'a str,
    pub method: &'a str,
}

impl Text {
    /// `{name}` is a placeholder (one of [`Var`]'s names), `{{` and `}}` are braces; an
    /// unknown name or an unclosed brace is an error naming what is valid.
    pub fn parse(s: &str) -> Result<Text, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                lit.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err("a lone `}` (write `}}` for a brace)".into());
            }
            let Some(end) = tail.find('}') else {
                return Err("a `{` that is not closed (write `{{` for a brace)".into());
            };
            let name = &tail[1..end];
            let Some(var) = Var::ALL.iter().copied().find(|v| v.name() == name) else {
                let known: Vec<String> = Var::ALL
                    .iter()
                    .map(|v| format!("{{{}}}", v.name()))
                    .collect();
                return Err(format!(
                    "`{{{name}}}` is not a placeholder: {} are",
                    known.join(", ")
                ));
            };
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Var(var));
            rest = &tail[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Text(pieces))
    }

    /// The text for one request.
    pub fn render(&self, v: &RequestVars<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Var(var) => match var {
                    Var::RequestId => out.push_str(v.request_id),
                    Var::Host => out.push_str(v.host),
                    Var::Path => out.push_str(v.path),
                    Var::Query => {
                        if let Some(q) = v.query {
                            out.push('?');
                            out.push_str(q);
                        }
                    }
                    Var::Uri => {
                        out.push_str(v.path);
                        if let Some(q) = v.query {
                            out.push('?');
                            out.push_str(q);
                        }
                    }
                    Var::Scheme => out.push_str(v.scheme),
                    Var::Client => out.push_str(v.client),
                    Var::Method => out.push_str(v.method),
                },
            }
        }
        out
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            match p {
                Piece::Literal(s) => f.write_str(&s.replace('{', "{{").replace('}', "}}"))?,
                Piece::Var(v) => write!(f, "{{{}}}", v.name())?,
            }
        }
        Ok(())
    }
}

/// Header rules of one direction (`headers` for responses, `request_headers` for requests):
/// `remove` first, then `set` (replacing), then `add` (one more line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct HeaderRules {
    /// Lowercase names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, Text)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, Text)>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// One of `[edge] redirects`: requests for `host` (any when `None`) under `prefix` are sent
/// to `to` with `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub host: Option<String>,
    pub prefix: String,
    pub to: Text,
    pub status: u16,
}

/// A route's `auth = { basic = { users_file, realm } }`: HTTP Basic authentication against
/// an htpasswd file (read when the stack file is, and again at each reload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasicAuth {
    /// The realm the browser shows.
    pub realm: String,
    /// The file, as the stack file names it.
    pub users_file: std::path::PathBuf,
    /// Its users and their password hashes (never shown).
    #[serde(skip)]
    pub users: Vec<(String, PasswordHash)>,
}

/// A route's `auth = { forward = { url, copy_headers } }`: each request is first asked of an
/// authentication service (Traefik's ForwardAuth). `url` may name a service (`${auth.url}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardAuth {
    #[serde(skip)]
    pub url: crate::Template,
    /// Headers of the service's 2xx answer copied onto the request (lowercase).
    pub copy_headers: Vec<String>,
}

/// A password hash of a format `htpasswd` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$...` (also `$2a$`, `$2b$`): `htpasswd -B`.
    Bcrypt(String),
    /// `$apr1$SALT$HASH`: Apache's MD5, `htpasswd -m` (its default).
    Apr1 { salt: String, hash: String },
    /// `{SHA}base64`: `htpasswd -s`.
    Sha1(String),
}

/// One line of an htpasswd file: `None` for a blank line or a comment; an error saying what
/// is wrong (a format grove does not take, such as crypt(3) or plain text, among them).
pub fn parse_htpasswd_line(line: &str) -> Result<Option<(String, PasswordHash)>, String> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let Some((user, hash)) = line.split_once(':') else {
        return Err("not `user:hash` (make the file with `htpasswd -B`)".into());
    };
    if user.is_empty() {
        return Err("an empty user name".into());
    }
    let hash = hash.trim();
    let parsed = if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
        if hash.len() != 60 {
            return Err(format!("{user}'s bcrypt hash is cut short or too long"));
        }
        PasswordHash::Bcrypt(hash.to_string())
    } else if let Some(rest) = hash.strip_prefix("$apr1$") {
        match rest.split_once('$') {
            Some((salt, h)) if !salt.is_empty() && salt.len() <= 8 && h.len() == 22 => {
                PasswordHash::Apr1 {
                    salt: salt.to_string(),
                    hash: h.to_string(),
                }
            }
            _ => return Err(format!("{user}'s $apr1$ hash is malformed")),
        }
    } else if let Some(b64) = hash.strip_prefix("{SHA}") {
        if b64.len() != 28 {
            return Err(format!("{user}'s {{SHA}} hash is malformed"));
        }
        PasswordHash::Sha1(b64.to_string())
    } else {
        return Err(format!(
            "{user}'s password is in a format grove does not take (crypt or plain text): \
             write it with `htpasswd -B` (bcrypt), `-m` (apr1) or `-s` (SHA)"
        ));
    };
    Ok(Some((user.to_string(), parsed)))
}

/// A route's `rate_limit`: a token bucket per key, refilled at `requests` per `per`, holding
/// up to `burst` tokens (a key's first `burst` requests pass at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub requests: u32,
    /// The window, in milliseconds.
    pub per_ms: u64,
    pub burst: u32,
    pub by: RateKey,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client's address.
    Client,
    /// A request header's value (lowercase name); requests without it share one bucket.
    Header(String),
}

/// One of a route's `targets`: a service and its weight among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedTarget {
    pub service: String,
    /// Its share is `weight` over the sum of the weights (0: no new requests).
    pub weight: u32,
}

/// A route's `mirror`: a copy of `per_mille` thousandths of its requests (those without a
/// body, or with one the edge holds whole) goes to `service`, whose answers are discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mirror {
    pub service: String,
    pub per_mille: u32,
}

/// The cookie a sticky split route remembers a client's target in (`sticky = true`).
pub const STICKY_COOKIE: &str = "grove_target";

/// A content coding the edge compresses answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Zstd,
    Br,
    Gzip,
}

impl Encoding {
    /// Its name in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The coding of a name (`compress = ["zstd", "gzip"]`).
    pub fn parse(name: &str) -> Option<Encoding> {
        [Encoding::Zstd, Encoding::Br, Encoding::Gzip]
            .into_iter()
            .find(|e| e.token() == name)
    }
}

/// A route's `compress`: the codings offered, in the edge's order of preference (among those
/// a client accepts with the same weight), and the smallest answer worth compressing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compress {
    /// Empty: `compress = false` (a route turning off `[edge]`'s default).
    pub encodings: Vec<Encoding>,
    /// Answers that say a smaller `Content-Length` go as they are.
    pub min_length: u64,
}

impl Compress {
    /// Caddy's `encode`: zstd, then gzip; from 512 bytes.
    pub const DEFAULT_ENCODINGS: [Encoding; 2] = [Encoding::Zstd, Encoding::Gzip];
    pub const DEFAULT_MIN_LENGTH: u64 = 512;

    /// Whether it compresses anything.
    pub fn is_on(&self) -> bool {
        !self.encodings.is_empty()
    }
}

/// One of `[edge] error_pages`: the stack's own page for a status, replacing grove's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorPage {
    pub status: u16,
    /// The file, as the stack file names it.
    pub file: std::path::PathBuf,
    /// Its HTML (read with the stack file, and again at each reload).
    #[serde(skip)]
    pub html: String,
}

/// What `[edge]` gives every route (`headers`, `request_headers`, `rate_limit`, `compress`,
/// `auth`, `max_body`, `buffer_body`): a route's own header rules go on top of these (its
/// `set` of a name wins, `remove` and `add` add up); its own value of any other key replaces
/// these (`auth = false` turns `[edge]`'s authentication off for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RouteDefaults {
    pub response_headers: HeaderRules,
    pub request_headers: HeaderRules,
    pub rate_limit: Option<RateLimit>,
    pub compress: Option<Compress>,
    /// `auth = { basic = ... }`: every route's, and the static mounts'.
    pub auth: Option<BasicAuth>,
    /// `auth = { forward = ... }`: every route's, and the static mounts'.
    pub forward_auth: Option<ForwardAuth>,
    /// The largest request body of a route that sets no `max_body`.
    pub max_body: Option<u64>,
    /// The request body size held whole of a route that sets no `buffer_body`.
    pub buffer_body: Option<u64>,
}

impl HeaderRules {
    /// These rules under `own`: own's `set` of a name replaces this one's.
    pub fn under(&self, own: &HeaderRules) -> HeaderRules {
        let mut out = own.clone();
        for r in &self.remove {
            if !out.remove.contains(r) {
                out.remove.push(r.clone());
            }
        }
        let mut set: Vec<(String, Text)> = self
            .set
            .iter()
            .filter(|(n, _)| !own.set.iter().any(|(o, _)| o == n))
            .cloned()
            .collect();
        set.extend(own.set.iter().cloned());
        out.set = set;
        let mut add = self.add.clone();
        add.extend(own.add.iter().cloned());
        out.add = add;
        out
    }
}

/// `10.77.0.0/24`, or an address alone (one host): the address and the prefix length.
pub fn network(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip: std::net::IpAddr = addr.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = match len {
        Some(l) => l.trim().parse().ok().filter(|&l| l <= max)?,
        None => max,
    };
    Some((ip, len))
}

/// Whether `name` can be an HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>() -> RequestVars<'a> {
        RequestVars {
            request_id: "r-1",
            host: "www.example.org",
            path: "/a/b",
            query: Some("x=1"),
            scheme: "https",
            client: "192.0.2.7",
            method: "GET",
        }
    }

    #[test]
    fn placeholders_are_filled_and_braces_escaped() {
        let t = Text::parse("https://example.org{uri}").unwrap();
        assert_eq!(t.render(&vars()), "https://example.org/a/b?x=1");
        let t = Text::parse("{scheme}://new{path}{query} id={request_id} from {client} {{ok}}")
            .unwrap();
        assert_eq!(
            t.render(&vars()),
            "https://new/a/b?x=1 id=r-1 from 192.0.2.7 {ok}"
        );
        assert_eq!(
            t.to_string(),
            "{scheme}://new{path}{query} id={request_id} from {client} {{ok}}"
        );
        let no_query = RequestVars {
            query: None,
            ..vars()
        };
        assert_eq!(Text::parse("{uri}").unwrap().render(&no_query), "/a/b");
    }

    #[test]
    fn a_bad_placeholder_says_what_is_valid() {
        let e = Text::parse("{reqest_id}").unwrap_err();
        assert!(
            e.starts_with("`{reqest_id}` is not a placeholder: {request_id}, {host}"),
            "{e}"
        );
        assert!(Text::parse("a { b").unwrap_err().contains("not closed"));
        assert!(Text::parse("a } b").unwrap_err().contains("lone"));
    }

    #[test]
    fn htpasswd_lines_in_the_formats_htpasswd_writes() {
        let b = parse_htpasswd_line(
            "alice:$2y$05$BE3esmlcvq5/rzBFjj3GCeGWyVGlGM1bdYn5eQ9CahSvsAf8gHTVS",
        )
        .unwrap();
        assert!(matches!(b, Some((u, PasswordHash::Bcrypt(_))) if u == "alice"));
        let a = parse_htpasswd_line("bob:$apr1$CMOpfdY6$8L.zRvoGO/0jlkG3TkM080").unwrap();
        assert_eq!(
            a,
            Some((
                "bob".into(),
                PasswordHash::Apr1 {
                    salt: "CMOpfdY6".into(),
                    hash: "8L.zRvoGO/0jlkG3TkM080".into()
                }
            ))
        );
        let s = parse_htpasswd_line("carol:{SHA}QY7lFvHLCVxQ/y8Qp2GSiJwoHzo=").unwrap();
        assert!(matches!(s, Some((_, PasswordHash::Sha1(_)))));
        assert_eq!(parse_htpasswd_line("# comment").unwrap(), None);
        assert_eq!(parse_htpasswd_line("").unwrap(), None);
        assert!(parse_htpasswd_line("dave:plaintext")
            .unwrap_err()
            .contains("format grove does not take"));
        assert!(parse_htpasswd_line("nocolon")
            .unwrap_err()
            .contains("user:hash"));
        assert!(parse_htpasswd_line("eve:$2y$05$short")
            .unwrap_err()
            .contains("cut short"));
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(is_header_name("X-Frame-Options"));
        assert!(!is_header_name("X Frame"));
        assert!(!is_header_name(""));
        assert!(!is_header_name("a:b"));
    }
}
