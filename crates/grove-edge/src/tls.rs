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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const CA_NAME: &str = "grove local development CA";

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
fn local_ca(state: &Path) -> Result<(rcgen::Certificate, KeyPair, String), TlsError> {
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

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
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

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid(format!("certificate and key do not match: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A server configuration with a leaf for `hosts` (plus localhost and loopback addresses)
/// signed by the local CA in `state`.
pub fn self_signed(state: &Path, hosts: &[String]) -> Result<rustls::ServerConfig, TlsError> {
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
    sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    sans.push(SanType::IpAddress(IpAddr::from([
        0u16, 0, 0, 0, 0, 0, 0, 1,
    ])));
    p.subject_alt_names = sans;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf = p.signed_by(&leaf_key, &issuer, &issuer_key)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("the local CA is unreadable: {e}")))?;
    let chain = vec![leaf.der().clone(), ca_der];
    let key = PrivateKeyDer::try_from(leaf_key.serialize_der())
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    server_config(chain, key)
}

/// A server configuration from PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", key.display())))?;
    server_config(chain, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), &["shop.example.org".into()]).unwrap();
        let first = std::fs::read(ca_path(dir.path())).unwrap();
        let key = dir.path().join("certs/ca.key");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cfg = self_signed(dir.path(), &[]).unwrap();
        assert_eq!(std::fs::read(ca_path(dir.path())).unwrap(), first);
        assert_eq!(cfg.alpn_protocols[0], b"h2");
    }

    #[test]
    fn missing_files_are_named() {
        let e = from_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}
