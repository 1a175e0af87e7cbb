//! Backups of the recipes' data, made with the servers' own tools while they run, and each
//! verified before it counts: PostgreSQL with `pg_dump -Fc`, one file per database, checked
//! with `pg_restore --list`; Redis with `redis-cli --rdb` (a consistent snapshot over the
//! replication protocol), checked with `redis-check-rdb`; RabbitMQ's definitions (users,
//! virtual hosts, permissions, queues, exchanges, bindings, policies: not the messages) with
//! `rabbitmqctl export_definitions`, checked as JSON that names them. Restores go the other
//! way: `pg_restore --clean` into the running server, an RDB file into a stopped Redis' data
//! folder (its append-only files set aside, so Redis starts from the snapshot), definitions
//! imported into the running node (`rabbitmqctl import_definitions`).

use std::path::{Path, PathBuf};
use std::process::Command;

use grove_plan::Recipe;

use crate::{binary, RecipeError, Server};

/// One verified backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The file.
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// What it holds (a database's name, `data`).
    pub what: String,
}

/// The administrator's connection options of a PostgreSQL server, for its client tools.
fn pg(server: &Server, tool: &'static str) -> Result<Command, RecipeError> {
    let mut cmd = Command::new(binary(Recipe::Postgres, tool)?);
    cmd.args(["-h", &server.client_host(), "-p", &server.port.to_string()])
        .args(["-U", &server.spec.admin.user])
        .env("PGPASSWORD", &server.spec.admin.password)
        .env("PGCONNECT_TIMEOUT", "10")
        // The server's certificate is checked when it has one; loopback needs no TLS.
        .env("PGSSLMODE", "prefer");
    Ok(cmd)
}

/// Runs `cmd`; its standard output, or why it failed (its standard error's last line).
fn run(mut cmd: Command, what: &str) -> Result<String, RecipeError> {
    let out = cmd
        .output()
        .map_err(|e| RecipeError::Step(format!("{what}: {e}")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(RecipeError::Step(format!("{what} failed: {}", last.trim())))
}

/// The databases a PostgreSQL server holds (not `postgres` or the templates).
fn pg_databases(server: &Server) -> Result<Vec<String>, RecipeError> {
    let mut cmd = pg(server, "psql")?;
    cmd.args(["-d", "postgres", "-XAtc"]).arg(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' \
         ORDER BY 1",
    );
    let out = run(cmd, "listing the databases")?;
    Ok(out
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Backs up `server` into `dir` (made when missing, mode 0700), its files named after the
/// unit, what they hold and `stamp`; each is verified, and one that does not verify is
/// removed and reported.
pub fn backup(server: &Server, dir: &Path, stamp: &str) -> Result<Vec<Backup>, RecipeError> {
    std::fs::create_dir_all(dir).map_err(RecipeError::io("cannot create", dir))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    match server.recipe {
        Recipe::Postgres => {
            let mut out = Vec::new();
            for db in pg_databases(server)? {
                let file = dir.join(format!("{}-{db}-{stamp}.pgdump", server.unit));
                let mut cmd = pg(server, "pg_dump")?;
                cmd.args(["-Fc", "-d", &db, "-f"]).arg(&file);
                run(cmd, &format!("pg_dump of {db}"))?;
                verify_pg(&file)?;
                out.push(done(file, &db)?);
            }
            Ok(out)
        }
        Recipe::Redis => {
            let file = dir.join(format!("{}-data-{stamp}.rdb", server.unit));
            let mut cmd = Command::new(binary(Recipe::Redis, "redis-cli")?);
            cmd.args(["-h", &server.client_host(), "-p", &server.port.to_string()])
                .args(["--no-auth-warning", "--rdb"])
                .arg(&file);
            if server.spec.tls {
                cmd.arg("--tls").arg("--cacert").arg(server.ca_file());
            }
            if !server.spec.admin.password.is_empty() {
                cmd.env("REDISCLI_AUTH", &server.spec.admin.password);
            }
            run(cmd, "redis-cli --rdb")?;
            let mut check = Command::new(binary(Recipe::Redis, "redis-check-rdb")?);
            check.arg(&file);
            if let Err(e) = run(check, "redis-check-rdb") {
                let _ = std::fs::remove_file(&file);
                return Err(e);
            }
            Ok(vec![done(file, "data")?])
        }
        Recipe::Rabbitmq => {
            let file = dir.join(format!("{}-definitions-{stamp}.json", server.unit));
            let mut cmd = crate::rabbit::ctl(server).map_err(RecipeError::Step)?;
            cmd.arg("export_definitions").arg(&file);
            run(cmd, "rabbitmqctl export_definitions")?;
            if let Err(e) = verify_definitions(&file) {
                let _ = std::fs::remove_file(&file);
                return Err(e);
            }
            use std::os::unix::fs::PermissionsExt;
            // It holds the users' password hashes.
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
            Ok(vec![done(file, "definitions")?])
        }
        other => Err(RecipeError::Step(format!(
            "grove does not back up the {} recipe yet",
            other.name()
        ))),
    }
}

/// A definitions file is JSON naming at least the users and the virtual hosts.
fn verify_definitions(file: &Path) -> Result<(), RecipeError> {
    let text = std::fs::read_to_string(file).map_err(RecipeError::io("cannot read", file))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        RecipeError::Step(format!(
            "{} is not RabbitMQ definitions: {e}",
            file.display()
        ))
    })?;
    match (v.get("users"), v.get("vhosts")) {
        (Some(serde_json::Value::Array(_)), Some(serde_json::Value::Array(_))) => Ok(()),
        _ => Err(RecipeError::Step(format!(
            "{} is not RabbitMQ definitions: no users and vhosts",
            file.display()
        ))),
    }
}

/// The backups in `dir` (PostgreSQL archives and RDB files), by name: unit, what, time.
pub fn listed(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let p = e.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            p.extension().is_some_and(|x| {
                x == "pgdump"
                    || x == "rdb"
                    || (x == "json" && name.is_some_and(|n| n.contains("-definitions-")))
            })
        })
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    out.sort();
    out
}

/// Keeps the newest `keep` backups of each (unit, what) in `made`; removes the older ones
/// and returns them.
pub fn prune(dir: &Path, unit: &str, made: &[Backup], keep: usize) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for b in made {
        let prefix = format!("{unit}-{}-", b.what);
        let same: Vec<PathBuf> = listed(dir)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect();
        let old = same.len().saturating_sub(keep.max(1));
        for p in &same[..old] {
            if std::fs::remove_file(p).is_ok() {
                removed.push(p.clone());
            }
        }
    }
    removed
}

/// A backup's time stamp in file names: `20261202T030500Z`.
pub fn stamp(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace([':', '-'], "")
}

/// A made file, with its size.
fn done(file: PathBuf, what: &str) -> Result<Backup, RecipeError> {
    let bytes = std::fs::metadata(&file)
        .map_err(RecipeError::io("cannot read", &file))?
        .len();
    Ok(Backup {
        file,
        bytes,
        what: what.to_string(),
    })
}

/// `pg_restore --list` reads the whole archive's table of contents: a truncated or foreign
/// file fails it. The file is removed when it does.
fn verify_pg(file: &Path) -> Result<String, RecipeError> {
    let mut cmd = Command::new(binary(Recipe::Postgres, "pg_restore")?);
    cmd.arg("--list").arg(file);
    match run(cmd, "pg_restore --list") {
        Ok(toc) => Ok(toc),
        Err(e) => {
            let _ = std::fs::remove_file(file);
            Err(e)
        }
    }
}

/// The database a PostgreSQL archive was made from (its table of contents says).
pub fn pg_archive_database(file: &Path) -> Result<String, RecipeError> {
    let mut cmd = Command::new(binary(Recipe::Postgres, "pg_restore")?);
    cmd.arg("--list").arg(file);
    let toc = run(cmd, "pg_restore --list")?;
    toc.lines()
        .find_map(|l| l.trim_start_matches(';').trim().strip_prefix("dbname: "))
        .map(|d| d.trim().to_string())
        .ok_or_else(|| RecipeError::Step(format!("{} names no database", file.display())))
}

/// Restores `file` into `server`: a PostgreSQL archive into its database (made when
/// missing) of the running server, replacing what is there; an RDB file into a Redis that
/// is stopped (`running` false), taking effect when it starts. Says what it did.
pub fn restore(server: &Server, file: &Path, running: bool) -> Result<String, RecipeError> {
    match server.recipe {
        Recipe::Postgres => {
            if !running {
                return Err(RecipeError::Step(format!(
                    "{} is not running: start it (`grove start {}`), then restore",
                    server.unit, server.unit
                )));
            }
            let db = pg_archive_database(file)?;
            if !pg_databases(server)?.contains(&db) {
                let mut create = pg(server, "psql")?;
                create
                    .args(["-d", "postgres", "-XAtc"])
                    .arg(format!("CREATE DATABASE \"{}\"", db.replace('"', "")));
                run(create, &format!("creating {db}"))?;
            }
            let mut cmd = pg(server, "pg_restore")?;
            cmd.args([
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
            ])
            .args(["-d", &db])
            .arg(file);
            run(cmd, "pg_restore")?;
            Ok(format!("restored database {db} from {}", file.display()))
        }
        Recipe::Redis => {
            if running {
                return Err(RecipeError::Step(format!(
                    "{} is running, and Redis reads its data only when it starts: stop it \
                     (`grove stop {}`), restore, then start it",
                    server.unit, server.unit
                )));
            }
            let mut check = Command::new(binary(Recipe::Redis, "redis-check-rdb")?);
            check.arg(file);
            run(check, "redis-check-rdb")?;
            let dir = &server.data_dir;
            std::fs::create_dir_all(dir).map_err(RecipeError::io("cannot create", dir))?;
            let aof = dir.join("appendonlydir");
            if aof.exists() {
                let aside = dir.join(format!(
                    "appendonlydir.before-restore-{}",
                    std::process::id()
                ));
                std::fs::rename(&aof, &aside)
                    .map_err(RecipeError::io("cannot move aside", &aof))?;
            }
            let target = dir.join("dump.rdb");
            std::fs::copy(file, &target).map_err(RecipeError::io("cannot write", &target))?;
            Ok(format!(
                "{} will start from {} (its append-only files set aside)",
                server.unit,
                file.display()
            ))
        }
        Recipe::Rabbitmq => {
            if !running {
                return Err(RecipeError::Step(format!(
                    "{} is not running: start it (`grove start {}`), then restore",
                    server.unit, server.unit
                )));
            }
            verify_definitions(file)?;
            let mut cmd = crate::rabbit::ctl(server).map_err(RecipeError::Step)?;
            cmd.arg("import_definitions").arg(file);
            run(cmd, "rabbitmqctl import_definitions")?;
            Ok(format!(
                "imported {}'s definitions from {} (users, virtual hosts, queues, exchanges, \
                 bindings, policies; messages are not in a backup)",
                server.unit,
                file.display()
            ))
        }
        other => Err(RecipeError::Step(format!(
            "grove does not restore the {} recipe yet",
            other.name()
        ))),
    }
}
