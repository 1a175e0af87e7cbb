//! A route split over several services: `targets = { web = 90, web_canary = 10 }` with an
//! optional `sticky` cookie, and `mirror = { service = "shadow", fraction = 0.1 }`. Each is
//! read where it is written; the services they name are checked with the whole file
//! (`checks.rs`), from the locations kept here.

use super::*;
use crate::edge_rules::{Mirror, WeightedTarget, STICKY_COOKIE};

/// The largest weight of a target.
const MAX_WEIGHT: i64 = 1000;

impl<'a> Builder<'a> {
    /// `targets = { web = 90, web_canary = 10 }`: weights from 0 to 1000, not all 0.
    pub(super) fn route_targets(
        &mut self,
        service: &str,
        node: &Node,
        path: &str,
    ) -> Vec<WeightedTarget> {
        let Some(map) = self.any_table(node, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut bad = false;
        for (name, e) in map {
            let p = join(path, name);
            let Some(weight) = self.int(&e.node, &p, 0, MAX_WEIGHT) else {
                bad = true;
                continue;
            };
            self.split_locs
                .entry(service.to_string())
                .or_default()
                .push((name.clone(), p, e.key_loc.clone()));
            out.push(WeightedTarget {
                service: name.clone(),
                weight: weight as u32,
            });
        }
        if !bad && out.iter().all(|t| t.weight == 0) {
            self.err(
                &node.loc,
                path,
                "a split needs a target with a weight above 0",
                Some("targets = { web = 90, web_canary = 10 }".to_string()),
            );
            return Vec::new();
        }
        out
    }

    /// `sticky = true` (the `grove_target` cookie) or `sticky = "COOKIE"`; only with `targets`.
    pub(super) fn route_sticky(
        &mut self,
        targets: &[WeightedTarget],
        node: &Node,
        path: &str,
    ) -> Option<String> {
        let name = match &node.kind {
            Kind::Bool(false) => return None,
            Kind::Bool(true) => STICKY_COOKIE.to_string(),
            _ => {
                let s = self.string(node, path)?;
                let token = !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !token {
                    self.err(
                        &node.loc,
                        path,
                        format!("`{s}` is not a cookie name"),
                        Some("letters, digits, '-', '_' and '.'".to_string()),
                    );
                    return None;
                }
                s
            }
        };
        if targets.is_empty() {
            self.err(
                &node.loc,
                path,
                "`sticky` keeps a client on one of the route's `targets`, and it has none",
                Some("targets = { web = 90, web_canary = 10 }, sticky = true".to_string()),
            );
            return None;
        }
        Some(name)
    }

    /// `mirror = { service = "shadow", fraction = 0.1 }` (`fraction` from 0.001 to 1, default 1).
    pub(super) fn route_mirror(
        &mut self,
        service: &str,
        node: &Node,
        path: &str,
    ) -> Option<Mirror> {
        let map = self.table(node, path, &["service", "fraction"])?;
        let Some(s) = map.get("service") else {
            self.err(
                &node.loc,
                path,
                "a mirror needs the `service` that gets the copies",
                Some("mirror = { service = \"shadow\", fraction = 0.1 }".to_string()),
            );
            return None;
        };
        let sp = join(path, "service");
        let target = self.string(&s.node, &sp)?;
        let per_mille = match map.get("fraction") {
            None => 1000,
            Some(f) => {
                let fp = join(path, "fraction");
                let value = match f.node.kind {
                    Kind::Float(x) => x,
                    Kind::Int(i) => i as f64,
                    _ => {
                        self.type_err(&f.node, &fp, "a number from 0.001 to 1");
                        return None;
                    }
                };
                let per_mille = (value * 1000.0).round();
                if !(1.0..=1000.0).contains(&per_mille) {
                    self.err(
                        &f.node.loc,
                        &fp,
                        format!("{value} is out of range"),
                        Some("a fraction of the requests from 0.001 to 1".to_string()),
                    );
                    return None;
                }
                per_mille as u32
            }
        };
        self.split_locs
            .entry(service.to_string())
            .or_default()
            .push((target.clone(), sp, s.node.loc.clone()));
        Some(Mirror {
            service: target,
            per_mille,
        })
    }
}
