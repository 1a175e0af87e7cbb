//! TLS for `https://` listeners: a local certificate authority for `tls = "self-signed"`, or
//! certificate files. ALPN offers `h2` and `http/1.1`; TLS 1.2 and 1.3 with rustls' safe
//! defaults.
//!
//! The local CA is created once in `<state>/certs/ca.pem` (+ `ca.key`, mode 0600) and kept, so
//! trusting it once (`grove trust` says how) lasts; a leaf for the configured hosts plus
//! `localhost`, `127.0.0.1` and `::1` is signed by it at every start.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A TLS set-up failure.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Files could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate or key did not load.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) const CA_NAME: &str = "grove local development CA";

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "grove");
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// The CA certificate's path under a state folder.
pub fn ca_path(state: &Path) -> PathBuf {
    state.join("certs").join("ca.pem")
}

/// Makes sure the local CA exists in `state`; returns its certificate's path.
pub fn ensure_ca(state: &Path) -> Result<PathBuf, TlsError> {
    local_ca(state)?;
    Ok(ca_path(state))
}

/// Loads the local CA, creating it on first use. Returns (issuer certificate, its key, the
/// PEM users trust).
pub(crate) fn local_ca(state: &Path) -> Result<(rcgen::Certificate, KeyPair, String), TlsError> {
    let dir = state.join("certs");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let cert_path = ca_path(state);
    let key_path = dir.join("ca.key");
    if cert_path.exists() && key_path.exists() {
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        // Same name and key as the stored CA, so what it signs verifies against ca.pem.
        let issuer = ca_params().self_signed(&key)?;
        return Ok((issuer, key, pem));
    }
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    let pem = cert.pem();
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, &pem).map_err(io(&cert_path))?;
    Ok((cert, key, pem))
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))
}

use std::os::unix::fs::OpenOptionsExt;

/// What is known of a certificate being served (for `grove certs` and the log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// DNS names and IP addresses it covers (subject alternative names, else the CN).
    pub names: Vec<String>,
    /// Where it comes from: `self-signed`, `files`, `acme`.
    pub source: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Not valid before (Unix seconds).
    pub not_before: i64,
    /// Not valid after (Unix seconds).
    pub not_after: i64,
    /// The certificate file, when it is one.
    pub path: Option<PathBuf>,
}

/// A certificate with its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The chain and key.
    pub key: Arc<CertifiedKey>,
    /// What it is.
    pub info: CertInfo,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads names and validity out of a DER certificate.
pub fn describe(der: &[u8], source: &str) -> Result<CertInfo, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Invalid(format!("not an X.509 certificate: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.push(d.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => names
                        .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or([0; 4])).to_string()),
                    16 => names.push(
                        IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or([0; 16])).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        names,
        source: source.to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        path: None,
    })
}

/// [`describe`] for the first certificate of a PEM file.
pub fn describe_pem(pem: &[u8], source: &str) -> Result<CertInfo, TlsError> {
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| TlsError::Invalid("no certificate in it".into()))?
        .map_err(|e| TlsError::Invalid(format!("unreadable certificate PEM: {e}")))?;
    describe(&der, source)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A Unix time as an RFC 3339 date.
pub fn date(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Loads a PEM chain and key: refuses an empty chain, a key that does not belong to the leaf,
/// and an expired leaf, each with a message that says so.
pub fn load_pem(cert_pem: &[u8], key_pem: &[u8], source: &str) -> Result<Loaded, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("unreadable certificate PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Invalid("no certificate in it".into()));
    };
    let info = describe(leaf, source)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Invalid(format!("unreadable private key PEM: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Invalid(
            "the private key does not belong to the certificate (mismatched pair)".into(),
        ),
        e => TlsError::Invalid(format!("the private key is unusable: {e}")),
    })?;
    if info.not_after < unix_now() {
        return Err(TlsError::Invalid(format!(
            "the certificate for {} expired on {}",
            info.names.join(", "),
            date(info.not_after)
        )));
    }
    Ok(Loaded {
        key: Arc::new(certified),
        info,
    })
}

/// Loads a certificate file and its key file; errors name the file at fault.
pub fn load_files(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(io(cert))?;
    let key_pem = std::fs::read(key).map_err(io(key))?;
    let mut l = load_pem(&cert_pem, &key_pem, "files").map_err(|e| {
        TlsError::Invalid(format!("{} with {}: {e}", cert.display(), key.display()))
    })?;
    l.info.path = Some(cert.to_path_buf());
    Ok(l)
}

/// The certificates an edge serves, chosen per connection by SNI: an exact name first, then
/// a wildcard, then the first certificate. Entries are replaced in place (file reload, ACME
/// renewal) without touching open connections.
#[derive(Debug, Default)]
pub struct CertStore {
    inner: std::sync::RwLock<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    /// (slot, certificate), in priority order; the first is the default.
    certs: Vec<(String, Loaded)>,
    /// TLS-ALPN-01 challenge certificates by host.
    challenges: std::collections::HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, StoreInner> {
        match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StoreInner> {
        match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Puts `cert` in `slot`, replacing what was there, or adds it at the end (but before
    /// the [`FALLBACK`] slot, which always comes last).
    pub fn set(&self, slot: &str, cert: Loaded) {
        let mut g = self.write();
        match g.certs.iter_mut().find(|(s, _)| s == slot) {
            Some(entry) => entry.1 = cert,
            None => {
                let at = g
                    .certs
                    .iter()
                    .position(|(s, _)| s == FALLBACK)
                    .unwrap_or(g.certs.len());
                g.certs.insert(at, (slot.to_string(), cert));
            }
        }
    }

    /// Removes a slot.
    pub fn remove(&self, slot: &str) {
        self.write().certs.retain(|(s, _)| s != slot);
    }

    /// The certificate in `slot`.
    pub fn get(&self, slot: &str) -> Option<Loaded> {
        self.read()
            .certs
            .iter()
            .find(|(s, _)| s == slot)
            .map(|(_, l)| l.clone())
    }

    /// Every certificate served, in priority order.
    pub fn list(&self) -> Vec<CertInfo> {
        self.read()
            .certs
            .iter()
            .map(|(_, l)| l.info.clone())
            .collect()
    }

    /// Sets or clears the TLS-ALPN-01 challenge certificate for `host`.
    pub fn set_challenge(&self, host: &str, cert: Option<Arc<CertifiedKey>>) {
        let mut g = self.write();
        match cert {
            Some(c) => {
                g.challenges.insert(host.to_string(), c);
            }
            None => {
                g.challenges.remove(host);
            }
        }
    }

    /// Whether some certificate names `host` (exactly or by a wildcard).
    pub fn covers(&self, host: &str) -> bool {
        let g = self.read();
        let wild = host.split_once('.').map(|(_, p)| format!("*.{p}"));
        g.certs.iter().any(|(_, l)| {
            l.info
                .names
                .iter()
                .any(|n| n == host || Some(n) == wild.as_ref())
        })
    }

    /// The certificate for an SNI name.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let g = self.read();
        if let Some(name) = sni.map(str::to_ascii_lowercase) {
            if let Some((_, l)) = g.certs.iter().find(|(_, l)| l.info.names.contains(&name)) {
                return Some(l.key.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                let wild = format!("*.{parent}");
                if let Some((_, l)) = g.certs.iter().find(|(_, l)| l.info.names.contains(&wild)) {
                    return Some(l.key.clone());
                }
            }
        }
        g.certs.first().map(|(_, l)| l.key.clone())
    }
}

/// The slot of a stand-in certificate that serves only when no other names the host.
pub const FALLBACK: &str = "fallback";

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_string);
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = sni?.to_ascii_lowercase();
            return self.read().challenges.get(&name).cloned();
        }
        self.pick(sni.as_deref())
    }
}

/// A server configuration that takes its certificates from `store`, offering `h2` and
/// `http/1.1` (and `acme-tls/1` when `acme` is set).
pub fn server_config(store: Arc<CertStore>, acme: bool) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(cfg)
}

/// A leaf for `hosts` (plus localhost and loopback addresses) signed by the local CA in
/// `state`.
pub fn self_signed(state: &Path, hosts: &[String]) -> Result<Loaded, TlsError> {
    let (chain, key) = signed_pem(state, hosts)?;
    load_pem(chain.as_bytes(), key.as_bytes(), "self-signed")
}

/// A server certificate from the local CA for `localhost`, `hosts` (names or addresses),
/// `127.0.0.1` and `::1`, as PEM: (the leaf and the CA, the leaf's key). What a recipe's
/// server (PostgreSQL with `tls = true`) is given.
pub fn signed_pem(state: &Path, hosts: &[String]) -> Result<(String, String), TlsError> {
    let (issuer, issuer_key, ca_pem) = local_ca(state)?;
    let mut names: Vec<String> = vec!["localhost".into()];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    p.distinguished_name = dn;
    let mut sans = Vec::new();
    for n in &names {
        match n.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(n.clone().try_into().map_err(|_| {
                TlsError::Invalid(format!("`{n}` cannot be a certificate name"))
            })?)),
        }
    }
    for ip in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ] {
        if !sans.contains(&SanType::IpAddress(ip)) {
            sans.push(SanType::IpAddress(ip));
        }
    }
    p.subject_alt_names = sans;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf = p.signed_by(&leaf_key, &issuer, &issuer_key)?;
    Ok((
        format!("{}{}", leaf.pem(), ca_pem),
        leaf_key.serialize_pem(),
    ))
}

/// The client side, for `https://` upstreams: the system's roots plus `extra_ca` (a PEM
/// bundle), TLS 1.2 and 1.3.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(io(path))?;
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
            roots
                .add(c)
                .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(TlsError::Invalid(format!(
                "{}: no certificate in it",
                path.display()
            )));
        }
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Writes a file only its owner reads (mode 0600, also when it existed), in a folder that is
/// left as it is: for a path the user chose (`grove ca export --key -o FILE`).
pub fn write_private_file(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    write_private(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))
}

/// Writes a private file (mode 0600) into grove's own folder, creating it (mode 0700). Never
/// for a path the user chose: it changes the folder's mode.
pub fn write_secret(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    write_private(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = self_signed(dir.path(), &["shop.example.org".into()]).unwrap();
        assert!(leaf.info.names.contains(&"shop.example.org".to_string()));
        assert!(leaf.info.names.contains(&"127.0.0.1".to_string()));
        let first = std::fs::read(ca_path(dir.path())).unwrap();
        let key = dir.path().join("certs/ca.key");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        self_signed(dir.path(), &[]).unwrap();
        assert_eq!(std::fs::read(ca_path(dir.path())).unwrap(), first);
        let cfg = server_config(Arc::new(CertStore::default()), false).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
    }

    #[test]
    fn missing_files_are_named() {
        let e = load_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }

    fn leaf(names: &[&str], expired: bool) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let k = KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        (c.pem(), k.serialize_pem())
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let store = CertStore::default();
        let (c, k) = leaf(&["a.test"], false);
        store.set("a", load_pem(c.as_bytes(), k.as_bytes(), "files").unwrap());
        let (c, k) = leaf(&["*.b.test", "b.test"], false);
        store.set("b", load_pem(c.as_bytes(), k.as_bytes(), "files").unwrap());
        let a = store.get("a").unwrap().key;
        let b = store.get("b").unwrap().key;
        assert!(Arc::ptr_eq(&store.pick(Some("A.test")).unwrap(), &a));
        assert!(Arc::ptr_eq(&store.pick(Some("x.b.test")).unwrap(), &b));
        assert!(Arc::ptr_eq(&store.pick(Some("b.test")).unwrap(), &b));
        assert!(Arc::ptr_eq(&store.pick(Some("other.test")).unwrap(), &a));
        assert!(Arc::ptr_eq(&store.pick(None).unwrap(), &a));
        // A fallback stays last, whatever comes after it.
        let (c, k) = leaf(&["a.test", "c.test"], false);
        store.set(
            FALLBACK,
            load_pem(c.as_bytes(), k.as_bytes(), "files").unwrap(),
        );
        let (c, k) = leaf(&["c.test"], false);
        store.set("c", load_pem(c.as_bytes(), k.as_bytes(), "files").unwrap());
        let cc = store.get("c").unwrap().key;
        assert!(Arc::ptr_eq(&store.pick(Some("c.test")).unwrap(), &cc));
        assert!(Arc::ptr_eq(&store.pick(Some("a.test")).unwrap(), &a));
        store.remove(FALLBACK);
        store.remove("c");
        // Replacing a slot keeps its place.
        let (c, k) = leaf(&["a.test", "a2.test"], false);
        store.set("a", load_pem(c.as_bytes(), k.as_bytes(), "files").unwrap());
        assert_eq!(store.list()[0].names, ["a.test", "a2.test"]);
        assert_eq!(store.list().len(), 2);
    }

    #[test]
    fn expired_and_mismatched_pairs_say_so() {
        let (c, k) = leaf(&["old.test"], true);
        let e = load_pem(c.as_bytes(), k.as_bytes(), "files").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the certificate for old.test expired on 2021-01-01T00:00:00Z"
        );
        let (c, _) = leaf(&["a.test"], false);
        let (_, other_key) = leaf(&["b.test"], false);
        let e = load_pem(c.as_bytes(), other_key.as_bytes(), "files").unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        let e = load_pem(b"", other_key.as_bytes(), "files").unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
