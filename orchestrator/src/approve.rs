//! `goalpost approve`: moves the release branch of a run that passed its whole-goal audit
//! and waits for a person's go-ahead (`approval = "human"`).

use std::path::Path;

use goalpost_shared::exit::ExitCode;
use goalpost_shared::git::Oid;
use goalpost_shared::plan::Plan;
use goalpost_shared::protocol::Recommendation;
use goalpost_state::{RunRow, RunState, Store, StoreError};

use crate::audit::{AuditOf, AuditSetup};
use crate::executor;
use crate::run_cmd::{RunError, Workspace};
use crate::schedule::{Release, RunEnd, ScheduleError, final_contract, short};

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
    if row.state != RunState::AwaitingApproval {
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
        .find(|a| a.attempt.is_none() && a.recommendation == Recommendation::Merge);
    if audited.as_ref().map(|a| a.tree.as_str()) != Some(&tree.to_string()) {
        return Err(RunError::bad(
            format!(
                "the integration tip {} has no passing whole-goal audit",
                short(tip)
            ),
            "resume the run so it audits the tip again",
        ));
    }
    let release = Release {
        repo: &ws.repo,
        store: &store,
        run_id: row.id.clone(),
        branch: row.release_branch.clone(),
    };
    let mut k = 0;
    let end = release.land(tip, |base, merge| {
        k += 1;
        let verdict = audit_merge(&ws, &store, &row, &plan, base, merge, k)
            .map_err(|e| ScheduleError::Internal(e.to_string()))?;
        Ok((verdict != Recommendation::Merge).then(|| {
            format!(
                "{} moved meanwhile and its merge with the run fails the whole-goal audit",
                row.release_branch
            )
        }))
    })?;
    match end {
        RunEnd::Complete { release_commit } => {
            store.set_release_commit(&row.id, &release_commit.to_string())?;
            store.set_run_state(&row.id, RunState::Complete, None)?;
            println!(
                "run {}: approved; {} moved to {}",
                row.id,
                row.release_branch,
                short(release_commit)
            );
            Ok(ExitCode::Complete)
        }
        RunEnd::Blocked { why } => blocked(&store, &row.id, why),
        other => blocked(
            &store,
            &row.id,
            format!("unexpected end of the release: {other:?}"),
        ),
    }
}

fn blocked(store: &Store, run: &str, why: String) -> Result<ExitCode, RunError> {
    store.set_run_state(run, RunState::Blocked, Some(&why))?;
    println!("run {run}: blocked: {why}");
    Ok(ExitCode::Blocked)
}

fn audit_merge(
    ws: &Workspace,
    store: &Store,
    row: &RunRow,
    plan: &Plan,
    base: Oid,
    candidate: Oid,
    k: u32,
) -> Result<Recommendation, RunError> {
    let run = row.id.as_str();
    let label = format!("approve-{k}");
    // The same setup as the run's own audits: the goal file stays protected.
    let setup = AuditSetup::for_run(
        run,
        &ws.layout,
        &ws.workdir,
        plan,
        Path::new(&row.plan_path),
        false,
    );
    let input = setup.input(AuditOf {
        phase: "goal".to_owned(),
        contract: final_contract(plan),
        base,
        candidate,
        claims: Vec::new(),
        worktree: ws.layout.audit_worktree(run, &label, k),
        report_dir: ws.layout.audit_dir(run, &label, k),
    });
    let report = executor::run_auditor(&input)
        .map_err(|e| RunError::Schedule(ScheduleError::Internal(e.to_string())))?;
    let commands: Vec<_> = report.checks.iter().map(|c| c.record.clone()).collect();
    store.record_audit(run, None, &report, &input.report_dir, &commands)?;
    Ok(report.recommendation)
}
