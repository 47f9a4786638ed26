//! `goalpost report`: the report of the last run (or a named one), as Markdown or JSON.

use std::io::Write as _;
use std::path::Path;

use goalpost_orchestrator::report;
use goalpost_shared::exit::ExitCode;

use super::load_view;
use crate::cli::{ReportArgs, ReportFormat};
use crate::error::Error;

pub fn run(args: &ReportArgs, dir: &Path) -> Result<ExitCode, Error> {
    let view = load_view(dir, args.run.as_deref())?;
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Md => write!(out, "{}", report::markdown(&view))?,
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &view).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::Complete)
}
