//! `grove maintenance on|off`: maintenance mode, kept in the state store (so it holds across
//! reloads and restarts of grove) and, when grove runs, applied at the edge at once through
//! the API.

use std::process::ExitCode;
use std::time::Duration;

use grove_engine::Status;
use grove_plan::{Maintenance, MAINTENANCE_KEY};

use grove_daemon::{open_store, read_store};

use crate::runtime::Ctx;

/// What `grove maintenance` was asked.
#[derive(Debug)]
pub enum Asked {
    Show,
    On(Maintenance),
    Off,
}

/// `retry_after` in whole seconds (at least one).
pub fn settings(
    routes: Vec<String>,
    message: Option<String>,
    retry_after: Option<Duration>,
    allow: Vec<String>,
) -> Maintenance {
    Maintenance {
        routes,
        message,
        retry_after_secs: retry_after.map(|d| d.as_secs().max(1)),
        allow,
    }
}

pub async fn run(ctx: &Ctx, asked: Asked) -> anyhow::Result<ExitCode> {
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(ExitCode::from(1));
        }
    };
    let client = ctx.client();
    let running = client.get::<Status>("/v1/status").await.is_ok();
    let wanted = match asked {
        Asked::Show => {
            let now: Option<Maintenance> = if running {
                client.get("/v1/maintenance").await.ok().flatten()
            } else {
                read_store(&loaded.state)
                    .ok()
                    .flatten()
                    .and_then(|s| s.get::<Option<Maintenance>>(MAINTENANCE_KEY).ok().flatten())
                    .flatten()
            };
            println!("{}", describe(now.as_ref()));
            return Ok(ExitCode::SUCCESS);
        }
        Asked::On(m) => {
            let plan = match grove_plan::build(&loaded.stack, None) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("grove: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            if let Some(bad) = unknown_route(&plan, &m.routes) {
                eprintln!("grove: {bad}");
                return Ok(ExitCode::from(1));
            }
            if let Err(why) = grove_edge::Edge::check_maintenance(&m) {
                eprintln!("grove: --allow: {why}");
                return Ok(ExitCode::from(1));
            }
            Some(m)
        }
        Asked::Off => None,
    };
    if running {
        match client
            .post::<_, Option<Maintenance>>("/v1/maintenance", &wanted)
            .await
        {
            Ok(_) => println!("{}", describe(wanted.as_ref())),
            Err(e) => {
                eprintln!("grove: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        let store = open_store(&loaded.state)?;
        store.set(MAINTENANCE_KEY, &wanted)?;
        println!(
            "{} (grove is not running: from its next start)",
            describe(wanted.as_ref())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--route` that names no route of `plan`, said with the routes there are.
fn unknown_route(plan: &grove_plan::Plan, routes: &[String]) -> Option<String> {
    for r in routes {
        let known = plan.routes.iter().any(|x| {
            Maintenance {
                routes: vec![r.clone()],
                ..Default::default()
            }
            .covers(&x.key(), Some(&x.service))
        });
        if !known {
            let there: Vec<String> = plan.routes.iter().map(|x| x.key()).collect();
            return Some(format!(
                "no route `{r}`: name one as `grove check` shows it (HOST/PREFIX, /PREFIX) or its service; the routes are {}",
                there.join(", ")
            ));
        }
    }
    None
}

/// One line: what maintenance covers and says, or that it is off.
fn describe(m: Option<&Maintenance>) -> String {
    let Some(m) = m else {
        return "maintenance is off".to_string();
    };
    let routes = if m.routes.is_empty() {
        "every route".to_string()
    } else {
        m.routes.join(", ")
    };
    let mut s = format!(
        "maintenance is on for {routes}: 503 \"{}\", Retry-After {} s",
        m.message
            .as_deref()
            .unwrap_or("down for maintenance: back soon"),
        m.retry_after_secs.unwrap_or(60)
    );
    if !m.allow.is_empty() {
        s.push_str(&format!("; let through: {}", m.allow.join(", ")));
    }
    s
}
