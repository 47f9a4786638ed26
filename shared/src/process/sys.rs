//! The few system calls std does not wrap; the only unsafe code of the crate.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// `kill(-pgid, signal)`; `Ok(false)` if there is no such group.
pub(super) fn signal_group(pgid: u32, signal: i32) -> io::Result<bool> {
    // `group_id` guarantees pgid > 1, so -pgid names exactly that group: never -1
    // ("every process we may signal") nor 0 ("our own group").
    kill(-group_id(pgid)?, signal)
}

/// Whether group `pgid` has any member (zombies included).
pub(super) fn group_exists(pgid: u32) -> io::Result<bool> {
    // Signal 0 checks existence and permission without sending anything.
    signal_group(pgid, 0)
}

fn group_id(pgid: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(pgid) {
        Ok(pgid) if pgid > 1 => Ok(pgid),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        )),
    }
}

/// Blocks until child `pid` has exited, leaving it unreaped (a zombie keeps its pid,
/// and so its process group id, from being reused).
pub(super) fn wait_exited_unreaped(pid: u32) -> io::Result<()> {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: siginfo_t is a plain C struct; all-zero bytes are a valid value of it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a live, writable siginfo_t for the whole call, the only
        // memory waitid(2) writes. WNOWAIT leaves the child waitable, so std's
        // `Child::wait` still reaps it afterwards and sees its real status.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Restores default handling of the signals that end a child, in case goalpost was
/// started with them ignored (`nohup`, some CI runners): ignored signals survive exec,
/// and a child ignoring SIGTERM would only ever be ended by SIGKILL.
pub(super) fn default_signals_on_exec(cmd: &mut std::process::Command) {
    let reset = || {
        for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
            // SAFETY: signal(2) with SIG_DFL is async-signal-safe and touches no memory.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
        Ok(())
    };
    // SAFETY: `reset` runs in the forked child before exec, where only async-signal-
    // safe calls are allowed: it only calls signal(2), allocates nothing, takes no lock
    // and shares no state with the parent.
    unsafe { cmd.pre_exec(reset) };
}

/// Asks the kernel to send `signal` to this process when its parent dies, and reports
/// whether the parent is already gone (then the request came too late to fire).
pub(super) fn die_with_parent(signal: i32, parent: u32) -> io::Result<bool> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number by value and touches no
    // memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid(2) cannot fail and touches no memory.
    let now = unsafe { libc::getppid() };
    Ok(u32::try_from(now).ok() != Some(parent))
}

/// Prepares the child that execs bwrap: the descriptors `inherit` (the Landlock ruleset
/// and the entry point's report pipe) stay open across exec (they were opened
/// close-on-exec) so the sandbox's entry point can use them, and `RLIMIT_NPROC` is lowered
/// to `max_processes` unless it is lower already. The descriptors must stay open in the
/// parent until the child has started.
pub(super) fn sandbox_on_exec(
    cmd: &mut std::process::Command,
    inherit: [RawFd; 2],
    max_processes: u64,
    cgroup_procs: Option<std::ffi::CString>,
) {
    let prepare = move || {
        if let Some(procs) = &cgroup_procs {
            join_cgroup(procs);
        }
        for fd in inherit {
            // SAFETY: fcntl(F_SETFD) takes integers only; it clears close-on-exec on this
            // forked child's copy of the descriptor, the parent's is untouched.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: rlimit is a plain C struct; all-zero bytes are a valid value of it.
        let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: getrlimit(2) writes only to `limit`, live and writable for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = max_processes as libc::rlim_t;
        limit.rlim_cur = limit.rlim_cur.min(max);
        limit.rlim_max = limit.rlim_max.min(max);
        // SAFETY: setrlimit(2) reads only `limit`, live for the call; lowering a limit
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: `prepare` runs in the forked child before exec, where only async-signal-
    // safe calls are allowed: it makes three raw system calls and reads errno; it
    // allocates nothing, takes no lock and shares no state with the parent but copied
    // integers.
    unsafe { cmd.pre_exec(prepare) };
}

/// Moves the calling process into the cgroup whose `cgroup.procs` file is `procs` (writing
/// "0" names the writer). Best effort: a process that cannot join keeps `RLIMIT_NPROC`
/// as its only limit. Async-signal-safe: open, write, close.
fn join_cgroup(procs: &std::ffi::CStr) {
    // SAFETY: open(2) reads the NUL-terminated path, live for the call.
    let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        // SAFETY: write(2) reads one byte of a static buffer; close(2) on the descriptor
        // just opened.
        unsafe {
            libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
}

/// Confines the calling process, and all it starts from now on, to the Landlock ruleset
/// open as descriptor `ruleset`, then closes it. For the sandbox's entry point, just
/// before it execs the program.
pub(super) fn restrict_self(ruleset: RawFd) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only. Landlock requires it for an
    // unprivileged process, and it keeps a set-uid program from shedding the rules.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: landlock_restrict_self(2) takes the ruleset descriptor and a flags word; it
    // touches no memory of ours.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: close(2) on the descriptor goalpost left open for this process and that
    // nothing else here owns; the program run next must not inherit it.
    unsafe { libc::close(ruleset) };
    Ok(())
}

/// Adds to the Landlock ruleset open as descriptor `ruleset` a rule that allows `access`
/// (a mask of `LANDLOCK_ACCESS_FS_*` rights) beneath `dir`, as this process sees it. For
/// the sandbox's entry point: a file system mounted inside the sandbox (its temp dir) has
/// inodes the parent could not name.
pub(super) fn allow_beneath(ruleset: RawFd, dir: &Path, access: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    /// `struct landlock_path_beneath_attr` of `<linux/landlock.h>`.
    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open(2) reads the NUL-terminated path, live for the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: fd,
    };
    // SAFETY: landlock_add_rule(2) reads `attr`, a live struct of the layout the kernel
    // defines, and the two descriptors; it writes no memory of ours.
    let added = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: close(2) on the descriptor opened above, owned by nothing else.
    unsafe { libc::close(fd) };
    if added != 0 {
        return Err(err);
    }
    Ok(())
}

/// `kill(pid, signal)` to one process; `Ok(false)` if there is no such process. Refuses
/// pids 0 and 1.
pub(super) fn signal_process(pid: u32, signal: i32) -> io::Result<bool> {
    // `group_id` guarantees pid > 1, so it names exactly one process.
    kill(group_id(pid)?, signal)
}

/// `kill(target, signal)`; `Ok(false)` if nothing has that pid or group. Callers pass a
/// process (> 1) or a group (< -1), never 0, 1 or -1.
fn kill(target: i32, signal: i32) -> io::Result<bool> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(target, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

/// A new inotify instance, non-blocking and closed on exec.
pub(super) fn inotify_init() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: no pointer is passed; the result is checked before use.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Adds a watch of `mask` on `path` to the inotify instance `fd`; returns its descriptor.
pub(super) fn inotify_add_watch(
    fd: &std::os::fd::OwnedFd,
    path: &Path,
    mask: u32,
) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

/// Sets close-on-exec on `fd`, so a program exec'd next does not inherit it.
pub(super) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) takes integers only.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes reads of `fd` return `WouldBlock` instead of waiting.
pub(super) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL) takes integers only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl(F_SETFL) takes integers only.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes waiting to be read in pipe `fd`.
pub(super) fn pipe_pending(fd: RawFd) -> io::Result<usize> {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, live and writable for it.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut pending) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(pending).unwrap_or(0))
}

/// A pidfd of child `pid`: readable once the child has exited (before it is reaped).
pub(super) fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open(2) takes a pid and a flags word; no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor (close-on-exec, as every pidfd);
    // nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// poll(2) over `fds` (descriptor, events) for at most `timeout_ms` (-1: no limit);
/// returns each one's `revents`, retrying when a signal interrupts the wait.
pub(super) fn poll(fds: &[(RawFd, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut set: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `set` is a live, writable array of `set.len()` pollfd structs, the only
        // memory poll(2) writes.
        let rc = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, timeout_ms) };
        if rc >= 0 {
            return Ok(set.iter().map(|p| p.revents).collect());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Forbids ptrace attaches, core dumps and `/proc/<pid>/fd` reads of this process by
/// processes of the same user (`PR_SET_DUMPABLE` 0).
pub(super) fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SIGKILL to every process this one may signal but itself and init: `kill(-1)`. Only for
/// the sandbox's entry point, inside a PID namespace of its own, where that means every
/// process the sandboxed program left.
pub(super) fn kill_every_other_process_in_namespace() {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// The CPU time and peak memory of a reaped child and the descendants it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// User and system CPU time, in microseconds.
    pub cpu_us: u64,
    /// The largest resident set size among them, in KiB.
    pub max_rss_kb: u64,
}

/// Reaps child `pid` (blocking until it exits) and returns its status with its resource
/// usage: wait4(2).
pub(super) fn reap_with_usage(pid: u32) -> io::Result<(std::process::ExitStatus, Usage)> {
    use std::os::unix::process::ExitStatusExt;
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is a plain C struct; all-zero bytes are a valid value of it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4(2) writes only `status` and `usage`, both live and writable.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            let micros = |t: libc::timeval| {
                u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000
                    + u64::try_from(t.tv_usec).unwrap_or(0)
            };
            let usage = Usage {
                cpu_us: micros(usage.ru_utime) + micros(usage.ru_stime),
                max_rss_kb: u64::try_from(usage.ru_maxrss).unwrap_or(0),
            };
            return Ok((std::process::ExitStatus::from_raw(status), usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Has the child `cmd` starts confine itself to the Landlock ruleset open as `ruleset`
/// (see [`restrict_self`]) between fork and exec, so the parent stays outside it.
pub(super) fn restrict_on_exec(cmd: &mut std::process::Command, ruleset: RawFd) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-
    // safe calls are allowed: `restrict_self` makes three raw system calls (prctl,
    // landlock_restrict_self, close) and reads errno; it allocates nothing and takes no
    // lock.
    unsafe { cmd.pre_exec(move || restrict_self(ruleset)) };
}

/// Takes ownership of descriptor `fd`, which the parent process left open across exec
/// and named on the command line: nothing else in this process owns or closes it.
pub(super) fn inherited_fd(fd: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: per the contract above, `fd` is open and owned by nobody in this process,
    // so the OwnedFd is its only owner and closes it once.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}
