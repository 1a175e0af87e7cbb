//! Issue 22, point 3: grove as a systemd service. systemd does not run on these machines, so
//! a datagram socket of the test's own stands in for it and reads what grove says; the unit
//! file `grove systemd` writes is checked with `systemd-analyze verify` where it exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The notifications that arrive within `secs`, until one satisfies `until`.
fn read_until(rx: &UnixDatagram, secs: u64, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = rx.recv(&mut buf) else { continue };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = until(&m);
        got.push(m);
        if done {
            return got;
        }
    }
    panic!("not said within {secs} s; heard {got:?}");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn grove_speaks_the_notification_protocol_to_a_stand_in_for_systemd() {
    let mut s = Stack::new(
        "[services.app]\ncommand = \"sh -c 'echo env=[$$NOTIFY_SOCKET][$$WATCHDOG_USEC]; sleep 600'\"\n\n[services.web]\ncommand = \"python3 -m http.server ${PORT} --bind 127.0.0.1\"\nhealth = { http = \"/\" }\n",
    );
    let sock = s.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let child = s
        .cmd(&["up"])
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    s.foreground = Some(child);
    // READY=1 only once every unit has settled (web is healthy), saying so.
    let heard = read_until(&rx, 30, |m| m.contains("READY=1"));
    let ready = heard.last().unwrap();
    assert!(ready.contains("STATUS=2 units up"), "{heard:?}");
    assert!(
        heard.iter().any(|m| m == "STATUS=starting the units"),
        "{heard:?}"
    );
    assert_eq!(
        s.unit("web")["health"],
        "healthy",
        "READY=1 came before web was healthy"
    );
    // The watchdog, at half of WATCHDOG_USEC.
    let start = Instant::now();
    let beats = read_until(&rx, 5, |m| m == "WATCHDOG=1");
    read_until(&rx, 5, |m| m == "WATCHDOG=1");
    assert!(start.elapsed() < Duration::from_secs(2), "{beats:?}");
    // The variables are grove's: no unit inherits them.
    assert!(s.log("app").contains("env=[][]"), "{}", s.log("app"));
    // SIGHUP (systemd's ExecReload) reloads between RELOADING=1 and READY=1.
    signal(pid, "-HUP");
    let heard = read_until(&rx, 20, |m| m.contains("READY=1"));
    assert!(
        heard.iter().any(|m| m.starts_with("RELOADING=1")),
        "{heard:?}"
    );
    assert!(
        heard.last().unwrap().contains("STATUS=reloaded"),
        "{heard:?}"
    );
    // SIGTERM (systemctl stop): STOPPING=1, then every unit stops and grove exits 0.
    signal(pid, "-TERM");
    let heard = read_until(&rx, 20, |m| m.starts_with("STOPPING=1"));
    assert!(
        heard.last().unwrap().contains("STATUS=stopping"),
        "{heard:?}"
    );
    let mut child = s.foreground.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "grove did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(s.processes().is_empty(), "left behind: {:?}", s.processes());
}

#[test]
fn grove_systemd_writes_a_unit_systemd_accepts() {
    let s = Stack::new("[services.app]\ncommand = \"sleep 600\"\nstop_grace = \"20s\"\n");
    let out = s.run(&["systemd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unit = text(&out.stdout);
    let file = std::fs::canonicalize(s.path().join("grove.toml")).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={} -f {} up",
            env!("CARGO_BIN_EXE_grove"),
            file.display()
        )),
        "{unit}"
    );
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(
        unit.contains("TimeoutStopSec=50"),
        "the longest grace and a margin: {unit}"
    );
    // --install writes grove-<stack>.service where it is told.
    let dir = tempfile::tempdir().unwrap();
    let out = s.run(&[
        "systemd",
        "--install",
        "--unit-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let name = format!("grove-{}.service", s.name);
    let written = std::fs::read_to_string(dir.path().join(&name)).unwrap();
    assert_eq!(written, unit);
    assert!(text(&out.stdout).contains(&format!("systemctl enable --now {name}")));
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join(&name))
        .output()
    {
        Ok(v) => {
            let said = text(&v.stderr) + &text(&v.stdout);
            assert!(v.status.success(), "systemd-analyze verify: {said}");
            assert!(
                said.trim().is_empty(),
                "systemd-analyze verify warns: {said}"
            );
        }
        Err(_) => eprintln!("no systemd-analyze here; the unit file was not verified"),
    }
}
