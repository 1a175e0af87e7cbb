//! What a request must pass before its route serves it, on the hyper path: maintenance
//! mode, the route's rate limit, its Basic or forward authentication. The fast path hands
//! every request these concern to hyper, so they are decided here only.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::pages::error_page;
use crate::proxy::BoxBody;
use crate::table::{Action, Route};
use crate::{Conn, Shared};

/// `Ok` to serve `req` on `r`; else the answer instead (and what gave it, for the log).
/// A forward-auth pass adds the headers the auth service named to `req`.
pub(crate) async fn admit(
    shared: &Shared,
    r: &Route,
    req: &mut Request<Incoming>,
    conn: Conn,
    id: &str,
) -> Result<(), (Response<BoxBody>, Option<String>)> {
    if let Some(m) = shared.maintenance() {
        let service = match &r.action {
            Action::Proxy(p) => Some(p.service.as_str()),
            _ => None,
        };
        let key = format!("{}{}", r.host.text(), r.prefix);
        if let Some(res) = m.answer(&key, service, conn.peer.ip(), id) {
            return Err((res, None));
        }
    }
    if let Some(limit) = &r.limit {
        let key = limit.key(conn.peer.ip(), req.headers());
        if let Err(wait) = limit.take(&key, Instant::now()) {
            r.stats.rate_limited();
            let mut res = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests: slow down",
                id,
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            return Err((res, None));
        }
    }
    if let Some(basic) = &r.auth {
        if basic.check(req.headers()).await.is_none() {
            let mut res = error_page(
                StatusCode::UNAUTHORIZED,
                "this route needs a user name and password",
                id,
            );
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, basic.challenge.clone());
            return Err((res, None));
        }
    }
    if let Some(f) = &r.forward {
        match f.ask(shared, req, conn.scheme, conn.peer.ip(), id).await {
            Ok(copied) => {
                for (name, value) in copied {
                    req.headers_mut().insert(name, value);
                }
            }
            Err(res) => return Err((res, Some("auth".to_string()))),
        }
    }
    Ok(())
}
