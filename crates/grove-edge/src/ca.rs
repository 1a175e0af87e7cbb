//! One certificate authority for several hosts: the local CA of `tls = "self-signed"` is
//! exported from one stack (`grove ca export --key`) and imported into the others (`grove ca
//! import`), so the web tier, the app servers and the report server sign their own
//! certificates with one CA and trust each other's: the edge trusts the stack's CA for
//! `https://` upstreams unless `upstream_ca` names another.
//!
//! Only a CA grove made is imported: the leaf certificates are signed with an issuer rebuilt
//! from grove's CA name and the key, which must be that CA's. A company's own CA is used
//! through certificate files (`tls = { cert, key }`) and `upstream_ca` instead.

use std::path::Path;

use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::{ca_path, io, local_ca, write_private, TlsError, CA_NAME};

/// The stack's CA as PEM: the certificate, and its key too when `with_key` (for another
/// host's `grove ca import`; keep it secret). Made when missing.
pub fn export(state: &Path, with_key: bool) -> Result<String, TlsError> {
    let (_, key, pem) = local_ca(state)?;
    if !with_key {
        return Ok(pem);
    }
    Ok(format!("{pem}{}", key.serialize_pem()))
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The stack had no CA; it has this one now.
    New,
    /// The stack already had this very CA.
    Same,
    /// The stack's own CA was replaced (`force`): what it signed is no longer trusted.
    Replaced,
}

/// Makes `bundle` (a grove CA's certificate and key, as `export` writes them) the stack's
/// CA. A different CA already there is replaced only when `force`.
pub fn import(state: &Path, bundle: &str, force: bool) -> Result<Imported, TlsError> {
    let bad = |why: &str| TlsError::Invalid(format!("not a grove CA bundle: {why}"));
    let mut certs = CertificateDer::pem_slice_iter(bundle.as_bytes());
    let cert = certs
        .next()
        .ok_or_else(|| bad("no certificate in it"))?
        .map_err(|e| bad(&format!("unreadable certificate: {e}")))?;
    if certs.next().is_some() {
        return Err(bad("more than one certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(bundle.as_bytes()).map_err(|_| {
        bad("no private key in it (export it with `grove ca export --key -o FILE`)")
    })?;
    let key = KeyPair::try_from(&key_der).map_err(|e| bad(&format!("unusable key: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
        .map_err(|e| bad(&format!("not an X.509 certificate: {e}")))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok());
    if cn != Some(CA_NAME) || !parsed.is_ca() {
        return Err(bad(&format!(
            "its certificate is `{}`, not grove's local CA; use a company CA through \
             `tls = {{ cert, key }}` and `upstream_ca` instead",
            parsed.subject()
        )));
    }
    if parsed.public_key().raw != key.public_key_der().as_slice() {
        return Err(bad("the key is not the certificate's"));
    }
    let cert_path = ca_path(state);
    let cert_pem = cert_block(bundle).ok_or_else(|| bad("no certificate block in it"))?;
    let existing = std::fs::read(&cert_path).ok();
    let outcome = match existing {
        None => Imported::New,
        Some(old) if der_of(&old).as_deref() == Some(cert.as_ref()) => return Ok(Imported::Same),
        Some(_) if !force => {
            return Err(TlsError::Invalid(format!(
                "this stack already has its own CA ({}); `--force` replaces it, and the \
                 certificates it signed stop being trusted",
                cert_path.display()
            )))
        }
        Some(_) => Imported::Replaced,
    };
    let dir = state.join("certs");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert_pem).map_err(io(&cert_path))?;
    Ok(outcome)
}

/// The DER of the first certificate of a PEM file.
fn der_of(pem: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .map(|c| c.as_ref().to_vec())
}

/// The first certificate block of a PEM text, as written there.
fn cert_block(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)?;
    let end = pem[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &pem[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_moves_between_stacks_and_signs_the_same_there() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cert_only = export(a.path(), false).unwrap();
        assert!(!cert_only.contains("PRIVATE KEY"));
        // A certificate alone cannot sign anything.
        let err = import(b.path(), &cert_only, false).unwrap_err().to_string();
        assert!(err.contains("no private key"), "{err}");
        let bundle = export(a.path(), true).unwrap();
        assert_eq!(import(b.path(), &bundle, false).unwrap(), Imported::New);
        assert_eq!(import(b.path(), &bundle, false).unwrap(), Imported::Same);
        let read = |d: &Path| std::fs::read_to_string(ca_path(d)).unwrap();
        assert_eq!(
            der_of(read(a.path()).as_bytes()),
            der_of(read(b.path()).as_bytes())
        );
        let mode = std::fs::metadata(b.path().join("certs/ca.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        // B's leaf names A's CA as its issuer, with A's key.
        let leaf = crate::tls::self_signed(b.path(), &["app1.internal".to_string()]).unwrap();
        let a_ca = crate::tls::describe_pem(read(a.path()).as_bytes(), "ca").unwrap();
        assert_eq!(leaf.info.issuer, "CN=grove local development CA, O=grove");
        assert!(
            a_ca.names.iter().any(|n| n == "grove local development ca"),
            "{a_ca:?}"
        );
    }

    #[test]
    fn another_ca_is_replaced_only_when_forced_and_foreign_bundles_are_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bundle = export(a.path(), true).unwrap();
        export(b.path(), false).unwrap();
        let err = import(b.path(), &bundle, false).unwrap_err().to_string();
        assert!(err.contains("already has its own CA"), "{err}");
        assert_eq!(import(b.path(), &bundle, true).unwrap(), Imported::Replaced);
        // Someone else's certificate with its own key: not grove's CA.
        let key = KeyPair::generate().unwrap();
        let other = rcgen::CertificateParams::new(vec!["example.org".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let foreign = format!("{}{}", other.pem(), key.serialize_pem());
        let err = import(b.path(), &foreign, true).unwrap_err().to_string();
        assert!(err.contains("not grove's local CA"), "{err}");
        // A grove CA's certificate with another key.
        let cert = export(a.path(), false).unwrap();
        let mismatched = format!("{cert}{}", KeyPair::generate().unwrap().serialize_pem());
        let err = import(b.path(), &mismatched, true).unwrap_err().to_string();
        assert!(err.contains("the key is not the certificate's"), "{err}");
    }
}
