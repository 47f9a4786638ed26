//! `goalpost demo`: a real run of a 4-phase plan by scripted agents on a sample repository.

use goalpost_orchestrator::demo;
use goalpost_shared::exit::ExitCode;

use crate::cli::DemoArgs;
use crate::error::Error;

pub fn run(args: DemoArgs) -> Result<ExitCode, Error> {
    Ok(demo::demo(args.dir)?)
}
