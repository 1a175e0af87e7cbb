//! The access log: requests append their line to a buffer that is written out every
//! [`ACCESS_FLUSH`] or when [`ACCESS_BUFFER`] fills (nginx's `buffer=` and `flush=`), so
//! logging costs no system call or task wake-up per request; what is left is written when
//! the edge goes. Lines are in grove's format, Apache's and nginx's `combined` (for log
//! analysers), or JSON in the style of Caddy's and Traefik's structured logs; `off` writes
//! nothing. The file rotates by size like the units' logs (`NAME.1` .. `NAME.KEEP`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grove_plan::{AccessFormat, LogRotation};

/// Access-log lines are written out this often...
pub(crate) const ACCESS_FLUSH: Duration = Duration::from_millis(100);
/// ...or once this much is waiting.
pub(crate) const ACCESS_BUFFER: usize = 32 * 1024;

/// One answered request, as a line shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub peer: std::net::SocketAddr,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub proto: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub took: Duration,
    pub upstream: Option<&'a str>,
    pub id: &'a str,
    /// `Referer` and `User-Agent`, for the combined format (empty when not sent).
    pub referer: &'a str,
    pub agent: &'a str,
}

/// The format's code in the log's atomic.
fn code(f: Option<AccessFormat>) -> u8 {
    match f {
        Some(AccessFormat::Grove) => 0,
        Some(AccessFormat::Combined) => 1,
        Some(AccessFormat::Json) => 2,
        None => 3,
    }
}

/// The access log.
pub(crate) struct AccessLog {
    buf: std::sync::Mutex<LogBuf>,
    file: std::sync::Mutex<std::fs::File>,
    pub(crate) full: Arc<tokio::sync::Notify>,
    /// Grove, combined, JSON, or off (`None`): changed by a reload.
    format: AtomicU8,
    path: PathBuf,
    rotation: LogRotation,
}

/// Lines waiting to be written, and the current second as text.
#[derive(Default)]
struct LogBuf {
    bytes: Vec<u8>,
    /// `2026-11-23T10:00:00` (grove, JSON) and `23/Nov/2026:10:00:00 +0000` (combined).
    stamp: String,
    clf: String,
    second: Option<u64>,
}

struct OrDash(Option<u64>);

impl std::fmt::Display for OrDash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("-"),
        }
    }
}

/// `s` as a JSON string's content.
fn json_str(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    quoted[1..quoted.len().saturating_sub(1)].to_string()
}

/// A combined-format field: `"` and `\` escaped, empty as `-`.
fn clf_field(s: &str) -> String {
    if s.is_empty() {
        return "-".to_string();
    }
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The month names of the common log format.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `23/Nov/2026:10:00:00 +0000` from `2026-11-23T10:00:00`.
fn clf_time(rfc3339: &str) -> String {
    let (date, time) = rfc3339.split_once('T').unwrap_or((rfc3339, "00:00:00"));
    let mut d = date.split('-');
    let (y, m, day) = (
        d.next().unwrap_or(""),
        d.next().unwrap_or("1"),
        d.next().unwrap_or(""),
    );
    let month = m
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    format!("{day}/{month}/{y}:{time} +0000")
}

impl AccessLog {
    /// The log at `path` (appended to; its folder made), in `format` (`None`: off).
    pub(crate) fn open(
        path: &Path,
        format: Option<AccessFormat>,
        rotation: LogRotation,
    ) -> std::io::Result<AccessLog> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AccessLog {
            buf: std::sync::Mutex::new(LogBuf {
                bytes: Vec::with_capacity(ACCESS_BUFFER),
                ..LogBuf::default()
            }),
            file: std::sync::Mutex::new(file),
            full: Arc::new(tokio::sync::Notify::new()),
            format: AtomicU8::new(code(format)),
            path: path.to_path_buf(),
            rotation,
        })
    }

    /// Whether lines show `Referer` and `User-Agent` (the combined format).
    pub(crate) fn wants_headers(&self) -> bool {
        self.format.load(Ordering::Relaxed) == 1
    }

    /// Takes another format (a reload).
    pub(crate) fn set_format(&self, format: Option<AccessFormat>) {
        self.format.store(code(format), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuf> {
        match self.buf.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Appends the line of `e`.
    pub(crate) fn write(&self, e: &Entry<'_>) {
        let format = self.format.load(Ordering::Relaxed);
        if format == 3 {
            return;
        }
        let now = SystemTime::now();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut log = self.lock();
        let LogBuf {
            bytes: buf,
            stamp,
            clf,
            second,
        } = &mut *log;
        // The time to the second is formatted once a second; the milliseconds per line.
        if *second != Some(since_epoch.as_secs()) {
            let text = humantime::format_rfc3339_seconds(now).to_string();
            stamp.clear();
            stamp.push_str(text.trim_end_matches('Z'));
            *clf = clf_time(stamp);
            *second = Some(since_epoch.as_secs());
        }
        let millis = since_epoch.subsec_millis();
        let micros = e.took.as_micros();
        let host = if e.host.is_empty() { "-" } else { e.host };
        let _ = match format {
            1 => writeln!(
                buf,
                "{} - - [{clf}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
                e.peer.ip(),
                e.method,
                clf_field(e.path),
                e.proto,
                e.status,
                OrDash(e.bytes),
                clf_field(e.referer),
                clf_field(e.agent),
            ),
            2 => writeln!(
                buf,
                "{{\"time\":\"{stamp}.{millis:03}Z\",\"request_id\":\"{}\",\"client\":\"{}\",\"method\":\"{}\",\"host\":\"{}\",\"path\":\"{}\",\"proto\":\"{}\",\"status\":{},\"bytes\":{},\"duration_ms\":{}.{:03},\"upstream\":{}}}",
                json_str(e.id),
                e.peer.ip(),
                json_str(e.method),
                json_str(host),
                json_str(e.path),
                e.proto,
                e.status,
                e.bytes.map_or("null".to_string(), |b| b.to_string()),
                micros / 1000,
                micros % 1000,
                e.upstream
                    .map_or("null".to_string(), |u| format!("\"{}\"", json_str(u))),
            ),
            _ => writeln!(
                buf,
                "{stamp}.{millis:03}Z {} {host} {} {} {} {} {}.{:03}ms {} {}",
                e.peer.ip(),
                e.method,
                e.path,
                e.status,
                OrDash(e.bytes),
                micros / 1000,
                micros % 1000,
                e.upstream.unwrap_or("-"),
                e.id
            ),
        };
        if buf.len() >= ACCESS_BUFFER {
            self.full.notify_one();
        }
    }

    /// Writes out what is waiting; `spare` (empty) takes its place. The file rotates first
    /// when it would grow past its size.
    pub(crate) fn flush(&self, spare: &mut Vec<u8>) {
        std::mem::swap(&mut self.lock().bytes, spare);
        if spare.is_empty() {
            return;
        }
        let mut file = match self.file.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if self.rotation.max_size > 0 && len + spare.len() as u64 > self.rotation.max_size {
            if let Some(f) = self.rotate() {
                *file = f;
            }
        }
        if let Err(e) = file.write_all(spare) {
            tracing::warn!("cannot write the access log: {e}");
        }
        spare.clear();
    }

    /// `NAME` becomes `NAME.1` (and so on, the oldest past `keep` dropped); a new `NAME`.
    fn rotate(&self) -> Option<std::fs::File> {
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let keep = self.rotation.keep.max(1);
        let _ = std::fs::remove_file(name(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        let _ = std::fs::rename(&self.path, name(1));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush(&mut Vec::new());
    }
}

/// Writes the log out every [`ACCESS_FLUSH`], or when it fills; ends with the log.
pub(crate) async fn writer(log: std::sync::Weak<AccessLog>, full: Arc<tokio::sync::Notify>) {
    let mut spare = Vec::with_capacity(ACCESS_BUFFER);
    loop {
        tokio::select! {
            _ = full.notified() => {}
            _ = tokio::time::sleep(ACCESS_FLUSH) => {}
        }
        match log.upgrade() {
            Some(log) => log.flush(&mut spare),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>() -> Entry<'a> {
        Entry {
            peer: "10.0.0.7:5555".parse().unwrap(),
            host: "app.example.org",
            method: "GET",
            path: "/a \"b\"?q=1",
            proto: "HTTP/1.1",
            status: 200,
            bytes: Some(512),
            took: Duration::from_micros(1_250),
            upstream: Some("web#1"),
            id: "abc123",
            referer: "",
            agent: "curl/7.88",
        }
    }

    fn line(format: Option<AccessFormat>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&path, format, LogRotation::default()).unwrap();
        log.write(&entry());
        log.flush(&mut Vec::new());
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn each_format_writes_its_line() {
        let combined = line(Some(AccessFormat::Combined));
        assert!(combined.starts_with("10.0.0.7 - - ["), "{combined}");
        assert!(
            combined.ends_with("] \"GET /a \\\"b\\\"?q=1 HTTP/1.1\" 200 512 \"-\" \"curl/7.88\"\n"),
            "{combined}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&line(Some(AccessFormat::Json))).unwrap();
        assert_eq!(json["path"], "/a \"b\"?q=1");
        assert_eq!(json["status"], 200);
        assert_eq!(json["duration_ms"], 1.25);
        assert_eq!(json["upstream"], "web#1");
        assert_eq!(json["request_id"], "abc123");
        let grove = line(Some(AccessFormat::Grove));
        assert!(grove.contains(" 10.0.0.7 app.example.org GET "), "{grove}");
        assert_eq!(line(None), "");
    }

    #[test]
    fn the_common_log_time_reads_like_nginx() {
        assert_eq!(
            clf_time("2026-11-23T10:00:07"),
            "23/Nov/2026:10:00:07 +0000"
        );
    }

    #[test]
    fn the_file_rotates_past_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotation = LogRotation {
            max_size: 300,
            keep: 2,
        };
        let log = AccessLog::open(&path, Some(AccessFormat::Grove), rotation).unwrap();
        for _ in 0..6 {
            log.write(&entry());
            log.write(&entry());
            log.flush(&mut Vec::new());
        }
        assert!(dir.path().join("access.log.1").exists());
        assert!(dir.path().join("access.log.2").exists());
        assert!(!dir.path().join("access.log.3").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 300);
    }
}
