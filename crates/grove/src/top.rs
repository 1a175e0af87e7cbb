//! `grove top`: the running stack, refreshed: each unit's state, CPU, memory (against its
//! limit) and processes, and each route's requests, server errors and mean latency per
//! second, from the control socket's `/v1/status` and `/v1/now`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use grove_engine::Status;

use crate::render;
use crate::runtime::{not_running, Ctx};

/// A route's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    requests: u64,
    errors: u64,
    latency_sum: f64,
}

/// The routes' counters in an exposition (`/v1/now`).
fn counters(now: &serde_json::Value) -> HashMap<String, Counters> {
    let mut out = HashMap::new();
    for r in now["routes"].as_array().into_iter().flatten() {
        let Some(name) = r["route"].as_str() else {
            continue;
        };
        out.insert(
            name.to_string(),
            Counters {
                requests: r["requests"].as_u64().unwrap_or(0),
                errors: r["classes"][4].as_u64().unwrap_or(0),
                latency_sum: r["latency_sum_seconds"].as_f64().unwrap_or(0.0),
            },
        );
    }
    out
}

/// Each route's rates between two samples `secs` apart: (route, req/s, 5xx/s, mean ms).
fn rates(
    before: &HashMap<String, Counters>,
    after: &HashMap<String, Counters>,
    secs: f64,
) -> Vec<(String, f64, f64, Option<f64>)> {
    let mut out: Vec<(String, f64, f64, Option<f64>)> = after
        .iter()
        .map(|(name, a)| {
            let b = before.get(name).copied().unwrap_or(Counters {
                requests: a.requests,
                errors: a.errors,
                latency_sum: a.latency_sum,
            });
            let n = a.requests.saturating_sub(b.requests);
            let errors = a.errors.saturating_sub(b.errors);
            let mean = (n > 0).then(|| (a.latency_sum - b.latency_sum) * 1000.0 / n as f64);
            let per = |x: u64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
            (name.clone(), per(n), per(errors), mean)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One screen: the units, then the routes' rates.
fn screen(status: &Status, rates: &[(String, f64, f64, Option<f64>)], color: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} {}: grove pid {}, {} units\n\n",
        render::bold("stack", color),
        status.stack,
        status.pid,
        status.units.len()
    ));
    let dash = || "-".to_string();
    let mut rows = vec![["UNIT", "STATE", "CPU", "MEMORY", "PROCS", "RESTARTS"]
        .map(String::from)
        .to_vec()];
    for u in &status.units {
        let memory = match (u.rss_bytes, u.memory_limit) {
            (Some(r), Some(l)) => format!("{} / {}", render::bytes(r), grove_plan::size_text(l)),
            (r, _) => r.map(render::bytes).unwrap_or_else(dash),
        };
        rows.push(vec![
            u.name.clone(),
            u.state.to_string(),
            u.cpu_percent
                .map(|c| format!("{c:.1}%"))
                .unwrap_or_else(dash),
            memory,
            u.processes.to_string(),
            u.restarts.to_string(),
        ]);
    }
    out.push_str(&render::table(&rows));
    if !rates.is_empty() {
        let mut rows = vec![["ROUTE", "REQ/S", "5XX/S", "MEAN"]
            .map(String::from)
            .to_vec()];
        for (route, rps, eps, mean) in rates {
            rows.push(vec![
                route.clone(),
                format!("{rps:.1}"),
                format!("{eps:.1}"),
                mean.map(|m| format!("{m:.1} ms")).unwrap_or_else(dash),
            ]);
        }
        out.push('\n');
        out.push_str(&render::table(&rows));
    }
    out
}

/// `grove top [--once] [--interval 1s]`: refreshes every interval on a terminal until
/// Ctrl-C; once (two samples an interval apart) with `--once` or when not a terminal.
pub async fn top(ctx: &Ctx, once: bool, interval: Duration) -> anyhow::Result<ExitCode> {
    let client = ctx.client();
    let once = once || !std::io::stdout().is_terminal();
    let sample = || async {
        let now = client.get::<serde_json::Value>("/v1/now").await?;
        Ok::<_, grove_api::ClientError>((counters(&now), Instant::now()))
    };
    let (mut before, mut at) = match sample().await {
        Ok(s) => s,
        Err(e) => return Ok(not_running(&e)),
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(interval) => {}
        }
        let status = match client.get::<Status>("/v1/status").await {
            Ok(s) => s,
            Err(e) => return Ok(not_running(&e)),
        };
        let (after, now) = match sample().await {
            Ok(s) => s,
            Err(e) => return Ok(not_running(&e)),
        };
        let text = screen(
            &status,
            &rates(&before, &after, now.duration_since(at).as_secs_f64()),
            ctx.color,
        );
        let mut out = std::io::stdout().lock();
        if once {
            write!(out, "{text}")?;
            return Ok(ExitCode::SUCCESS);
        }
        // Home and clear, then the screen.
        write!(out, "\x1b[H\x1b[2J{text}")?;
        out.flush()?;
        (before, at) = (after, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_counters_difference_per_second() {
        let at = |r: u64, e: u64, l: f64| Counters {
            requests: r,
            errors: e,
            latency_sum: l,
        };
        let before: HashMap<String, Counters> = [("/".to_string(), at(100, 1, 2.0))].into();
        let after: HashMap<String, Counters> = [
            ("/".to_string(), at(300, 5, 4.0)),
            ("/api".to_string(), at(7, 0, 0.1)),
        ]
        .into();
        let r = rates(&before, &after, 2.0);
        assert_eq!(r[0].0, "/");
        assert_eq!((r[0].1, r[0].2), (100.0, 2.0));
        assert_eq!(r[0].3, Some(10.0));
        // A route first seen now counts from now on.
        assert_eq!((r[1].0.as_str(), r[1].1, r[1].3), ("/api", 0.0, None));
    }
}
