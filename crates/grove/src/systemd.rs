//! `grove systemd [--install]`: the unit file that boots the stack the way servers boot, with
//! grove in the foreground speaking systemd's notification protocol
//! (`grove_daemon::sd_notify`).
//!
//! The file is decided by [`unit_file`] (pure, tested); writing it is the only effect.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::runtime::Ctx;

/// What the unit file needs to know about the stack and this grove.
#[derive(Debug)]
pub(crate) struct UnitFacts<'a> {
    pub stack: &'a str,
    /// This grove binary, absolute.
    pub grove: &'a Path,
    /// The stack file, absolute.
    pub file: &'a Path,
    pub env: Option<&'a str>,
    /// `--set` values (never a secret: those are refused on a command line).
    pub sets: &'a [String],
    /// The longest time stopping every unit can take (each level in turn, its longest grace).
    pub stop_ms: u64,
}

/// The unit's name: `grove-<stack>.service`.
pub(crate) fn unit_name(stack: &str) -> String {
    format!("grove-{stack}.service")
}

/// A word for a unit file's command line: quoted when it holds what systemd would split or
/// expand.
fn word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        return s.to_string();
    }
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{escaped}\"")
}

/// The unit file.
pub(crate) fn unit_file(f: &UnitFacts<'_>) -> String {
    let grove = word(&f.grove.display().to_string());
    let file = word(&f.file.display().to_string());
    let folder = f.file.parent().unwrap_or(Path::new("/"));
    let env = f
        .env
        .map(|e| format!(" --env {}", word(e)))
        .unwrap_or_default();
    let sets: String = f
        .sets
        .iter()
        .map(|s| format!(" --set {}", word(s)))
        .collect();
    // Every unit's grace, level by level, and a margin for grove's own work.
    let stop_secs = f.stop_ms.div_ceil(1000) + 30;
    format!(
        "# written by `grove systemd` for the stack {stack}: {path}\n\
[Unit]\n\
Description=grove stack {stack}\n\
After=network-online.target\n\
Wants=network-online.target\n\
\n\
[Service]\n\
# grove says READY=1 once every unit has settled, RELOADING=1 around a reload, STOPPING=1\n\
# before it stops the units, and WATCHDOG=1 at half of WatchdogSec.\n\
Type=notify\n\
NotifyAccess=main\n\
ExecStart={grove} -f {file}{env}{sets} up\n\
ExecReload=/bin/kill -HUP $MAINPID\n\
WorkingDirectory={folder}\n\
Restart=always\n\
RestartSec=1\n\
WatchdogSec=30\n\
# grove stops its units itself, each with its stop signal and grace, in reverse dependency\n\
# order: systemd signals only grove, and waits for that.\n\
KillMode=process\n\
TimeoutStopSec={stop_secs}\n\
# grove gives each unit process its own cgroup below the service's.\n\
Delegate=yes\n\
LimitNOFILE=65536\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        stack = f.stack,
        path = f.file.display(),
        folder = word(&folder.display().to_string()),
    )
}

/// How long stopping every unit can take: per level of the stop order, its longest grace.
pub(crate) fn stop_time_ms(plan: &grove_plan::Plan) -> u64 {
    plan.levels
        .iter()
        .map(|level| {
            level
                .iter()
                .filter_map(|u| plan.units.get(u))
                .map(|u| u.stop_grace_ms)
                .max()
                .unwrap_or(0)
        })
        .sum()
}

/// `grove systemd [--install] [--unit-dir DIR]`.
pub fn run(ctx: &Ctx, install: bool, unit_dir: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(ExitCode::from(1));
        }
    };
    let plan = match grove_plan::build(&loaded.stack, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("grove: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let grove = std::env::current_exe().context("cannot find this grove binary")?;
    let file = absolute(&ctx.file)?;
    let text = unit_file(&UnitFacts {
        stack: &plan.stack,
        grove: &grove,
        file: &file,
        env: ctx.env.as_deref(),
        sets: &grove_config::LoadOptions::from_process(None).sets,
        stop_ms: stop_time_ms(&plan),
    });
    if !install {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let name = unit_name(&plan.stack);
    let path = unit_dir.join(&name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("start it at boot and now: systemctl daemon-reload && systemctl enable --now {name}");
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("cannot find {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_file_boots_the_stack_in_the_foreground() {
        let text = unit_file(&UnitFacts {
            stack: "cts",
            grove: Path::new("/usr/local/bin/grove"),
            file: Path::new("/srv/cts/grove.toml"),
            env: Some("staging"),
            sets: &[
                "edge.tls=off".to_string(),
                "services.web.env.GREETING=hi there".to_string(),
            ],
            stop_ms: 12_500,
        });
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "ExecStart=/usr/local/bin/grove -f /srv/cts/grove.toml --env staging --set edge.tls=off --set \"services.web.env.GREETING=hi there\" up",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "WorkingDirectory=/srv/cts",
            "Restart=always",
            "WatchdogSec=30",
            "KillMode=process",
            "TimeoutStopSec=43",
            "Delegate=yes",
            "WantedBy=multi-user.target",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert_eq!(unit_name("cts"), "grove-cts.service");
    }

    #[test]
    fn words_systemd_would_split_or_expand_are_quoted() {
        assert_eq!(word("/srv/a-b/grove.toml"), "/srv/a-b/grove.toml");
        assert_eq!(word("/srv/my stack/g.toml"), "\"/srv/my stack/g.toml\"");
        assert_eq!(word("/srv/100%/$x"), "\"/srv/100%%/$$x\"");
        assert_eq!(word(""), "\"\"");
    }
}
