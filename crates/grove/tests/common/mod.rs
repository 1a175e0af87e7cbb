//! The harness shared by the runtime tests: a stack in a temp folder, the real binary, and a
//! guard that stops the stack and kills anything carrying `GROVE_STACK=<name>`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod example;
pub mod netns;
pub mod pki;
pub mod servers;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub foreground: Option<Child>,
}

impl Stack {
    /// A stack folder whose grove.toml is `body` after a `[stack]` header.
    pub fn new(body: &str) -> Stack {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}x{n}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let s = Stack {
            dir,
            name,
            foreground: None,
        };
        s.write(body);
        s
    }

    pub fn write(&self, body: &str) {
        self.write_with(body, "");
    }

    /// Like `write`, with extra `[stack]` keys.
    pub fn write_with(&self, body: &str, stack_keys: &str) {
        let text = format!(
            "[stack]\nname = \"{}\"\n{stack_keys}\n[edge]\nlisten = []\n\n{body}",
            self.name
        );
        std::fs::write(self.dir.path().join("grove.toml"), text).unwrap();
    }

    /// Writes `body` as the whole stack file after this stack's `[stack]` header (no default
    /// `[edge]`, unlike `write`).
    pub fn write_stack(&self, body: &str) {
        let text = format!("[stack]\nname = \"{}\"\n\n{body}", self.name);
        std::fs::write(self.dir.path().join("grove.toml"), text).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_grove"));
        c.args(args)
            .current_dir(self.path())
            .env_remove("GROVE_ENV")
            .env_remove("GROVE_FILE")
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("grove {args:?} did not finish in 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn up(&self) -> Output {
        let out = self.run(&["up", "-d", "--wait-timeout", "30s"]);
        assert!(
            out.status.success(),
            "up -d failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    pub fn ps(&self) -> Value {
        let out = self.run(&["ps", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn unit(&self, name: &str) -> Value {
        let ps = self.ps();
        ps["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no unit {name} in {ps}"))
    }

    pub fn pid(&self, name: &str) -> Option<i64> {
        self.unit(name)["pid"].as_i64()
    }

    pub fn events(&self) -> Vec<Value> {
        let out = self.run(&["events", "--json", "-n", "1000"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Index of the first event of `unit` with `kind`.
    pub fn event_index(&self, events: &[Value], unit: &str, kind: &str) -> usize {
        events
            .iter()
            .position(|e| e["unit"] == unit && e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event for {unit} in {events:#?}"))
    }

    pub fn wait_for(&self, what: &str, secs: u64, mut cond: impl FnMut(&Stack) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; events:\n{:#?}",
            self.events()
        );
    }

    pub fn log(&self, unit: &str) -> String {
        std::fs::read_to_string(self.path().join(format!(".grove/logs/{unit}.log")))
            .unwrap_or_default()
    }

    /// Pids of live processes carrying this stack's `GROVE_STACK`.
    pub fn processes(&self) -> Vec<i32> {
        stack_processes(&self.name)
    }
}

/// Pids of live processes carrying `GROVE_STACK=<name>` (everything a stack started).
pub fn stack_processes(name: &str) -> Vec<i32> {
    let needle = format!("GROVE_STACK={name}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        // Zombies have an empty environ; only live processes count.
        if String::from_utf8_lossy(&env).contains(&needle) && !is_zombie(pid) {
            out.push(pid);
        }
    }
    out
}

/// The workspace root.
pub fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A tool from the workspace's `.venv` (scripts/test builds it from
/// examples/requirements.txt), else from PATH.
pub fn venv_tool(name: &str) -> std::path::PathBuf {
    let venv = workspace().join(".venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("`{name}` is missing: scripts/test installs it into .venv from examples/requirements.txt")
        })
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

pub fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid as i32)
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut c) = self.foreground.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self
            .cmd(&["down"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for pid in self.processes() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The edge tests' upstream: `tests/fixtures/echo.py`.
pub fn echo_app() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/echo.py")
        .display()
        .to_string()
}

/// Polls `cond` every 100 ms until it holds; panics after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// The pid of the daemon of the stack in `dir`: the `grove up --daemon-child` whose stack file
/// is there.
pub fn daemon_pid(dir: &Path) -> Option<i32> {
    let file = dir.join("grove.toml");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "--daemon-child") && args.iter().any(|a| Path::new(a) == file) {
            return Some(pid);
        }
    }
    None
}

/// The cgroup tree grove makes for the stack `name` (beside this process, where a cgroup v2
/// mount is writable), if this machine has one.
pub fn cgroup_tree(name: &str) -> Option<std::path::PathBuf> {
    let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|m| m.join("cgroup.procs").exists() && m.join("cgroup.subtree_control").exists())?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(
        mount
            .join(own.trim_start_matches('/'))
            .join(format!("grove-{name}")),
    )
}

/// Asserts grove left no cgroup of the stack `name` behind.
pub fn assert_no_cgroup_left(name: &str) {
    if let Some(tree) = cgroup_tree(name) {
        assert!(!tree.exists(), "{} is left behind", tree.display());
    }
}
