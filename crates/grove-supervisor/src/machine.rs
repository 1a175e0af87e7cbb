//! The per-unit state machine with injected time.

use std::time::{Duration, Instant};

use grove_plan::{RestartPolicy, ServiceKind, Unit};
use serde::Serialize;

/// A run that lasted at least this long resets the crash streak: its crash restarts at once.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

/// What the machine needs from a unit's Plan entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Service or task.
    pub kind: ServiceKind,
    /// When to restart.
    pub policy: RestartPolicy,
    /// First backoff delay.
    pub backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
    /// Quick restarts in a row before giving up (0 = never give up).
    pub max_restarts: u32,
    /// Whether a probe runs (otherwise the unit is `Running` once started).
    pub probed: bool,
    /// Consecutive probe failures that make the unit unhealthy.
    pub retries: u32,
    /// Probe failures in this time after a start do not count.
    pub start_period: Duration,
    /// An exit with this code is a setup problem that a restart cannot fix (a recipe's 78,
    /// EX_CONFIG): the unit fails at once instead of backing off.
    pub permanent_exit: Option<i32>,
}

impl Settings {
    /// The settings of a Plan unit.
    pub fn from_unit(u: &Unit) -> Self {
        Settings {
            kind: u.kind,
            policy: u.restart.policy,
            backoff: Duration::from_millis(u.restart.backoff_ms),
            max_backoff: Duration::from_millis(u.restart.max_backoff_ms),
            max_restarts: u.restart.max_restarts,
            probed: u.health.is_some(),
            retries: u.health.as_ref().map(|h| h.retries).unwrap_or(3).max(1),
            start_period: Duration::from_millis(
                u.health.as_ref().map(|h| h.start_period_ms).unwrap_or(0),
            ),
            permanent_exit: matches!(u.run, grove_plan::Run::Recipe { .. }).then_some(EX_CONFIG),
        }
    }
}

/// sysexits' EX_CONFIG: what a recipe's launcher exits with when its setup cannot work (a
/// folder its user cannot enter, say); the message is in the unit's log.
pub const EX_CONFIG: i32 = 78;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExitStatus {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The unit's state, as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum State {
    /// Not running, not wanted.
    Stopped,
    /// Spawned; waiting for its first good probe.
    Starting,
    /// Running with no probe.
    Running,
    /// Its probe passes.
    Healthy,
    /// Its probe failed `retries` times in a row; a heal (restart) is under way.
    Unhealthy,
    /// Waiting before the next start.
    Backoff {
        /// The delay chosen.
        delay_ms: u64,
    },
    /// A task that exited 0.
    Completed,
    /// Gave up, or a task that failed with no restart left.
    Failed {
        /// Why.
        reason: String,
    },
    /// The stop signal was sent; waiting for the exit.
    Stopping,
}

/// What happened to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Start the unit (up, start, restart).
    Start,
    /// The process layer spawned it.
    Spawned,
    /// The process layer found it already running, started by an earlier grove (it outlived
    /// that grove): supervised from now on as if just spawned, but not a restart.
    Adopted,
    /// The process layer could not spawn it.
    SpawnFailed,
    /// The process exited.
    Exited(ExitStatus),
    /// A probe finished.
    Probe(bool),
    /// Time passed (the deadline from [`UnitMachine::deadline`] may be due).
    Tick,
    /// Stop the unit (down, stop).
    Stop,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the process now.
    Spawn,
    /// Send the stop signal to the process group (SIGKILL after the grace period).
    Kill,
    /// Record this event.
    Event(Event),
}

/// Events for the durable log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Event {
    /// The process started.
    Started,
    /// A running process of an earlier grove is supervised again.
    Adopted,
    /// The process exited.
    Exited {
        /// Its status.
        status: ExitStatus,
    },
    /// The probe passed (first time, or again after failing).
    Healthy,
    /// The probe failed `failures` times in a row.
    Unhealthy {
        /// Consecutive failures.
        failures: u32,
    },
    /// A heal restart was started for an unhealthy unit.
    Healed,
    /// A restart is scheduled.
    Restarting {
        /// After this delay.
        delay_ms: u64,
        /// Quick restarts so far in this streak.
        attempt: u32,
    },
    /// Too many quick restarts: left stopped.
    GaveUp {
        /// How many.
        restarts: u32,
    },
    /// A task exited 0.
    Completed,
    /// Stopped on request.
    Stopped,
}

/// One unit's supervision state.
#[derive(Debug, Clone)]
pub struct UnitMachine {
    settings: Settings,
    state: State,
    started_at: Option<Instant>,
    restart_at: Option<Instant>,
    /// Quick restarts in a row.
    streak: u32,
    /// Restarts since `Start`, for `ps`.
    restarts: u32,
    failures: u32,
    healing: bool,
    rng: u64,
}

impl UnitMachine {
    /// A stopped unit; `seed` makes the jitter reproducible.
    pub fn new(settings: Settings, seed: u64) -> Self {
        UnitMachine {
            settings,
            state: State::Stopped,
            started_at: None,
            restart_at: None,
            streak: 0,
            restarts: 0,
            failures: 0,
            healing: false,
            rng: seed | 1,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Restarts since the unit was last started on request.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// When the caller must feed [`Input::Tick`] next (a due restart).
    pub fn deadline(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Replaces the settings (a reload that changed only supervision settings).
    pub fn update(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if matches!(
                    self.state,
                    State::Stopped
                        | State::Failed { .. }
                        | State::Completed
                        | State::Backoff { .. }
                ) {
                    self.streak = 0;
                    self.restarts = 0;
                    self.restart_at = None;
                    self.state = State::Starting;
                    out.push(Action::Spawn);
                }
            }
            Input::Spawned | Input::Adopted => {
                self.started_at = Some(now);
                self.failures = 0;
                self.healing = false;
                self.state = if self.settings.probed {
                    State::Starting
                } else {
                    State::Running
                };
                out.push(Action::Event(if input == Input::Adopted {
                    Event::Adopted
                } else {
                    Event::Started
                }));
            }
            Input::SpawnFailed => self.after_exit(None, now, &mut out),
            Input::Exited(status) => {
                out.push(Action::Event(Event::Exited { status }));
                if self.state == State::Stopping {
                    self.state = State::Stopped;
                    self.started_at = None;
                    out.push(Action::Event(Event::Stopped));
                } else {
                    self.after_exit(Some(status), now, &mut out);
                }
            }
            Input::Probe(ok) => self.probe(ok, now, &mut out),
            Input::Tick => {
                if let Some(at) = self.restart_at {
                    if now >= at {
                        self.restart_at = None;
                        self.state = State::Starting;
                        out.push(Action::Spawn);
                    }
                }
            }
            Input::Stop => match self.state {
                State::Starting | State::Running | State::Healthy | State::Unhealthy => {
                    self.state = State::Stopping;
                    self.restart_at = None;
                    out.push(Action::Kill);
                }
                State::Backoff { .. } => {
                    self.state = State::Stopped;
                    self.restart_at = None;
                    out.push(Action::Event(Event::Stopped));
                }
                _ => {}
            },
        }
        out
    }

    fn probe(&mut self, ok: bool, now: Instant, out: &mut Vec<Action>) {
        if !matches!(
            self.state,
            State::Starting | State::Healthy | State::Unhealthy | State::Running
        ) || self.healing
        {
            return;
        }
        if ok {
            self.failures = 0;
            if self.state != State::Healthy {
                self.state = State::Healthy;
                out.push(Action::Event(Event::Healthy));
            }
            return;
        }
        let in_grace = self
            .started_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.settings.start_period);
        if in_grace {
            return;
        }
        self.failures += 1;
        if self.failures >= self.settings.retries && self.state != State::Unhealthy {
            self.state = State::Unhealthy;
            out.push(Action::Event(Event::Unhealthy {
                failures: self.failures,
            }));
            if self.settings.kind == ServiceKind::Service
                && self.settings.policy != RestartPolicy::Never
            {
                self.healing = true;
                out.push(Action::Kill);
                out.push(Action::Event(Event::Healed));
            }
        }
    }

    fn after_exit(&mut self, status: Option<ExitStatus>, now: Instant, out: &mut Vec<Action>) {
        let ran = self
            .started_at
            .take()
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        let healed = std::mem::take(&mut self.healing);
        let success = status.is_some_and(|s| s.success());
        if self.settings.kind == ServiceKind::Task && success {
            self.state = State::Completed;
            out.push(Action::Event(Event::Completed));
            return;
        }
        if let (Some(code), Some(s)) = (self.settings.permanent_exit, status) {
            if s.code == Some(code) {
                self.state = State::Failed {
                    reason: format!(
                        "{} (a setup problem a restart cannot fix; its log says why)",
                        describe(status)
                    ),
                };
                return;
            }
        }
        let wanted = healed
            || match self.settings.policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !success,
                RestartPolicy::Never => false,
            };
        if !wanted {
            self.state = if success {
                State::Stopped
            } else {
                State::Failed {
                    reason: describe(status),
                }
            };
            return;
        }
        if ran >= STABLE_RUN {
            self.streak = 0;
        }
        if self.settings.max_restarts > 0 && self.streak >= self.settings.max_restarts {
            self.state = State::Failed {
                reason: format!(
                    "gave up after {} quick restarts ({})",
                    self.streak,
                    describe(status)
                ),
            };
            out.push(Action::Event(Event::GaveUp {
                restarts: self.streak,
            }));
            return;
        }
        let delay = if healed || self.streak == 0 {
            Duration::ZERO
        } else {
            self.backoff(self.streak)
        };
        self.streak += 1;
        self.restarts += 1;
        out.push(Action::Event(Event::Restarting {
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            attempt: self.streak,
        }));
        if delay.is_zero() {
            self.state = State::Starting;
            out.push(Action::Spawn);
        } else {
            self.state = State::Backoff {
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            };
            self.restart_at = Some(now + delay);
        }
    }

    /// `backoff * 2^(n-1)`, capped, with +-10% jitter (xorshift, seeded).
    fn backoff(&mut self, n: u32) -> Duration {
        let base = self
            .settings
            .backoff
            .saturating_mul(
                1u32.checked_shl(n.saturating_sub(1).min(20))
                    .unwrap_or(u32::MAX),
            )
            .min(self.settings.max_backoff);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter_permille = (self.rng % 201) as i64 - 100; // -100..=100 -> +-10%
        let ms = base.as_millis() as i64;
        let jittered = ms + ms * jitter_permille / 1000;
        Duration::from_millis(jittered.max(1) as u64).min(self.settings.max_backoff)
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        None => "could not be started".to_string(),
        Some(ExitStatus { code: Some(c), .. }) => format!("exited with code {c}"),
        Some(ExitStatus {
            signal: Some(s), ..
        }) => format!("killed by signal {s}"),
        Some(_) => "exited".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kind: ServiceKind, policy: RestartPolicy, probed: bool) -> Settings {
        Settings {
            kind,
            policy,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_restarts: 3,
            probed,
            retries: 3,
            start_period: Duration::from_secs(1),
            permanent_exit: None,
        }
    }

    #[test]
    fn an_adopted_process_is_supervised_without_counting_a_restart() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, true),
            1,
        );
        m.handle(Input::Start, t0);
        let out = m.handle(Input::Adopted, t0);
        assert_eq!(out, vec![Action::Event(Event::Adopted)]);
        assert_eq!(
            m.state(),
            &State::Starting,
            "probed: healthy once its probe passes"
        );
        assert_eq!(m.restarts(), 0);
        m.handle(Input::Probe(true), t0);
        assert_eq!(m.state(), &State::Healthy);
        // Its exit later is handled like any other.
        let out = m.handle(
            Input::Exited(ExitStatus {
                code: Some(1),
                signal: None,
            }),
            t0 + Duration::from_secs(30),
        );
        assert!(out.contains(&Action::Event(Event::Exited {
            status: ExitStatus {
                code: Some(1),
                signal: None
            }
        })));
    }

    #[test]
    fn a_permanent_exit_fails_at_once() {
        let t0 = Instant::now();
        let mut s = settings(ServiceKind::Service, RestartPolicy::Always, false);
        s.permanent_exit = Some(EX_CONFIG);
        let mut m = UnitMachine::new(s, 1);
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        let config = ExitStatus {
            code: Some(EX_CONFIG),
            signal: None,
        };
        let a = m.handle(Input::Exited(config), t0 + Duration::from_millis(5));
        assert!(!a.contains(&Action::Spawn), "{a:?}");
        assert!(matches!(m.state(), State::Failed { reason } if reason.contains("78")));
    }

    const CRASH: ExitStatus = ExitStatus {
        code: Some(1),
        signal: None,
    };
    const OK: ExitStatus = ExitStatus {
        code: Some(0),
        signal: None,
    };

    fn events(actions: &[Action]) -> Vec<Event> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_crash_restarts_at_once_then_backs_off_exponentially() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, false),
            7,
        );
        assert_eq!(m.handle(Input::Start, t0), vec![Action::Spawn]);
        m.handle(Input::Spawned, t0);
        assert_eq!(m.state(), &State::Running);
        let a = m.handle(Input::Exited(CRASH), t0 + Duration::from_millis(5));
        assert!(a.contains(&Action::Spawn), "no backoff is due: {a:?}");
        m.handle(Input::Spawned, t0 + Duration::from_millis(6));
        let mut delays = Vec::new();
        let mut now = t0 + Duration::from_millis(10);
        for _ in 0..2 {
            let a = m.handle(Input::Exited(CRASH), now);
            assert!(!a.contains(&Action::Spawn));
            let State::Backoff { delay_ms } = m.state().clone() else {
                panic!("{:?}", m.state())
            };
            delays.push(delay_ms);
            let due = m.deadline().unwrap();
            assert!(m
                .handle(Input::Tick, due - Duration::from_millis(1))
                .is_empty());
            assert_eq!(m.handle(Input::Tick, due), vec![Action::Spawn]);
            now = due;
            m.handle(Input::Spawned, now);
            now += Duration::from_millis(5);
        }
        assert!((90..=110).contains(&delays[0]), "{delays:?}");
        assert!((180..=220).contains(&delays[1]), "{delays:?}");
        // The fourth quick crash in a row exceeds max_restarts = 3.
        let a = m.handle(Input::Exited(CRASH), now);
        assert_eq!(events(&a).last(), Some(&Event::GaveUp { restarts: 3 }));
        assert!(matches!(m.state(), State::Failed { .. }));
        assert_eq!(m.restarts(), 3);
    }

    #[test]
    fn a_stable_run_resets_the_streak() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, false),
            1,
        );
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        m.handle(Input::Exited(CRASH), t0);
        m.handle(Input::Spawned, t0);
        let a = m.handle(Input::Exited(CRASH), t0 + STABLE_RUN);
        assert!(a.contains(&Action::Spawn), "{a:?}");
    }

    #[test]
    fn backoff_is_capped() {
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, false),
            3,
        );
        for n in 1..40 {
            assert!(m.backoff(n) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn policies() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::OnFailure, false),
            1,
        );
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        assert!(!m.handle(Input::Exited(OK), t0).contains(&Action::Spawn));
        assert_eq!(m.state(), &State::Stopped);

        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Never, false),
            1,
        );
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        m.handle(Input::Exited(CRASH), t0);
        assert_eq!(
            m.state(),
            &State::Failed {
                reason: "exited with code 1".into()
            }
        );
    }

    #[test]
    fn tasks_complete_or_fail() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(settings(ServiceKind::Task, RestartPolicy::Never, false), 1);
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        let a = m.handle(Input::Exited(OK), t0);
        assert_eq!(
            events(&a),
            vec![Event::Exited { status: OK }, Event::Completed]
        );
        assert_eq!(m.state(), &State::Completed);

        let mut m = UnitMachine::new(settings(ServiceKind::Task, RestartPolicy::Never, false), 1);
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        m.handle(
            Input::Exited(ExitStatus {
                code: None,
                signal: Some(9),
            }),
            t0,
        );
        assert_eq!(
            m.state(),
            &State::Failed {
                reason: "killed by signal 9".into()
            }
        );
    }

    #[test]
    fn probes_make_healthy_and_autoheal_after_retries() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, true),
            1,
        );
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        assert_eq!(m.state(), &State::Starting);
        // Failures inside start_period do not count.
        for _ in 0..5 {
            assert!(m
                .handle(Input::Probe(false), t0 + Duration::from_millis(500))
                .is_empty());
        }
        let a = m.handle(Input::Probe(true), t0 + Duration::from_secs(1));
        assert_eq!(events(&a), vec![Event::Healthy]);
        let later = t0 + Duration::from_secs(30);
        assert!(m.handle(Input::Probe(false), later).is_empty());
        assert!(m.handle(Input::Probe(false), later).is_empty());
        let a = m.handle(Input::Probe(false), later);
        assert_eq!(
            a,
            vec![
                Action::Event(Event::Unhealthy { failures: 3 }),
                Action::Kill,
                Action::Event(Event::Healed)
            ]
        );
        assert_eq!(m.state(), &State::Unhealthy);
        // Probes while the heal is under way are ignored; the exit restarts at once.
        assert!(m.handle(Input::Probe(false), later).is_empty());
        let a = m.handle(
            Input::Exited(ExitStatus {
                code: None,
                signal: Some(15),
            }),
            later,
        );
        assert!(a.contains(&Action::Spawn), "{a:?}");
        m.handle(Input::Spawned, later);
        assert_eq!(m.state(), &State::Starting);
    }

    #[test]
    fn stop_kills_and_never_restarts() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, false),
            1,
        );
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        assert_eq!(m.handle(Input::Stop, t0), vec![Action::Kill]);
        let a = m.handle(
            Input::Exited(ExitStatus {
                code: None,
                signal: Some(15),
            }),
            t0,
        );
        assert!(!a.contains(&Action::Spawn));
        assert_eq!(events(&a).last(), Some(&Event::Stopped));
        assert_eq!(m.state(), &State::Stopped);
        // A stop during backoff cancels the pending restart.
        m.handle(Input::Start, t0);
        m.handle(Input::Spawned, t0);
        m.handle(Input::Exited(CRASH), t0);
        m.handle(Input::Spawned, t0);
        m.handle(Input::Exited(CRASH), t0);
        assert!(matches!(m.state(), State::Backoff { .. }));
        m.handle(Input::Stop, t0);
        assert_eq!(m.deadline(), None);
        assert!(m
            .handle(Input::Tick, t0 + Duration::from_secs(60))
            .is_empty());
    }

    #[test]
    fn spawn_failure_counts_as_a_crash() {
        let t0 = Instant::now();
        let mut m = UnitMachine::new(
            settings(ServiceKind::Service, RestartPolicy::Always, false),
            1,
        );
        m.handle(Input::Start, t0);
        let a = m.handle(Input::SpawnFailed, t0);
        assert!(a.contains(&Action::Spawn));
        let a = m.handle(Input::SpawnFailed, t0);
        assert!(!a.contains(&Action::Spawn));
        assert!(matches!(m.state(), State::Backoff { .. }));
    }
}
