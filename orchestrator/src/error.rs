//! The command's errors and the one place each kind becomes an exit code.

use goalpost_shared::exit::ExitCode;
use goalpost_shared::goal::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The goal file has problems; each diagnostic is printed on its own line.
    #[error("{0}")]
    InvalidPlan(Diagnostics),
    /// Already reported on stdout (as `--json`); only the exit code is left to give.
    #[error("")]
    Reported(ExitCode),
    /// `run` and the commands on a run's state.
    #[error(transparent)]
    Run(#[from] goalpost_orchestrator::run_cmd::RunError),
    /// Writing to stdout failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::InvalidPlan(_) => ExitCode::BadInput,
            Error::Reported(code) => *code,
            Error::Run(e) => e.exit_code(),
            Error::Output(_) => ExitCode::Internal,
        }
    }

    /// Prints the error to stderr, the way users read it.
    pub fn report(&self) {
        match self {
            Error::InvalidPlan(d)
            | Error::Run(goalpost_orchestrator::run_cmd::RunError::Plan(d)) => {
                eprint!("{d}");
                let n = d.0.len();
                let file =
                    d.0.first()
                        .map(|d| d.file.display().to_string())
                        .unwrap_or_default();
                let s = if n == 1 { "" } else { "s" };
                eprintln!("error: {n} problem{s} in {file}");
            }
            Error::Reported(_) => {}
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            e => eprintln!("error: {e}"),
        }
    }
}
