//! ACME (RFC 8555) with instant-acme: one certificate per host, HTTP-01 answered by the edge's
//! own HTTP listener (or TLS-ALPN-01 on its HTTPS listener when the CA offers no HTTP-01),
//! kept in `<state>/certs/acme/<host>/` (key mode 0600) with the account beside them.
//!
//! Renewal happens at two thirds of a certificate's lifetime, checked at start and every
//! 12 hours; a failure is retried with backoff (1 min doubling to 6 h) while the old
//! certificate, if any, keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, KeyPair};

use crate::tls::{self, CertStore, Loaded, TlsError};
use crate::EdgeEvent;

/// How often certificates are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);

/// What the ACME manager needs.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// Directory URL.
    pub directory: String,
    /// A CA bundle to trust for the directory (a private or test CA).
    pub ca: Option<PathBuf>,
    /// Contact email.
    pub email: Option<String>,
    /// Hosts to get certificates for.
    pub hosts: Vec<String>,
    /// `<state>/certs/acme`.
    pub dir: PathBuf,
    /// The challenge answered when the CA offers it.
    pub prefer_alpn: bool,
}

/// HTTP-01 answers: token -> key authorization.
pub type Tokens = Arc<RwLock<HashMap<String, String>>>;

/// The store slot of a host's ACME certificate.
pub fn slot(host: &str) -> String {
    format!("acme:{host}")
}

fn host_dir(dir: &Path, host: &str) -> PathBuf {
    dir.join(host.replace('*', "_wildcard"))
}

/// Loads the certificates already on disk into `store` (expired or unreadable ones are left
/// out, to be issued again).
pub fn load_cached(settings: &AcmeSettings, store: &CertStore) {
    for host in &settings.hosts {
        match load_host(&settings.dir, host) {
            Ok(l) => store.set(&slot(host), l),
            Err(TlsError::Io { .. }) => {}
            Err(e) => tracing::warn!("ACME certificate for {host} on disk: {e}"),
        }
    }
}

/// A host's certificate as issued earlier, from `dir` (`<state>/certs/acme`); a missing file
/// is [`TlsError::Io`].
pub fn load_host(dir: &Path, host: &str) -> Result<Loaded, TlsError> {
    let d = host_dir(dir, host);
    let mut l = tls::load_files(&d.join("cert.pem"), &d.join("key.pem"))?;
    l.info.source = "acme".into();
    Ok(l)
}

/// Whether a certificate is due: none, or past two thirds of its lifetime.
pub fn due(cert: Option<&Loaded>, now: i64) -> bool {
    match cert {
        None => true,
        Some(l) => {
            let (from, to) = (l.info.not_before, l.info.not_after);
            now >= from + (to - from) * 2 / 3
        }
    }
}

/// Keeps every host's certificate issued and renewed, for as long as the edge runs.
pub async fn manage(
    settings: AcmeSettings,
    store: Arc<CertStore>,
    tokens: Tokens,
    events: tokio::sync::mpsc::UnboundedSender<EdgeEvent>,
) {
    let mut backoff: HashMap<String, Duration> = HashMap::new();
    let mut account: Option<Account> = None;
    loop {
        let mut next = CHECK_EVERY;
        for host in &settings.hosts {
            let current = store.get(&slot(host));
            if !due(current.as_ref(), tls::unix_now()) {
                continue;
            }
            let renewing = current.is_some();
            match issue(&settings, &mut account, host, &store, &tokens).await {
                Ok(l) => {
                    backoff.remove(host);
                    let message = format!(
                        "certificate for {host} {} by {}, valid until {}",
                        if renewing { "renewed" } else { "issued" },
                        l.info.issuer,
                        tls::date(l.info.not_after)
                    );
                    tracing::info!("{message}");
                    store.set(&slot(host), l);
                    let _ = events.send(EdgeEvent {
                        kind: if renewing {
                            "cert-renewed"
                        } else {
                            "cert-issued"
                        }
                        .into(),
                        message,
                    });
                }
                Err(e) => {
                    let wait = backoff
                        .get(host)
                        .map(|d| (*d * 2).min(Duration::from_secs(6 * 3600)))
                        .unwrap_or(Duration::from_secs(60));
                    backoff.insert(host.clone(), wait);
                    next = next.min(wait);
                    let message = format!(
                        "certificate for {host} failed: {e}; {}retrying in {}",
                        if renewing {
                            "the current one keeps serving; "
                        } else {
                            ""
                        },
                        humantime::format_duration(wait)
                    );
                    tracing::warn!("{message}");
                    let _ = events.send(EdgeEvent {
                        kind: "cert-failed".into(),
                        message,
                    });
                }
            }
        }
        tokio::time::sleep(next).await;
    }
}

/// An ACME failure, said plainly.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME client or server failed.
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    /// Local files or certificates.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// Key or CSR generation.
    #[error("{0}")]
    Key(#[from] rcgen::Error),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

async fn account(settings: &AcmeSettings) -> Result<Account, AcmeError> {
    let path = settings.dir.join("account.json");
    let builder = || -> Result<_, AcmeError> {
        Ok(match &settings.ca {
            Some(ca) => Account::builder_with_root(ca)?,
            None => Account::builder()?,
        })
    };
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Stored {
        directory: String,
        credentials: AccountCredentials,
    }
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(stored) = serde_json::from_str::<Stored>(&text) {
            if stored.directory == settings.directory {
                return Ok(builder()?.from_credentials(stored.credentials).await?);
            }
        }
    }
    let contact = settings.email.as_ref().map(|m| format!("mailto:{m}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await?;
    let stored = Stored {
        directory: settings.directory.clone(),
        credentials,
    };
    let text =
        serde_json::to_string_pretty(&stored).map_err(|e| AcmeError::Other(e.to_string()))?;
    tls::write_secret(&path, text.as_bytes())?;
    Ok(account)
}

async fn issue(
    settings: &AcmeSettings,
    cached: &mut Option<Account>,
    host: &str,
    store: &CertStore,
    tokens: &Tokens,
) -> Result<Loaded, AcmeError> {
    if cached.is_none() {
        *cached = Some(account(settings).await?);
    }
    let Some(account) = cached.as_ref() else {
        return Err(AcmeError::Other("no ACME account".into()));
    };
    let ids = [Identifier::Dns(host.to_string())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut answered_tokens = Vec::new();
    let mut alpn_hosts = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let offers = |t: ChallengeType| authz.challenges.iter().any(|c| c.r#type == t);
        let (first, second) = if settings.prefer_alpn {
            (ChallengeType::TlsAlpn01, ChallengeType::Http01)
        } else {
            (ChallengeType::Http01, ChallengeType::TlsAlpn01)
        };
        let kind = if offers(first.clone()) { first } else { second };
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            return Err(AcmeError::Other(format!(
                "the CA offers neither HTTP-01 nor TLS-ALPN-01 for {host}"
            )));
        };
        let key_auth = challenge.key_authorization();
        if kind == ChallengeType::Http01 {
            let token = challenge.token.clone();
            if let Ok(mut t) = tokens.write() {
                t.insert(token.clone(), key_auth.as_str().to_string());
            }
            answered_tokens.push(token);
        } else {
            let cert = alpn_certificate(host, key_auth.digest().as_ref())?;
            store.set_challenge(host, Some(cert));
            alpn_hosts.push(host.to_string());
        }
        challenge.set_ready().await?;
    }
    let result = finish(&mut order, host).await;
    if let Ok(mut t) = tokens.write() {
        for token in &answered_tokens {
            t.remove(token);
        }
    }
    for h in &alpn_hosts {
        store.set_challenge(h, None);
    }
    let (cert_pem, key_pem) = result?;
    let d = host_dir(&settings.dir, host);
    tls::write_secret(&d.join("key.pem"), key_pem.as_bytes())?;
    tls::write_secret(&d.join("cert.pem"), cert_pem.as_bytes())?;
    let mut loaded = tls::load_pem(cert_pem.as_bytes(), key_pem.as_bytes(), "acme")?;
    loaded.info.path = Some(d.join("cert.pem"));
    Ok(loaded)
}

async fn finish(
    order: &mut instant_acme::Order,
    host: &str,
) -> Result<(String, String), AcmeError> {
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        // Say why: the first challenge error the CA reported.
        let mut why = String::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(authz)) = authzs.next().await {
            if let Some(e) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
                why = e.to_string();
                break;
            }
        }
        return Err(AcmeError::Other(format!(
            "the CA did not validate {host}: {}",
            if why.is_empty() {
                format!("order is {status:?}")
            } else {
                why
            }
        )));
    }
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![host.to_string()])?;
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let cert = order.poll_certificate(&retries).await?;
    Ok((cert, key.serialize_pem()))
}

/// The self-signed certificate TLS-ALPN-01 asks for: the host's name and the acmeIdentifier
/// extension carrying the SHA-256 of the key authorization.
fn alpn_certificate(
    host: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let mut params = CertificateParams::new(vec![host.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    // Not through tls::load_pem: its consistency check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension this certificate must carry.
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds() {
        assert!(due(None, 0));
        let (c, k) = {
            let p = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
            let k = KeyPair::generate().unwrap();
            (p.self_signed(&k).unwrap().pem(), k.serialize_pem())
        };
        let mut l = tls::load_pem(c.as_bytes(), k.as_bytes(), "acme").unwrap();
        l.info.not_before = 0;
        l.info.not_after = 90;
        assert!(!due(Some(&l), 59));
        assert!(due(Some(&l), 60));
        assert!(due(Some(&l), 100));
    }
}
