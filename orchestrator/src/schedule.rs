//! The run loop: schedules the phase DAG with at most `max_parallel` workers and audits at
//! once, turns worker results into audits and audit results into gate steps, and ends with
//! the whole-goal audit and the release move. It is the only writer of the state store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use goalpost_shared::dag::PhaseDag;
use goalpost_shared::git::{GitError, Oid, Repo};
use goalpost_shared::plan::Plan;
use goalpost_shared::protocol::{
    AttemptOutcome, AuditInput, AuditReport, Feedback, STOP_FILE, SelectInput, SelectResult, Usage,
    WorkerInput, WorkerResult,
};
use goalpost_state::{AttemptStatus, PhaseStatus, Store};

use crate::attempt::{self, DEFAULT_MAX_ITERATIONS, DEFAULT_NO_PROGRESS_LIMIT, WORKER_ENV_ALLOW};
use crate::audit;
use crate::control::{Control, Pause};
use crate::crash;
use crate::layout::{self, Layout};
use crate::worktree;

mod audits;
mod land;
mod recover;
mod release;
mod select;

pub use release::{Release, final_contract};

/// Worker rounds one attempt may get: the first, then one per `revise` or conflict.
pub const MAX_ROUNDS: u32 = 3;

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

#[derive(Debug)]
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
    state: AttemptState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhaseState {
    Pending,
    Running,
    Merged,
    Blocked,
}

#[derive(Debug)]
enum Job {
    Worker {
        attempt: usize,
        input: Box<WorkerInput>,
    },
    Audit {
        purpose: AuditPurpose,
        input: Box<AuditInput>,
    },
    /// The reviewer's choice among a phase's audited candidates (`Select: review`).
    Select {
        phase: usize,
        input: Box<SelectInput>,
    },
}

impl Job {
    fn attempt(&self) -> Option<usize> {
        match self {
            Job::Worker { attempt, .. }
            | Job::Audit {
                purpose: AuditPurpose::Candidate { attempt } | AuditPurpose::Merge { attempt, .. },
                ..
            } => Some(*attempt),
            Job::Select { .. } => None,
        }
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

#[derive(Debug)]
enum Done {
    Worker {
        attempt: usize,
        result: Result<WorkerResult, String>,
    },
    Audit {
        purpose: AuditPurpose,
        result: Result<AuditReport, String>,
        dir: PathBuf,
    },
    Select {
        phase: usize,
        result: Result<SelectResult, String>,
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
    audits_started: u32,
    queue: VecDeque<Job>,
    control: Arc<Control>,
    /// Process groups of running workers, by attempt.
    workers: Arc<Mutex<BTreeMap<usize, u32>>>,
    /// Set once the run budget is crossed: no worker round starts after it.
    run_budget_crossed: Option<String>,
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
            attempts: Vec::new(),
            audits_started: 0,
            queue: VecDeque::new(),
            control: Control::new(&layout.state_dir),
            workers: Arc::default(),
            run_budget_crossed: None,
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
        let (tx, rx) = mpsc::channel::<Done>();
        let mut busy = Busy::default();
        let pause = match self.run_jobs(&tx, &rx, &mut busy) {
            Ok(pause) => pause,
            Err(err) => {
                self.stop_running_agents(&rx, busy);
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
        let end = self.blocked_end().and_then(|end| match end {
            Some(end) => Ok(end),
            None => self.finish(),
        });
        self.cleanup_worktrees();
        end
    }

    /// Starts queued jobs as slots free up and handles what they report, until none is
    /// running and none can start; returns the pause that stopped it, if any.
    fn run_jobs(
        &mut self,
        tx: &mpsc::Sender<Done>,
        rx: &mpsc::Receiver<Done>,
        busy: &mut Busy,
    ) -> Result<Pause, ScheduleError> {
        let max_parallel = self.max_parallel();
        // `max_parallel` bounds the agents at work (workers and selection turns); audits,
        // which run no agent, have as many slots of their own, so verifying one wave of
        // candidates never holds the next wave of agents back.
        let mut pause = Pause::None;
        loop {
            let now = self.control.poll();
            if now > pause {
                pause = now;
                self.pause_running(pause, "the run is pausing");
            }
            if pause == Pause::None {
                self.start_ready_phases()?;
                let mut k = 0;
                while k < self.queue.len() {
                    let is_audit = matches!(self.queue[k], Job::Audit { .. });
                    let running = if is_audit { busy.audits } else { busy.agents };
                    if running >= max_parallel {
                        k += 1;
                        continue;
                    }
                    let Some(job) = self.queue.remove(k) else {
                        break;
                    };
                    if job
                        .attempt()
                        .is_some_and(|i| self.attempts[i].state == AttemptState::Lost)
                    {
                        continue;
                    }
                    if let Job::Worker { attempt, .. } = &job
                        && let Some(why) = self.run_budget_check()
                    {
                        self.interrupt(*attempt, why)?;
                        continue;
                    }
                    crash::point("job starts");
                    match &job {
                        Job::Audit { input, .. } => self.offer_reuse(input),
                        Job::Worker { attempt, .. } => self.make_worktree(*attempt)?,
                        Job::Select { .. } => {}
                    }
                    spawn(job, tx.clone(), Arc::clone(&self.workers));
                    if is_audit {
                        busy.audits += 1;
                    } else {
                        busy.agents += 1;
                    }
                }
            }
            if busy.agents + busy.audits == 0 {
                return Ok(pause);
            }
            match rx.recv_timeout(POLL) {
                Ok(done) => {
                    busy.finished(&done);
                    self.handle(done)?;
                    crash::point("job recorded");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ScheduleError::Internal("a job thread vanished".into()));
                }
            }
        }
    }

    /// After an internal error: the running workers end their turns, harvest them onto
    /// their attempts' refs and are recorded as interrupted (`resume` goes on from there),
    /// and the run waits for them, so nothing of it still writes to the repository once
    /// `goalpost` has exited. Audits still running end with the process; they change
    /// nothing of the run.
    fn stop_running_agents(&mut self, rx: &mpsc::Receiver<Done>, mut busy: Busy) {
        self.pause_running(Pause::Now, "the run stopped on an internal error");
        while busy.agents > 0 {
            let Ok(done) = rx.recv() else {
                break;
            };
            busy.finished(&done);
            if let Done::Worker { attempt, result } = done
                && let Err(err) = self.worker_done(attempt, result)
            {
                eprintln!("warning: could not record the stopped worker: {err}");
            }
        }
    }

    /// A pause: running workers stop at their next safe boundary, or at once; `why` is
    /// what their stop reports say.
    fn pause_running(&mut self, pause: Pause, why: &str) {
        for a in &self.attempts {
            if a.state == AttemptState::Working {
                let _ = std::fs::create_dir_all(&a.dir);
                let _ = std::fs::write(a.dir.join(STOP_FILE), format!("{why}\n"));
            }
        }
        if pause == Pause::Now {
            let pids: Vec<u32> = self
                .workers
                .lock()
                .map(|w| w.values().copied().collect())
                .unwrap_or_default();
            for pid in pids {
                // The worker ends its agent's turn, harvests it and writes its result.
                let _ = goalpost_shared::process::signal_group(
                    pid,
                    goalpost_shared::process::Signal::Term,
                );
            }
        }
    }

    /// The run budget's verdict before a worker round starts: `Some(why)` once crossed.
    fn run_budget_check(&mut self) -> Option<String> {
        if self.run_budget_crossed.is_none() {
            let mut used = Usage::default();
            for a in &self.attempts {
                used.add(&a.usage);
            }
            let iterations: u32 = self.attempts.iter().map(|a| a.next_iteration - 1).sum();
            self.run_budget_crossed =
                attempt::crossed(&self.plan.settings.run_budget, &used, iterations)
                    .map(|why| format!("the run budget is spent: {why}"));
        }
        self.run_budget_crossed.clone()
    }

    /// Marks attempt `i` as stopped short of an outcome; `resume` goes on with it.
    fn interrupt(&mut self, i: usize, why: String) -> Result<(), ScheduleError> {
        let (phase_id, n) = self.key(i);
        println!("phase {phase_id}: attempt {n} interrupted: {why}");
        self.store
            .set_attempt_state(&self.run_id, &phase_id, n, AttemptStatus::Interrupted)?;
        self.attempts[i].state = AttemptState::Interrupted { why };
        Ok(())
    }

    fn start_ready_phases(&mut self) -> Result<(), ScheduleError> {
        let done: BTreeSet<String> = self.ids_in(PhaseState::Merged);
        let started: BTreeSet<String> = self
            .plan
            .phases
            .iter()
            .zip(&self.phases)
            .filter(|(_, s)| **s != PhaseState::Pending)
            .map(|(p, _)| p.id.value.clone())
            .collect();
        let ready: Vec<String> = self
            .dag
            .ready(&done, &started)
            .into_iter()
            .map(str::to_owned)
            .collect();
        for id in ready {
            self.start_phase(&id)?;
        }
        Ok(())
    }

    fn ids_in(&self, state: PhaseState) -> BTreeSet<String> {
        self.plan
            .phases
            .iter()
            .zip(&self.phases)
            .filter(|(_, s)| **s == state)
            .map(|(p, _)| p.id.value.clone())
            .collect()
    }

    fn phase_index(&self, id: &str) -> usize {
        self.plan
            .phases
            .iter()
            .position(|p| p.id.value == id)
            .unwrap_or(0)
    }

    fn start_phase(&mut self, id: &str) -> Result<(), ScheduleError> {
        let pi = self.phase_index(id);
        let phase = &self.plan.phases[pi];
        let base = self.integration_tip()?;
        self.phases[pi] = PhaseState::Running;
        self.store
            .set_phase_state(&self.run_id, id, PhaseStatus::Running, None)?;
        self.store
            .set_phase_base(&self.run_id, id, &base.to_string())?;
        let implementer = attempt::implementer_name(self.plan)
            .unwrap_or_default()
            .to_owned();
        println!("phase {id}: started on {}", short(base));
        for n in 1..=phase.attempts.value {
            let agent = phase
                .agent_for_attempt(n as usize - 1, &implementer)
                .to_owned();
            let worktree = self.layout.attempt_worktree(&self.run_id, id, n);
            let dir = self.layout.attempt_dir(&self.run_id, id, n);
            let ref_name = layout::attempt_ref(&self.run_id, id, n);
            if let Some(parent) = worktree.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    ScheduleError::Internal(format!("creating {}: {e}", parent.display()))
                })?;
            }
            if worktree.exists() {
                // Left by a crash before its attempt was recorded: no agent ever ran in it.
                let _ = self.repo.worktree_remove(&worktree, true);
                let _ = std::fs::remove_dir_all(&worktree);
                let _ = self.repo.worktree_prune();
            }
            // The worktree itself is made when the attempt's first round starts: phases
            // that become ready together do not wait for each other's checkouts.
            self.store.insert_attempt(
                &self.run_id,
                id,
                n,
                &agent,
                &worktree.display().to_string(),
                &ref_name,
            )?;
            let index = self.attempts.len();
            self.attempts.push(Attempt {
                phase: pi,
                n,
                agent,
                worktree,
                dir,
                ref_name,
                base,
                head: None,
                rounds: 0,
                next_iteration: 1,
                usage: Usage::default(),
                claims: Vec::new(),
                metric: None,
                diff_size: 0,
                audited: None,
                audit_summary: String::new(),
                evidence: Vec::new(),
                state: AttemptState::Working,
            });
            self.queue_round(index, None, None)?;
        }
        Ok(())
    }

    /// Queues the next worker round of attempt `i`.
    fn queue_round(
        &mut self,
        i: usize,
        feedback: Option<Feedback>,
        resume_from: Option<Oid>,
    ) -> Result<(), ScheduleError> {
        let a = &self.attempts[i];
        let phase = &self.plan.phases[a.phase];
        let settings = &self.plan.settings;
        let agent_def = settings
            .agents
            .get(&a.agent)
            .ok_or_else(|| ScheduleError::Internal(format!("agent {} is not defined", a.agent)))?;
        let reviewer = settings
            .roles
            .reviewer
            .as_ref()
            .and_then(|r| settings.agents.get(&r.value))
            .map(|def| attempt::agent_spec(def, &settings.prices));
        let budget = attempt::remaining(&settings.budget, &a.usage, a.next_iteration - 1);
        let no_progress_limit = phase
            .contract
            .blocked
            .as_ref()
            .and_then(|b| b.no_progress_limit)
            .unwrap_or(DEFAULT_NO_PROGRESS_LIMIT);
        let max_iterations = settings
            .budget
            .iterations
            .as_ref()
            .map(|s| s.value)
            .unwrap_or(DEFAULT_MAX_ITERATIONS);
        let input = WorkerInput {
            run_id: self.run_id.clone(),
            phase: phase.id.value.clone(),
            phase_title: phase.title.clone(),
            attempt: a.n,
            plan_title: self
                .plan
                .title
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_default(),
            worktree: a.worktree.clone(),
            base: a.base.to_string(),
            attempt_ref: a.ref_name.clone(),
            resume_from: resume_from.or(a.head).map(|o| o.to_string()),
            first_iteration: a.next_iteration,
            contract: phase.contract.clone(),
            implementer: attempt::agent_spec(agent_def, &settings.prices),
            reviewer,
            budget,
            no_progress_limit,
            max_iterations,
            feedback,
            private_dir: a.dir.clone(),
            env_allow: WORKER_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect(),
            agent_env: Default::default(),
            unconfined: self.unconfined,
        };
        println!(
            "phase {}: attempt {} ({}) round {} from iteration {}",
            phase.id.value,
            a.n,
            a.agent,
            a.rounds + 1,
            a.next_iteration
        );
        self.attempts[i].state = AttemptState::Working;
        let (phase_id, n) = self.key(i);
        self.store.set_attempt_base(
            &self.run_id,
            &phase_id,
            n,
            &self.attempts[i].base.to_string(),
        )?;
        self.queue.push_back(Job::Worker {
            attempt: i,
            input: Box::new(input),
        });
        Ok(())
    }

    fn handle(&mut self, done: Done) -> Result<(), ScheduleError> {
        match done {
            Done::Worker { attempt, result } => self.worker_done(attempt, result),
            Done::Audit {
                purpose,
                result,
                dir,
            } => self.audit_done(purpose, result, dir),
            Done::Select { phase, result } => self.selected(phase, result),
        }
    }

    fn worker_done(
        &mut self,
        i: usize,
        result: Result<WorkerResult, String>,
    ) -> Result<(), ScheduleError> {
        let (phase_id, n) = self.key(i);
        if let Ok(mut w) = self.workers.lock() {
            w.remove(&i);
        }
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                // Killed or crashed: nothing the attempt decided; `resume` goes on from
                // its ref.
                return self.interrupt(i, format!("the worker failed: {e}"));
            }
        };
        let a = &mut self.attempts[i];
        a.rounds += 1;
        a.usage.add(&result.usage);
        if let Some(last) = result.iterations.iter().map(|it| it.iteration).max() {
            a.next_iteration = last + 1;
        }
        if let Some(head) = result.head.as_deref().and_then(|h| Oid::from_str(h).ok()) {
            a.head = Some(head);
        }
        let (state, candidate, outcome_text) = match &result.outcome {
            AttemptOutcome::Candidate { commit, .. } => (
                AttemptStatus::Auditing,
                Some(commit.as_str()),
                "candidate".to_owned(),
            ),
            AttemptOutcome::Blocked { reason, needs } => (
                AttemptStatus::Blocked,
                None,
                format!("blocked: {reason}; needs: {needs}"),
            ),
            AttemptOutcome::BudgetLimited {
                budget,
                limit,
                used,
            } => (
                AttemptStatus::BudgetLimited,
                None,
                format!("budget {budget} reached: used {used} of {limit}"),
            ),
            AttemptOutcome::Stopped { reason } => {
                (AttemptStatus::Interrupted, None, reason.clone())
            }
        };
        self.store.record_round(
            &self.run_id,
            &phase_id,
            n,
            state,
            result.head.as_deref(),
            candidate,
            &result.usage,
            &outcome_text,
            &result.iterations,
        )?;
        if self.attempts[i].state == AttemptState::Lost {
            self.store
                .set_attempt_state(&self.run_id, &phase_id, n, AttemptStatus::Lost)?;
            return Ok(());
        }
        match result.outcome {
            AttemptOutcome::Candidate { commit, claims } => {
                let commit = Oid::from_str(&commit).map_err(|e| {
                    ScheduleError::Internal(format!("the worker named a bad commit: {e}"))
                })?;
                let a = &mut self.attempts[i];
                a.state = AttemptState::Auditing;
                a.claims = claims.clone();
                let base = a.base;
                let pi = a.phase;
                println!(
                    "phase {phase_id}: attempt {n} proposes {}; auditing",
                    short(commit)
                );
                let contract = self.plan.phases[pi].contract.clone();
                self.queue_audit(
                    AuditPurpose::Candidate { attempt: i },
                    contract,
                    &format!("{phase_id}.{n}"),
                    base,
                    commit,
                    claims,
                    false,
                );
                Ok(())
            }
            AttemptOutcome::Blocked { .. } => self.fail(i, outcome_text, false),
            AttemptOutcome::BudgetLimited { .. } => self.fail(i, outcome_text, true),
            AttemptOutcome::Stopped { .. } => self.interrupt(i, outcome_text),
        }
    }

    fn key(&self, i: usize) -> (String, u32) {
        let a = &self.attempts[i];
        (self.plan.phases[a.phase].id.value.clone(), a.n)
    }

    fn fail(&mut self, i: usize, why: String, budget: bool) -> Result<(), ScheduleError> {
        let (phase_id, n) = self.key(i);
        println!("phase {phase_id}: attempt {n} stopped: {why}");
        let state = if budget {
            AttemptStatus::BudgetLimited
        } else {
            AttemptStatus::Blocked
        };
        self.store
            .set_attempt_state(&self.run_id, &phase_id, n, state)?;
        self.attempts[i].state = AttemptState::Failed { why, budget };
        let pi = self.attempts[i].phase;
        self.select(pi)
    }

    fn block_phase(&mut self, pi: usize) -> Result<(), ScheduleError> {
        let phase_id = self.plan.phases[pi].id.value.clone();
        let why: Vec<String> = self
            .attempts
            .iter()
            .filter(|a| a.phase == pi)
            .filter_map(|a| match &a.state {
                AttemptState::Failed { why, .. } => {
                    Some(format!("attempt {} ({}): {why}", a.n, a.agent))
                }
                _ => None,
            })
            .collect();
        let all_budget = self
            .attempts
            .iter()
            .filter(|a| a.phase == pi)
            .all(|a| matches!(a.state, AttemptState::Failed { budget: true, .. }));
        let state = if all_budget {
            PhaseStatus::BudgetLimited
        } else {
            PhaseStatus::Blocked
        };
        self.phases[pi] = PhaseState::Blocked;
        self.store
            .set_phase_state(&self.run_id, &phase_id, state, Some(&why.join("; ")))?;
        println!("phase {phase_id}: {state}");
        Ok(())
    }

    /// When some phase could not merge: the run's end, with every blocker and the phases
    /// that never started.
    fn blocked_end(&mut self) -> Result<Option<RunEnd>, ScheduleError> {
        let blocked: Vec<usize> = (0..self.phases.len())
            .filter(|&p| self.phases[p] != PhaseState::Merged)
            .collect();
        if blocked.is_empty() {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut all_budget = true;
        let mut interrupted = false;
        for &pi in &blocked {
            let id = &self.plan.phases[pi].id.value;
            match self.phases[pi] {
                PhaseState::Blocked => {
                    for a in self.attempts.iter().filter(|a| a.phase == pi) {
                        if let AttemptState::Failed { why, budget } = &a.state {
                            all_budget &= *budget;
                            parts.push(format!("{id} attempt {}: {why}", a.n));
                        }
                    }
                }
                PhaseState::Running => {
                    for a in self.attempts.iter().filter(|a| a.phase == pi) {
                        if let AttemptState::Interrupted { why } = &a.state {
                            interrupted = true;
                            parts.push(format!("{id} attempt {} interrupted: {why}", a.n));
                        }
                    }
                }
                PhaseState::Pending | PhaseState::Merged => {
                    let waits: Vec<&str> = self
                        .dag
                        .dependencies(id)
                        .into_iter()
                        .filter(|d| self.phases[self.phase_index(d)] != PhaseState::Merged)
                        .collect();
                    self.store.set_phase_state(
                        &self.run_id,
                        id,
                        PhaseStatus::Pending,
                        Some(&format!("never started: waits on {}", waits.join(", "))),
                    )?;
                }
            }
        }
        let mut why = parts.join("; ");
        if let Some(spent) = &self.run_budget_crossed {
            return Ok(Some(RunEnd::BudgetLimited {
                why: format!("{spent}; {why}"),
            }));
        }
        if interrupted {
            why.push_str("; `goalpost resume` goes on from the attempts' refs");
        }
        Ok(Some(if all_budget && !interrupted && !parts.is_empty() {
            RunEnd::BudgetLimited { why }
        } else {
            RunEnd::Blocked { why }
        }))
    }

    /// Jobs of each kind (agents, audits) that run at once.
    fn max_parallel(&self) -> usize {
        self.plan.settings.max_parallel.value.max(1) as usize
    }

    /// The implementers' worktree pool of this run.
    fn pool(&self) -> worktree::Pool<'a> {
        worktree::Pool::for_run(self.repo, self.layout, &self.run_id, self.max_parallel())
    }

    /// Attempt `i`'s worktree, through the pool, at its work (its base on the first
    /// round), unless it is there already.
    fn make_worktree(&mut self, i: usize) -> Result<(), ScheduleError> {
        if self.attempts[i].worktree.join(".git").exists() {
            return Ok(());
        }
        self.recycle_finished_worktrees();
        let a = &self.attempts[i];
        self.pool()
            .checkout(&a.worktree, a.head.unwrap_or(a.base))?;
        crash::point("worktree made");
        Ok(())
    }

    /// The worktrees of attempts no worker is using, and none will until a next round
    /// checks one out again (a candidate under audit or at the gate, merged, lost, or
    /// stopped for good), go back to the pool for the next attempts; `release` keeps any
    /// that holds work not on its attempt's ref.
    fn recycle_finished_worktrees(&self) {
        let pool = self.pool();
        for a in &self.attempts {
            let done = !matches!(
                a.state,
                AttemptState::Working | AttemptState::Interrupted { .. }
            );
            if done && a.worktree.join(".git").exists() {
                let released = pool.release(&a.worktree, &a.ref_name);
                tracing::debug!(worktree = %a.worktree.display(), ?released, "recycling");
            }
        }
    }

    /// Removes the worktrees whose work is on refs; keeps (and names) any that is not.
    fn cleanup_worktrees(&mut self) {
        for a in &self.attempts {
            if !a.worktree.exists() {
                continue;
            }
            match Repo::open(&a.worktree).and_then(|r| r.is_dirty()) {
                // Its work is on its ref: the directory goes here, git's record of it with
                // the one prune below, not one `git worktree remove` per attempt.
                Ok(false) => {
                    if let Err(e) = std::fs::remove_dir_all(&a.worktree) {
                        eprintln!("warning: could not remove {}: {e}", a.worktree.display());
                    }
                }
                Ok(true) => eprintln!(
                    "warning: kept {}: it holds changes not on {}",
                    a.worktree.display(),
                    a.ref_name
                ),
                Err(e) => eprintln!("warning: kept {}: {e}", a.worktree.display()),
            }
        }
        self.pool().drain();
        worktree::drain_dir(
            self.repo,
            &worktree::audit_pool(self.layout, &self.run_id, self.max_parallel()).dir,
        );
        // Folders left empty go too; `remove_dir` refuses any that is not.
        let _ = std::fs::remove_dir(self.layout.worktree_root.join(&self.run_id));
        let _ = std::fs::remove_dir(&self.layout.worktree_root);
        let _ = self.repo.worktree_prune();
    }
}

/// The jobs running: agents (workers and selection turns) and audits.
#[derive(Debug, Default, Clone, Copy)]
struct Busy {
    agents: usize,
    audits: usize,
}

impl Busy {
    /// Counts `done`'s job as finished.
    fn finished(&mut self, done: &Done) {
        if matches!(done, Done::Audit { .. }) {
            self.audits -= 1;
        } else {
            self.agents -= 1;
        }
    }
}

/// How often the run loop looks at pause requests while it waits for jobs.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn spawn(job: Job, tx: mpsc::Sender<Done>, workers: Arc<Mutex<BTreeMap<usize, u32>>>) {
    std::thread::spawn(move || {
        let done = match job {
            Job::Worker { attempt, input } => {
                let result = attempt::run_worker(&input, &input.private_dir, |pid| {
                    if let Ok(mut w) = workers.lock() {
                        w.insert(attempt, pid);
                    }
                });
                Done::Worker { attempt, result }
            }
            Job::Audit { purpose, input } => {
                let result = audit::run_auditor(&input);
                Done::Audit {
                    purpose,
                    result,
                    dir: input.report_dir.clone(),
                }
            }
            Job::Select { phase, input } => Done::Select {
                phase,
                result: attempt::run_select(&input),
            },
        };
        // The receiver only goes away when the run itself failed.
        let _ = tx.send(done);
    });
}

fn oid(hex: &str) -> Result<Oid, ScheduleError> {
    Oid::from_str(hex).map_err(|e| ScheduleError::Internal(format!("bad commit id {hex:?}: {e}")))
}

pub fn short(oid: Oid) -> String {
    oid.to_string()[..10].to_owned()
}
