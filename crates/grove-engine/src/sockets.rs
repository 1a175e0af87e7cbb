//! The listening sockets of socket-activated units (`socket = true`), held by grove between
//! the units' lives, as systemd's socket units are.
//!
//! A unit's socket is opened before its first start and handed to each of its processes; it
//! stays open while the unit crashes, is killed or restarts, so connections made meanwhile
//! wait in its backlog for the next process instead of being refused or reset. When the unit
//! stops for good (`grove stop`, a reload removing it, `down`), what reaches the socket while
//! the unit drains is answered by grove itself ([`refuse`]): each request gets a 503 that
//! says, in the `Grove-Not-Served` header, that nothing of it was served, so an edge in front
//! (grove's, on another host) sends it to another target whatever its method. Once the
//! process has exited the socket is shut down (connections are refused from then on, which
//! every proxy retries) after what waits in its backlog has been answered.
//!
//! The daemon hands these sockets to its holder process beside the edge's ([`UnitSockets::listening`],
//! [`UnitSockets::changed`]), so they outlive grove too, and gives a new grove the ones the
//! holder kept ([`UnitSockets::new`]).
//!
//! It must not know HTTP beyond the one answer, nor who the holder is.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

/// The backlog of a unit's socket: the connections that may wait for its next process.
const BACKLOG: i32 = 1024;
/// The longest request head read before the answer (a larger one is answered anyway).
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection to a stopping unit may take to send its head, and to read the
/// answer before it is closed.
const PATIENCE: Duration = Duration::from_secs(2);

/// Every socket-activated unit's listening socket, by address.
#[derive(Debug)]
pub struct UnitSockets {
    open: Mutex<HashMap<SocketAddr, Arc<TcpListener>>>,
    changed: watch::Sender<u64>,
    /// Set once the stack stops or is handed over: what closes then is not news to the holder.
    frozen: std::sync::atomic::AtomicBool,
}

impl Default for UnitSockets {
    fn default() -> UnitSockets {
        UnitSockets::new(Vec::new())
    }
}

impl UnitSockets {
    /// The registry, with the sockets a holder kept from the last grove (the connections in
    /// their backlogs are the next processes' first).
    pub fn new(inherited: Vec<(SocketAddr, TcpListener)>) -> UnitSockets {
        let open = inherited
            .into_iter()
            .map(|(a, l)| (a, Arc::new(l)))
            .collect();
        UnitSockets {
            open: Mutex::new(open),
            changed: watch::channel(0).0,
            frozen: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<TcpListener>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touched(&self) {
        if !self.frozen.load(std::sync::atomic::Ordering::Acquire) {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Whether [`UnitSockets::freeze`] was called.
    pub fn frozen(&self) -> bool {
        self.frozen.load(std::sync::atomic::Ordering::Acquire)
    }

    /// No more changes are announced: the stack is stopping, or handed over (the holder
    /// keeps the set it has for the next grove).
    pub fn freeze(&self) {
        self.frozen
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The socket at `addr`, opened (blocking, as the unit expects it) when there is none.
    pub fn get(&self, addr: SocketAddr) -> io::Result<Arc<TcpListener>> {
        let mut open = self.lock();
        if let Some(l) = open.get(&addr) {
            return Ok(l.clone());
        }
        // std sets SO_REUSEADDR, so a socket of the unit's last life in TIME_WAIT is no bar.
        let l = TcpListener::bind(addr)?;
        if let Ok(backlog) = nix::sys::socket::Backlog::new(BACKLOG) {
            let _ = nix::sys::socket::listen(&l, backlog);
        }
        let l = Arc::new(l);
        open.insert(addr, l.clone());
        drop(open);
        self.touched();
        Ok(l)
    }

    /// Whether grove holds a socket at `addr`.
    pub fn holds(&self, addr: SocketAddr) -> bool {
        self.lock().contains_key(&addr)
    }

    /// Takes the socket at `addr` out of the registry, for [`refuse`] to finish.
    pub fn take(&self, addr: SocketAddr) -> Option<Arc<TcpListener>> {
        let l = self.lock().remove(&addr);
        if l.is_some() {
            self.touched();
        }
        l
    }

    /// Shuts down every socket not at one of `keep` (a unit removed, or one that gave up).
    pub fn retain(&self, keep: &HashSet<SocketAddr>) {
        let gone: Vec<Arc<TcpListener>> = {
            let mut open = self.lock();
            let addrs: Vec<SocketAddr> =
                open.keys().filter(|a| !keep.contains(a)).copied().collect();
            addrs.iter().filter_map(|a| open.remove(a)).collect()
        };
        if gone.is_empty() {
            return;
        }
        for l in gone {
            shut(&l);
        }
        self.touched();
    }

    /// A descriptor of each socket, for the holder that keeps them while no grove runs.
    pub fn listening(&self) -> Vec<(SocketAddr, OwnedFd)> {
        self.lock()
            .iter()
            .filter_map(|(a, l)| Some((*a, OwnedFd::from(l.try_clone().ok()?))))
            .collect()
    }

    /// Changes whenever a socket opens or closes.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Stops the socket for every process that holds it (grove's holder, a unit's leftovers):
/// new connections are refused from now on.
fn shut(l: &TcpListener) {
    let _ = nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

/// Answers every connection that reaches a stopping unit's socket, until `exited` says its
/// process is gone; then answers what waits in the backlog and shuts the socket down.
pub fn refuse(listener: Arc<TcpListener>, exited: oneshot::Receiver<()>) {
    tokio::spawn(async move {
        let own = match listener.try_clone().and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        }) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot answer a stopping unit's connections: {e}");
                let _ = exited.await;
                shut(&listener);
                return;
            }
        };
        tokio::pin!(exited);
        loop {
            tokio::select! {
                conn = own.accept() => match conn {
                    Ok((s, _)) => { tokio::spawn(not_served(s)); }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                _ = &mut exited => break,
            }
        }
        // What waits in the backlog now is answered too; whatever arrives after the
        // shutdown is refused (the race between the two is the kernel's microseconds).
        let std = own.into_std();
        if let Ok(l) = &std {
            while let Ok((s, _)) = l.accept() {
                if let Ok(s) = tokio::net::TcpStream::from_std(s) {
                    tokio::spawn(not_served(s));
                }
            }
        }
        shut(&listener);
    });
}

/// The answer to one request that reached a stopping unit: its head is read (so closing
/// does not reset what the client sent), then 503 with `Grove-Not-Served`, then the rest
/// of what it sends is read until it closes.
async fn not_served(mut s: tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 4096];
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let _ = s.write_all(answer().as_bytes()).await;
    let _ = s.shutdown().await;
    let _ = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 4096];
        let mut left = 1usize << 20;
        while left > 0 {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn answer() -> String {
    let body = "503 Service Unavailable: this unit is stopping; the request was not served\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n{}: stopping\r\nRetry-After: 1\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        grove_plan::NOT_SERVED_HEADER,
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn free_addr() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn a_socket_is_opened_once_and_kept_until_taken() {
        let reg = UnitSockets::default();
        let addr = free_addr();
        let first = reg.get(addr).unwrap();
        let again = reg.get(addr).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one socket per address");
        assert!(reg.holds(addr));
        let other = free_addr();
        reg.get(other).unwrap();
        assert_eq!(reg.listening().len(), 2);
        // A unit gone: its socket shut, the kept one still listening.
        reg.retain(&HashSet::from([addr]));
        assert_eq!(reg.listening().len(), 1);
        assert!(
            std::net::TcpStream::connect(other).is_err(),
            "refused once shut"
        );
        assert!(std::net::TcpStream::connect(addr).is_ok());
        let taken = reg.take(addr).unwrap();
        assert!(!reg.holds(addr));
        shut(&taken);
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "refused once shut"
        );
    }

    #[test]
    fn connections_made_between_processes_wait_in_the_backlog() {
        let reg = UnitSockets::default();
        let addr = free_addr();
        let l = reg.get(addr).unwrap();
        // No process accepts: the connection is made, and its request waits.
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"GET / "));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_units_requests_are_answered_not_served_then_refused() {
        let reg = UnitSockets::default();
        let addr = free_addr();
        let l = reg.get(addr).unwrap();
        // Waiting in the backlog when the unit stops: answered, not reset.
        let mut waiting = std::net::TcpStream::connect(addr).unwrap();
        waiting
            .write_all(b"POST /records HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            .unwrap();
        let (done, exited) = oneshot::channel();
        refuse(reg.take(addr).unwrap(), exited);
        drop(l);
        let read = |mut c: std::net::TcpStream| {
            tokio::task::spawn_blocking(move || {
                let mut text = String::new();
                let _ = c.read_to_string(&mut text);
                text
            })
        };
        let text = read(waiting).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("grove-not-served: stopping\r\n"), "{text}");
        // One made while it drains: the same.
        let mut during = std::net::TcpStream::connect(addr).unwrap();
        during
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(read(during).await.unwrap().starts_with("HTTP/1.1 503 "));
        // The process exited: refused from then on.
        done.send(()).unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if std::net::TcpStream::connect(addr).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(refused.is_ok(), "the socket was never shut");
    }
}
