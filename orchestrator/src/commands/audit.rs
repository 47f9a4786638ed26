//! `goalpost audit`: the auditor on any commit pair, against a plan's contract, as a run
//! would audit it.

use std::io::Write as _;
use std::path::Path;

use goalpost_orchestrator::audit::{AuditOf, AuditSetup};
use goalpost_orchestrator::executor;
use goalpost_orchestrator::run_cmd::{RunError, Workspace};
use goalpost_orchestrator::schedule::final_contract;
use goalpost_shared::exit::ExitCode;
use goalpost_shared::goal;
use goalpost_shared::protocol::Recommendation;

use crate::cli::AuditArgs;
use crate::error::Error;

pub fn run(args: &AuditArgs, dir: &Path) -> Result<ExitCode, Error> {
    let plan = goal::load(&args.plan).map_err(Error::InvalidPlan)?;
    let ws = Workspace::open(dir)?;
    let contract = match &args.phase {
        Some(id) => plan.phase(id).map(|p| p.contract.clone()).ok_or_else(|| {
            let known: Vec<&str> = plan.phases.iter().map(|p| p.id.value.as_str()).collect();
            RunError::bad(
                format!("the plan has no phase `{id}`"),
                format!("name one of: {}", known.join(", ")),
            )
        })?,
        None if plan.implicit_phase => plan.phases[0].contract.clone(),
        None => final_contract(&plan),
    };
    let resolve = |rev: &str| {
        ws.repo.resolve(rev).map_err(|_| {
            RunError::bad(
                format!("`{rev}` does not name a commit in {}", ws.workdir.display()),
                "give a branch, tag or commit id",
            )
        })
    };
    let base = resolve(&args.base)?;
    let candidate = resolve(&args.candidate)?;
    let label = format!("adhoc-{}", goalpost_orchestrator::run_cmd::new_run_id());
    let setup = AuditSetup::for_run(&label, &ws.layout, &ws.workdir, &plan, &args.plan, false);
    let input = setup.input(AuditOf {
        phase: args.phase.clone().unwrap_or_else(|| "goal".into()),
        contract,
        base,
        candidate,
        claims: args.claims.clone(),
        worktree: ws.layout.audit_worktree("adhoc", &label, 1),
        report_dir: ws.layout.state_dir.join("audits").join(&label),
    });
    let report = executor::run_auditor(&input);
    // The auditor removes its worktree; the folders made to hold it go too, once empty
    // (`remove_dir` refuses any that is not).
    if let Some(parent) = input.worktree.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    let _ = std::fs::remove_dir(&ws.layout.worktree_root);
    let report = report.map_err(|e| {
        RunError::Schedule(goalpost_orchestrator::schedule::ScheduleError::Internal(
            e.to_string(),
        ))
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        let md = std::fs::read_to_string(input.report_dir.join("audit.md"))?;
        write!(out, "{md}")?;
    }
    Ok(if report.recommendation == Recommendation::Merge {
        ExitCode::Complete
    } else {
        ExitCode::Blocked
    })
}
