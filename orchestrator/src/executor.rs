//! The executor: every worker, auditor and selection process of a run is started, waited
//! for and stopped through it. [`LocalExecutor`] runs them as child processes of
//! `goalpost`, one thread each, and reports each one's end as a [`Finished`] value on the
//! run loop's channel; a cluster scheduler would be another [`Executor`] that takes the
//! same serde inputs and gives back the same results.
//!
//! Every role process is started the same way ([`run_role`]): its input written as JSON
//! beside its result, its sibling binary started with an allow-listed environment and
//! `GOALPOST_PARENT_PID`, its stderr kept as a log, and its result read back as JSON.
//! What can go wrong on the way is a [`JobError`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goalpost_shared::budget::DEFAULT_TURN_TIMEOUT;
use goalpost_shared::process::{self, ProcessError};
use goalpost_shared::protocol::{
    AuditInput, AuditReport, SelectInput, SelectResult, WorkerInput, WorkerResult,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::attempt::{PARENT_PID_VAR, WORKER_ENV_ALLOW, parent_pid, sibling_binary};
use crate::audit::{AUDITOR_ENV_ALLOW, toolchain_homes};

/// Which kind of process a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Worker,
    Auditor,
    Selection,
}

impl Role {
    /// The process, as error messages name it.
    fn process(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Auditor => "auditor",
            Role::Selection => "selection turn's worker",
        }
    }

    /// Its result, as error messages name it.
    fn result(self) -> &'static str {
        match self {
            Role::Worker => "the worker's result",
            Role::Auditor => "the audit report",
            Role::Selection => "the selection result",
        }
    }
}

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the {}'s input: {source}", role.process())]
    Input {
        role: Role,
        #[source]
        source: serde_json::Error,
    },
    #[error("starting the {}: {source}", role.process())]
    Start {
        role: Role,
        #[source]
        source: ProcessError,
    },
    #[error("waiting for the {}: {source}", role.process())]
    Wait {
        role: Role,
        #[source]
        source: ProcessError,
    },
    /// It ran past its deadline and was ended (a frozen or runaway process).
    #[error(
        "the {} did not finish within its deadline of {}s and was stopped{}",
        role.process(),
        after.as_secs(),
        LogNote(log)
    )]
    Deadline {
        role: Role,
        after: Duration,
        log: Option<PathBuf>,
    },
    /// It ran and failed: killed, crashed, or refused its input.
    #[error("the {} exited with {status}{}: {stderr_tail}", role.process(), LogNote(log))]
    Exited {
        role: Role,
        status: String,
        log: Option<PathBuf>,
        stderr_tail: String,
    },
    #[error("reading {} {}: {source}", role.result(), path.display())]
    ReadResult {
        role: Role,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {} is not valid: {source}", role.result(), path.display())]
    BadResult {
        role: Role,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// " (log: PATH)" where a log is worth naming.
struct LogNote<'a>(&'a Option<PathBuf>);

impl fmt::Display for LogNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(log) => write!(f, " (log: {})", log.display()),
            None => Ok(()),
        }
    }
}

/// A job the run loop hands to the executor; `id` comes back with its result.
#[derive(Debug)]
pub enum Job {
    Worker(Box<WorkerInput>),
    Audit(Box<AuditInput>),
    Select(Box<SelectInput>),
}

/// What a job gave.
#[derive(Debug)]
pub enum JobResult {
    Worker(Result<WorkerResult, JobError>),
    Audit(Result<AuditReport, JobError>),
    Select(Result<SelectResult, JobError>),
}

/// A job's end, as the executor reports it on the run loop's channel.
#[derive(Debug)]
pub struct Finished {
    pub id: JobId,
    pub result: JobResult,
}

/// The run loop's name for a job.
pub type JobId = u64;

/// Where a run's jobs run.
pub trait Executor: fmt::Debug {
    /// Starts `job`; its [`Finished`] is sent on `done` when it ends, whatever the end.
    fn start(&self, id: JobId, job: Job, done: Sender<Finished>);
    /// Asks every running worker to end its agent's turn now; each harvests what the
    /// turn wrote and reports as usual.
    fn stop_workers(&self);
    /// Runs an audit to its end on the calling thread.
    fn audit_now(&self, input: &AuditInput) -> Result<AuditReport, JobError>;
}

/// Jobs as child processes of `goalpost`, one thread each.
#[derive(Debug, Default)]
pub struct LocalExecutor {
    /// Process groups of running workers, by job.
    workers: Arc<Mutex<BTreeMap<JobId, u32>>>,
}

impl Executor for LocalExecutor {
    fn start(&self, id: JobId, job: Job, done: Sender<Finished>) {
        let workers = Arc::clone(&self.workers);
        let spawned = std::thread::Builder::new()
            .name(format!("goalpost-job-{id}"))
            .spawn(move || {
                let result = match job {
                    Job::Worker(input) => {
                        let result = run_worker(&input, |pid| {
                            if let Ok(mut w) = workers.lock() {
                                w.insert(id, pid);
                            }
                        });
                        if let Ok(mut w) = workers.lock() {
                            w.remove(&id);
                        }
                        JobResult::Worker(result)
                    }
                    Job::Audit(input) => JobResult::Audit(run_auditor(&input)),
                    Job::Select(input) => JobResult::Select(run_select(&input)),
                };
                // The receiver only goes away when the run itself failed.
                let _ = done.send(Finished { id, result });
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread for job {id}: {e}");
        }
    }

    fn stop_workers(&self) {
        let pids: Vec<u32> = self
            .workers
            .lock()
            .map(|w| w.values().copied().collect())
            .unwrap_or_default();
        for pid in pids {
            // The worker ends its agent's turn, harvests it and writes its result.
            if let Err(e) = process::signal_group(pid, process::Signal::Term) {
                tracing::warn!("cannot signal the worker's group {pid}: {e}");
            }
        }
    }

    fn audit_now(&self, input: &AuditInput) -> Result<AuditReport, JobError> {
        run_auditor(input)
    }
}

/// One role process to run.
struct RoleProcess<'a> {
    role: Role,
    /// Its sibling binary, and the variable that overrides where it is.
    binary: (&'a str, &'a str),
    cwd: &'a Path,
    /// Where its input and its result go.
    input_path: PathBuf,
    output_path: Option<PathBuf>,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    timeout: Option<Duration>,
    log: PathBuf,
    /// Whether an error names the log.
    name_log: bool,
}

/// Writes `input`, runs `p` to its end (telling `started` its process group), keeps its
/// stderr in its log, and reads its result from `result_path`.
fn run_role<I: Serialize, T: DeserializeOwned>(
    p: RoleProcess<'_>,
    input: &I,
    result_path: &Path,
    started: impl FnOnce(u32),
) -> Result<T, JobError> {
    let role = p.role;
    if let Some(dir) = p.input_path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| JobError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })?;
    }
    let json =
        serde_json::to_vec_pretty(input).map_err(|source| JobError::Input { role, source })?;
    std::fs::write(&p.input_path, json).map_err(|source| JobError::Io {
        action: "writing",
        path: p.input_path.clone(),
        source,
    })?;
    if let Some(out) = &p.output_path {
        // A result left from an earlier round is not this round's.
        if let Err(e) = std::fs::remove_file(out)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(JobError::Io {
                action: "removing",
                path: out.clone(),
                source: e,
            });
        }
    }
    let bin = sibling_binary(p.binary.0, p.binary.1);
    let mut cmd = process::Command::new(bin.as_os_str(), p.cwd)
        .arg("--input")
        .arg(p.input_path.as_os_str())
        .args(&p.args)
        .envs(p.env)
        .output_cap(256 * 1024);
    if let Some(out) = &p.output_path {
        cmd = cmd.arg("--output").arg(out.as_os_str());
    }
    if let Some(timeout) = p.timeout {
        cmd = cmd.timeout(timeout);
    }
    let running = process::spawn(&cmd).map_err(|source| JobError::Start { role, source })?;
    started(running.pid());
    let outcome = running
        .wait(None)
        .map_err(|source| JobError::Wait { role, source })?;
    if let Err(e) = std::fs::write(&p.log, outcome.stderr.text_lossy()) {
        tracing::warn!(
            "cannot keep the {} log {}: {e}",
            role.process(),
            p.log.display()
        );
    }
    if let (true, Some(after)) = (outcome.timed_out, p.timeout) {
        return Err(JobError::Deadline {
            role,
            after,
            log: p.name_log.then_some(p.log),
        });
    }
    if !outcome.success() {
        return Err(JobError::Exited {
            role,
            status: outcome.status.to_string(),
            log: p.name_log.then_some(p.log),
            stderr_tail: outcome.stderr.tail(2000),
        });
    }
    read_result(role, result_path)
}

/// Reads a role's JSON result.
pub fn read_result<T: DeserializeOwned>(role: Role, path: &Path) -> Result<T, JobError> {
    let bytes = std::fs::read(path).map_err(|source| JobError::ReadResult {
        role,
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| JobError::BadResult {
        role,
        path: path.to_owned(),
        source,
    })
}

/// The environment of a worker process: the allow-list, the run and the parent to die with.
fn worker_env(run_id: Option<&str>) -> BTreeMap<OsString, OsString> {
    let mut env = process::env_allowlist(WORKER_ENV_ALLOW);
    if let Some(run) = run_id {
        env.insert(OsString::from("GOALPOST_RUN"), OsString::from(run));
    }
    env.insert(OsString::from(PARENT_PID_VAR), parent_pid());
    env
}

/// Runs one worker round to completion and reads its result. `started` learns the
/// worker's process group as soon as it runs (to end it on `pause --now`).
pub fn run_worker(
    input: &WorkerInput,
    started: impl FnOnce(u32),
) -> Result<WorkerResult, JobError> {
    let dir = &input.private_dir;
    let round = input.first_iteration;
    let out = dir.join(format!("worker-out-{round}.json"));
    let p = RoleProcess {
        role: Role::Worker,
        binary: ("goalpost-worker", "GOALPOST_WORKER_BIN"),
        cwd: &input.worktree,
        input_path: dir.join(format!("worker-in-{round}.json")),
        output_path: Some(out.clone()),
        args: Vec::new(),
        env: worker_env(Some(&input.run_id)),
        // The worker enforces its budgets itself; this is the backstop.
        timeout: Some(worker_deadline(input)),
        log: dir.join(format!("worker-{round}.log")),
        name_log: true,
    };
    run_role(p, input, &out, started)
}

/// What a role process gets beyond the sum of its own time limits: starting, git work,
/// writing its result; [`DEADLINE_MARGIN_VAR`] (seconds) sets another.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Override of [`DEADLINE_MARGIN`], in seconds (a test hook).
pub const DEADLINE_MARGIN_VAR: &str = "GOALPOST_DEADLINE_MARGIN";

fn deadline_margin() -> Duration {
    std::env::var(DEADLINE_MARGIN_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(DEADLINE_MARGIN, Duration::from_secs)
}

/// The latest a worker round may end: its wall budget, or without one every iteration's
/// implementer and reviewer turns and each of its checks at their own time limit, and
/// the margin.
pub fn worker_deadline(input: &WorkerInput) -> Duration {
    let own = match &input.budget.wall {
        Some(wall) => wall.value.duration,
        None => {
            let turns = 1 + u32::from(input.reviewer.is_some());
            let per_iteration = turns + machine_checks(&input.contract);
            DEFAULT_TURN_TIMEOUT
                .saturating_mul(input.max_iterations.max(1).saturating_mul(per_iteration))
        }
    };
    own.saturating_add(deadline_margin())
}

/// The latest an audit may end: each machine check at its time limit three times (the
/// candidate's run and those the audit compares it with), each held-out check once, and
/// the margin.
pub fn auditor_deadline(input: &AuditInput) -> Duration {
    let held_out = u32::try_from(input.contract.held_out.len()).unwrap_or(u32::MAX);
    let runs = machine_checks(&input.contract)
        .saturating_mul(3)
        .saturating_add(held_out)
        .max(1);
    // The auditor agent's turns (a second when the first gave no verdict).
    let agent = input.agent.as_ref().map_or(Duration::ZERO, |a| {
        Duration::from_secs(a.timeout_secs).saturating_mul(2)
    });
    Duration::from_secs(input.check_timeout_secs.max(1))
        .saturating_mul(runs)
        .saturating_add(agent)
        .saturating_add(deadline_margin())
}

fn machine_checks(contract: &goalpost_shared::contract::Contract) -> u32 {
    let n = contract
        .verification
        .iter()
        .filter(|check| check.command().is_some())
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs the worker's selection turn (`Select: review`) and reads its result.
pub fn run_select(input: &SelectInput) -> Result<SelectResult, JobError> {
    let dir = &input.private_dir;
    let out = dir.join("select-out.json");
    let p = RoleProcess {
        role: Role::Selection,
        binary: ("goalpost-worker", "GOALPOST_WORKER_BIN"),
        cwd: dir,
        input_path: dir.join("select-in.json"),
        output_path: Some(out.clone()),
        args: vec![OsString::from("--select")],
        env: worker_env(None),
        timeout: Some(Duration::from_secs(input.timeout_secs + 60)),
        log: dir.join("select.log"),
        name_log: false,
    };
    run_role(p, input, &out, |_| {})
}

/// Runs the auditor on `input` and reads its report (`audit.json` in its report dir).
pub fn run_auditor(input: &AuditInput) -> Result<AuditReport, JobError> {
    let dir = &input.report_dir;
    let mut env = process::env_allowlist(AUDITOR_ENV_ALLOW);
    env.extend(toolchain_homes());
    env.insert(OsString::from(PARENT_PID_VAR), parent_pid());
    let p = RoleProcess {
        role: Role::Auditor,
        binary: ("goalpost-auditor", "GOALPOST_AUDITOR_BIN"),
        cwd: &input.repo,
        input_path: dir.join("audit-input.json"),
        output_path: None,
        args: Vec::new(),
        env,
        timeout: Some(auditor_deadline(input)),
        log: dir.join("auditor.log"),
        name_log: false,
    };
    run_role(p, input, &dir.join("audit.json"), |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_process_is_described_as_before_with_its_log_where_it_helps() {
        let worker = JobError::Exited {
            role: Role::Worker,
            status: "exit status: 3".into(),
            log: Some(PathBuf::from("/r/worker-1.log")),
            stderr_tail: "boom".into(),
        };
        assert_eq!(
            worker.to_string(),
            "the worker exited with exit status: 3 (log: /r/worker-1.log): boom"
        );
        let auditor = JobError::Exited {
            role: Role::Auditor,
            status: "signal 9".into(),
            log: None,
            stderr_tail: String::new(),
        };
        assert_eq!(auditor.to_string(), "the auditor exited with signal 9: ");
    }

    #[test]
    fn a_missing_or_broken_result_names_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.json");
        let missing = read_result::<AuditReport>(Role::Auditor, &path).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with(&format!("reading the audit report {}: ", path.display())),
            "{missing}"
        );
        std::fs::write(&path, "{").unwrap_or_else(|e| panic!("{e}"));
        let broken = read_result::<AuditReport>(Role::Auditor, &path).unwrap_err();
        assert!(
            broken.to_string().starts_with(&format!(
                "the audit report {} is not valid: ",
                path.display()
            )),
            "{broken}"
        );
    }
}
