//! `goalpost run`: a plan on the repository, every phase on its own worktree, audited and
//! merged through the gate.

use std::path::Path;

use goalpost_orchestrator::run_cmd;
use goalpost_shared::exit::ExitCode;

use crate::cli::RunArgs;
use crate::error::Error;

pub fn run(args: &RunArgs, dir: &Path) -> Result<ExitCode, Error> {
    Ok(run_cmd::run(
        &args.file,
        dir,
        args.unconfined,
        args.progress.into(),
    )?)
}
