//! The Plan's first phases: services expanded into unit slots, ports assigned, each unit
//! rendered (command, folder, environment, probe), the databases dependents ask for, secrets
//! marked, dependencies linked, start levels.

use super::*;

/// Phase 1: every service expanded into unit slots, per instance and replica (remote
/// upstreams run nothing).
pub(super) fn slots(stack: &Stack) -> Vec<Slot<'_>> {
    let mut slots: Vec<Slot<'_>> = Vec::new();
    for svc in stack.services.values() {
        if matches!(svc.source, Source::Upstreams(_)) {
            continue;
        }
        let instances: Vec<Option<&Instance>> = if svc.for_each_instance {
            stack.instances.values().map(Some).collect()
        } else {
            vec![None]
        };
        for inst in instances {
            for r in 1..=svc.replicas {
                slots.push(Slot {
                    name: unit_name(&svc.name, inst.map(|i| i.name.as_str()), r, svc.replicas),
                    service: svc,
                    instance: inst,
                    replica: r,
                });
            }
        }
    }
    slots
}

/// Phase 2: ports, fixed first, then automatic ones, stable per unit name: a unit keeps its
/// sticky port while it is free, else gets the first free one from a hash of its name.
pub(super) fn assign_ports(
    stack: &Stack,
    inputs: &Inputs,
    slots: &[Slot<'_>],
) -> Result<BTreeMap<String, u16>, PlanError> {
    let sticky = &inputs.ports;
    let (low, high) = stack.ports;
    let mut taken: BTreeSet<u16> = inputs.avoid.clone();
    for l in stack
        .edge
        .listen
        .iter()
        .chain(stack.edge.forward.iter().map(|f| &f.listen))
    {
        taken.insert(l.addr.port());
    }
    let mut ports: BTreeMap<String, u16> = BTreeMap::new();
    for s in slots {
        if let PortSpec::Fixed(p) = s.service.port {
            ports.insert(s.name.clone(), p);
            taken.insert(p);
        }
    }
    let mut auto: Vec<&Slot<'_>> = slots
        .iter()
        .filter(|s| s.service.port == PortSpec::Auto)
        .collect();
    auto.sort_by(|a, b| a.name.cmp(&b.name));
    // Units that existed before keep their port when it is still free.
    let mut pending = Vec::new();
    for s in auto {
        let kept = sticky
            .get(&s.name)
            .copied()
            .filter(|p| *p >= low && *p <= high && !taken.contains(p));
        match kept {
            Some(p) => {
                taken.insert(p);
                ports.insert(s.name.clone(), p);
            }
            None => pending.push(s),
        }
    }
    let size = u64::from(high - low) + 1;
    for s in pending {
        let start = fnv(&format!("{}/{}", stack.name, s.name)) % size;
        let mut found = None;
        for i in 0..size {
            let p = low + ((start + i) % size) as u16;
            if !taken.contains(&p) {
                found = Some(p);
                break;
            }
        }
        let p = found.ok_or_else(|| PlanError::PortsExhausted(low, high, s.name.clone()))?;
        taken.insert(p);
        ports.insert(s.name.clone(), p);
    }
    Ok(ports)
}

/// The unit of one slot (`None` for remote upstreams, which run nothing): its command or
/// recipe, folder, environment and probe, with every template rendered.
pub(super) fn unit_of(
    stack: &Stack,
    inputs: &Inputs,
    s: &Slot<'_>,
    ports: &BTreeMap<String, u16>,
    asked: &RefCell<Vec<Asked>>,
) -> Result<Option<Unit>, PlanError> {
    let credentials = &inputs.credentials;
    let svc = s.service;
    let port = ports.get(&s.name).copied();
    let ctx = Ctx {
        stack,
        unit: &s.name,
        port,
        bind: svc.bind,
        instance: s.instance,
        ports,
        credentials,
        asked,
    };
    let run = match &svc.source {
        Source::Command(argv) => Run::Command {
            argv: argv
                .iter()
                .map(|t| ctx.render(t))
                .collect::<Result<_, _>>()?,
        },
        Source::Recipe(r) => Run::Recipe {
            recipe: *r,
            spec: recipe_spec(stack, svc, *r, &s.name, credentials)?,
        },
        Source::Upstreams(_) => return Ok(None),
    };
    let cwd = match &svc.cwd {
        Some(t) => PathBuf::from(ctx.render(t)?),
        None => PathBuf::from("."),
    };
    // Application code comes from the deployed release; backing servers and absolute
    // folders stay where they are.
    let release = match (&inputs.release, &run) {
        (Some(r), Run::Command { .. }) if cwd.is_relative() => Some(r),
        _ => None,
    };
    let cwd = match release {
        Some(r) => r.dir.join(&cwd),
        None => cwd,
    };
    let mut env = IndexMap::new();
    for (k, v) in &svc.env {
        env.insert(
            k.clone(),
            EnvVar {
                value: ctx.render(&v.value)?,
                secret: v.secret,
            },
        );
    }
    let plain = |v: String| EnvVar {
        value: v,
        secret: false,
    };
    if let Some(p) = port {
        env.entry("PORT".into())
            .or_insert_with(|| plain(p.to_string()));
        env.entry("HOST".into())
            .or_insert_with(|| plain(svc.bind.to_string()));
    }
    env.insert("GROVE_STACK".into(), plain(stack.name.clone()));
    env.insert("GROVE_SERVICE".into(), plain(svc.name.clone()));
    env.insert("GROVE_UNIT".into(), plain(s.name.clone()));
    if let Some(i) = s.instance {
        env.insert("GROVE_INSTANCE".into(), plain(i.name.clone()));
    }
    if let Some(e) = &stack.environment {
        env.insert("GROVE_ENV".into(), plain(e.clone()));
    }
    if let Some(r) = release {
        env.insert("GROVE_RELEASE".into(), plain(r.id.clone()));
    }
    let addr = port.map(|p| host_port(&client_host(svc.bind), p));
    let health = probe_of(svc, &ctx, addr)?;
    // Absolute: the same folders whatever the process's own folder.
    let search_path: Vec<PathBuf> = svc
        .path
        .iter()
        .map(|p| stack.root.join(&cwd).join(p))
        .collect();
    Ok(Some(Unit {
        name: s.name.clone(),
        service: svc.name.clone(),
        instance: s.instance.map(|i| i.name.clone()),
        replica: s.replica,
        kind: svc.kind,
        run,
        cwd,
        env,
        port,
        bind: svc.bind,
        health,
        restart: Restart {
            policy: svc.restart.policy,
            backoff_ms: ms(svc.restart.backoff),
            max_backoff_ms: ms(svc.restart.max_backoff),
            max_restarts: svc.restart.max_restarts,
        },
        stop_signal: svc.stop_signal.clone(),
        stop_grace_ms: ms(svc.stop_grace),
        replace: svc.replace,
        max_surge: svc.max_surge,
        socket: svc.socket,
        path: search_path,
        backup: svc.recipe.backup.as_ref().map(|b| crate::BackupPlan {
            when: crate::Job {
                schedule: b.schedule.clone(),
                timezone: b.timezone.clone(),
                concurrency: crate::Concurrency::Forbid,
                timeout_ms: None,
            },
            keep: b.keep,
            dir: match &b.dir {
                Some(d) => stack.root.join(d),
                None => stack.root.join(&stack.state_dir).join("backups"),
            },
        }),
        job: svc.job.as_ref().map(|j| crate::Job {
            schedule: j.schedule.clone(),
            timezone: j.timezone.clone(),
            concurrency: j.concurrency,
            timeout_ms: j.timeout.map(ms),
        }),
        limits: crate::Limits {
            memory: svc.limits.memory,
            cpu_milli: svc.limits.cpu.map(|c| (c * 1000.0).round() as u32),
            pids: svc.limits.pids,
            nofile: svc.limits.nofile,
        },
        run_as: crate::RunAs {
            user: svc.run_as.user.clone(),
            group: svc.run_as.group.clone(),
            umask: svc.run_as.umask,
        },
        depends_on: Vec::new(),
        level: 0,
        image: svc.image.clone(),
        release: release.map(|r| r.id.clone()),
    }))
}

/// A unit's probe: its `health` rendered against its address, or a recipe's own check.
fn probe_of(
    svc: &Service,
    ctx: &Ctx<'_>,
    addr: Option<String>,
) -> Result<Option<Probe>, PlanError> {
    let probe = match &svc.health {
        Some(h) => {
            let check = match &h.check {
                Check::Http(path) => ProbeCheck::Http {
                    addr: addr.clone().unwrap_or_default(),
                    path: ctx.render(path)?,
                    status: h.status.clone(),
                },
                Check::Tcp(None) => ProbeCheck::Tcp {
                    addr: addr.clone().unwrap_or_default(),
                },
                Check::Tcp(Some(t)) => ProbeCheck::Tcp {
                    addr: ctx.render(t)?,
                },
                Check::Exec(argv) => ProbeCheck::Exec {
                    argv: argv
                        .iter()
                        .map(|t| ctx.render(t))
                        .collect::<Result<_, _>>()?,
                },
            };
            Some(Probe {
                check,
                interval_ms: ms(h.interval),
                timeout_ms: ms(h.timeout),
                retries: h.retries,
                start_period_ms: ms(h.start_period),
            })
        }
        // A recipe's own check; failures while the server boots (RabbitMQ's Erlang VM,
        // PostgreSQL's recovery after a crash) do not count, so autoheal never kills a
        // server that is still starting.
        None if matches!(svc.source, Source::Recipe(_)) => Some(Probe {
            check: ProbeCheck::Recipe,
            interval_ms: 2000,
            timeout_ms: 5000,
            retries: 3,
            start_period_ms: match svc.source {
                Source::Recipe(Recipe::Rabbitmq) => 180_000,
                Source::Recipe(Recipe::Postgres | Recipe::Mongodb) => 120_000,
                _ => 30_000,
            },
        }),
        None => None,
    };
    Ok(probe)
}

/// Phase 3b: the databases dependents asked for by appending `/NAME` to a recipe's URL; and
/// every variable that carries a generated password or another secret's value is secret.
pub(super) fn databases_and_secrets(units: &mut IndexMap<String, Unit>, asked: Vec<Asked>) {
    for a in asked {
        if let Some(Unit {
            run: Run::Recipe { spec, .. },
            ..
        }) = units.get_mut(&a.server)
        {
            let db = Database {
                name: a.database,
                owner: a.owner,
                private: false,
            };
            if !spec.databases.iter().any(|d| d.name == db.name) {
                spec.databases.push(db);
            }
        }
    }
    let mut passwords: Vec<String> = Vec::new();
    for u in units.values_mut() {
        if let Run::Recipe { spec, .. } = &mut u.run {
            spec.databases.sort();
            passwords.extend(spec.passwords().map(str::to_string));
        }
    }
    // A value that carries a secret one (a URL built from a `secret = true` value, say) is a
    // secret as well, whichever unit it is in.
    for u in units.values() {
        passwords.extend(u.env.values().filter(|v| v.secret).map(|v| v.value.clone()));
    }
    passwords.retain(|p| p.len() >= 4);
    for u in units.values_mut() {
        for v in u.env.values_mut() {
            if passwords.iter().any(|p| v.value.contains(p.as_str())) {
                v.secret = true;
            }
        }
    }
}

/// Phase 4: dependencies between units: the same instance's when both are per instance,
/// else every unit of the service depended on.
pub(super) fn link_dependencies(stack: &Stack, units: &mut IndexMap<String, Unit>) {
    let names: Vec<String> = units.keys().cloned().collect();
    for name in &names {
        let Some(unit) = units.get(name) else {
            continue;
        };
        let Some(svc) = stack.services.get(&unit.service) else {
            continue;
        };
        let inst = unit.instance.clone();
        let mut deps = Vec::new();
        for (dep, cond) in &svc.depends_on {
            let Some(dsvc) = stack.services.get(dep) else {
                continue;
            };
            for du in units.values().filter(|u| &u.service == dep) {
                if dsvc.for_each_instance && inst.is_some() && du.instance != inst {
                    continue;
                }
                deps.push(Dependency {
                    unit: du.name.clone(),
                    condition: *cond,
                });
            }
        }
        if let Some(u) = units.get_mut(name) {
            u.depends_on = deps;
        }
    }
}

/// Phase 5: start levels (the stack has no cycles; the passes are bounded anyway).
pub(super) fn assign_levels(units: &mut IndexMap<String, Unit>) -> Vec<Vec<String>> {
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..=units.len() {
        let mut changed = false;
        for u in units.values() {
            let l = u
                .depends_on
                .iter()
                .map(|d| level.get(&d.unit).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            if level.get(&u.name) != Some(&l) {
                level.insert(u.name.clone(), l);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = level.values().copied().max().map(|m| m + 1).unwrap_or(0);
    let mut levels = vec![Vec::new(); depth];
    for u in units.values_mut() {
        u.level = level.get(&u.name).copied().unwrap_or(0);
        if let Some(l) = levels.get_mut(u.level) {
            l.push(u.name.clone());
        }
    }
    levels
}
