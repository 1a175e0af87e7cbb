//! Issue 28: a unit runs as the user, group and file mode mask its service names, as root's
//! grove starts it, within its limits (memory, CPU, processes, open files); the exports carry
//! them. `[defaults]` and `path` give every command service the same settings and tools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;

fn status_line(pid: i64, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_unit_drops_to_its_user_group_and_umask() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: only root's grove can start a unit as another user");
        return;
    }
    let s = Stack::new("");
    let shared = s.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.write(&format!(
        r#"
[services.web]
command = "sh -c 'touch {dir}/made-by-web; echo home=$$HOME user=$$USER; exec sleep 300'"
user = "nobody"
group = "nogroup"
umask = "0077"
image = "debian:bookworm-slim"
"#,
        dir = shared.display()
    ));
    s.up();
    let pid = s.pid("web").unwrap();
    // `ps` says who it runs as.
    assert_eq!(s.unit("web")["user"], "nobody");
    let ps = text(&s.run(&["ps"]).stdout);
    assert!(ps.contains("USER") && ps.contains("nobody"), "{ps}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    assert_eq!(status_line(pid, "Uid"), nobody.uid.to_string());
    assert_eq!(status_line(pid, "Gid"), nogroup.gid.to_string());
    // No supplementary group of root's survives the switch.
    let groups = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let groups = groups.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
    let made = shared.join("made-by-web");
    wait_until("the unit's file", 10, || made.exists());
    let meta = std::fs::metadata(&made).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "umask 0077");
    let want = format!("home={} user=nobody", nobody.dir.display());
    wait_until("the unit's line", 10, || {
        text(&s.run(&["logs", "web"]).stdout).contains(&want)
    });
    // The exports carry it: compose's `user`, and a note where Kubernetes needs an id.
    let out = s.run(&["export", "compose"]);
    assert!(
        text(&out.stdout).contains("user: nobody:nogroup"),
        "{}",
        text(&out.stdout)
    );
    let out = s.run(&["export", "kubernetes"]);
    let k8s = text(&out.stdout) + &text(&out.stderr);
    assert!(
        k8s.contains("securityContext takes numeric ids only"),
        "{k8s}"
    );
    let out = s.run(&["down"]);
    assert!(out.status.success());
}

#[test]
fn a_unit_over_its_memory_limit_is_killed_reported_and_restarted() {
    let s = Stack::new(
        r#"
[services.hog]
command = "python3 -c 'import time; time.sleep(0.3); b = bytearray(300 * 1000 * 1000); time.sleep(60)'"
limits = { memory = "64MB", pids = 50, nofile = 4096, cpu = 0.5 }
restart = { policy = "always", backoff = "200ms" }

[services.calm]
command = "sleep 300"
limits = { nofile = 2048, memory = "256MB" }
"#,
    );
    s.up();
    // `ps` shows the limits, memory beside what it uses.
    assert_eq!(
        s.unit("hog")["limits"],
        "memory 64MB, cpu 0.5, pids 50, nofile 4096"
    );
    let ps = text(&s.run(&["ps"]).stdout);
    assert!(ps.contains(" / 256MB"), "{ps}");
    // The open-files limit holds for the process itself.
    let pid = s.pid("calm").unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        line.split_whitespace().filter(|w| *w == "2048").count() == 2,
        "{line}"
    );
    // Over 64MB, the kernel kills the hog; grove says why and restarts it.
    s.wait_for("an out-of-memory kill", 30, |s| {
        s.events()
            .iter()
            .any(|e| e["kind"] == "exited" && e["message"] == "killed: out of memory (limit 64MB)")
    });
    s.wait_for("a restart", 30, |s| {
        s.unit("hog")["restarts"].as_u64() >= Some(1)
    });
    let out = s.run(&["down"]);
    assert!(out.status.success());
    // `down` leaves no cgroup of the stack in the v1 hierarchies the limits used.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for controller in ["memory", "pids", "cpu"] {
        let base = own
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, names, path) = (p.next()?, p.next()?, p.next()?);
                names.split(',').any(|n| n == controller).then_some(path)
            })
            .unwrap_or("/")
            .trim_start_matches('/');
        let dir = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(base)
            .join(format!("grove-{}", s.name));
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

#[test]
fn defaults_and_path_give_every_command_service_its_tools() {
    let s = Stack::new(
        r#"
[defaults]
cwd = "app"
path = ["venv/bin"]
env = { GREETING = "hello from the defaults" }

[services.web]
command = "greet web"

[services.worker]
command = "greet worker"
env = { GREETING = "the worker's own" }
"#,
    );
    let bin = s.path().join("app/venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("greet");
    std::fs::write(&tool, "#!/bin/sh\necho \"$1: $GREETING\"\nexec sleep 300\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.up();
    for (unit, line) in [
        ("web", "web: hello from the defaults"),
        ("worker", "worker: the worker's own"),
    ] {
        wait_until("the tool's line", 10, || {
            text(&s.run(&["logs", unit]).stdout).contains(line)
        });
    }
    // The host's PATH stays out of the stack: the unit's is the folder, then grove's own.
    let pid = s.pid("web").unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ).into_owned();
    let path = environ
        .split('\0')
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap()
        .to_string();
    assert!(path.starts_with(&format!("{}:", bin.display())), "{path}");
    let plan = text(&s.run(&["check", "--json"]).stdout);
    assert!(
        !plan.contains("/usr/bin"),
        "the host's PATH reached the Plan:\n{plan}"
    );
}
