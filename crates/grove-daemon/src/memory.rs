//! Memory the edge freed goes back to the system: when the open client connections fall well
//! below their recent peak (a burst closed), the allocator is asked to return its free pages
//! ([`grove_supervisor::process::release_free_memory`]), so grove's resident size follows
//! its load instead of staying at its highest.

use std::time::Duration;

/// How often the connection count is looked at.
const EVERY: Duration = Duration::from_secs(2);
/// How many connections must have closed since the peak to be worth a trim.
const FALL: usize = 256;

/// Whether a fall from `peak` to `now` open connections is worth returning memory for.
pub(crate) fn worth_trimming(peak: usize, now: usize) -> bool {
    peak.saturating_sub(now) >= FALL || (now == 0 && peak >= FALL / 4)
}

/// Watches `edge`'s connections until the daemon ends.
pub(crate) async fn run(edge: grove_edge::Edge) {
    let mut peak = 0;
    // A connection's memory is freed a moment after it stops counting as open: trim once
    // more at the next look after a fall.
    let mut again = false;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let now = edge.open_connections();
        peak = peak.max(now);
        let fell = worth_trimming(peak, now);
        if fell || again {
            tokio::task::spawn_blocking(grove_supervisor::process::release_free_memory);
            peak = now;
        }
        again = fell;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_fall_is_trimmed_for() {
        assert!(!worth_trimming(0, 0));
        assert!(
            !worth_trimming(10, 0),
            "a handful of connections is not worth it"
        );
        assert!(worth_trimming(64, 0));
        assert!(!worth_trimming(2000, 1900));
        assert!(worth_trimming(2000, 1700));
        assert!(!worth_trimming(100, 200), "a rise is not a fall");
    }
}
