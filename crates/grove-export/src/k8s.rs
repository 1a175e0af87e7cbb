//! The Plan as Kubernetes objects (`k8s-openapi` types, API 1.32), mapped as
//! `docs/export.md` says.

use std::collections::BTreeMap;

use grove_plan::{Condition, Plan, ProbeCheck, Recipe, RestartPolicy, Run, Target, Tls};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EndpointAddress, EndpointPort,
    EndpointSubset, Endpoints, EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    Lifecycle, LifecycleHandler, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretKeySelector, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::{
    dns_name, postgres_init_sql, postgres_init_vars, recipe_data_path, recipe_image, secs, Model,
    PasswordRef, Var, Workload,
};
use crate::{yaml, Document, ExportError, Options};

mod ingress;
mod recipes;
mod statics;

use ingress::edge;
use recipes::recipe;

fn k8s_ref(name: &str) -> String {
    format!("$({name})")
}

const WAIT_IMAGE: &str = "busybox:1.36";
const KUBECTL_IMAGE: &str = "bitnami/kubectl:1.32";

struct Out {
    docs: Vec<Document>,
    notes: Vec<String>,
}

impl Out {
    fn push<T: serde::Serialize>(
        &mut self,
        id: String,
        comment: Vec<String>,
        obj: &T,
    ) -> Result<(), ExportError> {
        self.docs.push(Document {
            comment,
            yaml: yaml(obj)?,
            id,
        });
        Ok(())
    }
}

fn labels(stack: &str, service: &str, instance: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("app.kubernetes.io/part-of".into(), dns_name(stack));
    l.insert("app.kubernetes.io/name".into(), dns_name(service));
    l.insert("app.kubernetes.io/managed-by".into(), "grove".into());
    if let Some(i) = instance {
        l.insert("grove.dev/instance".into(), dns_name(i));
    }
    l
}

fn selector(stack: &str, service: &str, instance: Option<&str>) -> BTreeMap<String, String> {
    let mut l = labels(stack, service, instance);
    l.remove("app.kubernetes.io/managed-by");
    l
}

fn meta(name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

fn source(w: &Workload<'_>) -> String {
    match w.instance {
        Some(i) => format!("service {}, instance {i}", w.service),
        None => format!("service {}", w.service),
    }
}

fn secret_env(var: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// A Secret whose values are written only when asked; otherwise empty, with the command that
/// fills it in the comment.
fn secret_object(
    out: &mut Out,
    name: &str,
    labels: BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
    opts: &Options,
    what: String,
) -> Result<(), ExportError> {
    let data: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if opts.include_secrets {
                    v.clone()
                } else {
                    String::new()
                },
            )
        })
        .collect();
    let mut comment = vec![what];
    if !opts.include_secrets {
        let args: Vec<String> = values
            .keys()
            .map(|k| format!("--from-literal={k}=..."))
            .collect();
        comment.push("values left empty; fill them with:".into());
        comment.push(format!(
            "  kubectl create secret generic {name} {} --dry-run=client -o yaml | kubectl apply -f -",
            args.join(" ")
        ));
    }
    out.push(
        format!("Secret/{name}"),
        comment,
        &Secret {
            metadata: meta(name, labels),
            string_data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        },
    )
}

/// Init containers that hold a pod until its dependencies are there.
fn waits(m: &Model<'_>, w: &Workload<'_>, waiter: &mut bool) -> Vec<Container> {
    let mut out = Vec::new();
    for (dw, cond) in m.deps(w) {
        let task = crate::model::is_task(dw.unit);
        if task || cond == Condition::Completed {
            *waiter = true;
            out.push(Container {
                name: dns_name(&format!("wait-{}", dw.name)),
                image: Some(KUBECTL_IMAGE.into()),
                command: Some(vec![
                    "kubectl".into(),
                    "wait".into(),
                    "--for=condition=complete".into(),
                    format!("job/{}", dw.name),
                    "--timeout=-1s".into(),
                ]),
                ..Default::default()
            });
            continue;
        }
        if let Some(p) = dw.port {
            out.push(Container {
                name: dns_name(&format!("wait-{}", dw.name)),
                image: Some(WAIT_IMAGE.into()),
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "until nc -z {n} {p}; do echo waiting for {n}; sleep 2; done",
                        n = dw.name
                    ),
                ]),
                ..Default::default()
            });
        }
        if needs_init_job(dw) {
            *waiter = true;
            out.push(Container {
                name: dns_name(&format!("wait-{}-init", dw.name)),
                image: Some(KUBECTL_IMAGE.into()),
                command: Some(vec![
                    "kubectl".into(),
                    "wait".into(),
                    "--for=condition=complete".into(),
                    format!("job/{}-init", dw.name),
                    "--timeout=-1s".into(),
                ]),
                ..Default::default()
            });
        }
    }
    out
}

fn needs_init_job(w: &Workload<'_>) -> bool {
    match w.recipe {
        Some((Recipe::Postgres, spec)) => {
            spec.databases.iter().any(|d| d.name != spec.admin.user) || !spec.roles.is_empty()
        }
        Some((Recipe::Rabbitmq, spec)) => !spec.databases.is_empty(),
        _ => false,
    }
}

fn probe(check: Probe, h: &grove_plan::Probe) -> Probe {
    Probe {
        period_seconds: Some(secs(h.interval_ms, 1)),
        timeout_seconds: Some(secs(h.timeout_ms, 1)),
        failure_threshold: Some(i32::try_from(h.retries.max(1)).unwrap_or(3)),
        ..check
    }
}

/// readiness, liveness and (with a start period) startup probes of an app container.
fn app_probes(m: &Model<'_>, w: &Workload<'_>) -> (Option<Probe>, Option<Probe>, Option<Probe>) {
    let Some(h) = &w.unit.health else {
        return (None, None, None);
    };
    let port = w.port.map(|p| IntOrString::Int(i32::from(p)));
    let check = match (&h.check, port) {
        (ProbeCheck::Http { path, .. }, Some(port)) => Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.clone()),
                port,
                ..Default::default()
            }),
            ..Default::default()
        },
        (ProbeCheck::Tcp { .. }, Some(port)) => Probe {
            tcp_socket: Some(TCPSocketAction {
                port,
                ..Default::default()
            }),
            ..Default::default()
        },
        (ProbeCheck::Exec { argv }, _) => Probe {
            exec: Some(ExecAction {
                command: Some(argv.iter().map(|a| m.rewrite(w, a)).collect()),
            }),
            ..Default::default()
        },
        _ => return (None, None, None),
    };
    let p = probe(check, h);
    let startup = (h.start_period_ms > 0).then(|| Probe {
        failure_threshold: Some(
            i32::try_from(h.start_period_ms.div_ceil(h.interval_ms.max(1000)).max(1)).unwrap_or(30),
        ),
        ..p.clone()
    });
    (Some(p.clone()), Some(p), startup)
}

/// How grove replaces the unit, as a Deployment's strategy: start-first is a rolling update
/// that never goes below the ready count (`maxUnavailable: 0`) with `max_surge` new pods at
/// a time; stop-first is `Recreate` (two copies of a singleton never run at once).
fn strategy(plan: &Plan, unit: &grove_plan::Unit) -> (DeploymentStrategy, String) {
    // In a cluster every pod has its own address: a fixed port does not rule start-first out.
    if grove_plan::start_first(plan, unit, false) {
        let surge = i32::try_from(unit.max_surge.max(1)).unwrap_or(1);
        let s = DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(surge)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        };
        (s, format!("start-first ({surge} at a time)"))
    } else {
        let s = DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        };
        (s, "stop-first".to_string())
    }
}

fn lifecycle(signal: &str) -> Option<Lifecycle> {
    if signal == "SIGTERM" {
        return None;
    }
    // Kubernetes always sends SIGTERM; the unit's own stop signal goes first from preStop.
    let sig = signal.trim_start_matches("SIG");
    Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), format!("kill -{sig} 1")]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The Kubernetes manifests of a Plan.
pub fn kubernetes(
    plan: &Plan,
    opts: &Options,
) -> Result<(Vec<String>, Vec<Document>), ExportError> {
    let m = Model::new(plan)?;
    let mut out = Out {
        docs: Vec::new(),
        notes: Vec::new(),
    };
    let stack = &plan.stack;
    let mut waiter = false;
    let waiter_name = dns_name(&format!("{stack}-waiter"));

    // Recipes.
    for w in m.workloads.iter().filter(|w| w.recipe.is_some()) {
        recipe(&m, w, opts, &mut out)?;
    }
    // Apps and tasks.
    for w in m.workloads.iter().filter(|w| w.recipe.is_none()) {
        app(&m, w, opts, &mut out, &mut waiter, &waiter_name)?;
    }
    // Routes.
    edge(&m, &mut out)?;
    if waiter {
        let l = labels(stack, "waiter", None);
        out.push(
            format!("ServiceAccount/{waiter_name}"),
            vec![
                "lets init containers wait for Jobs (tasks, recipe init) with kubectl wait".into(),
            ],
            &ServiceAccount {
                metadata: meta(&waiter_name, l.clone()),
                ..Default::default()
            },
        )?;
        out.push(
            format!("Role/{waiter_name}"),
            vec!["read access to Jobs for the waiting init containers".into()],
            &Role {
                metadata: meta(&waiter_name, l.clone()),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["batch".into()]),
                    resources: Some(vec!["jobs".into()]),
                    verbs: vec!["get".into(), "list".into(), "watch".into()],
                    ..Default::default()
                }]),
            },
        )?;
        out.push(
            format!("RoleBinding/{waiter_name}"),
            vec!["binds the waiter account to its role".into()],
            &RoleBinding {
                metadata: meta(&waiter_name, l),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: waiter_name.clone(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: waiter_name.clone(),
                    ..Default::default()
                }]),
            },
        )?;
    }
    let mut header = vec![format!(
        "grove export kubernetes: stack {stack}{}",
        plan.environment
            .as_ref()
            .map(|e| format!(", environment {e}"))
            .unwrap_or_default()
    )];
    header.push("apply with: kubectl apply -f <this file or folder>".into());
    header.extend(out.notes.iter().map(|n| format!("note: {n}")));
    Ok((header, out.docs))
}

/// An app or task: its ConfigMap and Secret, then a Job (task) or a Deployment and its
/// Service.
fn app(
    m: &Model<'_>,
    w: &Workload<'_>,
    opts: &Options,
    out: &mut Out,
    waiter: &mut bool,
    waiter_name: &str,
) -> Result<(), ExportError> {
    let stack = &m.plan.stack;
    let l = labels(stack, w.service, w.instance);
    let Run::Command { argv } = &w.unit.run else {
        return Ok(());
    };
    let e = app_env(m, w, argv);
    let config_name = format!("{}-env", w.name);
    out.push(
        format!("ConfigMap/{config_name}"),
        vec![format!("{}: plain environment variables", source(w))],
        &ConfigMap {
            metadata: meta(&config_name, l.clone()),
            data: Some(e.plain),
            ..Default::default()
        },
    )?;
    if !e.secrets.is_empty() {
        secret_object(
            out,
            &e.secret_name,
            l.clone(),
            &e.secrets,
            opts,
            format!("{}: secret environment variables", source(w)),
        )?;
    }
    let mut uses_waiter = false;
    let init = waits(m, w, &mut uses_waiter);
    *waiter |= uses_waiter;
    // A task writing a static mount's folder copies it into the mount's volume.
    let writes = statics::written_by(m.plan, w);
    let argv = if writes.is_empty() {
        e.argv
    } else {
        statics::copying(e.argv, &writes)
    };
    let (volumes, mounts) = statics::writer_volumes(stack, &writes);
    let mut container = app_container(m, w, argv, e.env, &config_name);
    container.volume_mounts = (!mounts.is_empty()).then_some(mounts);
    let pod = AppPod {
        container,
        volumes,
        labels: l,
        init,
        account: uses_waiter.then(|| waiter_name.to_string()),
        grace_seconds: i64::from(secs(w.unit.stop_grace_ms, 1)),
    };
    if crate::model::is_task(w.unit) {
        return app_job(w, pod, out);
    }
    app_deployment(m, w, pod, out)?;
    app_service(m, w, out)
}

/// An app's variables as Kubernetes takes them, and its command line.
struct AppEnv {
    /// Plain variables: the ConfigMap.
    plain: BTreeMap<String, String>,
    /// User secrets (from `env` and the command line): the workload's Secret.
    secrets: BTreeMap<String, String>,
    /// That Secret's name.
    secret_name: String,
    /// The container's `env`: password variables first, then secrets, then composed values.
    env: Vec<EnvVar>,
    /// The command, rewritten, with passwords and secrets as `$(NAME)`.
    argv: Vec<String>,
}

/// Variables: plain ones in a ConfigMap, user secrets in a Secret, values around recipe
/// passwords composed from the recipe's Secret; the command line likewise.
fn app_env(m: &Model<'_>, w: &Workload<'_>, argv: &[String]) -> AppEnv {
    let mut plain = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut env = Vec::new();
    let mut refs: Vec<PasswordRef> = Vec::new();
    let mut composed = Vec::new();
    for (k, v) in &w.unit.env {
        match m.var(w, k, &v.value, v.secret, k8s_ref) {
            Var::Plain(s) => {
                plain.insert(k.clone(), s);
            }
            Var::Secret(s) => {
                secrets.insert(k.clone(), s);
            }
            Var::Composed { template, refs: r } => {
                refs.extend(r);
                composed.push(plain_env(k, &template));
            }
        }
    }
    let secret_name = format!("{}-secrets", w.name);
    for k in secrets.keys() {
        env.push(secret_env(k, &secret_name, k));
    }
    let (argv, arg_refs): (Vec<String>, Vec<Vec<PasswordRef>>) = argv
        .iter()
        .map(|a| m.passwords_to_refs(&m.rewrite(w, a), k8s_ref))
        .unzip();
    // A secret on the command line becomes `$(NAME)`, from the workload's Secret.
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            let (t, used) = m.secrets_to_refs(a, k8s_ref);
            for (name, value) in used {
                if let std::collections::btree_map::Entry::Vacant(slot) = secrets.entry(name) {
                    env.push(secret_env(slot.key(), &secret_name, slot.key()));
                    slot.insert(value);
                }
            }
            t
        })
        .collect();
    refs.extend(arg_refs.into_iter().flatten());
    refs.sort();
    refs.dedup();
    // Password variables first: later values refer to them as $(NAME).
    let mut all_env: Vec<EnvVar> = refs
        .iter()
        .map(|r| secret_env(&r.var, &r.secret, &r.key))
        .collect();
    all_env.extend(env);
    all_env.extend(composed);
    AppEnv {
        plain,
        secrets,
        secret_name,
        env: all_env,
        argv,
    }
}

/// An app's container: image, command, variables (from its ConfigMap and `env`), port,
/// probes and stop hook.
fn app_container(
    m: &Model<'_>,
    w: &Workload<'_>,
    argv: Vec<String>,
    env: Vec<EnvVar>,
    config_name: &str,
) -> Container {
    let (readiness, liveness, startup) = app_probes(m, w);
    Container {
        name: dns_name(w.service),
        image: w.unit.image.clone(),
        command: Some(argv),
        working_dir: None,
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_name.to_string(),
                optional: None,
            }),
            ..Default::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        ports: w.port.filter(|_| !crate::model::is_task(w.unit)).map(|p| {
            vec![ContainerPort {
                container_port: i32::from(p),
                name: Some("http".into()),
                ..Default::default()
            }]
        }),
        readiness_probe: readiness,
        liveness_probe: liveness,
        startup_probe: startup,
        lifecycle: lifecycle(&w.unit.stop_signal),
        security_context: security_context(&w.unit.run_as),
        resources: resources(&w.unit.limits),
        ..Default::default()
    }
}

/// The container's `resources.limits`: memory and CPU (processes and open files have no
/// container field; the export's notes say so).
fn resources(limits: &grove_plan::Limits) -> Option<ResourceRequirements> {
    let mut l = BTreeMap::new();
    if let Some(m) = limits.memory {
        l.insert("memory".to_string(), Quantity(m.to_string()));
    }
    if let Some(c) = limits.cpu_milli {
        l.insert("cpu".to_string(), Quantity(format!("{c}m")));
    }
    (!l.is_empty()).then(|| ResourceRequirements {
        limits: Some(l),
        ..Default::default()
    })
}

/// The container's `securityContext`: Kubernetes takes numeric ids only, so a user or group
/// given by name is left to the image (the export's notes say so).
fn security_context(run_as: &grove_plan::RunAs) -> Option<SecurityContext> {
    let id = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i64>().ok());
    let (user, group) = (id(&run_as.user), id(&run_as.group));
    (user.is_some() || group.is_some()).then(|| SecurityContext {
        run_as_user: user,
        run_as_group: group,
        run_as_non_root: user.map(|u| u != 0),
        ..Default::default()
    })
}

/// What an app's pods are made of.
struct AppPod {
    labels: BTreeMap<String, String>,
    /// Init containers waiting for the dependencies.
    init: Vec<Container>,
    container: Container,
    volumes: Vec<k8s_openapi::api::core::v1::Volume>,
    /// The waiter's service account, when an init container runs `kubectl wait`.
    account: Option<String>,
    grace_seconds: i64,
}

impl AppPod {
    /// The pod template, with `restart` as its restart policy.
    fn template(self, restart: Option<String>) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(self.labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                init_containers: (!self.init.is_empty()).then_some(self.init),
                containers: vec![self.container],
                volumes: (!self.volumes.is_empty()).then_some(self.volumes),
                restart_policy: restart,
                service_account_name: self.account,
                termination_grace_period_seconds: Some(self.grace_seconds),
                ..Default::default()
            }),
        }
    }
}

/// A task's Job: restarted on failure up to its limit, or never.
fn app_job(w: &Workload<'_>, pod: AppPod, out: &mut Out) -> Result<(), ExportError> {
    let policy = match w.unit.restart.policy {
        RestartPolicy::Never => "Never",
        _ => "OnFailure",
    };
    let backoff = if w.unit.restart.policy == RestartPolicy::Never {
        0
    } else {
        i32::try_from(w.unit.restart.max_restarts).unwrap_or(6)
    };
    let metadata = meta(&w.name, pod.labels.clone());
    if let Some(job) = &w.unit.job {
        return app_cron_job(w, job, pod, policy, backoff, out);
    }
    out.push(
        format!("Job/{}", w.name),
        vec![format!("{}: task (runs to completion)", source(w))],
        &Job {
            metadata,
            spec: Some(JobSpec {
                backoff_limit: Some(backoff),
                template: pod.template(Some(policy.into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// A scheduled job as a CronJob: its schedule (Kubernetes reads five fields; a seconds
/// field is noted as not mapped), time zone, concurrency policy and timeout.
fn app_cron_job(
    w: &Workload<'_>,
    job: &grove_plan::Job,
    pod: AppPod,
    policy: &str,
    backoff: i32,
    out: &mut Out,
) -> Result<(), ExportError> {
    let fields: Vec<&str> = job.schedule.split_whitespace().collect();
    let schedule = if fields.len() == 6 {
        out.notes.push(format!(
            "{}'s schedule has a seconds field, which a CronJob cannot take: it runs at \
             minute precision",
            w.name
        ));
        fields[1..].join(" ")
    } else {
        job.schedule.clone()
    };
    let concurrency = match job.concurrency {
        grove_plan::Concurrency::Forbid => "Forbid",
        grove_plan::Concurrency::Replace => "Replace",
        grove_plan::Concurrency::Allow => "Allow",
    };
    let metadata = meta(&w.name, pod.labels.clone());
    out.push(
        format!("CronJob/{}", w.name),
        vec![format!("{}: job on schedule {}", source(w), job.schedule)],
        &CronJob {
            metadata,
            spec: Some(CronJobSpec {
                schedule,
                time_zone: job.timezone.clone(),
                concurrency_policy: Some(concurrency.into()),
                job_template: JobTemplateSpec {
                    metadata: None,
                    spec: Some(JobSpec {
                        backoff_limit: Some(backoff),
                        active_deadline_seconds: job
                            .timeout_ms
                            .map(|ms| i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)),
                        template: pod.template(Some(policy.into())),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// A service's Deployment: its replicas and the replacement strategy grove uses (with a
/// note when its restart policy cannot be kept).
fn app_deployment(
    m: &Model<'_>,
    w: &Workload<'_>,
    pod: AppPod,
    out: &mut Out,
) -> Result<(), ExportError> {
    let named = |v: &Option<String>| v.as_ref().filter(|s| s.parse::<i64>().is_err()).cloned();
    if let Some(name) = named(&w.unit.run_as.user).or_else(|| named(&w.unit.run_as.group)) {
        out.notes.push(format!(
            "{} runs as `{name}`: Kubernetes' securityContext takes numeric ids only, so the \
             image's user applies (write the id, `user = \"33\"`, to map it)",
            w.name
        ));
    }
    out.notes.extend(crate::model::command_notes(w));
    if w.unit.limits.pids.is_some() || w.unit.limits.nofile.is_some() {
        out.notes.push(format!(
            "{}'s pids and nofile limits are not mapped: a container has no such field (the \
             node's settings apply)",
            w.name
        ));
    }
    if w.unit.restart.policy != RestartPolicy::Always {
        out.notes.push(format!(
            "{} has restart = {:?}; a Deployment always restarts its pods",
            w.name, w.unit.restart.policy
        ));
    }
    let (strategy, order) = strategy(m.plan, w.unit);
    let sel = selector(&m.plan.stack, w.service, w.instance);
    let metadata = meta(&w.name, pod.labels.clone());
    out.push(
        format!("Deployment/{}", w.name),
        vec![format!("{}: {} replica(s), {order}", source(w), w.replicas)],
        &Deployment {
            metadata,
            spec: Some(DeploymentSpec {
                replicas: Some(i32::try_from(w.replicas).unwrap_or(1)),
                selector: LabelSelector {
                    match_labels: Some(sel),
                    ..Default::default()
                },
                template: pod.template(None),
                strategy: Some(strategy),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// A service's ClusterIP Service on its port (none without a port).
fn app_service(m: &Model<'_>, w: &Workload<'_>, out: &mut Out) -> Result<(), ExportError> {
    let Some(p) = w.port else {
        return Ok(());
    };
    let stack = &m.plan.stack;
    out.push(
        format!("Service/{}", w.name),
        vec![format!("{}: ClusterIP on its port", source(w))],
        &Service {
            metadata: meta(&w.name, labels(stack, w.service, w.instance)),
            spec: Some(ServiceSpec {
                selector: Some(selector(stack, w.service, w.instance)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: i32::from(p),
                    target_port: Some(IntOrString::Int(i32::from(p))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}
