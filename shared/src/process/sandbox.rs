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

/// The most processes a sandbox may have. Where goalpost may make cgroups (root, or a
/// delegated cgroup tree) each sandbox gets a `pids` cgroup of its own with this limit;
/// and `RLIMIT_NPROC` is lowered to it (never raised) for bwrap and all it starts, which
/// counts every process of the user, not only the sandbox's, and which the kernel does
/// not enforce on root. So a fork bomb stops here.
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
    if rules.offline {
        cmd.arg("--unshare-net");
    }
    cmd.args(mounts(rules));
    let fd = ruleset.as_raw_fd();
    cmd.arg("--chdir")
        .arg(cwd)
        .arg("--")
        .arg(entry()?)
        .arg(fd.to_string());
    if let Some(scratch) = &rules.scratch {
        cmd.arg(SCRATCH_FLAG)
            .arg(crate::confine::write_access().to_string())
            .arg(&scratch.path);
    }
    cmd.arg(path).args(argv);
    let max = rules.max_processes.unwrap_or(MAX_PROCESSES);
    let procs = super::cgroup::make(max).and_then(|procs| {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::CString::new(procs.as_os_str().as_bytes()).ok()
    });
    sys::sandbox_on_exec(&mut cmd, fd, max, procs);
    Ok(cmd)
}

/// Most bytes a hidden directory's stand-in holds: it is read-only once the binds inside
/// it are made, and until then only bwrap writes there (their mount points).
const HIDDEN_BYTES: u64 = 64 * 1024;

/// bwrap's mount options for `rules`, in an order where no mount hides one made inside
/// it: outer paths first, and at one depth a hidden directory's stand-in before the binds
/// that go into it. The stand-ins become read-only last.
fn mounts(rules: &Confinement) -> Vec<OsString> {
    enum Mount<'a> {
        Hidden(&'a Path),
        Writable(&'a Path),
        Scratch(&'a Path, u64),
        Readable(&'a Path),
    }
    let mut mounts: Vec<(usize, u8, Mount<'_>)> = Vec::new();
    let depth = |p: &Path| p.components().count();
    for dir in &rules.hidden {
        mounts.push((depth(dir), 0, Mount::Hidden(dir)));
    }
    for dir in &rules.writable {
        mounts.push((depth(dir), 1, Mount::Writable(dir)));
    }
    if let Some(scratch) = &rules.scratch {
        let dir = &scratch.path;
        mounts.push((depth(dir), 1, Mount::Scratch(dir, scratch.bytes)));
    }
    for path in &rules.readable {
        mounts.push((depth(path), 2, Mount::Readable(path)));
    }
    mounts.sort_by_key(|&(depth, order, _)| (depth, order));
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |words: &[&OsStr]| args.extend(words.iter().map(|w| w.to_os_string()));
    for (_, _, mount) in &mounts {
        match *mount {
            Mount::Hidden(dir) => push(&[
                "--size".as_ref(),
                HIDDEN_BYTES.to_string().as_ref(),
                "--tmpfs".as_ref(),
                dir.as_os_str(),
            ]),
            Mount::Writable(dir) => push(&["--bind".as_ref(), dir.as_os_str(), dir.as_os_str()]),
            Mount::Scratch(dir, bytes) => push(&[
                "--size".as_ref(),
                bytes.to_string().as_ref(),
                "--tmpfs".as_ref(),
                dir.as_os_str(),
            ]),
            Mount::Readable(path) => {
                push(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()])
            }
        }
    }
    for dir in &rules.hidden {
        push(&["--remount-ro".as_ref(), dir.as_os_str()]);
    }
    args
}

/// The entry point's option that names the sandbox's temp dir and the rights to allow
/// in it: its file system is mounted inside the sandbox, so only the entry point can name
/// it in a Landlock rule.
const SCRATCH_FLAG: &str = "--scratch";

/// Why [`enter`] could not run the program.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error(
        "usage: {ENTRY_NAME} RULESET-FD [{SCRATCH_FLAG} ACCESS DIR] PROGRAM ARGV0 [ARG...] \
         (run by goalpost, not by hand)"
    )]
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
pub fn enter(args: impl Iterator<Item = OsString>) -> EnterError {
    let mut args = args.peekable();
    let fd = args
        .next()
        .and_then(|fd| fd.to_str().and_then(|s| s.parse::<RawFd>().ok()))
        .filter(|&fd| fd > 2);
    let Some(fd) = fd else {
        return EnterError::Usage;
    };
    if args.peek().is_some_and(|a| a == SCRATCH_FLAG) {
        args.next();
        let access = args.next().and_then(|a| a.to_str()?.parse::<u64>().ok());
        let (Some(access), Some(dir)) = (access, args.next()) else {
            return EnterError::Usage;
        };
        if let Err(err) = sys::allow_beneath(fd, Path::new(&dir), access) {
            return EnterError::Restrict(err);
        }
    }
    let (Some(path), Some(arg0)) = (args.next(), args.next()) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::{self, Confinement};
    use crate::process::{Command, Outcome, run};
    use std::time::Duration;

    /// Whether a sandbox can be made here; under CI it must be.
    fn can_sandbox() -> bool {
        let ok = confine::probe().is_ok();
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "CI must be able to make a sandbox"
        );
        ok
    }

    fn sh(cwd: &Path, script: &str, rules: Confinement) -> Outcome {
        let cmd = Command::new("/bin/sh", cwd)
            .args(["-c", script])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .confine(Some(rules));
        run(&cmd, None).unwrap()
    }

    #[test]
    fn a_hidden_directory_is_empty_and_read_only_but_for_what_is_bound_inside_it() {
        if !can_sandbox() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let mine = state.join("runs/r/attempts/p.1");
        let prompts = mine.join("prompts");
        let tmp = mine.join("tmp");
        std::fs::create_dir_all(&prompts).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(state.join("state.db"), "secret").unwrap();
        std::fs::write(state.join("worktrees.lock"), "").unwrap();
        std::fs::write(prompts.join("implementer-1.md"), "the prompt").unwrap();
        let rules = Confinement::new([tmp.canonicalize().unwrap()])
            .hiding(std::slice::from_ref(&state))
            .showing(&prompts);
        let script = "ls -A ../../../..; cat ../../../../state.db || echo no-db >&2; \
                      cat prompts/implementer-1.md; echo; \
                      (echo x > prompts/new) || echo prompts-read-only >&2; \
                      (echo x > ../../../../planted) || echo hidden-read-only >&2; \
                      echo ok > tmp/new";
        let out = sh(&mine, script, rules);
        let (stdout, stderr) = (out.stdout.text_lossy(), out.stderr.text_lossy());
        assert!(!stdout.contains("state.db"), "{stdout}");
        assert!(!stdout.contains("worktrees.lock"), "{stdout}");
        assert!(stdout.contains("the prompt"), "{stdout}");
        for refused in ["no-db", "prompts-read-only", "hidden-read-only"] {
            assert!(stderr.contains(refused), "{refused}: {stderr}");
        }
        assert_eq!(std::fs::read_to_string(tmp.join("new")).unwrap(), "ok\n");
        assert!(!state.join("planted").exists());
        assert!(!prompts.join("new").exists());
    }

    #[test]
    fn a_scratch_dir_starts_empty_is_capped_and_leaves_nothing_behind() {
        if !can_sandbox() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("left-before"), "old").unwrap();
        let rules = Confinement::new([work.canonicalize().unwrap()])
            .with_scratch(&tmp, 2 << 20)
            .unwrap();
        let script = format!(
            "ls -A {tmp}; echo small > {tmp}/small && echo small-ok; \
             head -c 8388608 /dev/zero > {tmp}/big || echo big-refused >&2; \
             echo made > made",
            tmp = tmp.display()
        );
        let out = sh(&work, &script, rules);
        let (stdout, stderr) = (out.stdout.text_lossy(), out.stderr.text_lossy());
        assert!(!stdout.contains("left-before"), "{stdout}");
        assert!(stdout.contains("small-ok"), "{out:?}");
        assert!(stderr.contains("big-refused"), "{stderr}");
        assert!(stderr.contains("No space left"), "{stderr}");
        assert!(work.join("made").is_file(), "{stderr}");
        // The host's directory is as it was: nothing of the sandbox's file system on it.
        let names: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn an_offline_child_cannot_reach_a_loopback_server_outside_and_an_online_one_can() {
        if !can_sandbox() || !Path::new("/bin/bash").is_file() {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let work = tempfile::tempdir().unwrap();
        let writable = work.path().canonicalize().unwrap();
        let script = format!(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && echo connected || echo refused"
        );
        let online = sh(work.path(), &script, Confinement::new([writable.clone()]));
        assert!(
            online.stdout.text_lossy().contains("connected"),
            "{online:?}"
        );
        let offline = sh(
            work.path(),
            &script,
            Confinement::new([writable]).offline(true),
        );
        assert!(
            offline.stdout.text_lossy().contains("refused"),
            "{offline:?}"
        );
    }

    #[test]
    fn a_fork_bomb_stops_at_the_sandboxs_process_limit() {
        if !can_sandbox() {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let writable = work.path().canonicalize().unwrap();
        // Forks until the kernel refuses; each child waits for its end with the sandbox.
        let bomb = "import os, time\n\
                    n = 0\n\
                    try:\n    \
                        while n < 1000:\n        \
                            if os.fork() == 0:\n            \
                                time.sleep(60)\n            \
                                os._exit(0)\n        \
                            n += 1\n\
                    except OSError as e:\n    \
                        print('refused', e.strerror)\n\
                    print('forked', n, flush=True)\n\
                    os._exit(0)\n";
        std::fs::write(work.path().join("bomb.py"), bomb).unwrap();
        let rules = Confinement {
            max_processes: Some(32),
            ..Confinement::new([writable])
        };
        let out = sh(work.path(), "/usr/bin/python3 bomb.py", rules);
        let stdout = out.stdout.text_lossy();
        assert!(stdout.contains("refused"), "{out:?}");
        let forked: u32 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("forked "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{out:?}"));
        assert!(forked < 32, "{forked} processes: {out:?}");
        // The sandbox ended, and every child with it, well before their sleep.
        assert!(out.duration < Duration::from_secs(30), "{out:?}");
    }
}
