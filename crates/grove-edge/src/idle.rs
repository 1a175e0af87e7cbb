//! When a quiet client connection on hyper's side is closed: what it is waiting for decides
//! which clock runs. A head that began must be whole within `client_header_timeout` of its
//! first byte (then 408); a connection with no request in flight (no response being
//! written, no body streaming) is closed after `keepalive_timeout` without an answer; a
//! request in flight and a tunnel (WebSocket) are never idle. HTTP/1.1 and HTTP/2 alike: the
//! [`Guard`](crate::framing::Guard) asks [`decide`] each time a read finds nothing to read.
//!
//! [`Activity`] counts a connection's requests in flight; a response body counts until it
//! ends or is dropped ([`Tracked`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::proxy::{BoxBody, BoxError};

/// What a connection with nothing to read is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// The rest of a request head whose first byte came at this instant.
    Head(Instant),
    /// Its next request, since this instant (nothing in flight).
    Idle(Instant),
    /// A response: a request is in flight.
    Busy,
    /// Nothing: the connection is a tunnel now.
    Tunnel,
}

/// What to do when the clock of a [`Waiting`] runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Answer 408 and close.
    RequestTimeout,
    /// Close without an answer.
    Close,
    /// Look again then (the state may have changed without a read).
    Recheck,
}

/// The clock for `waiting`: when it runs out and what happens then; `None` for no clock.
pub(crate) fn decide(
    waiting: Waiting,
    now: Instant,
    header: Duration,
    keepalive: Duration,
) -> Option<(Instant, Expiry)> {
    match waiting {
        Waiting::Head(since) => Some((since + header, Expiry::RequestTimeout)),
        Waiting::Idle(since) => Some((since + keepalive, Expiry::Close)),
        // A request ending does not wake the reading side: look again now and then.
        Waiting::Busy => Some((now + keepalive.min(header), Expiry::Recheck)),
        Waiting::Tunnel => None,
    }
}

#[derive(Debug)]
struct Inner {
    in_flight: AtomicUsize,
    /// When the count last went to zero (or the connection opened).
    quiet_since: Mutex<Instant>,
}

/// A connection's requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Inner>);

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(Inner {
            in_flight: AtomicUsize::new(0),
            quiet_since: Mutex::new(Instant::now()),
        }))
    }

    /// One more request in flight, until the returned guard drops.
    pub(crate) fn begin(&self) -> Busy {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Some(self.0.clone()))
    }

    /// Bytes arrived: the connection is not idle as of now.
    pub(crate) fn touch(&self) {
        match self.0.quiet_since.lock() {
            Ok(mut t) => *t = Instant::now(),
            Err(p) => *p.into_inner() = Instant::now(),
        }
    }

    /// When the connection became quiet, or `None` while a request is in flight.
    pub(crate) fn quiet_since(&self) -> Option<Instant> {
        if self.0.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.0.quiet_since.lock() {
            Ok(t) => *t,
            Err(p) => *p.into_inner(),
        })
    }
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct Busy(Option<Arc<Inner>>);

impl Busy {
    fn end(&mut self) {
        let Some(inner) = self.0.take() else { return };
        if inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            match inner.quiet_since.lock() {
                Ok(mut t) => *t = Instant::now(),
                Err(p) => *p.into_inner() = Instant::now(),
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.end();
    }
}

/// A response body that keeps its request in flight until it ends.
struct Tracked {
    body: BoxBody,
    busy: Busy,
}

/// `body`, counted in flight with `busy` until its last frame (or until it is dropped).
pub(crate) fn tracked(body: BoxBody, busy: Busy) -> BoxBody {
    if body.is_end_stream() {
        drop(busy);
        return body;
    }
    Tracked { body, busy }.boxed()
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || self.body.is_end_stream()
        {
            self.busy.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};

    const H: Duration = Duration::from_secs(10);
    const K: Duration = Duration::from_secs(75);

    #[test]
    fn each_wait_has_its_clock() {
        let t = Instant::now();
        assert_eq!(
            decide(Waiting::Head(t), t, H, K),
            Some((t + H, Expiry::RequestTimeout))
        );
        assert_eq!(
            decide(Waiting::Idle(t), t, H, K),
            Some((t + K, Expiry::Close))
        );
        assert_eq!(
            decide(Waiting::Busy, t, H, K),
            Some((t + H, Expiry::Recheck))
        );
        assert_eq!(decide(Waiting::Tunnel, t, H, K), None);
    }

    /// A body fed through a channel, ending when the sender drops.
    struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_request_is_in_flight_until_its_body_ends() {
        let a = Activity::new();
        assert!(a.quiet_since().is_some());
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let mut body = tracked(Channel(rx).boxed(), a.begin());
        assert_eq!(a.quiet_since(), None);
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        assert!(body.frame().await.is_some());
        assert_eq!(a.quiet_since(), None, "still streaming");
        drop(tx);
        assert!(body.frame().await.is_none());
        let quiet = a.quiet_since().expect("quiet after the last frame");
        assert!(quiet.elapsed() < Duration::from_secs(1));
        drop(body);
        // An empty body ends at once; a dropped one ends its request.
        let _ = tracked(Empty::new().map_err(|e| match e {}).boxed(), a.begin());
        assert!(a.quiet_since().is_some());
        let full = tracked(
            Full::new(Bytes::from_static(b"abc"))
                .map_err(|e| match e {})
                .boxed(),
            a.begin(),
        );
        assert_eq!(a.quiet_since(), None);
        drop(full);
        assert!(a.quiet_since().is_some());
    }
}
