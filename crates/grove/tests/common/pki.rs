//! Certificates for the tests: a CA that signs leaves (rcgen), and Debian's pebble ACME
//! server with its DNS stand-in.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::free_port;

/// A CA and a way to sign leaves with it.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "grove test CA");
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (cert PEM, key PEM) for `names`; `days` = (not before, not after) from now, in days.
    pub fn leaf(&self, names: &[&str], days: Option<(i64, i64)>) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        if let Some((from, to)) = days {
            let now = time::OffsetDateTime::now_utc();
            p.not_before = now + time::Duration::days(from);
            p.not_after = now + time::Duration::days(to);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Where pebble runs: the command that runs a program there (nothing: this host), the
/// address its ACME directory listens on, and the address every name resolves to (the
/// host whose challenges it validates).
#[derive(Clone)]
pub struct PebbleAt {
    pub prefix: Vec<String>,
    pub ip: String,
    pub target: String,
}

impl PebbleAt {
    /// This host, on loopback.
    pub fn local() -> PebbleAt {
        PebbleAt {
            prefix: Vec::new(),
            ip: "127.0.0.1".into(),
            target: "127.0.0.1".into(),
        }
    }

    fn cmd(&self, program: &str) -> Command {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// Debian's pebble and its DNS stand-in, on ports of their own, killed on drop.
pub struct Pebble {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    pub directory: String,
    mgmt: u16,
    dns_mgmt: u16,
    at: PebbleAt,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, with
    /// every name resolving to 127.0.0.1. Its own ports are drawn afresh when a start fails
    /// (another test may have taken one between the draw and the bind).
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_at(http_port, tls_port, PebbleAt::local())
    }

    /// [`Pebble::start`] where `at` says (another network namespace: a private ACME server
    /// inside the network).
    pub fn start_at(http_port: u16, tls_port: u16, at: PebbleAt) -> Pebble {
        let mut why = String::new();
        for _ in 0..3 {
            match Pebble::try_start(http_port, tls_port, &at) {
                Ok(p) => return p,
                Err(e) => why = e,
            }
        }
        panic!("pebble did not start in 3 tries; the last one said:\n{why}");
    }

    fn try_start(http_port: u16, tls_port: u16, at: &PebbleAt) -> Result<Pebble, String> {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new();
        let (c, k) = ca.leaf(&["localhost", "127.0.0.1", &at.ip], None);
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), c).unwrap();
        std::fs::write(dir.path().join("key.pem"), k).unwrap();
        let (listen, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
        std::fs::write(
            dir.path().join("pebble.json"),
            format!(
                r#"{{"pebble": {{"listenAddress": "{ip}:{listen}", "managementListenAddress": "127.0.0.1:{mgmt}",
"certificate": "{d}/cert.pem", "privateKey": "{d}/key.pem", "httpPort": {http_port}, "tlsPort": {tls_port},
"ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
                d = dir.path().display(),
                ip = at.ip,
            ),
        )
        .unwrap();
        let dns_srv = at
            .cmd("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                &at.target,
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble; scripts/test installs it)");
        let pebble = at
            .cmd("pebble")
            .args([
                "-config",
                &dir.path().join("pebble.json").display().to_string(),
                "-dnsserver",
                &format!("127.0.0.1:{dns}"),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::fs::File::create(dir.path().join("pebble.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("pebble.err")).unwrap())
            .spawn()
            .expect("pebble (Debian package pebble; scripts/test installs it)");
        let p = Pebble {
            children: vec![dns_srv, pebble],
            directory: format!("https://{}:{listen}/dir", at.ip),
            dir,
            mgmt,
            dns_mgmt,
            at: at.clone(),
        };
        let ca = p.dir.path().join("ca.pem");
        // Generous: under a loaded machine pebble's start (key generation) can be slow.
        let log = |p: &Pebble| {
            let read = |f: &str| std::fs::read_to_string(p.dir.path().join(f)).unwrap_or_default();
            format!("{}{}", read("pebble.log"), read("pebble.err"))
        };
        let mut p = p;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(60) {
            let up =
                p.at.cmd("curl")
                    .args(["-sf", "--cacert", &ca.display().to_string(), &p.directory])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
            if up {
                return Ok(p);
            }
            if p.children
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return Err(format!("pebble or its DNS stand-in exited:\n{}", log(&p)));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!(
            "no answer on {} within 60 s:\n{}",
            p.directory,
            log(&p)
        ))
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root pebble issues under (it changes with every pebble start).
    pub fn issuing_root(&self) -> std::path::PathBuf {
        let out = self
            .at
            .cmd("curl")
            .args(["-sfk", &format!("https://127.0.0.1:{}/roots/0", self.mgmt)])
            .output()
            .unwrap();
        assert!(out.status.success());
        let path = self.dir.path().join("root.pem");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// Makes `host` resolve to an address nothing listens on, so its challenge fails.
    pub fn break_dns(&self, host: &str) {
        let out = self
            .at
            .cmd("curl")
            .args([
                "-sf",
                "-d",
                &format!(r#"{{"host":"{host}.","addresses":["127.0.0.2"]}}"#),
                &format!("http://127.0.0.1:{}/add-a", self.dns_mgmt),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
}
