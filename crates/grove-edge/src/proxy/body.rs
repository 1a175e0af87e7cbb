//! A request's body on its way to the upstream: read whole up to the route's `buffer_body`
//! (1 MiB unless set: so a malformed or oversized one is refused before the upstream sees any
//! of it, and the request can be sent again: retried, or copied to a mirror), streamed
//! beyond, every frame due within the body read timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Response, StatusCode};

use super::{closing, BoxBody, BoxError};
use crate::pages::error_page;
use crate::Shared;

/// The request's body for the upstream: none, whole (up to the route's buffer size, so it
/// can be sent again) or streaming; an error page when it is too large, too slow or
/// malformed. `sizes` is the route's `(max_body, buffer_body)`.
pub(super) async fn request_body(
    shared: &Shared,
    declared: Option<u64>,
    headers: &HeaderMap,
    body: Incoming,
    sizes: (u64, u64),
    id: &str,
) -> Result<Option<ReqBody>, Response<BoxBody>> {
    let (max_body, buffer) = sizes;
    let empty_body = declared == Some(0)
        || (declared.is_none() && !headers.contains_key(header::TRANSFER_ENCODING));
    if empty_body {
        return Ok(None);
    }
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body = ReadTimeout::new(Limited::new(body, limit), shared.limits.body_read_timeout);
    match buffer_body(body, usize::try_from(buffer).unwrap_or(usize::MAX)).await {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is::<BodyTimeout>() => Err(closing(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
            id,
        )),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large for this route",
                id,
            ))
        }
        Err(e) => Err(closing(
            StatusCode::BAD_REQUEST,
            &format!("malformed request body: {e}"),
            id,
        )),
    }
}

pub(super) enum ReqBody {
    Whole(Bytes),
    Streaming(BoxBody),
}

type InBody = ReadTimeout<Limited<Incoming>>;

pub(super) const BODY_TIMEOUT: &str = "the client stopped sending its request body";

/// The client went quiet in the middle of its request body.
#[derive(Debug, thiserror::Error)]
#[error("{BODY_TIMEOUT}")]
pub(super) struct BodyTimeout;

/// A body whose next frame must arrive within `limit` of the previous one.
struct ReadTimeout<B> {
    inner: B,
    limit: std::time::Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> ReadTimeout<B> {
    fn new(inner: B, limit: std::time::Duration) -> Self {
        ReadTimeout {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> hyper::body::Body for ReadTimeout<B>
where
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                let next = tokio::time::Instant::now() + this.limit;
                this.sleep.as_mut().reset(next);
                Poll::Ready(f)
            }
            Poll::Pending => match std::future::Future::poll(this.sleep.as_mut(), cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads `body` whole while it is at most `buffer` bytes; a larger one streams on from there.
async fn buffer_body(mut body: InBody, buffer: usize) -> Result<ReqBody, BoxError> {
    let mut buf = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(ReqBody::Whole(buf.freeze())),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
                if buf.len() > buffer {
                    let rest = Prefixed {
                        first: Some(buf.freeze()),
                        rest: body,
                    };
                    return Ok(ReqBody::Streaming(rest.boxed()));
                }
            }
        }
    }
}

/// What was already read, then the rest of the body.
struct Prefixed {
    first: Option<Bytes>,
    rest: InBody,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(b) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}
