//! # grove-metrics: what grove measures and how it is shown
//!
//! Owns host sampling from `/proc` and `statvfs` ([`HostSampler`]), the metric model of a
//! moment ([`Exposition`]: host, units, routes), its Prometheus text rendering
//! ([`Exposition::prometheus`], conventional names such as `grove_unit_restarts_total` and the
//! `grove_http_request_duration_seconds` histogram), and the named series the state store
//! keeps for charts ([`Exposition::series`]).
//!
//! It must not know the engine, the edge, HTTP or SQLite: the daemon fills an [`Exposition`]
//! from them and hands it here.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// The host at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSample {
    /// CPU busy since the previous sample, percent of all cores (0-100).
    pub cpu_percent: f64,
    /// Logical CPUs.
    pub cpus: u32,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Memory.
    pub mem_total_bytes: u64,
    /// Memory available for new work (MemAvailable).
    pub mem_available_bytes: u64,
    /// Size of the file system holding the state folder.
    pub disk_total_bytes: u64,
    /// Free space there (for unprivileged users).
    pub disk_free_bytes: u64,
    /// Bytes received on all interfaces but loopback, since boot.
    pub net_rx_bytes: u64,
    /// Bytes sent, likewise.
    pub net_tx_bytes: u64,
}

/// Samples the host; keeps the previous CPU counters to turn them into a percentage.
#[derive(Debug, Default)]
pub struct HostSampler {
    prev_cpu: Option<(u64, u64)>,
}

impl HostSampler {
    /// A sampler with no history (the first CPU figure covers the time since boot).
    pub fn new() -> HostSampler {
        HostSampler::default()
    }

    /// Reads the host now; `disk` is any path on the file system to measure.
    pub fn sample(&mut self, disk: &Path) -> HostSample {
        let mut h = HostSample::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            if let Some((total, idle)) = cpu_totals(&stat) {
                let (pt, pi) = self.prev_cpu.unwrap_or((0, 0));
                let dt = total.saturating_sub(pt);
                let di = idle.saturating_sub(pi);
                if dt > 0 {
                    h.cpu_percent = round1((dt - di.min(dt)) as f64 / dt as f64 * 100.0);
                }
                self.prev_cpu = Some((total, idle));
            }
            h.cpus = stat
                .lines()
                .filter(|l| {
                    l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                })
                .count() as u32;
        }
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            for (i, v) in load.split_whitespace().take(3).enumerate() {
                h.load[i] = v.parse().unwrap_or(0.0);
            }
        }
        if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
            h.mem_total_bytes = meminfo(&mem, "MemTotal:");
            h.mem_available_bytes = meminfo(&mem, "MemAvailable:");
        }
        if let Ok(v) = nix::sys::statvfs::statvfs(disk) {
            let frag = v.fragment_size();
            h.disk_total_bytes = v.blocks().saturating_mul(frag);
            h.disk_free_bytes = v.blocks_available().saturating_mul(frag);
        }
        if let Ok(dev) = std::fs::read_to_string("/proc/net/dev") {
            let (rx, tx) = net_totals(&dev);
            h.net_rx_bytes = rx;
            h.net_tx_bytes = tx;
        }
        h
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// (total, idle) jiffies from the first line of `/proc/stat`.
fn cpu_totals(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut it = line.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.take(8).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total, idle))
}

fn meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn net_totals(dev: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() >= 9 {
            rx = rx.saturating_add(v[0]);
            tx = tx.saturating_add(v[8]);
        }
    }
    (rx, tx)
}

/// One unit's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnitMetric {
    /// Unit name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its instance.
    pub instance: Option<String>,
    /// Its state (`healthy`, `running`, `failed`, ...).
    pub state: String,
    /// Whether its probe passes (`None`: no probe).
    pub healthy: Option<bool>,
    /// Restarts.
    pub restarts: u32,
    /// CPU, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u32,
    /// Seconds since its process started (0 when not running).
    pub uptime_seconds: f64,
}

/// One route's counters (cumulative since grove started).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteMetric {
    /// `host/prefix` or `:port`.
    pub route: String,
    /// Requests answered.
    pub requests: u64,
    /// Answers by status class, 1xx to 5xx.
    pub classes: [u64; 5],
    /// Response bytes.
    pub bytes_out: u64,
    /// Upper bounds of the latency buckets, seconds.
    pub bounds: Vec<f64>,
    /// Cumulative counts per bound, then +Inf.
    pub buckets: Vec<u64>,
    /// Sum of latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Requests its rate limit refused.
    #[serde(default)]
    pub rate_limited: u64,
}

/// Everything measured at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Exposition {
    /// The stack.
    pub stack: String,
    /// When, in milliseconds since the epoch.
    pub ts_ms: i64,
    /// The host.
    pub host: HostSample,
    /// The units.
    pub units: Vec<UnitMetric>,
    /// The routes.
    pub routes: Vec<RouteMetric>,
}

/// Escapes a label value for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", num(value));
    }
}

impl Exposition {
    /// The Prometheus text exposition (format 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut t = Text(String::with_capacity(4096));
        self.host_families(&mut t);
        self.unit_families(&mut t);
        self.route_families(&mut t);
        t.0
    }

    /// The `stack` label every sample carries.
    fn stack_label(&self) -> (&'static str, String) {
        ("stack", self.stack.clone())
    }

    /// The labels of one unit's samples: stack, unit, service, instance.
    fn unit_labels(&self, u: &UnitMetric) -> Vec<(&'static str, String)> {
        vec![
            self.stack_label(),
            ("unit", u.name.clone()),
            ("service", u.service.clone()),
            ("instance", u.instance.clone().unwrap_or_default()),
        ]
    }

    /// The host families: CPU, load, memory, disk and network, one sample each.
    fn host_families(&self, t: &mut Text) {
        let h = &self.host;
        let families: [(&str, &str, &str, f64); 11] = [
            (
                "grove_host_cpu_usage_ratio",
                "gauge",
                "Host CPU busy over the last sample, 0 to 1.",
                h.cpu_percent / 100.0,
            ),
            (
                "grove_host_cpus",
                "gauge",
                "Logical CPUs.",
                f64::from(h.cpus),
            ),
            (
                "grove_host_load1",
                "gauge",
                "Load average over 1 minute.",
                h.load[0],
            ),
            (
                "grove_host_load5",
                "gauge",
                "Load average over 5 minutes.",
                h.load[1],
            ),
            (
                "grove_host_load15",
                "gauge",
                "Load average over 15 minutes.",
                h.load[2],
            ),
            (
                "grove_host_memory_total_bytes",
                "gauge",
                "Host memory.",
                h.mem_total_bytes as f64,
            ),
            (
                "grove_host_memory_available_bytes",
                "gauge",
                "Host memory available.",
                h.mem_available_bytes as f64,
            ),
            (
                "grove_host_disk_total_bytes",
                "gauge",
                "Size of the file system of the state folder.",
                h.disk_total_bytes as f64,
            ),
            (
                "grove_host_disk_free_bytes",
                "gauge",
                "Free space on the file system of the state folder.",
                h.disk_free_bytes as f64,
            ),
            (
                "grove_host_network_receive_bytes_total",
                "counter",
                "Bytes received on non-loopback interfaces.",
                h.net_rx_bytes as f64,
            ),
            (
                "grove_host_network_transmit_bytes_total",
                "counter",
                "Bytes sent on non-loopback interfaces.",
                h.net_tx_bytes as f64,
            ),
        ];
        for (name, kind, help, value) in families {
            t.family(name, kind, help);
            t.sample(name, &[self.stack_label()], value);
        }
    }

    /// The unit families: up, healthy (probed units only), restarts, CPU, memory, open files
    /// and uptime, one sample per unit.
    fn unit_families(&self, t: &mut Text) {
        type Value = fn(&UnitMetric) -> Option<f64>;
        let families: [(&str, &str, &str, Value); 7] = [
            (
                "grove_unit_up",
                "gauge",
                "1 when the unit's process runs.",
                |u| {
                    let up = matches!(
                        u.state.as_str(),
                        "running" | "healthy" | "unhealthy" | "starting"
                    );
                    Some(if up { 1.0 } else { 0.0 })
                },
            ),
            (
                "grove_unit_healthy",
                "gauge",
                "1 when the unit's health probe passes (probed units only).",
                |u| u.healthy.map(|ok| if ok { 1.0 } else { 0.0 }),
            ),
            (
                "grove_unit_restarts_total",
                "counter",
                "Restarts of the unit.",
                |u| Some(f64::from(u.restarts)),
            ),
            (
                "grove_unit_cpu_usage_ratio",
                "gauge",
                "CPU of the unit's process group, in cores.",
                |u| Some(u.cpu_percent / 100.0),
            ),
            (
                "grove_unit_resident_memory_bytes",
                "gauge",
                "Resident memory of the unit's process group.",
                |u| Some(u.rss_bytes as f64),
            ),
            (
                "grove_unit_open_fds",
                "gauge",
                "Open file descriptors of the unit's process group.",
                |u| Some(f64::from(u.open_fds)),
            ),
            (
                "grove_unit_uptime_seconds",
                "gauge",
                "Seconds since the unit's process started.",
                |u| Some(u.uptime_seconds),
            ),
        ];
        for (name, kind, help, value) in families {
            t.family(name, kind, help);
            for u in &self.units {
                if let Some(v) = value(u) {
                    t.sample(name, &self.unit_labels(u), v);
                }
            }
        }
    }

    /// The edge's route families: requests by status class, response bytes, and the latency
    /// histogram.
    fn route_families(&self, t: &mut Text) {
        t.family(
            "grove_http_requests_total",
            "counter",
            "Requests answered by the edge, by route and status class.",
        );
        for r in &self.routes {
            for (i, n) in r.classes.iter().enumerate() {
                let code = format!("{}xx", i + 1);
                t.sample(
                    "grove_http_requests_total",
                    &[
                        self.stack_label(),
                        ("route", r.route.clone()),
                        ("code", code),
                    ],
                    *n as f64,
                );
            }
        }
        t.family(
            "grove_http_response_bytes_total",
            "counter",
            "Response body bytes sent by the edge, by route.",
        );
        for r in &self.routes {
            t.sample(
                "grove_http_response_bytes_total",
                &[self.stack_label(), ("route", r.route.clone())],
                r.bytes_out as f64,
            );
        }
        t.family(
            "grove_http_rate_limited_total",
            "counter",
            "Requests the edge answered 429 because of a route's rate limit, by route.",
        );
        for r in &self.routes {
            t.sample(
                "grove_http_rate_limited_total",
                &[self.stack_label(), ("route", r.route.clone())],
                r.rate_limited as f64,
            );
        }
        t.family(
            "grove_http_request_duration_seconds",
            "histogram",
            "Time from a request to its response head, by route.",
        );
        for r in &self.routes {
            self.latency_histogram(t, r);
        }
    }

    /// One route's latency histogram samples: its buckets (then `+Inf`), sum and count.
    fn latency_histogram(&self, t: &mut Text, r: &RouteMetric) {
        for (i, c) in r.buckets.iter().enumerate() {
            let le = r
                .bounds
                .get(i)
                .map(|b| num(*b))
                .unwrap_or_else(|| "+Inf".into());
            t.sample(
                "grove_http_request_duration_seconds_bucket",
                &[self.stack_label(), ("route", r.route.clone()), ("le", le)],
                *c as f64,
            );
        }
        t.sample(
            "grove_http_request_duration_seconds_sum",
            &[self.stack_label(), ("route", r.route.clone())],
            r.latency_sum_seconds,
        );
        t.sample(
            "grove_http_request_duration_seconds_count",
            &[self.stack_label(), ("route", r.route.clone())],
            r.requests as f64,
        );
    }

    /// The series stored for charts: gauges as they are, counters as rates per second over
    /// the time since `prev`.
    pub fn series(&self, prev: Option<&Exposition>) -> Vec<(String, f64)> {
        let h = &self.host;
        let mut out = vec![
            ("host.cpu".to_string(), h.cpu_percent),
            ("host.load1".into(), h.load[0]),
            (
                "host.mem_used".into(),
                h.mem_total_bytes.saturating_sub(h.mem_available_bytes) as f64,
            ),
            (
                "host.disk_used".into(),
                h.disk_total_bytes.saturating_sub(h.disk_free_bytes) as f64,
            ),
        ];
        let dt = prev
            .map(|p| (self.ts_ms - p.ts_ms) as f64 / 1000.0)
            .filter(|d| *d > 0.0);
        if let (Some(p), Some(dt)) = (prev, dt) {
            out.push((
                "host.net_rx".into(),
                self.host.net_rx_bytes.saturating_sub(p.host.net_rx_bytes) as f64 / dt,
            ));
            out.push((
                "host.net_tx".into(),
                self.host.net_tx_bytes.saturating_sub(p.host.net_tx_bytes) as f64 / dt,
            ));
        }
        for u in &self.units {
            out.push((format!("unit.{}.cpu", u.name), u.cpu_percent));
            out.push((format!("unit.{}.rss", u.name), u.rss_bytes as f64));
            out.push((format!("unit.{}.fds", u.name), f64::from(u.open_fds)));
            out.push((format!("unit.{}.restarts", u.name), f64::from(u.restarts)));
        }
        if let (Some(p), Some(dt)) = (prev, dt) {
            for r in &self.routes {
                let before = p.routes.iter().find(|x| x.route == r.route);
                let (req0, err0, sum0) = before
                    .map(|b| (b.requests, b.classes[4], b.latency_sum_seconds))
                    .unwrap_or((0, 0, 0.0));
                let dreq = r.requests.saturating_sub(req0);
                out.push((format!("route.{}.rps", r.route), dreq as f64 / dt));
                out.push((
                    format!("route.{}.errors", r.route),
                    r.classes[4].saturating_sub(err0) as f64 / dt,
                ));
                if dreq > 0 {
                    out.push((
                        format!("route.{}.latency_ms", r.route),
                        (r.latency_sum_seconds - sum0).max(0.0) / dreq as f64 * 1000.0,
                    ));
                }
            }
        }
        out
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsers() {
        assert_eq!(
            cpu_totals("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3 4 5\n"),
            Some((100, 80))
        );
        assert_eq!(
            meminfo(
                "MemTotal:  2048 kB\nMemAvailable: 1024 kB\n",
                "MemAvailable:"
            ),
            1024 * 1024
        );
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 500 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n  eth0: 100 1 0 0 0 0 0 0 200 1 0 0 0 0 0 0\n";
        assert_eq!(net_totals(dev), (100, 200));
        let mut s = HostSampler::new();
        let h = s.sample(Path::new("/"));
        assert!(h.cpus >= 1 && h.mem_total_bytes > 0 && h.disk_total_bytes > 0);
    }

    #[test]
    fn prometheus_text_has_histograms_and_escapes_labels() {
        let e = Exposition {
            stack: "s".into(),
            ts_ms: 1000,
            units: vec![UnitMetric {
                name: "web@a\"b".into(),
                service: "web".into(),
                state: "healthy".into(),
                healthy: Some(true),
                restarts: 2,
                ..Default::default()
            }],
            routes: vec![RouteMetric {
                route: "*/".into(),
                requests: 3,
                classes: [0, 3, 0, 0, 0],
                bounds: vec![0.1, 1.0],
                buckets: vec![1, 3, 3],
                latency_sum_seconds: 0.5,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = e.prometheus();
        assert!(text.contains("grove_unit_restarts_total{stack=\"s\",unit=\"web@a\\\"b\",service=\"web\",instance=\"\"} 2\n"), "{text}");
        assert!(text.contains(
            "grove_http_request_duration_seconds_bucket{stack=\"s\",route=\"*/\",le=\"+Inf\"} 3\n"
        ));
        assert!(text
            .contains("grove_http_request_duration_seconds_count{stack=\"s\",route=\"*/\"} 3\n"));
        assert!(text.contains("# TYPE grove_http_request_duration_seconds histogram\n"));
        let later = Exposition {
            ts_ms: 3000,
            routes: vec![RouteMetric {
                requests: 7,
                ..e.routes[0].clone()
            }],
            ..e.clone()
        };
        let series = later.series(Some(&e));
        assert!(
            series.contains(&("route.*/.rps".to_string(), 2.0)),
            "{series:?}"
        );
    }
}
