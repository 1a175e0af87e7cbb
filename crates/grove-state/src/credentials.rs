//! Generated passwords: one file per name in `.grove/secrets/` (folder 0700, files 0600), so
//! a user can read one by hand (`cat .grove/secrets/db`) and the next start reuses it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Letters and digits only: a password that needs no quoting in a URL, SQL or a config file.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
/// 24 characters from 57: about 140 bits.
const LENGTH: usize = 24;

/// A credentials failure.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The folder or a file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The system's random source failed.
    #[error("cannot generate a password: {0}")]
    Random(String),
    /// A name that is not a plain file name.
    #[error("`{0}` is not a credential name")]
    BadName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CredentialsError + '_ {
    move |source| CredentialsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A new random password.
pub fn generate() -> Result<String, CredentialsError> {
    let mut out = String::with_capacity(LENGTH);
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % ALPHABET.len());
    let mut buf = [0u8; 64];
    for _ in 0..16 {
        getrandom::getrandom(&mut buf).map_err(|e| CredentialsError::Random(e.to_string()))?;
        for b in buf {
            if (b as usize) < limit {
                out.push(char::from(ALPHABET[b as usize % ALPHABET.len()]));
                if out.len() == LENGTH {
                    return Ok(out);
                }
            }
        }
    }
    Err(CredentialsError::Random(
        "the random source kept returning the same bytes".to_string(),
    ))
}

/// The passwords named in `names`, read from `dir`; with `create`, the missing ones are
/// generated and written (0600) first, else they are left out of the answer.
pub fn load(
    dir: &Path,
    names: &[String],
    create: bool,
) -> Result<BTreeMap<String, String>, CredentialsError> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    if create {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    for name in names {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(CredentialsError::BadName(name.clone()));
        }
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => {
                out.insert(name.clone(), s.trim().to_string());
                continue;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        if !create {
            continue;
        }
        let password = generate()?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(format!("{password}\n").as_bytes())
            .map_err(io(&path))?;
        out.insert(name.clone(), password);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let names = vec!["db".to_string(), "db.turkey".to_string()];
        assert!(load(&secrets, &names, false).unwrap().is_empty());
        let first = load(&secrets, &names, true).unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first["db"], first["db.turkey"]);
        assert_eq!(first["db"].len(), LENGTH);
        assert!(first["db"].bytes().all(|b| ALPHABET.contains(&b)));
        let again = load(&secrets, &names, true).unwrap();
        assert_eq!(first, again);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&secrets), 0o700);
        assert_eq!(mode(&secrets.join("db")), 0o600);
        assert!(load(&secrets, &["../x".to_string()], true).is_err());
    }
}
