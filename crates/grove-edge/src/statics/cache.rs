//! The static files' open-file cache (nginx's `open_file_cache`, with the bytes of small
//! files): per mount and URL path, the resolved file (checked to be inside the mount, again
//! every [`RESOLVE_FOR`]), its validators and headers' values, and, for files up to
//! [`SMALL`], its bytes. Every request still `stat`s the file (as nginx does without the
//! cache), so a changed, replaced or removed file is never served stale: a different size,
//! modification time or inode makes a new entry. Bounded in entries and bytes.
//!
//! The `stat` and the read of a small file are plain system calls on the connection's task,
//! as nginx makes them: a page-cached file costs microseconds, where a trip to tokio's
//! blocking pool costs more than the read.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

/// Files up to this size are kept in memory whole.
pub const SMALL: u64 = 64 * 1024;
/// How long a resolved path is trusted before it is resolved (and checked) again: a symlink
/// changed under the mount is followed within this time.
pub const RESOLVE_FOR: Duration = Duration::from_secs(1);
/// The most entries kept.
const MAX_ENTRIES: usize = 4096;
/// The most file bytes kept.
const MAX_BYTES: usize = 32 << 20;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// One file, as served.
#[derive(Debug)]
pub struct File {
    /// Its resolved path, inside the mount.
    pub real: PathBuf,
    pub len: u64,
    pub modified: Option<SystemTime>,
    /// `"LEN-MTIME"`, strong.
    pub etag: String,
    pub content_type: String,
    /// Its bytes, when it is [`SMALL`].
    pub body: Option<Bytes>,
    stamp: Stamp,
    resolved_at: Instant,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<(PathBuf, String), Arc<File>>,
    bytes: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

/// The file `rest` (the URL path after the mount, still percent-encoded) names under `root`,
/// `None` when there is none (or it would leave the mount, or is not a regular file).
pub fn lookup(root: &Path, rest: &str) -> Option<Arc<File>> {
    let key = (root.to_path_buf(), rest.to_string());
    let cached = lock().entries.get(&key).cloned();
    // The same file as before (same inode, size and time: the one found inside the mount),
    // resolved lately: as it was. Anything else is resolved and checked again first, so a
    // file swapped for a symlink out of the mount is refused at once.
    if let Some(f) = cached
        .as_ref()
        .filter(|f| f.resolved_at.elapsed() < RESOLVE_FOR)
    {
        let same = std::fs::metadata(&f.real)
            .ok()
            .is_some_and(|m| m.is_file() && Stamp::of(&m) == f.stamp);
        if same {
            return Some(f.clone());
        }
    }
    let found = super::resolve(root, rest)
        .and_then(|real| Some((std::fs::metadata(&real).ok()?, real)))
        .filter(|(meta, _)| meta.is_file());
    let Some((meta, real)) = found else {
        lock().remove(&key);
        return None;
    };
    let stamp = Stamp::of(&meta);
    let now = Instant::now();
    let body = match cached.filter(|f| f.real == real && f.stamp == stamp) {
        // Unchanged: trusted for another while.
        Some(f) => f.body.clone(),
        None if stamp.len <= SMALL => {
            let bytes = std::fs::read(&real).ok()?;
            if bytes.len() as u64 != stamp.len {
                // Changed while it was read: serve what was read, keep nothing.
                return Some(Arc::new(file(real, &meta, stamp, now, Some(bytes.into()))));
            }
            Some(Bytes::from(bytes))
        }
        None => None,
    };
    let f = Arc::new(file(real, &meta, stamp, now, body));
    lock().insert(key, f.clone());
    Some(f)
}

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

fn file(
    real: PathBuf,
    meta: &std::fs::Metadata,
    stamp: Stamp,
    resolved_at: Instant,
    body: Option<Bytes>,
) -> File {
    let mime = mime_guess::from_path(&real).first_or_octet_stream();
    let content_type =
        if mime.type_() == "text" || mime.subtype() == "javascript" || mime.subtype() == "json" {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
    File {
        etag: super::etag(meta),
        modified: meta.modified().ok(),
        len: stamp.len,
        content_type,
        body,
        stamp,
        resolved_at,
        real,
    }
}

impl Cache {
    fn remove(&mut self, key: &(PathBuf, String)) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.body.as_ref().map_or(0, Bytes::len);
        }
    }

    /// Keeps `f`, making room first (entries go in the map's own order: bounded, not LRU).
    fn insert(&mut self, key: (PathBuf, String), f: Arc<File>) {
        self.remove(&key);
        let size = f.body.as_ref().map_or(0, Bytes::len);
        while !self.entries.is_empty()
            && (self.entries.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES)
        {
            let Some(k) = self.entries.keys().next().cloned() else {
                break;
            };
            self.remove(&k);
        }
        self.bytes += size;
        self.entries.insert(key, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_replaced_or_removed_file_is_never_served_stale() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(&root).unwrap();
        let path = root.join("a.txt");
        std::fs::write(&path, "one").unwrap();
        let first = lookup(&root, "/a.txt").unwrap();
        assert_eq!(first.body.as_deref(), Some(&b"one"[..]));
        // The same file again is the same entry.
        assert!(Arc::ptr_eq(&first, &lookup(&root, "/a.txt").unwrap()));
        // Rewritten in place (another length), then replaced by a rename (another inode).
        std::fs::write(&path, "three").unwrap();
        assert_eq!(
            lookup(&root, "/a.txt").unwrap().body.as_deref(),
            Some(&b"three"[..])
        );
        let tmp = root.join(".a.txt.new");
        std::fs::write(&tmp, "other").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(
            lookup(&root, "/a.txt").unwrap().body.as_deref(),
            Some(&b"other"[..])
        );
        std::fs::remove_file(&path).unwrap();
        assert!(lookup(&root, "/a.txt").is_none());
        // Large files are described, not kept.
        std::fs::write(root.join("big.bin"), vec![7u8; SMALL as usize + 1]).unwrap();
        let big = lookup(&root, "/big.bin").unwrap();
        assert!(big.body.is_none());
        assert_eq!(big.len, SMALL + 1);
        // What resolve refuses, the cache refuses, even for a path it knew a moment ago.
        assert!(lookup(&root, "/../public/big.bin").is_none());
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(root.join("swap"), "inside").unwrap();
        assert!(lookup(&root, "/swap").is_some());
        std::fs::remove_file(root.join("swap")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("swap")).unwrap();
        assert!(lookup(&root, "/swap").is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let mut c = Cache::default();
        let f = |n: usize| {
            Arc::new(File {
                real: PathBuf::from("/x"),
                len: n as u64,
                modified: None,
                etag: String::new(),
                content_type: String::new(),
                body: Some(Bytes::from(vec![0u8; n])),
                stamp: Stamp {
                    len: n as u64,
                    mtime: (0, 0),
                    ino: 0,
                    dev: 0,
                },
                resolved_at: Instant::now(),
            })
        };
        for i in 0..(MAX_ENTRIES + 10) {
            c.insert((PathBuf::from("/r"), i.to_string()), f(1));
        }
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert_eq!(c.bytes, MAX_ENTRIES);
        for i in 0..600 {
            c.insert((PathBuf::from("/big"), i.to_string()), f(64 * 1024));
        }
        assert!(c.bytes <= MAX_BYTES, "{}", c.bytes);
        let sum: usize = c
            .entries
            .values()
            .map(|e| e.body.as_ref().map_or(0, Bytes::len))
            .sum();
        assert_eq!(sum, c.bytes);
    }
}
