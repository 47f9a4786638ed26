//! `goalpost-worker`: runs one round of one attempt. The orchestrator starts it as
//! `goalpost-worker --input IN.json --output OUT.json` and reads OUT.json when it exits.
//!
//! Exit status: 0 whenever OUT.json was written, whatever the attempt's outcome (candidate,
//! blocked, budget limited); 2 when the input cannot be read or does not describe a round
//! that can start (no repository at the worktree, unknown base or previous candidate); 1
//! when the worker failed otherwise before any turn (unwritable private dir, a git failure
//! setting up the round) or could not write the output. A failure after the first turn
//! started is reported in OUT.json as a blocked outcome, with the usage spent so far. Logs go to stderr (`GOALPOST_LOG` filters
//! them, `info` by default); stdout stays empty.

mod attempt;
mod budget;
mod harvest;
mod outcome;
mod progress;
mod prompt;
mod select;
mod stop;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use goalpost_shared::exit::ExitCode;
use goalpost_shared::protocol::{WorkerInput, WorkerResult};

/// Runs one round of one attempt: implementer turns, harvests, verification and reviewer
/// turns, until a candidate, a block or a budget limit.
#[derive(Debug, Parser)]
#[command(name = "goalpost-worker", version)]
struct Args {
    /// The round's input (`WorkerInput` as JSON).
    #[arg(long, value_name = "IN.json")]
    input: PathBuf,
    /// Where to write the result (`WorkerResult` as JSON).
    #[arg(long, value_name = "OUT.json")]
    output: PathBuf,
    /// The input is a `SelectInput`: run one reviewer turn that names a phase's winner
    /// among audited candidates, and write a `SelectResult`.
    #[arg(long)]
    select: bool,
}

/// Why the worker could not produce a result, and which exit code says so.
#[derive(Debug)]
enum Failure {
    BadInput(anyhow::Error),
    Internal(anyhow::Error),
}

fn main() -> std::process::ExitCode {
    init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::Complete.into(),
        Err(Failure::BadInput(err)) => {
            eprintln!("goalpost-worker: {err:#}");
            eprintln!("hint: the input file is written by `goalpost`; check its version");
            ExitCode::BadInput.into()
        }
        Err(Failure::Internal(err)) => {
            eprintln!("goalpost-worker: {err:#}");
            ExitCode::Internal.into()
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    if args.select {
        return run_select(args);
    }
    let mut input = read_input(&args.input).map_err(Failure::BadInput)?;
    // Agents run in the worktree, not in the worker's cwd: the paths they are given
    // (prompt file, TMPDIR) must not depend on where the worker was started.
    for path in [&mut input.worktree, &mut input.private_dir] {
        *path = std::path::absolute(&*path)
            .with_context(|| format!("cannot make {} absolute", path.display()))
            .map_err(Failure::BadInput)?;
    }
    tracing::info!(
        run = %input.run_id,
        phase = %input.phase,
        attempt = input.attempt,
        first_iteration = input.first_iteration,
        "worker round starts"
    );
    let stop = stop::Stop::on_signals().unwrap_or_else(|err| {
        tracing::warn!(
            "cannot watch for SIGTERM/SIGINT/SIGHUP ({err}); the worker stops only when killed"
        );
        stop::Stop::new()
    });
    // The worker outlives no orchestrator: when it dies, the running turn stops, its work
    // is harvested, and `resume` goes on from the attempt ref.
    if let Some(parent) = std::env::var("GOALPOST_PARENT_PID")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        match goalpost_shared::process::die_with_parent(
            goalpost_shared::process::Signal::Term,
            parent,
        ) {
            Ok(true) => {}
            Ok(false) => stop.request("the exit of the goalpost process that started it"),
            Err(err) => tracing::warn!("cannot follow the orchestrator's exit: {err}"),
        }
    }
    let result = attempt::run(&input, &stop).map_err(|err| {
        let bad_input = err.is_bad_input();
        let err = anyhow::Error::new(err).context(format!(
            "cannot start attempt {} of phase {}",
            input.attempt, input.phase
        ));
        if bad_input {
            Failure::BadInput(err)
        } else {
            Failure::Internal(err)
        }
    })?;
    tracing::info!(outcome = ?result.outcome, "worker round ends");
    write_output(&args.output, &result).map_err(Failure::Internal)
}

fn run_select(args: &Args) -> Result<(), Failure> {
    let text = fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))
        .map_err(Failure::BadInput)?;
    let input: goalpost_shared::protocol::SelectInput = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a selection input", args.input.display()))
        .map_err(Failure::BadInput)?;
    let result = select::run(&input)
        .with_context(|| format!("cannot prepare {}", input.private_dir.display()))
        .map_err(Failure::Internal)?;
    write_json(&args.output, &result).map_err(Failure::Internal)
}

fn read_input(path: &Path) -> anyhow::Result<WorkerInput> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a worker input", path.display()))
}

/// Writes the result next to its final path and renames it there, so a reader never sees
/// half a file.
fn write_output(path: &Path, result: &WorkerResult) -> anyhow::Result<()> {
    write_json(path, result)
}

fn write_json(path: &Path, result: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(result).context("cannot serialize the result")?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GOALPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        // Once the orchestrator is gone stderr is a broken pipe, and saying so on stderr
        // again panics; the worker must still end the turn, harvest and write its result.
        .log_internal_errors(false)
        .init();
}
