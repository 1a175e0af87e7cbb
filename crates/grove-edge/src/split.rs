//! Weighted and mirrored routing: a route's `targets` split its requests over several
//! services by weight (nginx's smooth weighted round robin, so 90/10 is 9 of every 10 in
//! turn, not in bursts), optionally sticky by a cookie; a target with no ready unit is skipped
//! while another has one. A route's `mirror` sends a copy of a fraction of its requests to a
//! shadow service and discards the answers. Requests on such routes go through hyper.
//!
//! The choices ([`pick`], [`cookie`], [`Mirror::due`]) are pure or atomic; the proxy sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::header::{self, HeaderMap, HeaderValue};

use crate::table::{Backend, Pool};

/// One target of a split.
#[derive(Debug)]
pub struct Target {
    pub service: String,
    pub weight: u32,
    pub pool: Arc<Pool>,
}

/// A route's split over several services.
#[derive(Debug)]
pub struct Split {
    pub targets: Vec<Target>,
    /// The smooth round robin's running weights, one per target.
    current: Mutex<Vec<i64>>,
    /// The cookie that keeps a client on its target.
    pub sticky: Option<String>,
}

/// What a split chose for one request.
#[derive(Debug)]
pub struct Choice<'s> {
    pub pool: &'s Arc<Pool>,
    /// The `Set-Cookie` to answer with (a sticky split whose client has no valid cookie).
    pub set_cookie: Option<HeaderValue>,
}

/// Makes a route's pool of a service's target.
pub type PoolOf<'p> = dyn Fn(&str, &grove_plan::Target, grove_plan::Balance) -> Arc<Pool> + 'p;

impl Split {
    /// The split of a Plan's route, when it has targets.
    pub fn of(r: &grove_plan::Route, pool: &PoolOf<'_>) -> Option<Arc<Split>> {
        if r.splits.is_empty() {
            return None;
        }
        let targets = r
            .splits
            .iter()
            .map(|t| Target {
                service: t.service.clone(),
                weight: t.weight,
                pool: pool(&t.service, &t.target, r.balance),
            })
            .collect();
        Some(Arc::new(Split::new(targets, r.sticky.clone())))
    }

    pub fn new(targets: Vec<Target>, sticky: Option<String>) -> Split {
        Split {
            current: Mutex::new(vec![0; targets.len()]),
            targets,
            sticky,
        }
    }

    /// The target for a request with `headers`: the one its sticky cookie names while that
    /// has weight and a ready unit; else the next by weight among those with a ready unit
    /// (`ready`), or among all with weight when none has one (the proxy then holds the
    /// request as for any route). `None` only for a split without targets.
    pub fn choose(&self, headers: &HeaderMap, ready: &dyn Fn(&Pool) -> bool) -> Option<Choice<'_>> {
        let usable = |t: &Target| t.weight > 0 && ready(&t.pool);
        if let Some(name) = &self.sticky {
            let kept = cookie(headers, name)
                .and_then(|v| self.targets.iter().find(|t| t.service == v))
                .filter(|t| usable(t));
            if let Some(t) = kept {
                return Some(Choice {
                    pool: &t.pool,
                    set_cookie: None,
                });
            }
        }
        let weights: Vec<u32> = self.targets.iter().map(|t| t.weight).collect();
        let mut eligible: Vec<bool> = self.targets.iter().map(usable).collect();
        if !eligible.iter().any(|e| *e) {
            eligible = weights.iter().map(|w| *w > 0).collect();
        }
        let i = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            pick(&mut current, &weights, &eligible)?
        };
        let t = &self.targets[i];
        let set_cookie = self.sticky.as_ref().and_then(|name| {
            HeaderValue::from_str(&format!(
                "{name}={}; Path=/; HttpOnly; SameSite=Lax",
                t.service
            ))
            .ok()
        });
        Some(Choice {
            pool: &t.pool,
            set_cookie,
        })
    }
}

/// Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): every eligible entry
/// gains its weight, the largest is chosen and loses the sum. Over any run of `sum` picks each
/// entry gets exactly its weight, spread out.
pub fn pick(current: &mut [i64], weights: &[u32], eligible: &[bool]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut total = 0i64;
    for i in 0..weights.len().min(current.len()).min(eligible.len()) {
        if !eligible[i] || weights[i] == 0 {
            continue;
        }
        let w = i64::from(weights[i]);
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// A route's mirror.
#[derive(Debug)]
pub struct Mirror {
    pub pool: Arc<Pool>,
    pub per_mille: u32,
    /// Requests seen, to send `per_mille` of them evenly.
    seen: AtomicU64,
}

impl Mirror {
    /// The mirror of a Plan's route, when it has one.
    pub fn of(r: &grove_plan::Route, pool: &PoolOf<'_>) -> Option<Arc<Mirror>> {
        let m = r.mirror.as_ref()?;
        let p = pool(&m.service, &m.target, grove_plan::Balance::RoundRobin);
        Some(Arc::new(Mirror::new(p, m.per_mille)))
    }

    pub fn new(pool: Arc<Pool>, per_mille: u32) -> Mirror {
        Mirror {
            pool,
            per_mille,
            seen: AtomicU64::new(0),
        }
    }

    /// Whether this request is one of the fraction copied: the n-th request is when
    /// `n * per_mille / 1000` steps up, so 0.5 copies every second request.
    pub fn due(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let pm = u64::from(self.per_mille.min(1000));
        (n + 1) * pm / 1000 > n * pm / 1000
    }

    /// The unit that gets the next copy, when one is ready.
    pub fn backend(&self, health: &dyn Fn(&str) -> Option<bool>) -> Option<Arc<Backend>> {
        self.pool.candidates(health).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_kept_exactly_and_spread_out() {
        let mut current = vec![0; 3];
        let picks: Vec<usize> = (0..10)
            .map(|_| pick(&mut current, &[5, 1, 1], &[true; 3]).unwrap())
            .collect();
        // nginx's example: a a b a c a a, then again.
        assert_eq!(&picks[..7], &[0, 0, 1, 0, 2, 0, 0]);
        let mut current = vec![0; 2];
        let mut count = [0; 2];
        for _ in 0..100 {
            count[pick(&mut current, &[90, 10], &[true, true]).unwrap()] += 1;
        }
        assert_eq!(count, [90, 10]);
        // Never two of the small one in a row, never more than ten of the large one.
        let mut current = vec![0; 2];
        let seq: Vec<usize> = (0..100)
            .map(|_| pick(&mut current, &[90, 10], &[true, true]).unwrap())
            .collect();
        assert!(seq.windows(2).all(|w| w != [1, 1]));
        assert!(seq.windows(11).all(|w| w.contains(&1)));
    }

    #[test]
    fn an_ineligible_or_weightless_target_gets_nothing() {
        let mut current = vec![0; 2];
        for _ in 0..10 {
            assert_eq!(pick(&mut current, &[90, 10], &[false, true]), Some(1));
        }
        assert_eq!(pick(&mut current, &[0, 0], &[true, true]), None);
        assert_eq!(pick(&mut current, &[3, 0], &[true, true]), Some(0));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; grove_target=web_canary"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "grove_target"), Some("web_canary"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "target"), None);
    }

    #[test]
    fn a_mirror_copies_its_fraction_evenly() {
        let pool = Arc::new(Pool::empty("shadow"));
        let m = Mirror::new(pool.clone(), 500);
        let due: Vec<bool> = (0..6).map(|_| m.due()).collect();
        assert_eq!(due, [false, true, false, true, false, true]);
        let m = Mirror::new(pool.clone(), 100);
        assert_eq!((0..1000).filter(|_| m.due()).count(), 100);
        let m = Mirror::new(pool, 1000);
        assert!((0..10).all(|_| m.due()));
    }
}
