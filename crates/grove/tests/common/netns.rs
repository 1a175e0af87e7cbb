//! A private network of Linux network namespaces for multi-host tests: a switch namespace
//! holding one bridge per network, and one namespace per host with an interface on each of
//! its networks (`eth0`, `eth1`, ... in the order given) and its own `/etc/hosts` (`ip netns
//! exec` mounts `/etc/netns/NS/hosts` over it). Nothing is added to this machine's own
//! network; everything goes when the value is dropped, even after a failed assertion.

use std::process::Command;

/// A network: its name and its /24's first three octets (`10.77.0`).
pub type Network<'a> = (&'a str, &'a str);

pub struct Net {
    prefix: String,
    networks: Vec<(String, String)>,
    /// Host -> (network, last octet) in interface order.
    hosts: Vec<(String, Vec<(String, u8)>)>,
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

    /// `networks`, and hosts on them (network, last octet); `names` are `/etc/hosts` lines
    /// every host sees (`("db.internal", "db", "back")`: that name is `db`'s address there).
    pub fn new(
        networks: &[Network<'_>],
        hosts: &[(&str, &[(&str, u8)])],
        names: &[(&str, &str, &str)],
    ) -> Net {
        let net = Net {
            prefix: format!("gv{}", std::process::id()),
            networks: networks
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            hosts: hosts
                .iter()
                .map(|(h, on)| {
                    (
                        h.to_string(),
                        on.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
                    )
                })
                .collect(),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        for (n, _) in &net.networks {
            let br = format!("br-{n}");
            ip(&["-n", &sw, "link", "add", &br, "type", "bridge"]);
            ip(&["-n", &sw, "link", "set", &br, "up"]);
        }
        let mut etc_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !etc_hosts.ends_with('\n') {
            etc_hosts.push('\n');
        }
        for (name, host, network) in names {
            etc_hosts.push_str(&format!("{} {name}\n", net.addr(host, network)));
        }
        for (h, on) in &net.hosts {
            let ns = net.ns(h);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            for (i, (network, a)) in on.iter().enumerate() {
                let (port, dev) = (format!("p-{h}-{i}"), format!("eth{i}"));
                let subnet = net.subnet(network);
                ip(&[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", &dev, "netns",
                    &ns,
                ]);
                ip(&[
                    "-n",
                    &sw,
                    "link",
                    "set",
                    &port,
                    "master",
                    &format!("br-{network}"),
                    "up",
                ]);
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{subnet}.{a}/24"),
                    "dev",
                    &dev,
                ]);
                ip(&["-n", &ns, "link", "set", &dev, "up"]);
            }
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

    /// The first three octets of `network`.
    pub fn subnet(&self, network: &str) -> String {
        self.networks
            .iter()
            .find(|(n, _)| n == network)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no network {network}"))
    }

    /// The address of `host` on `network`.
    pub fn addr(&self, host: &str, network: &str) -> String {
        let a = self
            .hosts
            .iter()
            .find(|(h, _)| h == host)
            .and_then(|(_, on)| on.iter().find(|(n, _)| n == network))
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{host} is not on {network}"));
        format!("{}.{a}", self.subnet(network))
    }

    /// `program args...` run on `host`.
    pub fn cmd(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Takes `host`'s interface on `network` down (`false`) or up again.
    pub fn link(&self, host: &str, network: &str, up: bool) {
        let i = self
            .hosts
            .iter()
            .find(|(h, _)| h == host)
            .and_then(|(_, on)| on.iter().position(|(n, _)| n == network))
            .unwrap_or_else(|| panic!("{host} is not on {network}"));
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.ns(host),
            "link",
            "set",
            &format!("eth{i}"),
            state,
        ]);
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
