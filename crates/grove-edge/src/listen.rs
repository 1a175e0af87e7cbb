//! Client connections: the accept loop (a connection costs little until its first byte), the
//! TLS handshake, and each connection's life on the fast path and then hyper's, until it
//! ends or the edge drains.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::{fast, framing, idle, pages, proxy, tls, Conn, Shared};
use std::net::SocketAddr;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    configured: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
) {
    loop {
        // A draining edge takes no more connections: they wait in the backlog for the next
        // grove, which serves on the same socket.
        let permit = tokio::select! {
            _ = shared.drained() => return,
            p = sem.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let next = tokio::select! {
            _ = shared.drained() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match next {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept on {local}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        // Forwards are keyed by the configured address (which may say port 0 in tests).
        let conn = Conn {
            peer,
            local: if shared.table().forwards.contains_key(&configured) {
                configured
            } else {
                local
            },
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            // A connection costs its socket and this small task until its first byte: the
            // TLS session and the request path's buffers (boxed) come only once it speaks.
            let first = shared.limits.header_read_timeout;
            // `peek`, not `readable`: readiness can be reported before a byte is there.
            match tokio::time::timeout(first, stream.peek(&mut [0u8; 1])).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    if tls.is_none() {
                        // Nothing arrived: say so, as HAProxy does (TLS cannot: no session).
                        let _ = stream
                            .try_write(&pages::timeout_page("no request arrived in time", true));
                    }
                    drop(permit);
                    return;
                }
            }
            Box::pin(accepted(stream, tls, shared, conn)).await;
            drop(permit);
        });
    }
}

/// A connection that spoke: its TLS handshake (for an `https://` listener), then its requests.
async fn accepted(
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    conn: Conn,
) {
    match tls {
        None => serve(stream, shared, conn, true).await,
        // Boxed: a plain connection's task does not carry a TLS session's size.
        Some(acceptor) => Box::pin(accepted_tls(stream, acceptor, shared, conn)).await,
    }
}

/// An `https://` connection: its handshake, then its requests.
async fn accepted_tls(
    stream: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    conn: Conn,
) {
    let peer = conn.peer;
    let handshake =
        tokio::time::timeout(shared.limits.header_read_timeout, acceptor.accept(stream)).await;
    match handshake {
        // A TLS-ALPN-01 validation only needs the handshake.
        Ok(Ok(s)) if s.get_ref().1.alpn_protocol() == Some(tls::ACME_TLS_ALPN) => {}
        Ok(Ok(s)) => {
            // HTTP/2 (chosen by ALPN) is hyper's from the start.
            let h1 = s.get_ref().1.alpn_protocol() != Some(b"h2");
            serve(s, shared, conn, h1).await
        }
        Ok(Err(e)) => tracing::debug!("TLS handshake from {peer}: {e}"),
        Err(_) => tracing::debug!("TLS handshake from {peer} timed out"),
    }
}

async fn serve<I>(mut io: I, shared: Arc<Shared>, conn: Conn, fast: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + fast::Readable + Unpin + Send + 'static,
{
    // The client's address as X-Forwarded-For wants it, made once per connection.
    let peer = conn.peer.ip().to_string();
    // The common case first, without hyper; what it leaves (from a request's start) is
    // hyper's, with the bytes it read.
    let mut read = bytes::BytesMut::new();
    if fast
        && shared.limits.fast_path
        && fast::serve(&mut io, &mut read, &shared, conn, peer.as_bytes()).await
            == fast::Outcome::Closed
    {
        return;
    }
    // Boxed: hyper's connection state is allocated only for a connection handed to it, so
    // an idle fast-path connection's task stays small.
    Box::pin(with_hyper(io, read, shared, conn, peer)).await;
}

/// The rest of a connection, hyper's: HTTP/2, and what the fast path left (from the start
/// of a request, whose bytes read so far are in `read`).
async fn with_hyper<I>(io: I, read: bytes::BytesMut, shared: Arc<Shared>, conn: Conn, peer: String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // hyper's read buffer (8 KiB at least); a head past it is refused 431.
    let max_buf = shared.limits.max_header_bytes.max(8192);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // A client that shuts its writing side after its requests (`nc -N`) still gets the
        // answers, as on the fast path.
        .half_close(true)
        .timer(TokioTimer::new())
        // The guard's clocks ([`idle`]) close quiet connections; hyper's own header clock
        // (which also runs while a connection waits for its next request) is only a backstop.
        .header_read_timeout(shared.limits.header_read_timeout + shared.limits.keepalive_timeout)
        .max_buf_size(max_buf)
        .max_headers(shared.limits.max_headers);
    // The same head limit as HTTP/1.1: a larger header list gets 431 on its stream, not the
    // connection dropped.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(shared.limits.max_header_bytes).unwrap_or(u32::MAX));
    // Set once a response switched protocols: the guard stops reading the tunnel as HTTP.
    let upgraded = Arc::new(AtomicBool::new(false));
    let scanner = framing::Scanner::new(max_buf + 1024, upgraded.clone());
    let activity = idle::Activity::new();
    let io = framing::Guard::new(io, scanner, conn, shared.clone())
        .with_prefix(read.freeze())
        .with_activity(activity.clone());
    let peer = hyper::header::HeaderValue::from_str(&peer)
        .unwrap_or(hyper::header::HeaderValue::from_static("unknown"));
    let edge = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let s = shared.clone();
        let upgraded = upgraded.clone();
        let peer = peer.clone();
        let busy = activity.begin();
        async move {
            let res = proxy::handle(s, req, conn, peer).await;
            if res.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                upgraded.store(true, Ordering::Release);
            }
            Ok::<_, std::convert::Infallible>(res.map(|b| idle::tracked(b, busy)))
        }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        r = connection.as_mut() => r,
        _ = edge.drained() => {
            // Handed over: the current requests finish, then the connection closes.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!("connection from {}: {e}", conn.peer);
    }
}
