//! The `goalpost` command: parse the command line, dispatch to the subcommand's module,
//! and turn its outcome into a documented exit code.

mod cli;
mod commands;
mod error;

use clap::Parser;
use goalpost_shared::exit::ExitCode;

use crate::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are not errors.
            let code = if e.use_stderr() {
                ExitCode::BadInput
            } else {
                ExitCode::Complete
            };
            let _ = e.print();
            return code.into();
        }
    };
    init_logging(cli.verbose);
    // The gate decides merges here: every object it reads is hashed again.
    goalpost_shared::git::verify_object_reads();
    match commands::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            e.report();
            e.exit_code().into()
        }
    }
}

/// Logs go to stderr; stdout belongs to the user.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GOALPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
