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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
