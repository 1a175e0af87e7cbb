//! Plain-HTTP upstream connections: a pool of HTTP/1.1 connections per upstream address on
//! hyper's low-level client (`hyper::client::conn::http1`).
//!
//! The edge proxies every request through here unless the upstream speaks HTTPS (those go
//! through hyper-util's pooled client with rustls). Measured on the proxy benchmark, the
//! general-purpose client's per-request work (its pool key, the absolute URI it wants, and
//! a large request future moved onto the heap) was a visible share of the edge's CPU; this
//! pool keeps only what a reverse proxy needs: take an idle connection that can send, or
//! dial a new one; put it back as soon as the response head arrives (hyper says when it can
//! send again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::proxy::{BoxBody, BoxError};

/// Idle connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection could be made (nothing was sent; safe to try elsewhere).
    #[error("{0}")]
    Connect(String),
    /// The exchange failed after connecting.
    #[error(transparent)]
    Exchange(BoxError),
}

struct Idle {
    sender: SendRequest<BoxBody>,
    since: Instant,
}

/// Connections by upstream address (`host:port`).
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

    /// Sends `req` (origin-form URI, Host set) to `authority` and waits for the response head.
    pub(crate) async fn send(
        &self,
        authority: &str,
        mut req: Request<BoxBody>,
    ) -> Result<Response<Incoming>, SendError> {
        // A pooled connection the upstream closed just as it was taken gives the request
        // back unsent; then the next one (at last a new one) is tried.
        loop {
            let (mut sender, fresh) = match self.checkout(authority) {
                Some(s) => (s, false),
                None => (self.connect(authority).await?, true),
            };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    self.put(authority, sender);
                    return Ok(res);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(SendError::Exchange(Box::new(e.into_error()))),
                },
            }
        }
    }

    /// An idle connection that can send now. Busy ones (a response still streaming) stay;
    /// closed and stale ones go.
    fn checkout(&self, authority: &str) -> Option<SendRequest<BoxBody>> {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let list = idle.get_mut(authority)?;
        let now = Instant::now();
        list.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < IDLE_TIMEOUT);
        let i = list.iter().rposition(|c| c.sender.is_ready())?;
        Some(list.swap_remove(i).sender)
    }

    fn put(&self, authority: &str, sender: SendRequest<BoxBody>) {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let list = match idle.get_mut(authority) {
            Some(l) => l,
            None => idle.entry(authority.to_string()).or_default(),
        };
        if list.len() < self.max_per_host {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
        // Past the limit the sender is dropped: hyper closes the connection once its
        // response is done.
    }

    async fn connect(&self, authority: &str) -> Result<SendRequest<BoxBody>, SendError> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(authority),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
            Err(_) => {
                return Err(SendError::Connect(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection: {e}");
            }
        });
        Ok(sender)
    }
}
