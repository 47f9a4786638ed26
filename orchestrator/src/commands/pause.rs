//! `goalpost pause`: asks the running run to stop after its running turns, or at once.

use std::path::Path;

use goalpost_orchestrator::lifecycle;
use goalpost_shared::exit::ExitCode;

use crate::cli::PauseArgs;
use crate::error::Error;

pub fn run(args: &PauseArgs, dir: &Path) -> Result<ExitCode, Error> {
    Ok(lifecycle::pause(dir, args.now, args.wait)?)
}
