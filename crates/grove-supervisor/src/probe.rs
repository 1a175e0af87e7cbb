//! Health probes: `http` (GET, any 2xx or 3xx passes, or one of the probe's `status`), `tcp` (a connection is accepted) and
//! `exec` (a command exits 0), each bounded by the probe's timeout. A failure comes back as
//! one sentence naming the probe, which `grove up -d` shows when a unit never gets healthy.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use grove_plan::ProbeCheck;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where an exec probe runs.
#[derive(Debug, Clone)]
pub struct ExecContext<'a> {
    /// The unit's working directory.
    pub cwd: &'a Path,
    /// The unit's variables.
    pub env: Vec<(&'a str, &'a str)>,
}

/// Short description of a probe, for messages: `http GET 127.0.0.1:8000/health`.
pub fn describe(check: &ProbeCheck) -> String {
    match check {
        ProbeCheck::Http { addr, path, .. } => format!("http GET {addr}{path}"),
        ProbeCheck::Tcp { addr } => format!("tcp {addr}"),
        ProbeCheck::Exec { argv } => format!("exec `{}`", argv.join(" ")),
        ProbeCheck::Recipe => "recipe readiness".to_string(),
    }
}

/// Runs one probe; `Err` says why it failed.
pub async fn run(
    check: &ProbeCheck,
    timeout: Duration,
    ctx: &ExecContext<'_>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, run_inner(check, ctx)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

async fn run_inner(check: &ProbeCheck, ctx: &ExecContext<'_>) -> Result<(), String> {
    match check {
        ProbeCheck::Tcp { addr } => TcpStream::connect(addr.as_str())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        ProbeCheck::Http { addr, path, status } => http(addr, path, status).await,
        ProbeCheck::Exec { argv } => exec(argv, ctx).await,
        ProbeCheck::Recipe => Err("recipe probes need the backing-service recipes".to_string()),
    }
}

async fn http(addr: &str, path: &str, pass: &[u16]) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .header(hyper::header::USER_AGENT, "grove-probe")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string());
    driver.abort();
    let res = res?;
    let status = res.status();
    let passes = if pass.is_empty() {
        status.is_success() || status.is_redirection()
    } else {
        pass.contains(&status.as_u16())
    };
    if passes {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

async fn exec(argv: &[String], ctx: &ExecContext<'_>) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".to_string());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(ctx.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in &ctx.env {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        match status.code() {
            Some(c) => Err(format!("exited with code {c}")),
            None => Err("killed by a signal".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn ctx() -> ExecContext<'static> {
        ExecContext {
            cwd: Path::new("/"),
            env: vec![],
        }
    }

    async fn server(status: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_passes_and_fails() {
        let t = Duration::from_secs(2);
        let ok = server("200 OK").await;
        let check = ProbeCheck::Http {
            addr: ok.clone(),
            path: "/health".into(),
            status: Vec::new(),
        };
        assert_eq!(run(&check, t, &ctx()).await, Ok(()));
        let redirect = server("302 Found").await;
        let lenient = ProbeCheck::Http {
            addr: redirect.clone(),
            path: "/".into(),
            status: Vec::new(),
        };
        assert_eq!(run(&lenient, t, &ctx()).await, Ok(()));
        // `status = [200]` is strict: a redirect to a login page does not pass.
        let strict = ProbeCheck::Http {
            addr: server("302 Found").await,
            path: "/".into(),
            status: vec![200],
        };
        assert_eq!(run(&strict, t, &ctx()).await, Err("status 302".into()));
        let bad = server("503 Service Unavailable").await;
        let check = ProbeCheck::Http {
            addr: bad,
            path: "/".into(),
            status: Vec::new(),
        };
        assert_eq!(run(&check, t, &ctx()).await, Err("status 503".into()));
    }

    #[tokio::test]
    async fn tcp_probe_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let r = run(&ProbeCheck::Tcp { addr }, Duration::from_secs(2), &ctx()).await;
        assert!(r.unwrap_err().contains("refused"));
    }

    #[tokio::test]
    async fn exec_probe_codes_and_timeout() {
        let t = Duration::from_secs(5);
        let yes = ProbeCheck::Exec {
            argv: vec!["true".into()],
        };
        assert_eq!(run(&yes, t, &ctx()).await, Ok(()));
        let no = ProbeCheck::Exec {
            argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        assert_eq!(run(&no, t, &ctx()).await, Err("exited with code 3".into()));
        let slow = ProbeCheck::Exec {
            argv: vec!["sleep".into(), "5".into()],
        };
        let r = run(&slow, Duration::from_millis(100), &ctx()).await;
        assert!(r.unwrap_err().contains("timed out"));
        assert!(describe(&slow).contains("sleep 5"));
    }
}
