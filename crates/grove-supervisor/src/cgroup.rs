//! A cgroup per spawned unit process, on the cgroup v2 hierarchy: it holds every process the
//! unit starts, including those that leave its process group (`setsid`, a double-forked
//! daemon), so a stop reaches all of them and a later grove finds what a killed one left.
//!
//! The tree is `<v2 mount>/<grove's own cgroup>/grove-<stack>/<unit>.<spawn>`. The v2 mount
//! is `/sys/fs/cgroup` on pure-v2 servers, `/sys/fs/cgroup/unified` on hybrid machines; no
//! controller is needed to track and kill. Where no such tree can be made (no v2 mount, no
//! permission), [`Tree::open`] says so and grove falls back to process groups and the
//! `GROVE_STACK` scan.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

/// Where the v2 hierarchy may be mounted, in the order tried.
const MOUNTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// One stack's cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    base: PathBuf,
}

/// One unit process's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    dir: PathBuf,
}

/// The v2 mount point, if one is mounted (it has `cgroup.procs` and `cgroup.subtree_control`).
fn v2_mount() -> Option<PathBuf> {
    MOUNTS
        .iter()
        .map(PathBuf::from)
        .find(|m| m.join("cgroup.procs").exists() && m.join("cgroup.subtree_control").exists())
}

/// grove's own cgroup on the v2 hierarchy (`/` when it is the root), from `/proc/self/cgroup`.
fn own_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// A name safe as one path component.
fn component(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect()
}

impl Tree {
    /// The tree for `stack`, made when missing; `None` when this machine or user has no
    /// writable v2 hierarchy.
    pub fn open(stack: &str) -> Option<Tree> {
        let mount = v2_mount()?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own_path(&own)?.trim_start_matches('/');
        let base = mount.join(own).join(format!("grove-{}", component(stack)));
        std::fs::create_dir_all(&base).ok()?;
        Some(Tree { base })
    }

    /// The tree at `base` (one an earlier grove recorded).
    pub fn at(base: impl Into<PathBuf>) -> Tree {
        Tree { base: base.into() }
    }

    /// Its folder.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// A new, empty group for one process of `unit` (`spawn` makes it unique).
    pub fn group(&self, unit: &str, spawn: u64) -> io::Result<Group> {
        let dir = self.base.join(format!("{}.{spawn}", component(unit)));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(Group { dir })
    }

    /// Every group in the tree.
    pub fn groups(&self) -> Vec<Group> {
        let Ok(dir) = std::fs::read_dir(&self.base) else {
            return Vec::new();
        };
        dir.flatten()
            .filter(|e| e.path().join("cgroup.procs").exists())
            .map(|e| Group { dir: e.path() })
            .collect()
    }

    /// Removes the tree's folder when no group is left in it.
    pub fn remove_if_empty(&self) {
        let _ = std::fs::remove_dir(&self.base);
    }
}

impl Group {
    /// The group at `dir` (made by [`Tree::group`], possibly by another grove).
    pub fn at(dir: impl Into<PathBuf>) -> Group {
        Group { dir: dir.into() }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its `cgroup.procs`, open for writing: a process that writes `0` to it joins.
    pub fn procs_file(&self) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `sig` to its processes outside the process group `pgid` (the group itself is
    /// signalled as a whole by the caller); returns how many were signalled.
    pub fn signal_escaped(&self, pgid: i32, sig: Signal) -> usize {
        let mut n = 0;
        for pid in self.pids() {
            let outside = crate::process::stat(pid).is_some_and(|s| s.pgid != pgid);
            if outside && crate::process::signal_pid(pid, sig).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Kills every process in it (`cgroup.kill` where the kernel has it, else SIGKILL to
    /// each); returns how many there were.
    pub fn kill(&self) -> usize {
        let pids = self.pids();
        if pids.is_empty() {
            return 0;
        }
        if std::fs::write(self.dir.join("cgroup.kill"), "1").is_err() {
            for pid in &pids {
                let _ = crate::process::signal_pid(*pid, Signal::SIGKILL);
            }
        }
        pids.len()
    }

    /// Removes the group's folder; false while a process is still in it.
    pub fn remove(&self) -> bool {
        std::fs::remove_dir(&self.dir).is_ok()
    }

    /// Kills what is left, waits (up to a second) for it to be gone, and removes the folder.
    pub fn kill_and_remove(&self) -> usize {
        let n = self.kill();
        for _ in 0..100 {
            if self.remove() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        n
    }
}

/// Where a unit's limits are enforced, for one of its processes.
#[derive(Debug, Default)]
pub struct Limited {
    /// Groups the process joins besides its v2 group: the v1 hierarchies' (memory, pids,
    /// cpu) on a hybrid machine.
    pub groups: Vec<Group>,
    /// The group whose memory counters say whether the kernel killed it for memory.
    pub memory: Option<Group>,
    /// Limits this machine gives grove no way to enforce (`memory`, `pids`, `cpu`).
    pub unenforced: Vec<&'static str>,
}

impl Limited {
    /// Whether the kernel's out-of-memory killer ended a process of the group.
    pub fn oom_killed(&self) -> bool {
        let Some(g) = &self.memory else {
            return false;
        };
        let count = |file: &str| {
            std::fs::read_to_string(g.dir.join(file))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        };
        count("memory.events")
            .or_else(|| count("memory.oom_control"))
            .is_some_and(|n| n > 0)
    }

    /// Removes the extra groups (once their processes are gone).
    pub fn remove(&self) {
        for g in &self.groups {
            for _ in 0..50 {
                if g.remove() || !g.dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// The v1 hierarchies limits can use on a hybrid machine, where they are mounted.
const V1: [(&str, &str); 3] = [
    ("memory", "/sys/fs/cgroup/memory"),
    ("pids", "/sys/fs/cgroup/pids"),
    ("cpu", "/sys/fs/cgroup/cpu"),
];

/// CFS period for a CPU limit, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Files and the values to write to them.
type Writes = Vec<(&'static str, String)>;

/// The files and values that set each controller's limit: (controller, v2, v1).
fn limit_files(limits: &grove_plan::Limits) -> Vec<(&'static str, Writes, Writes)> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory {
        out.push((
            "memory",
            vec![
                ("memory.max", m.to_string()),
                ("memory.swap.max", "0".to_string()),
            ],
            vec![("memory.limit_in_bytes", m.to_string())],
        ));
    }
    if let Some(p) = limits.pids {
        out.push((
            "pids",
            vec![("pids.max", p.to_string())],
            vec![("pids.max", p.to_string())],
        ));
    }
    if let Some(c) = limits.cpu_milli {
        let quota = u64::from(c) * CPU_PERIOD_US / 1000;
        out.push((
            "cpu",
            vec![("cpu.max", format!("{quota} {CPU_PERIOD_US}"))],
            vec![
                ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ],
        ));
    }
    out
}

/// grove's own cgroup in the v1 hierarchy of `controller`, from `/proc/self/cgroup`
/// (`4:memory:/a/b`, or a joined `2:cpu,cpuacct:/a`).
fn own_v1_path<'t>(text: &'t str, controller: &str) -> Option<&'t str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names.split(',').any(|n| n == controller).then_some(path)
    })
}

/// Applies `limits` to one process of `unit` (spawn `spawn`): in its v2 group `v2` when the
/// stack's tree has the controllers, else in a v1 group per controller beside it.
pub fn limit(
    stack: &str,
    unit: &str,
    spawn: u64,
    v2: Option<&Group>,
    limits: &grove_plan::Limits,
) -> Limited {
    let mut out = Limited::default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for (controller, v2_files, v1_files) in limit_files(limits) {
        if let Some(g) = v2.filter(|g| enable_v2(g, controller)) {
            let ok = v2_files
                .iter()
                .take(1)
                .all(|(f, v)| std::fs::write(g.dir.join(f), v).is_ok());
            // The swap limit is extra: a machine without swap accounting has no such file.
            for (f, v) in v2_files.iter().skip(1) {
                let _ = std::fs::write(g.dir.join(f), v);
            }
            if ok {
                if controller == "memory" {
                    out.memory = Some(g.clone());
                }
                continue;
            }
        }
        let made = V1
            .iter()
            .find(|(c, _)| *c == controller)
            .and_then(|(c, mount)| {
                let mount = Path::new(mount);
                if !mount.join("cgroup.procs").exists() {
                    return None;
                }
                let base = own_v1_path(&own, c).unwrap_or("/").trim_start_matches('/');
                let dir = mount
                    .join(base)
                    .join(format!("grove-{}", component(stack)))
                    .join(format!("{}.{spawn}", component(unit)));
                std::fs::create_dir_all(&dir).ok()?;
                let ok = v1_files
                    .iter()
                    .all(|(f, v)| std::fs::write(dir.join(f), v).is_ok());
                if !ok {
                    let _ = std::fs::remove_dir(&dir);
                    return None;
                }
                Some(Group { dir })
            });
        match made {
            Some(g) => {
                if controller == "memory" {
                    out.memory = Some(g.clone());
                }
                out.groups.push(g);
            }
            None => out.unenforced.push(controller),
        }
    }
    out
}

/// Removes the stack's folders in the v1 hierarchies limits used, once their unit groups
/// are gone (`down`).
pub fn remove_v1_stack(stack: &str) {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for (controller, mount) in V1 {
        let base = own_v1_path(&own, controller)
            .unwrap_or("/")
            .trim_start_matches('/');
        let dir = Path::new(mount)
            .join(base)
            .join(format!("grove-{}", component(stack)));
        // Units that stopped leave their groups empty; a leftover of a killed grove goes too.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.path().join("cgroup.procs").exists() {
                    Group::at(e.path()).kill_and_remove();
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Whether `controller` can be used in `group` (v2): enabled in its parent's
/// `cgroup.subtree_control`, which grove turns on when the parent has it to give.
fn enable_v2(group: &Group, controller: &str) -> bool {
    let has = |dir: &Path, file: &str| {
        std::fs::read_to_string(dir.join(file))
            .map(|t| t.split_whitespace().any(|c| c == controller))
            .unwrap_or(false)
    };
    let Some(parent) = group.dir.parent() else {
        return false;
    };
    if has(parent, "cgroup.subtree_control") {
        return true;
    }
    has(parent, "cgroup.controllers")
        && std::fs::write(
            parent.join("cgroup.subtree_control"),
            format!("+{controller}"),
        )
        .is_ok()
        && has(parent, "cgroup.subtree_control")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_v1_path_is_found_for_its_controller_even_joined_with_another() {
        let text = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n";
        assert_eq!(own_v1_path(text, "memory"), Some("/process_api/abc"));
        assert_eq!(own_v1_path(text, "cpu"), Some("/x"));
        assert_eq!(own_v1_path(text, "pids"), None);
    }

    #[test]
    fn limits_become_each_hierarchys_files() {
        let l = grove_plan::Limits {
            memory: Some(64_000_000),
            cpu_milli: Some(1500),
            pids: Some(200),
            nofile: None,
        };
        let files = limit_files(&l);
        let names: Vec<&str> = files.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(names, ["memory", "pids", "cpu"]);
        assert_eq!(files[2].1[0].1, "150000 100000");
        assert_eq!(files[2].2[1].1, "150000");
        assert_eq!(
            files[0].2[0],
            ("memory.limit_in_bytes", "64000000".to_string())
        );
    }

    #[test]
    fn own_cgroup_is_read_from_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/grove.service\n";
        assert_eq!(own_path(text), Some("/system.slice/grove.service"));
        assert_eq!(own_path("1:cpu:/\n"), None);
        assert_eq!(component("web@turkey#2~next"), "web@turkey#2~next");
        assert_eq!(component("a/b"), "a_b");
    }

    #[test]
    fn a_group_holds_and_kills_a_setsid_child() {
        // Only where this machine lets us make a tree (root with a v2 mount).
        let Some(tree) = Tree::open(&format!("unit-test-{}", std::process::id())) else {
            return;
        };
        let g = tree.group("svc", 1).unwrap();
        let mut child = std::process::Command::new("setsid")
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        std::fs::write(g.dir().join("cgroup.procs"), pid.to_string()).unwrap();
        assert_eq!(g.pids(), vec![pid]);
        assert_eq!(g.kill(), 1);
        let _ = child.wait();
        assert!(g.pids().is_empty());
        assert!(g.remove());
        assert!(tree.groups().is_empty());
        tree.remove_if_empty();
        assert!(!tree.base().exists());
    }
}
