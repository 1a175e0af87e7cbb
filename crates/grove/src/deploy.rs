//! `grove deploy`, `grove rollback` and `grove releases`, and the daemon's side of a switch.
//!
//! The command checks a git ref out into `.grove/releases/<id>` (`git archive`, so a release
//! is a plain folder) and runs the build there, its output streamed and kept in
//! `.grove/logs/deploy.log`. It then asks the running grove to switch: the daemon builds the
//! Plan with the release (application units' folders move into it), starts the changed units
//! beside the serving ones on fresh ports, waits for them to turn healthy, swaps the edge's
//! routes, and stops the old generation after the drain time. A failure before the switch
//! leaves the old generation serving. A lock file keeps two deploys from interleaving.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use grove_api::{ClientError, DeployReport, DeployRequest, Record};
use grove_state::{Release, Store};

use crate::runtime::Ctx;

// ----- the command side ------------------------------------------------------------------------

/// Where releases come from: a local repository (the stack's own, usually), or a URL kept as
/// a mirror in `.grove/repo.git`.
struct Source {
    /// The repository git reads.
    git_dir: PathBuf,
    /// Where the stack's folder is inside a checkout.
    base: PathBuf,
    /// A mirror of a remote repository (refs are its branches, so `origin/main` means `main`).
    mirror: bool,
}

fn is_url(repository: &str) -> bool {
    repository.contains("://")
        || (!repository.starts_with('/')
            && !repository.starts_with('.')
            && repository
                .split_once(':')
                .is_some_and(|(host, _)| !host.contains('/')))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e} (install Debian's git package)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Source {
    fn open(stack_root: &Path, repository: &str, state: &Path) -> Result<Source, String> {
        if is_url(repository) {
            let mirror = state.join("repo.git");
            if mirror.join("HEAD").exists() {
                git(&mirror, &["remote", "set-url", "origin", repository])?;
                git(&mirror, &["fetch", "--prune", "--quiet", "origin"])?;
            } else {
                git(
                    state,
                    &["clone", "--mirror", "--quiet", repository, "repo.git"],
                )?;
            }
            return Ok(Source {
                git_dir: mirror,
                base: PathBuf::new(),
                mirror: true,
            });
        }
        let path = stack_root.join(repository);
        let top = git(&path, &["rev-parse", "--show-toplevel"])
            .map_err(|e| format!("{} is not a git repository: {e}", path.display()))?;
        let top = PathBuf::from(top);
        let root = stack_root
            .canonicalize()
            .unwrap_or_else(|_| stack_root.to_path_buf());
        let top_real = top.canonicalize().unwrap_or_else(|_| top.clone());
        let base = root
            .strip_prefix(&top_real)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(Source {
            git_dir: top,
            base,
            mirror: false,
        })
    }

    /// The commit `git_ref` names.
    fn commit(&self, git_ref: &str) -> Result<String, String> {
        let spec = format!("{git_ref}^{{commit}}");
        match git(&self.git_dir, &["rev-parse", "--verify", "--quiet", &spec]) {
            Ok(c) if !c.is_empty() => Ok(c),
            _ => {
                if self.mirror {
                    if let Some(branch) = git_ref.strip_prefix("origin/") {
                        return self.commit(branch);
                    }
                }
                Err(format!(
                    "no commit named `{git_ref}` in {}",
                    self.git_dir.display()
                ))
            }
        }
    }

    /// Writes the tree of `commit` into `root` (a new folder).
    fn export(&self, commit: &str, root: &Path) -> Result<(), String> {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let mut archive = Command::new("git")
            .arg("-C")
            .arg(&self.git_dir)
            .args(["archive", "--format=tar", commit])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run git archive: {e}"))?;
        let Some(tar_in) = archive.stdout.take() else {
            return Err("git archive gave no output".into());
        };
        let tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(root)
            .stdin(tar_in)
            .output()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let git_out = archive
            .wait_with_output()
            .map_err(|e| format!("git archive: {e}"))?;
        if !git_out.status.success() {
            return Err(format!(
                "git archive {commit} failed: {}",
                String::from_utf8_lossy(&git_out.stderr).trim()
            ));
        }
        if !tar.status.success() {
            return Err(format!(
                "tar could not unpack the release: {}",
                String::from_utf8_lossy(&tar.stderr).trim()
            ));
        }
        Ok(())
    }
}

/// `.grove/deploy.lock`, held (an exclusive `flock`) for a whole deploy or rollback.
struct DeployLock {
    _file: std::fs::File,
}

impl DeployLock {
    /// Takes the lock; `None` (said on stderr) when another deploy or rollback holds it.
    fn take(state: &Path) -> anyhow::Result<Option<DeployLock>> {
        let path = state.join("deploy.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                writeln!(file, "{}", std::process::id())?;
                Ok(Some(DeployLock { _file: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                eprintln!(
                    "grove: another deploy or rollback is running (pid {}); try again when it ends",
                    holder.trim()
                );
                Ok(None)
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// Records an event in the running grove (so it reaches `events -F`, the dashboard and
/// notifications), or straight into the store when grove is not running.
async fn record(ctx: &Ctx, store: &Store, kind: &str, message: &str) {
    let r = Record {
        kind: kind.into(),
        message: message.into(),
    };
    match ctx
        .client()
        .post::<_, grove_api::Acted>("/v1/record", &r)
        .await
    {
        Ok(_) => {}
        Err(_) => {
            let _ = store.append(None, kind, message);
        }
    }
}

/// Runs one build command in `dir`, its output printed and appended to `log`.
fn build_step(cmd: &str, dir: &Path, release: &str, log: &mut std::fs::File) -> Result<(), String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("GROVE_RELEASE", release)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    let mut out = std::io::stdout();
    for line in std::io::BufReader::new(reader).split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let _ = writeln!(out, "  {text}");
        let _ = writeln!(log, "[{release}] {text}");
    }
    let status = child.wait().map_err(|e| format!("`{cmd}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{cmd}` exited with {}",
            status
                .code()
                .map(|c| format!("code {c}"))
                .unwrap_or_else(|| "a signal".into())
        ))
    }
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// `grove deploy [--ref REF]`.
pub async fn deploy(ctx: &Ctx, git_ref: Option<String>) -> anyhow::Result<ExitCode> {
    let loaded = match ctx.load(ctx.env.clone()) {
        Ok(l) => l,
        Err(text) => {
            eprintln!("{text}");
            return Ok(ExitCode::from(1));
        }
    };
    let Some(settings) = loaded.stack.deploy.clone() else {
        eprintln!("grove: the stack file has no [deploy] section (docs/stack-file.md shows one)");
        return Ok(ExitCode::from(1));
    };
    let state = loaded.state.clone();
    grove_daemon::make_private_dir(&state)?;
    let Some(_lock) = DeployLock::take(&state)? else {
        return Ok(ExitCode::from(1));
    };
    let store = grove_daemon::open_store(&state)?;
    let git_ref = git_ref.unwrap_or_else(|| settings.git_ref.clone());
    let source = match Source::open(&loaded.stack.root, &settings.repository, &state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("grove: deploy failed at checkout: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let commit = match source.commit(&git_ref) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("grove: deploy failed at checkout: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let seq = store.next_release_seq()?;
    let id = format!("{seq}-{}", short(&commit));
    let root = state.join("releases").join(&id);
    let dir = root.join(&source.base);
    store.insert_release(&Release {
        id: id.clone(),
        seq,
        git_ref: git_ref.clone(),
        commit: commit.clone(),
        created_ms: grove_state::now_ms(),
        outcome: "building".into(),
        message: String::new(),
        pruned: false,
        dir: dir.to_string_lossy().into_owned(),
    })?;
    println!("grove: release {id}: {git_ref} at {}", short(&commit));
    record(
        ctx,
        &store,
        "deploy",
        &format!(
            "release {id}: {git_ref} at {}: checking out",
            short(&commit)
        ),
    )
    .await;
    let fail = |step: &str, why: String| -> anyhow::Result<ExitCode> {
        let _ = std::fs::remove_dir_all(&root);
        store.set_release_outcome(&id, "failed", &format!("{step}: {why}"))?;
        let _ = store.set_release_pruned(&id);
        eprintln!("grove: deploy of release {id} failed at {step}: {why}");
        eprintln!("grove: nothing changed; the running release keeps serving");
        Ok(ExitCode::from(1))
    };
    if let Err(e) = source.export(&commit, &root) {
        record(
            ctx,
            &store,
            "deploy-failed",
            &format!("release {id}: checkout: {e}"),
        )
        .await;
        return fail("checkout", e);
    }
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("deploy.log"))?;
    for cmd in &settings.build {
        println!("grove: build: {cmd}");
        let _ = writeln!(log, "[{id}] $ {cmd}");
        if let Err(e) = build_step(cmd, &dir, &id, &mut log) {
            record(
                ctx,
                &store,
                "deploy-failed",
                &format!("release {id}: build: {e}"),
            )
            .await;
            return fail("build", e);
        }
    }
    if !settings.build.is_empty() {
        record(ctx, &store, "deploy", &format!("release {id}: built")).await;
    }
    let req = DeployRequest {
        release: id.clone(),
        dir: dir.clone(),
        rollback: false,
    };
    println!("grove: starting release {id} beside the running one");
    match switch(ctx, &req).await {
        Switch::Done => println!("grove: release {id} is live"),
        Switch::NotRunning => {
            store.set_release_outcome(&id, "deployed", "")?;
            store.set_live_release(Some(&id))?;
            record(
                ctx,
                &store,
                "deployed",
                &format!("release {id} is live (stack not running)"),
            )
            .await;
            println!(
                "grove: release {id} is ready; the stack is not running, so `grove up` starts it"
            );
        }
        Switch::Refused(message) => {
            // The daemon recorded the failure; the folder goes, the row stays.
            let _ = std::fs::remove_dir_all(&root);
            let _ = store.set_release_pruned(&id);
            eprintln!("grove: deploy of release {id} failed at {message}");
            eprintln!("grove: the running release keeps serving");
            return Ok(ExitCode::from(1));
        }
        Switch::Unreachable => return Ok(ExitCode::from(1)),
    }
    prune(&store, settings.keep as usize);
    Ok(ExitCode::SUCCESS)
}

/// How the running grove answered a switch request.
enum Switch {
    /// Switched; its steps are printed.
    Done,
    /// No grove runs the stack.
    NotRunning,
    /// It refused, naming the step that failed and why.
    Refused(String),
    /// It could not be asked (said on stderr).
    Unreachable,
}

/// Asks the running grove to switch to `req`'s release, printing the steps it took.
async fn switch(ctx: &Ctx, req: &DeployRequest) -> Switch {
    let progress = crate::progress::Progress::start(&ctx.state_dir(), ctx.err_color);
    let answer = ctx
        .client()
        .post::<_, DeployReport>("/v1/deploy", req)
        .await;
    progress.finish().await;
    match answer {
        Ok(report) => {
            for s in &report.steps {
                println!("grove: {s}");
            }
            Switch::Done
        }
        Err(ClientError::NotRunning(_)) => Switch::NotRunning,
        Err(ClientError::Api { message, .. }) => Switch::Refused(message),
        Err(e) => {
            eprintln!("grove: {e}");
            Switch::Unreachable
        }
    }
}

/// Removes the folders of deployed releases beyond the newest `keep` (never the live one).
fn prune(store: &Store, keep: usize) {
    let live = store.live_release().ok().flatten();
    let Ok(all) = store.releases() else { return };
    let mut kept = 0;
    for r in all {
        if r.pruned || !matches!(r.outcome.as_str(), "deployed" | "rolled back") {
            continue;
        }
        if kept < keep || live.as_deref() == Some(r.id.as_str()) {
            kept += 1;
            continue;
        }
        if let Some(root) = release_root(&r) {
            let _ = std::fs::remove_dir_all(root);
        }
        let _ = store.set_release_pruned(&r.id);
    }
}

/// `.grove/releases/<id>` of a release, from its recorded stack folder.
fn release_root(r: &Release) -> Option<PathBuf> {
    let dir = Path::new(&r.dir);
    dir.ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == r.id.as_str()))
        .map(Path::to_path_buf)
}

/// `grove rollback [RELEASE]`.
pub async fn rollback(ctx: &Ctx, target: Option<String>) -> anyhow::Result<ExitCode> {
    let state = ctx.state_dir();
    grove_daemon::make_private_dir(&state)?;
    let Some(_lock) = DeployLock::take(&state)? else {
        return Ok(ExitCode::from(1));
    };
    let store = grove_daemon::open_store(&state)?;
    let Some(live) = store.live_release()? else {
        eprintln!("grove: nothing was deployed yet, so there is nothing to roll back");
        return Ok(ExitCode::from(1));
    };
    let all = store.releases()?;
    let live_seq = all
        .iter()
        .find(|r| r.id == live)
        .map(|r| r.seq)
        .unwrap_or(i64::MAX);
    let usable = |r: &&Release| {
        r.id != live && !r.pruned && matches!(r.outcome.as_str(), "deployed" | "rolled back")
    };
    let chosen = match &target {
        Some(id) => match all.iter().find(|r| &r.id == id) {
            Some(r) if usable(&r) => r.clone(),
            Some(r) if r.id == live => {
                eprintln!("grove: release {id} is already live");
                return Ok(ExitCode::from(1));
            }
            Some(r) => {
                eprintln!(
                    "grove: release {id} cannot be rolled back to: {}",
                    if r.pruned {
                        "its folder was removed (see [deploy] keep)".to_string()
                    } else {
                        format!("its outcome is {}", r.outcome)
                    }
                );
                return Ok(ExitCode::from(1));
            }
            None => {
                eprintln!("grove: no release {id} (`grove releases` lists them)");
                return Ok(ExitCode::from(1));
            }
        },
        None => match all
            .iter()
            .filter(|r| r.seq < live_seq && r.outcome == "deployed")
            .find(|r| usable(r))
        {
            Some(r) => r.clone(),
            None => {
                eprintln!("grove: no earlier deployed release is kept to roll back to");
                return Ok(ExitCode::from(1));
            }
        },
    };
    let id = chosen.id.clone();
    println!("grove: rolling back from release {live} to release {id}");
    record(
        ctx,
        &store,
        "rollback",
        &format!("rolling back from release {live} to release {id}"),
    )
    .await;
    let req = DeployRequest {
        release: id.clone(),
        dir: PathBuf::from(&chosen.dir),
        rollback: true,
    };
    match switch(ctx, &req).await {
        Switch::Done => {}
        Switch::NotRunning => {
            store.set_live_release(Some(&id))?;
            println!("grove: the stack is not running; `grove up` starts release {id}");
        }
        Switch::Refused(message) => {
            eprintln!("grove: rollback to release {id} failed at {message}");
            eprintln!("grove: release {live} keeps serving");
            return Ok(ExitCode::from(1));
        }
        Switch::Unreachable => return Ok(ExitCode::from(1)),
    }
    store.set_release_outcome(&live, "rolled back", "")?;
    println!("grove: release {id} is live");
    Ok(ExitCode::SUCCESS)
}

/// `grove releases [--json]`.
pub fn releases(ctx: &Ctx, json: bool) -> anyhow::Result<ExitCode> {
    let state = ctx.state_dir();
    let (all, live) = match grove_daemon::read_store(&state)? {
        Some(store) => (store.releases()?, store.live_release()?),
        None => (Vec::new(), None),
    };
    if json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "live".into(),
                        serde_json::Value::Bool(live.as_deref() == Some(r.id.as_str())),
                    );
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no releases yet (`grove deploy` makes one)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "RELEASE".to_string(),
        "REF".into(),
        "COMMIT".into(),
        "CREATED".into(),
        "OUTCOME".into(),
    ]];
    for r in &all {
        let mut outcome = if live.as_deref() == Some(r.id.as_str()) {
            "live".to_string()
        } else {
            r.outcome.clone()
        };
        if !r.message.is_empty() {
            outcome.push_str(&format!(" ({})", r.message));
        }
        if r.pruned && r.outcome != "failed" {
            outcome.push_str(" [folder removed]");
        }
        rows.push(vec![
            r.id.clone(),
            r.git_ref.clone(),
            short(&r.commit).to_string(),
            crate::history::format_ts(r.created_ms),
            outcome,
        ]);
    }
    print!("{}", crate::render::table(&rows));
    Ok(ExitCode::SUCCESS)
}
