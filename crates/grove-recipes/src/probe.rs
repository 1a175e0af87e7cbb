//! Readiness and provisioning of a running server, from the engine's probe loop.
//!
//! Readiness speaks each server's own protocol (or its own tool): `pg_isready`, Redis `AUTH` +
//! `PING`, memcached `version`, an AMQP connection opened and closed cleanly as the
//! administrator, a TCP connect for MongoDB. The first
//! time a server is ready, and again after a reload asks for more, the roles and databases of
//! its spec are created, idempotently; a dependent waiting for `healthy` starts only after.

use std::process::Stdio;
use std::time::Duration;

use grove_plan::Recipe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::find::binary;
use crate::{rabbit, Server};

/// How long readiness may take.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long provisioning may take (RabbitMQ's tools start an Erlang VM).
const PROVISION_TIMEOUT: Duration = Duration::from_secs(90);

/// Checks that `server` answers; the first success (while `provisioned` is false) also creates
/// its roles and databases. `Err` says what failed, in one sentence.
pub async fn check(server: &Server, provisioned: &mut bool) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, ready(server)).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("no answer within {} s", READY_TIMEOUT.as_secs())),
    }
    if !*provisioned {
        match tokio::time::timeout(PROVISION_TIMEOUT, provision(server)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(format!(
                    "creating roles and databases took over {} s",
                    PROVISION_TIMEOUT.as_secs()
                ))
            }
        }
        *provisioned = true;
    }
    Ok(())
}

/// One sentence for messages: `postgres readiness (pg_isready 127.0.0.1:5432)`.
pub fn describe(server: &Server) -> String {
    let how = match server.recipe {
        Recipe::Postgres => "pg_isready",
        Recipe::Redis => "redis PING",
        Recipe::Rabbitmq => "AMQP handshake",
        Recipe::Memcached => "memcached version",
        Recipe::Mongodb => "tcp",
    };
    format!("{how} {}", server.client_addr())
}

async fn ready(server: &Server) -> Result<(), String> {
    let addr = server.client_addr();
    match server.recipe {
        Recipe::Postgres => {
            let bin = binary(Recipe::Postgres, "pg_isready").map_err(|e| e.to_string())?;
            let out = Command::new(bin)
                .args(["-q", "-t", "3", "-h"])
                .arg(server.client_host())
                .arg("-p")
                .arg(server.port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("cannot run pg_isready: {e}"))?;
            match out.code() {
                Some(0) => Ok(()),
                Some(1) => Err("pg_isready: the server is rejecting connections (starting up or shutting down)".into()),
                Some(2) => Err("pg_isready: no response".into()),
                _ => Err(format!("pg_isready failed ({out})")),
            }
        }
        Recipe::Redis => {
            let mut s = redis_connect(server).await?;
            let mut cmd = String::new();
            if !server.spec.admin.password.is_empty() {
                cmd.push_str(&format!("AUTH {}\r\n", server.spec.admin.password));
            }
            cmd.push_str("PING\r\n");
            let reply = exchange(&mut s, cmd.as_bytes(), b"PONG").await?;
            if reply.contains("+PONG") {
                Ok(())
            } else {
                Err(format!("redis answered `{}`", first_line(&reply)))
            }
        }
        Recipe::Memcached => {
            let mut s = connect(&addr).await?;
            let reply = exchange(&mut s, b"version\r\n", b"\r\n").await?;
            if reply.starts_with("VERSION ") {
                Ok(())
            } else {
                Err(format!("memcached answered `{}`", first_line(&reply)))
            }
        }
        Recipe::Rabbitmq => rabbit::ready(server).await,
        Recipe::Mongodb => connect(&addr).await.map(|_| ()),
    }
}

async fn provision(server: &Server) -> Result<(), String> {
    match server.recipe {
        Recipe::Postgres => postgres(server).await,
        Recipe::Rabbitmq => rabbit::provision(server).await,
        Recipe::Redis if server.spec.persistence => redis_append_only(server).await,
        // Redis and memcached have no databases to create; MongoDB creates one on first write.
        Recipe::Redis | Recipe::Memcached | Recipe::Mongodb => Ok(()),
    }
}

/// Makes sure a persistent Redis writes its append-only file: a no-op when its configuration
/// already says so, else (a data folder from before it, see `launch::redis_conf`) the switch
/// Redis makes while running, writing the current data set into the new file.
async fn redis_append_only(server: &Server) -> Result<(), String> {
    let mut s = redis_connect(server).await?;
    let mut cmd = String::new();
    let mut replies = 1;
    if !server.spec.admin.password.is_empty() {
        cmd.push_str(&format!("AUTH {}\r\n", server.spec.admin.password));
        replies += 1;
    }
    cmd.push_str("CONFIG SET appendonly yes\r\n");
    s.write_all(cmd.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while buf.iter().filter(|&&b| b == b'\n').count() < replies && buf.len() < 4096 {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    match text.lines().nth(replies - 1) {
        Some(l) if l.starts_with("+OK") => Ok(()),
        _ => Err(format!(
            "redis refused to turn on its append-only file: `{}`",
            text.lines()
                .find(|l| l.starts_with('-'))
                .unwrap_or("no answer")
        )),
    }
}

/// A byte stream to a server: plain TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A connection to a Redis unit: over TLS, verified against the stack's CA, when it has
/// `tls = true`.
async fn redis_connect(server: &Server) -> Result<Box<dyn Stream>, String> {
    let tcp = connect(&server.client_addr()).await?;
    if !server.spec.tls {
        return Ok(Box::new(tcp));
    }
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let ca_file = server.ca_file();
    let pem = std::fs::read(&ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(server.client_host()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", server.client_addr()))?;
    Ok(Box::new(tls))
}

async fn connect(addr: &str) -> Result<TcpStream, String> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// Sends `request`, reads until `until` appears (or 4 KiB, or end of stream).
async fn exchange(
    s: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized),
    request: &[u8],
    until: &[u8],
) -> Result<String, String> {
    s.write_all(request).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while buf.len() < 4096 {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(until.len()).any(|w| w == until) {
            break;
        }
        // An error reply ends the exchange.
        if buf.starts_with(b"-") && buf.ends_with(b"\r\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// An SQL identifier, quoted.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// An SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The provisioning script: roles (created, or given their password again), databases
/// (created when missing), and private databases closed to everyone but their owner.
pub(crate) fn postgres_script(server: &Server) -> String {
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    for r in &server.spec.roles {
        sql.push_str(&format!(
            "SELECT CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) \
             THEN 'ALTER ROLE {id} LOGIN PASSWORD {pw}' \
             ELSE 'CREATE ROLE {id} LOGIN PASSWORD {pw}' END\\gexec\n",
            name = literal(&r.user),
            id = ident(&r.user).replace('\'', "''"),
            pw = literal(&r.password).replace('\'', "''"),
        ));
    }
    for d in &server.spec.databases {
        sql.push_str(&format!(
            "SELECT 'CREATE DATABASE {id} OWNER {owner}' WHERE NOT EXISTS \
             (SELECT FROM pg_database WHERE datname = {name})\\gexec\n",
            id = ident(&d.name).replace('\'', "''"),
            owner = ident(&d.owner).replace('\'', "''"),
            name = literal(&d.name),
        ));
        if d.private {
            sql.push_str(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {id} FROM PUBLIC;\n\
                 GRANT CONNECT, TEMPORARY ON DATABASE {id} TO {owner};\n",
                id = ident(&d.name),
                owner = ident(&d.owner),
            ));
        }
    }
    sql
}

async fn postgres(server: &Server) -> Result<(), String> {
    let psql = binary(Recipe::Postgres, "psql").map_err(|e| e.to_string())?;
    let mut child = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(server.client_host())
        .arg("-p")
        .arg(server.port.to_string())
        .arg("-U")
        .arg(&server.spec.admin.user)
        .args(["-d", "postgres", "-f", "-"])
        // The password goes through the environment, never the command line.
        .env("PGPASSWORD", &server.spec.admin.password)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(postgres_script(server).as_bytes())
            .await
            .map_err(|e| format!("psql: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "creating roles and databases failed: {}",
            err.trim().lines().last().unwrap_or("psql failed")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grove_plan::{Credentials, Database, RecipeSpec};

    #[test]
    fn postgres_script_is_idempotent_sql() {
        let server = Server {
            recipe: Recipe::Postgres,
            stack: "s".into(),
            unit: "db".into(),
            data_dir: "/x".into(),
            bind: "127.0.0.1".parse().unwrap(),
            port: 5432,
            spec: RecipeSpec {
                data_dir: "/x".into(),
                admin: Credentials {
                    user: "grove".into(),
                    password: "adminpw".into(),
                },
                roles: vec![Credentials {
                    user: "turkey".into(),
                    password: "turkeypw".into(),
                }],
                databases: vec![Database {
                    name: "turkey".into(),
                    owner: "turkey".into(),
                    private: true,
                }],
                persistence: true,
                allow: Vec::new(),
                tls: false,
                tls_names: Vec::new(),
            },
        };
        let sql = postgres_script(&server);
        assert!(sql.contains("WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = 'turkey') THEN 'ALTER ROLE \"turkey\" LOGIN PASSWORD ''turkeypw''' ELSE 'CREATE ROLE \"turkey\" LOGIN PASSWORD ''turkeypw''' END\\gexec"), "{sql}");
        assert!(sql.contains("SELECT 'CREATE DATABASE \"turkey\" OWNER \"turkey\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'turkey')\\gexec"), "{sql}");
        assert!(sql.contains("REVOKE CONNECT, TEMPORARY ON DATABASE \"turkey\" FROM PUBLIC;"));
        assert!(!sql.contains("adminpw"));
    }
}
