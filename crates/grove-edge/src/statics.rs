//! Static files: safe path resolution, content types, ETag / Last-Modified with conditional
//! GET, single byte ranges, precompressed `.br` / `.gz` siblings, cache headers.
//!
//! Files up to 64 KiB are served from memory by the open-file cache (`statics/cache.rs`,
//! which `stat`s the file on every request, so a change is served at once); a larger one is
//! never read whole: HEAD reads nothing, a range reads only its bytes, and the body is
//! streamed in chunks of [`CHUNK`] as the client takes them (hyper asks for the next chunk
//! once the last one is written), so a response holds one chunk in memory at most.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::proxy::{BoxBody, BoxError};

mod cache;

/// Larger files are streamed in chunks this big (smaller ones come whole from the cache).
pub const CHUNK: u64 = 256 * 1024;

/// Resolves the URL path `rest` (after the mount prefix, still percent-encoded) inside `root`.
/// `None` for anything that could leave the root: `..` in any spelling, encoded slashes or
/// backslashes, NUL, or a symlink whose target is outside.
pub fn resolve(root: &Path, rest: &str) -> Option<PathBuf> {
    let raw = rest.split('?').next().unwrap_or("");
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut path = root.to_path_buf();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => path.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let root_real = std::fs::canonicalize(root).ok()?;
    let mut real = std::fs::canonicalize(&path).ok()?;
    if !real.starts_with(&root_real) {
        return None;
    }
    if real.is_dir() {
        real = real.join("index.html");
        let r = std::fs::canonicalize(&real).ok()?;
        if !r.starts_with(&root_real) {
            return None;
        }
        real = r;
    } else if decoded.ends_with('/') {
        // `/file.txt/` names a folder that is not there (nginx: 404).
        return None;
    }
    Some(real)
}

fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{:x}-{:x}\"", meta.len(), mtime)
}

fn plain(status: StatusCode, text: &str) -> Response<BoxBody> {
    let mut r = Response::new(full(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(b: Bytes) -> BoxBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// Serves `rest` from `root` for a GET or HEAD with request headers `req`.
pub async fn serve(root: &Path, rest: &str, method: &Method, req: &HeaderMap) -> Response<BoxBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(file) = cache::lookup(root, rest) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    // A precompressed sibling the client accepts, when it is at least as new.
    let accept = req
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sibling = match accept.is_empty() {
        true => None,
        false => precompressed(&file.real, file.modified, accept, req).await,
    };
    let encoding = sibling.as_ref().map(|(_, e, _)| *e);
    let tag = match encoding {
        Some(e) => format!("{}-{e}\"", &file.etag[..file.etag.len() - 1]),
        None => file.etag.clone(),
    };
    let modified = file.modified;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(m) = modified {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
            headers.insert(header::LAST_MODIFIED, v);
        }
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(e) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    if not_modified(req, &tag, modified) {
        return not_modified_answer(&headers);
    }
    let len = match &sibling {
        Some((_, _, len)) => *len,
        None => file.len,
    };
    let mut status = StatusCode::OK;
    let (mut start, mut end) = (0, len);
    if let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        let if_range_ok = match req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
            None => true,
            Some(v) => v == tag,
        };
        match parse_range(range, len) {
            Ask::One(a, b) if if_range_ok => {
                status = StatusCode::PARTIAL_CONTENT;
                (start, end) = (a, b + 1);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            Ask::Unsatisfiable if if_range_ok => {
                let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            // Several ranges, another unit, or a stale If-Range: the whole file.
            _ => {}
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    let body = if method == Method::HEAD {
        full(Bytes::new())
    } else if let (None, Some(bytes)) = (&sibling, &file.body) {
        full(bytes.slice(start as usize..end as usize))
    } else {
        let path = sibling.as_ref().map_or(&file.real, |(p, _, _)| p);
        match file_body(path, start, end) {
            Ok(b) => b,
            Err(_) => return plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A precompressed sibling (`.br`, `.gz`) the client accepts, when it is at least as new as
/// the file (`modified`): its path, coding and length. Never for a range request.
async fn precompressed(
    path: &Path,
    modified: Option<SystemTime>,
    accept: &str,
    req: &HeaderMap,
) -> Option<(PathBuf, &'static str, u64)> {
    if req.contains_key(header::RANGE) {
        return None;
    }
    for (enc, ext) in [("br", "br"), ("gzip", "gz")] {
        if !accepts(accept, enc) {
            continue;
        }
        let mut sib = path.to_path_buf().into_os_string();
        sib.push(format!(".{ext}"));
        let sib = PathBuf::from(sib);
        if let Ok(m) = tokio::fs::metadata(&sib).await {
            let fresh = match (m.modified(), modified) {
                (Ok(a), Some(b)) => a >= b,
                _ => true,
            };
            if m.is_file() && fresh {
                return Some((sib, enc, m.len()));
            }
        }
    }
    None
}

/// Whether a conditional GET is answered 304: If-None-Match wins over If-Modified-Since.
fn not_modified(req: &HeaderMap, tag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == tag
        })
    } else if let (Some(ims), Some(m)) = (
        req.get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok()),
        modified,
    ) {
        // HTTP dates have whole seconds.
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        secs(m) <= secs(ims)
    } else {
        false
    }
}

/// The 304 answer: the validators and caching headers of the 200 it stands for.
fn not_modified_answer(headers: &HeaderMap) -> Response<BoxBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    for k in [
        header::ETAG,
        header::LAST_MODIFIED,
        header::CACHE_CONTROL,
        header::VARY,
    ] {
        if let Some(v) = headers.get(&k) {
            r.headers_mut().insert(k, v.clone());
        }
    }
    r
}

/// The bytes `start..end` of the file at `path`, streamed [`CHUNK`] at a
/// time. The open and the reads are plain system calls on the connection's task (a
/// page-cached read of a chunk costs less than a trip to tokio's blocking pool, and nginx
/// makes them the same way), each into a fresh buffer that becomes the frame, so the bytes
/// are copied once, from the kernel.
fn file_body(path: &Path, start: u64, end: u64) -> std::io::Result<BoxBody> {
    let left = end.saturating_sub(start);
    let mut file = std::fs::File::open(path)?;
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    Ok(FileBody { file, left }.boxed())
}

/// A file's bytes as a body, one chunk at a time.
struct FileBody {
    file: std::fs::File,
    /// Bytes still to send.
    left: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = this.left.min(CHUNK);
        let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        (&mut this.file).take(want).read_to_end(&mut buf)?;
        if buf.is_empty() {
            // The file shrank since its length was sent: end the response short (the client
            // sees the connection close before the promised length).
            return Poll::Ready(Some(Err("the file shrank while it was served".into())));
        }
        this.left -= buf.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

fn accepts(accept: &str, enc: &str) -> bool {
    accept.split(',').any(|part| {
        let mut it = part.split(';');
        let name = it.next().unwrap_or("").trim();
        let q_zero = it.any(|p| {
            let p = p.trim();
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        name.eq_ignore_ascii_case(enc) && !q_zero
    })
}

/// What a `Range` header asks for (RFC 9110 14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The whole file: a unit other than `bytes`, several ranges (which a server may answer
    /// with the whole representation), or a header that does not parse.
    Whole,
    /// The bytes from the first to the second, inclusive.
    One(u64, u64),
    /// A single byte range outside the file: 416.
    Unsatisfiable,
}

/// What the `Range` header `h` asks of a file `len` bytes long.
pub fn parse_range(h: &str, len: u64) -> Ask {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ask::Whole;
    };
    if spec.contains(',') {
        return Ask::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ask::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => Ask::Unsatisfiable,
            Ok(_) if len == 0 => Ask::Unsatisfiable,
            Ok(n) => Ask::One(len.saturating_sub(n), len - 1),
            Err(_) => Ask::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ask::Whole;
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) => Some(e),
            Err(_) => return Ask::Whole,
        }
    };
    if end.is_some_and(|e| e < start) {
        // Invalid syntax (RFC 9110 14.1.1): ignored.
        return Ask::Whole;
    }
    if start >= len {
        return Ask::Unsatisfiable;
    }
    Ask::One(start, end.map_or(len - 1, |e| e.min(len - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("sub/index.html"), "i").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link")).unwrap();
        assert!(resolve(&root, "/a.txt").is_some());
        assert!(resolve(&root, "/sub/").unwrap().ends_with("sub/index.html"));
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/sub/..%2fsecret.txt",
            "/..%5csecret.txt",
            "/link",
            "/a.txt%00",
            "/nope",
            "/a.txt/",
        ] {
            assert!(resolve(&root, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Ask::One(0, 4));
        assert_eq!(parse_range("bytes=5-", 10), Ask::One(5, 9));
        assert_eq!(parse_range("bytes=-3", 10), Ask::One(7, 9));
        assert_eq!(parse_range("bytes=8-100", 10), Ask::One(8, 9));
        assert_eq!(parse_range("bytes=10-", 10), Ask::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Ask::Unsatisfiable);
        // Issue 20: several ranges and unknown units are answered with the whole file.
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ask::Whole);
        assert_eq!(parse_range("items=0-1", 10), Ask::Whole);
        assert_eq!(parse_range("bytes=5-2", 10), Ask::Whole);
        assert_eq!(parse_range("bytes=x-", 10), Ask::Whole);
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(!accepts("gzip;q=0, br", "gzip"));
        assert!(!accepts("identity", "gzip"));
    }
}
