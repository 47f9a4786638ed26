//! `goalpost run`: checks the plan and the repository before anything changes, takes the
//! repository's run lock, records the run, and hands it to the scheduler.

use std::path::{Path, PathBuf};

use goalpost_shared::confine;
use goalpost_shared::exit::ExitCode;
use goalpost_shared::git::{GitError, Oid, Repo};
use goalpost_shared::goal::{self, Diagnostics};
use goalpost_shared::plan::{Adapter, Plan};
use goalpost_state::{Event, RunState, RunView, Store, StoreError};

use crate::attempt;
use crate::layout::{self, Layout};
use crate::lock::{LockError, RunLock};
use crate::reporter::Progress;
use crate::schedule::{RunEnd, ScheduleError, Scheduler, short};

/// Why `goalpost run` (or another command on a repository) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The goal file has errors; each is printed on its own line.
    #[error("{0}")]
    Plan(Diagnostics),
    /// The input or the repository's state is wrong; nothing was changed.
    #[error("{what}\nhint: {hint}")]
    BadInput { what: String, hint: String },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

impl RunError {
    pub fn bad(what: impl Into<String>, hint: impl Into<String>) -> RunError {
        RunError::BadInput {
            what: what.into(),
            hint: hint.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Plan(_) | RunError::BadInput { .. } => ExitCode::BadInput,
            RunError::Git(_) | RunError::Store(_) | RunError::Schedule(_) => ExitCode::Internal,
        }
    }
}

impl From<LockError> for RunError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held { .. } => RunError::bad(
                e.to_string(),
                "wait for that run to finish, or stop it with `goalpost pause`",
            ),
            LockError::Io { .. } => RunError::bad(
                e.to_string(),
                "check the permissions of the repository's git dir",
            ),
        }
    }
}

/// The repository a command works on, opened and checked.
#[derive(Debug)]
pub struct Workspace {
    pub repo: Repo,
    pub workdir: PathBuf,
    pub layout: Layout,
}

impl Workspace {
    /// Opens the repository containing `dir`, with a clear error when there is none.
    pub fn open(dir: &Path) -> Result<Workspace, RunError> {
        let repo = Repo::discover(dir).map_err(|e| match e {
            GitError::NotARepository { path } => RunError::bad(
                format!("{} is not inside a git repository", path.display()),
                "run goalpost inside a git repository, or pass -C DIR",
            ),
            other => RunError::Git(other),
        })?;
        let workdir = repo.workdir().map(Path::to_path_buf).ok_or_else(|| {
            RunError::bad(
                format!("{} is a bare repository", repo.git_dir().display()),
                "run goalpost in a repository with a working tree",
            )
        })?;
        let layout = Layout::new(repo.common_dir(), &workdir);
        Ok(Workspace {
            repo,
            workdir,
            layout,
        })
    }
}

/// The plan file's path inside the repository, when it is inside it.
/// Everything `run` checks before it changes anything.
#[derive(Debug)]
pub struct Checked {
    pub plan: Plan,
    pub ws: Workspace,
    pub release: String,
    pub release_tip: Oid,
    pub plan_rel: Option<String>,
}

pub fn preflight(plan_path: &Path, dir: &Path) -> Result<Checked, RunError> {
    let mut plan = goal::load(plan_path).map_err(RunError::Plan)?;
    let ws = Workspace::open(dir)?;
    let release = match &plan.settings.release {
        Some(r) => r.value.clone(),
        None => ws.repo.head_branch().ok_or_else(|| {
            RunError::bad(
                "HEAD is detached and the plan names no release branch",
                "check out the branch the work should land on, or set `release = \"main\"` in the goal file's front matter",
            )
        })?,
    };
    let release_tip = ws.repo.branch_tip(&release)?.ok_or_else(|| {
        let place = plan
            .settings
            .release
            .as_ref()
            .map(|r| format!("{}:{}: ", plan_path.display(), r.line))
            .unwrap_or_default();
        RunError::bad(
            format!(
                "{place}the release branch `{release}` does not exist in {}",
                ws.workdir.display()
            ),
            "create the branch first, or name an existing one with `release = \"...\"`",
        )
    })?;
    let plan_rel = crate::audit::plan_in_repo(plan_path, &ws.workdir);
    // Tracked changes and untracked, non-ignored files, except the plan file itself.
    let dirty = ws.repo.dirty_paths(plan_rel.as_deref())?;
    if !dirty.is_empty() {
        let shown: Vec<&str> = dirty.iter().take(10).map(String::as_str).collect();
        let more = if dirty.len() > 10 {
            format!(" and {} more", dirty.len() - 10)
        } else {
            String::new()
        };
        return Err(RunError::bad(
            format!(
                "the working tree of {} has uncommitted changes: {}{more}",
                ws.workdir.display(),
                shown.join(", ")
            ),
            "commit or stash them first: goalpost works from committed state and must not touch your changes",
        ));
    }
    check_agents(&plan, plan_path, &ws.workdir)?;
    if let Some(real) = check_held_out(&plan, plan_path, &ws.workdir)?
        && let Some(dir) = plan.settings.held_out.dir.as_mut()
    {
        // As the run records it: a resume from another directory finds the same files.
        dir.value = real.to_string_lossy().into_owned();
    }
    if let Some(real) = check_audit_skill(&plan, plan_path)?
        && let Some(skill) = plan.settings.audit_skill.as_mut()
    {
        skill.value = real.to_string_lossy().into_owned();
    }
    Ok(Checked {
        plan,
        ws,
        release,
        release_tip,
        plan_rel,
    })
}

/// The held-out checks' files must exist, in a directory outside the repository: inside
/// it, every attempt's worktree would hold them. Returns the directory's real path.
fn check_held_out(
    plan: &Plan,
    plan_path: &Path,
    workdir: &Path,
) -> Result<Option<PathBuf>, RunError> {
    let (Some(spanned), Some(dir)) = (&plan.settings.held_out.dir, plan.held_out_dir()) else {
        return Ok(None);
    };
    let at = format!("{}:{}:{}", plan_path.display(), spanned.line, spanned.col);
    let real = std::fs::canonicalize(&dir)
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| {
            RunError::bad(
                format!(
                    "{at}: held_out.dir \"{}\" is not a directory ({})",
                    spanned.value,
                    dir.display()
                ),
                "the directory of the held-out checks' files, relative to the goal file or absolute",
            )
        })?;
    let repo = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_path_buf());
    if real.starts_with(&repo) || repo.starts_with(&real) {
        return Err(RunError::bad(
            format!(
                "{at}: held_out.dir \"{}\" is inside the repository {}: every attempt's worktree would hold the held-out files",
                spanned.value,
                repo.display()
            ),
            "move the held-out files to a directory outside the repository, such as `dir = \"../hidden-tests\"`",
        ));
    }
    Ok(Some(real))
}

/// The auditor agent's skill file (`audit_skill`) must be a readable, non-empty file.
/// Returns its real path.
fn check_audit_skill(plan: &Plan, plan_path: &Path) -> Result<Option<PathBuf>, RunError> {
    let (Some(spanned), Some(path)) = (&plan.settings.audit_skill, plan.audit_skill_path()) else {
        return Ok(None);
    };
    let at = format!("{}:{}:{}", plan_path.display(), spanned.line, spanned.col);
    let wrong = |why: String| {
        RunError::bad(
            format!("{at}: audit_skill \"{}\" {why}", spanned.value),
            "the path of a Markdown prompt file for the auditor agent, relative to the goal file or absolute (README \"The auditor agent\")",
        )
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| wrong(format!("cannot be read ({}): {e}", path.display())))?;
    if text.trim().is_empty() {
        return Err(wrong(format!("is empty ({})", path.display())));
    }
    if plan.settings.roles.auditor.is_none() {
        return Err(wrong(
            "is given, but no auditor agent would use it: `[roles]` names no `auditor`".to_owned(),
        ));
    }
    Ok(std::fs::canonicalize(&path).ok())
}

/// Held-out checks are hidden by the sandbox: without it an agent could read them.
pub fn refuse_unconfined_held_out(plan: &Plan, unconfined: bool) -> Result<(), RunError> {
    if !unconfined || plan.phases.iter().all(|p| p.contract.held_out.is_empty()) {
        return Ok(());
    }
    Err(RunError::bad(
        "--unconfined with held-out checks: unconfined agents could read the held-out files",
        "run without --unconfined (the sandbox hides the held-out files), or remove the goal file's held-out checks",
    ))
}

/// Every agent the plan will start must have an executable goalpost can find.
fn check_agents(plan: &Plan, plan_path: &Path, workdir: &Path) -> Result<(), RunError> {
    match missing_agents(plan, plan_path, workdir)?.into_iter().next() {
        Some(missing) => Err(missing),
        None => Ok(()),
    }
}

/// The agents the plan starts whose executable cannot be found, each as a bad-input error
/// naming the agent, its adapter, the executable looked for and how to install it. An
/// agent named but not defined, or a `command` agent without a command, is an error.
pub fn missing_agents(
    plan: &Plan,
    plan_path: &Path,
    workdir: &Path,
) -> Result<Vec<RunError>, RunError> {
    let Some(implementer) = attempt::implementer_name(plan) else {
        return Err(RunError::bad(
            format!(
                "{}: the plan names no implementer agent",
                plan_path.display()
            ),
            "define an agent under [agents.NAME] and set `implementer = \"NAME\"` under [roles]",
        ));
    };
    let mut used: Vec<&str> = vec![implementer];
    for r in [&plan.settings.roles.reviewer, &plan.settings.roles.auditor]
        .into_iter()
        .flatten()
    {
        used.push(&r.value);
    }
    for phase in &plan.phases {
        used.extend(phase.attempt_agents.iter().map(|a| a.value.as_str()));
    }
    used.sort_unstable();
    used.dedup();
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut missing = Vec::new();
    for name in used {
        let Some(def) = plan.settings.agents.get(name) else {
            return Err(RunError::bad(
                format!("{}: agent `{name}` is not defined", plan_path.display()),
                format!("add [agents.{name}] to the front matter"),
            ));
        };
        let program = match def.command.first() {
            Some(p) => p.clone(),
            None if def.adapter.value == Adapter::Command => {
                return Err(RunError::bad(
                    format!(
                        "{}:{}: agent `{name}` uses the command adapter but has no command",
                        plan_path.display(),
                        def.name.line
                    ),
                    "set `command = [\"path/to/agent\", ...]`",
                ));
            }
            None => def.adapter.value.as_str().to_owned(),
        };
        if find_executable(&program, workdir, &path_var).is_none() {
            let hint = match def.adapter.value {
                Adapter::Command => format!(
                    "check the agent's `command`: {}",
                    install_hint(Adapter::Command, &program)
                ),
                adapter => format!("install it with `{}`", install_hint(adapter, &program)),
            };
            missing.push(RunError::bad(
                format!(
                    "{}:{}: agent `{name}` (adapter {}): executable `{program}` not found {}",
                    plan_path.display(),
                    def.name.line,
                    def.adapter.value.as_str(),
                    if program.contains('/') {
                        format!("in {}", workdir.display())
                    } else {
                        "on PATH".to_owned()
                    }
                ),
                hint,
            ));
        }
    }
    Ok(missing)
}

/// How to install the CLI an adapter drives; for `command`, what its executable must be.
pub fn install_hint(adapter: Adapter, program: &str) -> String {
    adapter.install_command().map_or_else(
        || {
            format!(
                "`{program}` must be an executable on PATH or a path relative to the repository"
            )
        },
        str::to_owned,
    )
}

/// Resolves `program` like a shell would: with a slash, relative to the repository (or
/// absolute); without one, on `PATH`.
pub fn find_executable(
    program: &str,
    workdir: &Path,
    path_var: &std::ffi::OsStr,
) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = workdir.join(program);
        return is_exec(&p).then_some(p);
    }
    std::env::split_paths(path_var)
        .map(|d| d.join(program))
        .find(|p| is_exec(p))
}

/// A run id: the UTC time it started, `YYYYMMDD-HHMMSS`.
pub fn new_run_id() -> String {
    let secs = goalpost_state::now();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Agents and checks run under Landlock; where the kernel cannot confine them, goalpost
/// refuses to start any unless the user said `--unconfined`.
pub fn check_confinement(unconfined: bool) -> Result<(), RunError> {
    if unconfined {
        tracing::warn!(
            "--unconfined: agents and checks run with all of your rights; \
             nothing stops them writing outside their worktrees"
        );
        return Ok(());
    }
    match confine::probe() {
        Ok(abi) => {
            tracing::debug!("agents and checks are confined with {abi}");
            Ok(())
        }
        Err(err) => Err(RunError::bad(
            format!("refusing to run agents unconfined: {err}"),
            err.hint().unwrap_or_default(),
        )),
    }
}

/// `goalpost run FILE [-C DIR] [--unconfined]`.
pub fn run(
    plan_path: &Path,
    dir: &Path,
    unconfined: bool,
    progress: Progress,
) -> Result<ExitCode, RunError> {
    let checked = preflight(plan_path, dir)?;
    refuse_unconfined_held_out(&checked.plan, unconfined)?;
    check_confinement(unconfined)?;
    let Checked {
        plan,
        ws,
        release,
        release_tip,
        plan_rel,
    } = checked;
    std::fs::create_dir_all(&ws.layout.state_dir).map_err(|e| {
        RunError::bad(
            format!("cannot create {}: {e}", ws.layout.state_dir.display()),
            "check the permissions of the repository's git dir",
        )
    })?;
    let mut run_id = new_run_id();
    let lock = RunLock::acquire(&ws.layout.state_dir, &run_id)?;
    let store = Store::open(&ws.layout.store())?;
    if let Some(last) = store.run(None)?
        && matches!(last.state, RunState::Paused | RunState::Active)
    {
        let how = if last.state == RunState::Paused {
            "is paused"
        } else {
            "was interrupted"
        };
        return Err(RunError::bad(
            format!(
                "run {} {how} and still holds its worktrees and refs",
                last.id
            ),
            "go on with `goalpost resume`, or drop it with `goalpost clear`",
        ));
    }
    // Two runs started within the same second get distinct ids.
    let mut k = 1;
    while store.run(Some(&run_id))?.is_some() {
        k += 1;
        run_id = format!("{}-{k}", new_run_id());
    }
    lock.rename(&run_id)?;
    let integration = layout::integration_ref(&run_id);
    ws.repo
        .update_ref_cas(&integration, release_tip, None, "goalpost: run starts")?;
    let plan_json = serde_json::to_string(&plan).map_err(StoreError::from)?;
    store.insert_run(
        &run_id,
        &plan_path.display().to_string(),
        &plan_json,
        &ws.workdir.display().to_string(),
        &release,
        &release_tip.to_string(),
        &integration,
    )?;
    for (i, phase) in plan.phases.iter().enumerate() {
        store.insert_phase(&run_id, &phase.id.value, i)?;
    }
    progress.say(&format!(
        "run {run_id}: {} phase(s) on {release} at {}",
        plan.phases.len(),
        short(release_tip)
    ));
    let mut scheduler = Scheduler::new(
        &ws.repo,
        &store,
        &ws.layout,
        &plan,
        run_id.clone(),
        release.clone(),
        release_tip,
        ws.workdir.clone(),
        plan_rel.into_iter().collect(),
    );
    scheduler.unconfined = unconfined;
    let mut scheduler = scheduler.with_reporter(progress.reporter(&store, &run_id, &plan));
    drive(&mut scheduler, &store, &ws, lock, progress)
}

/// Runs `scheduler` to its end, records how it ended, writes the stop report, and gives
/// the exit code. The run's lock is released before returning.
pub fn drive(
    scheduler: &mut Scheduler<'_>,
    store: &Store,
    ws: &Workspace,
    lock: RunLock,
    progress: Progress,
) -> Result<ExitCode, RunError> {
    let run_id = scheduler.run_id.clone();
    let release = scheduler.release.clone();
    scheduler.control().watch_signals();
    let end = scheduler.run();
    crate::crash::point("run ends");
    let (state, blocker, code) = match &end {
        Ok(RunEnd::Complete { release_commit }) => {
            store.set_release_commit(&run_id, &release_commit.to_string())?;
            (RunState::Complete, None, ExitCode::Complete)
        }
        Ok(RunEnd::Blocked { why }) => (RunState::Blocked, Some(why.clone()), ExitCode::Blocked),
        Ok(RunEnd::BudgetLimited { why }) => (
            RunState::BudgetLimited,
            Some(why.clone()),
            ExitCode::BudgetLimited,
        ),
        Ok(RunEnd::Paused { why }) => (
            RunState::Paused,
            Some(format!("{why}; `goalpost resume` goes on")),
            ExitCode::Paused,
        ),
        Ok(RunEnd::AwaitingApproval { tip }) => (
            RunState::AwaitingApproval,
            Some(format!(
                "{} passed the whole-goal audit and waits for `goalpost approve`",
                short(*tip)
            )),
            ExitCode::Paused,
        ),
        Err(e) => (
            RunState::Blocked,
            Some(format!("internal error: {e}")),
            ExitCode::Internal,
        ),
    };
    store.set_run_state(&run_id, state, blocker.as_deref())?;
    let ended = store.append_event_record(
        &run_id,
        &Event::RunEnded {
            state,
            blocker: blocker.clone(),
        },
    )?;
    scheduler.report_end(&ended);
    let report_path = ws.layout.stop_report(&run_id);
    if let Some(view) = RunView::load(store, Some(&run_id))? {
        let written = report_path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&report_path, crate::report::markdown(&view)));
        if let Err(e) = written {
            eprintln!(
                "warning: could not write the stop report {}: {e}",
                report_path.display()
            );
        }
    }
    drop(lock);
    end?;
    match &blocker {
        None => progress.say(&format!(
            "run {run_id}: complete; {release} now holds every phase"
        )),
        Some(b) => progress.say(&format!("run {run_id}: {state}: {b}")),
    }
    progress.say(&format!("report: {}", report_path.display()));
    Ok(code)
}
