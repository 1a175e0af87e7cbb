//! Processes: spawn in a fresh process group with a parent-death signal, signal whole groups,
//! and read `/proc` for start times, group membership and resource use.
//!
//! Each unit's main process leads its own group (`pgid == pid`), so a stop or a kill reaches
//! every child it forked. The main process also gets `SIGKILL` when grove dies (even by
//! `kill -9`); its own children, if any survive that, are found by [`leftovers`] on the next
//! start through the recorded pid and start time.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;

pub use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// What to run.
#[derive(Debug, Clone)]
pub struct SpawnSpec<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// Variables set on top of grove's own environment.
    pub env: Vec<(&'a str, &'a str)>,
    /// Capture stdout and stderr (otherwise they go to /dev/null).
    pub capture: bool,
    /// The cgroup the process joins before it runs (it and everything it starts stay in it).
    pub cgroup: Option<&'a crate::cgroup::Group>,
    /// Who it runs as, when not grove's own user.
    pub account: Option<&'a Account>,
    /// Further cgroups it joins (the v1 hierarchies that enforce its limits).
    pub also: &'a [crate::cgroup::Group],
    /// Its open-files limit (soft and hard).
    pub nofile: Option<u64>,
}

/// A unit's user, group and mask, resolved on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// The user's name and home, when the user database knows the user.
    pub name: Option<String>,
    pub home: Option<std::path::PathBuf>,
    pub umask: Option<u32>,
}

impl Account {
    /// The account `run_as` names (`None` when it names none); `Err` says which user or
    /// group this machine does not have.
    pub fn of(run_as: &grove_plan::RunAs) -> io::Result<Option<Account>> {
        if run_as.is_default() {
            return Ok(None);
        }
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let user = match &run_as.user {
            None => me,
            Some(u) => {
                let found = match u.parse::<u32>() {
                    Ok(id) => nix::unistd::User::from_uid(id.into()).ok().flatten(),
                    Err(_) => nix::unistd::User::from_name(u).ok().flatten(),
                };
                if found.is_none() && u.parse::<u32>().is_err() {
                    return Err(io::Error::other(format!(
                        "there is no user `{u}` on this machine"
                    )));
                }
                found
            }
        };
        let uid = match (&run_as.user, &user) {
            (_, Some(u)) => u.uid.as_raw(),
            (Some(u), None) => u.parse().unwrap_or(0),
            (None, None) => nix::unistd::getuid().as_raw(),
        };
        let gid = match &run_as.group {
            Some(g) => match g.parse::<u32>() {
                Ok(id) => id,
                Err(_) => nix::unistd::Group::from_name(g)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw())
                    .ok_or_else(|| {
                        io::Error::other(format!("there is no group `{g}` on this machine"))
                    })?,
            },
            None => user
                .as_ref()
                .map(|u| u.gid.as_raw())
                .unwrap_or_else(|| nix::unistd::getgid().as_raw()),
        };
        Ok(Some(Account {
            uid,
            gid,
            name: user.as_ref().map(|u| u.name.clone()),
            home: user.map(|u| u.dir),
            umask: run_as.umask,
        }))
    }

    /// `HOME`, `USER` and `LOGNAME` of the account, as a login sets them.
    pub fn login_env(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(h) = &self.home {
            out.push(("HOME", h.display().to_string()));
        }
        if let Some(n) = &self.name {
            out.push(("USER", n.clone()));
            out.push(("LOGNAME", n.clone()));
        }
        out
    }
}

/// Spawns `spec` as the leader of a new process group, with stdin from /dev/null.
///
/// Must be called from a thread that lives as long as grove (a tokio worker, not a blocking
/// pool thread): Linux sends the parent-death signal when the *thread* that forked exits.
pub fn spawn(spec: &SpawnSpec<'_>) -> io::Result<Child> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false)
        // systemd's notification socket and watchdog are grove's, never a unit's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if spec.capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    // Opened here (close-on-exec), written by the child before it runs anything.
    let procs: Vec<std::fs::File> = spec
        .cgroup
        .into_iter()
        .chain(spec.also.iter())
        .filter_map(|g| match g.procs_file() {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!("cannot join a cgroup: {e}");
                None
            }
        })
        .collect();
    if let Some(a) = spec.account {
        // std drops the supplementary groups when it changes the user.
        if a.uid != nix::unistd::getuid().as_raw() {
            cmd.uid(a.uid);
        }
        if a.gid != nix::unistd::getgid().as_raw() {
            cmd.gid(a.gid);
        }
    }
    use std::os::fd::AsRawFd;
    die_with_parent(
        &mut cmd,
        procs.iter().map(|f| f.as_raw_fd()).collect(),
        spec.account.and_then(|a| a.umask),
        spec.nofile,
    );
    let child = cmd.spawn();
    drop(procs);
    child
}

#[allow(unsafe_code)]
fn die_with_parent(
    cmd: &mut Command,
    cgroup_procs: Vec<std::os::fd::RawFd>,
    umask: Option<u32>,
    nofile: Option<u64>,
) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only calls write(2),
    // prctl(2) and getppid(2), which are async-signal-safe, on a descriptor the parent keeps
    // open until the spawn returns, and builds errors from raw codes without allocating, as
    // required between fork and exec in a multi-threaded process.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &cgroup_procs {
                // "0" moves the writing process; a failure leaves it in grove's own cgroup,
                // tracked by its process group as before.
                let _ = nix::libc::write(*fd, b"0".as_ptr().cast(), 1);
            }
            if let Some(n) = nofile {
                let limit = nix::libc::rlimit {
                    rlim_cur: n as nix::libc::rlim_t,
                    rlim_max: n as nix::libc::rlim_t,
                };
                if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(mask) = umask {
                nix::libc::umask(mask as nix::libc::mode_t);
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            // grove died between fork and prctl: do not outlive it.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Gives the memory this process freed back to the system (glibc's `malloc_trim`): glibc keeps
/// freed memory in its per-thread arenas, so after a burst (thousands of client connections
/// that closed) the resident size would stay at its peak. A no-op elsewhere.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own state
    // (under its locks) and is safe to call from any thread at any time.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// The binary this process runs, for starting grove's own helpers (`__shim`, `__recipe`,
/// `__sockets`): `/proc/self/exe`, which names the running binary even after the file was
/// replaced on disk (an upgrade), where the path it was started from would name the new one,
/// or nothing while it is being replaced.
pub fn own_binary() -> io::Result<std::path::PathBuf> {
    let proc_exe = std::path::Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe()
}

/// How long ago a process that started at `start_ticks` (clock ticks after boot) started.
pub fn age(start_ticks: u64) -> Option<std::time::Duration> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)? as f64;
    let started = start_ticks as f64 / hz;
    Some(std::time::Duration::from_secs_f64(
        (uptime - started).max(0.0),
    ))
}

/// Parses a signal name (`SIGTERM`, `TERM`, `term`).
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

/// Sends `sig` to the process group `pgid`. A group that is already gone is not an error.
pub fn signal_group(pgid: i32, sig: Signal) -> io::Result<()> {
    deliver(pgid, "pgid", |p| killpg(p, sig))
}

/// Whether a live process (not a zombie waiting for its reaper) is left in the process
/// group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1
        || matches!(
            killpg(Pid::from_raw(pgid), None),
            Err(nix::errno::Errno::ESRCH)
        )
    {
        return false;
    }
    all_processes().iter().any(|p| p.pgid == pgid && !p.zombie)
}

/// Sends `sig` to one process. A process that is already gone is not an error.
pub fn signal_pid(pid: i32, sig: Signal) -> io::Result<()> {
    deliver(pid, "pid", |p| kill(p, sig))
}

fn deliver(id: i32, what: &str, send: impl FnOnce(Pid) -> nix::Result<()>) -> io::Result<()> {
    if id <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing {what} <= 1"),
        ));
    }
    match send(Pid::from_raw(id)) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// Parent.
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// Exited but not yet reaped by its parent.
    pub zombie: bool,
}

impl ProcStat {
    /// Resident memory in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.rss_pages * page_size()
    }
}

/// Reads `/proc/PID/stat`; `None` when the process is gone or the file is odd.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

fn parse_stat(pid: i32, text: &str) -> Option<ProcStat> {
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state).
    let num = |i: usize| -> Option<u64> { f.get(i)?.parse().ok() };
    Some(ProcStat {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        cpu_ticks: num(11)? + num(12)?,
        start_ticks: num(19)?,
        rss_pages: num(21)?,
        zombie: f.first().is_some_and(|s| *s == "Z" || *s == "X"),
    })
}

/// Every process on the machine (that we may read).
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Resource use of a whole process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Processes in the group.
    pub processes: u32,
    /// CPU ticks used so far by the live members.
    pub cpu_ticks: u64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Open file descriptors (of the members grove may read).
    pub open_fds: u32,
}

/// Usage of the process groups led by `leaders`, from one scan of `/proc`.
pub fn usage_by_group(leaders: &std::collections::HashSet<i32>) -> HashMap<i32, Usage> {
    let mut out: HashMap<i32, Usage> = HashMap::new();
    for p in all_processes() {
        if !leaders.contains(&p.pgid) {
            continue;
        }
        let u = out.entry(p.pgid).or_default();
        u.processes += 1;
        u.cpu_ticks += p.cpu_ticks;
        u.rss_bytes += p.rss_bytes();
        let fds = std::fs::read_dir(format!("/proc/{}/fd", p.pid))
            .map(|d| d.count())
            .unwrap_or(0);
        u.open_fds = u
            .open_fds
            .saturating_add(u32::try_from(fds).unwrap_or(u32::MAX));
    }
    out
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(4096)
}

/// The processes left over from a recorded group leader `pid` that started at `start_ticks`:
/// the leader itself if it still runs with that start time, and every member of its group
/// that started no earlier (so an unrelated group that reused the number is left alone).
pub fn leftovers(pid: i32, start_ticks: u64) -> Vec<ProcStat> {
    leftovers_in(&all_processes(), pid, start_ticks)
}

fn leftovers_in(all: &[ProcStat], pid: i32, start_ticks: u64) -> Vec<ProcStat> {
    if pid <= 1 {
        return Vec::new();
    }
    let own = nix::unistd::getpgrp().as_raw();
    if pid == own {
        return Vec::new();
    }
    if let Some(leader) = all.iter().find(|p| p.pid == pid) {
        if leader.start_ticks != start_ticks {
            // The number now belongs to another process; its group is not ours.
            if leader.pgid == pid {
                return Vec::new();
            }
        }
    }
    all.iter()
        .filter(|p| p.pgid == pid && p.start_ticks >= start_ticks && !p.zombie)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_names() {
        let line = "1234 (we(ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5555 1000000 250 18446744073709551615";
        let s = parse_stat(1234, line).unwrap();
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgid, 1234);
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.start_ticks, 5555);
        assert_eq!(s.rss_pages, 250);
        assert!(parse_stat(1, "garbage").is_none());
        assert!(parse_stat(1, "1 (x) S 1").is_none());
    }

    #[test]
    fn own_process_is_readable() {
        let me = stat(std::process::id() as i32).unwrap();
        assert!(me.start_ticks > 0);
        assert!(ticks_per_second() > 0);
    }

    #[test]
    fn leftovers_respect_start_time() {
        let p = |pid, pgid, start| ProcStat {
            pid,
            ppid: 1,
            pgid,
            cpu_ticks: 0,
            start_ticks: start,
            rss_pages: 0,
            zombie: false,
        };
        // Leader gone, a child of its group remains.
        let all = [p(500, 400, 1000), p(401, 400, 900), p(700, 700, 10)];
        let got = leftovers_in(&all, 400, 950);
        assert_eq!(got.iter().map(|s| s.pid).collect::<Vec<_>>(), vec![500]);
        // The pid was reused by a new group leader: leave it alone.
        let all = [p(400, 400, 99_999)];
        assert!(leftovers_in(&all, 400, 950).is_empty());
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("int"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("nope"), None);
        assert!(signal_group(1, Signal::SIGTERM).is_err());
    }
}
