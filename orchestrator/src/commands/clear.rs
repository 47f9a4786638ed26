//! `goalpost clear`: removes a run's worktrees once their work is on refs; `--purge` its
//! refs and records too.

use std::path::Path;

use goalpost_orchestrator::lifecycle;
use goalpost_shared::exit::ExitCode;

use crate::cli::ClearArgs;
use crate::error::Error;

pub fn run(args: &ClearArgs, dir: &Path) -> Result<ExitCode, Error> {
    Ok(lifecycle::clear(
        dir,
        args.run.as_deref(),
        args.purge,
        args.yes,
    )?)
}
