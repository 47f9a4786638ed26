//! Landing a phase's winner: the gate squashes it onto the integration tip, has a merged
//! tree that nobody audited audited first, and sends a conflicting attempt back for
//! another round on the new tip.

use std::collections::BTreeSet;

use goalpost_shared::contract::Contract;
use goalpost_shared::git::{GitError, MergeOutcome, Oid};
use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{AuditReport, Feedback, Recommendation, STOP_FILE};
use goalpost_state::AttemptStatus;

use super::{AttemptState, AuditPurpose, MAX_ROUNDS, PhaseState, ScheduleError, Scheduler, short};
use crate::crash;
use crate::gate;

/// Trailers of a phase's squash commit: the integration history says which phases
/// merged, even when a crash came between the ref move and its record in the store.
pub const TRAILER_RUN: &str = "Goalpost-Run";
pub const TRAILER_PHASE: &str = "Goalpost-Phase";
pub const TRAILER_ATTEMPT: &str = "Goalpost-Attempt";

impl Scheduler<'_> {
    /// Sends attempt `i`'s audited candidate to the gate.
    pub(super) fn gate(&mut self, i: usize) -> Result<(), ScheduleError> {
        if self.attempts[i].audited.is_none() {
            return Err(ScheduleError::Internal(
                "gate without an audited candidate".into(),
            ));
        }
        self.attempts[i].state = AttemptState::Gating;
        if !self.train_waiting.contains(&i) {
            self.train_waiting.push(i);
        }
        self.drive_train()
    }

    /// Lands what waits at the gate, a train at a time. The candidates waiting (all of
    /// them, or one that must land alone) are squashed onto the integration tip one after
    /// the other; when the result is exactly one candidate's audited tree the ref moves at
    /// once, otherwise the train's last commit is audited first and the ref moves to it
    /// only if that audit passes. One train's audit runs at a time, so landing many phases
    /// costs one merge audit per train rather than one per phase redone each time another
    /// lands first.
    pub(super) fn drive_train(&mut self) -> Result<(), ScheduleError> {
        let mut tries = 0;
        while !self.train_busy && !self.train_waiting.is_empty() && tries < 16 {
            tries += 1;
            let tip = self.integration_tip()?;
            let take = if self.solo.contains(&self.train_waiting[0]) {
                1
            } else {
                self.train_waiting
                    .iter()
                    .take_while(|i| !self.solo.contains(i))
                    .count()
            };
            let batch: Vec<usize> = self.train_waiting.drain(..take).collect();
            let (train, deferred) = self.build_train(tip, batch)?;
            for (k, i) in deferred.into_iter().enumerate() {
                self.train_waiting.insert(k, i);
            }
            let (Some(&(first, _)), Some(&(_, head))) = (train.first(), train.last()) else {
                continue;
            };
            let exact = train.len() == 1
                && self.attempts[first].audited.map(|(_, t)| t) == Some(self.repo.tree_of(head)?);
            if exact {
                let (phase_id, n) = self.key(first);
                let label = format!("phase {phase_id} attempt {n}");
                match gate::land(self.repo, &self.integration_ref(), head, tip, &label) {
                    Ok(()) => {
                        crash::point("integration moved");
                        self.merged(first, tip, head)?;
                    }
                    Err(GitError::RefMoved { .. }) => self.train_waiting.insert(0, first),
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            self.train_busy = true;
            let (contract, claims, label) = if let [(i, _)] = train[..] {
                let (phase_id, n) = self.key(i);
                println!(
                    "phase {phase_id}: merged tree differs from the audited one; auditing merge {}",
                    short(head)
                );
                let a = &self.attempts[i];
                (
                    self.plan.phases[a.phase].contract.clone(),
                    a.claims.clone(),
                    format!("{phase_id}.{n}-merge"),
                )
            } else {
                let names: Vec<String> = train.iter().map(|(i, _)| self.key(*i).0).collect();
                println!(
                    "gate: {} candidates land together ({}); auditing their merge {}",
                    train.len(),
                    names.join(", "),
                    short(head)
                );
                (self.train_contract(&train), Vec::new(), "train".to_owned())
            };
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
        }
        Ok(())
    }

    /// Squashes each of `batch` onto the one before it, starting at `tip`: the train, and
    /// the attempts left for the next one (they conflict with the candidates ahead of them,
    /// not with the tip). One that conflicts with the tip itself goes back to its worker.
    #[allow(clippy::type_complexity)]
    fn build_train(
        &mut self,
        tip: Oid,
        batch: Vec<usize>,
    ) -> Result<(Vec<(usize, Oid)>, Vec<usize>), ScheduleError> {
        let mut at = tip;
        let (mut train, mut deferred) = (Vec::new(), Vec::new());
        for i in batch {
            let Some((candidate, _)) = self.attempts[i].audited else {
                continue;
            };
            let tree = if self.repo.is_ancestor(at, candidate)? {
                self.repo.tree_of(candidate)?
            } else {
                match self.repo.merge_in_memory(at, candidate)? {
                    MergeOutcome::Clean { tree } => tree,
                    MergeOutcome::Conflict { paths } if at == tip => {
                        self.conflict(i, candidate, paths, tip)?;
                        continue;
                    }
                    MergeOutcome::Conflict { .. } => {
                        deferred.push(i);
                        continue;
                    }
                }
            };
            let message = self.squash_message(i, candidate);
            at = self.repo.create_commit(tree, &[at], &message, None)?;
            train.push((i, at));
        }
        Ok((train, deferred))
    }

    /// The contract a train's merge is audited against: every check of its phases, their
    /// protected paths, and no allowed or forbidden rules (each candidate's own audit
    /// judged its paths).
    fn train_contract(&self, train: &[(usize, Oid)]) -> Contract {
        let phases: Vec<&Contract> = train
            .iter()
            .map(|(i, _)| &self.plan.phases[self.attempts[*i].phase].contract)
            .collect();
        let mut contract = phases[0].clone();
        contract.boundaries.allowed.clear();
        contract.boundaries.forbidden.clear();
        let (mut checks, mut protected) = (BTreeSet::new(), BTreeSet::new());
        contract.verification.clear();
        contract.boundaries.protected.clear();
        for c in phases {
            for check in &c.verification {
                if checks.insert(check.text.value.clone()) {
                    contract.verification.push(check.clone());
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
    ) -> Result<(), ScheduleError> {
        if report.recommendation == Recommendation::Merge {
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
                    let mut previous = old_tip;
                    for (i, commit) in train {
                        self.merged(i, previous, commit)?;
                        previous = commit;
                    }
                }
                Err(GitError::RefMoved { .. }) => {
                    for (k, (i, _)) in train.into_iter().enumerate() {
                        self.train_waiting.insert(k, i);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        } else if train.len() > 1 {
            // Which of them the merge fails for is not known: each lands on its own.
            for (k, (i, _)) in train.into_iter().enumerate() {
                self.solo.insert(i);
                self.train_waiting.insert(k, i);
            }
        } else if let Some(&(i, _)) = train.first() {
            self.fail(
                i,
                format!(
                    "its merge with the integration tip fails the audit: {}",
                    report.summary
                ),
                false,
            )?;
        }
        self.drive_train()
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

    pub(super) fn conflict(
        &mut self,
        i: usize,
        candidate: Oid,
        paths: Vec<String>,
        tip: Oid,
    ) -> Result<(), ScheduleError> {
        let (phase_id, n) = self.key(i);
        println!(
            "phase {phase_id}: attempt {n} conflicts with the integration tip in {}",
            paths.join(", ")
        );
        if self.attempts[i].rounds >= MAX_ROUNDS {
            return self.fail(
                i,
                format!(
                    "conflicts with the integration tip {} in: {}",
                    short(tip),
                    paths.join(", ")
                ),
                false,
            );
        }
        self.attempts[i].base = tip;
        self.queue_round(
            i,
            Some(Feedback::Conflict {
                paths,
                previous_candidate: candidate.to_string(),
            }),
            Some(candidate),
        )
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
                    let _ = std::fs::create_dir_all(&a.dir);
                    let _ = std::fs::write(a.dir.join(STOP_FILE), "another attempt won\n");
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
        println!("phase {phase_id}: merged attempt {n} at {}", short(new_tip));
        Ok(())
    }
}
