//! The run loop: schedules the phase DAG with at most `max_parallel` agents and as many
//! audits at once, turns worker results into audits and audit results into gate steps,
//! and ends with the whole-goal audit and the release move. It is the only writer of the
//! state store.
//!
//! One loop owns the run's state. Its inputs are events: a job's end (a worker round, an
//! audit, a reviewer's selection), reported by the [`Executor`] on one channel, and a
//! tick on which it reads pause requests (signals and `goalpost pause`). Handling an
//! event records it and returns [`Step`]s — select a phase's winner, land the next train,
//! stop an attempt — which the loop carries out one at a time, depth first, so no handler
//! calls another and every follow-up is a value the loop sees. What each step decides is
//! a pure function of the state ([`decide`]), unit-tested without a process; the gate's
//! train building and compare-and-swap live in [`crate::gate`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use goalpost_shared::budget::Spent;
use goalpost_shared::dag::PhaseDag;
use goalpost_shared::git::{GitError, Oid, Repo};
use goalpost_shared::plan::Plan;
use goalpost_shared::protocol::{STOP_FILE, Usage};

use crate::control::{Control, Pause};
use crate::crash;
use crate::executor::{Executor, Finished, Job, JobId, JobResult, LocalExecutor};
use crate::layout::{self, Layout};
use crate::reporter::{PlainLines, Reporter};
use goalpost_state::{Event as RunEvent, Store};

mod audits;
mod decide;
mod land;
mod progress;
mod recover;
mod release;
mod rounds;
mod select;
mod worktrees;

use decide::{Admit, Busy};
pub use release::{Release, final_contract};

/// Worker rounds one attempt may get: the first, then one per `revise` or conflict.
pub const MAX_ROUNDS: u32 = 3;

/// Times in a row the gate may find the integration ref moved under it before the run
/// stops: the loop is that ref's only writer, so a ref that keeps moving is tampering.
const MAX_REF_MOVES: u32 = 16;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Complete {
        release_commit: Oid,
    },
    Blocked {
        why: String,
    },
    /// Stopped by a pause; `goalpost resume` goes on.
    Paused {
        why: String,
    },
    BudgetLimited {
        why: String,
    },
    AwaitingApproval {
        tip: Oid,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] goalpost_state::StoreError),
    #[error("{0}")]
    Internal(String),
}

#[derive(Debug, Clone, PartialEq)]
enum AttemptState {
    Working,
    /// Stopped by a pause, a killed worker or a failed audit run: `resume` goes on.
    Interrupted {
        why: String,
    },
    Auditing,
    /// Its candidate passed the audit (`Attempt::audited`).
    Passed,
    Gating,
    Failed {
        why: String,
        budget: bool,
    },
    Merged,
    /// Another attempt of the phase won; this one's work stays on its ref.
    Lost,
}

#[derive(Debug, Clone)]
struct Attempt {
    phase: usize,
    n: u32,
    agent: String,
    worktree: PathBuf,
    dir: PathBuf,
    ref_name: String,
    base: Oid,
    head: Option<Oid>,
    rounds: u32,
    next_iteration: u32,
    usage: Usage,
    claims: Vec<String>,
    metric: Option<f64>,
    diff_size: usize,
    /// The last candidate that passed its audit, and its tree.
    audited: Option<(Oid, Oid)>,
    /// The last audit's one-line summary.
    audit_summary: String,
    /// One line per check of the last passing audit.
    evidence: Vec<String>,
    /// Each time an audit sent it back (`revise`), in order.
    sent_back: Vec<SentBack>,
    state: AttemptState,
}

/// An audit that sent an attempt back: its summary, and the paths of its boundary
/// violations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SentBack {
    summary: String,
    paths: Vec<String>,
}

impl Attempt {
    /// What the attempt has spent over its whole life.
    fn spent(&self) -> Spent<'_> {
        Spent {
            usage: &self.usage,
            iterations: Some(self.next_iteration - 1),
            elapsed: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhaseState {
    Pending,
    Running,
    Merged,
    Blocked,
}

/// What a job is for, kept by the loop while the job is queued or running.
#[derive(Debug, Clone)]
enum Purpose {
    Worker {
        attempt: usize,
    },
    Audit {
        purpose: AuditPurpose,
        dir: PathBuf,
    },
    /// The reviewer's choice among a phase's audited candidates (`Select: review`).
    Select {
        phase: usize,
    },
}

impl Purpose {
    fn attempt(&self) -> Option<usize> {
        match self {
            Purpose::Worker { attempt }
            | Purpose::Audit {
                purpose: AuditPurpose::Candidate { attempt } | AuditPurpose::Merge { attempt, .. },
                ..
            } => Some(*attempt),
            Purpose::Select { .. } => None,
        }
    }

    /// Audits have slots of their own; workers and selection turns share the agents'.
    fn is_audit(&self) -> bool {
        matches!(self, Purpose::Audit { .. })
    }
}

#[derive(Debug, Clone)]
enum AuditPurpose {
    Candidate {
        attempt: usize,
    },
    /// The merge of a train of audited candidates onto the integration tip: `train` holds
    /// each attempt with its squash commit, in order; `attempt` is the first,
    /// `merge_commit` the last.
    Merge {
        attempt: usize,
        merge_commit: Oid,
        old_tip: Oid,
        train: Vec<(usize, Oid)>,
    },
}

/// A queued job: what it is for, and what the executor runs.
#[derive(Debug)]
struct Queued {
    purpose: Purpose,
    job: Job,
}

/// What the loop waits for.
#[derive(Debug)]
enum Event {
    /// A job ended.
    Finished(Box<Finished>),
    /// Nothing ended for a while: look at pause requests.
    Tick,
}

/// A follow-up of an event: handlers return these instead of calling each other.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Phase `pi`'s attempts changed: apply its selection policy.
    Select(usize),
    /// Candidates may wait at the gate: land the next train.
    DriveTrain,
    /// Attempt `attempt` stops for good.
    Fail {
        attempt: usize,
        why: String,
        budget: bool,
    },
}

/// Everything one run needs, owned by the scheduler's thread.
pub struct Scheduler<'a> {
    pub repo: &'a Repo,
    pub store: &'a Store,
    pub layout: &'a Layout,
    pub plan: &'a Plan,
    pub run_id: String,
    pub release: String,
    pub release_start: Oid,
    pub workdir: PathBuf,
    /// Repository-relative paths that are always protected (the plan file).
    pub always_protected: Vec<String>,
    /// Agents and checks run without Landlock (`--unconfined`).
    pub unconfined: bool,
    dag: PhaseDag,
    phases: Vec<PhaseState>,
    /// Why each phase's winner won, once chosen.
    chosen_because: Vec<Option<String>>,
    /// Phases whose reviewer is choosing a winner.
    selecting: BTreeSet<usize>,
    attempts: Vec<Attempt>,
    /// Audited candidates waiting at the gate, in the order they passed.
    train_waiting: Vec<usize>,
    /// A train's merge audit is running: the next train waits for it.
    train_busy: bool,
    /// Attempts that land alone (their train failed its merge audit).
    solo: BTreeSet<usize>,
    /// The gate found the integration ref moved under it this many times in a row.
    ref_moves: u32,
    audits_started: u32,
    /// What the run's auditor agents spent so far (`[run_budget.audit]` limits it).
    audit_spent: Usage,
    queue: VecDeque<Queued>,
    /// Jobs the executor runs now.
    running: BTreeMap<JobId, Purpose>,
    next_job: JobId,
    /// Follow-ups not carried out yet, next first.
    steps: VecDeque<Step>,
    executor: Box<dyn Executor + 'a>,
    reporter: Box<dyn Reporter + 'a>,
    control: Arc<Control>,
    /// Set once the run budget is crossed: no worker round starts after it.
    run_budget_crossed: Option<String>,
    /// The run was picked up again by `resume` ([`Scheduler::restore`]).
    resumed: bool,
    /// How far each running worker's progress file has been read, by attempt.
    progress_read: BTreeMap<usize, u64>,
}

impl std::fmt::Debug for Scheduler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl<'a> Scheduler<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: &'a Repo,
        store: &'a Store,
        layout: &'a Layout,
        plan: &'a Plan,
        run_id: String,
        release: String,
        release_start: Oid,
        workdir: PathBuf,
        always_protected: Vec<String>,
    ) -> Self {
        Scheduler {
            dag: PhaseDag::new(plan),
            phases: vec![PhaseState::Pending; plan.phases.len()],
            chosen_because: vec![None; plan.phases.len()],
            selecting: BTreeSet::new(),
            train_waiting: Vec::new(),
            train_busy: false,
            solo: BTreeSet::new(),
            ref_moves: 0,
            attempts: Vec::new(),
            audits_started: 0,
            audit_spent: Usage::default(),
            queue: VecDeque::new(),
            running: BTreeMap::new(),
            next_job: 0,
            steps: VecDeque::new(),
            executor: Box::new(LocalExecutor::default()),
            reporter: Box::new(PlainLines),
            control: Control::new(&layout.state_dir),
            run_budget_crossed: None,
            resumed: false,
            progress_read: BTreeMap::new(),
            repo,
            store,
            layout,
            plan,
            run_id,
            release,
            release_start,
            workdir,
            always_protected,
            unconfined: false,
        }
    }

    /// Runs the run's jobs with `executor` instead of local child processes.
    pub fn with_executor(mut self, executor: Box<dyn Executor + 'a>) -> Self {
        self.executor = executor;
        self
    }

    /// Tells the run's events to `reporter` instead of printing them.
    pub fn with_reporter(mut self, reporter: Box<dyn Reporter + 'a>) -> Self {
        self.reporter = reporter;
        self
    }

    /// Records `event` in the run's event log and tells the reporter.
    fn report(&mut self, event: RunEvent) -> Result<(), ScheduleError> {
        let record = self.store.append_event_record(&self.run_id, &event)?;
        self.reporter.report(&record);
        Ok(())
    }

    /// Tells the reporter the run ended with `ended`, its `run_ended` record.
    pub fn report_end(&mut self, ended: &goalpost_state::EventRecord) {
        self.reporter.finish(ended);
    }

    fn integration_ref(&self) -> String {
        layout::integration_ref(&self.run_id)
    }

    fn integration_tip(&self) -> Result<Oid, ScheduleError> {
        self.repo
            .ref_target(&self.integration_ref())?
            .ok_or_else(|| ScheduleError::Internal("the integration ref is gone".into()))
    }

    /// The run's pause control, to watch signals with.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// Runs every phase, then the whole-goal audit and the release move.
    pub fn run(&mut self) -> Result<RunEnd, ScheduleError> {
        let plan_path = self
            .store
            .run(Some(&self.run_id))?
            .map(|row| row.plan_path)
            .unwrap_or_default();
        self.report(RunEvent::RunStarted {
            plan_path,
            release_branch: self.release.clone(),
            release_start: self.release_start.to_string(),
            phases: self
                .plan
                .phases
                .iter()
                .map(|p| p.id.value.clone())
                .collect(),
            resumed: self.resumed,
        })?;
        let (tx, rx) = mpsc::channel::<Finished>();
        let pause = match self.run_jobs(&tx, &rx) {
            Ok(pause) => pause,
            Err(err) => {
                self.stop_running_agents(&rx);
                return Err(err);
            }
        };
        if pause > Pause::None {
            return Ok(RunEnd::Paused {
                why: match pause {
                    Pause::Now => "paused at once; the running turns were ended and harvested",
                    _ => "paused after the running turns",
                }
                .to_owned(),
            });
        }
        let end = match self.blocked_end()? {
            Some(end) => Ok(end),
            None => self.finish(),
        };
        self.cleanup_worktrees();
        end
    }

    /// The loop: carries out the pending steps, starts queued jobs as slots free up, and
    /// handles each event, until no job runs and none can start; returns the pause that
    /// stopped it, if any.
    fn run_jobs(
        &mut self,
        tx: &mpsc::Sender<Finished>,
        rx: &mpsc::Receiver<Finished>,
    ) -> Result<Pause, ScheduleError> {
        let mut pause = Pause::None;
        loop {
            self.carry_out_steps()?;
            let now = self.control.poll();
            if now > pause {
                pause = now;
                self.pause_running(pause, "the run is pausing")?;
            }
            if pause == Pause::None {
                self.start_ready_phases()?;
            }
            self.start_jobs(tx, pause)?;
            if self.running.is_empty() {
                return Ok(pause);
            }
            let event = match rx.recv_timeout(POLL) {
                Ok(finished) => Event::Finished(Box::new(finished)),
                Err(mpsc::RecvTimeoutError::Timeout) => Event::Tick,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ScheduleError::Internal("a job thread vanished".into()));
                }
            };
            self.read_progress()?;
            match event {
                Event::Finished(finished) => {
                    let steps = self.finished(*finished)?;
                    self.follow(steps);
                    crash::point("job recorded");
                }
                Event::Tick => self.reporter.tick(),
            }
        }
    }

    /// Queues `steps` to be carried out next, in their order.
    fn follow(&mut self, steps: Vec<Step>) {
        for step in steps.into_iter().rev() {
            self.steps.push_front(step);
        }
    }

    /// Carries out the pending steps and what they lead to, depth first.
    fn carry_out_steps(&mut self) -> Result<(), ScheduleError> {
        while let Some(step) = self.steps.pop_front() {
            let next = match step {
                Step::Select(pi) => self.select(pi)?,
                Step::DriveTrain => self.drive_train()?,
                Step::Fail {
                    attempt,
                    why,
                    budget,
                } => self.fail(attempt, why, budget)?,
            };
            self.follow(next);
        }
        Ok(())
    }

    /// The jobs running now, by kind.
    fn busy(&self) -> Busy {
        let audits = self.running.values().filter(|p| p.is_audit()).count();
        Busy {
            agents: self.running.len() - audits,
            audits,
        }
    }

    /// Starts every queued job that [`decide::admit`] lets start.
    fn start_jobs(
        &mut self,
        tx: &mpsc::Sender<Finished>,
        pause: Pause,
    ) -> Result<(), ScheduleError> {
        let max_parallel = self.max_parallel();
        let mut k = 0;
        while k < self.queue.len() {
            let purpose = &self.queue[k].purpose;
            let lost = purpose
                .attempt()
                .is_some_and(|i| self.attempts[i].state == AttemptState::Lost);
            let is_worker = matches!(purpose, Purpose::Worker { .. });
            if is_worker && self.run_budget_crossed.is_none() {
                self.run_budget_crossed =
                    decide::run_budget_spent(&self.plan.settings.run_budget, &self.attempts);
            }
            let admit = decide::admit(
                purpose.is_audit(),
                is_worker,
                lost,
                self.run_budget_crossed.as_deref(),
                self.busy(),
                max_parallel,
                pause,
            );
            if admit == Admit::Wait {
                k += 1;
                continue;
            }
            let Some(queued) = self.queue.remove(k) else {
                break;
            };
            match admit {
                Admit::Start => {}
                Admit::Wait | Admit::Drop => continue,
                Admit::Interrupt(why) => {
                    if let Purpose::Worker { attempt } = queued.purpose {
                        self.interrupt(attempt, why)?;
                    }
                    continue;
                }
            }
            crash::point("job starts");
            match (&queued.purpose, &queued.job) {
                (Purpose::Audit { .. }, Job::Audit(input)) => self.offer_reuse(input),
                (Purpose::Worker { attempt }, _) => {
                    self.make_worktree(*attempt)?;
                    self.follow_progress(*attempt);
                }
                _ => {}
            }
            let id = self.next_job;
            self.next_job += 1;
            self.running.insert(id, queued.purpose);
            self.executor.start(id, queued.job, tx.clone());
        }
        Ok(())
    }

    /// Records a job's end and returns what follows from it.
    fn finished(&mut self, finished: Finished) -> Result<Vec<Step>, ScheduleError> {
        let Some(purpose) = self.running.remove(&finished.id) else {
            return Err(ScheduleError::Internal(format!(
                "job {} ended but was not running",
                finished.id
            )));
        };
        match (purpose, finished.result) {
            (Purpose::Worker { attempt }, JobResult::Worker(result)) => {
                self.worker_done(attempt, result)
            }
            (Purpose::Audit { purpose, dir }, JobResult::Audit(result)) => {
                self.audit_done(purpose, result, dir)
            }
            (Purpose::Select { phase }, JobResult::Select(result)) => self.selected(phase, result),
            (purpose, result) => Err(ScheduleError::Internal(format!(
                "job {} for {purpose:?} gave {result:?}",
                finished.id
            ))),
        }
    }

    /// Queues `job` for `purpose`, after the jobs queued before it or, with `front`, ahead
    /// of them.
    fn enqueue(&mut self, purpose: Purpose, job: Job, front: bool) {
        let queued = Queued { purpose, job };
        if front {
            self.queue.push_front(queued);
        } else {
            self.queue.push_back(queued);
        }
    }

    /// After an internal error: the running workers end their turns, harvest them onto
    /// their attempts' refs and are recorded as interrupted (`resume` goes on from there),
    /// and the run waits for them, so nothing of it still writes to the repository once
    /// `goalpost` has exited. Audits still running end with the process; they change
    /// nothing of the run.
    fn stop_running_agents(&mut self, rx: &mpsc::Receiver<Finished>) {
        if let Err(err) = self.pause_running(Pause::Now, "the run stopped on an internal error") {
            eprintln!("warning: could not record the pause: {err}");
        }
        while self.busy().agents > 0 {
            let Ok(finished) = rx.recv() else {
                break;
            };
            let purpose = self.running.remove(&finished.id);
            if let (Some(Purpose::Worker { attempt }), JobResult::Worker(result)) =
                (purpose, finished.result)
                && let Err(err) = self.worker_done(attempt, result)
            {
                eprintln!("warning: could not record the stopped worker: {err}");
            }
        }
    }

    /// A pause: running workers stop at their next safe boundary, or at once; `why` is
    /// what their stop reports say.
    fn pause_running(&mut self, pause: Pause, why: &str) -> Result<(), ScheduleError> {
        for a in &self.attempts {
            if a.state == AttemptState::Working {
                ask_to_stop(a, why);
            }
        }
        if pause == Pause::Now {
            self.executor.stop_workers();
        }
        self.report(RunEvent::Paused {
            now: pause == Pause::Now,
            why: why.to_owned(),
        })
    }

    fn key(&self, i: usize) -> (String, u32) {
        let a = &self.attempts[i];
        (self.plan.phases[a.phase].id.value.clone(), a.n)
    }

    /// Jobs of each kind (agents, audits) that run at once.
    fn max_parallel(&self) -> usize {
        self.plan.settings.max_parallel.value.max(1) as usize
    }
}

/// Asks attempt `a`'s worker to stop at its next safe boundary (before its next turn);
/// `why` is what its stop report says. A worker that never reads the file still ends
/// with its round.
fn ask_to_stop(a: &Attempt, why: &str) {
    let written = std::fs::create_dir_all(&a.dir)
        .and_then(|()| std::fs::write(a.dir.join(STOP_FILE), format!("{why}\n")));
    if let Err(e) = written {
        tracing::warn!("cannot ask {} to stop: {e}", a.dir.display());
    }
}

/// How often the run loop looks at pause requests while it waits for jobs.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn oid(hex: &str) -> Result<Oid, ScheduleError> {
    Oid::from_str(hex).map_err(|e| ScheduleError::Internal(format!("bad commit id {hex:?}: {e}")))
}

pub fn short(oid: Oid) -> String {
    oid.to_string()[..10].to_owned()
}
