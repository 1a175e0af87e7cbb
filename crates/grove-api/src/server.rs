//! The server side: one hyper HTTP/1.1 connection per accepted client, on the Unix socket
//! (trusted by its file mode) or on the admin listener (every request needs the token).

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use grove_engine::EngineHandle;
use grove_metrics::{Exposition, HostSample, RouteMetric, UnitMetric};
use grove_plan::Plan;
use grove_state::Store;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, Notify};

use crate::{Acted, ApiError, DeployReport, DeployRequest, Record, Targets};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Re-reads the stack file into a new Plan (given the running one, for sticky ports), or says
/// why it cannot, as the text a user should see.
pub type Reloader = Arc<dyn Fn(&Plan) -> Result<Plan, String> + Send + Sync>;

/// Switches the running stack to a release (stage, health gate, switch, drain), or says which
/// step failed and why.
pub type Deployer = Arc<
    dyn Fn(
            DeployRequest,
        )
            -> Pin<Box<dyn std::future::Future<Output = Result<DeployReport, String>> + Send>>
        + Send
        + Sync,
>;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The stack file does not load or build; the text says why, as shown to users.
    #[error("{0}")]
    Refused(String),
    /// The engine is gone (grove is shutting down).
    #[error("grove is shutting down")]
    Gone,
}

/// Why `restart` did not act.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// A target names nothing.
    #[error(transparent)]
    Unknown(#[from] grove_engine::TargetError),
    /// A start-first replacement was given up (its new unit never got ready); the text says
    /// why, and the running unit serves on.
    #[error("{0}")]
    Refused(String),
    /// The engine is gone (grove is shutting down).
    #[error("grove is shutting down")]
    Gone,
}

/// Restarts units: routed ones start-first (a new unit beside the old one, traffic moved once
/// it is ready, the old one drained), the rest with a stop signal.
pub type Restarter = Arc<
    dyn Fn(
            Vec<String>,
        ) -> Pin<Box<dyn std::future::Future<Output = Result<Acted, ActError>> + Send>>
        + Send
        + Sync,
>;

/// Applies a reloaded Plan (the second) to the running stack (the first is its Plan now):
/// the daemon replaces routed units start-first and swaps the edge's table.
pub type Applier = Arc<
    dyn Fn(
            Plan,
            Plan,
        ) -> Pin<
            Box<
                dyn std::future::Future<Output = Result<grove_engine::ApplyReport, ReloadError>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// The one reload path (`POST /v1/reload` and the daemon's SIGHUP): re-reads the stack file
/// into a Plan and has the daemon apply the difference. A file that fails validation changes
/// nothing. Holds `changes`, so it never interleaves with a deploy.
pub async fn reload(ctx: &ApiContext) -> Result<grove_engine::ApplyReport, ReloadError> {
    let _changing = ctx.changes.lock().await;
    let current = ctx.engine.plan().await.map_err(|_| ReloadError::Gone)?;
    let plan = (ctx.reload)(&current).map_err(ReloadError::Refused)?;
    (ctx.apply)(current, plan).await
}

/// What the server needs.
pub struct ApiContext {
    /// The engine.
    pub engine: EngineHandle,
    /// How to reload.
    pub reload: Reloader,
    /// How to deploy.
    pub deploy: Deployer,
    /// Held by every change of the running Plan (reload, deploy), so they never interleave.
    pub changes: Arc<tokio::sync::Mutex<()>>,
    /// Notified once a `down` request has stopped everything: the daemon should exit.
    pub down: Arc<Notify>,
    /// Where a handover request goes (the daemon hands over and ends).
    pub handover: tokio::sync::mpsc::UnboundedSender<crate::Handover>,
    /// Applies a reloaded Plan.
    pub apply: Applier,
    /// Restarts units.
    pub restart: Restarter,
    /// What the API observes: metrics, samples, logs.
    pub observe: Observe,
    /// Turns maintenance mode on or off (stored, and at the edge now).
    pub maintenance: Maintainer,
}

/// Turns maintenance mode on (`Some`) or off; an error says why nothing changed.
pub type Maintainer =
    Arc<dyn Fn(Option<grove_plan::Maintenance>) -> Result<(), String> + Send + Sync>;

/// The observability side of the API.
#[derive(Clone)]
pub struct Observe {
    /// The state store (events, samples).
    pub store: Arc<Mutex<Store>>,
    /// The edge's route counters, now.
    pub routes: Arc<dyn Fn() -> Vec<RouteMetric> + Send + Sync>,
    /// The host, as last sampled.
    pub host: Arc<Mutex<HostSample>>,
    /// The units' log folder.
    pub logs_dir: PathBuf,
    /// The admin listener's token.
    pub token: String,
}

impl std::fmt::Debug for Observe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe").finish_non_exhaustive()
    }
}

/// The units as metrics, from a status answer.
pub fn unit_metrics(s: &grove_engine::Status) -> Vec<UnitMetric> {
    s.units
        .iter()
        .map(|u| UnitMetric {
            name: u.name.clone(),
            service: u.service.clone(),
            instance: u.instance.clone(),
            state: u.state.as_str().to_string(),
            healthy: u.health.and_then(|h| match h {
                grove_engine::Health::Healthy => Some(true),
                grove_engine::Health::Unhealthy | grove_engine::Health::Starting => Some(false),
                grove_engine::Health::Unknown => None,
            }),
            restarts: u.restarts,
            cpu_percent: u.cpu_percent.unwrap_or(0.0),
            rss_bytes: u.rss_bytes.unwrap_or(0),
            open_fds: u.open_fds.unwrap_or(0),
            uptime_seconds: u.uptime_ms.unwrap_or(0) as f64 / 1000.0,
        })
        .collect()
}

/// Everything measured now (units and routes fresh, the host as last sampled).
pub async fn exposition(engine: &EngineHandle, observe: &Observe) -> Option<Exposition> {
    let status = engine.status().await.ok()?;
    let host = observe.host.lock().map(|h| h.clone()).unwrap_or_default();
    Some(Exposition {
        stack: status.stack.clone(),
        ts_ms: grove_metrics::now_ms(),
        host,
        units: unit_metrics(&status),
        routes: (observe.routes)(),
    })
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").finish_non_exhaustive()
    }
}

/// Serves the API on `listener` (the Unix socket: trusted) until the task is dropped.
pub async fn serve(listener: UnixListener, ctx: Arc<ApiContext>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, usually: say so once a second at most.
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        connection(TokioIo::new(stream), ctx.clone(), true);
    }
}

/// Serves the API, `/metrics` and the dashboard on the admin listener: every request needs
/// the token.
pub async fn serve_admin(listener: TcpListener, ctx: Arc<ApiContext>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("admin listener accept: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connection(TokioIo::new(stream), ctx.clone(), false);
    }
}

fn connection<I>(io: I, ctx: Arc<ApiContext>, trusted: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(&ctx, req, trusted).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
        {
            tracing::debug!("control connection: {e}");
        }
    });
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A query parameter, percent-decoded.
fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn cookie_token(req: &Request<Incoming>) -> Option<String> {
    req.headers().get_all(COOKIE).iter().find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == "grove_token").then(|| v.to_string())
        })
    })
}

enum Auth {
    Ok,
    /// `/?token=...`: set the cookie and go to the dashboard.
    Login,
    Refused,
}

fn authorize(ctx: &ApiContext, req: &Request<Incoming>) -> Auth {
    let token = &ctx.observe.token;
    if token.is_empty() {
        return Auth::Refused;
    }
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer.is_some_and(|b| same(b, token)) {
        return Auth::Ok;
    }
    if req.method() == Method::GET {
        if let Some(q) = query(req, "token") {
            if same(&q, token) {
                return Auth::Login;
            }
        }
    }
    if cookie_token(req).is_some_and(|c| same(&c, token)) {
        // A cookie is sent by the browser on any request to this origin: changes also need
        // a header that a cross-site form cannot add.
        if req.method() == Method::GET || req.headers().contains_key("x-grove") {
            return Auth::Ok;
        }
    }
    Auth::Refused
}

async fn handle(ctx: &ApiContext, req: Request<Incoming>, trusted: bool) -> Response<Body> {
    if !trusted {
        match authorize(ctx, &req) {
            Auth::Ok => {}
            Auth::Login => {
                let mut res = Response::new(full(Bytes::new()));
                *res.status_mut() = StatusCode::SEE_OTHER;
                res.headers_mut()
                    .insert(LOCATION, HeaderValue::from_static("/"));
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "grove_token={}; HttpOnly; SameSite=Strict; Path=/",
                    ctx.observe.token
                )) {
                    res.headers_mut().insert(SET_COOKIE, v);
                }
                return res;
            }
            Auth::Refused => {
                let mut res = error(
                    StatusCode::UNAUTHORIZED,
                    "this needs the admin token: `Authorization: Bearer <token>` (the token is in .grove/admin.token), or open /?token=<token> once in a browser",
                );
                res.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"grove\""),
                );
                return res;
            }
        }
    }
    let path = req.uri().path().to_string();
    if req.method() == Method::GET {
        if let Some(res) = crate::dashboard::asset(&path) {
            return res;
        }
    }
    route(ctx, req).await
}

fn full(b: Bytes) -> Body {
    Full::new(b).boxed()
}

/// A streamed body fed by a channel (server-sent events).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn sse(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut res = Response::new(BodyExt::boxed(ChannelBody(rx)));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A server-sent-event stream: `opening` first, then each broadcast item `map` keeps, with a
/// keep-alive comment after 15 quiet seconds (proxies and browsers drop silent streams); it
/// ends when the client goes or the sender closes.
fn forward<T: Clone + Send + 'static>(
    mut items: tokio::sync::broadcast::Receiver<T>,
    opening: Vec<Bytes>,
    map: impl Fn(T) -> Option<Bytes> + Send + 'static,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        for chunk in opening {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        loop {
            let chunk = match tokio::time::timeout(Duration::from_secs(15), items.recv()).await {
                Ok(Ok(item)) => match map(item) {
                    Some(c) => c,
                    None => continue,
                },
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) => return,
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    sse(rx)
}

fn sse_event(data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("data: {json}\n\n"))
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(full(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

pub(crate) fn error(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    json(status, &ApiError { error: msg.into() })
}

fn gone() -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, "grove is shutting down")
}

async fn route(ctx: &ApiContext, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match (method, path.as_str()) {
        (Method::GET, "/metrics") => match exposition(&ctx.engine, &ctx.observe).await {
            Some(e) => {
                let mut res = Response::new(full(Bytes::from(e.prometheus())));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                res
            }
            None => gone(),
        },
        (Method::GET, "/v1/units") => match ctx.engine.status().await {
            Ok(s) => json(StatusCode::OK, &s.units),
            Err(_) => gone(),
        },
        (Method::GET, "/v1/now") => match exposition(&ctx.engine, &ctx.observe).await {
            Some(e) => json(StatusCode::OK, &e),
            None => gone(),
        },
        (Method::GET, "/v1/series") => {
            let list = ctx.observe.store.lock().ok().and_then(|s| s.series().ok());
            json(StatusCode::OK, &list.unwrap_or_default())
        }
        (Method::GET, "/v1/metrics") => metric_points(ctx, &req),
        (Method::GET, "/v1/events") => last_events(ctx, &req),
        (Method::GET, "/v1/events/stream") => {
            let events = ctx.engine.subscribe_events();
            let opening = vec![Bytes::from_static(b": grove events\n\n")];
            forward(events, opening, |e| Some(sse_event(&e)))
        }
        (Method::GET, "/v1/logs" | "/v1/logs/stream") => logs(ctx, &req, &path).await,
        (Method::GET, "/v1/status") => match ctx.engine.status().await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(_) => gone(),
        },
        (Method::GET, "/v1/plan") => match ctx.engine.plan().await {
            Ok(p) => json(StatusCode::OK, &p.redacted()),
            Err(_) => gone(),
        },
        (Method::POST, "/v1/restart") => restart(ctx, req).await,
        (Method::POST, "/v1/start" | "/v1/stop") => start_stop(ctx, req, &path).await,
        (Method::POST, "/v1/deploy") => {
            let req: DeployRequest = match body_json(req).await {
                Ok(t) => t,
                Err(r) => return r,
            };
            let _changing = ctx.changes.lock().await;
            match (ctx.deploy)(req).await {
                Ok(report) => json(StatusCode::OK, &report),
                Err(text) => error(StatusCode::CONFLICT, text),
            }
        }
        (Method::POST, "/v1/record") => record(ctx, req).await,
        (Method::POST, "/v1/reload") => match reload(ctx).await {
            Ok(report) => json(StatusCode::OK, &report),
            Err(ReloadError::Gone) => gone(),
            Err(ReloadError::Refused(text)) => error(StatusCode::UNPROCESSABLE_ENTITY, text),
        },
        (Method::POST, "/v1/handover") => handover(ctx, req).await,
        (Method::GET, "/v1/maintenance") => {
            let now: Option<grove_plan::Maintenance> = ctx
                .observe
                .store
                .lock()
                .ok()
                .and_then(|s| s.get(grove_plan::MAINTENANCE_KEY).ok().flatten());
            json(StatusCode::OK, &now)
        }
        (Method::POST, "/v1/maintenance") => {
            let asked: Option<grove_plan::Maintenance> = match body_json(req).await {
                Ok(m) => m,
                Err(res) => return res,
            };
            match (ctx.maintenance)(asked.clone()) {
                Ok(()) => json(StatusCode::OK, &asked),
                Err(why) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
            }
        }
        (Method::POST, "/v1/down") => {
            let _ = ctx.engine.shutdown().await;
            ctx.down.notify_one();
            json(StatusCode::OK, &Acted::default())
        }
        (
            _,
            "/v1/status" | "/v1/plan" | "/v1/start" | "/v1/stop" | "/v1/restart" | "/v1/reload"
            | "/v1/down" | "/v1/deploy" | "/v1/record" | "/v1/handover" | "/v1/maintenance",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "wrong method"),
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

/// `GET /v1/metrics?series=NAME&since=SECONDS`: one series' samples.
fn metric_points(ctx: &ApiContext, req: &Request<Incoming>) -> Response<Body> {
    let Some(series) = query(req, "series") else {
        return error(
            StatusCode::BAD_REQUEST,
            "name a series: /v1/metrics?series=host.cpu&since=3600",
        );
    };
    let since: i64 = query(req, "since")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600)
        .clamp(1, 30 * 24 * 3600);
    let now = grove_metrics::now_ms();
    let points = ctx
        .observe
        .store
        .lock()
        .ok()
        .and_then(|s| s.sample_range(&series, now - since * 1000, now, now).ok())
        .unwrap_or_default();
    json(
        StatusCode::OK,
        &serde_json::json!({"series": series, "points": points}),
    )
}

/// `GET /v1/events?limit=N`: the last events.
fn last_events(ctx: &ApiContext, req: &Request<Incoming>) -> Response<Body> {
    let n: usize = query(req, "limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .min(10_000);
    let events = ctx
        .observe
        .store
        .lock()
        .ok()
        .and_then(|s| s.last_events(n, &[]).ok())
        .unwrap_or_default();
    json(StatusCode::OK, &events)
}

/// `GET /v1/logs?unit=U&lines=N` (scrubbed lines) and `/v1/logs/stream` (then the new
/// ones, as server-sent events).
async fn logs(ctx: &ApiContext, req: &Request<Incoming>, path: &str) -> Response<Body> {
    let Some(unit) = query(req, "unit") else {
        return error(StatusCode::BAD_REQUEST, "name a unit: /v1/logs?unit=web");
    };
    let Ok(plan) = ctx.engine.plan().await else {
        return gone();
    };
    if !plan.units.contains_key(&unit) {
        return error(StatusCode::NOT_FOUND, format!("no unit named `{unit}`"));
    }
    let secrets = plan.secret_values();
    let n: usize = query(req, "lines")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .min(5000);
    let file = ctx.observe.logs_dir.join(format!("{unit}.log"));
    let tail: Vec<String> = grove_supervisor::logs::tail(&file, n)
        .unwrap_or_default()
        .iter()
        .map(|l| grove_plan::scrub(l, &secrets))
        .collect();
    if path == "/v1/logs" {
        return json(StatusCode::OK, &tail);
    }
    let opening = tail
        .iter()
        .map(|l| sse_event(&serde_json::json!({"line": l})))
        .collect();
    forward(ctx.engine.subscribe_lines(), opening, move |l| {
        (*l.unit == *unit).then(|| {
            let text = grove_plan::scrub(&l.text, &secrets);
            sse_event(&serde_json::json!({"stream": l.stream, "text": text}))
        })
    })
}

/// `POST /v1/restart`: routed units start-first, one change of the Plan at a time.
async fn restart(ctx: &ApiContext, req: Request<Incoming>) -> Response<Body> {
    let targets: Targets = match body_json(req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    // A replacement changes the running Plan (a unit's port): one change at a time.
    let _changing = ctx.changes.lock().await;
    match (ctx.restart)(targets.targets).await {
        Ok(acted) => json(StatusCode::OK, &acted),
        Err(ActError::Unknown(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(ActError::Refused(text)) => error(StatusCode::CONFLICT, text),
        Err(ActError::Gone) => gone(),
    }
}

/// `POST /v1/start` and `/v1/stop`.
async fn start_stop(ctx: &ApiContext, req: Request<Incoming>, path: &str) -> Response<Body> {
    let targets: Targets = match body_json(req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let r = match path {
        "/v1/start" => ctx.engine.start_units(targets.targets).await,
        _ => ctx.engine.stop_units(targets.targets).await,
    };
    match r {
        Ok(Ok(units)) => json(
            StatusCode::OK,
            &Acted {
                units,
                steps: Vec::new(),
            },
        ),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(_) => gone(),
    }
}

/// `POST /v1/record`: an event from another part of grove (kind and message checked).
async fn record(ctx: &ApiContext, req: Request<Incoming>) -> Response<Body> {
    let r: Record = match body_json(req).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let kind_ok = !r.kind.is_empty()
        && r.kind.len() <= 32
        && r.kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    if !kind_ok || r.message.len() > 4096 {
        return error(
            StatusCode::BAD_REQUEST,
            "kind must be 1-32 lowercase letters or dashes, message at most 4096 bytes",
        );
    }
    ctx.engine.record(None, &r.kind, &r.message);
    json(StatusCode::OK, &Acted::default())
}

/// `POST /v1/handover`: asks the daemon to hand over to a successor; answers with its pid.
async fn handover(ctx: &ApiContext, req: Request<Incoming>) -> Response<Body> {
    let asked: crate::Handover = match body_json(req).await {
        Ok(h) => h,
        Err(res) => return res,
    };
    if ctx.handover.send(asked).is_err() {
        return gone();
    }
    let answer = crate::Handover {
        binary: None,
        pid: Some(std::process::id()),
    };
    json(StatusCode::OK, &answer)
}

async fn body_json<T: for<'de> serde::Deserialize<'de>>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
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
