//! A route's `rate_limit`: a token bucket per key (the client's address, or a header's
//! value), refilled at `requests / per` and holding up to `burst` tokens. A request finding
//! its bucket empty gets 429 with `Retry-After` (the seconds until a token is back). Memory is
//! bounded: at most [`MAX_KEYS`] buckets; when full, buckets that have refilled (the same as
//! no bucket) go first, then the least recently used. The decision is [`Buckets::take`],
//! pure in its clock, so it is tested without time passing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use grove_plan::{RateKey, RateLimit};
use hyper::header::HeaderMap;

/// Most keys a route keeps a bucket for.
pub const MAX_KEYS: usize = 10_000;

/// The buckets of one route.
#[derive(Debug)]
pub struct Buckets {
    /// Tokens per second.
    rate: f64,
    capacity: f64,
    pub by: RateKey,
    max_keys: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Buckets {
    pub fn new(l: &RateLimit) -> Buckets {
        Buckets {
            rate: f64::from(l.requests) / (l.per_ms.max(1) as f64 / 1000.0),
            capacity: f64::from(l.burst.max(1)),
            by: l.by.clone(),
            max_keys: MAX_KEYS,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The key of a request from `client` with `headers`.
    pub fn key(&self, client: std::net::IpAddr, headers: &HeaderMap) -> String {
        match &self.by {
            RateKey::Client => client.to_string(),
            RateKey::Header(name) => headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|v| format!("h:{v}"))
                .unwrap_or_else(|| "h:".to_string()),
        }
    }

    /// Takes a token of `key` at `now`: `Ok` to pass, or how long until one is back.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut b = match self.buckets.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        if !b.contains_key(key) && b.len() >= self.max_keys {
            self.evict(&mut b, now);
        }
        let (tokens, last) = b.entry(key.to_string()).or_insert((self.capacity, now));
        let refilled = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate)
            .min(self.capacity);
        *last = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }

    /// Makes room: buckets that have refilled go, else the least recently used one.
    fn evict(&self, b: &mut HashMap<String, (f64, Instant)>, now: Instant) {
        let (rate, cap) = (self.rate, self.capacity);
        b.retain(|_, (t, last)| {
            *t + now.saturating_duration_since(*last).as_secs_f64() * rate < cap
        });
        if b.len() >= self.max_keys {
            if let Some(oldest) = b
                .iter()
                .min_by_key(|(_, (_, l))| *l)
                .map(|(k, _)| k.clone())
            {
                b.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per_ms: u64, burst: u32) -> Buckets {
        Buckets::new(&RateLimit {
            requests,
            per_ms,
            burst,
            by: RateKey::Client,
        })
    }

    #[test]
    fn a_burst_passes_then_one_token_per_interval() {
        let b = limit(2, 1000, 3);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(b.take("a", t).is_ok());
        }
        let wait = b.take("a", t).unwrap_err();
        assert!((wait.as_millis() as i64 - 500).abs() <= 1, "{wait:?}");
        // Half a second later, one token is back.
        assert!(b.take("a", t + Duration::from_millis(500)).is_ok());
        assert!(b.take("a", t + Duration::from_millis(500)).is_err());
        // Another key has its own bucket.
        assert!(b.take("b", t).is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_full_buckets_go_first() {
        let mut b = limit(1, 1000, 1);
        b.max_keys = 3;
        let t = Instant::now();
        for k in ["a", "b", "c"] {
            assert!(b.take(k, t).is_ok());
        }
        // "a" refills later than the others were used: at t+2s all are full again.
        let later = t + Duration::from_secs(2);
        assert!(b.take("d", later).is_ok());
        assert!(b.keys() <= 3);
        // Nothing refilled: the least recently used goes.
        let t2 = later;
        assert!(b.take("e", t2).is_ok());
        assert!(b.take("f", t2).is_ok());
        assert!(b.keys() <= 3);
    }
}
