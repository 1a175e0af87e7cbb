//! The server side: one hyper HTTP/1.1 connection per accepted Unix-socket client.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use grove_engine::EngineHandle;
use grove_plan::Plan;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::Notify;

use crate::{Acted, ApiError, Targets};

/// Re-reads the stack file into a new Plan (given the running one, for sticky ports), or says
/// why it cannot, as the text a user should see.
pub type Reloader = Arc<dyn Fn(&Plan) -> Result<Plan, String> + Send + Sync>;

/// What the server needs.
pub struct ApiContext {
    /// The engine.
    pub engine: EngineHandle,
    /// How to reload.
    pub reload: Reloader,
    /// Notified once a `down` request has stopped everything: the daemon should exit.
    pub down: Arc<Notify>,
    /// Called with each Plan after the engine has applied it (the daemon swaps the edge's
    /// route table here).
    pub applied: Arc<dyn Fn(&Plan) + Send + Sync>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").finish_non_exhaustive()
    }
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, ctx: Arc<ApiContext>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, usually: say so once a second at most.
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&ctx, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &ApiError { error: msg.into() })
}

fn gone() -> Response<Full<Bytes>> {
    error(StatusCode::SERVICE_UNAVAILABLE, "grove is shutting down")
}

async fn route(ctx: &ApiContext, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (method, path.as_str()) {
        (Method::GET, "/v1/status") => match ctx.engine.status().await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(_) => gone(),
        },
        (Method::GET, "/v1/plan") => match ctx.engine.plan().await {
            Ok(p) => json(StatusCode::OK, &p.redacted()),
            Err(_) => gone(),
        },
        (Method::POST, "/v1/start" | "/v1/stop" | "/v1/restart") => {
            let targets: Targets = match body_json(req).await {
                Ok(t) => t,
                Err(r) => return r,
            };
            let r = match path.as_str() {
                "/v1/start" => ctx.engine.start_units(targets.targets).await,
                "/v1/stop" => ctx.engine.stop_units(targets.targets).await,
                _ => ctx.engine.restart_units(targets.targets).await,
            };
            match r {
                Ok(Ok(units)) => json(StatusCode::OK, &Acted { units }),
                Ok(Err(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
                Err(_) => gone(),
            }
        }
        (Method::POST, "/v1/reload") => {
            let Ok(current) = ctx.engine.plan().await else {
                return gone();
            };
            match (ctx.reload)(&current) {
                Ok(plan) => match ctx.engine.apply(plan.clone()).await {
                    Ok(report) => {
                        (ctx.applied)(&plan);
                        json(StatusCode::OK, &report)
                    }
                    Err(_) => gone(),
                },
                Err(text) => error(StatusCode::UNPROCESSABLE_ENTITY, text),
            }
        }
        (Method::POST, "/v1/down") => {
            let _ = ctx.engine.shutdown().await;
            ctx.down.notify_one();
            json(StatusCode::OK, &Acted { units: Vec::new() })
        }
        (
            _,
            "/v1/status" | "/v1/plan" | "/v1/start" | "/v1/stop" | "/v1/restart" | "/v1/reload"
            | "/v1/down",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "wrong method"),
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

async fn body_json<T: for<'de> serde::Deserialize<'de>>(
    req: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    let bytes = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}
