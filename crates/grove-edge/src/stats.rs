//! Per-route counters and latency histograms, kept in atomics on the request path and read
//! as snapshots by the metrics side. A route's stats are keyed by its identity (`host/prefix`,
//! or `:port` for a forward) and outlive table swaps, so a reload does not reset them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the latency buckets, in seconds (Prometheus' defaults).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The live counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    requests: AtomicU64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 5],
    bytes_out: AtomicU64,
    /// Non-cumulative counts per bucket; the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    /// Requests refused by the route's rate limit (429).
    limited: AtomicU64,
}

impl RouteStats {
    /// Counts one request its rate limit refused.
    pub fn rate_limited(&self) {
        self.limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one finished request.
    pub fn record(&self, status: u16, bytes: u64, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A consistent-enough copy (each counter read once).
    pub fn snapshot(&self) -> RouteSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                cumulative += b.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        RouteSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            status_1xx: self.classes[0].load(Ordering::Relaxed),
            status_2xx: self.classes[1].load(Ordering::Relaxed),
            status_3xx: self.classes[2].load(Ordering::Relaxed),
            status_4xx: self.classes[3].load(Ordering::Relaxed),
            status_5xx: self.classes[4].load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            latency_buckets: buckets,
            latency_sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            rate_limited: self.limited.load(Ordering::Relaxed),
        }
    }
}

/// What one route has served so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSnapshot {
    /// Requests answered.
    pub requests: u64,
    /// 1xx answers.
    pub status_1xx: u64,
    /// 2xx answers.
    pub status_2xx: u64,
    /// 3xx answers.
    pub status_3xx: u64,
    /// 4xx answers.
    pub status_4xx: u64,
    /// 5xx answers.
    pub status_5xx: u64,
    /// Response body bytes (as declared by Content-Length or counted for files).
    pub bytes_out: u64,
    /// Cumulative counts at each bound of [`BUCKETS`], then +Inf (= requests).
    pub latency_buckets: Vec<u64>,
    /// Sum of latencies.
    pub latency_sum_seconds: f64,
    /// Requests refused by the rate limit.
    pub rate_limited: u64,
}

/// Every route's stats by key; entries are created on first use and kept.
#[derive(Debug, Default)]
pub struct Registry {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    /// Requests in flight per upstream address, kept across reloads: a reload's new table
    /// counts on the same counters, so the old generation's drain sees every request.
    in_flight: Mutex<BTreeMap<String, Arc<std::sync::atomic::AtomicUsize>>>,
    /// Each rate-limited route's buckets, kept across reloads while its limit is unchanged.
    limits: Mutex<BTreeMap<String, (grove_plan::RateLimit, Arc<crate::limit::Buckets>)>>,
}

impl Registry {
    /// The stats for `key`, created when new.
    pub fn get(&self, key: &str) -> Arc<RouteStats> {
        let mut g = match self.routes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(key.to_string()).or_default().clone()
    }

    /// The buckets of route `key` with `limit`: the same as before a reload unless the limit
    /// changed.
    pub fn buckets(&self, key: &str, limit: &grove_plan::RateLimit) -> Arc<crate::limit::Buckets> {
        let mut g = match self.limits.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match g.get(key) {
            Some((l, b)) if l == limit => b.clone(),
            _ => {
                let b = Arc::new(crate::limit::Buckets::new(limit));
                g.insert(key.to_string(), (limit.clone(), b.clone()));
                b
            }
        }
    }

    /// The in-flight counter of the upstream at `authority`, created when new.
    pub fn in_flight(&self, authority: &str) -> Arc<std::sync::atomic::AtomicUsize> {
        let mut g = match self.in_flight.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(authority.to_string()).or_default().clone()
    }

    /// Requests in flight to `authority` now.
    pub fn in_flight_now(&self, authority: &str) -> usize {
        let g = match self.in_flight.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.get(authority)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Snapshots of every route, by key.
    pub fn snapshot(&self) -> BTreeMap<String, RouteSnapshot> {
        let g = match self.routes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_buckets_and_sum() {
        let r = Registry::default();
        let s = r.get("*/api");
        s.record(200, 10, Duration::from_millis(3));
        s.record(204, 0, Duration::from_millis(30));
        s.record(502, 100, Duration::from_secs(20));
        s.record(404, 5, Duration::from_millis(10));
        // The same key gives the same counters (a reload keeps them).
        assert!(Arc::ptr_eq(&s, &r.get("*/api")));
        let snap = &r.snapshot()["*/api"];
        assert_eq!(snap.requests, 4);
        assert_eq!(
            (snap.status_2xx, snap.status_4xx, snap.status_5xx),
            (2, 1, 1)
        );
        assert_eq!(snap.bytes_out, 115);
        // <=5ms: 1; <=10ms: 2; <=25ms: 2; <=50ms: 3; ... <=10s: 3; +Inf: 4.
        assert_eq!(
            snap.latency_buckets,
            vec![1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4]
        );
        assert!((snap.latency_sum_seconds - 20.043).abs() < 1e-6);
    }
}
