//! `goalpost approve`: moves the release branch of a run that waits for human approval.

use std::path::Path;

use goalpost_orchestrator::approve;
use goalpost_shared::exit::ExitCode;

use crate::cli::ApproveArgs;
use crate::error::Error;

pub fn run(args: &ApproveArgs, dir: &Path) -> Result<ExitCode, Error> {
    Ok(approve::approve(dir, args.run.as_deref())?)
}
