//! `goalpost gc`: removes the worktrees no live run needs, never one holding work that is
//! on no ref.

use std::path::Path;

use goalpost_orchestrator::lifecycle;
use goalpost_shared::exit::ExitCode;

use crate::error::Error;

pub fn run(dir: &Path) -> Result<ExitCode, Error> {
    Ok(lifecycle::gc(dir)?)
}
