//! The namespace sandbox a confined child runs in: bubblewrap (`bwrap`) gives it a PID
//! namespace of its own (it sees and can signal only its own processes, and when the
//! sandbox's first process ends every process in it is gone, `setsid` daemons included),
//! a new session (no `TIOCSTI` into the user's terminal), its own `/proc` and `/dev`, and
//! a file system that is read-only but for the [`Confinement`]'s writable directories,
//! bound read-write at their own paths (its read-only files bound read-only over
//! themselves inside them). The network is left as it is.
//!
//! Landlock forbids a restricted process to mount, so the Landlock ruleset cannot be
//! applied before bwrap has set up its mounts. bwrap therefore execs `goalpost-sandbox`
//! (see [`enter`]), which restricts itself to the ruleset the parent built and passed
//! down as an open descriptor, then execs the program: Landlock stays the second layer,
//! inherited by everything the program starts.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::sys;
use crate::confine::{ConfineError, Confinement};

/// Test hook and override: the `bwrap` to use instead of the one on `PATH`. A path that
/// does not exist (`GOALPOST_BWRAP=/nonexistent`) makes [`probe`] report bwrap missing.
pub const BWRAP_VAR: &str = "GOALPOST_BWRAP";

/// Override: the `goalpost-sandbox` entry point to use instead of the one installed next
/// to the running binary.
pub const ENTRY_VAR: &str = "GOALPOST_SANDBOX_ENTRY";

/// The name of the entry point binary bwrap execs inside the sandbox.
pub const ENTRY_NAME: &str = "goalpost-sandbox";

/// The most processes the user may have while a confined child runs: `RLIMIT_NPROC` is
/// lowered to this (never raised) for bwrap and all it starts, so a fork bomb stops here.
/// The kernel counts every process of the user, not only the sandbox's, and does not
/// enforce the limit on root.
pub const MAX_PROCESSES: u64 = 4096;

/// The options every sandbox gets, before the writable binds.
const BASE: &[&str] = &[
    "--unshare-pid",
    "--die-with-parent",
    "--new-session",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    // The new /dev hides the host's shared-memory file system, where files (a repository,
    // an agent's script) may live like anywhere else: read-only, as the rest of `/`.
    "--ro-bind-try",
    "/dev/shm",
    "/dev/shm",
];

/// The `bwrap` to run: [`BWRAP_VAR`], else the first `bwrap` on goalpost's own `PATH`.
pub fn bwrap() -> Result<PathBuf, ConfineError> {
    if let Some(path) = std::env::var_os(BWRAP_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ConfineError::NoSandbox {
                why: format!("{BWRAP_VAR}={} does not exist", path.display()),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("bwrap"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ConfineError::NoSandbox {
            why: "bwrap (bubblewrap) is not on PATH".to_owned(),
        })
}

/// The `goalpost-sandbox` entry point: [`ENTRY_VAR`], else the one next to the running
/// binary (or, for a test binary in `target/*/deps`, in the directory above).
pub fn entry() -> Result<PathBuf, ConfineError> {
    if let Some(path) = std::env::var_os(ENTRY_VAR) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|source| ConfineError::Path {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let mut dirs = exe.ancestors().skip(1).take(2);
    dirs.find_map(|dir| Some(dir.join(ENTRY_NAME)).filter(|p| p.is_file()))
        .ok_or_else(|| ConfineError::NoSandbox {
            why: format!("{ENTRY_NAME} is not installed next to {}", exe.display()),
        })
}

/// Checks that a sandbox can be made here: bwrap found, the entry point found, and a
/// trial sandbox (user and PID namespaces, mounts) runs `true` to its end.
pub fn probe() -> Result<(), ConfineError> {
    let bwrap = bwrap()?;
    entry()?;
    let out = std::process::Command::new(&bwrap)
        .args(BASE)
        .args(["--", "true"])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| ConfineError::NoSandbox {
            why: format!("cannot run {}: {source}", bwrap.display()),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(ConfineError::NoSandbox {
        why: format!(
            "{} cannot make a sandbox ({}): {}",
            bwrap.display(),
            out.status,
            stderr.trim()
        ),
    })
}

/// The command that runs `program` (resolved to `path`) with `args` in a sandbox of
/// `rules`, restricted to the Landlock ruleset `ruleset` once inside. The caller sets the
/// working directory, environment and stdio as for the program itself; `ruleset` must stay
/// open until the child has started.
pub(super) fn command(
    path: &Path,
    argv: &[OsString],
    cwd: &Path,
    rules: &Confinement,
    ruleset: &OwnedFd,
) -> Result<std::process::Command, ConfineError> {
    let mut cmd = std::process::Command::new(bwrap()?);
    cmd.args(BASE);
    // Outer directories first, so a bind never hides one made inside it.
    let mut writable: Vec<&PathBuf> = rules.writable.iter().collect();
    writable.sort_by_key(|dir| dir.components().count());
    for dir in writable {
        cmd.arg("--bind").arg(dir).arg(dir);
    }
    // After the writable binds, which they lie under.
    for file in &rules.read_only {
        cmd.arg("--ro-bind").arg(file).arg(file);
    }
    let fd = ruleset.as_raw_fd();
    cmd.arg("--chdir")
        .arg(cwd)
        .arg("--")
        .arg(entry()?)
        .arg(fd.to_string())
        .arg(path)
        .args(argv);
    sys::sandbox_on_exec(&mut cmd, fd, MAX_PROCESSES);
    Ok(cmd)
}

/// Why [`enter`] could not run the program.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("usage: {ENTRY_NAME} RULESET-FD PROGRAM ARGV0 [ARG...] (run by goalpost, not by hand)")]
    Usage,
    #[error("applying the Landlock ruleset: {0}")]
    Restrict(io::Error),
    #[error("cannot run {}: {source}", .path.display())]
    Exec { path: PathBuf, source: io::Error },
}

/// The entry point's whole job, inside the sandbox: `args` are the ruleset descriptor, the
/// program's path, its `argv[0]` and its arguments. Restricts this process to the ruleset,
/// closes it, and execs the program with the environment, working directory and stdio it
/// was given. Returns only if that failed.
pub fn enter(mut args: impl Iterator<Item = OsString>) -> EnterError {
    let fd = args
        .next()
        .and_then(|fd| fd.to_str().and_then(|s| s.parse::<RawFd>().ok()))
        .filter(|&fd| fd > 2);
    let (Some(fd), Some(path), Some(arg0)) = (fd, args.next(), args.next()) else {
        return EnterError::Usage;
    };
    if let Err(err) = sys::restrict_self(fd) {
        return EnterError::Restrict(err);
    }
    let path = PathBuf::from(path);
    let source = std::process::Command::new(&path)
        .arg0(OsStr::new(&arg0))
        .args(args)
        .exec();
    EnterError::Exec { path, source }
}
