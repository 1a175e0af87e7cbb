//! # grove: the binary
//!
//! Owns the command line: parsing arguments, finding the stack file, wiring the libraries
//! together and turning their results into output and exit codes (0 success, 1 refused,
//! 2 usage). It is the only crate that uses `anyhow`. It must not hold logic that another
//! reader of the Plan would need: that belongs in the library crates.

#![forbid(unsafe_code)]

mod backup;
mod deploy;
mod history;
mod jobs;
mod maintenance;
mod progress;
mod render;
mod runtime;
mod scale;
mod systemd;
mod top;
mod up;
mod upgrade;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

/// One binary that runs a whole web stack on one server from one stack file.
#[derive(Debug, Parser)]
#[command(name = "grove", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// The stack file (default: grove.toml in the current folder).
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "GROVE_FILE",
        value_name = "FILE"
    )]
    file: Option<PathBuf>,
    /// The environment overlays to apply, in order: `--env split,appserver` applies `split`,
    /// then `appserver` over it.
    #[arg(long = "env", global = true, env = "GROVE_ENV", value_name = "NAME")]
    env: Option<String>,
    /// Set one value of the stack file, over the file and its environments: a dotted path
    /// and a value read as TOML, else a string (`--set edge.tls=off`, `--set
    /// services.web.replicas=3`). Repeatable; `GROVE_SET_edge__tls=off` in the environment
    /// does the same (`__` for each dot). `grove check` shows each one and where it came from.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Never colour the output.
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum MaintenanceAction {
    /// Turn it on (every route, unless `--route` names some).
    On {
        /// A route as `grove check` shows it (`/api`, `shop.example.org/`) or a service's
        /// name. Repeatable.
        #[arg(long = "route", value_name = "ROUTE")]
        routes: Vec<String>,
        /// What the 503 page says.
        #[arg(long)]
        message: Option<String>,
        /// The answers' Retry-After (default 60s).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        retry_after: Option<std::time::Duration>,
        /// Clients that still get through (`192.0.2.0/24`, an address). Repeatable.
        #[arg(long, value_name = "NETWORK")]
        allow: Vec<String>,
    },
    /// Turn it off.
    Off,
}

#[derive(Debug, Subcommand)]
enum CaAction {
    /// Print the CA's certificate (what clients trust), or write it with its key to a file
    /// (mode 0600) for another host's `grove ca import`.
    Export {
        /// Include the private key (only into a file: `-o FILE`).
        #[arg(long)]
        key: bool,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Make an exported CA (certificate and key) this stack's own; takes effect at grove's
    /// next start (`grove upgrade` restarts nothing else).
    Import {
        /// The bundle `grove ca export --key -o FILE` wrote.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// Replace a different CA this stack already has (what it signed stops being trusted).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented starter grove.toml.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate the stack file and print its Plan; exit 1 with every error found.
    Check {
        /// Print the Plan (or the errors) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the stack: start every unit by dependency order and supervise it. In the
    /// foreground, output is shown as `unit | line` and Ctrl-C stops everything gracefully.
    Up {
        /// Detach: start a background grove and return once every unit is up (or say which
        /// one failed and why).
        #[arg(short = 'd', long)]
        detach: bool,
        /// With -d, how long to wait for every unit to be up.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
        /// Internal: run as the detached daemon.
        #[arg(long, hide = true)]
        daemon_child: bool,
        /// Internal: a handover's successor (the stopped units stay stopped).
        #[arg(long, hide = true)]
        successor: bool,
        /// Start only these services (or units) and what they depend on; the rest stays
        /// stopped until `grove start` or a plain `grove up`. On a running stack, starts them.
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Stop every unit in reverse dependency order and end the running grove.
    Down,
    /// Show every unit: state, health, pid, port, restarts, uptime, CPU, memory.
    Ps {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start units or services (also retries blocked and failed ones).
    Start {
        /// Unit (`web@turkey`, `web#2`) or service names.
        #[arg(required = true, value_name = "UNIT")]
        targets: Vec<String>,
        /// Return once every unit is ready (healthy, running without a probe, or a completed
        /// task); exit 1 naming the one that was not.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Stop units or services; they stay stopped until started.
    Stop {
        /// Unit or service names.
        #[arg(required = true, value_name = "UNIT")]
        targets: Vec<String>,
    },
    /// Restart units or services (routed ones start-first, one replica at a time: a new unit
    /// beside the old one, traffic moved once it is ready, the old one drained).
    Restart {
        /// Unit or service names.
        #[arg(required = true, value_name = "UNIT")]
        targets: Vec<String>,
        /// Return once every restarted unit is ready again; exit 1 naming the one that was not.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Re-read the stack file and apply only the difference (same as SIGHUP); a file that
    /// fails validation changes nothing.
    Reload {
        /// Return once every added or restarted unit is ready; exit 1 naming the one that was
        /// not.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Show units' output from their log files.
    Logs {
        /// Keep printing new lines, across rotations (`-f` is the stack file).
        #[arg(short = 'F', long)]
        follow: bool,
        /// Lines to show first (default 100; every matching one with --since, --until or
        /// --grep).
        #[arg(short = 'n', long = "lines")]
        lines: Option<usize>,
        /// Only lines from this time on: how long ago (`10m`, `2h`) or a time
        /// (`2026-12-01T09:00:00Z`, `2026-12-01 09:00`, UTC); rotated files are read too.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only lines before this time (as --since).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only lines that contain TEXT (as it is: no pattern).
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Units or services (default: all).
        #[arg(value_name = "UNIT")]
        units: Vec<String>,
    },
    /// Set how many replicas services run, over the stack file's (kept across reloads and
    /// restarts of grove) and apply it as a reload: start-first, one replica at a time.
    Scale {
        /// SERVICE=N (none: show the counts set).
        #[arg(value_name = "SERVICE=N")]
        counts: Vec<String>,
        /// Go back to the stack file's count for these services.
        #[arg(long, value_name = "SERVICE")]
        reset: Vec<String>,
    },
    /// Maintenance mode: the routes answer 503 with a message and Retry-After, except to the
    /// clients it lets through; kept across reloads and restarts of grove. No action: show it.
    Maintenance {
        #[command(subcommand)]
        action: Option<MaintenanceAction>,
    },
    /// List the scheduled jobs (kind = "job"): schedule, state, last run and its outcome,
    /// next run.
    Jobs,
    /// Run a job now, outside its schedule.
    Run {
        /// The job.
        #[arg(value_name = "JOB")]
        job: String,
        /// Return once the run has ended; exit 1 when it failed.
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this long.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Back up the recipes' data (PostgreSQL with pg_dump, one file per database; Redis with
    /// a consistent RDB snapshot; RabbitMQ's definitions), each file verified and recorded as
    /// an event.
    Backup {
        /// Recipe services or units (default: every one).
        #[arg(value_name = "SERVICE")]
        targets: Vec<String>,
        /// Where the files go (default: .grove/backups).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Keep only the newest N backups of each database.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
    /// List the backups.
    Backups {
        /// Where they are (default: .grove/backups).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Restore a backup: a PostgreSQL archive into its database of the running server
    /// (replacing what is there), an RDB file into a stopped Redis (read when it starts),
    /// RabbitMQ definitions into the running node.
    Restore {
        /// The recipe unit.
        #[arg(value_name = "SERVICE")]
        target: String,
        /// The backup file.
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
    },
    /// Watch the running stack: each unit's state, CPU, memory and processes, and each
    /// route's requests, server errors and mean latency per second, refreshed.
    Top {
        /// Print one sample and exit (also when not on a terminal).
        #[arg(long)]
        once: bool,
        /// Time between samples.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
    /// Show the event log: starts, exits, health changes, heals, restarts, reloads.
    Events {
        /// Keep printing new events (`-f` is the stack file).
        #[arg(short = 'F', long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Events to show first.
        #[arg(short = 'n', long = "lines", default_value_t = 50)]
        lines: usize,
        /// Only these units.
        #[arg(value_name = "UNIT")]
        units: Vec<String>,
    },
    /// Run a command in a unit's environment and folder (a shell when none is given).
    Exec {
        /// The unit or service.
        unit: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Print where the local certificate authority of `tls = "self-signed"` is and how to
    /// trust it (it is created when missing).
    Trust,
    /// Share the local certificate authority between hosts: export it from one stack and
    /// import it into the others, so they sign their certificates with one CA and trust each
    /// other's (`https://` upstreams are verified against it unless `upstream_ca` says).
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// List the edge's certificates (files, ACME-issued, the local CA) with their names and
    /// expiry; exits 1 when one is expired, unreadable or does not match its key.
    Certs {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Release a git ref without dropping a request: check it out into .grove/releases/,
    /// build it, start the changed units beside the running ones, switch the edge once they
    /// are healthy, then drain and stop the old ones. A failed step leaves the running release serving.
    Deploy {
        /// The git ref to release (default: [deploy] ref).
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
    },
    /// Go back to the previous deployed release (or RELEASE) the same way as a deploy.
    Rollback {
        /// The release id to go back to (default: the one before the live one).
        release: Option<String>,
    },
    /// List releases: id, ref, commit, time and outcome; the live one says `live`.
    Releases {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the stack as manifests for another engine: Kubernetes (one YAML document per
    /// object) or docker compose. Secret values stay out unless --include-secrets.
    Export {
        /// Where the stack goes.
        #[arg(value_enum)]
        target: ExportTarget,
        /// Output: `-` for stdout (default), a folder for kubernetes (one file per object),
        /// a file for compose.
        #[arg(short = 'o', long = "output", default_value = "-")]
        output: PathBuf,
        /// Write secret values (from .env and the recipes' generated passwords) into the
        /// output instead of leaving them to be filled.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Upgrade grove itself without stopping a unit or dropping a request: the running grove
    /// hands its units and the edge's sockets to a new one started from --binary (default:
    /// its own file, which a package upgrade replaced), finishes its requests and ends; the
    /// new one adopts every unit. SIGUSR2 to grove does the same.
    Upgrade {
        /// The new grove binary.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// How long to wait for the new grove and its units.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        wait_timeout: std::time::Duration,
    },
    /// Write the systemd unit that boots the stack: grove in the foreground as a `Type=notify`
    /// service (READY=1 once every unit has settled, reload on SIGHUP, a watchdog), restarted
    /// always. Printed, or with --install written to the unit folder.
    Systemd {
        /// Write `grove-<stack>.service` into --unit-dir instead of printing it.
        #[arg(long)]
        install: bool,
        /// Where --install writes the unit.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Every unit holds a few descriptors (pipes, pid fd, log file) and the edge one per
/// connection: raise the soft limit to the hard one, as most servers do.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    grove_config::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (try 30s, 2m)"))
}

/// `grove __recipe` (not a user command): the process of a recipe unit. It prepares the
/// server's data folder and replaces itself with the server; it returns only on failure,
/// whose message goes to the unit's log.
fn recipe_child() -> ExitCode {
    let job = match std::env::var(grove_recipes::JOB_VAR)
        .map_err(|e| e.to_string())
        .and_then(|j| serde_json::from_str::<grove_recipes::Job>(&j).map_err(|e| e.to_string()))
    {
        Ok(j) => j,
        Err(e) => {
            eprintln!("grove: __recipe is started by grove for recipe units ({e})");
            return ExitCode::from(2);
        }
    };
    let mut job = job;
    if job.tls_wanted {
        match recipe_tls(&job) {
            Ok(pem) => job.tls = Some(pem),
            Err(e) => {
                eprintln!("grove: the {} recipe cannot start: tls: {e}", job.recipe);
                return ExitCode::from(78);
            }
        }
    }
    let e = grove_recipes::launch::run(&job);
    eprintln!("grove: the {} recipe cannot start: {e}", job.recipe);
    // 78 (EX_CONFIG): a setup problem, not a crash of the server.
    ExitCode::from(78)
}

/// A recipe server's certificate from the stack's CA (`tls = true`): for `localhost`, the
/// loopback addresses, the machine's name, the names the stack file gives
/// (`tls = { names = [...] }`) and the address it binds (every address of the machine when
/// it binds all of them), so clients verify it whichever of those they dial.
fn recipe_tls(job: &grove_recipes::Job) -> Result<(String, String), grove_edge::tls::TlsError> {
    let data = job.data_dir.parent().unwrap_or(&job.data_dir);
    let state = data.parent().unwrap_or(data);
    let mut names: Vec<String> = job.tls_names.clone();
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str().filter(|h| !h.is_empty()) {
            names.push(h.to_string());
        }
    }
    if job.bind.is_unspecified() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let ip = a.address.and_then(|s| {
                    s.as_sockaddr_in()
                        .map(|v4| std::net::IpAddr::V4(v4.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
                });
                if let Some(ip) = ip {
                    names.push(ip.to_string());
                }
            }
        }
    } else {
        names.push(job.bind.to_string());
    }
    names.sort();
    names.dedup();
    grove_edge::tls::signed_pem(state, &names)
}

/// What `grove export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportTarget {
    /// Kubernetes manifests (Deployments, StatefulSets, Jobs, Services, Ingresses, ...).
    Kubernetes,
    /// A docker compose file.
    Compose,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "__recipe") {
        return recipe_child();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == grove_supervisor::shim::SHIM_ARG)
    {
        return grove_supervisor::shim::main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == grove_supervisor::activation::LISTEN_ARG)
    {
        return grove_supervisor::activation::main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == grove_daemon::sockets::HOLDER_ARG)
    {
        return grove_daemon::sockets::main();
    }
    // systemd's notification socket is grove's own: read it before any thread starts, and
    // pass it on to nothing grove runs.
    grove_daemon::sd_notify::take_from_env();
    let cli = Cli::parse();
    // `--set` values travel in grove's own environment (not on command lines, which anyone
    // can read), so the daemon `up -d` starts, a handover's successor and every reload read
    // them too; set before any thread starts.
    if !cli.set.is_empty() {
        if let Err(why) = grove_config::check_sets(&cli.set) {
            eprintln!("grove: {why}");
            return ExitCode::from(2);
        }
        std::env::set_var(grove_config::CLI_SETS_VAR, cli.set.join("\n"));
    }
    let color =
        !cli.no_color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let daemon = matches!(
        cli.command,
        Command::Up {
            daemon_child: true,
            ..
        }
    );
    if daemon {
        // Leave the terminal's session so its signals and hangup do not reach us.
        let _ = nix::unistd::setsid();
    }
    if matches!(cli.command, Command::Up { .. }) {
        raise_open_files_limit();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if daemon { "info" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(cli, color) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grove: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes in one line, each cause said once: libraries that put their
/// cause in their own message (SQLite's, thiserror's `{source}`) are not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

fn stack_path(cli: &Cli) -> PathBuf {
    cli.file
        .clone()
        .unwrap_or_else(|| PathBuf::from("grove.toml"))
}

fn run(cli: Cli, color: bool) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init { force } => {
            let path = stack_path(&cli);
            if path.exists() && !force {
                eprintln!(
                    "grove: {} already exists; use --force to overwrite it",
                    path.display()
                );
                return Ok(ExitCode::from(1));
            }
            std::fs::write(&path, grove_config::STARTER)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote {}; check it with `grove check`, run it with `grove up`",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { json } => check(&cli, *json, color),
        Command::Up {
            detach,
            wait_timeout,
            daemon_child,
            successor,
            services,
        } => {
            let ctx = runtime_ctx(&cli, color);
            if *detach && !daemon_child {
                tokio_rt()?.block_on(up::up_detached(&ctx, *wait_timeout, services))
            } else {
                let only = (!successor).then(|| services.clone());
                tokio_rt()?.block_on(up::up(&ctx, *daemon_child, only))
            }
        }
        Command::Down => tokio_rt()?.block_on(runtime::down(&runtime_ctx(&cli, color))),
        Command::Ps { json } => tokio_rt()?.block_on(runtime::ps(&runtime_ctx(&cli, color), *json)),
        Command::Start {
            targets,
            wait,
            wait_timeout,
        } => tokio_rt()?.block_on(runtime::act(
            &runtime_ctx(&cli, color),
            "start",
            targets.clone(),
            wait.then_some(*wait_timeout),
        )),
        Command::Stop { targets } => tokio_rt()?.block_on(runtime::act(
            &runtime_ctx(&cli, color),
            "stop",
            targets.clone(),
            None,
        )),
        Command::Restart {
            targets,
            wait,
            wait_timeout,
        } => tokio_rt()?.block_on(runtime::act(
            &runtime_ctx(&cli, color),
            "restart",
            targets.clone(),
            wait.then_some(*wait_timeout),
        )),
        Command::Reload { wait, wait_timeout } => tokio_rt()?.block_on(runtime::reload(
            &runtime_ctx(&cli, color),
            wait.then_some(*wait_timeout),
        )),
        Command::Logs {
            follow,
            lines,
            since,
            until,
            grep,
            units,
        } => {
            let now = std::time::SystemTime::now();
            let filter = match history::LogFilter::new(since, until, grep, now) {
                Ok(f) => f,
                Err(why) => {
                    eprintln!("grove: {why}");
                    return Ok(ExitCode::from(2));
                }
            };
            tokio_rt()?.block_on(history::logs(
                &runtime_ctx(&cli, color),
                *follow,
                *lines,
                &filter,
                units.clone(),
            ))
        }
        Command::Scale { .. }
        | Command::Jobs
        | Command::Run { .. }
        | Command::Backup { .. }
        | Command::Backups { .. }
        | Command::Restore { .. }
        | Command::Top { .. }
        | Command::Maintenance { .. }
        | Command::Ca { .. } => run_operator(&cli, color),
        Command::Events {
            follow,
            json,
            lines,
            units,
        } => tokio_rt()?.block_on(history::events(
            &runtime_ctx(&cli, color),
            *follow,
            *json,
            *lines,
            units.clone(),
        )),
        Command::Exec { unit, cmd } => runtime::exec(&runtime_ctx(&cli, color), unit, cmd.clone()),
        Command::Trust => runtime::trust(&runtime_ctx(&cli, color)),
        Command::Certs { json } => runtime::certs(&runtime_ctx(&cli, color), *json),
        Command::Deploy { git_ref } => {
            tokio_rt()?.block_on(deploy::deploy(&runtime_ctx(&cli, color), git_ref.clone()))
        }
        Command::Rollback { release } => {
            tokio_rt()?.block_on(deploy::rollback(&runtime_ctx(&cli, color), release.clone()))
        }
        Command::Releases { json } => deploy::releases(&runtime_ctx(&cli, color), *json),
        Command::Export {
            target,
            output,
            include_secrets,
        } => runtime::export(
            &runtime_ctx(&cli, color),
            *target == ExportTarget::Kubernetes,
            output,
            *include_secrets,
        ),
        Command::Upgrade {
            binary,
            wait_timeout,
        } => tokio_rt()?.block_on(upgrade::run(
            &runtime_ctx(&cli, color),
            binary.as_deref(),
            *wait_timeout,
        )),
        Command::Systemd { install, unit_dir } => {
            systemd::run(&runtime_ctx(&cli, color), *install, unit_dir)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "grove", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime_ctx(cli: &Cli, color: bool) -> runtime::Ctx {
    runtime::Ctx {
        file: stack_path(cli),
        env: cli.env.clone(),
        color,
        err_color: !cli.no_color && std::io::stderr().is_terminal(),
    }
}

/// The operator's commands (scale, jobs, backups, top, the shared CA): `run` hands them here.
fn run_operator(cli: &Cli, color: bool) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Scale { counts, reset } => tokio_rt()?.block_on(scale::scale(
            &runtime_ctx(cli, color),
            counts.clone(),
            reset.clone(),
        )),
        Command::Jobs => tokio_rt()?.block_on(jobs::list(&runtime_ctx(cli, color))),
        Command::Run {
            job,
            wait,
            wait_timeout,
        } => tokio_rt()?.block_on(jobs::run(
            &runtime_ctx(cli, color),
            job,
            wait.then_some(*wait_timeout),
        )),
        Command::Backup { targets, dir, keep } => tokio_rt()?.block_on(backup::backup(
            &runtime_ctx(cli, color),
            targets.clone(),
            dir.as_deref(),
            *keep,
        )),
        Command::Backups { dir } => backup::backups(&runtime_ctx(cli, color), dir.as_deref()),
        Command::Restore { target, backup } => {
            tokio_rt()?.block_on(backup::restore(&runtime_ctx(cli, color), target, backup))
        }
        Command::Top { once, interval } => {
            tokio_rt()?.block_on(top::top(&runtime_ctx(cli, color), *once, *interval))
        }
        Command::Maintenance { action } => {
            let asked = match action {
                None => maintenance::Asked::Show,
                Some(MaintenanceAction::Off) => maintenance::Asked::Off,
                Some(MaintenanceAction::On {
                    routes,
                    message,
                    retry_after,
                    allow,
                }) => maintenance::Asked::On(maintenance::settings(
                    routes.clone(),
                    message.clone(),
                    *retry_after,
                    allow.clone(),
                )),
            };
            tokio_rt()?.block_on(maintenance::run(&runtime_ctx(cli, color), asked))
        }
        Command::Ca { action } => match action {
            CaAction::Export { key, output } => {
                runtime::ca_export(&runtime_ctx(cli, color), *key, output.as_deref())
            }
            CaAction::Import { bundle, force } => {
                runtime::ca_import(&runtime_ctx(cli, color), bundle, *force)
            }
        },
        // `run` sends only the commands above.
        _ => Ok(ExitCode::from(2)),
    }
}

/// The runtime for commands that do I/O: two workers are plenty, and worker threads live as
/// long as the process (the parent-death signal of units depends on that).
/// One worker per CPU this process may run on (taskset and cgroup limits count), so a grove
/// pinned to one core does not pay for threads that can only take turns.
fn tokio_rt() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus.clamp(1, 16))
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check(cli: &Cli, json: bool, color: bool) -> anyhow::Result<ExitCode> {
    let path = stack_path(cli);
    let opts = grove_config::LoadOptions::from_process(cli.env.clone());
    let loaded = match grove_config::load(&path, &opts) {
        Ok(l) => l,
        Err(errors) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&render::errors_json(&errors))?
                );
            } else {
                let err_color = !cli.no_color && std::io::stderr().is_terminal();
                eprint!("{}", errors.render(err_color));
                eprintln!("grove: {errors}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let plan = match grove_plan::build(&loaded.stack, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("grove: {}: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    };
    // Certificate files are read as `up` will read them: missing, unreadable, expired or
    // mismatched ones fail the check, not the start.
    if let grove_plan::Tls::Files { certs } = &plan.edge.tls {
        let mut bad = false;
        for pair in certs {
            let (cert, key) = (plan.root.join(&pair.cert), plan.root.join(&pair.key));
            if let Err(e) = grove_edge::tls::load_files(&cert, &key) {
                eprintln!("grove: {}: edge.tls: {e}", path.display());
                bad = true;
            }
        }
        if bad {
            return Ok(ExitCode::from(1));
        }
    }
    // A secret on a command line is visible to every user of the machine (`ps`, /proc).
    let secrets = plan.secret_values();
    for u in plan.units.values() {
        if let grove_plan::Run::Command { argv } = &u.run {
            if argv
                .iter()
                .any(|a| secrets.iter().any(|s| a.contains(s.as_str())))
            {
                eprintln!(
                    "grove: warning: {}'s command line carries a secret value, which every user of \
                     this machine can read in `ps`; pass it through the environment instead (set it in \
                     the service's `env` and write `$$NAME` in the command, or read it in the \
                     program)",
                    u.name
                );
            }
        }
    }
    let shown = plan.redacted();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
    } else {
        let fixed = |service: &str| {
            loaded
                .stack
                .services
                .get(service)
                .is_some_and(|s| matches!(s.port, grove_config::PortSpec::Fixed(_)))
        };
        for o in &loaded.stack.overrides {
            let value = grove_plan::scrub(&o.value, &secrets);
            writeln!(out, "set {} = {value} (from {})", o.path, o.origin)?;
        }
        write!(out, "{}", render::plan(&shown, color, &fixed))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_argument_takes_a_global_ones_name() {
        // clap merges a subcommand's argument with a global one of the same id: `grove ca
        // import FILE` once set the stack file, `grove scale web=3` once set --set.
        let cmd = Cli::command();
        let globals: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        fn walk(c: &clap::Command, globals: &[String]) {
            for sub in c.get_subcommands() {
                for a in sub.get_arguments() {
                    let id = a.get_id().to_string();
                    assert!(
                        !globals.contains(&id) || a.is_global_set(),
                        "`{}` has an argument `{id}` named like a global one",
                        sub.get_name()
                    );
                }
                walk(sub, globals);
            }
        }
        walk(&cmd, &globals);
    }

    #[test]
    fn error_text_says_each_cause_once() {
        let io = std::io::Error::other("unable to open database file");
        let e = anyhow::Error::new(io).context("state store x.db: unable to open database file");
        assert_eq!(
            error_text(&e),
            "state store x.db: unable to open database file"
        );
        let e = anyhow::anyhow!("disk full").context("cannot write log");
        assert_eq!(error_text(&e), "cannot write log: disk full");
    }
}
