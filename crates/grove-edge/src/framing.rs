//! The request-framing guard: refuses request smuggling that hyper would quietly resolve.
//!
//! hyper reads a request carrying both `Content-Length` and `Transfer-Encoding` as chunked
//! (RFC 9112 6.3 allows that), drops the `Content-Length` before the service sees it, and
//! merges repeated equal `Content-Length` lines. Neither is visible to the proxy, and both are
//! classic smuggling probes that nginx answers with 400. So every HTTP/1 connection's bytes
//! pass through a [`Guard`] on their way to hyper: it follows the request framing (heads parsed
//! with `httparse`, the parser hyper itself uses; then the body by its length or its chunks)
//! and, when a head breaks one of the edge's HTTP rules ([`crate::rules::check_request`]:
//! framing both ways or twice, a `Connection` naming a framing header, no `Host` or two), it
//! hands hyper that head with a NUL byte in place of its last line break (and nothing after
//! it). hyper then fails to parse the
//! head and answers 400 itself, closing the connection, so neither that request nor anything
//! after it is forwarded.
//!
//! The guard only ever changes a head it refuses. Whatever it cannot follow (a malformed head
//! or chunk, which hyper refuses anyway; HTTP/2; the tunnel after a `101 Switching
//! Protocols`) switches it off for the rest of the connection.
//!
//! The guard also keeps the connection's clocks ([`crate::idle`]): each time a read finds
//! nothing, it asks what the connection is waiting for, and a head that never finishes gets
//! 408, an idle keep-alive connection is closed.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use std::future::Future as _;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::idle::{self, Activity, Expiry, Waiting};
use crate::rules;

/// Most headers the guard parses; a head with more is left to hyper (which refuses it at the
/// configured `max_headers`, at most 1,000).
const MAX_HEADERS: usize = 1000;
/// Longest chunk-size or trailer line the guard follows.
const MAX_LINE: usize = 4096;

pub use crate::rules::Refusal;

/// A refused request, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub why: Refusal,
    /// Its method.
    pub method: String,
    /// Its target (at most 200 characters).
    pub path: String,
    /// Its Host header (at most 200 characters).
    pub host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// This many body bytes to go.
    Length(u64),
    /// A chunked body (followed by [`Scanner::chunked`]).
    Chunked,
    /// Not following any more.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Chunk {
    /// A chunk-size line.
    #[default]
    Size,
    /// This many chunk bytes to go.
    Data(u64),
    /// The CRLF after a chunk's data: `2` before the CR, `1` before the LF.
    End(u8),
    /// Trailer lines up to an empty one.
    Trailers,
}

/// Where a chunked body is after some of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Every byte given belongs to the body; it goes on.
    More,
    /// The body ended this many bytes into what was given.
    Done(usize),
    /// Not a chunked body (a malformed size line, a missing CRLF, an overlong line).
    Bad,
}

/// Follows a chunked body (RFC 9112 7.1: sizes, data, trailers) to its end, however its
/// bytes are split. Used for request bodies here and for upstream responses by the fast path.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: Chunk,
    /// A chunk-size or trailer line that spans reads.
    line: Vec<u8>,
}

impl Chunked {
    /// Takes the next bytes of the body, in order.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Step {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                Chunk::Size => {
                    let Some(line_end) = self.line_end(data, at) else {
                        return self.partial_line();
                    };
                    let size = {
                        let line = self.joined(&data[at..line_end]);
                        httparse::parse_chunk_size(line)
                    };
                    self.line.clear();
                    at = line_end;
                    self.state = match size {
                        Ok(httparse::Status::Complete((_, 0))) => Chunk::Trailers,
                        Ok(httparse::Status::Complete((_, n))) => Chunk::Data(n),
                        _ => return Step::Bad,
                    };
                }
                Chunk::Data(n) => {
                    let take = remaining(n, data.len() - at);
                    at += take;
                    self.state = match n - take as u64 {
                        0 => Chunk::End(2),
                        left => Chunk::Data(left),
                    };
                }
                Chunk::End(k) => {
                    let want = if k == 2 { b'\r' } else { b'\n' };
                    self.state = match (data[at] == want, k) {
                        (false, _) => return Step::Bad,
                        (true, 2) => Chunk::End(1),
                        (true, _) => Chunk::Size,
                    };
                    at += 1;
                }
                Chunk::Trailers => {
                    let Some(line_end) = self.line_end(data, at) else {
                        return self.partial_line();
                    };
                    let empty = {
                        let line = self.joined(&data[at..line_end]);
                        line == b"\n" || line == b"\r\n"
                    };
                    self.line.clear();
                    at = line_end;
                    if empty {
                        *self = Chunked::default();
                        return Step::Done(at);
                    }
                }
            }
        }
        Step::More
    }

    /// The end (exclusive) of the line starting at `at`, or `None` after keeping the partial
    /// line for the next bytes.
    fn line_end(&mut self, data: &[u8], at: usize) -> Option<usize> {
        match data[at..].iter().position(|&b| b == b'\n') {
            Some(i) => Some(at + i + 1),
            None => {
                self.line.extend_from_slice(&data[at..]);
                None
            }
        }
    }

    /// A line is waiting for its end: fine unless it is past [`MAX_LINE`].
    fn partial_line(&mut self) -> Step {
        if self.line.len() > MAX_LINE {
            self.line = Vec::new();
            return Step::Bad;
        }
        Step::More
    }

    /// The kept partial line followed by `rest`.
    fn joined<'a>(&'a mut self, rest: &'a [u8]) -> &'a [u8] {
        if self.line.is_empty() {
            rest
        } else {
            self.line.extend_from_slice(rest);
            &self.line
        }
    }
}

/// What parsing a (possibly partial) head found.
enum Head {
    Partial,
    /// Not a head hyper would take (or not HTTP/1): stop following.
    Unparseable,
    Ok {
        len: usize,
        next: State,
        upgrade: bool,
    },
    Refuse {
        len: usize,
        refused: Refused,
    },
}

/// Follows the framing of a stream of HTTP/1 requests; see the module docs.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// A head that spans reads.
    head: Vec<u8>,
    /// The current chunked body.
    chunked: Chunked,
    max_head: usize,
    /// The last head asked for an upgrade; set until the next head begins.
    upgrade_asked: bool,
    /// Set by the service when it answered 101: the connection is a tunnel from then on.
    upgraded: Arc<AtomicBool>,
}

impl Scanner {
    /// A scanner for a new connection: heads longer than `max_head` are left to hyper;
    /// `upgraded` is set once the connection switched protocols.
    pub fn new(max_head: usize, upgraded: Arc<AtomicBool>) -> Scanner {
        Scanner {
            state: State::Head,
            head: Vec::new(),
            chunked: Chunked::default(),
            max_head,
            upgrade_asked: false,
            upgraded,
        }
    }

    /// Looks at the next bytes of the stream, in order. Returns a refused head and where it
    /// ends in `data` (exclusive); the scanner is off after that.
    pub fn scan(&mut self, data: &[u8]) -> Option<(Refused, usize)> {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Off => return None,
                State::Head => {
                    let (next, refused) = self.head(data, at);
                    if let Some(r) = refused {
                        return Some((r, next));
                    }
                    at = next;
                }
                State::Length(n) => {
                    let take = remaining(n, data.len() - at);
                    at += take;
                    self.state = match n - take as u64 {
                        0 => State::Head,
                        left => State::Length(left),
                    };
                }
                State::Chunked => match self.chunked.feed(&data[at..]) {
                    Step::More => return None,
                    Step::Done(n) => {
                        at += n;
                        self.state = State::Head;
                    }
                    Step::Bad => self.off(),
                },
            }
        }
        None
    }

    /// Handles head bytes from `at`; returns where the head ended in `data` (or `data.len()`).
    fn head(&mut self, data: &[u8], at: usize) -> (usize, Option<Refused>) {
        if std::mem::take(&mut self.upgrade_asked) && self.upgraded.load(Ordering::Acquire) {
            self.state = State::Off;
            return (data.len(), None);
        }
        let kept = self.head.len();
        let parsed = if kept == 0 {
            parse_head(&data[at..])
        } else {
            self.head.extend_from_slice(&data[at..]);
            // Only a blank line can complete a head: parse again only when one arrived, so a
            // head dribbled a byte at a time costs linear time.
            if has_blank_line(&self.head, kept) {
                parse_head(&self.head)
            } else {
                Head::Partial
            }
        };
        let (len, result) = match parsed {
            Head::Partial => {
                if kept == 0 {
                    self.head.extend_from_slice(&data[at..]);
                }
                if self.head.len() > self.max_head {
                    // hyper refuses it as too large.
                    self.off();
                }
                return (data.len(), None);
            }
            Head::Unparseable => {
                self.off();
                return (data.len(), None);
            }
            Head::Ok { len, next, upgrade } => {
                self.state = next;
                self.upgrade_asked = upgrade;
                (len, None)
            }
            Head::Refuse { len, refused } => {
                self.off();
                (len, Some(refused))
            }
        };
        self.head.clear();
        // The head's end in `data`: past the kept bytes (a kept part was never complete).
        let Some(end) = (len + at).checked_sub(kept).filter(|&e| e > at) else {
            self.off();
            return (data.len(), None);
        };
        (end, result)
    }

    /// Whether a head has begun and not yet ended.
    fn in_head(&self) -> bool {
        self.state == State::Head && !self.head.is_empty()
    }

    /// Whether the connection is a tunnel now.
    fn tunnel(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    fn off(&mut self) {
        self.state = State::Off;
        self.head = Vec::new();
        self.chunked = Chunked::default();
    }
}

fn remaining(n: u64, available: usize) -> usize {
    usize::try_from(n).map_or(available, |n| n.min(available))
}

/// Whether `buf` holds an empty line ending at or after `from`.
pub(crate) fn has_blank_line(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(2);
    buf[start..].iter().enumerate().any(|(i, &b)| {
        let i = start + i;
        b == b'\n'
            && i >= 1
            && (buf[i - 1] == b'\n' || (buf[i - 1] == b'\r' && i >= 2 && buf[i - 2] == b'\n'))
    })
}

fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Unparseable,
    };
    let mut lengths = 0usize;
    let mut length: Option<u64> = None;
    let mut te_chunked: Option<bool> = None;
    let mut upgrade = req.method == Some("CONNECT");
    let mut host = "";
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // As hyper: the last Transfer-Encoding line's last coding decides.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            te_chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if h.name.eq_ignore_ascii_case("host") {
            host = std::str::from_utf8(h.value).unwrap_or_default();
        }
    }
    let proto = if req.version == Some(0) {
        rules::Proto::Http10
    } else {
        rules::Proto::Http11
    };
    let why = rules::check_request(
        proto,
        req.headers.iter().map(|h| (h.name.as_bytes(), h.value)),
    )
    .and(rules::check_target(req.path.unwrap_or_default().as_bytes()))
    .err();
    if let Some(why) = why {
        return Head::Refuse {
            len,
            refused: Refused {
                why,
                method: req.method.unwrap_or_default().to_string(),
                path: req.path.unwrap_or_default().chars().take(200).collect(),
                host: host.chars().take(200).collect(),
            },
        };
    }
    let next = match (te_chunked, length, lengths) {
        (Some(true), _, _) => State::Chunked,
        // Not chunked last, or a length hyper cannot read: hyper refuses it.
        (Some(false), _, _) | (None, None, 1) => return Head::Unparseable,
        (None, Some(0) | None, _) => State::Head,
        (None, Some(n), _) => State::Length(n),
    };
    Head::Ok { len, next, upgrade }
}

/// Whether the guard refuses the request head at the start of `buf` (for the fast path's
/// differential fuzz target: a head the guard refuses is one the fast path must not take).
pub(crate) fn refuses(buf: &[u8]) -> bool {
    matches!(parse_head(buf), Head::Refuse { .. })
}

/// A connection's byte stream with a [`Scanner`] on the reading side.
#[derive(Debug)]
pub(crate) struct Guard<I> {
    io: I,
    scanner: Scanner,
    /// Bytes to hand hyper before reading on.
    inject: &'static [u8],
    /// Bytes read from the connection before the guard took it (by the fast path), read
    /// (and scanned) before anything else.
    prefix: bytes::Bytes,
    conn: crate::Conn,
    shared: Arc<crate::Shared>,
    /// The connection's requests in flight.
    activity: Activity,
    /// When the head being read began.
    head_since: Option<Instant>,
    /// The running clock, kept between reads.
    clock: Option<Pin<Box<Sleep>>>,
    /// A clock ran out: the connection reads as ended from then on.
    ended: bool,
}

impl<I> Guard<I> {
    pub(crate) fn new(
        io: I,
        scanner: Scanner,
        conn: crate::Conn,
        shared: Arc<crate::Shared>,
    ) -> Guard<I> {
        Guard {
            io,
            scanner,
            inject: b"",
            prefix: bytes::Bytes::new(),
            conn,
            shared,
            activity: Activity::new(),
            head_since: None,
            clock: None,
            ended: false,
        }
    }

    /// Counts requests in flight with `activity` (the service's side of the same count).
    pub(crate) fn with_activity(mut self, activity: Activity) -> Guard<I> {
        self.activity = activity;
        self
    }

    /// Reads `prefix` first: what was read from the connection before, from the start of a
    /// request head.
    pub(crate) fn with_prefix(mut self, prefix: bytes::Bytes) -> Guard<I> {
        self.prefix = prefix;
        self
    }
}

/// What replaces a refused head's last byte: a NUL where httparse wants a line break or a
/// header name, then a blank line so hyper's quick end-of-head check lets it parse.
const SPOILED_END: &[u8] = b"\0\r\n\r\n";

impl<I> Guard<I> {
    fn put_injected(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.inject.len().min(buf.remaining());
        buf.put_slice(&self.inject[..n]);
        self.inject = &self.inject[n..];
    }
}

impl<I: AsyncWrite + Unpin> Guard<I> {
    /// Nothing to read: runs the clock for what the connection waits for. `Ready` when it ran
    /// out (the connection then reads as ended, after a 408 for an unfinished head).
    fn poll_quiet(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let limits = &self.shared.limits;
        let (header, keepalive) = (limits.header_read_timeout, limits.keepalive_timeout);
        loop {
            let waiting = if self.scanner.tunnel() {
                Waiting::Tunnel
            } else if let Some(since) = self.head_since {
                Waiting::Head(since)
            } else {
                match self.activity.quiet_since() {
                    Some(since) => Waiting::Idle(since),
                    None => Waiting::Busy,
                }
            };
            let Some((at, expiry)) = idle::decide(waiting, Instant::now(), header, keepalive)
            else {
                self.clock = None;
                return Poll::Pending;
            };
            let clock = self
                .clock
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if clock.deadline() != at {
                clock.as_mut().reset(at);
            }
            if clock.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match expiry {
                Expiry::Recheck => continue,
                Expiry::Close => {}
                Expiry::RequestTimeout => {
                    let out =
                        crate::pages::timeout_page("the request head did not arrive in time", true);
                    // One try: a client that reads nothing does not get to hold the task.
                    let _ = Pin::new(&mut self.io).poll_write(cx, &out);
                    let _ = Pin::new(&mut self.io).poll_flush(cx);
                }
            }
            self.ended = true;
            self.clock = None;
            return Poll::Ready(());
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.inject.is_empty() {
            this.put_injected(buf);
            return Poll::Ready(Ok(()));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if this.prefix.is_empty() {
            match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    ready!(this.poll_quiet(cx));
                    return Poll::Ready(Ok(()));
                }
            }
            if buf.filled().len() > before {
                this.activity.touch();
            }
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
        }
        if this.scanner.state != State::Off {
            if let Some((refused, end)) = this.scanner.scan(&buf.filled()[before..]) {
                this.shared.refused(&refused, this.conn);
                // The head without its last byte, then the spoiled end (at least one byte of
                // it now: an empty read would look like the end of the stream).
                buf.set_filled(before + end - 1);
                this.inject = SPOILED_END;
                this.put_injected(buf);
            }
        }
        this.head_since = match (this.scanner.in_head(), this.head_since) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, since) => since,
        };
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new(64 * 1024, Arc::new(AtomicBool::new(false)))
    }

    /// Feeds `stream` split at `cuts`; returns the bytes as hyper would see them, and the
    /// refusals.
    fn feed(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Refusal>) {
        let mut s = scanner();
        let mut out = Vec::new();
        let mut refusals = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            if cut <= from {
                continue;
            }
            match s.scan(&stream[from..cut]) {
                Some((r, end)) => {
                    refusals.push(r.why);
                    out.extend_from_slice(&stream[from..from + end - 1]);
                    out.extend_from_slice(SPOILED_END);
                    break;
                }
                None => out.extend_from_slice(&stream[from..cut]),
            }
            from = cut;
        }
        (out, refusals)
    }

    /// Every single split point, and byte-at-a-time.
    fn every_split(stream: &[u8]) -> Vec<(Vec<u8>, Vec<Refusal>)> {
        let mut all: Vec<_> = (0..=stream.len()).map(|c| feed(stream, &[c])).collect();
        let bytes: Vec<usize> = (1..stream.len()).collect();
        all.push(feed(stream, &bytes));
        all
    }

    const GOOD: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
5;name=v\r\nHTTP/\r\n1A\r\nContent-Length: 4\r\n\r\nabcde\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET /d HTTP/1.1\nHost: x\n\n";

    #[test]
    fn legitimate_requests_pass_untouched_however_they_are_split() {
        for (out, refusals) in every_split(GOOD) {
            assert_eq!(out, GOOD);
            assert!(refusals.is_empty());
        }
    }

    #[test]
    fn both_framings_after_good_requests_are_spoiled_wherever_the_reads_fall() {
        for (evil, why) in [
            (
                &b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"[..],
                Refusal::BothFramings,
            ),
            (
                b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                Refusal::BothFramings,
            ),
            (
                b"POST /e HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
                Refusal::TwoLengths,
            ),
        ] {
            let stream = [GOOD, evil].concat();
            let head_end = GOOD.len()
                + evil.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_default()
                + 4;
            for (out, refusals) in every_split(&stream) {
                assert_eq!(refusals, vec![why]);
                let mut expected = stream[..head_end - 1].to_vec();
                expected.extend_from_slice(SPOILED_END);
                assert_eq!(out, expected, "the head's last byte is spoiled, nothing follows");
                // hyper's parser refuses the spoiled head.
                assert!(matches!(
                    parse_head(&out[GOOD.len()..]),
                    Head::Unparseable
                ));
            }
        }
    }

    #[test]
    fn what_it_cannot_follow_switches_it_off() {
        // A malformed chunk size (hyper refuses it): nothing after it is looked at.
        let stream = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (out, refusals) = feed(stream, &[]);
        assert_eq!(&out[..], &stream[..]);
        assert!(refusals.is_empty());
        // HTTP/2 with prior knowledge.
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00";
        assert_eq!(feed(h2, &[]).0, h2);
        // After a 101, the tunnel is not HTTP.
        let upgraded = Arc::new(AtomicBool::new(false));
        let mut s = Scanner::new(1024, upgraded.clone());
        let head =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert!(s.scan(head).is_none());
        upgraded.store(true, Ordering::Release);
        let tunnel = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert!(s.scan(tunnel).is_none());
        // An oversized head is left to hyper's 431.
        let mut s = Scanner::new(16, Arc::new(AtomicBool::new(false)));
        assert!(s.scan(b"GET / HTTP/1.1\r\nX-Long: aaaaaaaa").is_none());
        assert_eq!(s.state, State::Off);
    }

    #[test]
    fn the_refusal_names_the_request() {
        let mut s = scanner();
        let raw = b"PUT /up?x=1 HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            s.scan(raw),
            Some((
                Refused {
                    why: Refusal::BothFramings,
                    method: "PUT".into(),
                    path: "/up?x=1".into(),
                    host: "example.org".into()
                },
                raw.len()
            ))
        );
    }
}
