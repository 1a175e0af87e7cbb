//! Notifications: chosen events (`[admin] notify`) go to a webhook as a JSON POST and to an
//! AMQP topic exchange (as Canopsis' engines publish theirs), each in its own task so a slow
//! receiver never holds the engine. Deliveries are retried a few times, then dropped with a
//! warning; the event log keeps everything anyway.

use std::time::Duration;

use amqprs::channel::{BasicPublishArguments, ExchangeDeclareArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::BasicProperties;
use bytes::Bytes;
use grove_plan::AdminSettings;
use grove_state::EventRecord;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

/// What a receiver gets for one event.
#[derive(Debug, Clone, Serialize)]
struct Notice<'a> {
    stack: &'a str,
    id: i64,
    ts_ms: i64,
    unit: Option<&'a str>,
    kind: &'a str,
    message: &'a str,
}

fn wanted(settings: &AdminSettings, kind: &str) -> bool {
    settings.notify.iter().any(|k| k == "*" || k == kind)
}

/// Starts the notifiers the settings ask for; they follow `events` until it closes.
pub fn start(stack: &str, settings: &AdminSettings, mut events: broadcast::Receiver<EventRecord>) {
    if settings.webhook.is_none() && settings.amqp.is_none() {
        return;
    }
    let (web_tx, web_rx) = mpsc::channel::<Vec<u8>>(256);
    let (amqp_tx, amqp_rx) = mpsc::channel::<(String, Vec<u8>)>(256);
    if let Some(url) = settings.webhook.clone() {
        tokio::spawn(webhook(url, web_rx));
    }
    if let Some(url) = settings.amqp.clone() {
        tokio::spawn(amqp(url, settings.amqp_exchange.clone(), amqp_rx));
    }
    let settings = settings.clone();
    let stack = stack.to_string();
    tokio::spawn(async move {
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("notifications fell behind; {n} events not sent");
                    continue;
                }
                Err(_) => return,
            };
            if !wanted(&settings, &e.kind) {
                continue;
            }
            let notice = Notice {
                stack: &stack,
                id: e.id,
                ts_ms: e.ts_ms,
                unit: e.unit.as_deref(),
                kind: &e.kind,
                message: &e.message,
            };
            let Ok(body) = serde_json::to_vec(&notice) else {
                continue;
            };
            if settings.webhook.is_some() && web_tx.try_send(body.clone()).is_err() {
                tracing::warn!("webhook queue full; event {} not sent", e.id);
            }
            if settings.amqp.is_some() {
                let key = format!(
                    "grove.{stack}.{}.{}",
                    e.unit.as_deref().unwrap_or("grove"),
                    e.kind
                );
                if amqp_tx.try_send((key, body)).is_err() {
                    tracing::warn!("AMQP queue full; event {} not sent", e.id);
                }
            }
        }
    });
}

async fn webhook(url: String, mut rx: mpsc::Receiver<Vec<u8>>) {
    let tls = match grove_edge::tls::client_config(None) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("webhook disabled: {e}");
            return;
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    while let Some(body) = rx.recv().await {
        let body = Bytes::from(body);
        for attempt in 0..3u32 {
            let req = match hyper::Request::post(url.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::USER_AGENT, "grove-notify")
                .body(Full::new(body.clone()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("webhook {url}: {e}");
                    return;
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                Ok(Ok(res)) if res.status().is_success() => break,
                Ok(Ok(res)) => tracing::warn!("webhook {url} answered {}", res.status()),
                Ok(Err(e)) => tracing::warn!("webhook {url}: {e}"),
                Err(_) => tracing::warn!("webhook {url}: no answer within 10 s"),
            }
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt + 1))).await;
        }
    }
}

/// `amqp://user:password@host:port/vhost` as connection arguments.
fn amqp_args(url: &str) -> Option<OpenConnectionArguments> {
    let rest = url.strip_prefix("amqp://")?;
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, vhost) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 5672),
    };
    let decode = percent_decode;
    let vhost = if vhost.is_empty() {
        "/".to_string()
    } else {
        decode(vhost)
    };
    let mut args = OpenConnectionArguments::new(
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
        &decode(user),
        &decode(password),
    );
    args.virtual_host(&vhost);
    Some(args)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn amqp(url: String, exchange: String, mut rx: mpsc::Receiver<(String, Vec<u8>)>) {
    let Some(args) = amqp_args(&url) else {
        tracing::warn!("[admin] amqp is not an amqp:// URL; events are not published");
        return;
    };
    let mut conn: Option<(Connection, amqprs::channel::Channel)> = None;
    while let Some((key, body)) = rx.recv().await {
        for _ in 0..3 {
            if conn
                .as_ref()
                .is_none_or(|(c, ch)| !c.is_open() || !ch.is_open())
            {
                conn = connect(&args, &exchange).await;
            }
            let Some((_, ch)) = &conn else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let mut props = BasicProperties::default();
            props
                .with_content_type("application/json")
                .with_persistence(true);
            match ch
                .basic_publish(
                    props,
                    body.clone(),
                    BasicPublishArguments::new(&exchange, &key),
                )
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!("AMQP publish: {e}");
                    conn = None;
                }
            }
        }
    }
}

async fn connect(
    args: &OpenConnectionArguments,
    exchange: &str,
) -> Option<(Connection, amqprs::channel::Channel)> {
    let c = match Connection::open(args).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("AMQP connect: {e}");
            return None;
        }
    };
    let ch = c.open_channel(None).await.ok()?;
    let mut declare = ExchangeDeclareArguments::new(exchange, "topic");
    declare.durable(true);
    if let Err(e) = ch.exchange_declare(declare).await {
        tracing::warn!("AMQP exchange {exchange}: {e}");
        return None;
    }
    Some((c, ch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_urls() {
        assert!(amqp_args("amqp://grove:p%40ss@127.0.0.1:5673/jobs").is_some());
        assert!(amqp_args("http://x").is_none());
        assert_eq!(percent_decode("p%40ss%2F"), "p@ss/");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
