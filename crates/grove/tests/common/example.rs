//! The harness of the seeds' tests: an example copied to a temp folder and run with its real
//! parts (`Example`), and the HTTP(S) helpers the tests drive it with.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use super::{text, workspace};

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == ".grove"
            || name == "collected-static"
            || name == "staticfiles"
            || name == "__pycache__"
        {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// An example running from a private copy, with its own stack name and ports.
pub struct Example {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub env: Vec<(String, String)>,
    /// The network namespace its grove runs in (one host of a multi-host test).
    pub netns: Option<String>,
}

impl Example {
    pub fn new(example: &str, env: &[(&str, String)]) -> Example {
        Example::named(example, &format!("{example}{}", std::process::id()), env)
    }

    /// A copy run as one host of several: its grove runs in the network namespace `netns`,
    /// under the stack name `{example}-{host}{pid}` (the copies share this machine's cgroups).
    pub fn host(example: &str, host: &str, netns: &str, env: &[(&str, String)]) -> Example {
        let name = format!("{example}-{host}{}", std::process::id());
        let mut ex = Example::named(example, &name, env);
        ex.netns = Some(netns.to_string());
        ex
    }

    fn named(example: &str, name: &str, env: &[(&str, String)]) -> Example {
        let venv = workspace().join(".venv/bin");
        assert!(
            venv.join("gunicorn").exists(),
            "the example apps' venv is missing: scripts/test builds .venv from examples/requirements.txt"
        );
        let dir = tempfile::tempdir().unwrap();
        // As root, PostgreSQL runs as `postgres`, which must be able to enter the folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        copy_dir(&workspace().join("examples").join(example), dir.path());
        let name = name.to_string();
        let file = dir.path().join("grove.toml");
        let toml = std::fs::read_to_string(&file).unwrap();
        let toml = toml.replacen(
            &format!("name = \"{example}\""),
            &format!("name = \"{name}\""),
            1,
        );
        std::fs::write(&file, toml).unwrap();
        let path = format!(
            "{}:{}",
            venv.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut all = vec![("PATH".to_string(), path)];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Example {
            dir,
            name,
            env: all,
            netns: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `grove up -d` with `args` (and up to three minutes to start); asserts it worked.
    pub fn up(&self, args: &[&str]) {
        let out = self.grove(&[&["up", "-d", "--wait-timeout", "180s"], args].concat());
        assert!(
            out.status.success(),
            "up failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Rewrites the copied stack file.
    pub fn edit(&self, f: impl FnOnce(String) -> String) {
        let file = self.path().join("grove.toml");
        let toml = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, f(toml)).unwrap();
    }

    pub fn grove(&self, args: &[&str]) -> Output {
        let grove = env!("CARGO_BIN_EXE_grove");
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, grove]);
                c
            }
            None => Command::new(grove),
        };
        c.args(args)
            .current_dir(self.path())
            .env_remove("GROVE_ENV")
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    pub fn ps(&self) -> serde_json::Value {
        let out = self.grove(&["ps", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn pid(&self, unit: &str) -> Option<i64> {
        self.ps()["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == unit)
            .and_then(|u| u["pid"].as_i64())
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.grove(&["down"]);
        for pid in super::stack_processes(&self.name) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// GET over HTTPS to localhost:`port` with curl, trusting the stack's local CA; (status, body).
pub fn https_get(ca: &Path, port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn json_body(body: &str) -> serde_json::Value {
    // Chunked or not: the JSON object is between the first `{` and the last `}`.
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map(|i| i + 1).unwrap_or(body.len());
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// curl over HTTPS to localhost:`port` trusting the stack's CA, with extra arguments;
/// (status, body).
pub fn https_call(ca: &Path, port: u16, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// curl to `host` (resolved to loopback) on `port` with extra arguments; (status, body,
/// response head).
pub fn curl_host(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-D", "-", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .unwrap();
    let raw = text(&out.stdout);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string(), head.to_ascii_lowercase())
}

/// Every TCP address the processes `pids` listen on, from /proc/net/tcp{,6} and their fds.
pub fn listening(pids: &[i32]) -> Vec<String> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let l = link.to_string_lossy().into_owned();
                if let Some(i) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let table = std::fs::read_to_string(file).unwrap_or_default();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode
            if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
                continue;
            }
            let (addr, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let ip = if v6 {
                let b: Vec<u8> = (0..16)
                    .map(|i| u8::from_str_radix(&addr[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                // /proc prints each 32-bit word in host (little-endian) order.
                let mut o = [0u8; 16];
                for w in 0..4 {
                    for k in 0..4 {
                        o[4 * w + k] = b[4 * w + 3 - k];
                    }
                }
                std::net::IpAddr::from(o)
            } else {
                let n = u32::from_str_radix(addr, 16).unwrap();
                std::net::IpAddr::from(n.to_le_bytes())
            };
            out.push(std::net::SocketAddr::new(ip, port).to_string());
        }
    }
    out
}
