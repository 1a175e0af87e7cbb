//! Maintenance mode (`grove maintenance on|off`): which routes answer 503 with a message
//! while it is on, and which clients still get through. Kept in the state store, so it
//! survives a reload and a restart of grove; not part of the stack file.

use serde::{Deserialize, Serialize};

/// The store's key.
pub const MAINTENANCE_KEY: &str = "maintenance";

/// Maintenance as the operator turned it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Maintenance {
    /// The routes it covers (a route as `check` shows it, `HOST/PREFIX` or `/PREFIX`, or a
    /// service's name); every route when empty.
    #[serde(default)]
    pub routes: Vec<String>,
    /// What the 503 page says.
    #[serde(default)]
    pub message: Option<String>,
    /// `Retry-After`, in seconds.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Client networks that still get through (`192.0.2.0/24`, an address alone).
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Maintenance {
    /// Whether it covers the route keyed `key` (`*/api`, `app.example.org/`) to `service`.
    pub fn covers(&self, key: &str, service: Option<&str>) -> bool {
        self.routes.is_empty()
            || self
                .routes
                .iter()
                .any(|r| r == key || format!("*{r}") == key || service.is_some_and(|s| s == r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_named_by_its_key_its_prefix_or_its_service() {
        let all = Maintenance::default();
        assert!(all.covers("*/", Some("web")));
        let some = Maintenance {
            routes: vec!["/api".into(), "shop.example.org/".into(), "admin".into()],
            ..Default::default()
        };
        assert!(some.covers("*/api", Some("api")));
        assert!(some.covers("shop.example.org/", Some("shop")));
        assert!(some.covers("*/admin", Some("admin")));
        assert!(!some.covers("*/", Some("web")));
    }
}
