//! The units' ports, checked before anything starts (issue 27): a port another program holds
//! would otherwise be a crash loop whose only trace is "Address already in use" deep in a
//! unit's log. A fixed port that is taken stops `up` with the holder's pid and program (from
//! `/proc`, when visible); an automatic one is moved to a free port, which the store then
//! keeps as that unit's port.
//!
//! The decision ([`verdict`]) is pure; [`taken`] and [`holder`] are the effects.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use grove_config::{PortSpec, Stack};
use grove_plan::Plan;

/// A unit whose port is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Busy {
    pub unit: String,
    pub port: u16,
    /// The stack file fixes the port (else grove chose it).
    pub fixed: bool,
}

/// What to do about the taken ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every port is free.
    Free,
    /// Build the Plan again avoiding these (automatic ports only were taken).
    Avoid(BTreeSet<u16>),
    /// A fixed port is taken: `up` stops.
    Refuse(Busy),
}

/// The verdict on `busy`, the units of a Plan whose ports are taken.
pub(crate) fn verdict(busy: &[Busy]) -> Verdict {
    if let Some(b) = busy.iter().find(|b| b.fixed) {
        return Verdict::Refuse(b.clone());
    }
    if busy.is_empty() {
        Verdict::Free
    } else {
        Verdict::Avoid(busy.iter().map(|b| b.port).collect())
    }
}

/// The units of `plan` that will listen on a port another program holds now.
pub(crate) fn taken(plan: &Plan, stack: &Stack, adopting: &[String]) -> Vec<Busy> {
    let mut out = Vec::new();
    for (key, u) in &plan.units {
        let Some(port) = u.port else {
            continue;
        };
        // A unit left running by an earlier grove holds its own port.
        if adopting.contains(key) {
            continue;
        }
        if bindable(u.bind, port) {
            continue;
        }
        let fixed = stack
            .services
            .get(&u.service)
            .is_some_and(|s| matches!(s.port, PortSpec::Fixed(_)));
        out.push(Busy {
            unit: u.name.clone(),
            port,
            fixed,
        });
    }
    out
}

/// Whether a listener could bind `port` on `bind` (and on loopback, where units listen
/// unless told otherwise) right now.
fn bindable(bind: IpAddr, port: u16) -> bool {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    [bind, loopback]
        .iter()
        .all(|ip| TcpListener::bind(SocketAddr::new(*ip, port)).is_ok())
}

/// The message for a fixed port that is taken.
pub(crate) fn refusal(b: &Busy) -> String {
    let who = holder(b.port).map_or_else(
        || "another program (not visible to grove)".to_string(),
        |h| format!("pid {h}"),
    );
    format!(
        "{}'s port {} is in use (Address already in use) by {who}; stop it, or give {} another \
         `port` in the stack file",
        b.unit, b.port, b.unit
    )
}

/// `1234 (python3)`: the process listening on TCP `port`, from `/proc/net/tcp{,6}` and the
/// processes' descriptors, when this user can see them.
pub(crate) fn holder(port: u16) -> Option<String> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(listening_inodes(&text, port));
    }
    if inodes.is_empty() {
        return None;
    }
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok());
            if inode.is_some_and(|i| inodes.contains(&i)) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Some(format!("{pid} ({comm})"));
            }
        }
    }
    None
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode = f.get(9)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            // 0A: LISTEN.
            (p == port && *state == "0A").then(|| inode.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(unit: &str, port: u16, fixed: bool) -> Busy {
        Busy {
            unit: unit.into(),
            port,
            fixed,
        }
    }

    #[test]
    fn a_taken_fixed_port_refuses_and_automatic_ones_move() {
        assert_eq!(verdict(&[]), Verdict::Free);
        assert_eq!(
            verdict(&[busy("a", 1, false), busy("b", 2, false)]),
            Verdict::Avoid([1, 2].into())
        );
        assert_eq!(
            verdict(&[busy("a", 1, false), busy("b", 2, true)]),
            Verdict::Refuse(busy("b", 2, true))
        );
    }

    #[test]
    fn the_holder_of_a_listening_socket_is_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!bindable(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        let h = holder(port).unwrap();
        assert!(h.starts_with(&format!("{} ", std::process::id())), "{h}");
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n   1: 0100007F:1F90 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n";
        assert_eq!(listening_inodes(table, 8080), [4242]);
    }
}
