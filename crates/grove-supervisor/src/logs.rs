//! Log files: one per unit, each line stamped, rotated by size.
//!
//! A line looks like `2026-11-23T10:11:12.345Z out hello`: an RFC 3339 UTC time with
//! milliseconds, the stream (`out`, `err`, or `grove` for what grove itself says about the
//! unit), one space, the text. Every line is written with one `write` call and no user-space
//! buffer, so whatever a unit wrote before it crashed is already in the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A log file with size-based rotation: `NAME.log` -> `NAME.log.1` -> ... -> `NAME.log.KEEP`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    keep: u32,
    /// Bytes of output that could not be written (a full disk) since the last line that was.
    lost: u64,
}

impl LogFile {
    /// Opens `path` for appending (creating it and its folder).
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1024),
            keep: keep.max(1),
            lost: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one stamped line (a trailing newline in `text` is dropped; invalid UTF-8 is
    /// replaced). Lines stay whole: a line that does not fit (a full disk) is taken back out
    /// and counted as lost, and the first line written after such a loss is preceded by one
    /// marker line, `[grove: N bytes of output lost: no space left on device]`; then the
    /// answer is `Some(N)`.
    pub fn line(&mut self, stream: &str, text: &[u8]) -> io::Result<Option<u64>> {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let stamp = humantime::format_rfc3339_millis(SystemTime::now());
        let mut buf = Vec::with_capacity(text.len() + 100);
        let lost = self.lost;
        if lost > 0 {
            let _ = writeln!(
                buf,
                "{stamp} grove [grove: {lost} bytes of output lost: no space left on device]"
            );
        }
        let line_start = buf.len();
        let _ = write!(buf, "{stamp} {stream} ");
        buf.extend_from_slice(String::from_utf8_lossy(text).as_bytes());
        buf.push(b'\n');
        if self.size > 0 && self.size + buf.len() as u64 > self.max_size {
            self.rotate()?;
        }
        match self.file.write_all(&buf) {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.lost = 0;
                Ok((lost > 0).then_some(lost))
            }
            Err(e) => {
                // What part of it was written goes again, so no line is ever torn.
                let _ = self.file.set_len(self.size);
                self.lost += (buf.len() - line_start) as u64;
                Err(e)
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(name(self.keep));
        for n in (1..self.keep).rev() {
            let from = name(n);
            if from.exists() {
                std::fs::rename(&from, name(n + 1))?;
            }
        }
        std::fs::rename(&self.path, name(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Splits a stored line into (time, stream, text).
pub fn split_line(line: &str) -> Option<(&str, &str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((time, stream, text))
}

/// The last `n` lines of the file at `path` (and its rotated predecessors when it has fewer).
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut files = vec![path.to_path_buf()];
    for i in 1..=100u32 {
        let mut p = path.to_path_buf().into_os_string();
        p.push(format!(".{i}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    for f in files {
        if out.len() >= n {
            break;
        }
        let text = match std::fs::read(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        let want = n - out.len();
        let start = lines.len().saturating_sub(want);
        let mut chunk: Vec<String> = lines[start..].iter().map(|s| s.to_string()).collect();
        chunk.append(&mut out);
        out = chunk;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/web.log");
        let mut log = LogFile::open(&path, 1024, 2).unwrap();
        for i in 0..100 {
            log.line("out", format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(path.exists());
        assert!(dir.path().join("logs/web.log.1").exists());
        assert!(dir.path().join("logs/web.log.2").exists());
        assert!(!dir.path().join("logs/web.log.3").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
        let last = tail(&path, 3).unwrap();
        assert_eq!(last.len(), 3);
        let (time, stream, text) = split_line(&last[2]).unwrap();
        assert!(time.ends_with('Z'), "{time}");
        assert_eq!(stream, "out");
        assert_eq!(text, "line 99");
        // A tail longer than the current file reaches into the rotated one, in order.
        let many = tail(&path, 60).unwrap();
        assert_eq!(many.len(), 60);
        assert!(many[59].ends_with("line 99"));
        assert!(many[0].ends_with("line 40"));
    }

    #[test]
    fn invalid_utf8_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut log = LogFile::open(&path, 1 << 20, 3).unwrap();
        log.line("err", b"bad \xff byte\r\n").unwrap();
        let t = tail(&path, 1).unwrap();
        assert!(t[0].ends_with("err bad \u{fffd} byte"), "{}", t[0]);
    }
}
