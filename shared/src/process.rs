//! Every child process goalpost starts goes through here: agents, verification commands,
//! git, the worker and the auditor. One module decides how a child is isolated and how
//! it ends:
//!
//! - each child leads its own process group, so it and everything it forks can be
//!   signalled together;
//! - its environment is cleared and set to exactly [`Command::env`] (see
//!   [`env_allowlist`]), and `argv[0]` is looked up on *that* `PATH`, not goalpost's own;
//! - stdin is `/dev/null` unless the command is given bytes (a prompt);
//! - stdout and stderr are read concurrently, keeping at most [`Command::output_cap`]
//!   bytes of each (its head and its tail, see [`Captured`]) while counting all of it, so
//!   a chatty child never blocks on a full pipe;
//! - on timeout or cancellation the group gets SIGTERM, then SIGKILL after
//!   [`Command::grace`];
//! - when the direct child exits, whatever is left of its group is killed: nothing a turn
//!   started outlives it;
//! - a process that left the group (a daemon that called `setsid`) and still holds the
//!   output pipes is not waited for longer than [`Command::pipe_wait`];
//! - with a [`Command::confine`] confinement the child runs in a bubblewrap sandbox of its
//!   own (see [`sandbox`]): its own PID namespace, so it can signal nothing outside and
//!   nothing it starts outlives it, its own `/proc`, a read-only file system but for the
//!   writable directories of its [`Confinement`], and under Landlock inside that (see
//!   [`crate::confine`]). It also carries a tag in its environment: once it has exited,
//!   any process still carrying the tag is killed.
//!
//! Everything here is synchronous (std threads, no runtime) so the worker and auditor
//! stay small; async callers use `spawn_blocking`.
//!
//! ```
//! use std::time::Duration;
//! use goalpost_shared::process::{self, Command, env_allowlist};
//!
//! let cmd = Command::new("sh", std::env::temp_dir())
//!     .args(["-c", "echo hello; exit 3"])
//!     .envs(env_allowlist(&["PATH"]))
//!     .timeout(Duration::from_secs(60));
//! let outcome = process::run(&cmd, None)?;
//! assert_eq!(outcome.status.code, Some(3));
//! assert_eq!(outcome.stdout.text_lossy(), "hello\n");
//! # Ok::<(), process::ProcessError>(())
//! ```

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::confine::{ConfineError, Confinement};

mod cancel;
mod cgroup;
mod output;
pub mod sandbox;
mod sweep;
mod sys;
pub mod watch;

pub use cancel::CancelToken;
use output::Reader;
pub use output::{Captured, Tail, tail};
pub use sys::Usage;

/// What a child reads on stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// These bytes, then end of file. A child that exits without reading them all is fine.
    Bytes(Vec<u8>),
}

/// A child process to run: everything it gets is spelled out here, nothing is inherited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program (looked up on `env`'s `PATH` unless it contains a `/`) and its arguments.
    pub argv: Vec<OsString>,
    /// The working directory; a relative program path (`./run.sh`) is relative to it.
    pub cwd: PathBuf,
    /// The child's whole environment.
    pub env: BTreeMap<OsString, OsString>,
    pub stdin: Stdin,
    /// How long the child may run before its group is ended; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when the group is ended.
    pub grace: Duration,
    /// Bytes kept of each of stdout and stderr; the rest is read, counted and dropped.
    pub output_cap: usize,
    /// How long to wait, after the child exited, for its output pipes to close.
    pub pipe_wait: Duration,
    /// Landlock rules the child (and all it starts) runs under; `None` runs it with all
    /// of goalpost's rights.
    pub confine: Option<Confinement>,
}

impl Command {
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
    pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;
    pub const DEFAULT_PIPE_WAIT: Duration = Duration::from_secs(2);

    /// `program` in `cwd`, with an empty environment, no stdin and no timeout.
    pub fn new(program: impl Into<OsString>, cwd: impl Into<PathBuf>) -> Self {
        Command {
            argv: vec![program.into()],
            cwd: cwd.into(),
            env: BTreeMap::new(),
            stdin: Stdin::Null,
            timeout: None,
            grace: Self::DEFAULT_GRACE,
            output_cap: Self::DEFAULT_OUTPUT_CAP,
            pipe_wait: Self::DEFAULT_PIPE_WAIT,
            confine: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.argv.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one variable of the child's environment.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets several variables, e.g. the result of [`env_allowlist`].
    pub fn envs(mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        self.env.extend(vars);
        self
    }

    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Stdin::Bytes(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes;
        self
    }

    pub fn pipe_wait(mut self, wait: Duration) -> Self {
        self.pipe_wait = wait;
        self
    }

    /// Runs the child under `rules`; `None` leaves it unconfined.
    pub fn confine(mut self, rules: Option<Confinement>) -> Self {
        self.confine = rules;
        self
    }

    /// `argv[0]`, or empty if there is none.
    pub fn program(&self) -> &OsStr {
        self.argv
            .first()
            .map_or(OsStr::new(""), OsString::as_os_str)
    }

    /// The command line, quoted for a POSIX shell, for logs and reports.
    pub fn command_line(&self) -> String {
        let quoted: Vec<String> = self.argv.iter().map(shell_quote).collect();
        quoted.join(" ")
    }
}

/// `word` as one word of a POSIX shell command line: as it is when it holds only
/// characters no shell treats specially, else in single quotes (a `'` inside written
/// `'\''`). Invalid UTF-8 is replaced, so the result is for logs, reports and scripts
/// whose words are text.
///
/// ```
/// use goalpost_shared::process::shell_quote;
///
/// assert_eq!(shell_quote("src/main.rs"), "src/main.rs");
/// assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
/// assert_eq!(shell_quote(""), "''");
/// ```
pub fn shell_quote(word: impl AsRef<OsStr>) -> String {
    let text = word.as_ref().to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The variables among `keys` that are set in goalpost's own environment, for a child's
/// allow-list: `Command::new(..).envs(env_allowlist(&["PATH", "HOME"]))`.
pub fn env_allowlist(keys: &[&str]) -> BTreeMap<OsString, OsString> {
    keys.iter()
        .filter_map(|&key| std::env::var_os(key).map(|value| (OsString::from(key), value)))
        .collect()
}

/// How a child ended: an exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        ExitStatus {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => match signal_name(signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

/// How a run ended and what it printed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
    /// From spawn to the direct child's exit.
    pub duration: Duration,
    /// The group was ended because [`Command::timeout`] passed.
    pub timed_out: bool,
    /// The group was ended because the [`CancelToken`] was cancelled.
    pub cancelled: bool,
    /// A process outside the group (it called `setsid`) still held stdout or stderr open
    /// after [`Command::pipe_wait`]; what it writes later is lost.
    pub pipes_abandoned: bool,
    /// CPU time and peak memory of the child and the descendants it waited for, as the
    /// kernel counted them (none if the child could not be reaped normally).
    pub usage: Option<Usage>,
    /// Bytes a confined child's processes wrote to stdout and stderr after its program had
    /// exited: cut off by the sandbox's entry point and not in [`Outcome::stdout`] or
    /// [`Outcome::stderr`] (see [`sandbox::enter`]). Always 0 for an unconfined child.
    pub late_bytes: u64,
}

impl Outcome {
    /// Exited with code 0 on its own.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out && !self.cancelled
    }
}

/// Why a child could not be run (or followed to its end).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no program to run (empty argv) in {}", .cwd.display())]
    EmptyArgv { cwd: PathBuf },
    #[error(
        "`{}` not found (searched PATH `{}` from {})",
        .program.display(), .searched_path.display(), .cwd.display()
    )]
    NotFound {
        program: OsString,
        /// The child's `PATH`, or the directory looked in for a program given as a path.
        searched_path: OsString,
        cwd: PathBuf,
    },
    #[error("`{}` is not executable: {}", .program.display(), .path.display())]
    PermissionDenied {
        program: OsString,
        path: PathBuf,
        cwd: PathBuf,
    },
    #[error("cannot run `{}`: working directory {}: {source}", .program.display(), .cwd.display())]
    Cwd {
        program: OsString,
        cwd: PathBuf,
        source: io::Error,
    },
    #[error("cannot start `{}` in {}: {source}", .program.display(), .cwd.display())]
    Spawn {
        program: OsString,
        cwd: PathBuf,
        source: io::Error,
    },
    #[error("cannot confine `{}`: {source}", .program.display())]
    Confine {
        program: OsString,
        source: Box<ConfineError>,
    },
    #[error("lost track of `{}` (in {}): {source}", .program.display(), .cwd.display())]
    Wait {
        program: OsString,
        cwd: PathBuf,
        source: io::Error,
    },
}

/// What the supervising thread waits for.
#[derive(Debug)]
enum Event {
    Exited(io::Result<ExitStatus>),
    Cancelled,
}

/// A started child, not yet waited for. Its pid is its process group id.
///
/// The timeout and the cancel token are only enforced inside [`Running::wait`]; a
/// `Running` dropped unwaited leaves the child to run to its end (its group is still
/// killed when it exits).
#[derive(Debug)]
pub struct Running {
    pid: u32,
    program: OsString,
    cwd: PathBuf,
    timeout: Option<Duration>,
    grace: Duration,
    pipe_wait: Duration,
    started: Instant,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    /// Set under its lock just before the child is reaped: signalling the group after that
    /// could reach an unrelated process that got the pid back.
    reaped: Arc<Mutex<bool>>,
    stdout: Reader,
    stderr: Reader,
    /// A confined child's tag (see [`sweep`]).
    tag: Option<String>,
    /// Filled in by the waiter thread as it reaps the child.
    usage: Arc<Mutex<Option<Usage>>>,
    /// Where a confined child's sandbox entry point writes its [`sandbox::Report`].
    report: Option<io::PipeReader>,
}

/// Runs `cmd` to its end and returns what it did. With a `cancel` token, cancelling it
/// ends the child's group as a timeout would.
pub fn run(cmd: &Command, cancel: Option<&CancelToken>) -> Result<Outcome, ProcessError> {
    spawn(cmd)?.wait(cancel)
}

/// Starts `cmd`; [`Running::wait`] supervises it to its end. Use this over [`run`] when
/// the process group id must be recorded first (so another process can end it).
pub fn spawn(cmd: &Command) -> Result<Running, ProcessError> {
    let program = match cmd.argv.first() {
        Some(program) => program.clone(),
        None => {
            return Err(ProcessError::EmptyArgv {
                cwd: cmd.cwd.clone(),
            });
        }
    };
    let cwd_error = |source| ProcessError::Cwd {
        program: program.clone(),
        cwd: cmd.cwd.clone(),
        source,
    };
    match fs::metadata(&cmd.cwd) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(cwd_error(io::ErrorKind::NotADirectory.into())),
        Err(source) => return Err(cwd_error(source)),
    }
    let path = resolve(&program, &cmd.cwd, &cmd.env)?;

    // Built here, in the parent; it must stay open until the child has exec'd, which
    // `spawn` has waited for by the time it returns.
    let ruleset = match &cmd.confine {
        Some(rules) => Some(rules.ruleset().map_err(|source| ProcessError::Confine {
            program: program.clone(),
            source: Box::new(source),
        })?),
        None => None,
    };
    let spawn_error = |source| ProcessError::Spawn {
        program: program.clone(),
        cwd: cmd.cwd.clone(),
        source,
    };
    let report = match &ruleset {
        Some(_) => Some(io::pipe().map_err(spawn_error)?),
        None => None,
    };
    let mut std_cmd = match (&cmd.confine, &ruleset, &report) {
        (Some(rules), Some(fd), Some((_, report))) => {
            sandbox::command(&path, &cmd.argv, &cmd.cwd, rules, fd, report).map_err(|source| {
                ProcessError::Confine {
                    program: program.clone(),
                    source: Box::new(source),
                }
            })?
        }
        _ => {
            let mut plain = std::process::Command::new(&path);
            plain.arg0(&program).args(&cmd.argv[1..]);
            plain
        }
    };
    std_cmd
        .current_dir(&cmd.cwd)
        .env_clear()
        .envs(&cmd.env)
        .stdin(match cmd.stdin {
            Stdin::Null => Stdio::null(),
            Stdin::Bytes(_) => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    sys::default_signals_on_exec(&mut std_cmd);
    let tag = cmd.confine.as_ref().map(|_| sweep::new_tag());
    if let Some(tag) = &tag {
        std_cmd.env(sweep::TAG_VAR, tag);
    }

    let mut child = std_cmd.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied {
            program: program.clone(),
            path: path.clone(),
            cwd: cmd.cwd.clone(),
        },
        _ => ProcessError::Spawn {
            program: program.clone(),
            cwd: cmd.cwd.clone(),
            source,
        },
    })?;
    drop(ruleset);
    // Only the sandbox holds the write end now: the report ends when the sandbox does.
    let report = report.map(|(read, _write)| read);
    let started = Instant::now();
    let pid = child.id();
    tracing::debug!(pid, cwd = %cmd.cwd.display(), "started {}", cmd.command_line());

    match supervise(&mut child, cmd) {
        Ok((stdout, stderr)) => {
            let (events_tx, events) = mpsc::channel();
            let reaped = Arc::new(Mutex::new(false));
            let usage = Arc::new(Mutex::new(None));
            let waiter = {
                let events_tx = events_tx.clone();
                let reaped = Arc::clone(&reaped);
                let usage = Arc::clone(&usage);
                move || wait_child(child, reaped, usage, events_tx)
            };
            match thread::Builder::new()
                .name("process-wait".into())
                .spawn(waiter)
            {
                Ok(_) => Ok(Running {
                    pid,
                    program,
                    cwd: cmd.cwd.clone(),
                    timeout: cmd.timeout,
                    grace: cmd.grace,
                    pipe_wait: cmd.pipe_wait,
                    started,
                    events_tx,
                    events,
                    reaped,
                    stdout,
                    stderr,
                    tag,
                    usage,
                    report,
                }),
                // The closure, and the child in it, came back dropped: nothing would ever
                // reap it. Killing the group is all that is left to do.
                Err(source) => {
                    let _ = sys::signal_group(pid, libc::SIGKILL);
                    Err(ProcessError::Spawn {
                        program,
                        cwd: cmd.cwd.clone(),
                        source,
                    })
                }
            }
        }
        Err(source) => {
            let _ = sys::signal_group(pid, libc::SIGKILL);
            let _ = child.wait();
            Err(ProcessError::Spawn {
                program,
                cwd: cmd.cwd.clone(),
                source,
            })
        }
    }
}

/// The sandbox entry point's report, read until the sandbox has closed the pipe or
/// `deadline` passed.
fn read_report(pipe: &io::PipeReader, deadline: Instant) -> Option<sandbox::Report> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let fd = pipe.as_raw_fd();
    sys::set_nonblocking(fd).ok()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match (&*pipe).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
                if ms == 0 || sys::poll(&[(fd, libc::POLLIN)], ms).ok()?[0] == 0 {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sandbox::Report::parse(&String::from_utf8_lossy(&text))
}

/// Starts the threads that feed stdin and drain stdout and stderr.
fn supervise(child: &mut Child, cmd: &Command) -> io::Result<(Reader, Reader)> {
    if let (Stdin::Bytes(bytes), Some(mut pipe)) = (&cmd.stdin, child.stdin.take()) {
        let bytes = bytes.clone();
        // Not joined: a child may exit without reading, or leave a daemon holding the pipe.
        // Write errors (EPIPE above all) only mean the child stopped reading.
        thread::Builder::new()
            .name("process-stdin".into())
            .spawn(move || {
                let _ = pipe.write_all(&bytes);
            })?;
    }
    let missing = || io::Error::other("child pipe missing");
    let stdout = Reader::start(child.stdout.take().ok_or_else(missing)?, cmd.output_cap)?;
    let stderr = Reader::start(child.stderr.take().ok_or_else(missing)?, cmd.output_cap)?;
    Ok((stdout, stderr))
}

/// The waiter thread: waits for the child to exit, kills what is left of its group while
/// the unreaped child still holds the group id, then reaps it with its resource usage.
fn wait_child(
    mut child: Child,
    reaped: Arc<Mutex<bool>>,
    usage: Arc<Mutex<Option<Usage>>>,
    events: Sender<Event>,
) {
    let pid = child.id();
    let status = match sys::wait_exited_unreaped(pid) {
        Ok(()) => {
            let mut reaped = lock(&reaped);
            let _ = sys::signal_group(pid, libc::SIGKILL);
            *reaped = true;
            // Immediate: the child is already a zombie. std's `Child` is not told, and
            // never waits for it again (it is dropped without waiting).
            sys::reap_with_usage(pid).map(|(status, used)| {
                *lock(&usage) = Some(used);
                status
            })
        }
        Err(err) => {
            tracing::warn!(pid, "cannot wait for the child without reaping it: {err}");
            *lock(&reaped) = true;
            child.wait()
        }
    };
    let _ = events.send(Event::Exited(status.map(ExitStatus::from)));
}

impl Running {
    /// The child's pid, which is also its process group id (see [`kill_group`]).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Supervises the child to its end: enforces the timeout, watches `cancel`, ends the
    /// group, and collects the output.
    pub fn wait(self, cancel: Option<&CancelToken>) -> Result<Outcome, ProcessError> {
        let _watch = cancel.map(|token| token.watch(self.events_tx.clone()));
        let deadline = self.timeout.map(|timeout| self.started + timeout);
        let mut timed_out = false;
        let mut cancelled = false;
        let event = match deadline {
            Some(deadline) => self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => self
                .events
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let status = match event {
            Ok(Event::Exited(status)) => status,
            Ok(Event::Cancelled) => {
                cancelled = true;
                self.end_group()
            }
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                self.end_group()
            }
            Err(RecvTimeoutError::Disconnected) => Err(waiter_gone()),
        };
        let duration = self.started.elapsed();
        let status = status.map_err(|source| ProcessError::Wait {
            program: self.program.clone(),
            cwd: self.cwd.clone(),
            source,
        })?;
        if let Some(tag) = &self.tag {
            let killed = sweep::kill_tagged(tag);
            if killed > 0 {
                tracing::info!(
                    pid = self.pid,
                    killed,
                    "killed what `{}` left running outside its group",
                    self.program.display()
                );
            }
        }

        let pipes_deadline = Instant::now() + self.pipe_wait;
        let (stdout, stdout_closed) = self.stdout.finish(pipes_deadline);
        let (stderr, stderr_closed) = self.stderr.finish(pipes_deadline);
        let pipes_abandoned = !(stdout_closed && stderr_closed);
        let late_bytes = match &self.report {
            Some(report) => read_report(report, pipes_deadline).map_or(0, |r| r.late.iter().sum()),
            None => 0,
        };
        if pipes_abandoned {
            tracing::warn!(
                pid = self.pid,
                "`{}` left a process outside its group holding its output open; \
                 stopped reading after {:?}",
                self.program.display(),
                self.pipe_wait
            );
        }
        tracing::debug!(pid = self.pid, %status, timed_out, cancelled, ?duration, "ended");
        Ok(Outcome {
            status,
            stdout,
            stderr,
            duration,
            timed_out,
            cancelled,
            pipes_abandoned,
            usage: *lock(&self.usage),
            late_bytes,
        })
    }

    /// SIGTERM to the group, SIGKILL after the grace period; returns the child's status.
    fn end_group(&self) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let grace_end = Instant::now() + self.grace;
        loop {
            let left = grace_end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Exited(status)) => return status,
                Ok(Event::Cancelled) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return Err(waiter_gone()),
            }
        }
        self.signal(libc::SIGKILL);
        loop {
            match self.events.recv() {
                Ok(Event::Exited(status)) => return status,
                Ok(Event::Cancelled) => {}
                Err(_) => return Err(waiter_gone()),
            }
        }
    }

    fn signal(&self, signal: i32) {
        let reaped = lock(&self.reaped);
        if !*reaped {
            let _ = sys::signal_group(self.pid, signal);
        }
    }
}

fn waiter_gone() -> io::Error {
    io::Error::other("the thread waiting for the child ended without its status")
}

/// A signal for [`signal_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to every process in group `pgid`. Returns `Ok(false)` if the group no
/// longer exists. Refuses group ids 0 and 1, which `kill(2)` would read as "our own group"
/// and "every process".
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<bool> {
    sys::signal_group(
        pgid,
        match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        },
    )
}

/// Ends the group `pgid` of a child another goalpost process started (its [`Running::pid`]):
/// SIGTERM, up to `grace` for the group to disappear, then SIGKILL. Members that exited but
/// are not yet reaped by their parent still count, so a group whose leader's parent is
/// gone may take the whole grace period.
pub fn kill_group(pgid: u32, grace: Duration) -> io::Result<()> {
    if !signal_group(pgid, Signal::Term)? {
        return Ok(());
    }
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !sys::group_exists(pgid)? {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    signal_group(pgid, Signal::Kill).map(|_| ())
}

/// Finds the file to execute for `program`, using the child's `PATH`.
fn resolve(
    program: &OsStr,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
) -> Result<PathBuf, ProcessError> {
    let not_found = |searched_path: OsString| ProcessError::NotFound {
        program: program.to_owned(),
        searched_path,
        cwd: cwd.to_owned(),
    };
    let denied = |path: PathBuf| ProcessError::PermissionDenied {
        program: program.to_owned(),
        path,
        cwd: cwd.to_owned(),
    };
    if program.as_bytes().contains(&b'/') {
        let path = cwd.join(program);
        return match executable(&path) {
            Some(true) => Ok(path),
            Some(false) => Err(denied(path)),
            None => Err(not_found(
                path.parent()
                    .map(|p| p.as_os_str().to_owned())
                    .unwrap_or_default(),
            )),
        };
    }
    let searched_path = env.get(OsStr::new("PATH")).cloned().unwrap_or_default();
    let mut not_executable = None;
    // Empty entries would mean the current directory; a child's PATH should not.
    for dir in std::env::split_paths(&searched_path).filter(|d| !d.as_os_str().is_empty()) {
        let candidate = cwd.join(dir).join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => {
                not_executable.get_or_insert(candidate);
            }
            None => {}
        }
    }
    Err(match not_executable {
        Some(path) => denied(path),
        None => not_found(searched_path),
    })
}

/// `None` if `path` is not a file, else whether it has an execute bit.
fn executable(path: &Path) -> Option<bool> {
    let meta = fs::metadata(path).ok().filter(fs::Metadata::is_file)?;
    Some(meta.permissions().mode() & 0o111 != 0)
}

/// Locks, ignoring poisoning: every critical section here leaves its data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the calling process receive `signal` when its parent process dies, so a worker or
/// auditor never outlives the orchestrator that started it (a crashed orchestrator's
/// `resume` must not race orphans over the same worktrees). `parent` is the pid the
/// caller believes is its parent; if that process is already gone, returns `Ok(false)`
/// and the caller should stop at once.
pub fn die_with_parent(signal: Signal, parent: u32) -> io::Result<bool> {
    let number = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    sys::die_with_parent(number, parent).map(|gone| !gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_what_a_shell_would_split() {
        let cmd = Command::new("sh", "/").args(["-c", "echo 'hi' there", ""]);
        assert_eq!(cmd.command_line(), r#"sh -c 'echo '\''hi'\'' there' ''"#);
    }

    #[test]
    fn signals_to_group_zero_or_one_are_refused() {
        assert!(signal_group(0, Signal::Term).is_err());
        assert!(signal_group(1, Signal::Term).is_err());
    }
}
