//! `goalpost resume`: goes on with a paused, interrupted, blocked or budget-limited run.

use std::path::Path;

use goalpost_orchestrator::lifecycle;
use goalpost_shared::exit::ExitCode;

use crate::cli::ResumeArgs;
use crate::error::Error;

pub fn run(args: &ResumeArgs, dir: &Path) -> Result<ExitCode, Error> {
    Ok(lifecycle::resume(
        dir,
        args.run.as_deref(),
        &args.budgets,
        args.unconfined,
        args.progress.into(),
    )?)
}
