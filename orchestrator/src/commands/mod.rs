//! One module per subcommand, each a thin layer over the library: take the parsed
//! arguments, call, print. [`run`] dispatches.

mod agents;
mod approve;
mod audit;
mod clear;
mod dashboard;
mod demo;
mod gc;
mod pause;
mod plan;
mod report;
mod resume;
mod run;
mod status;

use std::path::Path;

use goalpost_orchestrator::run_cmd::{RunError, Workspace};
use goalpost_shared::exit::ExitCode;
use goalpost_state::{RunView, Store};

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Carries out the subcommand `cli` names.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let dir = cli.dir.as_path();
    match cli.command {
        Command::Plan(cmd) => plan::run(cmd),
        Command::Run(args) => run::run(&args, dir),
        Command::Status(args) => status::run(&args, dir),
        Command::Report(args) => report::run(&args, dir),
        Command::Audit(args) => audit::run(&args, dir),
        Command::Approve(args) => approve::run(&args, dir),
        Command::Pause(args) => pause::run(&args, dir),
        Command::Resume(args) => resume::run(&args, dir),
        Command::Clear(args) => clear::run(&args, dir),
        Command::Gc => gc::run(dir),
        Command::Agents(args) => agents::run(&args, dir),
        Command::Dashboard(args) => dashboard::run(&args, dir),
        Command::Demo(args) => demo::run(args),
    }
}

/// The view of run `run` (the last one without it) of the repository at `dir`, for the
/// commands that read a recorded run.
fn load_view(dir: &Path, run: Option<&str>) -> Result<RunView, Error> {
    Ok(open_run(dir, run)?.1)
}

/// The state store of the repository at `dir` and the view of run `run` in it (the last
/// one without it), with the repository's layout.
fn open_run(dir: &Path, run: Option<&str>) -> Result<(Store, RunView, Workspace), Error> {
    let ws = Workspace::open(dir)?;
    let no_runs = || {
        RunError::bad(
            format!(
                "{} has no goalpost run{}",
                ws.workdir.display(),
                run.map(|r| format!(" {r}")).unwrap_or_default()
            ),
            "start one with `goalpost run GOAL.md`",
        )
    };
    let store = Store::open_existing(&ws.layout.store())
        .map_err(RunError::from)?
        .ok_or_else(no_runs)?;
    let view = RunView::load(&store, run)
        .map_err(RunError::from)?
        .ok_or_else(no_runs)?;
    Ok((store, view, ws))
}
