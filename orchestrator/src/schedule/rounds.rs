//! An attempt's rounds: phases start when their dependencies merged, each attempt's
//! worker rounds are queued with what is left of its budget, and a round's result is
//! recorded and turned into an audit, a stop or an interruption. How a phase whose
//! attempts all stopped, and a run that could not merge every phase, end.

use std::collections::BTreeSet;

use goalpost_shared::budget;
use goalpost_shared::git::Oid;
use goalpost_shared::protocol::{
    AttemptOutcome, Feedback, SandboxSpec, Usage, WorkerInput, WorkerResult,
};

use super::decide::{self, AfterRound};
use super::{
    Attempt, AttemptState, AuditPurpose, PhaseState, Purpose, RunEnd, RunEvent, ScheduleError,
    Scheduler, Step,
};
use crate::attempt::{self, DEFAULT_MAX_ITERATIONS, DEFAULT_NO_PROGRESS_LIMIT, WORKER_ENV_ALLOW};
use crate::executor::{Job, JobError};
use crate::layout;
use goalpost_state::{AttemptStatus, PhaseStatus};

impl Scheduler<'_> {
    pub(super) fn start_ready_phases(&mut self) -> Result<(), ScheduleError> {
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

    pub(super) fn phase_index(&self, id: &str) -> usize {
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
        self.report(RunEvent::PhaseStarted {
            phase: id.to_owned(),
            base: base.to_string(),
        })?;
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
                // Whether git still knew it or not, the directory must go.
                if let Err(e) = self.repo.worktree_remove(&worktree, true) {
                    tracing::debug!("git did not remove {}: {e}", worktree.display());
                }
                if let Err(e) = std::fs::remove_dir_all(&worktree)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(ScheduleError::Internal(format!(
                        "removing the stale worktree {}: {e}",
                        worktree.display()
                    )));
                }
                self.repo.worktree_prune()?;
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
                sent_back: Vec::new(),
                state: AttemptState::Working,
            });
            self.queue_round(index, None, None)?;
        }
        Ok(())
    }

    /// Queues the next worker round of attempt `i`.
    pub(super) fn queue_round(
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
        let budget = budget::remaining(&settings.budget, a.spent());
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
            repo: self.repo.common_dir().to_path_buf(),
            worktree: a.worktree.clone(),
            base: a.base.to_string(),
            attempt_ref: a.ref_name.clone(),
            resume_from: resume_from.or(a.head).map(|o| o.to_string()),
            first_iteration: a.next_iteration,
            contract: phase.contract.without_held_out(),
            held_out_checks: u32::try_from(phase.contract.held_out.len()).unwrap_or(u32::MAX),
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
            sandbox: SandboxSpec {
                package_cache: Some(self.layout.run_dir(&self.run_id).join("cache")),
                ..self.layout.sandbox(self.plan)
            },
        };
        let started = RunEvent::AttemptRoundStarted {
            phase: phase.id.value.clone(),
            attempt: a.n,
            agent: a.agent.clone(),
            round: a.rounds + 1,
            first_iteration: a.next_iteration,
            base: a.base.to_string(),
        };
        self.report(started)?;
        self.attempts[i].state = AttemptState::Working;
        let (phase_id, n) = self.key(i);
        self.store.set_attempt_base(
            &self.run_id,
            &phase_id,
            n,
            &self.attempts[i].base.to_string(),
        )?;
        // What the store says until the round's result is recorded, so `status` shows a
        // revised or resumed attempt at work rather than as its last audit left it.
        self.store
            .set_attempt_state(&self.run_id, &phase_id, n, AttemptStatus::Running)?;
        self.enqueue(
            Purpose::Worker { attempt: i },
            Job::Worker(Box::new(input)),
            false,
        );
        Ok(())
    }

    pub(super) fn worker_done(
        &mut self,
        i: usize,
        result: Result<WorkerResult, JobError>,
    ) -> Result<Vec<Step>, ScheduleError> {
        let (phase_id, n) = self.key(i);
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                // Killed or crashed: nothing the attempt decided; `resume` goes on from
                // its ref.
                self.interrupt(i, format!("the worker failed: {e}"))?;
                return Ok(Vec::new());
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
        let outcome = decide::whole_life(
            result.outcome.clone(),
            &self.plan.settings.budget,
            self.attempts[i].spent(),
        );
        let result = WorkerResult { outcome, ..result };
        let (state, outcome_text, next) = decide::after_round(&result.outcome);
        let candidate = match &result.outcome {
            AttemptOutcome::Candidate { commit, .. } => Some(commit.as_str()),
            _ => None,
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
            return Ok(Vec::new());
        }
        match (next, result.outcome) {
            (AfterRound::Audit, AttemptOutcome::Candidate { commit, claims }) => {
                let commit = Oid::from_str(&commit).map_err(|e| {
                    ScheduleError::Internal(format!("the worker named a bad commit: {e}"))
                })?;
                let a = &mut self.attempts[i];
                a.state = AttemptState::Auditing;
                a.claims = claims.clone();
                let base = a.base;
                let pi = a.phase;
                self.report(RunEvent::CandidateProposed {
                    phase: phase_id.clone(),
                    attempt: n,
                    candidate: commit.to_string(),
                })?;
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
                Ok(Vec::new())
            }
            (AfterRound::Fail { budget }, _) => Ok(vec![Step::Fail {
                attempt: i,
                why: outcome_text,
                budget,
            }]),
            (AfterRound::Interrupt | AfterRound::Audit, _) => {
                self.interrupt(i, outcome_text)?;
                Ok(Vec::new())
            }
        }
    }

    /// Marks attempt `i` as stopped short of an outcome; `resume` goes on with it.
    pub(super) fn interrupt(&mut self, i: usize, why: String) -> Result<(), ScheduleError> {
        let (phase_id, n) = self.key(i);
        self.attempts[i].state = AttemptState::Interrupted { why: why.clone() };
        self.store
            .set_attempt_state(&self.run_id, &phase_id, n, AttemptStatus::Interrupted)?;
        self.report(RunEvent::AttemptStopped {
            phase: phase_id,
            attempt: n,
            state: AttemptStatus::Interrupted,
            why,
        })
    }

    /// Attempt `i` stops for good; its phase's selection decides what that means.
    pub(super) fn fail(
        &mut self,
        i: usize,
        why: String,
        budget: bool,
    ) -> Result<Vec<Step>, ScheduleError> {
        let (phase_id, n) = self.key(i);
        let state = if budget {
            AttemptStatus::BudgetLimited
        } else {
            AttemptStatus::Blocked
        };
        let why = decide::explain_stop(why, &self.attempts[i].sent_back);
        self.store
            .set_attempt_state(&self.run_id, &phase_id, n, state)?;
        self.report(RunEvent::AttemptStopped {
            phase: phase_id,
            attempt: n,
            state,
            why: why.clone(),
        })?;
        self.attempts[i].state = AttemptState::Failed { why, budget };
        Ok(vec![Step::Select(self.attempts[i].phase)])
    }

    /// Every attempt of phase `pi` stopped and none passed.
    pub(super) fn block_phase(&mut self, pi: usize) -> Result<(), ScheduleError> {
        let phase_id = self.plan.phases[pi].id.value.clone();
        let (state, why) = decide::phase_blocked(pi, &self.attempts);
        self.phases[pi] = PhaseState::Blocked;
        self.store
            .set_phase_state(&self.run_id, &phase_id, state, Some(&why))?;
        self.report(RunEvent::PhaseStateChanged {
            phase: phase_id,
            state,
            why: Some(why),
        })
    }

    /// When some phase could not merge: the run's end, with every blocker; the phases that
    /// never started are recorded with what they wait on.
    pub(super) fn blocked_end(&mut self) -> Result<Option<RunEnd>, ScheduleError> {
        for pi in 0..self.phases.len() {
            if self.phases[pi] != PhaseState::Pending {
                continue;
            }
            let id = &self.plan.phases[pi].id.value;
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
        let ids: Vec<&str> = self
            .plan
            .phases
            .iter()
            .map(|p| p.id.value.as_str())
            .collect();
        Ok(decide::run_end(
            &ids,
            &self.phases,
            &self.attempts,
            self.run_budget_crossed.as_deref(),
        ))
    }
}
