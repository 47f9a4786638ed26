//! A turn's [`TurnRecord`]: what is recorded before the agent runs, and what its process
//! left (exit status, timing, output tails, the failure in words), for the `command` and
//! the CLI adapters alike.

use std::fs;
use std::path::Path;
use std::time::Duration;

use goalpost_shared::process::Outcome;
use goalpost_shared::protocol::{AgentSpec, CommandRecord, TurnRecord, Usage};

use crate::TurnRequest;

/// Bytes of stdout and stderr kept in a turn's [`CommandRecord`] (the message is whole).
const RECORD_TAIL: usize = 16 * 1024;
/// Bytes of stderr quoted in a failed turn's error.
const ERROR_TAIL: usize = 2_000;

/// A turn record before anything ran: no exit status, no output, one turn of usage
/// (a turn that was attempted counts against the budget).
pub(crate) fn empty_record(
    spec: &AgentSpec,
    request: &TurnRequest<'_>,
    argv: &[String],
) -> TurnRecord {
    TurnRecord {
        role: request.role,
        iteration: request.iteration,
        agent: spec.name.clone(),
        record: CommandRecord {
            tree: request.tree.clone(),
            measured: Default::default(),
            ..CommandRecord::not_run(argv.to_vec(), request.cwd.to_owned())
        },
        usage: Usage {
            turns: 1,
            ..Usage::default()
        },
        message: String::new(),
        verdict: None,
        error: None,
        commands: Vec::new(),
    }
}

pub(crate) fn write_prompt(path: &Path, prompt: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, prompt)
}

/// The exit status, timing and output tails of a process that ran.
pub(crate) fn fill_record(record: &mut TurnRecord, outcome: &Outcome, stdout: &str) {
    let stderr = outcome.stderr.text_lossy();
    let c = &mut record.record;
    c.exit_code = outcome.status.code;
    c.signal = outcome.status.signal;
    c.duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
    c.timed_out = outcome.timed_out;
    c.truncated = outcome.stdout.truncated || outcome.stderr.truncated;
    c.stdout = tail(stdout, RECORD_TAIL).to_owned();
    c.stderr = tail(&stderr, RECORD_TAIL).to_owned();
}

/// How a process that ran failed, if it did: `agent NAME timed out after ..`.
pub(crate) fn process_failure(name: &str, timeout: Duration, outcome: &Outcome) -> Option<String> {
    if outcome.success() {
        return None;
    }
    let how = if outcome.timed_out {
        format!("timed out after {}s", timeout.as_secs())
    } else if outcome.cancelled {
        "was cancelled".to_owned()
    } else {
        format!("ended with {}", outcome.status)
    };
    Some(format!("agent `{name}` {how}"))
}

/// `text`, then `: ` and the stderr tail when there is one.
pub(crate) fn with_stderr(mut text: String, outcome: &Outcome) -> String {
    let stderr_tail = outcome.stderr.tail(ERROR_TAIL);
    if !stderr_tail.trim().is_empty() {
        text.push_str(": ");
        text.push_str(stderr_tail.trim());
    }
    text
}

/// The last `max` bytes of `text`, cut at a character boundary
/// ([`goalpost_shared::process::tail`]).
pub fn tail(text: &str, max: usize) -> &str {
    let cut = goalpost_shared::process::tail(text.as_bytes(), max).cut;
    // A cut of valid UTF-8 at a character boundary: `get` never falls back.
    text.get(cut..).unwrap_or(text)
}
