//! `grove logs` and `grove events`: what the stack printed and what happened to it, read from
//! `.grove/logs/` and the state store directly, so both work while grove is not running.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use crate::runtime::{known_secrets, unknown_target, Ctx};
use grove_daemon::read_store;

fn log_files(logs: &Path, units: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut all: Vec<String> = match std::fs::read_dir(logs) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let unit = name.strip_suffix(".log")?;
                (unit != "grove").then(|| unit.to_string())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    all.sort();
    if units.is_empty() {
        return Ok(all
            .into_iter()
            .map(|u| (u.clone(), logs.join(format!("{u}.log"))))
            .collect());
    }
    let mut out = Vec::new();
    for want in units {
        let matched: Vec<&String> = all
            .iter()
            .filter(|u| {
                *u == want
                    || u.strip_prefix(want.as_str())
                        .is_some_and(|rest| rest.starts_with('@') || rest.starts_with('#'))
            })
            .collect();
        if matched.is_empty() {
            anyhow::bail!(
                "no log for `{want}` in {} (units with logs: {})",
                logs.display(),
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            );
        }
        for u in matched {
            if !out.iter().any(|(n, _)| n == u) {
                out.push((u.clone(), logs.join(format!("{u}.log"))));
            }
        }
    }
    Ok(out)
}

fn print_log_line(unit: &str, width: usize, line: &str, color: bool, prefix: bool) {
    let mut out = std::io::stdout().lock();
    let _ = if !prefix {
        writeln!(out, "{line}")
    } else if color {
        writeln!(out, "\x1b[36m{unit:<width$} |\x1b[0m {line}")
    } else {
        writeln!(out, "{unit:<width$} | {line}")
    };
}

/// `grove logs`.
/// What `grove logs --since/--until/--grep` keeps: lines by their time stamp (RFC 3339 in
/// UTC, which sorts as text) and their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// The first stamp kept.
    pub since: Option<String>,
    /// The first stamp no longer kept.
    pub until: Option<String>,
    /// Text a kept line contains.
    pub grep: Option<String>,
}

impl LogFilter {
    /// From the command line's values; `Err` says which one is not a time.
    pub fn new(
        since: &Option<String>,
        until: &Option<String>,
        grep: &Option<String>,
        now: std::time::SystemTime,
    ) -> Result<LogFilter, String> {
        let stamp = |flag: &str, v: &Option<String>| -> Result<Option<String>, String> {
            let Some(v) = v else { return Ok(None) };
            let at = match humantime::parse_duration(v.trim()) {
                Ok(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH),
                // `2026-12-01 09:00` as much as `2026-12-01T09:00:00Z`.
                Err(_) => humantime::parse_rfc3339_weak(v.trim())
                    .or_else(|_| humantime::parse_rfc3339_weak(&format!("{}:00", v.trim())))
                    .map_err(|_| {
                        format!(
                            "{flag} `{v}` is neither a time ago (10m, 2h) nor a time \
                         (2026-12-01T09:00:00Z, UTC)"
                        )
                    })?,
            };
            Ok(Some(humantime::format_rfc3339_millis(at).to_string()))
        };
        Ok(LogFilter {
            since: stamp("--since", since)?,
            until: stamp("--until", until)?,
            grep: grep.clone().filter(|g| !g.is_empty()),
        })
    }

    /// Whether a filter is set (then every matching line is shown, rotated files included).
    pub fn is_set(&self) -> bool {
        *self != LogFilter::default()
    }

    /// Whether `line` (`STAMP STREAM TEXT`) is kept.
    pub fn keeps(&self, line: &str) -> bool {
        let stamp = line.split(' ').next().unwrap_or("");
        self.since.as_deref().is_none_or(|s| stamp >= s)
            && self.until.as_deref().is_none_or(|u| stamp < u)
            && self.grep.as_deref().is_none_or(|g| line.contains(g))
    }
}

/// Every line of a unit's log and its rotated files (`NAME.log.3` ... `NAME.log`), oldest first.
fn all_lines(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let name = name.to_string_lossy();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let n = file
                .strip_prefix(&format!("{name}."))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(n) = n {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, p) in rotated
        .iter()
        .map(|(n, p)| (*n, p))
        .chain([(0, &path.to_path_buf())])
    {
        if let Ok(text) = std::fs::read_to_string(p) {
            out.extend(text.lines().map(str::to_string));
        }
    }
    out
}

pub async fn logs(
    ctx: &Ctx,
    follow: bool,
    lines: Option<usize>,
    filter: &LogFilter,
    units: Vec<String>,
) -> anyhow::Result<ExitCode> {
    // With a filter every matching line shows, unless -n says how many.
    let lines = lines.unwrap_or(if filter.is_set() { usize::MAX } else { 100 });
    let dir = ctx.state_dir().join("logs");
    let files = match log_files(&dir, &units) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("grove: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let prefix = files.len() > 1;
    let width = files
        .iter()
        .map(|(u, _)| u.chars().count())
        .max()
        .unwrap_or(0);
    // Last N lines of each, merged by time (the stamps sort as text).
    let mut merged: Vec<(String, String)> = Vec::new();
    for (unit, path) in &files {
        let all = if filter.is_set() {
            let kept: Vec<String> = all_lines(path)
                .into_iter()
                .filter(|l| filter.keeps(l))
                .collect();
            let from = kept.len().saturating_sub(lines);
            kept[from..].to_vec()
        } else {
            grove_supervisor::logs::tail(path, lines)?
        };
        for l in all {
            merged.push((unit.clone(), l));
        }
    }
    merged.sort_by(|a, b| {
        let ta = a.1.split(' ').next().unwrap_or("");
        let tb = b.1.split(' ').next().unwrap_or("");
        ta.cmp(tb)
    });
    let skip = if files.len() > 1 {
        merged.len().saturating_sub(lines)
    } else {
        0
    };
    // What a unit printed may carry a secret (a URL with its password, say): masked as the
    // admin stream masks it.
    let secrets = known_secrets(ctx);
    for (unit, l) in &merged[skip..] {
        print_log_line(
            unit,
            width,
            &grove_plan::scrub(l, &secrets),
            ctx.color,
            prefix,
        );
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut offsets: HashMap<PathBuf, u64> = files
        .iter()
        .map(|(_, p)| {
            (
                p.clone(),
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    let mut partial: HashMap<PathBuf, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (unit, path) in &files {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let off = offsets.entry(path.clone()).or_insert(0);
            if len < *off {
                *off = 0; // rotated
            }
            if len == *off {
                continue;
            }
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let start = usize::try_from(*off).unwrap_or(0).min(bytes.len());
            let chunk = String::from_utf8_lossy(&bytes[start..]).to_string();
            *off = bytes.len() as u64;
            let buf = partial.entry(path.clone()).or_default();
            buf.push_str(&chunk);
            while let Some(i) = buf.find('\n') {
                let line: String = buf.drain(..=i).collect();
                let line = line.trim_end_matches('\n');
                if !filter.keeps(line) {
                    continue;
                }
                let line = grove_plan::scrub(line, &secrets);
                print_log_line(unit, width, &line, ctx.color, prefix);
            }
        }
    }
}

pub(crate) fn format_ts(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn print_event(e: &grove_state::EventRecord, json: bool, color: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    } else {
        let unit = e.unit.as_deref().unwrap_or("grove");
        let kind = if color {
            let c = match e.kind.as_str() {
                "unhealthy" | "gave-up" | "blocked" | "spawn-failed" | "killed" => "31",
                "healthy" | "completed" | "started" => "32",
                "exited" | "restarting" | "healed" | "reaped" => "33",
                _ => "2",
            };
            format!("\x1b[{c}m{:<12}\x1b[0m", e.kind)
        } else {
            format!("{:<12}", e.kind)
        };
        writeln!(
            out,
            "{}  {unit:<16} {kind} {}",
            format_ts(e.ts_ms),
            e.message
        )?;
    }
    Ok(())
}

/// `grove events`.
pub async fn events(
    ctx: &Ctx,
    follow: bool,
    json: bool,
    n: usize,
    units: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let state = ctx.state_dir();
    let Some(store) = read_store(&state)? else {
        eprintln!(
            "grove: no events yet (no store at {})",
            state.join("state.db").display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let first = store.last_events(n, &units)?;
    if first.is_empty() {
        if let Some(unknown) = unknown_target(ctx, &units) {
            eprintln!("grove: {unknown}");
            return Ok(ExitCode::from(1));
        }
    }
    let mut last = first.last().map(|e| e.id).unwrap_or(0);
    for e in &first {
        print_event(e, json, ctx.color)?;
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    if first.is_empty() {
        last = store.last_events(1, &[])?.last().map(|e| e.id).unwrap_or(0);
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for e in store.events_after(last, 1000, &units)? {
            last = last.max(e.id);
            print_event(&e, json, ctx.color)?;
        }
        // Events of other units still advance the cursor.
        if let Some(e) = store.events_after(last, 1000, &[])?.last() {
            last = e.id;
        }
    }
}

// ----- exec ----------------------------------------------------------------------------------

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn a_filter_keeps_lines_by_stamp_and_text() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_644_400); // 2025-12-02T03:00:00Z
        let f = LogFilter::new(
            &Some("1h".into()),
            &Some("2025-12-02T02:59:00Z".into()),
            &Some("GET".into()),
            now,
        )
        .unwrap();
        assert_eq!(f.since.as_deref(), Some("2025-12-02T02:00:00.000Z"));
        assert!(f.keeps("2025-12-02T02:30:00.123Z out GET /a"));
        assert!(!f.keeps("2025-12-02T02:30:00.123Z out POST /a"), "no GET");
        assert!(
            !f.keeps("2025-12-02T01:59:59.999Z out GET /a"),
            "before --since"
        );
        assert!(
            !f.keeps("2025-12-02T02:59:00.000Z out GET /a"),
            "at --until"
        );
        let err = LogFilter::new(&Some("yesterday".into()), &None, &None, now).unwrap_err();
        assert!(err.contains("--since `yesterday`"), "{err}");
        assert!(!LogFilter::new(&None, &None, &None, now).unwrap().is_set());
    }
}
