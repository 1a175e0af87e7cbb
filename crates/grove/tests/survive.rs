//! Issue 22: the stack outlives grove. grove is killed with PostgreSQL, Redis and a web unit
//! running; the next grove adopts them (same pids, `adopted` events), nothing is lost (the
//! data, a log line written while no grove ran), and `down` still ends everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::servers::{kill_daemon, open_stack, port, psql, redis, secret, up};
use common::{text, Stack};

use std::time::Duration;

fn adopted(s: &Stack, unit: &str) -> bool {
    s.events()
        .iter()
        .any(|e| e["unit"] == unit && e["kind"] == "adopted")
}

/// The `tick-N` numbers in the unit's log, in order.
fn ticks(s: &Stack) -> Vec<u64> {
    s.log("ticker")
        .lines()
        .filter_map(|l| l.split_once(" out tick-").map(|(_, n)| n.trim()))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn a_killed_grove_leaves_its_stack_running_and_the_next_one_adopts_it() {
    let s = open_stack(
        r#"[edge]
listen = []

[services.db]
recipe = "postgres"

[services.cache]
recipe = "redis"

[services.web]
command = "python3 -m http.server ${PORT} --bind 127.0.0.1"
health = { http = "/" }
depends_on = { db = "healthy" }

[services.ticker]
command = "sh -c 'i=0; while true; do i=$$((i+1)); echo tick-$$i; sleep 0.1; done'"
"#,
    );
    up(&s);
    let units = ["db", "cache", "web", "ticker"];
    let pids: Vec<i64> = units.iter().map(|u| s.pid(u).unwrap()).collect();
    let (db, cache) = (port(&s, "db"), port(&s, "cache"));
    let (db_pw, cache_pw) = (secret(&s, "db"), secret(&s, "cache"));
    psql(
        db,
        &db_pw,
        "CREATE TABLE kept(n int); INSERT INTO kept SELECT generate_series(1, 100)",
    )
    .unwrap();
    assert_eq!(redis(cache, &cache_pw, &["SET", "kept", "yes"]), "OK");
    kill_daemon(&s);
    // Nothing stops with grove: the servers answer while no grove runs...
    std::thread::sleep(Duration::from_millis(800));
    for (u, pid) in units.iter().zip(&pids) {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{u} died with grove"
        );
    }
    assert_eq!(
        psql(db, &db_pw, "SELECT count(*) FROM kept").unwrap(),
        "100"
    );
    let during = ticks(&s).last().copied().unwrap_or(0);
    // ...and the next grove supervises the very same processes again.
    up(&s);
    for (u, pid) in units.iter().zip(&pids) {
        assert_eq!(s.pid(u), Some(*pid), "{u} was restarted, not adopted");
        assert!(
            adopted(&s, u),
            "no `adopted` event for {u}: {:?}",
            s.events()
        );
    }
    assert_eq!(s.unit("web")["health"], "healthy");
    let uptime = s.unit("db")["uptime_ms"].as_u64().unwrap_or(0);
    assert!(uptime >= 800, "db's uptime started again: {uptime} ms");
    assert_eq!(
        psql(db, &db_pw, "SELECT count(*) FROM kept").unwrap(),
        "100"
    );
    assert_eq!(redis(cache, &cache_pw, &["GET", "kept"]), "yes");
    // The log is whole: the lines written while no grove ran are there, none missing.
    std::thread::sleep(Duration::from_millis(300));
    let all = ticks(&s);
    assert!(all.len() > 5, "{all:?}");
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap in the log: {all:?}"
    );
    assert!(
        all.iter().any(|&n| n > during),
        "nothing logged after the adoption"
    );
    // `down` after an adoption ends everything, leaves nothing behind.
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
    let run = std::fs::read_dir(s.path().join(".grove/run"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(run, 0, "sockets left in .grove/run");
}

#[test]
fn what_changed_or_ended_while_no_grove_ran_is_started_again() {
    let s = Stack::new(
        "[services.same]\ncommand = \"sleep 600\"\n\n[services.changed]\ncommand = \"sleep 601\"\n\n[services.ending]\ncommand = \"sh -c 'sleep 1; exit 3'\"\nrestart = \"always\"\n",
    );
    s.up();
    let same = s.pid("same").unwrap();
    let changed = s.pid("changed").unwrap();
    common::servers::kill_daemon(&s);
    // While no grove runs: `ending` exits (its shim keeps the status), and the stack file
    // changes `changed`.
    std::thread::sleep(Duration::from_millis(1500));
    s.write_stack(
        "[services.same]\ncommand = \"sleep 600\"\n\n[services.changed]\ncommand = \"sleep 602\"\n\n[services.ending]\ncommand = \"sh -c 'sleep 1; exit 3'\"\nrestart = \"always\"\n",
    );
    let out = s.run(&["up", "-d", "--wait-timeout", "20s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.pid("same"), Some(same));
    assert_ne!(
        s.pid("changed"),
        Some(changed),
        "a changed unit was adopted"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{changed}")).exists(),
        "the old `changed` still runs"
    );
    let events = s.events();
    let said = |unit: &str, kind: &str, words: &str| {
        events.iter().any(|e| {
            e["unit"] == unit
                && e["kind"] == kind
                && e["message"].as_str().unwrap_or("").contains(words)
        })
    };
    assert!(
        said("changed", "reaped", "definition changed"),
        "{events:?}"
    );
    assert!(said("same", "adopted", "adopted"), "{events:?}");
    let ended = events
        .iter()
        .position(|e| {
            e["unit"] == "ending"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ended while no grove was running: exited with code 3")
        })
        .unwrap_or_else(|| panic!("the exit while no grove ran is not told: {events:?}"));
    assert!(
        events[ended..]
            .iter()
            .any(|e| e["unit"] == "ending" && e["kind"] == "started"),
        "`ending` was not started again: {events:?}"
    );
    let out = s.run(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.processes().is_empty(), "left: {:?}", s.processes());
}
