//! Backing services as Kubernetes objects: a StatefulSet per recipe with its Service and
//! credentials, and the Job that creates the databases dependents ask for.

use super::*;

/// A recipe: its credentials Secret, headless Service and StatefulSet, and the Job that
/// creates what dependents ask for.
pub(super) fn recipe(
    m: &Model<'_>,
    w: &Workload<'_>,
    opts: &Options,
    out: &mut Out,
) -> Result<(), ExportError> {
    let Some((r, spec)) = w.recipe else {
        return Ok(());
    };
    out.notes.extend(crate::model::recipe_network_notes(w));
    let l = labels(&m.plan.stack, w.service, w.instance);
    let passwords = m.recipe_passwords(w);
    let admin_ref = passwords.iter().find(|p| p.key == "password");
    if !passwords.is_empty() {
        let values: BTreeMap<String, String> = passwords
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        secret_object(
            out,
            &format!("{}-credentials", w.name),
            l,
            &values,
            opts,
            format!(
                "{}: the {} recipe's generated passwords",
                source(w),
                r.name()
            ),
        )?;
    }
    recipe_service(m, w, r, out)?;
    let container = recipe_container(w, r, spec, admin_ref);
    recipe_statefulset(m, w, r, container, out)?;
    if needs_init_job(w) {
        init_job(m, w, r, spec, &passwords, out)?;
    }
    Ok(())
}

/// A recipe's headless Service on its standard port.
fn recipe_service(
    m: &Model<'_>,
    w: &Workload<'_>,
    r: Recipe,
    out: &mut Out,
) -> Result<(), ExportError> {
    let stack = &m.plan.stack;
    let port = w.port.unwrap_or(0);
    out.push(
        format!("Service/{}", w.name),
        vec![format!(
            "{}: headless Service of the {} recipe",
            source(w),
            r.name()
        )],
        &Service {
            metadata: meta(&w.name, labels(stack, w.service, w.instance)),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                selector: Some(selector(stack, w.service, w.instance)),
                ports: Some(vec![ServicePort {
                    name: Some(r.name().into()),
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(port))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// A recipe's variables, arguments and readiness check, as its upstream image wants them.
fn recipe_settings(
    r: Recipe,
    spec: &grove_plan::RecipeSpec,
    admin_ref: Option<&PasswordRef>,
    port: u16,
) -> (Vec<EnvVar>, Option<Vec<String>>, Probe) {
    let mut env = Vec::new();
    let mut args: Option<Vec<String>> = None;
    let pw_env = |var: &str| admin_ref.map(|p| secret_env(var, &p.secret, &p.key));
    let check = match r {
        Recipe::Postgres => {
            env.push(plain_env("POSTGRES_USER", &spec.admin.user));
            env.extend(pw_env("POSTGRES_PASSWORD"));
            env.push(plain_env("POSTGRES_DB", &spec.admin.user));
            env.push(plain_env("PGDATA", "/var/lib/postgresql/data/pgdata"));
            Probe {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "pg_isready".into(),
                        "-U".into(),
                        spec.admin.user.clone(),
                    ]),
                }),
                ..Default::default()
            }
        }
        Recipe::Redis => {
            env.extend(pw_env("REDIS_PASSWORD"));
            let mut a = vec!["redis-server".to_string()];
            if admin_ref.is_some() {
                a.extend(["--requirepass".into(), "$(REDIS_PASSWORD)".into()]);
            }
            if !spec.persistence {
                a.extend(["--save".into(), String::new()]);
            }
            args = Some(a);
            tcp_check(port)
        }
        Recipe::Rabbitmq => {
            env.push(plain_env("RABBITMQ_DEFAULT_USER", &spec.admin.user));
            env.extend(pw_env("RABBITMQ_DEFAULT_PASS"));
            tcp_check(port)
        }
        Recipe::Memcached | Recipe::Mongodb => tcp_check(port),
    };
    (env, args, check)
}

/// A recipe's container: the upstream image, its settings, probes and data mount.
fn recipe_container(
    w: &Workload<'_>,
    r: Recipe,
    spec: &grove_plan::RecipeSpec,
    admin_ref: Option<&PasswordRef>,
) -> Container {
    let port = w.port.unwrap_or(0);
    let (env, args, check) = recipe_settings(r, spec, admin_ref, port);
    let h = w.unit.health.clone().unwrap_or(grove_plan::Probe {
        check: ProbeCheck::Recipe,
        interval_ms: 2000,
        timeout_ms: 5000,
        retries: 3,
        start_period_ms: 60_000,
    });
    let readiness = probe(check, &h);
    Container {
        name: dns_name(r.name()),
        image: Some(recipe_image(r).into()),
        args,
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![ContainerPort {
            container_port: i32::from(port),
            name: Some(dns_name(r.name()).chars().take(15).collect()),
            ..Default::default()
        }]),
        readiness_probe: Some(readiness.clone()),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(secs(h.start_period_ms, 0)),
            ..readiness
        }),
        lifecycle: lifecycle(&w.unit.stop_signal),
        volume_mounts: recipe_data_path(r).map(|p| {
            vec![VolumeMount {
                name: "data".into(),
                mount_path: p.into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

/// A recipe's StatefulSet: one replica of its container, with a volume claim for its data
/// (none for memcached).
fn recipe_statefulset(
    m: &Model<'_>,
    w: &Workload<'_>,
    r: Recipe,
    container: Container,
    out: &mut Out,
) -> Result<(), ExportError> {
    let stack = &m.plan.stack;
    let l = labels(stack, w.service, w.instance);
    out.push(
        format!("StatefulSet/{}", w.name),
        vec![format!(
            "{}: the {} recipe on the upstream image {}",
            source(w),
            r.name(),
            recipe_image(r)
        )],
        &StatefulSet {
            metadata: meta(&w.name, l.clone()),
            spec: Some(StatefulSetSpec {
                service_name: Some(w.name.clone()),
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(selector(stack, w.service, w.instance)),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(l),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        termination_grace_period_seconds: Some(i64::from(secs(
                            w.unit.stop_grace_ms,
                            1,
                        ))),
                        ..Default::default()
                    }),
                },
                volume_claim_templates: recipe_data_path(r).map(|_| vec![data_claim()]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// The claim template of a recipe's data volume: `data`, 10Gi, ReadWriteOnce.
fn data_claim() -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("10Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn tcp_check(port: u16) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Job that creates the recipe's roles and databases (PostgreSQL) or virtual hosts
/// (RabbitMQ, through its management API) once the server answers.
pub(super) fn init_job(
    m: &Model<'_>,
    w: &Workload<'_>,
    r: Recipe,
    spec: &grove_plan::RecipeSpec,
    passwords: &[PasswordRef],
    out: &mut Out,
) -> Result<(), ExportError> {
    let l = labels(&m.plan.stack, w.service, w.instance);
    let name = format!("{}-init", w.name);
    let port = w.port.unwrap_or(0);
    let mut env: Vec<EnvVar> = passwords
        .iter()
        .map(|p| secret_env(&p.var, &p.secret, &p.key))
        .collect();
    let (image, script) = match r {
        Recipe::Postgres => {
            let admin = passwords.iter().find(|p| p.key == "password");
            if let Some(a) = admin {
                env.push(secret_env("PGPASSWORD", &a.secret, &a.key));
            }
            let vars = postgres_init_vars(spec, passwords, |v| format!("${v}"));
            (
                recipe_image(r),
                format!(
                    "until pg_isready -h {h} -p {port} -U {u}; do sleep 2; done\npsql -h {h} -p {port} -U {u} -d postgres -v ON_ERROR_STOP=1 {vars} <<'SQL'\n{sql}SQL\n",
                    h = w.name,
                    u = spec.admin.user,
                    vars = vars.join(" "),
                    sql = postgres_init_sql(spec),
                ),
            )
        }
        _ => {
            let admin = passwords
                .iter()
                .find(|p| p.key == "password")
                .map(|p| p.var.clone())
                .unwrap_or_default();
            let vhosts: Vec<&str> = spec.databases.iter().map(|d| d.name.as_str()).collect();
            let s = crate::model::rabbitmq_vhost_script(&w.name, &spec.admin.user, &admin, &vhosts);
            (crate::model::CURL_IMAGE, s)
        }
    };
    out.push(
        format!("Job/{name}"),
        vec![format!(
            "{}: creates the {} recipe's roles and databases (grove does this on start)",
            source(w),
            r.name()
        )],
        &Job {
            metadata: meta(&name, l.clone()),
            spec: Some(JobSpec {
                backoff_limit: Some(10),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(l),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("OnFailure".into()),
                        containers: vec![Container {
                            name: "init".into(),
                            image: Some(image.into()),
                            command: Some(vec!["sh".into(), "-c".into(), script]),
                            env: (!env.is_empty()).then_some(env),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}
