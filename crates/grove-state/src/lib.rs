//! # grove-state: the durable store
//!
//! Owns `.grove/state.db` (SQLite, WAL): the event log that `grove events` reads, the record of
//! every process grove started (so the next start can reap what a killed grove left behind),
//! and small key/value settings such as the running stack's environment and port assignment.
//! Beside the database, [`credentials`] keeps the passwords generated for recipes in
//! `.grove/secrets/`.
//! It also holds metric samples and, in [`releases`], the deployed releases.
//!
//! It must not know about processes, the Plan, HTTP or TOML: callers hand it plain records.
//! Several processes may open the same file (the daemon writes, the CLI reads).

#![forbid(unsafe_code)]

pub mod credentials;
mod releases;

pub use releases::Release;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite said no.
    #[error("state store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value did not decode.
    #[error("state store: bad stored value for {key}: {message}")]
    Decode {
        /// What was read.
        key: String,
        /// Why it failed.
        message: String,
    },
    /// SQLite's own check found the file damaged.
    #[error("{problems}")]
    Damaged {
        /// What the check said (its first three findings).
        problems: String,
    },
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Increasing id; `events --follow` resumes after the last one seen.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The unit it concerns, if any.
    pub unit: Option<String>,
    /// Short machine-readable kind: `started`, `exited`, `unhealthy`, `healed`, ...
    pub kind: String,
    /// One human sentence (never a secret).
    pub message: String,
}

/// A process grove started and has not yet seen exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The unit.
    pub unit: String,
    /// Its pid, which is also its process group id.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22), so a reused pid
    /// is never mistaken for it.
    pub start_ticks: u64,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    unit TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_unit ON events(unit, id);
CREATE TABLE IF NOT EXISTS processes(
    unit TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples(
    series TEXT NOT NULL,
    res INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    n INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY(series, res, ts_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_age ON samples(res, ts_ms);
";

/// Raw samples are kept this long (milliseconds): one day.
pub const RAW_KEPT_MS: i64 = 24 * 3600 * 1000;
/// One-minute averages are kept this long: 30 days.
pub const MINUTE_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;
/// At most this many series are stored per sample (the rest are dropped).
pub const MAX_SERIES: usize = 2000;

/// Events kept; older ones are pruned as new ones arrive.
pub const EVENTS_KEPT: i64 = 100_000;

impl StateError {
    /// Whether the file is damaged (not a database, or a corrupt page), as opposed to busy or
    /// unreadable.
    pub fn is_corrupt(&self) -> bool {
        match self {
            StateError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ),
            _ => false,
        }
    }
}

impl Store {
    /// Opens (creating when missing) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        let name = path.display().to_string();
        let wrap = |source| StateError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        // The store is small and written in short bursts: a 256 KiB page cache is plenty.
        conn.pragma_update(None, "cache_size", -256).map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        conn.execute_batch(releases::SCHEMA).map_err(wrap)?;
        Ok(Store { conn, path: name })
    }

    /// Opens an existing store for reading only: nothing is created, migrated or written, so
    /// `grove events`, `releases` and the other read-only commands work on a folder they may
    /// not write (a read-only mount, another user's stack). When SQLite cannot make the WAL's
    /// shared-memory file there, the file is read as immutable (nothing can be writing it).
    pub fn open_read_only(path: &Path) -> Result<Store, StateError> {
        use rusqlite::OpenFlags;
        let name = path.display().to_string();
        let wrap = |source| StateError::Sqlite {
            path: name.clone(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
        let readable = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(wrap);
        let conn = match readable {
            Ok(_) => conn,
            Err(StateError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            }) if e.code == rusqlite::ErrorCode::CannotOpen
                || e.code == rusqlite::ErrorCode::ReadOnly =>
            {
                drop(conn);
                let uri = format!("file:{}?immutable=1", uri_path(path));
                Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .map_err(wrap)?
            }
            Err(e) => return Err(e),
        };
        Ok(Store { conn, path: name })
    }

    /// SQLite's own check of the file (`PRAGMA quick_check`): `Err` says what is damaged.
    pub fn check(&self) -> Result<(), StateError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(|e| self.err(e))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .filter_map(Result::ok)
            .collect();
        let problems = match rows.as_slice() {
            [ok] if ok == "ok" => return Ok(()),
            [] => "the integrity check returned nothing".to_string(),
            problems => problems
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        };
        Err(StateError::Damaged { problems })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends an event stamped now; returns it with its id.
    pub fn append(
        &self,
        unit: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<EventRecord, StateError> {
        let ts_ms = now_ms();
        self.conn
            .execute(
                "INSERT INTO events(ts_ms, unit, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![ts_ms, unit, kind, message],
            )
            .map_err(|e| self.err(e))?;
        let id = self.conn.last_insert_rowid();
        if id % 1000 == 0 {
            self.conn
                .execute(
                    "DELETE FROM events WHERE id <= ?1",
                    params![id - EVENTS_KEPT],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(EventRecord {
            id,
            ts_ms,
            unit: unit.map(str::to_string),
            kind: kind.to_string(),
            message: message.to_string(),
        })
    }

    /// Events with id greater than `after`, oldest first, at most `limit`; only those of the
    /// given units when `units` is not empty.
    pub fn events_after(
        &self,
        after: i64,
        limit: usize,
        units: &[String],
    ) -> Result<Vec<EventRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, ts_ms, unit, kind, message FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], row_event)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let r = r.map_err(|e| self.err(e))?;
            if units.is_empty() || r.unit.as_ref().is_some_and(|u| units.contains(u)) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The last `n` events (of the given units when not empty), oldest first.
    pub fn last_events(&self, n: usize, units: &[String]) -> Result<Vec<EventRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, ts_ms, unit, kind, message FROM events ORDER BY id DESC")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], row_event).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let r = r.map_err(|e| self.err(e))?;
            if units.is_empty() || r.unit.as_ref().is_some_and(|u| units.contains(u)) {
                out.push(r);
                if out.len() >= n {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Records a started process (replacing the unit's previous record).
    pub fn record_process(&self, rec: &ProcessRecord) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO processes(unit, pid, start_ticks) VALUES (?1, ?2, ?3)",
                params![rec.unit, rec.pid, rec.start_ticks as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets the unit's process (it exited and its group was cleaned up).
    pub fn forget_process(&self, unit: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM processes WHERE unit = ?1", params![unit])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every recorded process.
    pub fn processes(&self) -> Result<Vec<ProcessRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT unit, pid, start_ticks FROM processes ORDER BY unit")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ProcessRecord {
                    unit: r.get(0)?,
                    pid: r.get(1)?,
                    start_ticks: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Sets a setting to a JSON value.
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let text = serde_json::to_string(value).map_err(|e| StateError::Decode {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                params![key, text],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Reads a setting; `None` when never set.
    pub fn get<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, StateError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        match text {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| StateError::Decode {
                    key: key.to_string(),
                    message: e.to_string(),
                }),
        }
    }
}

/// Metric samples: raw points (resolution 0) for a day, one-minute averages (resolution
/// 60 000) for 30 days, so the table stays bounded whatever the uptime.
impl Store {
    /// Records one sample of every series at `ts_ms`, folds it into the minute averages, and
    /// prunes what is past retention.
    pub fn record_samples(
        &mut self,
        ts_ms: i64,
        samples: &[(String, f64)],
    ) -> Result<(), StateError> {
        let tx = self.conn.transaction().map_err(|e| StateError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let minute = ts_ms - ts_ms.rem_euclid(60_000);
        {
            let mut raw = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO samples(series, res, ts_ms, value, n) VALUES (?1, 0, ?2, ?3, 1)",
                )
                .map_err(|e| StateError::Sqlite { path: self.path.clone(), source: e })?;
            let mut avg = tx
                .prepare_cached(
                    "INSERT INTO samples(series, res, ts_ms, value, n) VALUES (?1, 60000, ?2, ?3, 1)
                     ON CONFLICT(series, res, ts_ms) DO UPDATE
                     SET value = (value * n + excluded.value) / (n + 1), n = n + 1",
                )
                .map_err(|e| StateError::Sqlite { path: self.path.clone(), source: e })?;
            for (series, value) in samples.iter().take(MAX_SERIES) {
                if !value.is_finite() {
                    continue;
                }
                raw.execute(params![series, ts_ms, value])
                    .map_err(|e| StateError::Sqlite {
                        path: self.path.clone(),
                        source: e,
                    })?;
                avg.execute(params![series, minute, value])
                    .map_err(|e| StateError::Sqlite {
                        path: self.path.clone(),
                        source: e,
                    })?;
            }
            tx.execute(
                "DELETE FROM samples WHERE (res = 0 AND ts_ms < ?1) OR (res = 60000 AND ts_ms < ?2)",
                params![ts_ms - RAW_KEPT_MS, ts_ms - MINUTE_KEPT_MS],
            )
            .map_err(|e| StateError::Sqlite { path: self.path.clone(), source: e })?;
        }
        tx.commit().map_err(|e| StateError::Sqlite {
            path: self.path.clone(),
            source: e,
        })
    }

    /// The points of `series` in `[from_ms, to_ms]`: raw ones when the range starts within
    /// the raw retention, else minute averages.
    pub fn sample_range(
        &self,
        series: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StateError> {
        let res = if from_ms >= now_ms - RAW_KEPT_MS {
            0
        } else {
            60_000
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ts_ms, value FROM samples WHERE series = ?1 AND res = ?2 AND ts_ms BETWEEN ?3 AND ?4 ORDER BY ts_ms LIMIT 20000",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![series, res, from_ms, to_ms], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every series name with a recent raw point.
    pub fn series(&self) -> Result<Vec<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT series FROM samples WHERE res = 0 ORDER BY series")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: r.get(0)?,
        ts_ms: r.get(1)?,
        unit: r.get(2)?,
        kind: r.get(3)?,
        message: r.get(4)?,
    })
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `path` as a URI path: the characters a file name may hold that a URI may not, escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.display().to_string().bytes() {
        match b {
            b'%' | b'?' | b'#' | b' ' | 0x80.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_store_reads_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        assert!(
            Store::open_read_only(&path).is_err(),
            "a missing store is not made"
        );
        assert!(!path.exists());
        {
            let s = Store::open(&path).unwrap();
            s.append(Some("web"), "started", "pid 1").unwrap();
        }
        let r = Store::open_read_only(&path).unwrap();
        let events = r.last_events(10, &[]).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message, "pid 1");
        assert!(r.append(None, "x", "y").is_err(), "writes are refused");
    }

    #[test]
    fn uri_paths_escape_what_a_uri_may_not_hold() {
        assert_eq!(uri_path(Path::new("/a b/c?d#e%f")), "/a%20b/c%3Fd%23e%25f");
        assert_eq!(uri_path(Path::new("/é")), "/%C3%A9");
    }

    #[test]
    fn samples_are_averaged_per_minute_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("state.db")).unwrap();
        let t0 = 1_700_000_040_000; // a minute boundary
        for (i, v) in [1.0, 2.0, 3.0].iter().enumerate() {
            s.record_samples(t0 + i as i64 * 10_000, &[("host.cpu".into(), *v)])
                .unwrap();
        }
        let raw = s
            .sample_range("host.cpu", t0, t0 + 60_000, t0 + 60_000)
            .unwrap();
        assert_eq!(raw, vec![(t0, 1.0), (t0 + 10_000, 2.0), (t0 + 20_000, 3.0)]);
        let old = s
            .sample_range("host.cpu", t0 - RAW_KEPT_MS, t0 + 60_000, t0 + RAW_KEPT_MS)
            .unwrap();
        assert_eq!(old, vec![(t0, 2.0)]);
        assert_eq!(s.series().unwrap(), vec!["host.cpu".to_string()]);
        // A day later the raw points are gone, the minute average stays.
        s.record_samples(t0 + RAW_KEPT_MS + 30_000, &[("host.cpu".into(), 9.0)])
            .unwrap();
        let raw = s
            .sample_range("host.cpu", t0, t0 + 60_000, t0 + 60_000)
            .unwrap();
        assert!(raw.is_empty());
        let kept = s
            .sample_range("host.cpu", t0 - 1, t0 + 1, t0 + RAW_KEPT_MS * 2)
            .unwrap();
        assert_eq!(kept, vec![(t0, 2.0)]);
    }

    #[test]
    fn events_round_trip_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let a = s
            .append(Some("web"), "started", "started (pid 10)")
            .unwrap();
        s.append(Some("db"), "started", "started (pid 11)").unwrap();
        s.append(None, "reloaded", "reloaded: nothing changed")
            .unwrap();
        let all = s.events_after(0, 100, &[]).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], a);
        let web = s.events_after(0, 100, &["web".to_string()]).unwrap();
        assert_eq!(web.len(), 1);
        let after = s.events_after(a.id, 100, &[]).unwrap();
        assert_eq!(after.len(), 2);
        let last = s.last_events(2, &[]).unwrap();
        assert_eq!(last[0].unit.as_deref(), Some("db"));
        assert_eq!(last[1].kind, "reloaded");
        // A second connection (the CLI) sees the same log.
        let r = Store::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(r.events_after(0, 100, &[]).unwrap().len(), 3);
    }

    #[test]
    fn processes_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let rec = ProcessRecord {
            unit: "web".into(),
            pid: 42,
            start_ticks: 7,
        };
        s.record_process(&rec).unwrap();
        s.record_process(&ProcessRecord {
            pid: 43,
            ..rec.clone()
        })
        .unwrap();
        assert_eq!(s.processes().unwrap().len(), 1);
        assert_eq!(s.processes().unwrap()[0].pid, 43);
        s.forget_process("web").unwrap();
        assert!(s.processes().unwrap().is_empty());
        assert_eq!(s.get::<String>("environment").unwrap(), None);
        s.set("environment", &Some("staging")).unwrap();
        assert_eq!(
            s.get::<Option<String>>("environment").unwrap(),
            Some(Some("staging".to_string()))
        );
    }
}
