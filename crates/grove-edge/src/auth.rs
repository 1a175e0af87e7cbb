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
