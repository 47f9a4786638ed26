//! Choosing a phase's winner among its attempts: the first to pass its audit, the best
//! metric among those that passed, or the reviewer's choice, which can only fall on an
//! attempt that passed.

use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{CandidateView, SelectInput, SelectResult};

use super::decide::{self, Choice, Policy};
use super::{AttemptState, Purpose, RunEvent, ScheduleError, Scheduler, Step};
use crate::attempt::{self, WORKER_ENV_ALLOW};
use crate::executor::{Job, JobError};

impl Scheduler<'_> {
    /// Applies phase `pi`'s selection policy ([`decide::choose`]): a winner goes to the
    /// gate, several under `Select: review` go to the reviewer, none at all blocks it.
    pub(super) fn select(&mut self, pi: usize) -> Result<Vec<Step>, ScheduleError> {
        let phase = &self.plan.phases[pi];
        let lower_is_better = match &phase.select.value {
            Selection::Best { metric } => phase
                .contract
                .verification
                .iter()
                .filter_map(|c| c.metric())
                .find(|m| &m.name == metric)
                .map(|m| m.op.lower_is_better())
                .unwrap_or(true),
            _ => true,
        };
        let settings = &self.plan.settings;
        let policy = Policy {
            select: &phase.select.value,
            lower_is_better,
            has_reviewer: settings
                .roles
                .reviewer
                .as_ref()
                .is_some_and(|r| settings.agents.contains_key(&r.value)),
        };
        let choice = decide::choose(
            policy,
            self.phases[pi],
            pi,
            &self.attempts,
            self.selecting.contains(&pi),
        );
        match choice {
            Choice::Wait => Ok(Vec::new()),
            Choice::Gate { winner, because } => {
                if because.is_some() {
                    self.chosen_because[pi] = because;
                }
                self.gate(winner)
            }
            Choice::AskReviewer(passed) => {
                self.ask_reviewer(pi, &passed)?;
                Ok(Vec::new())
            }
            Choice::Block => {
                self.block_phase(pi)?;
                Ok(Vec::new())
            }
        }
    }

    /// `Select: review` with several audited candidates: a reviewer turn compares them.
    fn ask_reviewer(&mut self, pi: usize, passed: &[usize]) -> Result<(), ScheduleError> {
        if !self.selecting.insert(pi) {
            return Ok(());
        }
        let phase = &self.plan.phases[pi];
        let settings = &self.plan.settings;
        let Some(reviewer) = settings
            .roles
            .reviewer
            .as_ref()
            .and_then(|r| settings.agents.get(&r.value))
        else {
            // `decide::choose` asks only when there is one.
            self.selecting.remove(&pi);
            return Ok(());
        };
        let mut candidates = Vec::new();
        for &i in passed {
            let a = &self.attempts[i];
            let Some((commit, _)) = a.audited else {
                continue;
            };
            let diff = self
                .repo
                .diff_text(a.base, commit, 64 * 1024)
                .unwrap_or_else(|e| format!("(no diff: {e})"));
            candidates.push(CandidateView {
                attempt: a.n,
                agent: a.agent.clone(),
                commit: commit.to_string(),
                diff,
                audit_summary: a.audit_summary.clone(),
                evidence: a.evidence.clone(),
                metric: a.metric,
            });
        }
        let input = SelectInput {
            run_id: self.run_id.clone(),
            phase: phase.id.value.clone(),
            phase_title: phase.title.clone(),
            contract: phase.contract.without_held_out(),
            reviewer: attempt::agent_spec(reviewer, &settings.prices),
            candidates,
            private_dir: self
                .layout
                .run_dir(&self.run_id)
                .join("select")
                .join(&phase.id.value),
            env_allow: WORKER_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect(),
            timeout_secs: settings
                .budget
                .wall
                .as_ref()
                .map_or(30 * 60, |w| w.value.duration.as_secs().max(1)),
            unconfined: self.unconfined,
            sandbox: self.layout.sandbox(self.plan),
        };
        let choosing = RunEvent::ReviewerChoosing {
            phase: phase.id.value.clone(),
            attempts: passed.iter().map(|&i| self.attempts[i].n).collect(),
        };
        self.report(choosing)?;
        self.enqueue(
            Purpose::Select { phase: pi },
            Job::Select(Box::new(input)),
            true,
        );
        Ok(())
    }

    /// The reviewer named a winner; only an attempt that passed its audit can win.
    pub(super) fn selected(
        &mut self,
        pi: usize,
        result: Result<SelectResult, JobError>,
    ) -> Result<Vec<Step>, ScheduleError> {
        self.selecting.remove(&pi);
        let passed: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| self.attempts[i].phase == pi)
            .filter(|&i| self.attempts[i].state == AttemptState::Passed)
            .collect();
        // A selection turn that failed chooses nothing, whatever it printed before it
        // failed, as a reviewer turn that fails approves nothing.
        let failed = match &result {
            Err(e) => Some(e.to_string()),
            Ok(r) => r.turn.error.clone(),
        };
        let said = match (&failed, &result) {
            (Some(e), _) => Err(e.as_str()),
            (None, Ok(r)) => Ok((r.winner, r.notes.as_str())),
            (None, Err(_)) => Err("no result"),
        };
        let Some((winner, why)) = decide::reviewed(&self.attempts, &passed, said) else {
            return Ok(Vec::new());
        };
        self.report(RunEvent::WinnerChosen {
            phase: self.plan.phases[pi].id.value.clone(),
            attempt: self.attempts[winner].n,
            why: why.clone(),
        })?;
        self.chosen_because[pi] = Some(why);
        self.attempts[winner].state = AttemptState::Gating;
        self.gate(winner)
    }
}
