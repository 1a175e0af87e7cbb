//! What the daemon observes and passes on: the host, units and routes sampled into the store
//! for charts, and the engine's events turned into the edge's view of which units can take
//! requests.

use std::path::PathBuf;
use std::time::Duration;

/// The edge's route counters as metrics.
pub(crate) fn route_metrics(edge: &grove_edge::Edge) -> Vec<grove_metrics::RouteMetric> {
    edge.route_stats()
        .into_iter()
        .map(|(route, s)| grove_metrics::RouteMetric {
            route,
            requests: s.requests,
            classes: [
                s.status_1xx,
                s.status_2xx,
                s.status_3xx,
                s.status_4xx,
                s.status_5xx,
            ],
            bytes_out: s.bytes_out,
            bounds: grove_edge::stats::BUCKETS.to_vec(),
            buckets: s.latency_buckets,
            latency_sum_seconds: s.latency_sum_seconds,
            rate_limited: s.rate_limited,
        })
        .collect()
}

/// Samples the host, the units and the routes every `interval` into the store (which keeps
/// raw points for a day and minute averages for 30 days).
pub(crate) async fn sample_metrics(
    engine: grove_engine::EngineHandle,
    observe: grove_api::Observe,
    state: PathBuf,
    interval: Duration,
) {
    let mut sampler = grove_metrics::HostSampler::new();
    let mut prev: Option<grove_metrics::Exposition> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sample = sampler.sample(&state);
        if let Ok(mut h) = observe.host.lock() {
            *h = sample;
        }
        let Some(now) = grove_api::exposition(&engine, &observe).await else {
            return;
        };
        let series = now.series(prev.as_ref());
        let store = observe.store.clone();
        let ts = now.ts_ms;
        // SQLite writes off the async workers.
        let written = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .map_err(|_| "state store lock poisoned".to_string())
                .and_then(|mut s| s.record_samples(ts, &series).map_err(|e| e.to_string()))
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!("cannot store metric samples: {e}");
        }
        prev = Some(now);
    }
}

/// Tells the edge which units can take requests, from the engine's events: a unit with a
/// probe counts once it is healthy, one without once it has started.
pub(crate) async fn feed_health(engine: grove_engine::EngineHandle, edge: grove_edge::Edge) {
    let mut events = engine.subscribe_events();
    let mut probed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut refresh = true;
    loop {
        if refresh {
            if let Ok(p) = engine.plan().await {
                probed = p
                    .units
                    .values()
                    .filter(|u| u.health.is_some())
                    .map(|u| u.name.clone())
                    .collect();
            }
            refresh = false;
        }
        let e = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let Some(unit) = e.unit.as_deref() else {
            refresh = true;
            continue;
        };
        match e.kind.as_str() {
            "started" => edge.set_health(unit, !probed.contains(unit)),
            "healthy" | "switched" => edge.set_health(unit, true),
            "unhealthy" | "exited" | "stopped" | "gave-up" | "spawn-failed" => {
                edge.set_health(unit, false)
            }
            _ => {}
        }
    }
}
