//! HTTP Basic authentication of a route (`auth = { basic = { users_file } }`) against the
//! password hashes `htpasswd` writes: bcrypt, Apache's MD5 (`$apr1$`) and `{SHA}`. Hashes are
//! compared in constant time; a user the file does not have costs a verification all the
//! same, so timing does not say which names exist. A verified pair is remembered (by a
//! digest of the password, never the password) for a few minutes, as Caddy's basic auth
//! does, so that bcrypt's deliberate slowness is paid once per client, not per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use grove_plan::edge_rules::{BasicAuth, PasswordHash};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use md5::{Digest, Md5};

/// How long a verified user and password are taken without verifying again.
const REMEMBER: Duration = Duration::from_secs(300);
/// Most remembered pairs (the oldest go first).
const REMEMBERED: usize = 1024;

/// A route's users.
#[derive(Debug)]
pub struct Basic {
    users: HashMap<String, PasswordHash>,
    /// `Basic realm="..."`.
    pub challenge: HeaderValue,
    remembered: Mutex<HashMap<(String, [u8; 32]), Instant>>,
}

impl Basic {
    pub fn new(a: &BasicAuth) -> Basic {
        Basic {
            users: a.users.iter().cloned().collect(),
            challenge: HeaderValue::try_from(format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"",
                a.realm
            ))
            .unwrap_or(HeaderValue::from_static("Basic realm=\"grove\"")),
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The user the request's `Authorization: Basic` names, when its password is right.
    pub async fn check(&self, headers: &HeaderMap) -> Option<String> {
        let (user, password) = credentials(headers)?;
        let key = (
            user.clone(),
            digest32(ring::digest::digest(&ring::digest::SHA256, password.as_bytes()).as_ref()),
        );
        let now = Instant::now();
        if let Ok(r) = self.remembered.lock() {
            if r.get(&key)
                .is_some_and(|at| now.duration_since(*at) < REMEMBER)
            {
                return Some(user);
            }
        }
        let hash = self.users.get(&user).cloned();
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => verify(&h, &password),
            None => {
                // The same work for a name the file does not have.
                let _ = bcrypt::verify(&password, DUMMY);
                false
            }
        })
        .await
        .unwrap_or(false);
        if !ok {
            return None;
        }
        if let Ok(mut r) = self.remembered.lock() {
            if r.len() >= REMEMBERED {
                r.retain(|_, at| now.duration_since(*at) < REMEMBER);
                if r.len() >= REMEMBERED {
                    r.clear();
                }
            }
            r.insert(key, now);
        }
        Some(user)
    }
}

/// A bcrypt hash (htpasswd's default cost, 5) of random bytes nobody kept, verified for
/// unknown users.
const DUMMY: &str = "$2y$05$.DzeBex5B5xhX8Hsx2WnveZmzGrSN.pjdDYHILxUO/sE.inebcuPC";

fn digest32(d: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&d[..32]);
    out
}

/// `Authorization: Basic base64(user:password)`.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Whether `password` matches `hash`.
pub fn verify(hash: &PasswordHash, password: &str) -> bool {
    match hash {
        PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        PasswordHash::Apr1 { salt, hash } => same(
            apr1(password.as_bytes(), salt.as_bytes()).as_bytes(),
            hash.as_bytes(),
        ),
        PasswordHash::Sha1(b64) => {
            let d =
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
            let mine = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
            same(mine.as_bytes(), b64.as_bytes())
        }
    }
}

/// Equal, in time that depends only on the length.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Apache's MD5 crypt (`apr_md5_encode`): the 22 characters after `$apr1$SALT$`.
pub fn apr1(pw: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(b"$apr1$");
    ctx.update(salt);
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let fin = alt.finalize();
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&fin[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i != 0 {
        if i & 1 != 0 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1.min(pw.len())]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 != 0 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 != 0 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

/// A route's forward authentication (Traefik's ForwardAuth): each request is first sent,
/// without its body, to the service at `url`; a 2xx answer lets it through with the headers
/// `copy` names taken from that answer; any other answer goes back to the client as the
/// service gave it; a service that cannot be reached is a 503, never a pass.
#[derive(Debug)]
pub struct Forward {
    url: hyper::Uri,
    copy: Vec<hyper::header::HeaderName>,
}

/// How long the authentication service may take to answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

impl Forward {
    pub fn new(f: &grove_plan::ForwardAuthTarget) -> Option<Forward> {
        Some(Forward {
            url: f.url.parse().ok()?,
            copy: f
                .copy_headers
                .iter()
                .filter_map(|h| hyper::header::HeaderName::try_from(h.as_str()).ok())
                .collect(),
        })
    }

    /// Asks the service about `req`: the headers to add to it, or the answer to give.
    pub(crate) async fn ask<B>(
        &self,
        shared: &crate::Shared,
        req: &hyper::Request<B>,
        scheme: &str,
        client: std::net::IpAddr,
        id: &str,
    ) -> Result<Vec<(hyper::header::HeaderName, HeaderValue)>, hyper::Response<crate::proxy::BoxBody>>
    {
        use http_body_util::BodyExt;
        use hyper::header;
        let mut ask = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(self.url.clone());
        if let Some(h) = ask.headers_mut() {
            for (k, v) in req.headers() {
                if k == header::HOST
                    || k == header::CONTENT_LENGTH
                    || k == header::TRANSFER_ENCODING
                    || crate::rules::hop_by_hop(k.as_str().as_bytes())
                {
                    continue;
                }
                h.append(k.clone(), v.clone());
            }
            let uri = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let host = req.headers().get(header::HOST).cloned().or_else(|| {
                req.uri()
                    .authority()
                    .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
            });
            for (name, value) in [
                (
                    "x-forwarded-method",
                    HeaderValue::try_from(req.method().as_str()).ok(),
                ),
                ("x-forwarded-proto", HeaderValue::try_from(scheme).ok()),
                ("x-forwarded-uri", HeaderValue::try_from(uri).ok()),
                (
                    "x-forwarded-for",
                    HeaderValue::try_from(client.to_string()).ok(),
                ),
                ("x-forwarded-host", host),
                ("x-request-id", HeaderValue::try_from(id).ok()),
            ] {
                if let Some(v) = value {
                    h.insert(name, v);
                }
            }
        }
        let Ok(ask) = ask.body(crate::pages::full(bytes::Bytes::new())) else {
            return Err(unreachable_auth(id));
        };
        let answer = match tokio::time::timeout(FORWARD_TIMEOUT, shared.client.request(ask)).await {
            Ok(Ok(a)) => a,
            _ => return Err(unreachable_auth(id)),
        };
        if answer.status().is_success() {
            let copied = self
                .copy
                .iter()
                .filter_map(|n| answer.headers().get(n).map(|v| (n.clone(), v.clone())))
                .collect();
            return Ok(copied);
        }
        // The service's answer, as it gave it (a login redirect, a 401 with its challenge).
        let (mut parts, body) = answer.into_parts();
        crate::rules::strip_hop_by_hop(&mut parts.headers);
        let body = body
            .map_err(|e| Box::new(e) as crate::proxy::BoxError)
            .boxed();
        Err(hyper::Response::from_parts(parts, body))
    }
}

fn unreachable_auth(id: &str) -> hyper::Response<crate::proxy::BoxBody> {
    crate::pages::error_page(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        "the authentication service cannot be reached",
        id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use grove_plan::edge_rules::parse_htpasswd_line;

    fn hash(line: &str) -> PasswordHash {
        parse_htpasswd_line(line).unwrap().unwrap().1
    }

    #[test]
    fn apr1_matches_apache() {
        assert_eq!(apr1(b"password", b"RandSalt"), "PgCXHRrkpSt4cbyC2C6bm/");
        assert_eq!(apr1(b"password", b"lZL6V/ci"), "eIMz/iKDkbtys/uU7LEK00");
    }

    #[test]
    fn each_htpasswd_format_verifies_its_password_only() {
        // Written by Debian's htpasswd (-B, -m, -s).
        for (line, pw) in [
            (
                "alice:$2y$05$BE3esmlcvq5/rzBFjj3GCeGWyVGlGM1bdYn5eQ9CahSvsAf8gHTVS",
                "secret1",
            ),
            ("bob:$apr1$CMOpfdY6$8L.zRvoGO/0jlkG3TkM080", "secret2"),
            ("carol:{SHA}QY7lFvHLCVxQ/y8Qp2GSiJwoHzo=", "secret3"),
        ] {
            assert!(verify(&hash(line), pw), "{line}");
            assert!(!verify(&hash(line), "wrong"), "{line}");
            assert!(!verify(&hash(line), ""), "{line}");
        }
    }

    #[test]
    fn credentials_come_from_a_basic_authorization_only() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic Ym9iOnNlY3JldDI="),
        );
        assert_eq!(credentials(&h), Some(("bob".into(), "secret2".into())));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(credentials(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(credentials(&h), None);
    }
}
