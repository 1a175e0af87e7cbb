//! Inside the unit's process (`grove __recipe`): prepare the data folder, then replace this
//! process with the server, in the foreground, on the job's address and port, logging to
//! stdout/stderr (which grove already captures into the unit's log).
//!
//! PostgreSQL refuses to run as root; when grove runs as root it runs PostgreSQL as the
//! `postgres` system user that Debian's package creates, owning only the data folder.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use grove_plan::Recipe;
use nix::unistd::{Uid, User};

use crate::find::binary;
use crate::{rabbit, Job, RecipeError};

/// Prepares and starts the job's server; returns only when that failed.
pub fn run(job: &Job) -> RecipeError {
    let result = match Recipe::parse(&job.recipe) {
        Some(Recipe::Postgres) => postgres(job),
        Some(Recipe::Redis) => redis(job),
        Some(Recipe::Memcached) => memcached(job),
        Some(Recipe::Mongodb) => mongodb(job),
        Some(Recipe::Rabbitmq) => rabbit::launch(job),
        None => Err(RecipeError::Step(format!(
            "unknown recipe `{}`",
            job.recipe
        ))),
    };
    match result {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// A folder only its owner may enter, created when missing.
pub(crate) fn private_dir(dir: &Path) -> Result<(), RecipeError> {
    std::fs::create_dir_all(dir).map_err(RecipeError::io("cannot create", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(RecipeError::io("cannot restrict", dir))
}

/// Writes a file only its owner may read.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), RecipeError> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(RecipeError::io("cannot write", path))?;
    f.write_all(text.as_bytes())
        .map_err(RecipeError::io("cannot write", path))
}

/// Replaces this process with `program args`, as `user` when given, without the job variable
/// in its environment, keeping grove's parent-death signal (a change of user clears it).
pub(crate) fn exec(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    user: Option<&User>,
) -> Result<Infallible, RecipeError> {
    let fail = |what: &str, e: nix::Error| RecipeError::Step(format!("{what}: {e}"));
    let c =
        |s: &str| CString::new(s).map_err(|_| RecipeError::Step(format!("a NUL byte in `{s}`")));
    let mut argv = vec![c(&program.to_string_lossy())?];
    for a in args {
        argv.push(c(a)?);
    }
    let mut envp = Vec::new();
    for (k, v) in std::env::vars() {
        if k == crate::JOB_VAR || env.iter().any(|(ek, _)| *ek == k) {
            continue;
        }
        envp.push(c(&format!("{k}={v}"))?);
    }
    for (k, v) in env {
        envp.push(c(&format!("{k}={v}"))?);
    }
    let parent = nix::unistd::getppid();
    if let Some(u) = user {
        nix::unistd::setgroups(&[]).map_err(|e| fail("setgroups", e))?;
        nix::unistd::setgid(u.gid).map_err(|e| fail("setgid", e))?;
        nix::unistd::setuid(u.uid).map_err(|e| fail("setuid", e))?;
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| fail("prctl", e))?;
        if nix::unistd::getppid() != parent {
            return Err(RecipeError::Step(
                "grove exited while the server started".into(),
            ));
        }
    }
    let e = nix::unistd::execve(&argv[0], &argv, &envp).unwrap_err();
    Err(RecipeError::Step(format!(
        "cannot run {}: {e}",
        program.display()
    )))
}

/// The system user a server runs as when grove is root and the server refuses root.
fn system_user(name: &str, package: &str) -> Result<User, RecipeError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        _ => Err(RecipeError::Step(format!(
            "this server refuses to run as root, and the `{name}` system user it would run as \
             does not exist (the Debian package `{package}` creates it)"
        ))),
    }
}

/// Lets `user` reach `dir`: grove's own folders (the state folder and its `data`) get
/// `o+x` (enter, not list); any other folder on the way that shuts the user out is an error
/// saying which and how to open it.
fn reachable_by(user: &User, dir: &Path, own: &[&Path]) -> Result<(), RecipeError> {
    let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    ancestors.reverse();
    for a in ancestors {
        let Ok(m) = std::fs::metadata(a) else {
            continue;
        };
        let mode = m.permissions().mode();
        let ok = mode & 0o001 != 0
            || (m.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (m.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if ok {
            continue;
        }
        if own.contains(&a) {
            std::fs::set_permissions(a, std::fs::Permissions::from_mode((mode & 0o7777) | 0o001))
                .map_err(RecipeError::io("cannot open", a))?;
            continue;
        }
        return Err(RecipeError::Step(format!(
            "PostgreSQL refuses to run as root, so grove runs it as the `{}` user, who cannot \
             enter {}: allow it with `chmod o+x {}`, or run grove as an ordinary user",
            user.name,
            a.display(),
            a.display()
        )));
    }
    Ok(())
}

fn chown(path: &Path, user: &User) -> Result<(), RecipeError> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| RecipeError::Step(format!("cannot chown {}: {e}", path.display())))
}

/// Runs a preparation command to the end, its output into the unit's log.
fn step(mut cmd: Command, what: &str) -> Result<(), RecipeError> {
    let status = cmd
        .status()
        .map_err(|e| RecipeError::Step(format!("cannot run {what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(RecipeError::Step(format!("{what} failed ({status})")))
    }
}

fn postgres(job: &Job) -> Result<Infallible, RecipeError> {
    let server = binary(Recipe::Postgres, "postgres")?;
    let initdb = binary(Recipe::Postgres, "initdb")?;
    let dir = &job.data_dir;
    let user = if Uid::effective().is_root() {
        Some(system_user("postgres", "postgresql")?)
    } else {
        None
    };
    let data = dir.parent().unwrap_or(dir);
    let state = data.parent().unwrap_or(data);
    std::fs::create_dir_all(dir).map_err(RecipeError::io("cannot create", dir))?;
    if let Some(u) = &user {
        reachable_by(u, dir, &[state, data])?;
        chown(dir, u)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(RecipeError::io("cannot restrict", dir))?;
    if !dir.join("PG_VERSION").exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(RecipeError::io("cannot read", dir))?
            .next()
            .is_none();
        if !empty {
            return Err(RecipeError::Step(format!(
                "{} is neither empty nor a PostgreSQL data folder; move it away and grove \
                 creates a new cluster",
                dir.display()
            )));
        }
        // The cluster is built beside its folder and renamed into place once initdb has
        // finished (issue 27): a start interrupted half-way leaves only the temporary folder,
        // which the next start throws away and builds again, never a data folder with
        // PG_VERSION and no `postgres` database.
        let building = data.join(format!(".{}.initdb-tmp", job.unit));
        if building.exists() {
            println!(
                "grove: removing {} (an initdb that was interrupted)",
                building.display()
            );
            std::fs::remove_dir_all(&building)
                .map_err(RecipeError::io("cannot remove", &building))?;
        }
        std::fs::create_dir(&building).map_err(RecipeError::io("cannot create", &building))?;
        if let Some(u) = &user {
            chown(&building, u)?;
        }
        std::fs::set_permissions(&building, std::fs::Permissions::from_mode(0o700))
            .map_err(RecipeError::io("cannot restrict", &building))?;
        let pwfile = data.join(format!(".{}.initdb", job.unit));
        write_private(&pwfile, &format!("{}\n", job.password))?;
        if let Some(u) = &user {
            chown(&pwfile, u)?;
        }
        println!(
            "grove: initialising a PostgreSQL cluster in {}",
            dir.display()
        );
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&building)
            .arg(format!("--username={}", job.user))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"])
            .arg("--no-instructions")
            .env("LC_ALL", "C");
        if let Some(u) = &user {
            use std::os::unix::process::CommandExt;
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        let result = step(cmd, "initdb");
        let _ = std::fs::remove_file(&pwfile);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&building);
            return Err(e);
        }
        // `dir` is empty: rename(2) replaces it in one step.
        std::fs::rename(&building, dir).map_err(RecipeError::io("cannot move into place", dir))?;
    }
    let hba = dir.join("pg_hba.conf");
    write_private(&hba, &pg_hba(&job.allow, job.tls_wanted))?;
    if let Some(u) = &user {
        chown(&hba, u)?;
    }
    let mut tls_args = Vec::new();
    if job.tls_wanted {
        let Some((chain, key)) = &job.tls else {
            return Err(RecipeError::Step(
                "tls = true, but no certificate was made for the server".to_string(),
            ));
        };
        let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
        write_private(&cert_path, chain)?;
        write_private(&key_path, key)?;
        if let Some(u) = &user {
            chown(&cert_path, u)?;
            chown(&key_path, u)?;
        }
        for (k, v) in [
            ("ssl", "on".to_string()),
            ("ssl_cert_file", cert_path.display().to_string()),
            ("ssl_key_file", key_path.display().to_string()),
        ] {
            tls_args.push("-c".to_string());
            tls_args.push(format!("{k}={v}"));
        }
    }
    // Stale pid file of a server that was killed: PostgreSQL checks it itself and starts
    // when that process is gone.
    let args = vec![
        "-D".to_string(),
        dir.display().to_string(),
        "-c".to_string(),
        format!("listen_addresses={}", job.bind),
        "-c".to_string(),
        format!("port={}", job.port),
        "-c".to_string(),
        "unix_socket_directories=".to_string(),
    ]
    .into_iter()
    .chain(tls_args)
    .collect::<Vec<_>>();
    exec(
        &server,
        &args,
        &[("LC_ALL".into(), "C".into())],
        user.as_ref(),
    )
}

/// PostgreSQL's client authentication, written at every start: passwords (scram-sha-256)
/// from loopback, and from each network of `allow` (the recipe's key), over TLS only when
/// the server has it (`tls`); nothing else.
pub(crate) fn pg_hba(allow: &[String], tls: bool) -> String {
    let mut c =
        String::from("# written by grove at every start (the recipe's `allow` adds networks)\n");
    c.push_str("# TYPE DATABASE USER ADDRESS METHOD\n");
    let loopback = ["127.0.0.1/32", "::1/128"].map(|n| ("host", n));
    let remote = if tls { "hostssl" } else { "host" };
    let networks = allow.iter().map(|n| (remote, n.as_str()));
    for (kind, net) in loopback.into_iter().chain(networks) {
        c.push_str(&format!("{kind} all all {net} scram-sha-256\n"));
        c.push_str(&format!("{kind} replication all {net} scram-sha-256\n"));
    }
    c
}

/// Redis' configuration: the password lives in a 0600 file, never on the command line.
pub(crate) fn redis_conf(job: &Job) -> String {
    let mut c = String::new();
    c.push_str("# written by grove at every start\n");
    c.push_str(&format!("bind {}\nport {}\n", job.bind, job.port));
    c.push_str("protected-mode yes\ndaemonize no\nsupervised no\nlogfile \"\"\n");
    c.push_str(&format!("dir \"{}\"\n", job.data_dir.display()));
    c.push_str("dbfilename dump.rdb\n");
    if job.persistence {
        // Durable by default (issue 27): every write goes to the append-only file, which is
        // flushed to disk every second (Redis' persistence guide for data that is kept), so
        // a SIGKILL loses at most the last second. Snapshots as Redis' defaults besides, and
        // a final save when stopped with SIGTERM.
        c.push_str("save 3600 1 300 100 60 10000\nappendfsync everysec\n");
        c.push_str("appenddirname \"appendonlydir\"\n");
        if redis_needs_aof_switch(&job.data_dir) {
            // A data folder from before the append-only file: Redis started with `appendonly
            // yes` would ignore dump.rdb and start empty. It starts from the snapshot, and the
            // first readiness check switches the append-only file on while it runs
            // (`CONFIG SET appendonly yes` writes the data set into it): Redis' own procedure.
            c.push_str("appendonly no\n");
        } else {
            c.push_str("appendonly yes\n");
        }
    } else {
        // A pure cache: nothing written to disk.
        c.push_str("appendonly no\nsave \"\"\n");
    }
    if !job.password.is_empty() {
        c.push_str(&format!("requirepass {}\n", job.password));
    }
    if job.tls_wanted {
        // TLS only, on the unit's port: no plain-text port beside it.
        let (cert, key) = redis_tls_files(job);
        c.push_str(&format!("port 0\ntls-port {}\n", job.port));
        c.push_str(&format!(
            "tls-cert-file \"{}\"\ntls-key-file \"{}\"\n",
            cert.display(),
            key.display()
        ));
        // Clients log in with the password; they need no certificate of their own.
        c.push_str("tls-auth-clients no\n");
    }
    c
}

/// Where a TLS Redis keeps its certificate chain and key (in its private data folder).
fn redis_tls_files(job: &Job) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        job.data_dir.join("server.crt"),
        job.data_dir.join("server.key"),
    )
}

/// Whether the Redis data folder `dir` holds a snapshot but no append-only file yet.
pub(crate) fn redis_needs_aof_switch(dir: &Path) -> bool {
    dir.join("dump.rdb").exists() && !dir.join("appendonlydir").exists()
}

fn redis(job: &Job) -> Result<Infallible, RecipeError> {
    let server = binary(Recipe::Redis, "redis-server")?;
    private_dir(&job.data_dir)?;
    if job.tls_wanted {
        let Some((chain, key)) = &job.tls else {
            return Err(RecipeError::Step(
                "tls = true, but no certificate was made for the server".to_string(),
            ));
        };
        let (cert, key_file) = redis_tls_files(job);
        write_private(&cert, chain)?;
        write_private(&key_file, key)?;
    }
    let conf = job.data_dir.join("redis.conf");
    write_private(&conf, &redis_conf(job))?;
    exec(&server, &[conf.display().to_string()], &[], None)
}

fn memcached(job: &Job) -> Result<Infallible, RecipeError> {
    let server = binary(Recipe::Memcached, "memcached")?;
    let mut args = vec![
        "-l".to_string(),
        job.bind.to_string(),
        "-p".to_string(),
        job.port.to_string(),
        "-U".to_string(),
        "0".to_string(),
        "-m".to_string(),
        "64".to_string(),
    ];
    if Uid::effective().is_root() {
        // memcached refuses root unless told whom to run as; it keeps no files.
        args.extend(["-u".to_string(), "root".to_string()]);
    }
    exec(&server, &args, &[], None)
}

fn mongodb(job: &Job) -> Result<Infallible, RecipeError> {
    let server = binary(Recipe::Mongodb, "mongod")?;
    private_dir(&job.data_dir)?;
    let args = vec![
        "--dbpath".to_string(),
        job.data_dir.display().to_string(),
        "--port".to_string(),
        job.port.to_string(),
        "--bind_ip".to_string(),
        job.bind.to_string(),
    ];
    exec(&server, &args, &[], None)
}

/// The user a recipe's files belong to (for tests and messages).
pub fn runs_as_root() -> bool {
    Uid::effective().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_hba_allows_loopback_and_the_named_networks_only() {
        let text = pg_hba(&["10.77.0.0/24".to_string()], false);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "host all all 127.0.0.1/32 scram-sha-256",
                "host replication all 127.0.0.1/32 scram-sha-256",
                "host all all ::1/128 scram-sha-256",
                "host replication all ::1/128 scram-sha-256",
                "host all all 10.77.0.0/24 scram-sha-256",
                "host replication all 10.77.0.0/24 scram-sha-256",
            ]
        );
        assert!(!pg_hba(&[], false).contains("trust"));
        // With TLS, clients beyond loopback must use it.
        let text = pg_hba(&["10.77.0.0/24".to_string()], true);
        assert!(
            text.contains("hostssl all all 10.77.0.0/24 scram-sha-256"),
            "{text}"
        );
        assert!(
            text.contains("host all all 127.0.0.1/32 scram-sha-256"),
            "{text}"
        );
    }
    use std::path::PathBuf;

    fn job(persistence: bool) -> Job {
        Job {
            recipe: "redis".into(),
            stack: "s".into(),
            unit: "cache".into(),
            data_dir: PathBuf::from("/srv/app/.grove/data/cache"),
            bind: "127.0.0.1".parse().unwrap(),
            port: 26379,
            user: "grove".into(),
            password: "pw0123456789".into(),
            persistence,
            allow: Vec::new(),
            tls: None,
            tls_wanted: false,
            tls_names: Vec::new(),
            definitions: None,
        }
    }

    #[test]
    fn a_tls_redis_listens_on_its_port_with_tls_only() {
        let mut j = job(true);
        j.tls_wanted = true;
        let c = redis_conf(&j);
        // The later `port 0` wins over the first `port`: Redis reads the file in order.
        let port0 = c.find("port 0\n").unwrap();
        assert!(c.find("port 26379\n").unwrap() < port0);
        assert!(c.contains("tls-port 26379\n"));
        assert!(c.contains("tls-cert-file \"/srv/app/.grove/data/cache/server.crt\"\n"));
        assert!(c.contains("tls-key-file \"/srv/app/.grove/data/cache/server.key\"\n"));
        assert!(c.contains("tls-auth-clients no\n"));
        assert!(!redis_conf(&job(true)).contains("tls-port"));
    }

    #[test]
    fn redis_config_follows_persistence() {
        let on = redis_conf(&job(true));
        assert!(on.contains("port 26379\n"));
        assert!(on.contains("bind 127.0.0.1\n"));
        assert!(on.contains("dir \"/srv/app/.grove/data/cache\"\n"));
        assert!(on.contains("save 3600 1"));
        assert!(on.contains("appendonly yes\n") && on.contains("appendfsync everysec\n"));
        assert!(on.contains("requirepass pw0123456789\n"));
        let off = redis_conf(&job(false));
        assert!(off.contains("save \"\"\n") && off.contains("appendonly no\n"));
    }
}
