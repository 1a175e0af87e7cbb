//! Starting a unit's process (under its shim), adopting one an earlier grove left running,
//! and letting go of them all at a handover.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use grove_state::ProcessRecord;
use grove_supervisor::cgroup;
use grove_supervisor::logs::LogFile;
use grove_supervisor::process::{self, Signal};
use grove_supervisor::shim::{self, ShimSpec};
use grove_supervisor::{ExitStatus, Input};

use super::io::{fingerprint, launch, open_cgroups, pump};
use super::{state_dir, Actor, Internal, Proc};

impl Actor {
    /// The socket-activated units' sockets (some kept by the last grove's holder).
    pub(crate) fn with_sockets(mut self, sockets: Arc<crate::sockets::UnitSockets>) -> Actor {
        self.listen.sockets = sockets;
        self
    }

    /// Units to adopt instead of starting (see [`shim::discover`]).
    pub(crate) fn adopting(mut self, found: Vec<shim::Attached>) -> Actor {
        self.adoptable = found
            .into_iter()
            .map(|a| (a.hello.unit.clone(), a))
            .collect();
        self
    }

    /// Ends a process an earlier grove left running that is not adopted, saying why.
    pub(super) fn retire(&mut self, name: &str, hello: &shim::Hello, why: &str) {
        let _ = process::signal_group(hello.pid, Signal::SIGKILL);
        if let Some(dir) = &hello.cgroup {
            cgroup::Group::at(dir).kill_and_remove();
        }
        let msg = format!(
            "stopped pid {} left running by an earlier grove: {why}",
            hello.pid
        );
        self.emit(Some(name), "reaped", &msg);
    }

    /// Lets go of every unit: probes stop, the processes' watchers will not touch them, and
    /// the actor ends (the next grove adopts them).
    pub(super) fn detach(&mut self) {
        self.detached
            .store(true, std::sync::atomic::Ordering::Release);
        self.listen.sockets.freeze();
        for rt in self.units.values_mut() {
            if let Some(p) = rt.probe.take() {
                p.abort();
            }
        }
        self.emit(None, "handover", "handing the units over to the next grove");
    }

    pub(super) fn spawn(&mut self, name: &str, now: Instant) {
        let Some(plan) = &self.plan else {
            return;
        };
        let root = plan.root.clone();
        let stack = plan.stack.clone();
        let logs_dir = state_dir(plan).join("logs");
        let run_dir = state_dir(plan).join("run");
        let rotation = plan.logs;
        // Both generations of a unit write the one log file of its name.
        let label = match self.units.get(name) {
            Some(rt) => rt.unit.name.clone(),
            None => return,
        };
        let shared_log = self
            .units
            .iter()
            .find(|(k, rt)| k.as_str() != name && rt.unit.name == label && rt.log.is_some())
            .and_then(|(_, rt)| rt.log.clone());
        self.last_gen += 1;
        let gen = self.last_gen;
        let Some(rt) = self.units.get_mut(name) else {
            return;
        };
        rt.gen = gen;
        if rt.log.is_none() {
            rt.log = shared_log;
        }
        if rt.log.is_none() {
            match LogFile::open(
                &logs_dir.join(format!("{label}.log")),
                rotation.max_size,
                rotation.keep,
            ) {
                Ok(f) => rt.log = Some(Arc::new(Mutex::new(f))),
                Err(e) => tracing::warn!("cannot open the log of {label}: {e}"),
            }
        }
        let cwd = root.join(&rt.unit.cwd);
        let print = fingerprint(&rt.unit);
        let run_as = rt.unit.run_as.clone();
        // A process an earlier grove left running is adopted when the stack file still says
        // the same; else it goes, and a new one starts.
        let adopted = match self.adoptable.remove(name) {
            Some(a) if a.hello.fingerprint == print => Some(a),
            Some(stale) => {
                self.retire(
                    name,
                    &stale.hello,
                    "its definition changed while grove was not running",
                );
                None
            }
            None => None,
        };
        // The stack's tree is opened even for an adopted unit (whose cgroup an earlier grove
        // made): `down` removes it once empty.
        let tree = self
            .cgroups
            .get_or_insert_with(|| open_cgroups(&stack, &self.store));
        let group = match (adopted.is_some(), tree) {
            (false, Some(tree)) => tree.group(name, gen).ok(),
            _ => None,
        };
        // Its limits: in its v2 group where the controllers are, else in v1 groups beside it.
        let limits = self
            .units
            .get(name)
            .map(|rt| rt.unit.limits)
            .unwrap_or_default();
        let limited = if adopted.is_none() && !limits.is_default() {
            cgroup::limit(&stack, name, gen, group.as_ref(), &limits)
        } else {
            cgroup::Limited::default()
        };
        if !limited.unenforced.is_empty() {
            self.emit(
                Some(name),
                "limits-unenforced",
                &format!(
                    "this machine gives grove no {} controller: that limit is not enforced",
                    limited.unenforced.join(", ")
                ),
            );
        }
        // A socket-activated unit's socket, opened before its first process.
        let socket = match &adopted {
            Some(_) => Ok(None),
            None => self.unit_socket(name),
        };
        let Some(rt) = self.units.get_mut(name) else {
            return;
        };
        let result = match adopted {
            Some(a) => Ok((a, None)),
            None => socket.and_then(|socket| {
                let (argv, env) = launch(&stack, &root, &rt.unit)?;
                let exe = process::own_binary()
                    .map_err(|e| format!("cannot find grove's own binary: {e}"))?;
                let spec = ShimSpec {
                    unit: name.to_string(),
                    fingerprint: print,
                    argv,
                    cwd: cwd.clone(),
                    env,
                    cgroup: group.as_ref().map(|g| g.dir().to_path_buf()),
                    run_as: run_as.clone(),
                    limit_groups: limited
                        .groups
                        .iter()
                        .map(|g| g.dir().to_path_buf())
                        .collect(),
                    nofile: limits.nofile,
                    run_dir: run_dir.clone(),
                    log: logs_dir.join(format!("{label}.log")),
                    log_max_size: rotation.max_size,
                    log_keep: rotation.keep,
                    stop_signal: Some(rt.unit.stop_signal.clone()),
                    stop_grace_ms: rt.unit.stop_grace_ms,
                    listen: socket.as_ref().map(|_| rt.unit.service.clone()),
                };
                let fd = socket.as_deref().map(std::os::fd::AsFd::as_fd);
                shim::spawn(&exe, &spec, fd)
                    .map(|(a, child)| (a, Some(child)))
                    .map_err(|e| e.to_string())
            }),
        };
        match result {
            Ok((attached, shim_child)) => {
                let memory = limits.memory;
                let cgroups = (group, limited, memory);
                self.supervise(name, gen, &label, attached, shim_child, cgroups, now);
            }
            Err(msg) => {
                self.emit(Some(name), "spawn-failed", &msg);
                self.feed(name, Input::SpawnFailed, now);
            }
        }
    }

    /// Takes over a unit's process from its shim (just started, or adopted): its output to
    /// the log and the line channel, its exit to the actor, its pid to the store and the
    /// probe loop; then tells the machine.
    #[allow(clippy::too_many_arguments)]
    fn supervise(
        &mut self,
        name: &str,
        gen: u64,
        label: &str,
        attached: shim::Attached,
        shim_child: Option<tokio::process::Child>,
        cgroups: (Option<cgroup::Group>, cgroup::Limited, Option<u64>),
        now: Instant,
    ) {
        let (group, limited, memory_limit) = cgroups;
        let Some(rt) = self.units.get_mut(name) else {
            return;
        };
        let was_adopted = shim_child.is_none();
        let shim::Attached {
            hello,
            stdout,
            stderr,
            exit,
            control,
        } = attached;
        let pid = hello.pid;
        let start_ticks = hello.start_ticks;
        let (started, group) = if was_adopted {
            let age = process::age(start_ticks).unwrap_or_default();
            (
                now.checked_sub(age).unwrap_or(now),
                hello.cgroup.clone().map(cgroup::Group::at),
            )
        } else {
            (now, group)
        };
        rt.proc = Some(Proc {
            pid,
            started,
            start_ticks,
            group: group.clone(),
            control: Some(control),
            kill_at: None,
            provisioning: false,
        });
        let unit: Arc<str> = Arc::from(label);
        let pumps = vec![
            tokio::spawn(pump(
                stdout,
                "out",
                unit.clone(),
                rt.log.clone(),
                self.lines.clone(),
                self.internal.clone(),
            )),
            tokio::spawn(pump(
                stderr,
                "err",
                unit.clone(),
                rt.log.clone(),
                self.lines.clone(),
                self.internal.clone(),
            )),
        ];
        if let Some(mut shim) = shim_child {
            tokio::spawn(async move {
                let _ = shim.wait().await;
            });
        }
        let tx = self.internal.clone();
        let unit_name = name.to_string();
        let detached = self.detached.clone();
        tokio::spawn(async move {
            // The shim says how the unit ended; a shim gone without a word took its
            // unit with it (the unit's parent-death signal).
            let status = exit.await.unwrap_or(ExitStatus {
                code: None,
                signal: None,
            });
            // Handed over: the shim now talks to the next grove; this one only lets go.
            if detached.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            // Whatever the main process left in its group, and in its cgroup (what left
            // the group: setsid, a double fork), goes with it.
            let _ = process::signal_group(pid, Signal::SIGKILL);
            if let Some(g) = &group {
                g.kill();
                for _ in 0..100 {
                    if g.remove() || !g.dir().exists() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            // The kernel's out-of-memory killer says so in the memory group's counters.
            let oom = memory_limit.filter(|_| limited.oom_killed());
            limited.remove();
            // Its last words reach the log before the line saying it exited.
            for p in pumps {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(500), p).await;
            }
            let _ = tx.send(Internal::Exited {
                unit: unit_name,
                gen,
                status,
                oom,
            });
        });
        if let Ok(store) = self.store.lock() {
            if let Err(e) = store.record_process(&ProcessRecord {
                unit: name.to_string(),
                pid,
                start_ticks,
            }) {
                tracing::warn!("cannot record pid {pid} of {name}: {e}");
            }
        }
        self.start_probe(name);
        let input = if was_adopted {
            Input::Adopted
        } else {
            Input::Spawned
        };
        self.feed(name, input, now);
    }
}
