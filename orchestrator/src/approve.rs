//! `goalpost approve`: moves the release branch of a run that passed its whole-goal audit
//! and waits for a person's go-ahead (`approval = "human"`).

use std::path::Path;

use goalpost_shared::exit::ExitCode;
use goalpost_shared::git::Oid;
use goalpost_shared::plan::Plan;
use goalpost_shared::protocol::{AuditInput, Recommendation};

use crate::audit::{self, DEFAULT_CHECK_TIMEOUT_SECS};
use crate::gate::{self, GateStep};
use crate::run_cmd::{RunError, Workspace};
use crate::schedule::{final_contract, short};
use crate::store::{Store, StoreError};

pub fn approve(dir: &Path, run: Option<&str>) -> Result<ExitCode, RunError> {
    let ws = Workspace::open(dir)?;
    let store = Store::open_existing(&ws.layout.store())?.ok_or_else(|| {
        RunError::bad(
            "this repository has no goalpost runs",
            "start one with `goalpost run GOAL.md`",
        )
    })?;
    let row = store.run(run)?.ok_or_else(|| {
        RunError::bad(
            format!("no run {}", run.unwrap_or("")),
            "see `goalpost status` for the runs of this repository",
        )
    })?;
    if row.state != "awaiting_approval" {
        return Err(RunError::bad(
            format!("run {} is {}, not waiting for approval", row.id, row.state),
            "only a run stopped by `approval = \"human\"` can be approved",
        ));
    }
    let plan: Plan = serde_json::from_str(&store.run_plan_json(&row.id)?)
        .map_err(|e| RunError::Store(StoreError::Json(e)))?;
    let tip = ws.repo.ref_target(&row.integration_ref)?.ok_or_else(|| {
        RunError::bad(
            format!("the integration ref {} is gone", row.integration_ref),
            "the run cannot be approved; start it again",
        )
    })?;
    let tree = ws.repo.tree_of(tip)?;
    let audited = store
        .audits(&row.id)?
        .into_iter()
        .rev()
        .find(|a| a.attempt.is_none() && a.recommendation == "merge");
    if audited.as_ref().map(|a| a.tree.as_str()) != Some(&tree.to_string()) {
        return Err(RunError::bad(
            format!(
                "the integration tip {} has no passing whole-goal audit",
                short(tip)
            ),
            "resume the run so it audits the tip again",
        ));
    }
    let release_ref = format!("refs/heads/{}", row.release_branch);
    let mut target = tip;
    let mut audited_tree = tree;
    for k in 1..=3u32 {
        match gate::integrate(
            &ws.repo,
            &release_ref,
            target,
            audited_tree,
            gate::Landing::Merge,
        )? {
            GateStep::Moved { old_tip, new_tip } => {
                store.record_merge(
                    &row.id,
                    None,
                    &release_ref,
                    &old_tip.to_string(),
                    &new_tip.to_string(),
                    &target.to_string(),
                )?;
                let _ = gate::refresh_checkout(&ws.repo, &row.release_branch, old_tip, new_tip);
                store.set_release_commit(&row.id, &new_tip.to_string())?;
                store.set_run_state(&row.id, "complete", None)?;
                println!(
                    "run {}: approved; {} moved to {}",
                    row.id,
                    row.release_branch,
                    short(new_tip)
                );
                return Ok(ExitCode::Complete);
            }
            GateStep::NeedsAudit {
                merge_commit,
                old_tip,
            } => {
                let report = audit_merge(&ws, &store, &row.id, &plan, old_tip, merge_commit, k)?;
                if report != Recommendation::Merge {
                    return blocked(
                        &store,
                        &row.id,
                        format!(
                            "{} moved meanwhile and its merge with the run fails the audit",
                            row.release_branch
                        ),
                    );
                }
                target = merge_commit;
                audited_tree = ws.repo.tree_of(merge_commit)?;
            }
            GateStep::Conflict { paths, .. } => {
                return blocked(
                    &store,
                    &row.id,
                    format!(
                        "{} moved meanwhile and conflicts with the run in: {}",
                        row.release_branch,
                        paths.join(", ")
                    ),
                );
            }
        }
    }
    blocked(
        &store,
        &row.id,
        format!("{} kept moving; approve again", row.release_branch),
    )
}

fn blocked(store: &Store, run: &str, why: String) -> Result<ExitCode, RunError> {
    store.set_run_state(run, "blocked", Some(&why))?;
    println!("run {run}: blocked: {why}");
    Ok(ExitCode::Blocked)
}

fn audit_merge(
    ws: &Workspace,
    store: &Store,
    run: &str,
    plan: &Plan,
    base: Oid,
    candidate: Oid,
    k: u32,
) -> Result<Recommendation, RunError> {
    let label = format!("approve-{k}");
    let input = AuditInput {
        run_id: run.to_owned(),
        phase: "goal".to_owned(),
        repo: ws.workdir.clone(),
        worktree: ws.layout.audit_worktree(run, &label, k),
        base: base.to_string(),
        candidate: candidate.to_string(),
        contract: final_contract(plan),
        always_protected: Vec::new(),
        claims: Vec::new(),
        report_dir: ws.layout.audit_dir(run, &label, k),
        check_timeout_secs: DEFAULT_CHECK_TIMEOUT_SECS,
    };
    let report = audit::run_auditor(&input)
        .map_err(|e| RunError::Schedule(crate::schedule::ScheduleError::Internal(e)))?;
    let commands: Vec<_> = report.checks.iter().map(|c| c.record.clone()).collect();
    store.record_audit(run, None, &report, &input.report_dir, &commands)?;
    Ok(report.recommendation)
}
