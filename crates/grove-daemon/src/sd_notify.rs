//! systemd's notification protocol (`sd_notify(3)`), spoken when `NOTIFY_SOCKET` is set (a
//! `Type=notify` service): `READY=1` once every unit has settled, `RELOADING=1` and `READY=1`
//! around a SIGHUP reload, `STOPPING=1` before the units stop, `STATUS=` lines saying what
//! grove is doing, and `WATCHDOG=1` at half of `WATCHDOG_USEC` while the daemon's runtime
//! answers. Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! What to send is decided by pure functions ([`ready_status`], [`watchdog_period`]); the
//! datagram socket is the only effect. The variables are not passed on to units (see
//! `grove_supervisor::process::spawn`), so a unit can never speak for grove.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use grove_engine::Status;

/// Where notifications go.
#[derive(Debug, Clone)]
enum Address {
    Path(PathBuf),
    /// A Linux abstract socket (`@name` in `NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

/// The service manager's notification socket, when there is one.
#[derive(Debug, Clone)]
pub struct Notifier {
    to: Option<Address>,
    watchdog: Option<Duration>,
    /// The variables as they came, for a successor (a handover).
    vars: Vec<(String, String)>,
}

impl Notifier {
    /// From this process's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let get = |k: &str| std::env::var(k).ok();
        Notifier::from_vars(
            get("NOTIFY_SOCKET").as_deref(),
            get("WATCHDOG_USEC").as_deref(),
            get("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    fn from_vars(
        socket: Option<&str>,
        usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let to = match socket {
            Some(s) if s.starts_with('@') => Some(Address::Abstract(s.as_bytes()[1..].to_vec())),
            Some(s) if s.starts_with('/') => Some(Address::Path(PathBuf::from(s))),
            _ => None,
        };
        let watchdog = match to {
            Some(_) => watchdog_period(usec, watchdog_pid, pid),
            None => None,
        };
        let mut vars = Vec::new();
        if let (Some(s), Some(_)) = (socket, &to) {
            vars.push(("NOTIFY_SOCKET".to_string(), s.to_string()));
            if let Some(u) = usec.filter(|_| watchdog.is_some()) {
                vars.push(("WATCHDOG_USEC".to_string(), u.to_string()));
            }
        }
        Notifier { to, watchdog, vars }
    }

    /// No service manager.
    pub fn off() -> Notifier {
        Notifier::from_vars(None, None, None, 0)
    }

    /// The variables a successor needs to speak to the same service manager (it becomes the
    /// main process once told, with `MAINPID=`).
    pub fn successor_env(&self) -> Vec<(String, String)> {
        self.vars.clone()
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.to.is_some()
    }

    /// Sends one notification (newline-separated `KEY=value` lines); a failure is logged and
    /// otherwise ignored, as `sd_notify` does.
    pub fn send(&self, message: &str) {
        let Some(to) = &self.to else { return };
        let sent = UnixDatagram::unbound().and_then(|s| match to {
            Address::Path(p) => s.send_to(message.as_bytes(), p),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(message.as_bytes(), &addr)
            }
        });
        if let Err(e) = sent {
            tracing::debug!("sd_notify: {e}");
        }
    }

    /// Sends `WATCHDOG=1` at half the watchdog interval for as long as the runtime runs (a
    /// wedged runtime stops it, and the service manager restarts grove).
    pub fn start_watchdog(&self) {
        let Some(every) = self.watchdog else { return };
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.send("WATCHDOG=1");
            }
        });
    }
}

static TAKEN: OnceLock<Notifier> = OnceLock::new();

/// Reads the notification variables and removes them from this process's environment, so no
/// process grove starts (a unit, a probe, a build step) inherits them. Call it first thing in
/// `main`, before any thread starts.
pub fn take_from_env() {
    let n = Notifier::from_env();
    for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(k);
    }
    let _ = TAKEN.set(n);
}

/// The notifier [`take_from_env`] made (or one read from the environment now).
pub fn notifier() -> Notifier {
    TAKEN.get().cloned().unwrap_or_else(Notifier::from_env)
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is meant for
/// this process (`WATCHDOG_PID` unset or ours).
pub(crate) fn watchdog_period(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = watchdog_pid {
        if p.trim().parse::<u32>().ok()? != pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// The `STATUS=` once every unit has settled, or `None` while some are still starting:
/// `READY=1` waits for it.
pub(crate) fn ready_status(status: &Status) -> Option<String> {
    if status
        .units
        .iter()
        .any(|u| !(u.is_settled_ok() || u.is_failed()))
    {
        return None;
    }
    let failed: Vec<&str> = status
        .units
        .iter()
        .filter(|u| u.is_failed())
        .map(|u| u.name.as_str())
        .collect();
    let up = status.units.len() - failed.len();
    let units = if up == 1 { "unit" } else { "units" };
    Some(if failed.is_empty() {
        format!("{up} {units} up")
    } else {
        format!("{up} {units} up; failed: {}", failed.join(", "))
    })
}

/// Waits until every unit of `engine` has settled, then says `READY=1`.
pub(crate) async fn announce_ready(notifier: Notifier, engine: grove_engine::EngineHandle) {
    if !notifier.enabled() {
        return;
    }
    notifier.send("STATUS=starting the units");
    loop {
        if let Ok(status) = engine.status().await {
            if let Some(text) = ready_status(&status) {
                notifier.send(&format!("READY=1\nSTATUS={text}"));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_runs_at_half_its_interval_and_only_for_us() {
        assert_eq!(
            watchdog_period(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_period(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(watchdog_period(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
    }

    #[test]
    fn addresses_and_no_socket() {
        let n = Notifier::from_vars(Some("/run/x.sock"), Some("1000000"), None, 1);
        assert!(n.enabled());
        assert_eq!(n.watchdog, Some(Duration::from_millis(500)));
        assert!(matches!(
            Notifier::from_vars(Some("@sd"), None, None, 1).to,
            Some(Address::Abstract(ref a)) if a == b"sd"
        ));
        let off = Notifier::from_vars(None, Some("1000000"), None, 1);
        assert!(!off.enabled());
        assert_eq!(off.watchdog, None, "no watchdog without a socket");
        assert!(!Notifier::from_vars(Some("relative"), None, None, 1).enabled());
    }

    #[test]
    fn notifications_arrive_as_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(path.to_str(), None, None, 1);
        n.send("READY=1\nSTATUS=2 units up");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=2 units up");
    }
}
