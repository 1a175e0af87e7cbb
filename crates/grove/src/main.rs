//! # grove: the binary
//!
//! Owns the command line: parsing arguments, finding the stack file, wiring the libraries
//! together and turning their results into output and exit codes (0 success, 1 refused,
//! 2 usage). It is the only crate that uses `anyhow`. It must not hold logic that another
//! reader of the Plan would need: that belongs in the library crates.

#![forbid(unsafe_code)]

mod render;

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
    /// The environment overlay to apply.
    #[arg(long = "env", global = true, env = "GROVE_ENV", value_name = "NAME")]
    env: Option<String>,
    /// Never colour the output.
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
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
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color =
        !cli.no_color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    match run(cli, color) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grove: {e:#}");
            ExitCode::from(1)
        }
    }
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
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "grove", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
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
    let shown = plan.redacted();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
    } else {
        write!(out, "{}", render::plan(&shown, color))?;
    }
    Ok(ExitCode::SUCCESS)
}
