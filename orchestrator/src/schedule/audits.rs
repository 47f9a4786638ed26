//! Audits in the run loop: what each audit is given (the contract, the two commits, the
//! claims, and any evidence the verification cache already holds), and what its report
//! makes of the attempt: the gate, another round with the report as feedback, or a stop.

use std::path::PathBuf;

use goalpost_shared::contract::Contract;
use goalpost_shared::git::Oid;
use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{
    AUDIT_REUSE_FILE, AuditInput, AuditReport, AuditReuse, Feedback, Recommendation,
};
use goalpost_state::AttemptStatus;

use super::{AttemptState, AuditPurpose, Job, MAX_ROUNDS, ScheduleError, Scheduler, oid};
use crate::audit::DEFAULT_CHECK_TIMEOUT_SECS;
use crate::worktree;

impl Scheduler<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue_audit(
        &mut self,
        purpose: AuditPurpose,
        contract: Contract,
        label: &str,
        base: Oid,
        candidate: Oid,
        claims: Vec<String>,
        front: bool,
    ) {
        let phase = match &purpose {
            AuditPurpose::Candidate { attempt } | AuditPurpose::Merge { attempt, .. } => {
                self.plan.phases[self.attempts[*attempt].phase]
                    .id
                    .value
                    .clone()
            }
        };
        let input = self.audit_input(&phase, contract, label, base, candidate, claims);
        let job = Job::Audit {
            purpose,
            input: Box::new(input),
        };
        if front {
            self.queue.push_front(job);
        } else {
            self.queue.push_back(job);
        }
    }

    pub(super) fn audit_input(
        &mut self,
        phase: &str,
        contract: Contract,
        label: &str,
        base: Oid,
        candidate: Oid,
        claims: Vec<String>,
    ) -> AuditInput {
        self.audits_started += 1;
        let k = self.audits_started;
        AuditInput {
            run_id: self.run_id.clone(),
            phase: phase.to_owned(),
            repo: self.workdir.clone(),
            worktree: self.layout.audit_worktree(&self.run_id, label, k),
            base: base.to_string(),
            candidate: candidate.to_string(),
            contract,
            always_protected: self.always_protected.clone(),
            claims,
            report_dir: self.layout.audit_dir(&self.run_id, label, k),
            check_timeout_secs: self
                .plan
                .settings
                .budget
                .wall
                .as_ref()
                .map(|w| w.value.duration.as_secs().max(1))
                .unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS),
            unconfined: self.unconfined,
        }
    }

    pub(super) fn audit_done(
        &mut self,
        purpose: AuditPurpose,
        result: Result<AuditReport, String>,
        dir: PathBuf,
    ) -> Result<(), ScheduleError> {
        let i = match &purpose {
            AuditPurpose::Candidate { attempt } | AuditPurpose::Merge { attempt, .. } => *attempt,
        };
        let (phase_id, n) = self.key(i);
        if let AuditPurpose::Merge { train, .. } = &purpose {
            self.train_busy = false;
            if let Err(e) = &result {
                for &(a, _) in train {
                    self.interrupt(a, format!("the audit of its merge could not run: {e}"))?;
                }
                return self.drive_train();
            }
        }
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                return self.interrupt(i, format!("the audit could not run: {e}"));
            }
        };
        let commands: Vec<_> = report.checks.iter().map(|c| c.record.clone()).collect();
        self.store
            .record_audit(&self.run_id, Some(n), &report, &dir, &commands)?;
        self.remember_checks(&report, &dir);
        println!(
            "phase {phase_id}: attempt {n} audit says {}: {} (report: {}/audit.md)",
            report.recommendation.as_str(),
            report.summary,
            dir.display()
        );
        if self.attempts[i].state == AttemptState::Lost {
            return Ok(());
        }
        match purpose {
            AuditPurpose::Candidate { .. } => self.candidate_audited(i, report, &dir),
            AuditPurpose::Merge {
                merge_commit,
                old_tip,
                train,
                ..
            } => self.train_audited(&report, merge_commit, old_tip, train),
        }
    }

    pub(super) fn candidate_audited(
        &mut self,
        i: usize,
        report: AuditReport,
        dir: &std::path::Path,
    ) -> Result<(), ScheduleError> {
        let pi = self.attempts[i].phase;
        match report.recommendation {
            Recommendation::Merge => {
                let candidate = oid(&report.candidate)?;
                let tree = oid(&report.tree)?;
                let select = self.plan.phases[pi].select.value.clone();
                let a = &mut self.attempts[i];
                a.diff_size = report.changed_paths.len();
                if let Selection::Best { metric } = &select {
                    a.metric = report
                        .checks
                        .iter()
                        .filter_map(|c| c.metric.as_ref())
                        .find(|m| &m.name == metric)
                        .and_then(|m| m.value);
                }
                a.audited = Some((candidate, tree));
                a.audit_summary = report.summary.clone();
                a.evidence = report
                    .checks
                    .iter()
                    .map(|c| {
                        let metric = c
                            .metric
                            .as_ref()
                            .and_then(|m| m.value.map(|v| format!(", {} = {v}", m.name)))
                            .unwrap_or_default();
                        let result = if c.passed { "passed" } else { "failed" };
                        format!("`{}` {result}{metric}", c.command)
                    })
                    .collect();
                a.state = AttemptState::Passed;
                let (phase_id, n) = self.key(i);
                let a = &self.attempts[i];
                self.store.set_attempt_metric(
                    &self.run_id,
                    &phase_id,
                    n,
                    a.metric,
                    a.diff_size as i64,
                )?;
                self.store
                    .set_attempt_state(&self.run_id, &phase_id, n, AttemptStatus::Passed)?;
                self.select(pi)
            }
            Recommendation::Revise if self.attempts[i].rounds < MAX_ROUNDS => {
                let md = std::fs::read_to_string(dir.join("audit.md"))
                    .unwrap_or_else(|_| report.summary.clone());
                self.queue_round(
                    i,
                    Some(Feedback::Audit {
                        report_markdown: md,
                    }),
                    None,
                )
            }
            Recommendation::Revise => self.fail(
                i,
                format!(
                    "the audit still asks for revisions after {MAX_ROUNDS} rounds: {}",
                    report.summary
                ),
                false,
            ),
            Recommendation::Abandon => self.fail(
                i,
                format!("the audit says abandon: {}", report.summary),
                false,
            ),
        }
    }

    /// Offers an audit that is starting the evidence already recorded for its
    /// candidate's tree, and the auditors' worktree pool. Without the offer the audit runs
    /// every check in a fresh worktree, so a failure here costs time, never truth.
    pub(super) fn offer_reuse(&self, input: &AuditInput) {
        let report_dir = &input.report_dir;
        let tree = Oid::from_str(&input.candidate)
            .ok()
            .and_then(|candidate| self.repo.tree_of(candidate).ok());
        let cached_checks = match tree {
            Some(tree) => self
                .store
                .cached_checks(&tree.to_string())
                .unwrap_or_else(|err| {
                    // Not propagated: without the cache the audit runs every check itself.
                    tracing::warn!("could not read the cached evidence of {tree}: {err}");
                    Vec::new()
                }),
            None => Vec::new(),
        };
        let reuse = AuditReuse {
            cached_checks,
            pool: Some(worktree::audit_pool(
                self.layout,
                &self.run_id,
                self.max_parallel(),
            )),
        };
        let written = std::fs::create_dir_all(report_dir).and_then(|()| {
            let json = serde_json::to_vec(&reuse).map_err(std::io::Error::other)?;
            std::fs::write(report_dir.join(AUDIT_REUSE_FILE), json)
        });
        if let Err(err) = written {
            tracing::warn!("could not offer cached evidence to the audit: {err}");
        }
    }

    /// Records the checks an audit ran and passed in the verification cache.
    fn remember_checks(&self, report: &AuditReport, dir: &std::path::Path) {
        for note in report.cache.iter().filter(|n| n.reused_from.is_none()) {
            let Some(check) = report.checks.get(note.check) else {
                continue;
            };
            if check.passed
                && let Err(err) = self.store.record_cached_check(
                    &note.key,
                    &report.tree,
                    check,
                    &dir.display().to_string(),
                )
            {
                tracing::warn!("could not cache the evidence of `{}`: {err}", check.command);
            }
        }
    }
}
