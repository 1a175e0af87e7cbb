//! Socket activation as systemd does it (`sd_listen_fds(3)`): a unit with `socket = true`
//! gets its listening socket from grove as descriptor 3, with `LISTEN_FDS=1`,
//! `LISTEN_FDNAMES=<service>` and `LISTEN_PID=<its own pid>`, so gunicorn, uvicorn
//! (`--fd 3`), Node, Go's and Rust's activation helpers serve on it instead of binding.
//!
//! grove passes the socket to the shim at descriptor 3 ([`pass`]); the shim's child inherits
//! it. `LISTEN_PID` must be the pid of the process that reads it, which only that process
//! knows after the fork: the shim runs the unit as `grove __listen PROGRAM ARGS...`
//! ([`wrap`]), which sets it and `exec`s the program in the same process ([`main`]).
//!
//! It must not know who holds the socket between the unit's lives (the engine does).

use std::io;
use std::os::fd::RawFd;

/// The hidden subcommand that sets `LISTEN_PID` and runs the unit's program.
pub const LISTEN_ARG: &str = "__listen";

/// The descriptor the socket has in the unit (`SD_LISTEN_FDS_START`).
pub const FD: RawFd = 3;

/// Has `cmd`'s child get `fd` as descriptor [`FD`] (without close-on-exec, so the shim's own
/// child inherits it in turn).
#[allow(unsafe_code)]
pub fn pass(cmd: &mut tokio::process::Command, fd: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and only calls dup2(2) and
    // fcntl(2), which are async-signal-safe, on a descriptor the parent keeps open until the
    // spawn returns; its error is built from the raw code without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if fd == FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                if flags < 0
                    || nix::libc::fcntl(fd, nix::libc::F_SETFD, flags & !nix::libc::FD_CLOEXEC) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            } else if nix::libc::dup2(fd, FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The command line and variables that run `argv` with the socket at [`FD`] named `name`.
pub fn wrap(
    exe: &std::path::Path,
    argv: &[String],
    name: &str,
) -> (Vec<String>, [(String, String); 2]) {
    let mut wrapped = vec![exe.to_string_lossy().into_owned(), LISTEN_ARG.to_string()];
    wrapped.extend(argv.iter().cloned());
    let env = [
        ("LISTEN_FDS".to_string(), "1".to_string()),
        ("LISTEN_FDNAMES".to_string(), name.to_string()),
    ];
    (wrapped, env)
}

/// `grove __listen PROGRAM ARGS...`: sets `LISTEN_PID` to this process and becomes PROGRAM
/// (looked up in `PATH`); returns only when it cannot.
pub fn main() -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("grove __listen: no program");
        return std::process::ExitCode::from(2);
    };
    let err = std::process::Command::new(program)
        .args(rest)
        .env("LISTEN_PID", std::process::id().to_string())
        .exec();
    eprintln!("cannot run `{}`: {err}", program.to_string_lossy());
    // 127 as a shell says "not found", 126 for any other failure to run it.
    let code = if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    std::process::ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_under_the_helper_with_the_socket_named() {
        let (argv, env) = wrap(
            std::path::Path::new("/usr/bin/grove"),
            &["gunicorn".to_string(), "app:app".to_string()],
            "web",
        );
        assert_eq!(argv, ["/usr/bin/grove", "__listen", "gunicorn", "app:app"]);
        assert_eq!(env[0], ("LISTEN_FDS".to_string(), "1".to_string()));
        assert_eq!(env[1], ("LISTEN_FDNAMES".to_string(), "web".to_string()));
    }
}
