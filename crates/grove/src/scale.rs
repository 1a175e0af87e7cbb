//! `grove scale`: replica counts kept in the store over the stack file's, which the
//! daemon's loader applies at every start and reload (as `--set` values from `grove scale`).

use std::path::Path;
use std::process::ExitCode;

use grove_engine::Status;

use grove_daemon::{open_store, read_store};

use crate::runtime::{reload, Ctx};

/// The replica counts `grove scale` set, from the store of `state` (none when it has none).
pub(crate) fn scales(state: &Path) -> std::collections::BTreeMap<String, u32> {
    read_store(state)
        .ok()
        .flatten()
        .and_then(|s| {
            s.get::<std::collections::BTreeMap<String, u32>>("scale")
                .ok()
                .flatten()
        })
        .unwrap_or_default()
}

/// `grove scale [SERVICE=N...] [--reset SERVICE...]`: replica counts kept over the stack
/// file's (in the store: across reloads and restarts of grove), applied by a reload.
pub async fn scale(ctx: &Ctx, set: Vec<String>, reset: Vec<String>) -> anyhow::Result<ExitCode> {
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut kept = scales(&loaded.state);
    if set.is_empty() && reset.is_empty() {
        if kept.is_empty() {
            println!("no service is scaled: each runs the replicas the stack file says");
        }
        for (s, n) in &kept {
            println!("{s}={n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for given in &set {
        let parsed = given
            .split_once('=')
            .and_then(|(s, n)| Some((s.trim().to_string(), n.trim().parse::<u32>().ok()?)));
        let Some((service, n)) = parsed.filter(|(_, n)| (1..=64).contains(n)) else {
            eprintln!("grove: scale `{given}`: expected SERVICE=N with N from 1 to 64 (`grove stop SERVICE` stops it)");
            return Ok(ExitCode::from(2));
        };
        let runs = loaded.stack.services.get(&service).is_some_and(|s| {
            matches!(s.source, grove_config::Source::Command(_))
                && s.kind == grove_config::ServiceKind::Service
        });
        if !runs {
            eprintln!("grove: scale `{given}`: `{service}` is not a long-running service that runs a command");
            return Ok(ExitCode::from(1));
        }
        kept.insert(service, n);
    }
    for service in &reset {
        kept.remove(service);
    }
    let store = open_store(&loaded.state)?;
    store.set("scale", &kept)?;
    drop(store);
    for (s, n) in &kept {
        println!("{s}={n}");
    }
    match ctx.client().get::<Status>("/v1/status").await {
        Ok(_) => reload(ctx, None).await,
        Err(_) => {
            println!("grove is not running: the counts apply at the next `grove up`");
            Ok(ExitCode::SUCCESS)
        }
    }
}
