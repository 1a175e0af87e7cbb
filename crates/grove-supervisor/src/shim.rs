//! The keeper of one unit process, so that the unit outlives grove (conmon's shape).
//!
//! grove does not start a unit itself: it starts `grove __shim` with a [`ShimSpec`] on its
//! stdin, and the shim starts the unit as its own child (own process group, the unit's
//! cgroup, a parent-death signal tied to the shim), holds the unit's stdout and stderr, and
//! listens on `.grove/run/<pid>.sock`. While a grove is attached it forwards the output as
//! it comes and, at the end, the exit status; while none is (grove was killed, or is being
//! upgraded) it writes the output to the unit's log file itself, so nothing the unit writes
//! is lost or blocks it. The next grove finds the sockets ([`discover`]), attaches
//! ([`attach`]) and adopts the units without restarting them. A unit that exits while no
//! grove is attached leaves its status in `<pid>.sock.exit`.
//!
//! On the wire: frames of one kind byte, a 4-byte big-endian length and the payload. From
//! the shim: `HELLO` (who the unit is, once per connection), `OUT` and `ERR` (output bytes as
//! read), `EXIT` (the status, last). From grove: `RENAME` (the unit's new key and
//! fingerprint, when a deploy's switch renames it).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::cgroup::Group;
use crate::logs::LogFile;
use crate::machine::ExitStatus;
use crate::process::{self, SpawnSpec};

/// The hidden subcommand that runs a shim.
pub const SHIM_ARG: &str = "__shim";

const HELLO: u8 = 1;
const OUT: u8 = 2;
const ERR: u8 = 3;
const EXIT: u8 = 4;
const RENAME: u8 = 5;
/// Largest frame accepted (output is forwarded in reads of at most 16 KiB).
const MAX_FRAME: usize = 1 << 20;
/// How long a new shim waits for the grove that started it before it reads output itself.
const FIRST_CLIENT: Duration = Duration::from_secs(2);

/// What a shim runs, and where it keeps what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    /// The unit's key in the engine (`web#2`), echoed in [`Hello`].
    pub unit: String,
    /// What grove knows the unit's definition by; a grove whose Plan says otherwise restarts
    /// the unit instead of adopting it.
    pub fingerprint: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// The cgroup the unit joins, if any.
    pub cgroup: Option<PathBuf>,
    /// Who the unit runs as.
    #[serde(default)]
    pub run_as: grove_plan::RunAs,
    /// Further cgroups the unit joins (the v1 ones enforcing its limits).
    #[serde(default)]
    pub limit_groups: Vec<PathBuf>,
    /// Its open-files limit.
    #[serde(default)]
    pub nofile: Option<u64>,
    /// The folder of the sockets (`.grove/run`).
    pub run_dir: PathBuf,
    /// The unit's log file, and its rotation, for output while no grove is attached.
    pub log: PathBuf,
    pub log_max_size: u64,
    pub log_keep: u32,
    /// What the unit's main process leaves behind when it ends (a gunicorn's workers, after
    /// its master was killed) gets this signal and up to `stop_grace_ms` to finish, as
    /// systemd treats a service's leftovers, before SIGKILL. No signal: SIGKILL at once.
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub stop_grace_ms: u64,
    /// The unit is socket-activated: the shim's descriptor 3 is its listening socket, passed
    /// on under this name (see [`crate::activation`]).
    #[serde(default)]
    pub listen: Option<String>,
}

/// Who a shim's unit is: the first frame on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub unit: String,
    pub fingerprint: String,
    pub pid: i32,
    pub start_ticks: u64,
    pub cgroup: Option<PathBuf>,
}

/// A unit seen through its shim: its output as two streams, and its end.
#[derive(Debug)]
pub struct Attached {
    pub hello: Hello,
    pub stdout: DuplexStream,
    pub stderr: DuplexStream,
    /// The unit's exit status; an error when the shim went away without one.
    pub exit: oneshot::Receiver<ExitStatus>,
    /// What grove tells the shim.
    pub control: Control,
}

/// grove's side of a shim's connection, for what the shim must remember.
#[derive(Debug, Clone)]
pub struct Control(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

/// A unit's key and definition fingerprint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Name {
    unit: String,
    fingerprint: String,
}

impl Control {
    /// The unit is known by `unit` and `fingerprint` from now on (a deploy's switch renamed
    /// it): the next grove adopts it under that name.
    pub fn rename(&self, unit: &str, fingerprint: &str) {
        let name = Name {
            unit: unit.to_string(),
            fingerprint: fingerprint.to_string(),
        };
        let _ = self.0.send(frame(RENAME, &json(&name)));
    }
}

/// `<run_dir>/<pid>.sock`.
pub fn socket_path(run_dir: &Path, pid: i32) -> PathBuf {
    run_dir.join(format!("{pid}.sock"))
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The next frame, or `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "oversized frame",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

// ----- the grove side ----------------------------------------------------------------------

/// Starts `spec` under a shim (the binary `exe`, normally grove itself) and attaches to it;
/// `listener` is a socket-activated unit's listening socket (see `ShimSpec::listen`).
/// Blocks the calling worker (through `block_in_place`) for the moments until the unit's pid
/// is known; returns the attachment and the shim process, which the caller reaps.
pub fn spawn(
    exe: &Path,
    spec: &ShimSpec,
    listener: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<(Attached, tokio::process::Child)> {
    std::fs::create_dir_all(&spec.run_dir)?;
    let _ = std::fs::set_permissions(&spec.run_dir, std::fs::Permissions::from_mode(0o700));
    let mut cmd = tokio::process::Command::new(exe);
    // `ps` shows grove's path, not `/proc/self/exe`.
    if let Ok(shown) = std::env::current_exe() {
        cmd.arg0(shown);
    }
    cmd.arg(SHIM_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own group: a Ctrl-C on grove's terminal is not the shim's.
        .process_group(0)
        .kill_on_drop(false);
    for (k, v) in &spec.env {
        if k == "GROVE_STACK" {
            cmd.env(k, v);
        }
    }
    if let Some(fd) = listener {
        crate::activation::pass(&mut cmd, std::os::fd::AsRawFd::as_raw_fd(&fd));
    }
    let mut child = cmd.spawn()?;
    let text = serde_json::to_vec(spec).map_err(io::Error::other)?;
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    let handshake = async move {
        let (Some(mut stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(io::Error::other("the shim has no stdin or stdout"));
        };
        stdin.write_all(&text).await?;
        drop(stdin);
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line).await?;
        let line = line.trim();
        if let Some(why) = line.strip_prefix("ERR ") {
            return Err(io::Error::other(why.to_string()));
        }
        let pid: i32 = line
            .parse()
            .map_err(|_| io::Error::other(format!("the shim said `{line}`")))?;
        attach(&socket_path(&spec.run_dir, pid)).await
    };
    let attached = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), handshake).await })
    });
    match attached {
        Ok(Ok(a)) => Ok((a, child)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let _ = child.start_kill();
            Err(io::Error::other(
                "the shim did not start the unit within 10 s",
            ))
        }
    }
}

/// Connects to the shim at `socket`: its [`Hello`], then its output and exit as they come.
pub async fn attach(socket: &Path) -> io::Result<Attached> {
    let (mut s, mut w) = UnixStream::connect(socket).await?.into_split();
    let hello = match tokio::time::timeout(Duration::from_secs(2), read_frame(&mut s)).await {
        Ok(Ok(Some((HELLO, payload)))) => serde_json::from_slice::<Hello>(&payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        Ok(Err(e)) => return Err(e),
        _ => return Err(io::Error::other("the shim did not say hello")),
    };
    let (mut out_tx, stdout) = tokio::io::duplex(64 * 1024);
    let (mut err_tx, stderr) = tokio::io::duplex(64 * 1024);
    let (exit_tx, exit) = oneshot::channel();
    let (control, mut to_shim) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(f) = to_shim.recv().await {
            if w.write_all(&f).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut exit_tx = Some(exit_tx);
        while let Ok(Some((kind, payload))) = read_frame(&mut s).await {
            match kind {
                OUT => {
                    let _ = out_tx.write_all(&payload).await;
                }
                ERR => {
                    let _ = err_tx.write_all(&payload).await;
                }
                EXIT => {
                    // The output is whole before the exit is told.
                    let _ = out_tx.shutdown().await;
                    let _ = err_tx.shutdown().await;
                    if let (Some(tx), Ok(st)) = (exit_tx.take(), serde_json::from_slice(&payload)) {
                        let _ = tx.send(st);
                    }
                    break;
                }
                _ => {}
            }
        }
    });
    Ok(Attached {
        hello,
        stdout,
        stderr,
        exit,
        control: Control(control),
    })
}

/// What a shim leaves when its unit ended while no grove was attached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ended {
    pub hello: Hello,
    pub status: ExitStatus,
}

/// Every live shim under `run_dir`, attached; sockets nobody answers are removed, and the
/// units that ended while no grove was attached are returned beside.
pub async fn discover(run_dir: &Path) -> (Vec<Attached>, Vec<Ended>) {
    let mut live = Vec::new();
    let mut ended = Vec::new();
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return (live, ended);
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sock.exit") {
            if let Ok(text) = std::fs::read(&path) {
                if let Ok(e) = serde_json::from_slice::<Ended>(&text) {
                    ended.push(e);
                }
            }
            let _ = std::fs::remove_file(&path);
        } else if name
            .strip_suffix(".sock")
            .is_some_and(|pid| pid.parse::<i32>().is_ok())
        {
            match attach(&path).await {
                Ok(a) => live.push(a),
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    (live, ended)
}

// ----- the shim ----------------------------------------------------------------------------

/// `grove __shim`: reads the spec from stdin and keeps the unit until it ends.
pub fn main() -> std::process::ExitCode {
    let mut text = Vec::new();
    if std::io::Read::read_to_end(&mut std::io::stdin(), &mut text).is_err() {
        return std::process::ExitCode::from(1);
    }
    use std::io::Write as _;
    // After the pid line grove stops reading: a later word must not fail on a closed pipe.
    let say = |text: &str| {
        let _ = writeln!(std::io::stdout(), "{text}");
    };
    let Ok(spec) = serde_json::from_slice::<ShimSpec>(&text) else {
        say("ERR the shim's spec does not parse");
        return std::process::ExitCode::from(1);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("ERR {e}"));
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(keep(spec)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("ERR {e}"));
            std::process::ExitCode::from(1)
        }
    }
}

/// Where output goes while no grove is attached: the log file, line by line.
struct Sink {
    spec: ShimSpec,
    log: Option<LogFile>,
    /// A line begun and not yet ended, per stream.
    partial: [Vec<u8>; 2],
}

impl Sink {
    fn stream(kind: u8) -> (usize, &'static str) {
        if kind == OUT {
            (0, "out")
        } else {
            (1, "err")
        }
    }

    fn write(&mut self, kind: u8, mut bytes: &[u8]) {
        let (i, name) = Sink::stream(kind);
        while let Some(at) = bytes.iter().position(|&b| b == b'\n') {
            self.partial[i].extend_from_slice(&bytes[..=at]);
            bytes = &bytes[at + 1..];
            let line = std::mem::take(&mut self.partial[i]);
            self.line(name, &line);
        }
        self.partial[i].extend_from_slice(bytes);
    }

    fn line(&mut self, stream: &str, line: &[u8]) {
        if self.log.is_none() {
            self.log =
                LogFile::open(&self.spec.log, self.spec.log_max_size, self.spec.log_keep).ok();
        }
        if let Some(log) = &mut self.log {
            let _ = log.line(stream, line);
        }
    }

    /// What is left of unfinished lines, for a grove that attaches (or the log at the end).
    fn take_partial(&mut self, kind: u8) -> Vec<u8> {
        std::mem::take(&mut self.partial[Sink::stream(kind).0])
    }
}

/// The attached grove's writing side; its frames to us arrive on `renames`.
type Client = Option<tokio::net::unix::OwnedWriteHalf>;

/// Takes a new grove's connection: its writing half, and a task that passes on what it says.
fn connected(
    s: UnixStream,
    said: &tokio::sync::mpsc::UnboundedSender<(u8, Vec<u8>)>,
) -> tokio::net::unix::OwnedWriteHalf {
    let (mut r, w) = s.into_split();
    let said = said.clone();
    tokio::spawn(async move {
        while let Ok(Some(f)) = read_frame(&mut r).await {
            if said.send(f).is_err() {
                break;
            }
        }
    });
    w
}

/// Sends a frame to the attached grove; on failure the grove is gone (detached).
async fn send(client: &mut Client, kind: u8, payload: &[u8]) -> bool {
    let Some(c) = client else { return false };
    if c.write_all(&frame(kind, payload)).await.is_ok() {
        return true;
    }
    *client = None;
    false
}

/// The variables that name a socket-activated unit's socket.
type ListenEnv = Option<[(String, String); 2]>;

/// What the unit runs: its command, or for a socket-activated unit the command under
/// `grove __listen` (which tells it its own pid) with the variables naming the socket.
fn unit_argv(spec: &ShimSpec) -> io::Result<(Vec<String>, ListenEnv)> {
    Ok(match &spec.listen {
        Some(name) => {
            let exe = std::env::current_exe()?;
            let (argv, env) = crate::activation::wrap(&exe, &spec.argv, name);
            (argv, Some(env))
        }
        None => (spec.argv.clone(), None),
    })
}

async fn keep(spec: ShimSpec) -> io::Result<()> {
    let group = spec.cgroup.clone().map(Group::at);
    let also: Vec<Group> = spec.limit_groups.iter().map(Group::at).collect();
    let account = process::Account::of(&spec.run_as)?;
    let mut env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // As a login would: the user's own HOME, USER and LOGNAME, unless the unit sets them.
    let own = account.as_ref().map(|a| a.login_env()).unwrap_or_default();
    for (k, v) in &own {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k, v.as_str()));
        }
    }
    let (argv, listen_env) = unit_argv(&spec)?;
    for (k, v) in listen_env.iter().flatten() {
        env.push((k.as_str(), v.as_str()));
    }
    let mut child = process::spawn(&SpawnSpec {
        argv: &argv,
        cwd: &spec.cwd,
        env,
        capture: true,
        cgroup: group.as_ref(),
        account: account.as_ref(),
        also: &also,
        nofile: spec.nofile,
    })
    .map_err(|e| {
        let program = spec.argv.first().map(String::as_str).unwrap_or("");
        io::Error::other(format!(
            "cannot run `{program}` in {}: {e}",
            spec.cwd.display()
        ))
    })?;
    if spec.listen.is_some() {
        // The unit has it; grove holds it between the unit's lives, the shim need not.
        let _ = nix::unistd::close(crate::activation::FD);
    }
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let hello = Hello {
        unit: spec.unit.clone(),
        fingerprint: spec.fingerprint.clone(),
        pid,
        start_ticks: process::stat(pid).map(|s| s.start_ticks).unwrap_or(0),
        cgroup: spec.cgroup.clone(),
    };
    let socket = socket_path(&spec.run_dir, pid);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600));
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{pid}");
        let _ = out.flush();
    }
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("the unit's output is not captured"));
    };
    let mut sink = Sink {
        spec,
        log: None,
        partial: [Vec::new(), Vec::new()],
    };
    // The grove that started us attaches at once; until it does, the pipes hold the output.
    let mut hello = hello;
    let (said, mut heard) = tokio::sync::mpsc::unbounded_channel::<(u8, Vec<u8>)>();
    let mut client: Client = match tokio::time::timeout(FIRST_CLIENT, listener.accept()).await {
        Ok(Ok((s, _))) => Some(connected(s, &said)),
        _ => None,
    };
    send(&mut client, HELLO, &json(&hello)).await;
    let mut output = Output {
        out,
        err,
        bufs: [vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]],
        open: [true, true],
    };
    let status = loop {
        tokio::select! {
            Some((kind, payload)) = heard.recv() => {
                if kind == RENAME {
                    if let Ok(name) = serde_json::from_slice::<Name>(&payload) {
                        hello.unit = name.unit;
                        hello.fingerprint = name.fingerprint;
                    }
                }
            }
            accepted = listener.accept() => {
                if let Ok((s, _)) = accepted {
                    client = Some(connected(s, &said));
                    if send(&mut client, HELLO, &json(&hello)).await {
                        for kind in [OUT, ERR] {
                            let rest = sink.take_partial(kind);
                            if !rest.is_empty() {
                                send(&mut client, kind, &rest).await;
                            }
                        }
                    }
                }
            }
            got = output.next(), if output.open() => {
                if let Some((kind, bytes)) = got {
                    deliver(&mut client, &mut sink, kind, bytes).await;
                }
            }
            st = child.wait() => break match st {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitStatus { code: s.code(), signal: s.signal() }
                }
                Err(_) => ExitStatus { code: None, signal: None },
            },
        }
    };
    // What the unit left in its group and cgroup goes with it, so the pipes close: asked
    // first, then killed.
    ask_leftovers(pid, group.as_ref(), &mut output, &mut client, &mut sink).await;
    let _ = process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    if let Some(g) = &group {
        g.kill();
    }
    let drain = async {
        while let Some((kind, bytes)) = output.next().await {
            deliver(&mut client, &mut sink, kind, bytes).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    // What was written stays readable after we go: grove reads it to the end.
    if !send(&mut client, EXIT, &json(&status)).await {
        for kind in [OUT, ERR] {
            let rest = sink.take_partial(kind);
            if !rest.is_empty() {
                sink.line(Sink::stream(kind).1, &rest);
            }
        }
        let exit = socket.with_extension("sock.exit");
        let _ = std::fs::write(&exit, json(&Ended { hello, status }));
        let _ = std::fs::set_permissions(&exit, std::fs::Permissions::from_mode(0o600));
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Sends what the unit's main process left in its group and cgroup the unit's stop signal and
/// waits, forwarding their output, until they are gone or the stop grace runs out (systemd's
/// treatment of a service's leftovers: a gunicorn's workers finish their requests). The
/// caller SIGKILLs whatever is left. Zombies waiting for their reaper do not count.
async fn ask_leftovers(
    pid: i32,
    group: Option<&Group>,
    output: &mut Output,
    client: &mut Client,
    sink: &mut Sink,
) {
    let (signal, grace) = (sink.spec.stop_signal.clone(), sink.spec.stop_grace_ms);
    let Some(sig) = signal.as_deref().and_then(process::parse_signal) else {
        return;
    };
    let live = |p: &i32| process::stat(*p).is_some_and(|s| !s.zombie);
    let left = || process::group_alive(pid) || group.is_some_and(|g| g.pids().iter().any(live));
    if !left() {
        return;
    }
    let _ = process::signal_group(pid, sig);
    if let Some(g) = group {
        g.signal_escaped(pid, sig);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(grace);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            got = output.next(), if output.open() => {
                if let Some((kind, bytes)) = got {
                    deliver(client, sink, kind, bytes).await;
                }
            }
            _ = tick.tick() => {
                if !left() || tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        }
    }
}

/// The unit's two pipes, read as they have something.
struct Output {
    out: tokio::process::ChildStdout,
    err: tokio::process::ChildStderr,
    bufs: [Vec<u8>; 2],
    /// Which of the two has not ended.
    open: [bool; 2],
}

impl Output {
    /// Whether either pipe is still open.
    fn open(&self) -> bool {
        self.open.iter().any(|o| *o)
    }

    /// The next bytes from whichever pipe has some, with their kind (`OUT`, `ERR`); `None`
    /// once both have ended.
    async fn next(&mut self) -> Option<(u8, &[u8])> {
        while self.open() {
            let [out_buf, err_buf] = &mut self.bufs;
            let (i, n) = tokio::select! {
                n = self.out.read(out_buf), if self.open[0] => (0, n),
                n = self.err.read(err_buf), if self.open[1] => (1, n),
            };
            match n {
                Ok(n) if n > 0 => return Some(([OUT, ERR][i], &self.bufs[i][..n])),
                _ => self.open[i] = false,
            }
        }
        None
    }
}

async fn deliver(client: &mut Client, sink: &mut Sink, kind: u8, bytes: &[u8]) {
    if !send(client, kind, bytes).await {
        sink.write(kind, bytes);
    }
}

/// Writes one frame (for the tests).
#[cfg(test)]
async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) {
    w.write_all(&frame(kind, payload)).await.unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, OUT, b"hello\n").await;
        write_frame(&mut a, EXIT, b"{}").await;
        drop(a);
        assert_eq!(
            read_frame(&mut b).await.unwrap(),
            Some((OUT, b"hello\n".to_vec()))
        );
        assert_eq!(
            read_frame(&mut b).await.unwrap(),
            Some((EXIT, b"{}".to_vec()))
        );
        assert_eq!(read_frame(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[OUT, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(read_frame(&mut b).await.is_err());
    }

    #[test]
    fn the_sink_writes_whole_lines_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink {
            spec: ShimSpec {
                unit: "web".into(),
                fingerprint: String::new(),
                argv: vec![],
                cwd: dir.path().into(),
                env: vec![],
                cgroup: None,
                run_as: Default::default(),
                limit_groups: Vec::new(),
                nofile: None,
                run_dir: dir.path().into(),
                log: dir.path().join("web.log"),
                log_max_size: 1 << 20,
                log_keep: 1,
                stop_signal: None,
                stop_grace_ms: 0,
                listen: None,
            },
            log: None,
            partial: [Vec::new(), Vec::new()],
        };
        sink.write(OUT, b"one\ntw");
        sink.write(ERR, b"oops\n");
        sink.write(OUT, b"o\nthr");
        let log = std::fs::read_to_string(dir.path().join("web.log")).unwrap();
        let lines: Vec<&str> = log.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, vec!["out one", "err oops", "out two"]);
        assert_eq!(sink.take_partial(OUT), b"thr");
        assert!(sink.take_partial(ERR).is_empty());
    }
}
