//! Maintenance mode at the edge: the routes it covers answer 503 with the operator's message
//! and `Retry-After`, except to the clients it allows.

use std::net::IpAddr;

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::pages::error_page;
use crate::proxy::BoxBody;

/// Maintenance as the edge applies it: the settings with their networks parsed.
#[derive(Debug)]
pub(crate) struct Active {
    settings: grove_plan::Maintenance,
    allow: Vec<(IpAddr, u8)>,
}

impl Active {
    pub(crate) fn new(m: &grove_plan::Maintenance) -> Result<Active, String> {
        let mut allow = Vec::new();
        for a in &m.allow {
            allow.push(
                grove_plan::edge_rules::network(a)
                    .ok_or_else(|| format!("`{a}` is not a network"))?,
            );
        }
        Ok(Active {
            settings: m.clone(),
            allow,
        })
    }

    /// The 503 for a request from `client` to the route `key` of `service`, when
    /// maintenance covers it and does not let the client through.
    pub(crate) fn answer(
        &self,
        key: &str,
        service: Option<&str>,
        client: IpAddr,
        id: &str,
    ) -> Option<Response<BoxBody>> {
        if !self.settings.covers(key, service) || self.allow.iter().any(|n| inside(client, *n)) {
            return None;
        }
        let message = self
            .settings
            .message
            .as_deref()
            .unwrap_or("down for maintenance: back soon");
        let mut res = error_page(StatusCode::SERVICE_UNAVAILABLE, message, id);
        let retry = self.settings.retry_after_secs.unwrap_or(60);
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry));
        Some(res)
    }
}

fn inside(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        // An IPv4 client on a dual-stack listener.
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| inside(IpAddr::V4(v4), (net, len))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_clients_pass_and_the_rest_get_the_page() {
        let a = Active::new(&grove_plan::Maintenance {
            message: Some("upgrading the database".into()),
            retry_after_secs: Some(600),
            allow: vec!["192.0.2.0/24".into(), "2001:db8::1".into()],
            ..Default::default()
        })
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(a.answer("*/", None, ip("192.0.2.77"), "r").is_none());
        assert!(a.answer("*/", None, ip("::ffff:192.0.2.8"), "r").is_none());
        assert!(a.answer("*/", None, ip("2001:db8::1"), "r").is_none());
        let res = a.answer("*/", None, ip("198.51.100.1"), "r").unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[RETRY_AFTER], "600");
        assert!(Active::new(&grove_plan::Maintenance {
            allow: vec!["nope".into()],
            ..Default::default()
        })
        .is_err());
    }
}
