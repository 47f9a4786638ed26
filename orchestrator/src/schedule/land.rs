//! Landing a phase's winner: the gate squashes it onto the integration tip, has a merged
//! tree that nobody audited audited first, and sends a conflicting attempt back for
//! another round on the new tip.

use goalpost_shared::git::{GitError, Oid};
use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{Feedback, STOP_FILE};

use super::{AttemptState, AuditPurpose, MAX_ROUNDS, PhaseState, ScheduleError, Scheduler, short};
use crate::crash;
use crate::gate::{self, GateStep};

/// Trailers of a phase's squash commit: the integration history says which phases
/// merged, even when a crash came between the ref move and its record in the store.
pub const TRAILER_RUN: &str = "Goalpost-Run";
pub const TRAILER_PHASE: &str = "Goalpost-Phase";
pub const TRAILER_ATTEMPT: &str = "Goalpost-Attempt";

impl Scheduler<'_> {
    pub(super) fn gate(&mut self, i: usize) -> Result<(), ScheduleError> {
        let Some((candidate, tree)) = self.attempts[i].audited else {
            return Err(ScheduleError::Internal(
                "gate without an audited candidate".into(),
            ));
        };
        let (phase_id, n) = self.key(i);
        let message = self.squash_message(i, candidate);
        self.attempts[i].state = AttemptState::Gating;
        let mut tries = 0;
        loop {
            tries += 1;
            let step = gate::integrate(
                self.repo,
                &self.integration_ref(),
                candidate,
                tree,
                gate::Landing::Squash(&message),
            );
            return match step {
                Ok(GateStep::Moved { old_tip, new_tip }) => {
                    crash::point("integration moved");
                    self.merged(i, old_tip, new_tip)
                }
                Ok(GateStep::NeedsAudit {
                    merge_commit,
                    old_tip,
                }) => {
                    println!(
                        "phase {phase_id}: merged tree differs from the audited one; auditing merge {}",
                        short(merge_commit)
                    );
                    let contract = self.plan.phases[self.attempts[i].phase].contract.clone();
                    let claims = self.attempts[i].claims.clone();
                    self.queue_audit(
                        AuditPurpose::Merge {
                            attempt: i,
                            merge_commit,
                            old_tip,
                        },
                        contract,
                        &format!("{phase_id}.{n}-merge"),
                        old_tip,
                        merge_commit,
                        claims,
                        true,
                    );
                    Ok(())
                }
                Ok(GateStep::Conflict { paths, tip }) => self.conflict(i, candidate, paths, tip),
                Err(GitError::RefMoved { .. }) if tries < 3 => continue,
                Err(e) => Err(e.into()),
            };
        }
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
            .set_attempt_state(&self.run_id, &phase_id, n, "merged")?;
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
                let _ = self.store.set_attempt_state(
                    &self.run_id,
                    &self.plan.phases[pi].id.value,
                    a.n,
                    "lost",
                );
            }
        }
        println!("phase {phase_id}: merged attempt {n} at {}", short(new_tip));
        Ok(())
    }
}
