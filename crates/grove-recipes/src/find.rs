//! Finding a recipe's binaries: `PATH` first, then where Debian puts the ones it keeps off
//! `PATH` (`/usr/lib/postgresql/<version>/bin`, `/usr/lib/rabbitmq/bin`, the `sbin` folders).
//! A missing binary is an error naming the Debian package that brings it.

use std::path::{Path, PathBuf};

use grove_plan::Recipe;

/// A binary a recipe needs and cannot find.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {recipe} recipe needs `{binary}`, which is not installed (looked in PATH{extra}): {fix}"
)]
pub struct Missing {
    /// The recipe's name.
    pub recipe: &'static str,
    /// The binary.
    pub binary: &'static str,
    /// Where else it looked.
    pub extra: String,
    /// What to do.
    pub fix: String,
}

/// The binaries a recipe runs: the server first.
fn binaries(recipe: Recipe) -> &'static [&'static str] {
    match recipe {
        Recipe::Postgres => &["postgres", "initdb", "pg_isready", "psql"],
        Recipe::Redis => &["redis-server"],
        Recipe::Rabbitmq => &["rabbitmq-server", "rabbitmqctl", "epmd"],
        Recipe::Memcached => &["memcached"],
        Recipe::Mongodb => &["mongod"],
    }
}

/// How to get a recipe's binaries on Debian.
pub fn install_hint(recipe: Recipe) -> String {
    match recipe {
        Recipe::Postgres => "install the Debian package `postgresql` (apt-get install postgresql)",
        Recipe::Redis => "install the Debian package `redis-server` (apt-get install redis-server)",
        Recipe::Rabbitmq => {
            "install the Debian package `rabbitmq-server` (apt-get install rabbitmq-server)"
        }
        Recipe::Memcached => "install the Debian package `memcached` (apt-get install memcached)",
        Recipe::Mongodb => {
            "MongoDB is not packaged by Debian; install `mongod` from MongoDB's own packages \
             (mongodb-org-server) so it is on PATH"
        }
    }
    .to_string()
}

/// Folders searched after `PATH`, best first.
fn extra_dirs(recipe: Recipe) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    match recipe {
        Recipe::Postgres => {
            // The newest installed major version first.
            let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect();
            versions.sort_by_key(|v| std::cmp::Reverse(v.0));
            dirs.extend(versions.into_iter().map(|(_, p)| p));
        }
        // Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user
        // and logs to /var/log; the real scripts are here.
        Recipe::Rabbitmq => dirs.push(PathBuf::from("/usr/lib/rabbitmq/bin")),
        _ => {}
    }
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of one of a recipe's binaries.
pub fn binary(recipe: Recipe, name: &'static str) -> Result<PathBuf, Missing> {
    let extra = extra_dirs(recipe);
    // RabbitMQ: the real scripts before Debian's /usr/sbin wrappers.
    if recipe == Recipe::Rabbitmq && name != "epmd" {
        if let Some(p) = extra.iter().map(|d| d.join(name)).find(|p| executable(p)) {
            return Ok(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .chain(erlang_dirs(recipe, name))
        .map(|d| d.join(name))
        .find(|p| executable(p));
    found.ok_or_else(|| Missing {
        recipe: recipe.name(),
        binary: name,
        extra: if extra.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = extra.iter().map(|d| d.display().to_string()).collect();
            format!(", {}", list.join(", "))
        },
        fix: install_hint(recipe),
    })
}

/// Erlang keeps `epmd` under its own tree.
fn erlang_dirs(recipe: Recipe, name: &str) -> Vec<PathBuf> {
    if recipe != Recipe::Rabbitmq || name != "epmd" {
        return Vec::new();
    }
    let mut out = vec![PathBuf::from("/usr/lib/erlang/bin")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib/erlang") {
        for e in entries.flatten() {
            let n = e.file_name();
            if n.to_string_lossy().starts_with("erts-") {
                out.push(e.path().join("bin"));
            }
        }
    }
    out
}

/// Checks that every binary of `recipe` is installed.
pub fn preflight(recipe: Recipe) -> Result<(), Missing> {
    for b in binaries(recipe) {
        binary(recipe, b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_the_package() {
        let e = Missing {
            recipe: "redis",
            binary: "redis-server",
            extra: String::new(),
            fix: install_hint(Recipe::Redis),
        };
        assert_eq!(
            e.to_string(),
            "the redis recipe needs `redis-server`, which is not installed (looked in PATH): install the Debian package `redis-server` (apt-get install redis-server)"
        );
        assert!(install_hint(Recipe::Mongodb).contains("not packaged by Debian"));
    }
}
