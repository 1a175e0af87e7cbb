//! A private network of Linux network namespaces for multi-host tests: a switch namespace
//! holding a bridge, and one namespace per host with `eth0` on it (10.77.0.0/24) and its own
//! `/etc/hosts` (`ip netns exec` mounts `/etc/netns/NS/hosts` over it). Nothing is added to
//! this machine's own network; everything goes when the value is dropped, even after a
//! failed assertion.

use std::process::Command;

/// The network's prefix length and first three octets.
pub const SUBNET: &str = "10.77.0";

pub struct Net {
    prefix: String,
    hosts: Vec<(String, u8)>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// Whether this machine can make one (root, and `ip` from iproute2).
    pub fn possible() -> Result<(), String> {
        if !nix::unistd::getuid().is_root() {
            return Err("network namespaces need root".into());
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => Ok(()),
            _ => Err("`ip` (iproute2) is missing: scripts/test installs it".into()),
        }
    }

    /// Hosts by name and last octet; `names` are extra `/etc/hosts` lines every host sees
    /// (`("db.internal", "db")` maps that name to the host `db`).
    pub fn new(hosts: &[(&str, u8)], names: &[(&str, &str)]) -> Net {
        let net = Net {
            prefix: format!("gv{}", std::process::id()),
            hosts: hosts.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        let mut etc_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !etc_hosts.ends_with('\n') {
            etc_hosts.push('\n');
        }
        for (name, host) in names {
            etc_hosts.push_str(&format!("{} {name}\n", net.addr(host)));
        }
        for (h, a) in &net.hosts {
            let ns = net.ns(h);
            let port = format!("p-{h}");
            ip(&["netns", "add", &ns]);
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{a}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let etc = format!("/etc/netns/{ns}");
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(format!("{etc}/hosts"), &etc_hosts).unwrap();
        }
        net
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The address of `host`.
    pub fn addr(&self, host: &str) -> String {
        let a = self
            .hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no host {host}"));
        format!("{SUBNET}.{a}")
    }

    /// `program args...` run on `host`.
    pub fn cmd(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Takes `host`'s link down (`false`) or up again.
    pub fn link(&self, host: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns(host), "link", "set", "eth0", state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (h, _) in self.hosts.clone() {
            let ns = self.ns(&h);
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns("sw")])
            .status();
    }
}
