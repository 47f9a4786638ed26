//! The end of a run: the whole-goal audit on the integration tip, optional human
//! approval, and the compare-and-swap move of the release branch (merging and verifying
//! again when someone else moved it meanwhile, never forcing).

use std::collections::BTreeSet;

use goalpost_shared::contract::Contract;
use goalpost_shared::plan::{Approval, Plan};
use goalpost_shared::protocol::Recommendation;

use super::{RunEnd, ScheduleError, Scheduler, short};
use crate::audit;
use crate::crash;
use crate::gate::{self, GateStep};

impl Scheduler<'_> {
    /// The whole-goal audit on the integration tip, then the release move.
    pub(super) fn finish(&mut self) -> Result<RunEnd, ScheduleError> {
        let tip = self.integration_tip()?;
        let contract = final_contract(self.plan);
        let mut base = self.release_start;
        let mut target = tip;
        let release_ref = format!("refs/heads/{}", self.release);
        for _ in 0..3 {
            let input =
                self.audit_input("goal", contract.clone(), "goal", base, target, Vec::new());
            println!("whole goal: auditing {}", short(target));
            let report = audit::run_auditor(&input).map_err(ScheduleError::Internal)?;
            let commands: Vec<_> = report.checks.iter().map(|c| c.record.clone()).collect();
            self.store
                .record_audit(&self.run_id, None, &report, &input.report_dir, &commands)?;
            println!(
                "whole goal: audit says {}: {}",
                report.recommendation.as_str(),
                report.summary
            );
            if report.recommendation != Recommendation::Merge {
                return Ok(RunEnd::Blocked {
                    why: format!(
                        "the whole-goal audit of {} says {}: {} (report: {}/audit.md)",
                        short(target),
                        report.recommendation.as_str(),
                        report.summary,
                        input.report_dir.display()
                    ),
                });
            }
            if self.plan.settings.approval.value == Approval::Human {
                return Ok(RunEnd::AwaitingApproval { tip: target });
            }
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
                    if let Err(e) =
                        gate::refresh_checkout(self.repo, &self.release, old_tip, new_tip)
                    {
                        eprintln!(
                            "warning: {} moved to {}, but your working tree could not follow: {e}",
                            self.release,
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
                        self.release,
                        short(merge_commit)
                    );
                    base = old_tip;
                    target = merge_commit;
                }
                GateStep::Conflict { paths, tip } => {
                    return Ok(RunEnd::Blocked {
                        why: format!(
                            "{} moved to {} during the run and conflicts with the plan's work in: {}",
                            self.release,
                            short(tip),
                            paths.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(RunEnd::Blocked {
            why: format!("{} kept moving during the release; try again", self.release),
        })
    }
}

/// The contract of the whole-goal audit: the plan's checks (or, when the plan has none of
/// its own, every phase's machine checks), its protected paths, and no path rules, which
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
    contract
}
