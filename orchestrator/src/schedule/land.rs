//! Landing a phase's winner: the gate squashes it onto the integration tip, has a merged
//! tree that nobody audited audited first, and sends a conflicting attempt back for
//! another round on the new tip.

use std::collections::BTreeSet;

use goalpost_shared::contract::Contract;
use goalpost_shared::git::{GitError, Oid};
use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{AuditReport, Feedback};

use super::decide::{self, AfterTrainAudit, Route};
use super::{
    AttemptState, AuditPurpose, MAX_REF_MOVES, PhaseState, RunEvent, ScheduleError, Scheduler,
    Step, ask_to_stop, short,
};
use crate::crash;
use crate::gate::{self, RepoSquasher, TrainLanding};
use goalpost_state::AttemptStatus;
use goalpost_state::{AuditKind, TrainCar};

/// Trailers of a phase's squash commit: the integration history says which phases
/// merged, even when a crash came between the ref move and its record in the store.
pub const TRAILER_RUN: &str = "Goalpost-Run";
pub const TRAILER_PHASE: &str = "Goalpost-Phase";
pub const TRAILER_ATTEMPT: &str = "Goalpost-Attempt";

impl Scheduler<'_> {
    /// Sends attempt `i`'s audited candidate to the gate.
    pub(super) fn gate(&mut self, i: usize) -> Result<Vec<Step>, ScheduleError> {
        if self.attempts[i].audited.is_none() {
            return Err(ScheduleError::Internal(
                "gate without an audited candidate".into(),
            ));
        }
        self.attempts[i].state = AttemptState::Gating;
        if !self.train_waiting.contains(&i) {
            self.train_waiting.push(i);
        }
        Ok(vec![Step::DriveTrain])
    }

    /// Lands the next train of what waits at the gate (see [`gate`]): the candidates
    /// waiting (all of them, or one that must land alone) are squashed onto the
    /// integration tip one after the other; the ref moves at once when that gives one
    /// candidate's audited tree, otherwise the train's merge is audited first. Returns
    /// another [`Step::DriveTrain`] while more may land.
    pub(super) fn drive_train(&mut self) -> Result<Vec<Step>, ScheduleError> {
        if self.train_busy || self.train_waiting.is_empty() {
            return Ok(Vec::new());
        }
        let tip = self.integration_tip()?;
        let take = decide::next_train_len(&self.train_waiting, &self.solo);
        let batch: Vec<(usize, Oid)> = self
            .train_waiting
            .drain(..take)
            .filter_map(|i| Some((i, self.attempts[i].audited?.0)))
            .collect();
        let mut squasher = RepoSquasher {
            repo: self.repo,
            message: |i: usize, candidate: Oid| self.squash_message(i, candidate),
        };
        let train = gate::build_train(tip, &batch, &mut squasher)?;
        for (k, &i) in train.deferred.iter().enumerate() {
            self.train_waiting.insert(k, i);
        }
        let mut steps = Vec::new();
        for (i, candidate, paths) in train.conflicts.clone() {
            steps.extend(self.conflict(i, candidate, paths, tip)?);
        }
        match gate::landing(&train, |i| self.attempts[i].audited.map(|(_, t)| t)) {
            TrainLanding::Empty => {}
            TrainLanding::Now { attempt, commit } => {
                let (phase_id, n) = self.key(attempt);
                let label = format!("phase {phase_id} attempt {n}");
                match gate::land(self.repo, &self.integration_ref(), commit, tip, &label) {
                    Ok(()) => {
                        crash::point("integration moved");
                        self.ref_moves = 0;
                        self.merged(attempt, tip, commit)?;
                    }
                    Err(GitError::RefMoved { .. }) => self.ref_moved(&[attempt])?,
                    Err(e) => return Err(e.into()),
                }
                steps.push(Step::DriveTrain);
            }
            TrainLanding::AuditFirst { head } => {
                self.train_busy = true;
                let cars: Vec<(usize, Oid)> = train.cars.iter().map(|&(i, c, _)| (i, c)).collect();
                self.audit_train(tip, head, cars)?;
            }
        }
        Ok(steps)
    }

    /// The gate found the integration ref moved under it: `attempts` wait at the head of
    /// the queue for the next train on the new tip.
    fn ref_moved(&mut self, attempts: &[usize]) -> Result<(), ScheduleError> {
        self.ref_moves += 1;
        if self.ref_moves > MAX_REF_MOVES {
            return Err(ScheduleError::Internal(format!(
                "{} moved under the run {} times in a row; only goalpost's gate may move it",
                self.integration_ref(),
                self.ref_moves
            )));
        }
        for (k, &i) in attempts.iter().enumerate() {
            self.train_waiting.insert(k, i);
        }
        Ok(())
    }

    /// Queues the audit of a train's merge `head` on `tip`.
    fn audit_train(
        &mut self,
        tip: Oid,
        head: Oid,
        train: Vec<(usize, Oid)>,
    ) -> Result<(), ScheduleError> {
        let first = train[0].0;
        let (contract, claims, label) = if let [(i, _)] = train[..] {
            let (phase_id, n) = self.key(i);
            let a = &self.attempts[i];
            (
                self.plan.phases[a.phase].contract.clone(),
                a.claims.clone(),
                format!("{phase_id}.{n}-merge"),
            )
        } else {
            (self.train_contract(&train), Vec::new(), "train".to_owned())
        };
        let (phase, attempt) = self.key(first);
        let phases: Vec<String> = train.iter().map(|(i, _)| self.key(*i).0).collect();
        self.report(RunEvent::AuditStarted {
            purpose: if train.len() == 1 {
                AuditKind::Merge
            } else {
                AuditKind::Train
            },
            phase: Some(phase),
            attempt: Some(attempt),
            phases,
            base: tip.to_string(),
            candidate: head.to_string(),
        })?;
        self.queue_audit(
            AuditPurpose::Merge {
                attempt: first,
                merge_commit: head,
                old_tip: tip,
                train,
            },
            contract,
            &label,
            tip,
            head,
            claims,
            true,
        );
        Ok(())
    }

    /// The contract a train's merge is audited against: every check and held-out check of
    /// its phases, their protected paths, and no allowed or forbidden rules (each candidate's own audit
    /// judged its paths).
    fn train_contract(&self, train: &[(usize, Oid)]) -> Contract {
        let phases: Vec<&Contract> = train
            .iter()
            .map(|(i, _)| &self.plan.phases[self.attempts[*i].phase].contract)
            .collect();
        let mut contract = phases[0].clone();
        contract.boundaries.allowed.clear();
        contract.boundaries.forbidden.clear();
        let (mut checks, mut held_out, mut protected) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        contract.verification.clear();
        contract.held_out.clear();
        contract.boundaries.protected.clear();
        for c in phases {
            for check in &c.verification {
                if checks.insert(check.text.value.clone()) {
                    contract.verification.push(check.clone());
                }
            }
            for check in &c.held_out {
                if held_out.insert(check.text.value.clone()) {
                    contract.held_out.push(check.clone());
                }
            }
            for glob in &c.boundaries.protected {
                if protected.insert(glob.value.clone()) {
                    contract.boundaries.protected.push(glob.clone());
                }
            }
        }
        contract
    }

    /// A train's merge audit said merge: the ref moves to its last commit, and every
    /// phase in it is merged. Otherwise its candidates land alone, or, alone already,
    /// stop.
    pub(super) fn train_audited(
        &mut self,
        report: &AuditReport,
        merge_commit: Oid,
        old_tip: Oid,
        train: Vec<(usize, Oid)>,
    ) -> Result<Vec<Step>, ScheduleError> {
        let mut steps = Vec::new();
        match decide::after_train_audit(report.recommendation, train.len(), &report.summary) {
            AfterTrainAudit::Land => {
                let label = format!("{} phase(s) through the gate", train.len());
                match gate::land(
                    self.repo,
                    &self.integration_ref(),
                    merge_commit,
                    old_tip,
                    &label,
                ) {
                    Ok(()) => {
                        crash::point("integration moved");
                        self.ref_moves = 0;
                        let cars = train
                            .iter()
                            .map(|&(i, commit)| {
                                let (phase, attempt) = self.key(i);
                                TrainCar {
                                    phase,
                                    attempt,
                                    commit: commit.to_string(),
                                }
                            })
                            .collect();
                        self.report(RunEvent::TrainLanded {
                            cars,
                            old_tip: old_tip.to_string(),
                            new_tip: merge_commit.to_string(),
                        })?;
                        let mut previous = old_tip;
                        for (i, commit) in train {
                            self.merged(i, previous, commit)?;
                            previous = commit;
                        }
                    }
                    Err(GitError::RefMoved { .. }) => {
                        let attempts: Vec<usize> = train.iter().map(|&(i, _)| i).collect();
                        self.ref_moved(&attempts)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            AfterTrainAudit::EachAlone => {
                for (k, (i, _)) in train.into_iter().enumerate() {
                    self.solo.insert(i);
                    self.train_waiting.insert(k, i);
                }
            }
            AfterTrainAudit::Fail(why) => {
                if let Some(&(attempt, _)) = train.first() {
                    steps.push(Step::Fail {
                        attempt,
                        why,
                        budget: false,
                    });
                }
            }
        }
        steps.push(Step::DriveTrain);
        Ok(steps)
    }

    /// The message of the one commit a phase lands as.
    pub(super) fn squash_message(&self, i: usize, candidate: Oid) -> String {
        let a = &self.attempts[i];
        let phase = &self.plan.phases[a.phase];
        let title = if phase.title.is_empty() {
            phase.id.value.clone()
        } else {
            phase.title.clone()
        };
        format!(
            "{title}\n\nPhase `{}` of goalpost run {}, attempt {} ({}).\nAudit: {}\nAttempt ref: {} at {candidate}\n\n{TRAILER_RUN}: {}\n{TRAILER_PHASE}: {}\n{TRAILER_ATTEMPT}: {}\n",
            phase.id.value,
            self.run_id,
            a.n,
            a.agent,
            a.audit_summary,
            a.ref_name,
            self.run_id,
            phase.id.value,
            a.n
        )
    }

    /// Attempt `i`'s `candidate` conflicts with the integration tip `tip` in `paths`:
    /// another round on the tip, with the paths as feedback, or a stop.
    fn conflict(
        &mut self,
        i: usize,
        candidate: Oid,
        paths: Vec<String>,
        tip: Oid,
    ) -> Result<Vec<Step>, ScheduleError> {
        let (phase_id, n) = self.key(i);
        self.report(RunEvent::Conflict {
            phase: phase_id,
            attempt: n,
            paths: paths.clone(),
        })?;
        match decide::after_conflict(self.attempts[i].rounds, &short(tip), &paths) {
            Route::Fail(why) => Ok(vec![Step::Fail {
                attempt: i,
                why,
                budget: false,
            }]),
            Route::Again | Route::Pass => {
                self.attempts[i].base = tip;
                self.queue_round(
                    i,
                    Some(Feedback::Conflict {
                        paths,
                        previous_candidate: candidate.to_string(),
                    }),
                    Some(candidate),
                )?;
                Ok(Vec::new())
            }
        }
    }

    pub(super) fn merged(
        &mut self,
        i: usize,
        old_tip: Oid,
        new_tip: Oid,
    ) -> Result<(), ScheduleError> {
        let (phase_id, n) = self.key(i);
        let pi = self.attempts[i].phase;
        let audited = self.attempts[i].audited.map_or(new_tip, |(c, _)| c);
        self.store.record_merge(
            &self.run_id,
            Some(&phase_id),
            &self.integration_ref(),
            &old_tip.to_string(),
            &new_tip.to_string(),
            &audited.to_string(),
        )?;
        let why = match &self.plan.phases[pi].select.value {
            Selection::First => "first attempt to pass its audit".to_owned(),
            Selection::Best { metric } => match self.attempts[i].metric {
                Some(v) => format!("best {metric} = {v} among the passing attempts"),
                None => format!("best {metric} among the passing attempts"),
            },
            Selection::Review => "chosen by the reviewer".to_owned(),
        };
        let why = self.chosen_because[pi].clone().unwrap_or(why);
        self.store
            .set_phase_merged(&self.run_id, &phase_id, &new_tip.to_string(), n, &why)?;
        self.store
            .set_attempt_state(&self.run_id, &phase_id, n, AttemptStatus::Merged)?;
        self.attempts[i].state = AttemptState::Merged;
        self.phases[pi] = PhaseState::Merged;
        // The other attempts lose: a running worker stops at its next safe boundary (its
        // work so far is harvested on its ref), a queued one never starts.
        for a in self.attempts.iter_mut().filter(|a| a.phase == pi) {
            if matches!(
                a.state,
                AttemptState::Passed | AttemptState::Working | AttemptState::Auditing
            ) {
                if a.state == AttemptState::Working {
                    ask_to_stop(a, "another attempt won");
                }
                a.state = AttemptState::Lost;
                self.store.set_attempt_state(
                    &self.run_id,
                    &self.plan.phases[pi].id.value,
                    a.n,
                    AttemptStatus::Lost,
                )?;
            }
        }
        self.report(RunEvent::PhaseMerged {
            phase: phase_id,
            attempt: n,
            commit: new_tip.to_string(),
        })
    }
}
