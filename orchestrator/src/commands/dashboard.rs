//! `goalpost dashboard`: serves the web dashboard of the repository's runs.

use std::path::Path;

use goalpost_orchestrator::dashboard::{self, Options};
use goalpost_orchestrator::run_cmd::RunError;
use goalpost_shared::exit::ExitCode;

use crate::cli::DashboardArgs;
use crate::error::Error;

pub fn run(args: &DashboardArgs, dir: &Path) -> Result<ExitCode, Error> {
    let goalpost = std::env::current_exe().map_err(|e| {
        RunError::bad(
            format!("cannot find the goalpost executable: {e}"),
            "run goalpost by its path",
        )
    })?;
    let options = Options {
        listen: args.listen,
        allow_remote: args.allow_remote,
        goalpost,
    };
    Ok(dashboard::serve(dir, &options)?)
}
