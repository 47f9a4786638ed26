//! `pause`, `resume`, `clear` and `gc`: a run's life after `goalpost run` started it.
//! All of them are non-interactive unless asked to confirm a purge on a terminal.

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

use goalpost_shared::exit::ExitCode;
use goalpost_shared::git::{Identity, Repo};
use goalpost_shared::plan::{Budget, Plan};
use goalpost_shared::protocol::HARVEST_DIR;
use goalpost_state::{RunRow, RunState, Store, StoreError};

use crate::control;
use crate::lock::{self, RunLock};
use crate::reporter::Progress;
use crate::run_cmd::{self, RunError, Workspace};
use crate::schedule::Scheduler;

fn open_store(ws: &Workspace) -> Result<Store, RunError> {
    Store::open_existing(&ws.layout.store())?.ok_or_else(|| {
        RunError::bad(
            format!("{} has no goalpost runs", ws.workdir.display()),
            "start one with `goalpost run GOAL.md`",
        )
    })
}

fn find_run(store: &Store, run: Option<&str>) -> Result<RunRow, RunError> {
    store.run(run)?.ok_or_else(|| {
        RunError::bad(
            format!("there is no run {}", run.unwrap_or_default()),
            "`goalpost status` names the runs of this repository",
        )
    })
}

/// `goalpost pause [--now] [--wait]`: asks the running run to stop.
pub fn pause(dir: &Path, now: bool, wait: bool) -> Result<ExitCode, RunError> {
    let ws = Workspace::open(dir)?;
    let lock_path = RunLock::path_in(&ws.layout.state_dir);
    let Some((run, pid)) = lock::holder(&lock_path).filter(|(_, pid)| lock::process_alive(*pid))
    else {
        return Err(RunError::bad(
            format!("no goalpost run is running in {}", ws.workdir.display()),
            "`goalpost status` shows the last run's state",
        ));
    };
    let request = if now { "now" } else { "boundary" };
    std::fs::write(control::request_file(&ws.layout.state_dir), request).map_err(|e| {
        RunError::bad(
            format!("cannot ask run {run} to pause: {e}"),
            "check the permissions of the repository's git dir",
        )
    })?;
    println!(
        "asked run {run} (pid {pid}) to pause {}",
        if now {
            "now: its running turns end at once and are harvested"
        } else {
            "after its running turns"
        }
    );
    if wait {
        // The run releases its lock when it has stopped.
        while lock::holder(&lock_path).is_some_and(|(r, p)| r == run && lock::process_alive(p)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("run {run} stopped");
    }
    Ok(ExitCode::Complete)
}

/// `goalpost resume [--run ID] [--budget KIND=+N]...`.
pub fn resume(
    dir: &Path,
    run: Option<&str>,
    budgets: &[String],
    unconfined: bool,
    progress: Progress,
) -> Result<ExitCode, RunError> {
    let ws = Workspace::open(dir)?;
    let store = open_store(&ws)?;
    let row = find_run(&store, run)?;
    match row.state {
        RunState::Complete => {
            println!("run {} is complete; nothing to resume", row.id);
            return Ok(ExitCode::Complete);
        }
        RunState::Cleared => {
            return Err(RunError::bad(
                format!("run {} was cleared", row.id),
                "start a new run with `goalpost run GOAL.md`",
            ));
        }
        RunState::AwaitingApproval => {
            return Err(RunError::bad(
                format!("run {} waits for approval, not for a resume", row.id),
                "move the release branch with `goalpost approve`",
            ));
        }
        RunState::Active | RunState::Paused | RunState::Blocked | RunState::BudgetLimited => {}
    }
    run_cmd::check_confinement(unconfined)?;
    let lock = RunLock::acquire(&ws.layout.state_dir, &row.id)?;
    let mut plan: Plan = serde_json::from_str(&store.run_plan_json(&row.id)?)
        .map_err(|e| RunError::Store(StoreError::Json(e)))?;
    run_cmd::refuse_unconfined_held_out(&plan, unconfined)?;
    if !budgets.is_empty() {
        for spec in budgets {
            raise(&mut plan.settings.budget, spec)?;
            raise(&mut plan.settings.run_budget, spec)?;
        }
        let json = serde_json::to_string(&plan).map_err(StoreError::from)?;
        store.set_plan_json(&row.id, &json)?;
    }
    store.set_run_state(&row.id, RunState::Active, None)?;
    let release_start = ws.repo.resolve(&row.release_start)?;
    let plan_rel = crate::audit::plan_in_repo(Path::new(&row.plan_path), &ws.workdir);
    progress.say(&format!("run {}: resuming", row.id));
    let mut scheduler = Scheduler::new(
        &ws.repo,
        &store,
        &ws.layout,
        &plan,
        row.id.clone(),
        row.release_branch.clone(),
        release_start,
        ws.workdir.clone(),
        plan_rel.into_iter().collect(),
    );
    scheduler.unconfined = unconfined;
    scheduler.restore()?;
    let mut scheduler = scheduler.with_reporter(progress.reporter(&store, &row.id, &plan));
    run_cmd::drive(&mut scheduler, &store, &ws, lock, progress)
}

/// Applies `KIND=+N` (raise by N) or `KIND=N` (set to N) to the limits of `budget`
/// (see [`goalpost_shared::budget::raise`]).
pub fn raise(budget: &mut Budget, spec: &str) -> Result<(), RunError> {
    goalpost_shared::budget::raise(budget, spec)
        .map_err(|e| RunError::bad(e.to_string(), goalpost_shared::budget::RaiseError::hint()))
}

/// `goalpost clear [--run ID] [--purge [--yes]]`: removes the run's worktrees once their
/// work is on refs (harvesting what an interrupted agent left); `--purge` also deletes
/// the run's refs and records.
pub fn clear(dir: &Path, run: Option<&str>, purge: bool, yes: bool) -> Result<ExitCode, RunError> {
    let ws = Workspace::open(dir)?;
    let store = open_store(&ws)?;
    let row = find_run(&store, run)?;
    let lock_path = RunLock::path_in(&ws.layout.state_dir);
    if let Some((holder, pid)) = lock::holder(&lock_path)
        && holder == row.id
        && lock::process_alive(pid)
    {
        return Err(RunError::bad(
            format!("run {} is running (pid {pid})", row.id),
            "pause it first: `goalpost pause --wait`",
        ));
    }
    if purge && !yes {
        if !std::io::stdin().is_terminal() {
            return Err(RunError::bad(
                format!(
                    "--purge deletes run {}'s refs and records, and there is no terminal to confirm it on",
                    row.id
                ),
                "pass --yes to confirm",
            ));
        }
        eprint!("delete every ref and record of run {}? [y/N] ", row.id);
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing deleted");
            return Ok(ExitCode::Complete);
        }
    }
    let mut kept = Vec::new();
    for a in store.attempts(&row.id)? {
        let path = Path::new(&a.worktree);
        if !path.exists() {
            continue;
        }
        let harvest_dir = ws
            .layout
            .attempt_dir(&row.id, &a.phase_id, a.n)
            .join(HARVEST_DIR);
        match harvest_leftovers(&ws.repo, path, &harvest_dir, &a.ref_name, a.base.as_deref()) {
            Ok(()) => {
                if let Err(e) = ws.repo.worktree_remove(path, true) {
                    kept.push(format!("{}: {e}", path.display()));
                }
            }
            Err(e) => kept.push(format!("{}: {e}", path.display())),
        }
    }
    let root = ws.layout.worktree_root.join(&row.id);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("audit-") {
                let _ = ws.repo.worktree_remove(&e.path(), true);
            }
        }
    }
    let _ = std::fs::remove_dir(&root);
    let _ = ws.repo.worktree_prune();
    if !kept.is_empty() {
        for k in &kept {
            eprintln!("kept {k}");
        }
        return Err(RunError::bad(
            "some worktrees could not be emptied onto their refs and were kept",
            "look at them, then run `goalpost clear` again",
        ));
    }
    if purge {
        let refs = ws.repo.run_git(
            &ws.workdir,
            [
                "for-each-ref",
                "--format=%(refname)",
                &format!("refs/goalpost/{}/", row.id),
            ],
        )?;
        for r in refs.lines().filter(|l| !l.is_empty()) {
            ws.repo.run_git(&ws.workdir, ["update-ref", "-d", r])?;
        }
        store.delete_run(&row.id)?;
        let _ = std::fs::remove_dir_all(ws.layout.run_dir(&row.id));
        println!("run {}: worktrees, refs and records deleted", row.id);
    } else {
        if row.state != RunState::Complete {
            store.set_run_state(&row.id, RunState::Cleared, None)?;
        }
        println!(
            "run {}: worktrees removed; its work stays on refs/goalpost/{}/",
            row.id, row.id
        );
    }
    Ok(ExitCode::Complete)
}

/// Commits whatever an interrupted agent left in `worktree` onto its attempt ref, reading
/// the worktree as files only (through the attempt's own index in `harvest_dir`).
fn harvest_leftovers(
    repo: &Repo,
    worktree: &Path,
    harvest_dir: &Path,
    ref_name: &str,
    base: Option<&str>,
) -> Result<(), RunError> {
    let current = repo.ref_target(ref_name)?;
    let parent = match (current, base) {
        (Some(c), _) => c,
        (None, Some(base)) => repo.resolve(base)?,
        // Never harvested and no base recorded: nothing of the attempt's to keep.
        (None, None) => return Ok(()),
    };
    let view = repo.worktree_view(worktree, harvest_dir);
    if view.changes_from(parent)?.is_empty() {
        return Ok(());
    }
    if let Some(commit) = repo.commit_worktree(
        &view,
        parent,
        "goalpost: harvest what an interrupted turn left",
        &Identity::goalpost(),
        Budget::default().objects_bytes(),
    )? {
        repo.update_ref_cas(ref_name, commit, current, "goalpost: harvest on clear")?;
    }
    Ok(())
}

/// Whether the worktree `name` (`<phase>.<n>` for an attempt's) of `run` at `path` holds
/// files that are on no ref, read as files only: against its attempt ref's tree, or for a
/// worktree with no attempt ref, the commit its `HEAD` names. One that names no commit
/// holds work that is on no ref.
fn holds_work_off_ref(ws: &Workspace, run: &str, name: &str, path: &Path) -> bool {
    let attempt = name
        .rsplit_once('.')
        .and_then(|(phase, n)| Some((phase, n.parse::<u32>().ok()?)));
    let on_ref = attempt
        .and_then(|(phase, n)| {
            ws.repo
                .ref_target(&crate::layout::attempt_ref(run, phase, n))
                .ok()
                .flatten()
        })
        .or_else(|| ws.repo.worktree_head(path));
    let Some(on_ref) = on_ref else {
        return true;
    };
    // The attempt's own index when its private dir is still there; else one of its own,
    // for this scan only.
    let harvest_dir = attempt
        .map(|(phase, n)| ws.layout.attempt_dir(run, phase, n).join(HARVEST_DIR))
        .filter(|dir| dir.parent().is_some_and(Path::is_dir));
    let scratch = tempfile::tempdir();
    let index_dir = match (&harvest_dir, &scratch) {
        (Some(dir), _) => dir.clone(),
        (None, Ok(scratch)) => scratch.path().to_path_buf(),
        (None, Err(_)) => return true,
    };
    ws.repo
        .worktree_view(path, &index_dir)
        .changes_from(on_ref)
        .map_or(true, |changes| !changes.is_empty())
}

/// `goalpost gc`: removes worktrees no live run needs, never one holding work that is not
/// on a ref.
pub fn gc(dir: &Path) -> Result<ExitCode, RunError> {
    let ws = Workspace::open(dir)?;
    let store = Store::open_existing(&ws.layout.store())?;
    let lock_path = RunLock::path_in(&ws.layout.state_dir);
    let live = lock::holder(&lock_path)
        .filter(|(_, pid)| lock::process_alive(*pid))
        .map(|(run, _)| run);
    let _ = ws.repo.worktree_prune();
    let (mut removed, mut kept) = (0, 0);
    let Ok(runs) = std::fs::read_dir(&ws.layout.worktree_root) else {
        println!("no goalpost worktrees");
        return Ok(ExitCode::Complete);
    };
    for run_dir in runs.flatten() {
        let run = run_dir.file_name().to_string_lossy().into_owned();
        if live.as_deref() == Some(run.as_str()) {
            continue;
        }
        let state = match &store {
            Some(s) => s.run(Some(&run))?.map(|r| r.state),
            None => None,
        };
        // A paused or interrupted run goes on from its worktrees: leave them.
        if matches!(
            state,
            Some(RunState::Paused | RunState::Active | RunState::Blocked | RunState::BudgetLimited)
        ) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(run_dir.path()) else {
            continue;
        };
        for wt in entries.flatten() {
            let path = wt.path();
            let name = wt.file_name().to_string_lossy().into_owned();
            let dirty = holds_work_off_ref(&ws, &run, &name, &path);
            if dirty && !wt.file_name().to_string_lossy().starts_with("audit-") {
                eprintln!(
                    "kept {}: it holds changes that are on no ref",
                    path.display()
                );
                kept += 1;
                continue;
            }
            if ws.repo.worktree_remove(&path, true).is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
            removed += 1;
        }
        let _ = std::fs::remove_dir(run_dir.path());
    }
    let _ = std::fs::remove_dir(&ws.layout.worktree_root);
    let _ = ws.repo.worktree_prune();
    println!("removed {removed} worktree(s); kept {kept}");
    Ok(ExitCode::Complete)
}
