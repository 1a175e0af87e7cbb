//! Issue 28: backups of the recipes' data, through the real binary with real servers. The
//! round trip: rows written, backup, rows deleted, restore, rows back; the same for Redis,
//! whose restore is refused while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::servers::{open_stack, psql_as, redis, secret, up};
use common::*;

fn port(s: &Stack, unit: &str) -> u16 {
    s.unit(unit)["port"].as_u64().unwrap() as u16
}

#[test]
fn a_backup_brings_back_deleted_rows_and_keys() {
    let s = open_stack(
        r#"[edge]
listen = []

[services.db]
recipe = "postgres"
databases = ["app"]

[services.cache]
recipe = "redis"
"#,
    );
    up(&s);
    let (db, pw) = (port(&s, "db"), secret(&s, "db"));
    let sql = |q: &str| psql_as(db, "grove", &pw, "app", q).unwrap();
    sql("CREATE TABLE notes (id int PRIMARY KEY, body text)");
    sql("INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g");
    let (cache, cpw) = (port(&s, "cache"), secret(&s, "cache"));
    assert_eq!(redis(cache, &cpw, &["SET", "greeting", "hello"]), "OK");

    let out = s.run(&["backup"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("backed up db (app): "), "{said}");
    assert!(said.contains("backed up cache (data): "), "{said}");
    assert!(said.matches("verified").count() >= 2, "{said}");
    let files: Vec<String> = said
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|rest| rest.split(" (").next().unwrap().to_string())
        .collect();
    let dump = files
        .iter()
        .find(|f| f.ends_with(".pgdump"))
        .unwrap()
        .clone();
    let rdb = files.iter().find(|f| f.ends_with(".rdb")).unwrap().clone();
    let events = s.events();
    assert!(events.iter().any(|e| e["kind"] == "backup"), "{events:?}");
    let listed = text(&s.run(&["backups"]).stdout);
    assert!(listed.contains(&dump) && listed.contains(&rdb), "{listed}");

    // PostgreSQL: rows deleted, restore into the running server, rows back.
    sql("DELETE FROM notes WHERE id > 10");
    assert_eq!(sql("SELECT count(*) FROM notes"), "10");
    let out = s.run(&["restore", "db", &dump]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sql("SELECT count(*) FROM notes"), "500");

    // Redis: the restore waits for a stopped server, which then starts from the snapshot.
    assert_eq!(redis(cache, &cpw, &["FLUSHALL"]), "OK");
    let out = s.run(&["restore", "cache", &rdb]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cache is running"),
        "{}",
        text(&out.stderr)
    );
    let out = s.run(&["stop", "cache"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.wait_for("cache stopped", 30, |s| s.unit("cache")["pid"].is_null());
    let out = s.run(&["restore", "cache", &rdb]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = s.run(&["start", "cache", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(redis(cache, &cpw, &["GET", "greeting"]), "hello");

    // A second backup with --keep 1 leaves one file per database.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = s.run(&["backup", "db", "--keep", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed "),
        "{}",
        text(&out.stdout)
    );
    let listed = text(&s.run(&["backups"]).stdout);
    assert_eq!(listed.matches("db-app-").count(), 1, "{listed}");
    // A file that is no backup is refused.
    let bogus = s.path().join("bogus.pgdump");
    std::fs::write(&bogus, "not an archive").unwrap();
    let out = s.run(&["restore", "db", &bogus.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("restore refused"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn scheduled_backups_keep_the_newest_ones() {
    let s = open_stack(
        r#"[edge]
listen = []

[services.cache]
recipe = "redis"
backup = { schedule = "*/2 * * * * *", keep = 2, dir = "saved" }
"#,
    );
    up(&s);
    let count = |s: &Stack, kind: &str| s.events().iter().filter(|e| e["kind"] == kind).count();
    s.wait_for("three scheduled backups", 30, |s| count(s, "backup") >= 3);
    s.wait_for("the oldest removed", 10, |s| {
        count(s, "backup-removed") >= 1
    });
    let saved: Vec<_> = std::fs::read_dir(s.path().join("saved"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".rdb"))
        .collect();
    assert!(saved.len() <= 2, "{} kept", saved.len());
    let events = s.events();
    let made = events.iter().find(|e| e["kind"] == "backup").unwrap();
    assert!(
        made["message"]
            .as_str()
            .unwrap()
            .contains("verified (scheduled: */2 * * * * *)"),
        "{made}"
    );
}

/// RabbitMQ: its definitions (here a durable queue in a virtual host) are backed up with
/// `rabbitmqctl export_definitions` and imported back after the queue was deleted.
#[test]
fn a_rabbitmq_backup_brings_back_a_deleted_queue() {
    let s = open_stack(
        r#"[edge]
listen = []

[services.mq]
recipe = "rabbitmq"
databases = ["jobs"]
"#,
    );
    up(&s);
    let url = format!(
        "amqp://grove:{}@127.0.0.1:{}/jobs",
        secret(&s, "mq"),
        port(&s, "mq")
    );
    let py = venv_tool("python3");
    let pika = |script: &str| {
        let out = std::process::Command::new(&py)
            .args(["-c", &format!("import os, pika\nc = pika.BlockingConnection(pika.URLParameters(os.environ['U']))\nch = c.channel()\n{script}\nc.close()\n")])
            .env("U", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    pika("ch.queue_declare('reports', durable=True)");
    let out = s.run(&["backup", "mq"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("backed up mq (definitions): "), "{said}");
    let file = said
        .lines()
        .find_map(|l| l.split(": ").nth(1))
        .map(|rest| rest.split(" (").next().unwrap().to_string())
        .unwrap();
    assert!(file.ends_with(".json"), "{file}");
    assert!(text(&s.run(&["backups"]).stdout).contains(&file));
    // The queue goes; a passive declare of it fails.
    pika("ch.queue_delete('reports')");
    let gone = std::process::Command::new(&py)
        .args(["-c", "import os, pika\nc = pika.BlockingConnection(pika.URLParameters(os.environ['U']))\nc.channel().queue_declare('reports', passive=True)\n"])
        .env("U", &url)
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the queue was deleted");
    let out = s.run(&["restore", "mq", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported mq's definitions"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        pika("print(ch.queue_declare('reports', passive=True).method.queue)"),
        "reports"
    );
    // Something that is not a definitions file is refused.
    let bogus = s.path().join("mq-definitions-bogus.json");
    std::fs::write(&bogus, "{\"not\": 1}").unwrap();
    let out = s.run(&["restore", "mq", &bogus.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not RabbitMQ definitions"),
        "{}",
        text(&out.stderr)
    );
}
