//! The edge's listening sockets outlive grove too: a small holder process per stack
//! (`grove __sockets`) keeps a descriptor of each one while grove runs, so when grove dies the
//! sockets stay open and new connections wait in their backlogs instead of being refused. The
//! next grove asks the holder for them ([`take`]), serves on them (the waiting connections
//! first) and hands its own set to a fresh holder ([`hold`]); `down` lets the holder go
//! ([`release`]).
//!
//! The holder listens on `.grove/run/listeners.sock` (0600). A request is one line, `GET` or
//! `QUIT`; `GET` is answered by one message whose bytes are the JSON list of addresses and
//! whose `SCM_RIGHTS` carry the descriptors, in that order. The holder gets its set the same
//! way, on its stdin, when it starts.

use std::io::{self, BufRead, IoSlice, IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The hidden subcommand that runs a holder.
pub const HOLDER_ARG: &str = "__sockets";

/// Most sockets one message carries.
const MAX_FDS: usize = 64;

fn socket(run_dir: &Path) -> PathBuf {
    run_dir.join("listeners.sock")
}

/// Sends `payload` with `fds` attached, in one message.
fn send_fds(s: &UnixStream, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let iov = [IoSlice::new(payload)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one message: its bytes and the descriptors it carried (close-on-exec).
#[allow(unsafe_code)]
fn recv_fds(s: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (bytes, raw) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut raw = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, raw)
    };
    // SAFETY: the kernel just installed these descriptors in this process for this message
    // (SCM_RIGHTS); nothing else refers to them, so each is owned exactly once here.
    let fds = raw
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    buf.truncate(bytes);
    Ok((buf, fds))
}

fn ask(run_dir: &Path, what: &str) -> io::Result<UnixStream> {
    let s = UnixStream::connect(socket(run_dir))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    (&s).write_all(format!("{what}\n").as_bytes())?;
    Ok(s)
}

/// The listening sockets the holder of `run_dir` keeps; none when there is no holder.
pub fn take(run_dir: &Path) -> Vec<(SocketAddr, std::net::TcpListener)> {
    let Ok(s) = ask(run_dir, "GET") else {
        return Vec::new();
    };
    let Ok((bytes, fds)) = recv_fds(&s) else {
        // A holder that does not answer must not keep the addresses from being bound.
        release(run_dir);
        return Vec::new();
    };
    let addrs: Vec<SocketAddr> = serde_json::from_slice(&bytes).unwrap_or_default();
    addrs
        .into_iter()
        .zip(fds)
        .map(|(a, fd)| (a, std::net::TcpListener::from(fd)))
        .collect()
}

/// Lets the holder of `run_dir` go (its descriptors close; grove's own stay open), and waits
/// until it has.
pub fn release(run_dir: &Path) {
    if let Ok(s) = ask(run_dir, "QUIT") {
        let mut line = String::new();
        let _ = io::BufReader::new(&s).read_line(&mut line);
    }
}

/// Hands `listening` to a new holder for `run_dir` (replacing the one before), started from
/// `exe` (grove itself) with `env` (the stack's name, so test harnesses find it).
pub async fn hold(
    exe: &Path,
    run_dir: &Path,
    listening: Vec<(SocketAddr, OwnedFd)>,
    env: &[(&str, &str)],
) -> io::Result<()> {
    release(run_dir);
    if listening.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(run_dir)?;
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = tokio::process::Command::new(exe);
    if let Ok(shown) = std::env::current_exe() {
        cmd.arg0(shown);
    }
    cmd.arg(HOLDER_ARG)
        .arg(run_dir)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let addrs: Vec<SocketAddr> = listening.iter().map(|(a, _)| *a).collect();
    let raw: Vec<RawFd> = listening.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    let payload = serde_json::to_vec(&addrs).map_err(io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        send_fds(&ours, &payload, &raw)?;
        drop(listening);
        ours.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        io::BufReader::new(&ours).read_line(&mut line)?;
        match line.trim() {
            "ok" => Ok(()),
            other => Err(io::Error::other(format!(
                "the socket holder said `{other}`"
            ))),
        }
    })
    .await
    .map_err(io::Error::other)?
}

/// `grove __sockets RUN_DIR`: holds the descriptors it is given on stdin until told `QUIT`.
pub fn main() -> std::process::ExitCode {
    match serve() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::from(1),
    }
}

fn serve() -> io::Result<()> {
    let run_dir = std::env::args_os()
        .nth(2)
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("no run folder"))?;
    let parent = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let (addrs, fds) = recv_fds(&parent)?;
    let path = socket(&run_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    (&parent).write_all(b"ok\n")?;
    drop(parent);
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if io::BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        match line.trim() {
            "GET" => {
                let _ = send_fds(&conn, &addrs, &raw);
            }
            "QUIT" => {
                let _ = std::fs::remove_file(&path);
                drop(fds);
                let _ = (&conn).write_all(b"bye\n");
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_travel_with_their_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send_fds(&a, b"[1]", &[l.as_raw_fd()]).unwrap();
        let (bytes, fds) = recv_fds(&b).unwrap();
        assert_eq!(bytes, b"[1]");
        assert_eq!(fds.len(), 1);
        let again = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(again.local_addr().unwrap(), addr, "the same socket");
        drop(l);
        // Still listening through the passed descriptor.
        assert!(std::net::TcpStream::connect(addr).is_ok());
    }
}
