//! `goalpost status`: where the last run (or a named one) stands.

use std::io::Write as _;
use std::path::Path;

use goalpost_orchestrator::report;
use goalpost_shared::exit::ExitCode;

use super::load_view;
use crate::cli::StatusArgs;
use crate::error::Error;

pub fn run(args: &StatusArgs, dir: &Path) -> Result<ExitCode, Error> {
    let view = load_view(dir, args.run.as_deref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &view).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report::status_text(&view))?;
    }
    Ok(ExitCode::Complete)
}
