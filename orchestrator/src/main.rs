//! The `goalpost` command: parse the command line, dispatch to the subcommand's module,
//! and turn its outcome into a documented exit code.

mod agents_cmd;
mod cli;
mod error;
mod plan_cmd;
mod run_cmds;

use clap::Parser;
use goalpost_orchestrator::lifecycle;
use goalpost_shared::exit::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::Error;

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
    match run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            e.report();
            e.exit_code().into()
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let dir = cli.dir.as_path();
    match cli.command {
        Command::Plan(cmd) => plan_cmd::run(cmd),
        Command::Run(args) => Ok(goalpost_orchestrator::run_cmd::run(
            &args.file,
            dir,
            args.unconfined,
        )?),
        Command::Status(args) => run_cmds::status(&args, dir),
        Command::Report(args) => run_cmds::report(&args, dir),
        Command::Audit(args) => run_cmds::audit(&args, dir),
        Command::Approve(args) => run_cmds::approve(&args, dir),
        Command::Pause(args) => Ok(lifecycle::pause(dir, args.now, args.wait)?),
        Command::Resume(args) => Ok(lifecycle::resume(
            dir,
            args.run.as_deref(),
            &args.budgets,
            args.unconfined,
        )?),
        Command::Clear(args) => Ok(lifecycle::clear(
            dir,
            args.run.as_deref(),
            args.purge,
            args.yes,
        )?),
        Command::Gc => Ok(lifecycle::gc(dir)?),
        Command::Agents(args) => agents_cmd::run(&args, dir),
        Command::Demo(args) => Ok(goalpost_orchestrator::demo::demo(args.dir)?),
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
