//! Socket-activated units (`socket = true`): their sockets through their lives (see
//! [`crate::sockets`]). The socket is handed to each process the unit starts, kept while it
//! restarts, answered by grove while it stops for good, and shut once nothing needs it.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use grove_supervisor::State;
use tokio::sync::oneshot;

use super::{Actor, Intent};
use crate::sockets::{self, UnitSockets};

/// The actor's part of the sockets.
#[derive(Debug, Default)]
pub(crate) struct Listen {
    pub(super) sockets: Arc<UnitSockets>,
    /// Units that stop for good while grove answers their sockets, told when they exited.
    refusing: HashMap<String, oneshot::Sender<()>>,
}

impl Actor {
    /// The socket to hand to the next process of `name`, opened when grove holds none.
    pub(super) fn unit_socket(&self, name: &str) -> Result<Option<Arc<TcpListener>>, String> {
        let Some(addr) = self.units.get(name).and_then(|rt| rt.unit.socket_address()) else {
            return Ok(None);
        };
        self.listen
            .sockets
            .get(addr)
            .map(Some)
            .map_err(|e| format!("cannot listen on {addr} for its socket: {e}"))
    }

    /// The stop signal went to `name`: when it stops for good (not to start again), grove
    /// answers its socket until the process has exited, then shuts it.
    pub(super) fn stopping_socket(&mut self, name: &str) {
        let Some(rt) = self.units.get(name) else {
            return;
        };
        let Some(addr) = rt.unit.socket_address() else {
            return;
        };
        // A restart (a reload's, autoheal's) keeps it: connections wait for the next process.
        if rt.restarting() || rt.machine.state() != &State::Stopping {
            return;
        }
        // Another unit (a deploy's next generation, on the same fixed port) still needs it.
        let shared = self
            .units
            .iter()
            .any(|(k, o)| k != name && o.unit.socket_address() == Some(addr) && wanted(o));
        if shared {
            return;
        }
        if let Some(l) = self.listen.sockets.take(addr) {
            let (tx, rx) = oneshot::channel();
            sockets::refuse(l, rx);
            self.listen.refusing.insert(name.to_string(), tx);
        }
    }

    /// `name`'s process exited: a socket grove was answering for it is shut, and any socket
    /// no unit needs any more with it.
    pub(super) fn exited_socket(&mut self, name: &str) {
        if let Some(tx) = self.listen.refusing.remove(name) {
            let _ = tx.send(());
        }
        self.sweep_sockets();
    }

    /// Shuts the sockets no unit needs: those of units removed, stopped by the operator or
    /// given up on.
    pub(super) fn sweep_sockets(&mut self) {
        if self.recorded.is_some() {
            return;
        }
        let keep: HashSet<SocketAddr> = self
            .units
            .values()
            .filter(|rt| wanted(rt))
            .flat_map(|rt| {
                let next = match &rt.after_stop {
                    super::AfterStop::Restart(def) => def.socket_address(),
                    _ => None,
                };
                rt.unit.socket_address().into_iter().chain(next)
            })
            .collect();
        self.listen.sockets.retain(&keep);
    }
}

/// Whether a unit's socket is still needed: it runs, is about to, or will start again.
fn wanted(rt: &super::Rt) -> bool {
    let resting = matches!(
        rt.machine.state(),
        State::Stopped | State::Failed { .. } | State::Completed
    );
    rt.proc.is_some()
        || rt.restarting()
        || !resting
        || matches!(rt.intent, Intent::Start | Intent::Blocked(_))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_socket_activated_unit_with_a_port_has_an_address() {
        let plan = crate::actor::tests::plan_of(
            r#"
[services.web]
command = "app"
port = 8000
socket = true
[services.worker]
command = "work"
port = 8001
"#,
        );
        let (web, worker) = (&plan.units["web"], &plan.units["worker"]);
        assert_eq!(
            web.socket_address(),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(worker.socket_address(), None);
    }
}
