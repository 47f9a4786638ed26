//! Choosing a phase's winner among its attempts: the first to pass its audit, the best
//! metric among those that passed, or the reviewer's choice, which can only fall on an
//! attempt that passed.

use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{CandidateView, SelectInput, SelectResult};

use super::{Attempt, AttemptState, Job, PhaseState, ScheduleError, Scheduler};
use crate::attempt::{self, WORKER_ENV_ALLOW};

impl Scheduler<'_> {
    /// Picks the phase's winner when its selection policy can, and sends it to the gate.
    pub(super) fn select(&mut self, pi: usize) -> Result<(), ScheduleError> {
        if self.phases[pi] != PhaseState::Running {
            return Ok(());
        }
        let mine: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| self.attempts[i].phase == pi)
            .collect();
        if mine
            .iter()
            .any(|&i| self.attempts[i].state == AttemptState::Gating)
        {
            return Ok(());
        }
        let passed: Vec<usize> = mine
            .iter()
            .copied()
            .filter(|&i| self.attempts[i].state == AttemptState::Passed)
            .collect();
        let all_settled = mine.iter().all(|&i| {
            matches!(
                self.attempts[i].state,
                AttemptState::Passed | AttemptState::Failed { .. }
            )
        });
        let phase = &self.plan.phases[pi];
        let winner = match &phase.select.value {
            Selection::First => passed.first().copied(),
            Selection::Best { metric } if all_settled => {
                let lower = phase
                    .contract
                    .verification
                    .iter()
                    .filter_map(|c| c.metric())
                    .find(|m| &m.name == metric)
                    .map(|m| m.op.lower_is_better())
                    .unwrap_or(true);
                best_of(&self.attempts, &passed, lower)
            }
            Selection::Review if all_settled && passed.len() > 1 => {
                return self.ask_reviewer(pi, &passed);
            }
            Selection::Review if all_settled => {
                self.chosen_because[pi] = Some("the only attempt that passed its audit".into());
                passed.first().copied()
            }
            _ => None,
        };
        match winner {
            Some(w) => {
                self.attempts[w].state = AttemptState::Gating;
                self.gate(w)
            }
            None if all_settled && passed.is_empty() => self.block_phase(pi),
            None => Ok(()),
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
            self.selecting.remove(&pi);
            self.chosen_because[pi] =
                Some("no reviewer agent to choose: the first attempt that passed".into());
            let first = passed[0];
            self.attempts[first].state = AttemptState::Gating;
            return self.gate(first);
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
            contract: phase.contract.clone(),
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
        };
        println!(
            "phase {}: {} attempts passed; the reviewer chooses",
            phase.id.value,
            passed.len()
        );
        self.queue.push_front(Job::Select {
            phase: pi,
            input: Box::new(input),
        });
        Ok(())
    }

    /// The reviewer named a winner; only an attempt that passed its audit can win.
    pub(super) fn selected(
        &mut self,
        pi: usize,
        result: Result<SelectResult, String>,
    ) -> Result<(), ScheduleError> {
        self.selecting.remove(&pi);
        let passed: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| self.attempts[i].phase == pi)
            .filter(|&i| self.attempts[i].state == AttemptState::Passed)
            .collect();
        let Some(&fallback) = passed.first() else {
            return Ok(());
        };
        // A selection turn that failed chooses nothing, whatever it printed before it
        // failed, as a reviewer turn that fails approves nothing.
        let result = result.and_then(|r| match &r.turn.error {
            Some(error) => Err(error.clone()),
            None => Ok(r),
        });
        let named = result.as_ref().ok().and_then(|r| r.winner);
        let pick = named.and_then(|n| passed.iter().copied().find(|&i| self.attempts[i].n == n));
        let why = match (&result, named, pick) {
            (Ok(r), Some(n), Some(_)) => {
                match r.notes.lines().map(str::trim).find(|l| !l.is_empty()) {
                    Some(note) => format!("the reviewer chose attempt {n}: {note}"),
                    None => format!("the reviewer chose attempt {n}"),
                }
            }
            (Ok(_), Some(n), None) => format!(
                "the reviewer named attempt {n}, which did not pass its audit; attempt {} is the first that did",
                self.attempts[fallback].n
            ),
            (Ok(_), None, _) => format!(
                "the reviewer named no winner; attempt {} is the first that passed",
                self.attempts[fallback].n
            ),
            (Err(e), _, _) => format!(
                "the reviewer's turn failed ({e}); attempt {} is the first that passed",
                self.attempts[fallback].n
            ),
        };
        let winner = pick.unwrap_or(fallback);
        println!("phase {}: {why}", self.plan.phases[pi].id.value);
        self.chosen_because[pi] = Some(why);
        self.attempts[winner].state = AttemptState::Gating;
        self.gate(winner)
    }
}

/// The best passing attempt: best metric in its direction, then the smaller diff, then the
/// lower cost, then the lower attempt number.
fn best_of(attempts: &[Attempt], passed: &[usize], lower_is_better: bool) -> Option<usize> {
    passed.iter().copied().min_by(|&a, &b| {
        let (x, y) = (&attempts[a], &attempts[b]);
        let metric = match (x.metric, y.metric) {
            (Some(p), Some(q)) if lower_is_better => p.total_cmp(&q),
            (Some(p), Some(q)) => q.total_cmp(&p),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        metric
            .then(x.diff_size.cmp(&y.diff_size))
            .then(x.usage.cost_usd.total_cmp(&y.usage.cost_usd))
            .then(x.n.cmp(&y.n))
    })
}
