//! The edge's static mounts in Kubernetes: what grove's edge did for a prefix (serve the
//! files of a folder) is done by a small web server reading a shared volume, and the task
//! that writes the folder (`collectstatic`, whose `cwd` holds it) copies what it wrote into
//! that volume when it is done.
//!
//! Per mount `i`: a ReadWriteMany PersistentVolumeClaim `STACK-static-i`; a Deployment and
//! Service of the same name running nginx with the claim mounted read-only at the prefix;
//! an Ingress sending the prefix on the edge's hosts to it. A task is a writer when the
//! mount's folder is inside its `cwd`: its Job mounts the claim at [`VOLUME_ROOT`]`/i` and its
//! command becomes `sh -c '"$@" && { [ ! -d FOLDER ] || cp -a FOLDER/. /grove-static/i/; }' sh
//! COMMAND...`, so the folder is found where the command left it, relative to the image's
//! WORKDIR (which the export never guesses). A mount no task writes gets the claim, the server and a note
//! saying to copy the files in.

use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume};

use super::*;

/// Where a writer's Job mounts the static volumes.
const VOLUME_ROOT: &str = "/grove-static";
/// The web server that serves a static volume.
const SERVER_IMAGE: &str = "nginx:1.27-alpine";
/// The folder that image serves.
const SERVER_ROOT: &str = "/usr/share/nginx/html";

fn mount_name(stack: &str, i: usize) -> String {
    dns_name(&format!("{stack}-static-{i}"))
}

/// The static mounts a task writes: each one's index and its folder relative to the task's
/// `cwd`. None for services (a server writing into the folder while it runs would need the
/// claim mounted where the image keeps it, which the export cannot know).
pub(super) fn written_by(plan: &Plan, w: &Workload<'_>) -> Vec<(usize, String)> {
    if !crate::model::is_task(w.unit) || w.unit.job.is_some() {
        return Vec::new();
    }
    let cwd = &w.unit.cwd;
    if cwd.is_absolute() {
        return Vec::new();
    }
    plan.edge
        .static_mounts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let rel = s.dir.strip_prefix(cwd).ok()?;
            let text = if rel.as_os_str().is_empty() {
                ".".to_string()
            } else {
                rel.display().to_string()
            };
            (s.dir.is_relative() && !rel.starts_with("..")).then_some((i, text))
        })
        .collect()
}

/// A writer's command: it runs as before, then each folder it wrote is copied into its
/// volume; a folder it did not make is no error (a `migrate` beside `collectstatic` in the
/// same folder is a writer too, and copies what the image holds there, if anything).
pub(super) fn copying(argv: Vec<String>, writes: &[(usize, String)]) -> Vec<String> {
    let copies: Vec<String> = writes
        .iter()
        .map(|(i, rel)| {
            let dir = shell_word(rel);
            format!("{{ [ ! -d {dir} ] || cp -a {dir}/. {VOLUME_ROOT}/{i}/; }}")
        })
        .collect();
    let mut out = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("\"$@\" && {}", copies.join(" && ")),
        "sh".to_string(),
    ];
    out.extend(argv);
    out
}

/// The volumes and mounts a writer's pod gets.
pub(super) fn writer_volumes(
    stack: &str,
    writes: &[(usize, String)],
) -> (Vec<Volume>, Vec<VolumeMount>) {
    writes
        .iter()
        .map(|(i, _)| {
            let name = mount_name(stack, *i);
            (
                claim_volume(&name, false),
                VolumeMount {
                    name,
                    mount_path: format!("{VOLUME_ROOT}/{i}"),
                    ..Default::default()
                },
            )
        })
        .unzip()
}

fn claim_volume(name: &str, read_only: bool) -> Volume {
    Volume {
        name: name.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: name.to_string(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    }
}

/// A word the shell reads back as itself.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Every static mount's claim, server, Service and Ingress.
pub(super) fn static_mounts(m: &Model<'_>, out: &mut Out) -> Result<(), ExportError> {
    let plan = m.plan;
    for (i, s) in plan.edge.static_mounts.iter().enumerate() {
        let writers: Vec<&str> = m
            .workloads
            .iter()
            .filter(|w| written_by(plan, w).iter().any(|(j, _)| *j == i))
            .map(|w| w.name.as_str())
            .collect();
        if writers.is_empty() {
            out.notes.push(format!(
                "the edge served {} from {}, which no task writes: copy the files into the \
                 volume {} (its server, the Deployment of the same name, serves them)",
                s.prefix,
                s.dir.display(),
                mount_name(&plan.stack, i)
            ));
        }
        claim(&plan.stack, i, s, &writers, out)?;
        server(&plan.stack, i, s, out)?;
        ingress(plan, i, s, out)?;
    }
    Ok(())
}

fn claim(
    stack: &str,
    i: usize,
    s: &grove_plan::StaticMount,
    writers: &[&str],
    out: &mut Out,
) -> Result<(), ExportError> {
    let name = mount_name(stack, i);
    let filled = if writers.is_empty() {
        "copy the files in".to_string()
    } else {
        format!("filled by {} when it completes", writers.join(", "))
    };
    out.push(
        format!("PersistentVolumeClaim/{name}"),
        vec![format!(
            "static mount {} (was {}): the files the edge served; {filled}",
            s.prefix,
            s.dir.display()
        )],
        &PersistentVolumeClaim {
            metadata: meta(&name, labels(stack, &format!("static-{i}"), None)),
            spec: Some(PersistentVolumeClaimSpec {
                // Written by the task's pod, read by the server's, maybe on other nodes.
                access_modes: Some(vec!["ReadWriteMany".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity("1Gi".into()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// nginx serving the volume at the prefix, and its Service.
fn server(
    stack: &str,
    i: usize,
    s: &grove_plan::StaticMount,
    out: &mut Out,
) -> Result<(), ExportError> {
    let name = mount_name(stack, i);
    let service = format!("static-{i}");
    let root = format!("{SERVER_ROOT}{}", s.prefix.trim_end_matches('/'));
    let container = Container {
        name: "static".into(),
        image: Some(SERVER_IMAGE.into()),
        ports: Some(vec![ContainerPort {
            container_port: 80,
            name: Some("http".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: name.clone(),
            mount_path: root.clone(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    out.push(
        format!("Deployment/{name}"),
        vec![format!(
            "static mount {}: the edge's file serving, nginx reading the volume {name} at {root}",
            s.prefix
        )],
        &Deployment {
            metadata: meta(&name, labels(stack, &service, None)),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(selector(stack, &service, None)),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(stack, &service, None)),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        volumes: Some(vec![claim_volume(&name, true)]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    out.push(
        format!("Service/{name}"),
        vec![format!("static mount {}: its server", s.prefix)],
        &Service {
            metadata: meta(&name, labels(stack, &service, None)),
            spec: Some(ServiceSpec {
                selector: Some(selector(stack, &service, None)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(80)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// The prefix on the edge's hosts (any host when it names none) to the server, with the
/// routes' TLS.
fn ingress(
    plan: &Plan,
    i: usize,
    s: &grove_plan::StaticMount,
    out: &mut Out,
) -> Result<(), ExportError> {
    let stack = &plan.stack;
    let name = mount_name(stack, i);
    let http = HTTPIngressRuleValue {
        paths: vec![HTTPIngressPath {
            path: Some(match s.prefix.trim_end_matches('/') {
                "" => "/".to_string(),
                p => p.to_string(),
            }),
            path_type: "Prefix".into(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: name.clone(),
                    port: Some(ServiceBackendPort {
                        number: Some(80),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            },
        }],
    };
    let hosts = &plan.edge.hosts;
    let rules = if hosts.is_empty() {
        vec![IngressRule {
            host: None,
            http: Some(http),
        }]
    } else {
        hosts
            .iter()
            .map(|h| IngressRule {
                host: Some(h.clone()),
                http: Some(http.clone()),
            })
            .collect()
    };
    let tls = (!matches!(plan.edge.tls, Tls::Off) && !hosts.is_empty()).then(|| {
        vec![IngressTLS {
            hosts: Some(hosts.clone()),
            secret_name: Some(dns_name(&format!("{stack}-tls"))),
        }]
    });
    out.push(
        format!("Ingress/{name}"),
        vec![format!("static mount {} -> its server", s.prefix)],
        &Ingress {
            metadata: meta(&name, labels(stack, &format!("static-{i}"), None)),
            spec: Some(IngressSpec {
                ingress_class_name: Some("nginx".into()),
                rules: Some(rules),
                tls,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writers_command_runs_then_copies_each_folder() {
        let argv = vec!["python3".into(), "manage.py".into(), "collectstatic".into()];
        let out = copying(
            argv,
            &[(0, "collected-static".into()), (1, "my files".into())],
        );
        assert_eq!(
            out,
            [
                "sh",
                "-c",
                "\"$@\" && { [ ! -d collected-static ] || cp -a collected-static/. /grove-static/0/; } && { [ ! -d 'my files' ] || cp -a 'my files'/. /grove-static/1/; }",
                "sh",
                "python3",
                "manage.py",
                "collectstatic"
            ]
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    /// The wrapped command run by a real shell: the command's exit status decides, its
    /// folder is copied whole, and a folder it did not make is skipped.
    #[test]
    fn the_wrapped_command_copies_what_the_command_wrote() {
        let tmp = std::env::temp_dir().join(format!("grove-statics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("vol/0")).unwrap();
        std::fs::create_dir_all(tmp.join("vol/1")).unwrap();
        let run = |script: &str| {
            let argv = copying(
                vec!["sh".into(), "-c".into(), script.into()],
                &[(0, "out dir".into()), (1, "never".into())],
            );
            let vol = format!("{}/vol/", tmp.display());
            let wrapped = argv[2].replace("/grove-static/", &vol);
            std::process::Command::new(&argv[0])
                .arg(&argv[1])
                .arg(wrapped)
                .args(&argv[3..])
                .current_dir(&tmp)
                .status()
                .unwrap()
        };
        let ok = run("mkdir -p 'out dir/css' && echo body > 'out dir/css/site.css'");
        assert!(ok.success());
        assert_eq!(
            std::fs::read_to_string(tmp.join("vol/0/css/site.css")).unwrap(),
            "body\n"
        );
        std::fs::remove_file(tmp.join("vol/0/css/site.css")).unwrap();
        // A failing command fails the Job and copies nothing.
        let failed = run("exit 3");
        assert_eq!(failed.code(), Some(3));
        assert!(!tmp.join("vol/0/css/site.css").exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
