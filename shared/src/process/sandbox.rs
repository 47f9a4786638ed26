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
/// `rules`, restricted to the Landlock ruleset `ruleset` once inside, the entry point's
/// [`Report`] written to `report`. The caller sets the working directory, environment and
/// stdio as for the program itself; `ruleset` and `report` must stay open until the child
/// has started.
pub(super) fn command(
    path: &Path,
    argv: &[OsString],
    cwd: &Path,
    rules: &Confinement,
    ruleset: &OwnedFd,
    report: &io::PipeWriter,
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
    let report = report.as_raw_fd();
    cmd.arg(REPORT_FLAG).arg(report.to_string());
    cmd.arg(path).args(argv);
    let max = rules.max_processes.unwrap_or(MAX_PROCESSES);
    let procs = super::cgroup::make(max).and_then(|procs| {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::CString::new(procs.as_os_str().as_bytes()).ok()
    });
    sys::sandbox_on_exec(&mut cmd, [fd, report], max, procs);
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

/// The entry point's option that names the descriptor it writes its [`Report`] to.
const REPORT_FLAG: &str = "--report";

/// Why [`enter`] could not run the program.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error(
        "usage: {ENTRY_NAME} RULESET-FD [{SCRATCH_FLAG} ACCESS DIR] [{REPORT_FLAG} FD] \
         PROGRAM ARGV0 [ARG...] (run by goalpost, not by hand)"
    )]
    Usage,
    #[error("applying the Landlock ruleset: {0}")]
    Restrict(io::Error),
    #[error("cannot run {}: {source}", .path.display())]
    Exec { path: PathBuf, source: io::Error },
    #[error("following the program: {0}")]
    Follow(io::Error),
}

/// What the entry point tells goalpost when the program has exited, on the descriptor
/// goalpost named: one line `late STDOUT STDERR`, the bytes the program's processes wrote
/// to each stream after the program itself had exited, which were not passed on. Only the
/// entry point holds that descriptor: the program does not inherit it, and Landlock keeps
/// the program from reading another domain's `/proc/<pid>/fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    pub late: [u64; 2],
}

impl Report {
    fn line(&self) -> String {
        format!("late {} {}\n", self.late[0], self.late[1])
    }

    /// The report in `text`, or none if the entry point did not write one (it was killed,
    /// or the sandbox timed out).
    pub fn parse(text: &str) -> Option<Report> {
        let mut words = text.lines().next()?.split(' ');
        if words.next()? != "late" {
            return None;
        }
        let out = words.next()?.parse().ok()?;
        let err = words.next()?.parse().ok()?;
        Some(Report { late: [out, err] })
    }
}

/// The entry point's whole job, inside the sandbox: `args` are the ruleset descriptor, the
/// options, the program's path, its `argv[0]` and its arguments.
///
/// The program runs as a child of the entry point, which stays outside the Landlock
/// domain the child restricts itself to before exec (so the program can neither signal,
/// trace nor read it) and passes the program's stdout and stderr on through pipes of its
/// own. When the program exits, the entry point cuts both streams where they stand: the
/// bytes already written are passed on, every other process in the sandbox is killed
/// before the program is reaped (so none of them can see it gone first), and whatever they
/// wrote meanwhile is counted as late and dropped. Returns the exit status to end with:
/// the program's code, or 128 + the signal that killed it, as bwrap reports it.
pub fn enter(args: impl Iterator<Item = OsString>) -> Result<u8, EnterError> {
    let mut args = args.peekable();
    let fd = args
        .next()
        .and_then(|fd| fd.to_str().and_then(|s| s.parse::<RawFd>().ok()))
        .filter(|&fd| fd > 2);
    let Some(fd) = fd else {
        return Err(EnterError::Usage);
    };
    if args.peek().is_some_and(|a| a == SCRATCH_FLAG) {
        args.next();
        let access = args.next().and_then(|a| a.to_str()?.parse::<u64>().ok());
        let (Some(access), Some(dir)) = (access, args.next()) else {
            return Err(EnterError::Usage);
        };
        sys::allow_beneath(fd, Path::new(&dir), access).map_err(EnterError::Restrict)?;
    }
    let mut report_fd = None;
    if args.peek().is_some_and(|a| a == REPORT_FLAG) {
        args.next();
        let Some(n) = args
            .next()
            .and_then(|n| n.to_str().and_then(|s| s.parse::<RawFd>().ok()))
            .filter(|&n| n > 2 && n != fd)
        else {
            return Err(EnterError::Usage);
        };
        report_fd = Some(n);
    }
    let (Some(path), Some(arg0)) = (args.next(), args.next()) else {
        return Err(EnterError::Usage);
    };
    // The program must inherit neither: the ruleset is applied in the child before exec.
    sys::set_cloexec(fd).map_err(EnterError::Restrict)?;
    if let Some(n) = report_fd {
        sys::set_cloexec(n).map_err(EnterError::Follow)?;
    }
    let path = PathBuf::from(path);
    let (out_r, out_w) = io::pipe().map_err(EnterError::Follow)?;
    let (err_r, err_w) = io::pipe().map_err(EnterError::Follow)?;
    let mut cmd = std::process::Command::new(&path);
    cmd.arg0(OsStr::new(&arg0))
        .args(args)
        .stdout(out_w)
        .stderr(err_w);
    sys::restrict_on_exec(&mut cmd, fd);
    let spawned = cmd.spawn();
    // The parent's copies of the write ends go with `cmd`: the streams end when the
    // program's processes are gone.
    drop(cmd);
    let mut child = spawned.map_err(|source| EnterError::Exec {
        path: path.clone(),
        source,
    })?;
    sys::set_not_dumpable().map_err(EnterError::Follow)?;
    let report = relay(child.id(), [out_r, err_r]).map_err(EnterError::Follow)?;
    let status = child.wait().map_err(EnterError::Follow)?;
    if let Some(n) = report_fd {
        use std::io::Write;
        std::fs::File::from(sys::inherited_fd(n))
            .write_all(report.line().as_bytes())
            .map_err(EnterError::Follow)?;
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    })
}

/// Passes `pipes` (the program's stdout and stderr) on to this process's own until the
/// program `pid` exits; then cuts them (see [`enter`]).
fn relay(pid: u32, mut pipes: [io::PipeReader; 2]) -> io::Result<Report> {
    let exited = sys::pidfd_open(pid)?;
    let exited = exited.as_raw_fd();
    let fds = [pipes[0].as_raw_fd(), pipes[1].as_raw_fd()];
    for &fd in &fds {
        sys::set_nonblocking(fd)?;
    }
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    let gone = || -> io::Result<bool> { Ok(sys::poll(&[(exited, libc::POLLIN)], 0)?[0] != 0) };
    'follow: loop {
        let mut watched = vec![(exited, libc::POLLIN)];
        watched.extend((0..2).filter(|&i| open[i]).map(|i| (fds[i], libc::POLLIN)));
        let revents = sys::poll(&watched, -1)?;
        if revents[0] != 0 {
            break;
        }
        for (slot, &(fd, _)) in watched.iter().enumerate().skip(1) {
            if revents[slot] == 0 {
                continue;
            }
            let stream = usize::from(fd == fds[1]);
            let pending = sys::pipe_pending(fd)?;
            if pending == 0 {
                // Readable with nothing in it: every writer has closed its end.
                open[stream] = false;
                continue;
            }
            // Counted while the program had not exited: all of it came before the exit.
            if gone()? {
                break 'follow;
            }
            pass_on(&mut pipes[stream], stream, pending, &mut buf)?;
        }
    }
    // The cut: what is in the pipes now was written before the exit was seen.
    for stream in (0..2).filter(|&i| open[i]) {
        let pending = sys::pipe_pending(fds[stream])?;
        pass_on(&mut pipes[stream], stream, pending, &mut buf)?;
    }
    sys::kill_every_other_process_in_namespace();
    let mut report = Report::default();
    for stream in (0..2).filter(|&i| open[i]) {
        report.late[stream] = sys::pipe_pending(fds[stream])? as u64;
    }
    drop(pipes);
    Ok(report)
}

/// Copies exactly `count` bytes (fewer if the pipe holds fewer) from `pipe` to this
/// process's stdout (`stream` 0) or stderr (1).
fn pass_on(
    pipe: &mut io::PipeReader,
    stream: usize,
    mut count: usize,
    buf: &mut [u8],
) -> io::Result<()> {
    use std::io::{Read, Write};
    let mut out: Box<dyn Write> = if stream == 0 {
        Box::new(io::stdout().lock())
    } else {
        Box::new(io::stderr().lock())
    };
    while count > 0 {
        let want = count.min(buf.len());
        match pipe.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                out.write_all(&buf[..n])?;
                count -= n;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) => return Err(err),
        }
    }
    out.flush()
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

    /// A process the program leaves behind, in a busy loop until the program is gone (as
    /// `kill -0` sees it), then writing a line of its own.
    const WAITS_FOR_THE_EXIT: &str = "import os, sys\n\
        pid = os.getppid()\n\
        if os.fork() == 0:\n    \
            os.setsid()\n    \
            while True:\n        \
                try:\n            \
                    os.kill(pid, 0)\n        \
                except ProcessLookupError:\n            \
                    os.write(1, b'forged=1\\n')\n            \
                    os._exit(0)\n\
        print('real=60', flush=True)\n";

    #[test]
    fn nothing_written_after_the_program_exited_is_read() {
        if !can_sandbox() {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let writable = work.path().canonicalize().unwrap();
        std::fs::write(work.path().join("leave.py"), WAITS_FOR_THE_EXIT).unwrap();
        for _ in 0..20 {
            // The shell is the program; python leaves its survivor and exits first, so the
            // survivor waits for the shell.
            let out = sh(
                work.path(),
                "/usr/bin/python3 leave.py; echo done",
                Confinement::new([writable.clone()]),
            );
            let stdout = out.stdout.text_lossy();
            assert_eq!(stdout, "real=60\ndone\n", "{out:?}");
            assert!(out.status.success(), "{out:?}");
        }
    }

    #[test]
    fn the_entry_point_passes_the_programs_status_and_both_streams_on() {
        if !can_sandbox() {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let writable = work.path().canonicalize().unwrap();
        let rules = || Confinement::new([writable.clone()]);
        let out = sh(work.path(), "echo out; echo err >&2; exit 7", rules());
        assert_eq!(out.status.code, Some(7), "{out:?}");
        assert_eq!(out.stdout.text_lossy(), "out\n");
        assert_eq!(out.stderr.text_lossy(), "err\n");
        assert_eq!(out.late_bytes, 0);
        let killed = sh(work.path(), "kill -TERM $$", rules());
        assert_eq!(killed.status.code, Some(128 + libc::SIGTERM), "{killed:?}");
        // More than a pipe holds, in both streams at once, all of it passed on.
        let big = sh(
            work.path(),
            "head -c 3000000 /dev/zero | tr '\\0' a; head -c 2000000 /dev/zero | tr '\\0' b >&2",
            rules(),
        );
        assert_eq!(big.stdout.total, 3_000_000, "{:?}", big.status);
        assert_eq!(big.stderr.total, 2_000_000, "{:?}", big.status);
    }

    #[test]
    fn the_program_cannot_reach_the_entry_points_descriptors_or_signal_it() {
        if !can_sandbox() {
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let writable = work.path().canonicalize().unwrap();
        // $PPID is the entry point; 1 is bwrap's init.
        let script = "for p in $PPID 1; do \
                        for fd in 1 2 3 4 5 6 7; do \
                          (echo forged > /proc/$p/fd/$fd) 2>/dev/null && echo wrote-$p-$fd; \
                        done; \
                        kill -STOP $p 2>/dev/null && echo stopped-$p; \
                      done; echo end";
        let out = sh(work.path(), script, Confinement::new([writable]));
        assert_eq!(out.stdout.text_lossy(), "end\n", "{out:?}");
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn a_report_is_one_line_of_late_bytes() {
        let report = Report { late: [3, 4] };
        assert_eq!(Report::parse(&report.line()), Some(report));
        assert_eq!(Report::parse("late 3\n"), None);
        assert_eq!(Report::parse(""), None);
        assert_eq!(Report::parse("early 1 2\n"), None);
    }
}
