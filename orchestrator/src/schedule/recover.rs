//! Picking a run up again after a pause, a budget stop or a crash. The store says what
//! each attempt was doing; the refs say what is true: which phases the integration ref
//! holds (from the trailers of their squash commits), and where each attempt's work is.
//! Every effect the run loop performs is idempotent, so going on from here converges to
//! the result an uninterrupted run would have had.

use std::collections::BTreeMap;

use goalpost_shared::budget::{self, Spent};
use goalpost_shared::git::Oid;
use goalpost_shared::protocol::STOP_FILE;

use super::decide::{self, Restore};
use super::land::{TRAILER_ATTEMPT, TRAILER_PHASE, TRAILER_RUN};
use super::{Attempt, AttemptState, AuditPurpose, PhaseState, ScheduleError, Scheduler, Step};
use goalpost_state::{AttemptRow, AttemptStatus, PhaseStatus};

impl Scheduler<'_> {
    /// Rebuilds the run's state from the store and the refs, and queues what is left.
    pub fn restore(&mut self) -> Result<(), ScheduleError> {
        self.resumed = true;
        self.remove_stale_audit_worktrees();
        self.remove_stop_files();
        self.audits_started = count_dirs(&self.layout.run_dir(&self.run_id).join("audits"));
        for row in self.store.audits(&self.run_id)? {
            if let Some(usage) = &row.agent_usage {
                self.audit_spent.add(usage);
            }
        }
        let merged = self.merged_on_integration()?;
        let phase_rows = self.store.phases(&self.run_id)?;
        let attempt_rows = self.store.attempts(&self.run_id)?;
        for pi in 0..self.plan.phases.len() {
            let id = self.plan.phases[pi].id.value.clone();
            if let Some((commit, n)) = merged.get(&id) {
                self.phases[pi] = PhaseState::Merged;
                let recorded = phase_rows
                    .iter()
                    .any(|p| p.phase_id == id && p.state == PhaseStatus::Merged);
                if !recorded {
                    self.store.set_phase_merged(
                        &self.run_id,
                        &id,
                        &commit.to_string(),
                        *n,
                        "merged before the run was interrupted",
                    )?;
                }
                // Nothing of theirs runs again, but their worktrees go at the end like
                // any other and what they used counts against the run budget.
                for row in attempt_rows.iter().filter(|a| a.phase_id == id) {
                    let i = self.push_attempt(pi, row)?;
                    self.attempts[i].state = if row.n == *n {
                        if row.state != AttemptStatus::Merged {
                            self.store.set_attempt_state(
                                &self.run_id,
                                &id,
                                row.n,
                                AttemptStatus::Merged,
                            )?;
                        }
                        AttemptState::Merged
                    } else {
                        AttemptState::Lost
                    };
                }
                continue;
            }
            let started = phase_rows
                .iter()
                .any(|p| p.phase_id == id && p.state != PhaseStatus::Pending);
            let rows: Vec<&AttemptRow> = attempt_rows.iter().filter(|a| a.phase_id == id).collect();
            if !started || rows.is_empty() {
                // Never got as far as an attempt: it starts afresh when ready.
                self.store
                    .set_phase_state(&self.run_id, &id, PhaseStatus::Pending, None)?;
                continue;
            }
            self.phases[pi] = PhaseState::Running;
            self.store
                .set_phase_state(&self.run_id, &id, PhaseStatus::Running, None)?;
            for row in rows {
                self.restore_attempt(pi, row)?;
            }
        }
        for pi in 0..self.plan.phases.len() {
            if self.phases[pi] == PhaseState::Running {
                self.steps.push_back(Step::Select(pi));
            }
        }
        Ok(())
    }

    fn restore_attempt(&mut self, pi: usize, row: &AttemptRow) -> Result<(), ScheduleError> {
        let id = self.plan.phases[pi].id.value.clone();
        let i = self.push_attempt(pi, row)?;
        let (base, head) = (self.attempts[i].base, self.attempts[i].head);
        let passing = self.store.last_passing_audit(&self.run_id, &id, row.n)?;
        let audited = passing.as_ref().and_then(|(candidate, tree, _)| {
            Some((Oid::from_str(candidate).ok()?, Oid::from_str(tree).ok()?))
        });
        let spent = Spent {
            usage: &row.usage,
            iterations: Some(row.iterations),
            elapsed: None,
        };
        let budget_left = budget::crossed(&self.plan.settings.budget, spent).is_none();
        let audited_is_head = audited.is_some_and(|(c, _)| Some(c) == head);
        let candidate = row.candidate.as_deref().and_then(|c| Oid::from_str(c).ok());
        let candidate_is_head = candidate.is_some() && candidate == head;
        match decide::restore(row.state, budget_left, audited_is_head, candidate_is_head) {
            Restore::Lost => self.attempts[i].state = AttemptState::Lost,
            Restore::Failed { budget } => {
                let default = if budget { "budget reached" } else { "blocked" };
                self.attempts[i].state = AttemptState::Failed {
                    why: row.outcome.clone().unwrap_or_else(|| default.into()),
                    budget,
                }
            }
            Restore::Passed => {
                let a = &mut self.attempts[i];
                a.audited = audited;
                a.audit_summary = passing.map(|(_, _, s)| s).unwrap_or_default();
                a.state = AttemptState::Passed;
            }
            Restore::Audit => {
                let candidate = candidate
                    .ok_or_else(|| ScheduleError::Internal("a bad candidate id".into()))?;
                self.attempts[i].state = AttemptState::Auditing;
                let contract = self.plan.phases[pi].contract.clone();
                self.queue_audit(
                    AuditPurpose::Candidate { attempt: i },
                    contract,
                    &format!("{id}.{}", row.n),
                    base,
                    candidate,
                    Vec::new(),
                    false,
                );
            }
            Restore::Round => {
                self.ensure_worktree(i)?;
                self.queue_round(i, None, head)?;
            }
        }
        Ok(())
    }

    /// Attempt `row` of phase `pi` as the store and its ref say it stands, doing nothing
    /// yet; returns its index.
    fn push_attempt(&mut self, pi: usize, row: &AttemptRow) -> Result<usize, ScheduleError> {
        let id = self.plan.phases[pi].id.value.clone();
        let phase_base = self
            .store
            .phases(&self.run_id)?
            .into_iter()
            .find(|p| p.phase_id == id)
            .and_then(|p| p.base);
        let base = row
            .base
            .as_deref()
            .or(phase_base.as_deref())
            .and_then(|b| Oid::from_str(b).ok())
            .map_or_else(|| self.integration_tip(), Ok)?;
        let head = self.repo.ref_target(&row.ref_name)?;
        self.attempts.push(Attempt {
            phase: pi,
            n: row.n,
            agent: row.agent.clone(),
            worktree: self.layout.attempt_worktree(&self.run_id, &id, row.n),
            dir: self.layout.attempt_dir(&self.run_id, &id, row.n),
            ref_name: row.ref_name.clone(),
            base,
            head,
            rounds: row.rounds,
            next_iteration: row.iterations + 1,
            usage: row.usage.clone(),
            claims: Vec::new(),
            metric: row.metric,
            diff_size: row.diff_lines.unwrap_or(0).max(0) as usize,
            audited: None,
            audit_summary: String::new(),
            evidence: Vec::new(),
            sent_back: Vec::new(),
            state: AttemptState::Working,
        });
        Ok(self.attempts.len() - 1)
    }

    /// The attempt's worktree, made again at its work if it is gone.
    fn ensure_worktree(&mut self, i: usize) -> Result<(), ScheduleError> {
        let a = &self.attempts[i];
        if a.worktree.join(".git").exists() {
            return Ok(());
        }
        let _ = self.repo.worktree_prune();
        if let Some(parent) = a.worktree.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                ScheduleError::Internal(format!("creating {}: {e}", parent.display()))
            })?;
        }
        self.pool()
            .checkout(&a.worktree, a.head.unwrap_or(a.base))?;
        self.adopt_index(i)?;
        Ok(())
    }

    /// Phases the integration ref holds, by the trailers of its first-parent history back
    /// to where the run started: phase id → (squash commit, attempt).
    fn merged_on_integration(&self) -> Result<BTreeMap<String, (Oid, u32)>, ScheduleError> {
        let mut merged = BTreeMap::new();
        let mut at = Some(self.integration_tip()?);
        let repo = self.repo.git2();
        while let Some(oid) = at.filter(|o| *o != self.release_start) {
            let commit = repo
                .find_commit(oid)
                .map_err(|e| ScheduleError::Internal(format!("reading {oid}: {e}")))?;
            let message = commit.message().unwrap_or_default();
            let trailer = |key: &str| {
                message
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
                    .map(str::trim)
            };
            if trailer(TRAILER_RUN) == Some(self.run_id.as_str())
                && let Some(phase) = trailer(TRAILER_PHASE)
            {
                let n = trailer(TRAILER_ATTEMPT)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                merged.entry(phase.to_owned()).or_insert((oid, n));
            }
            at = commit.parent_id(0).ok();
        }
        Ok(merged)
    }

    /// The stop files a pause left were for the run that stopped: a round started now
    /// would stop before its first turn.
    fn remove_stop_files(&self) {
        let dir = self.layout.run_dir(&self.run_id).join("attempts");
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path().join(STOP_FILE));
            }
        }
    }

    /// Audit worktrees of an auditor that did not finish: never anyone's work.
    fn remove_stale_audit_worktrees(&self) {
        let root = self.layout.worktree_root.join(&self.run_id);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("audit-") {
                let path = entry.path();
                if self.repo.worktree_remove(&path, true).is_err() {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        let _ = self.repo.worktree_prune();
    }
}

fn count_dirs(dir: &std::path::Path) -> u32 {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().count() as u32)
        .unwrap_or(0)
}
