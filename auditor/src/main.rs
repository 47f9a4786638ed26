//! `goalpost-auditor --input AUDIT_INPUT.json`: the independent audit of one candidate.
//!
//! The orchestrator starts it as a separate process with a cleared environment plus an
//! allow-list (`PATH`, `LANG`, `LC_ALL`, `TZ`) and gives it only an [`AuditInput`]: the
//! repository, the base and candidate commits, the contract, the always-protected paths
//! and the implementer's claims. It never sees the implementer's transcript, environment
//! or worktree: it checks the candidate out afresh at `worktree`, verifies it there, and
//! removes that checkout when done.
//!
//! Contract of the command line:
//! - it writes `report_dir/audit.json` (an [`AuditReport`](goalpost_shared::protocol::AuditReport))
//!   and `report_dir/audit.md`, and prints the recommendation and summary on stdout as one
//!   line (`merge: ...`);
//! - exit 0 when the report was written, whatever the recommendation;
//! - exit 2 when the input is at fault (unreadable input, unknown revisions, bad globs,
//!   a worktree path that already exists), 1 for anything else; the cause is on stderr.

mod agent;
mod audit;
mod canary;
mod census;
mod checkout;
mod claims;
mod held_out;
mod integrity;
mod place;
mod placement;
mod protected;
mod report;
mod runner;
mod surface;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use goalpost_shared::protocol::AuditInput;
use goalpost_shared::{exit, process};

/// Audits one candidate commit against its goal contract.
#[derive(Debug, Parser)]
#[command(name = "goalpost-auditor", version)]
struct Cli {
    /// The audit input (JSON, goalpost's `AuditInput`).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
}

/// What went wrong, and whether the input was at fault.
struct Failure {
    error: anyhow::Error,
    bad_input: bool,
}

/// The orchestrator's pid, from `GOALPOST_PARENT_PID`.
fn parent_pid() -> Option<u32> {
    std::env::var("GOALPOST_PARENT_PID").ok()?.parse().ok()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOALPOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    // The audit decides a merge: every object it reads is hashed again (README
    // "Performance", P4, for what that costs).
    goalpost_shared::git::verify_object_reads();
    // An audit outlives no orchestrator: one that crashed re-audits on `resume`.
    if let Some(parent) = parent_pid()
        && let Ok(false) = process::die_with_parent(process::Signal::Kill, parent)
    {
        eprintln!("goalpost-auditor: the goalpost process that started it is gone");
        return exit::ExitCode::Internal.into();
    }
    match run(&cli) {
        Ok(line) => {
            println!("{line}");
            exit::ExitCode::Complete.into()
        }
        Err(failure) => {
            eprintln!("goalpost-auditor: {:#}", failure.error);
            if failure.bad_input {
                exit::ExitCode::BadInput.into()
            } else {
                exit::ExitCode::Internal.into()
            }
        }
    }
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let bad_input = |error: anyhow::Error| Failure {
        error,
        bad_input: true,
    };
    let bytes = std::fs::read(&cli.input)
        .with_context(|| format!("reading the audit input {}", cli.input.display()))
        .map_err(bad_input)?;
    let input: AuditInput = serde_json::from_slice(&bytes)
        .with_context(|| format!("the audit input {} is not valid", cli.input.display()))
        .map_err(bad_input)?;
    std::fs::create_dir_all(&input.report_dir)
        .with_context(|| {
            format!(
                "creating the report directory {}",
                input.report_dir.display()
            )
        })
        .map_err(|error| Failure {
            error,
            bad_input: false,
        })?;
    let report = audit::audit(&input).map_err(|err| Failure {
        bad_input: err.is_bad_input(),
        error: anyhow::Error::new(err).context(format!(
            "auditing phase {} ({}..{})",
            input.phase, input.base, input.candidate
        )),
    })?;
    let held_out = input
        .held_out
        .as_ref()
        .map(|h| h.feedback)
        .unwrap_or_default();
    report::write(&report, &input.report_dir, held_out)
        .with_context(|| format!("writing the report into {}", input.report_dir.display()))
        .map_err(|error| Failure {
            error,
            bad_input: false,
        })?;
    Ok(format!(
        "{}: {}",
        report.recommendation.as_str(),
        report.summary
    ))
}
