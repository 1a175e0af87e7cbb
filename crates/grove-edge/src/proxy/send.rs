//! One attempt of a request hyper serves at one target: through the fast path's HTTP/1.1
//! client ([`crate::fast::client`]) when the target is plain HTTP and the body is held whole,
//! else through hyper-util's pooled client (streamed bodies, upgrades, HTTPS upstreams); and
//! what the answer, or its absence, means for the next target.

use super::*;
use crate::fast::client::{self, Outgoing, Unsent};

/// What every attempt of one request shares.
pub(super) struct Attempt<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) pq: &'a PathAndQuery,
    pub(super) method: &'a hyper::Method,
    /// The client's protocol version, which the answer speaks.
    pub(super) version: Version,
    pub(super) id: &'a str,
    /// The body is held whole (or absent): it can be sent again.
    pub(super) buffered: bool,
    pub(super) upgrade: bool,
    /// Idempotent and buffered, not an upgrade: it may go to another target after one
    /// closed without answering.
    pub(super) retryable: bool,
}

/// How one attempt ended.
pub(super) enum Tried {
    /// Nothing of it was served: the next target may have it (the reason is kept for the
    /// page if none does).
    Next(String),
    /// The client's answer (a response, or a page saying what failed).
    Answer(Response<BoxBody>),
}

/// Sends the request to `backend` and says what came of it.
pub(super) async fn attempt(
    a: &Attempt<'_>,
    backend: &Arc<Backend>,
    body: &mut Option<ReqBody>,
    headers: HeaderMap,
    client_upgrade: &mut Option<hyper::upgrade::OnUpgrade>,
) -> Tried {
    let limits = &a.shared.limits;
    let timed_out = || {
        Tried::Answer(error_page(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "{} did not answer within {} s",
                backend.name,
                limits.upstream_response.as_secs()
            ),
            a.id,
        ))
    };
    if client::takes(backend, a.buffered, a.upgrade, a.method) {
        backend.active.fetch_add(1, Ordering::Relaxed);
        let sent = tokio::time::timeout(limits.upstream_response, own(a, backend, body, headers));
        let sent = sent.await;
        backend.active.fetch_sub(1, Ordering::Relaxed);
        return match sent {
            Err(_) => timed_out(),
            Ok(Err(Unsent::Refused(why))) => {
                Tried::Next(format!("cannot connect to {} ({why})", backend.name))
            }
            Ok(Err(Unsent::Closed(_))) if a.retryable => {
                Tried::Next(format!("{} closed the connection", backend.name))
            }
            Ok(Err(Unsent::Closed(why) | Unsent::Failed(why))) => Tried::Answer(error_page(
                StatusCode::BAD_GATEWAY,
                &format!("{} failed: {why}", backend.name),
                a.id,
            )),
            Ok(Ok(res)) => Tried::Answer(answer_own(res, backend, a.version, a.id)),
        };
    }
    let out = match upstream_request(backend, a.pq, a.method, body, headers) {
        Ok(out) => out,
        Err(why) => return Tried::Answer(error_page(StatusCode::BAD_GATEWAY, &why, a.id)),
    };
    backend.active.fetch_add(1, Ordering::Relaxed);
    let sent = tokio::time::timeout(limits.upstream_response, send(a.shared, out)).await;
    backend.active.fetch_sub(1, Ordering::Relaxed);
    match sent {
        Err(_) => timed_out(),
        Ok(Err(SendError::Connect(why))) => {
            Tried::Next(format!("cannot connect to {} ({why})", backend.name))
        }
        Ok(Err(SendError::Exchange(e))) => {
            let e: &(dyn std::error::Error + 'static) = &*e;
            // An idempotent request whose target closed before any response byte goes to
            // the next target.
            if a.retryable && closed_before_answering(e) {
                return Tried::Next(format!("{} closed the connection", backend.name));
            }
            Tried::Answer(exchange_failed(e, backend, a.id))
        }
        // A stopping unit's socket, answered by its grove: nothing was served, so a request
        // that can be sent again goes to the next target.
        Ok(Ok(res)) if a.buffered && !a.upgrade && not_served(&res) => Tried::Next(format!(
            "{} is stopping: the request was not served",
            backend.name
        )),
        Ok(Ok(res)) => Tried::Answer(answer_from(
            res,
            client_upgrade.take(),
            backend,
            a.version,
            a.id,
        )),
    }
}

/// The exchange through the fast path's client.
async fn own(
    a: &Attempt<'_>,
    backend: &Backend,
    body: &Option<ReqBody>,
    mut headers: HeaderMap,
) -> Result<Response<BoxBody>, Unsent> {
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&backend.authority) {
            headers.insert(header::HOST, v);
        }
    }
    let empty = Bytes::new();
    let body = match body {
        Some(ReqBody::Whole(b)) => b,
        _ => &empty,
    };
    let req = Outgoing {
        method: a.method,
        target: a.pq,
        headers: &headers,
        body,
    };
    client::send(a.shared, backend, req).await
}

/// The client's answer from a response of the fast path's client: a bad one refused with
/// 502, hop-by-hop headers removed, the client's protocol version.
fn answer_own(
    res: Response<BoxBody>,
    backend: &Backend,
    version: Version,
    id: &str,
) -> Response<BoxBody> {
    let (mut p, body) = res.into_parts();
    let lines = p
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    if let Err(why) = rules::check_response(lines) {
        return error_page(
            StatusCode::BAD_GATEWAY,
            &format!("{} sent a bad response: {why}", backend.name),
            id,
        );
    }
    strip_hop_by_hop(&mut p.headers);
    p.version = version;
    Response::from_parts(p, body)
}

/// One exchange with one upstream, through hyper-util's pooled client.
pub(super) async fn send(
    shared: &Shared,
    req: Request<BoxBody>,
) -> Result<Response<Incoming>, SendError> {
    match shared.client.request(req).await {
        Ok(res) => Ok(res),
        Err(e) if e.is_connect() => Err(SendError::Connect(root_cause(&e))),
        Err(e) => Err(SendError::Exchange(Box::new(e))),
    }
}

/// Why a request got no response from hyper-util's client.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// No connection could be made (nothing was sent; safe to try elsewhere).
    #[error("{0}")]
    Connect(String),
    /// The exchange failed after connecting.
    #[error(transparent)]
    Exchange(BoxError),
}
