//! Plain-HTTP upstream connections for the fast path ([`crate::fast`]): TCP connections kept
//! open between requests, per upstream address (`host:port`).
//!
//! A connection is only ever pooled idle: after a whole response was read from it, with
//! nothing left over, and the upstream did not ask to close. Taking one skips connections
//! idle past [`IDLE_TIMEOUT`] and those the upstream closed meanwhile (a connection with
//! something to read while idle has been closed or is out of step; either way it goes).
//! Checking costs no system call when nothing arrived: tokio knows the socket is not
//! readable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Idle connections older than this are closed instead of reused.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Room kept for reading an upstream's responses.
const READ_BUF: usize = 16 * 1024;

/// One upstream connection and what was read from it.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
}

struct Idle {
    conn: Upstream,
    since: Instant,
}

/// Idle connections by upstream address.
pub(crate) struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    max_per_host: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max_per_host", &self.max_per_host)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(max_per_host: usize, connect_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_per_host,
            connect_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Idle>>> {
        match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The most recently used idle connection to `authority` that is still open.
    pub(crate) fn take(&self, authority: &str) -> Option<Upstream> {
        loop {
            let Idle { conn, since } = self.lock().get_mut(authority)?.pop()?;
            if since.elapsed() >= IDLE_TIMEOUT {
                // The rest are older still.
                if let Some(list) = self.lock().get_mut(authority) {
                    list.clear();
                }
                return None;
            }
            let mut probe = [0u8; 1];
            match conn.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(conn),
                // Closed (0), unexpected bytes, or an error: not reusable.
                _ => continue,
            }
        }
    }

    /// Keeps an idle connection (past the per-address limit it is closed).
    pub(crate) fn put(&self, authority: &str, mut conn: Upstream) {
        conn.buf.clear();
        let mut idle = self.lock();
        let list = match idle.get_mut(authority) {
            Some(l) => l,
            None => idle.entry(authority.to_string()).or_default(),
        };
        if list.len() < self.max_per_host {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// A new connection to `authority`, within the connect timeout.
    pub(crate) async fn connect(&self, authority: &str) -> Result<Upstream, String> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    return Err(format!(
                        "no connection within {} ms",
                        self.connect_timeout.as_millis()
                    ))
                }
            };
        let _ = stream.set_nodelay(true);
        Ok(Upstream {
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn closed_connections_are_not_handed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let pool = Pool::new(4, Duration::from_secs(1));
        let a = pool.connect(&addr).await.unwrap_or_else(|e| panic!("{e}"));
        let (mut server_a, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        let b = pool.connect(&addr).await.unwrap_or_else(|e| panic!("{e}"));
        let (_server_b, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        let b_port = b
            .stream
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        pool.put(&addr, b);
        pool.put(&addr, a);
        // The upstream closes `a` while it is idle.
        server_a.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
        drop(server_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = pool
            .take(&addr)
            .unwrap_or_else(|| panic!("b is still open"));
        assert_eq!(
            got.stream
                .local_addr()
                .unwrap_or_else(|e| panic!("{e}"))
                .port(),
            b_port
        );
        assert!(pool.take(&addr).is_none());
        assert!(pool.take("127.0.0.1:1").is_none());
    }
}
