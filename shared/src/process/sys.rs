//! The few system calls std does not wrap; the only unsafe code of the crate.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

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

/// Makes the child confine itself to the Landlock ruleset `ruleset` just before exec.
/// The descriptor must stay open until the child has started (the kernel opened it
/// close-on-exec, so the program run never sees it).
pub(super) fn restrict_on_exec(cmd: &mut std::process::Command, ruleset: &OwnedFd) {
    let fd = ruleset.as_raw_fd();
    let restrict = move || {
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only. Landlock requires it
        // for an unprivileged process, and it keeps a set-uid program from shedding the
        // rules.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: landlock_restrict_self(2) takes the ruleset descriptor, open in this
        // forked child as in its parent, and a flags word; it touches no memory of ours.
        if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: `restrict` runs in the forked child before exec, where only async-signal-
    // safe calls are allowed: it makes two raw system calls and reads errno; it allocates
    // nothing (an `io::Error` from an OS error code is a plain integer), takes no lock and
    // shares no state with the parent but a copied integer.
    unsafe { cmd.pre_exec(restrict) };
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
