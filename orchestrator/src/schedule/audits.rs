//! Audits in the run loop: what each audit is given (the contract, the two commits, the
//! claims, and any evidence the verification cache already holds), and what its report
//! makes of the attempt: the gate, another round with the report as feedback, or a stop.

use std::path::PathBuf;

use goalpost_shared::contract::Contract;
use goalpost_shared::git::Oid;
use goalpost_shared::plan::Selection;
use goalpost_shared::protocol::{
    AUDIT_REUSE_FILE, AuditInput, AuditReport, AuditReuse, FEEDBACK_FILE, Feedback, Recommendation,
};

use super::decide::{self, Route};
use super::{
    AttemptState, AuditPurpose, Purpose, RunEvent, ScheduleError, Scheduler, SentBack, Step, oid,
};
use crate::audit::{AuditOf, AuditSetup};
use crate::executor::{Job, JobError};
use crate::worktree;
use goalpost_state::AttemptStatus;

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
        let dir = input.report_dir.clone();
        self.enqueue(
            Purpose::Audit { purpose, dir },
            Job::Audit(Box::new(input)),
            front,
        );
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
        let setup = AuditSetup::new(
            &self.run_id,
            self.layout,
            &self.workdir,
            self.plan,
            self.always_protected.clone(),
            self.unconfined,
        )
        .with_run_audit_spent(self.plan, &self.audit_spent);
        setup.input(AuditOf {
            phase: phase.to_owned(),
            contract,
            base,
            candidate,
            claims,
            worktree: self.layout.audit_worktree(&self.run_id, label, k),
            report_dir: self.layout.audit_dir(&self.run_id, label, k),
        })
    }

    pub(super) fn audit_done(
        &mut self,
        purpose: AuditPurpose,
        result: Result<AuditReport, JobError>,
        dir: PathBuf,
    ) -> Result<Vec<Step>, ScheduleError> {
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
                return Ok(vec![Step::DriveTrain]);
            }
        }
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                self.interrupt(i, format!("the audit could not run: {e}"))?;
                return Ok(Vec::new());
            }
        };
        if let Some(agent) = &report.agent {
            self.audit_spent.add(&agent.usage);
        }
        let commands: Vec<_> = report.checks.iter().map(|c| c.record.clone()).collect();
        self.store
            .record_audit(&self.run_id, Some(n), &report, &dir, &commands)?;
        self.remember_checks(&report, &dir);
        self.report(RunEvent::AuditFinished {
            phase: Some(phase_id),
            attempt: Some(n),
            candidate: report.candidate.clone(),
            recommendation: report.recommendation,
            summary: report.summary.clone(),
            report_dir: dir.display().to_string(),
        })?;
        if self.attempts[i].state == AttemptState::Lost {
            return Ok(Vec::new());
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
    ) -> Result<Vec<Step>, ScheduleError> {
        let pi = self.attempts[i].phase;
        let rounds = self.attempts[i].rounds;
        if report.recommendation == Recommendation::Revise {
            self.attempts[i].sent_back.push(SentBack {
                summary: report.summary.clone(),
                paths: report.violations.iter().map(|v| v.path.clone()).collect(),
            });
        }
        match decide::after_candidate_audit(report.recommendation, rounds, &report.summary) {
            Route::Pass => {
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
                Ok(vec![Step::Select(pi)])
            }
            Route::Again => {
                // What the implementer may be told: the report without what the held-out
                // checks are, unless the goal file shows them.
                let md = std::fs::read_to_string(dir.join(FEEDBACK_FILE))
                    .unwrap_or_else(|_| report.summary.clone());
                self.queue_round(
                    i,
                    Some(Feedback::Audit {
                        report_markdown: md,
                    }),
                    None,
                )?;
                Ok(Vec::new())
            }
            Route::Fail(why) => Ok(vec![Step::Fail {
                attempt: i,
                why,
                budget: false,
            }]),
        }
    }

    /// Offers an audit that is starting the evidence already recorded for its
    /// candidate's tree and for its base's (whose test census the candidate's is compared
    /// with), and the auditors' worktree pool. Without the offer the audit runs every check
    /// in a fresh worktree, so a failure here costs time, never truth.
    pub(super) fn offer_reuse(&self, input: &AuditInput) {
        let report_dir = &input.report_dir;
        let mut cached_checks = Vec::new();
        for commit in [&input.candidate, &input.base] {
            let Some(tree) = Oid::from_str(commit)
                .ok()
                .and_then(|commit| self.repo.tree_of(commit).ok())
            else {
                continue;
            };
            match self.store.cached_checks(&tree.to_string()) {
                Ok(found) => cached_checks.extend(found),
                // Not propagated: without the cache the audit runs every check itself.
                Err(err) => tracing::warn!("could not read the cached evidence of {tree}: {err}"),
            }
        }
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
        // The base's runs for a test census, under the base's tree.
        for run in &report.base_censuses {
            let Some(tree) = run.result.record.tree.as_deref() else {
                continue;
            };
            if let Err(err) =
                self.store
                    .record_cached_check(&run.key, tree, &run.result, &run.source)
            {
                tracing::warn!(
                    "could not cache the base's census of `{}`: {err}",
                    run.result.command
                );
            }
        }
    }
}
