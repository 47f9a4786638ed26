//! The end of a run: the whole-goal audit on the integration tip, optional human
//! approval, and the compare-and-swap move of the release branch (merging and verifying
//! again when someone else moved it meanwhile, never forcing).

use std::collections::BTreeSet;

use goalpost_shared::contract::Contract;
use goalpost_shared::plan::{Approval, Plan};
use goalpost_shared::protocol::Recommendation;
use goalpost_state::Store;

use goalpost_shared::git::{Oid, Repo};

use super::{RunEnd, RunEvent, ScheduleError, Scheduler, short};
use crate::crash;
use crate::gate::{self, GateStep};
use goalpost_state::AuditKind;

impl Scheduler<'_> {
    /// The whole-goal audit on the integration tip, then the release move.
    pub(super) fn finish(&mut self) -> Result<RunEnd, ScheduleError> {
        let tip = self.integration_tip()?;
        if let Some(why) = self.audit_goal(self.release_start, tip)? {
            return Ok(RunEnd::Blocked { why });
        }
        if self.plan.settings.approval.value == Approval::Human {
            return Ok(RunEnd::AwaitingApproval { tip });
        }
        let release = Release {
            repo: self.repo,
            store: self.store,
            run_id: self.run_id.clone(),
            branch: self.release.clone(),
        };
        release.land(tip, |base, target| self.audit_goal(base, target))
    }

    /// Audits `target` against the whole goal; `Some(why)` unless it says merge.
    fn audit_goal(&mut self, base: Oid, target: Oid) -> Result<Option<String>, ScheduleError> {
        let contract = final_contract(self.plan);
        let input = self.audit_input("goal", contract, "goal", base, target, Vec::new());
        self.report(RunEvent::AuditStarted {
            purpose: AuditKind::Goal,
            phase: None,
            attempt: None,
            phases: Vec::new(),
            base: base.to_string(),
            candidate: target.to_string(),
        })?;
        let report = match self.executor.audit_now(&input) {
            Ok(report) => report,
            // Killed or crashed: nothing was judged, and `resume` audits again.
            Err(e) => {
                return Ok(Some(format!(
                    "the whole-goal audit of {} could not run, the run was interrupted: {e}; `goalpost resume` runs it again",
                    short(target)
                )));
            }
        };
        let commands: Vec<_> = report.checks.iter().map(|c| c.record.clone()).collect();
        self.store
            .record_audit(&self.run_id, None, &report, &input.report_dir, &commands)?;
        self.report(RunEvent::AuditFinished {
            phase: None,
            attempt: None,
            candidate: report.candidate.clone(),
            recommendation: report.recommendation,
            summary: report.summary.clone(),
            report_dir: input.report_dir.display().to_string(),
        })?;
        Ok((report.recommendation != Recommendation::Merge).then(|| {
            format!(
                "the whole-goal audit of {} says {}: {} (report: {}/audit.md)",
                short(target),
                report.recommendation.as_str(),
                report.summary,
                input.report_dir.display()
            )
        }))
    }
}

/// The release branch of a run, moved only by compare-and-swap to an audited commit.
#[derive(Debug)]
pub struct Release<'r> {
    pub repo: &'r Repo,
    pub store: &'r Store,
    pub run_id: String,
    pub branch: String,
}

impl Release<'_> {
    /// Moves the branch to `target`, whose tree passed the whole-goal audit. When someone
    /// moved the branch meanwhile, their commits are merged in and the merge is audited
    /// with `audit` (base, commit → `Some(why)` unless it passes) before it lands; a
    /// conflict stops the run. Never forces.
    pub fn land(
        &self,
        mut target: Oid,
        mut audit: impl FnMut(Oid, Oid) -> Result<Option<String>, ScheduleError>,
    ) -> Result<RunEnd, ScheduleError> {
        let release_ref = format!("refs/heads/{}", self.branch);
        for _ in 0..3 {
            let tree = self.repo.tree_of(target)?;
            crash::point("release audited");
            match gate::integrate(self.repo, &release_ref, target, tree, gate::Landing::Merge)? {
                GateStep::Moved { old_tip, new_tip } => {
                    crash::point("release moved");
                    self.store.record_merge(
                        &self.run_id,
                        None,
                        &release_ref,
                        &old_tip.to_string(),
                        &new_tip.to_string(),
                        &target.to_string(),
                    )?;
                    let from = if old_tip == new_tip {
                        self.moved_from(&release_ref, new_tip).unwrap_or(old_tip)
                    } else {
                        old_tip
                    };
                    if let Err(e) = gate::refresh_checkout(self.repo, &self.branch, from, new_tip) {
                        eprintln!(
                            "warning: {} moved to {}, but your working tree could not follow: {e}",
                            self.branch,
                            short(new_tip)
                        );
                    }
                    return Ok(RunEnd::Complete {
                        release_commit: new_tip,
                    });
                }
                GateStep::NeedsAudit {
                    merge_commit,
                    old_tip,
                } => {
                    println!(
                        "release: {} moved during the run; verifying its merge {}",
                        self.branch,
                        short(merge_commit)
                    );
                    if let Some(why) = audit(old_tip, merge_commit)? {
                        return Ok(RunEnd::Blocked { why });
                    }
                    target = merge_commit;
                }
                GateStep::Conflict { paths, tip } => {
                    return Ok(RunEnd::Blocked {
                        why: format!(
                            "{} moved to {} during the run and conflicts with the plan's work in: {}",
                            self.branch,
                            short(tip),
                            paths.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(RunEnd::Blocked {
            why: format!("{} kept moving during the release; try again", self.branch),
        })
    }

    /// Where goalpost moved the branch from, when it is at `tip` already: a run
    /// interrupted after moving it resumes here, and the working tree still holds the
    /// old value the branch's reflog names.
    fn moved_from(&self, release_ref: &str, tip: Oid) -> Option<Oid> {
        let reflog = self.repo.git2().reflog(release_ref).ok()?;
        let last = reflog.get(0)?;
        let ours = matches!(last.message(), Ok(Some(m)) if m.starts_with("goalpost:"));
        (ours && last.id_new() == tip && !last.id_old().is_zero()).then(|| last.id_old())
    }
}

/// The contract of the whole-goal audit: the plan's checks (or, when the plan has none of
/// its own, every phase's machine checks), every phase's held-out checks, its protected
/// paths, and no path rules, which
/// each phase's audit has already applied to its own changes.
pub fn final_contract(plan: &Plan) -> Contract {
    let mut contract = plan.contract.clone();
    contract.boundaries.allowed.clear();
    contract.boundaries.forbidden.clear();
    if !contract.verification.iter().any(|c| c.command().is_some()) {
        let mut seen = BTreeSet::new();
        contract.verification = plan
            .phases
            .iter()
            .flat_map(|p| p.contract.verification.iter())
            .filter(|c| c.command().is_some_and(|cmd| seen.insert(cmd.to_owned())))
            .cloned()
            .collect();
    }
    // Every phase's held-out checks: each must still pass on the whole goal's tree.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    contract.held_out = plan
        .phases
        .iter()
        .flat_map(|p| p.contract.held_out.iter())
        .filter(|c| seen.insert(c.text.value.clone()))
        .cloned()
        .collect();
    contract
}
