//! RabbitMQ: its own Erlang node name, AMQP port, distribution port, port mapper (`epmd`,
//! run in the foreground inside the unit's process group on a private loopback port) and data
//! folder, so it never meets a system RabbitMQ or another stack's. Users, virtual hosts and
//! permissions are definitions, with passwords stored only as RabbitMQ's salted SHA-256
//! hashes: loaded by the node as it boots (`load_definitions`), and imported into a running
//! node (`rabbitmqctl import_definitions`, whose Erlang CLI node takes a second to start)
//! only when the spec changed since it booted.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use grove_plan::Recipe;
use serde::{Deserialize, Serialize};

use crate::find::binary;
use crate::launch::{exec, private_dir, write_private};
use crate::{node_name, Job, RecipeError, Server};

/// The extra ports a node uses, chosen at each start and kept in the data folder for the
/// provisioning tools.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Ports {
    epmd: u16,
    dist: u16,
    /// With `tls = true`: a plain AMQP listener on loopback, for grove's readiness probe
    /// (the unit's port speaks TLS only), as a TLS PostgreSQL still takes loopback.
    #[serde(default)]
    probe: Option<u16>,
}

const PORTS_FILE: &str = "grove-ports.json";

/// Present from the moment a node first boots on an empty data folder until its users and
/// virtual hosts are imported: found at a later start, it says that first start was
/// interrupted (grove killed during RabbitMQ's schema creation), and the half-made database,
/// which can hold nothing of a user's yet, is made again from nothing.
const FIRST_START: &str = "grove-first-start";

/// The definitions the node loads as it boots, and the key of the spec they come from.
const BOOT_DEFINITIONS: &str = "definitions.json";
const BOOT_KEY: &str = "definitions.key";

/// What the definitions are made from (accounts, passwords and virtual hosts), as a digest:
/// equal keys, equal definitions (the salts aside).
fn spec_key(server: &Server) -> String {
    let spec = &server.spec;
    let roles: Vec<(&str, &str)> = spec
        .roles
        .iter()
        .map(|r| (r.user.as_str(), r.password.as_str()))
        .collect();
    let dbs: Vec<(&str, &str)> = spec
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d.owner.as_str()))
        .collect();
    let text = serde_json::json!([spec.admin.user, spec.admin.password, roles, dbs]).to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The definitions for the node to load as it boots, with their key (see [`Job`]).
pub(crate) fn boot_definitions(server: &Server) -> Option<(String, String)> {
    let defs = definitions(server).ok()?;
    Some((defs.to_string(), spec_key(server)))
}

/// Starts the node's database over when its first start never completed (see
/// [`FIRST_START`]), and marks a first start about to begin. An existing database without the
/// marker is always kept.
fn first_start(dir: &Path) -> Result<(), RecipeError> {
    let mnesia = dir.join("mnesia");
    let marker = dir.join(FIRST_START);
    if marker.exists() && mnesia.exists() {
        std::fs::remove_dir_all(&mnesia).map_err(|e| {
            RecipeError::Step(format!(
                "cannot remove the half-made {} of an interrupted first start: {e}",
                mnesia.display()
            ))
        })?;
        eprintln!("grove: the first start of this node was interrupted; starting it afresh");
    }
    if !mnesia.exists() {
        write_private(&marker, "")?;
    }
    Ok(())
}

/// Erlang flags for every node of the recipe (the server's and the CLI tools'): the
/// distribution listener on loopback only, and never an `epmd -daemon` of its own (it would
/// outlive the unit when grove's own port mapper is already gone, as during a stop).
const LOOPBACK_DIST: &str = "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false";

fn free_port() -> Result<u16, RecipeError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| RecipeError::Step(format!("no free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RecipeError::Step(format!("no free loopback port: {e}")))
}

/// The environment every RabbitMQ script gets: everything in the data folder.
fn env(dir: &Path, ports: Ports) -> Vec<(String, String)> {
    let d = |s: &str| dir.join(s).display().to_string();
    vec![
        ("HOME".into(), dir.display().to_string()),
        ("ERL_EPMD_PORT".into(), ports.epmd.to_string()),
        ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
        ("RABBITMQ_DIST_PORT".into(), ports.dist.to_string()),
        // Erlang distribution on loopback only, and no port mapper but grove's.
        (
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
            LOOPBACK_DIST.into(),
        ),
        ("RABBITMQ_CTL_ERL_ARGS".into(), LOOPBACK_DIST.into()),
        ("RABBITMQ_MNESIA_BASE".into(), d("mnesia")),
        ("RABBITMQ_LOG_BASE".into(), d("log")),
        ("RABBITMQ_LOGS".into(), "-".into()),
        ("RABBITMQ_CONFIG_FILE".into(), d("rabbitmq.conf")),
        ("RABBITMQ_ADVANCED_CONFIG_FILE".into(), d("advanced.config")),
        ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), d("enabled_plugins")),
        ("RABBITMQ_CONF_ENV_FILE".into(), d("rabbitmq-env.conf")),
        ("RABBITMQ_PID_FILE".into(), d("rabbitmq.pid")),
    ]
}

pub(crate) fn conf(job: &Job, probe_port: Option<u16>) -> String {
    let mut c = listeners_conf(job, probe_port);
    if job.definitions.is_some() {
        let file = job.data_dir.join(BOOT_DEFINITIONS);
        c.push_str(&format!("load_definitions = {}\n", file.display()));
    }
    c
}

fn listeners_conf(job: &Job, probe_port: Option<u16>) -> String {
    let mut c = String::from("# written by grove at every start\n");
    let addr = SocketAddr::new(job.bind, job.port);
    match probe_port {
        Some(probe) if job.tls_wanted => {
            let (cert, key) = tls_files(&job.data_dir);
            c.push_str(&format!(
                "listeners.tcp.1 = 127.0.0.1:{probe}\nlisteners.ssl.default = {addr}\n"
            ));
            c.push_str(&format!(
                "ssl_options.certfile = {}\nssl_options.keyfile = {}\n",
                cert.display(),
                key.display()
            ));
            // Clients log in with their password; no certificate of their own.
            c.push_str(
                "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
            );
        }
        _ => c.push_str(&format!("listeners.tcp.default = {addr}\n")),
    }
    c.push_str("loopback_users = none\n");
    c.push_str(&format!("default_user = {}\n", job.user));
    c.push_str(&format!("default_pass = {}\n", job.password));
    c.push_str("default_user_tags.administrator = true\n");
    c.push_str("default_permissions.configure = .*\ndefault_permissions.read = .*\ndefault_permissions.write = .*\n");
    c.push_str("log.console = true\nlog.console.level = info\nlog.file = false\n");
    c
}

pub(crate) fn launch(job: &Job) -> Result<Infallible, RecipeError> {
    let server = binary(Recipe::Rabbitmq, "rabbitmq-server")?;
    let epmd = binary(Recipe::Rabbitmq, "epmd")?;
    let dir = &job.data_dir;
    private_dir(dir)?;
    let cookie = dir.join(".erlang.cookie");
    if !cookie.exists() {
        let mut bytes = [0u8; 20];
        getrandom::getrandom(&mut bytes).map_err(|e| RecipeError::Step(e.to_string()))?;
        let text: String = bytes.iter().map(|b| char::from(b'A' + b % 26)).collect();
        write_private(&cookie, &text)?;
    }
    first_start(dir)?;
    let probe = if job.tls_wanted {
        let Some((chain, key)) = &job.tls else {
            return Err(RecipeError::Step(
                "tls = true, but no certificate was made for the server".to_string(),
            ));
        };
        let (cert_file, key_file) = tls_files(dir);
        write_private(&cert_file, chain)?;
        write_private(&key_file, key)?;
        Some(free_port()?)
    } else {
        None
    };
    // The definitions this boot loads, and what they were made from (compared by
    // `provision`); an old key goes first, so a boot that fails never leaves a stale one.
    let _ = std::fs::remove_file(dir.join(BOOT_KEY));
    if let Some((defs, _)) = &job.definitions {
        write_private(&dir.join(BOOT_DEFINITIONS), defs)?;
    }
    write_private(&dir.join("rabbitmq.conf"), &conf(job, probe))?;
    if let Some((_, key)) = &job.definitions {
        write_private(&dir.join(BOOT_KEY), key)?;
    }
    write_private(&dir.join("enabled_plugins"), "[].\n")?;
    write_private(&dir.join("rabbitmq-env.conf"), "")?;
    let ports = Ports {
        epmd: free_port()?,
        dist: free_port()?,
        probe,
    };
    let text = serde_json::to_string(&ports).map_err(|e| RecipeError::Step(e.to_string()))?;
    write_private(&dir.join(PORTS_FILE), &text)?;
    let env = env(dir, ports);
    // Our own port mapper, in the foreground, in this process group: it goes when the unit
    // goes (a daemonised one would outlive the stack).
    let mut mapper = std::process::Command::new(&epmd);
    mapper
        .args(["-port", &ports.epmd.to_string()])
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null());
    mapper
        .spawn()
        .map_err(|e| RecipeError::Step(format!("cannot run epmd: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, ports.epmd)).is_err() {
        if Instant::now() > deadline {
            return Err(RecipeError::Step("epmd did not start within 5 s".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut all = env;
    all.push(("RABBITMQ_NODENAME".into(), node_name(&job.stack, &job.unit)));
    exec(&server, &[], &all, None)
}

/// The ports the running node's start chose.
fn read_ports(dir: &Path) -> Result<Ports, String> {
    std::fs::read_to_string(dir.join(PORTS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| format!("no {PORTS_FILE} in {}", dir.display()))
}

/// Where a TLS node keeps its certificate chain and key.
fn tls_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join("server.crt"), dir.join("server.key"))
}

/// Readiness: an AMQP connection opened as the administrator and closed the way a client
/// should (`Connection.Close`, then the broker's `Close-Ok`), so the broker logs ordinary
/// connections, never "client unexpectedly closed TCP connection" at every probe; wrong
/// credentials are told apart from a broker still booting.
pub(crate) async fn ready(server: &Server) -> Result<(), String> {
    use amqprs::connection::{Connection, OpenConnectionArguments};
    let admin = &server.spec.admin;
    // A TLS node is probed on its plain loopback listener (see `Ports::probe`).
    let (host, port) = if server.spec.tls {
        let probe = read_ports(&server.data_dir)?
            .probe
            .ok_or_else(|| format!("no probe port in {PORTS_FILE} yet"))?;
        ("127.0.0.1".to_string(), probe)
    } else {
        (server.client_host(), server.port)
    };
    let args = OpenConnectionArguments::new(&host, port, &admin.user, &admin.password);
    let conn = Connection::open(&args)
        .await
        .map_err(|e| format!("AMQP handshake: {e}"))?;
    conn.close().await.map_err(|e| format!("AMQP close: {e}"))
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password)).
pub(crate) fn password_hash(password: &str, salt: [u8; 4]) -> String {
    let mut input = salt.to_vec();
    input.extend_from_slice(password.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut out = salt.to_vec();
    out.extend_from_slice(digest.as_ref());
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// The definitions to import: the administrator on every virtual host, each role on its own.
pub(crate) fn definitions(server: &Server) -> Result<serde_json::Value, String> {
    let salt = || -> Result<[u8; 4], String> {
        let mut s = [0u8; 4];
        getrandom::getrandom(&mut s).map_err(|e| e.to_string())?;
        Ok(s)
    };
    let admin = &server.spec.admin;
    let mut users = vec![serde_json::json!({
        "name": admin.user,
        "password_hash": password_hash(&admin.password, salt()?),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": ["administrator"],
    })];
    for r in &server.spec.roles {
        users.push(serde_json::json!({
            "name": r.user,
            "password_hash": password_hash(&r.password, salt()?),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }));
    }
    let mut vhosts = vec![serde_json::json!({"name": "/"})];
    let all = |user: &str, vhost: &str| serde_json::json!({"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"});
    let mut permissions = vec![all(&admin.user, "/")];
    for d in &server.spec.databases {
        vhosts.push(serde_json::json!({"name": d.name}));
        permissions.push(all(&admin.user, &d.name));
        if d.owner != admin.user {
            permissions.push(all(&d.owner, &d.name));
        }
    }
    Ok(serde_json::json!({
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
    }))
}

/// `rabbitmqctl` for the running node of `server`, with its environment (node name, port
/// mapper, data folder), as provisioning and backups call it.
pub(crate) fn ctl(server: &Server) -> Result<std::process::Command, String> {
    let bin = binary(Recipe::Rabbitmq, "rabbitmqctl").map_err(|e| e.to_string())?;
    let dir = &server.data_dir;
    let ports = read_ports(dir)?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["-q", "-n", &node_name(&server.stack, &server.unit)])
        .envs(env(dir, ports))
        .stdin(Stdio::null());
    Ok(cmd)
}

pub(crate) async fn provision(server: &Server) -> Result<(), String> {
    let dir = &server.data_dir;
    let key = spec_key(server);
    // The node loaded these very definitions as it booted (a failed load stops its boot).
    let loaded = std::fs::read_to_string(dir.join(BOOT_KEY)).is_ok_and(|k| k == key);
    if !loaded {
        import(server).await?;
        write_private(&dir.join(BOOT_KEY), &key).map_err(|e| e.to_string())?;
    }
    // The first start is complete: from now on the database is the user's.
    let marker = dir.join(FIRST_START);
    if marker.exists() {
        std::fs::remove_file(&marker)
            .map_err(|e| format!("cannot remove {}: {e}", marker.display()))?;
    }
    Ok(())
}

/// Imports the spec's definitions into the running node with `rabbitmqctl`.
async fn import(server: &Server) -> Result<(), String> {
    let ctl = binary(Recipe::Rabbitmq, "rabbitmqctl").map_err(|e| e.to_string())?;
    let dir = &server.data_dir;
    let ports = read_ports(dir)?;
    let defs = definitions(server)?;
    let file = dir.join("definitions-import.json");
    write_private(&file, &defs.to_string()).map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(ctl)
        .args(["-q", "-n", &node_name(&server.stack, &server.unit)])
        .arg("import_definitions")
        .arg(&file)
        .envs(env(dir, ports))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        Err(format!(
            "importing users and virtual hosts failed: {}",
            text.trim().lines().last().unwrap_or("rabbitmqctl failed")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_first_start_is_redone_and_a_complete_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A fresh folder: the first start is marked.
        first_start(d).unwrap();
        assert!(d.join(FIRST_START).exists());
        // It was interrupted after the node made part of its database: made again.
        std::fs::create_dir_all(d.join("mnesia/node")).unwrap();
        std::fs::write(d.join("mnesia/node/schema.DAT"), "half").unwrap();
        first_start(d).unwrap();
        assert!(!d.join("mnesia").exists());
        assert!(d.join(FIRST_START).exists());
        // A database without the marker (complete, or from before it) is never touched.
        std::fs::create_dir_all(d.join("mnesia/node")).unwrap();
        std::fs::remove_file(d.join(FIRST_START)).unwrap();
        first_start(d).unwrap();
        assert!(d.join("mnesia/node").exists());
        assert!(!d.join(FIRST_START).exists());
    }

    #[test]
    fn password_hash_matches_rabbitmqs_scheme() {
        // The hash is base64 of the salt followed by sha256(salt ++ password).
        let h = password_hash("test12", [0x90, 0x8d, 0xc6, 0x0a]);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&h)
            .unwrap();
        assert_eq!(&raw[..4], &[0x90, 0x8d, 0xc6, 0x0a]);
        assert_eq!(raw.len(), 36);
        let mut input = vec![0x90, 0x8d, 0xc6, 0x0a];
        input.extend_from_slice(b"test12");
        assert_eq!(
            &raw[4..],
            ring::digest::digest(&ring::digest::SHA256, &input).as_ref()
        );
    }
}
