//! How a turn of an agent CLI runs: its command line and per-attempt state from the
//! CLI's adapter, the process under goalpost's supervision, its machine output read back
//! into a [`TurnRecord`], and a bounded retry when the CLI ended without its result.
//! Every try shares the turn's wall budget: no retry starts once it is spent.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use goalpost_shared::process::{self, Outcome, ProcessError};
use goalpost_shared::protocol::{AgentSpec, Role, TurnRecord, Usage};

use crate::argv::{Launch, cli_command_line};
use crate::record::{empty_record, fill_record, process_failure, with_stderr, write_prompt};
use crate::session::{self, Session};
use crate::{Adapter, Turn, TurnRequest};

/// Tries of one turn at most: the first and one retry.
const MAX_TRIES: u32 = 2;
/// A retry does not start with less of the wall budget left than this.
const MIN_RETRY_TIME: Duration = Duration::from_secs(5);

/// What one agent CLI's adapter knows: how to start it and how to read what it printed.
pub(crate) trait Cli: std::fmt::Debug {
    /// The executable looked for when the agent's `command` names none.
    fn program(&self) -> &'static str;
    /// The arguments after the executable (and the agent's `command` words): the CLI's
    /// unattended mode and machine output, then the agent's own `args`, then the session
    /// to resume. The prompt goes on stdin unless the CLI reads it from `prompt_file`.
    /// The adapter's only argv builder: the turn runs what it returns, through
    /// [`crate::command_line`], and `goalpost agents` shows it.
    fn args(&self, spec: &AgentSpec, launch: &Launch<'_>) -> Vec<String>;
    /// Sets up the CLI's private state for this attempt (its config home) and returns
    /// the variables that point the CLI at it.
    fn prepare(&self, _turn: &CliTurn<'_>) -> std::io::Result<Vec<(String, OsString)>> {
        Ok(Vec::new())
    }
    /// Reads the CLI's standard output.
    fn parse(&self, stdout: &str) -> Parsed;
    /// Whether a resumed session reports the usage of the whole session rather than of
    /// the turn (the turn's is then the difference from the last report).
    fn cumulative_usage(&self) -> bool {
        false
    }
}

/// One try of one turn, as a [`Cli`] sees it.
pub(crate) struct CliTurn<'a> {
    pub request: &'a TurnRequest<'a>,
    /// This agent's private state in this attempt: config home, session.
    pub state_dir: PathBuf,
    /// The session this turn continues, if any.
    pub resume: Option<Session>,
}

impl CliTurn<'_> {
    /// The runtime parts of this try's command line.
    pub fn launch(&self) -> Launch<'_> {
        Launch {
            role: self.request.role,
            prompt_file: &self.request.prompt_file,
            state_dir: &self.state_dir,
            confined: self.request.confine.is_some(),
            resume: self.resume.as_ref().map(|s| s.id.as_str()),
            verdict_schema: self.request.verdict_schema.as_deref(),
        }
    }

    /// A variable of the agent's environment (the worker's allow-list, the plan's env).
    pub fn env(&self, key: &str) -> Option<&OsString> {
        self.request.env.get(&OsString::from(key))
    }
}

/// What a CLI's output said about its turn.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Parsed {
    /// The final message, when the CLI printed its result; `None` means it did not.
    pub result: Option<String>,
    /// The last assistant text seen, for a turn without a result.
    pub last_text: String,
    /// Tokens, cost (when reported) and tool calls; `turns` is left to the runner.
    pub usage: Usage,
    pub session_id: Option<String>,
    /// Shell commands the agent ran.
    pub commands: Vec<String>,
    /// An error the CLI reported.
    pub error: Option<String>,
    /// Lines that were not in the expected format.
    pub bad_lines: usize,
}

/// A [`Cli`] as an [`Adapter`].
#[derive(Debug)]
struct CliAdapter<C: Cli> {
    spec: AgentSpec,
    cli: C,
}

pub(crate) fn adapter<C: Cli + 'static>(spec: &AgentSpec, cli: C) -> Box<dyn Adapter> {
    Box::new(CliAdapter {
        spec: spec.clone(),
        cli,
    })
}

impl<C: Cli> Adapter for CliAdapter<C> {
    fn run_turn(&self, request: &TurnRequest<'_>) -> Turn {
        let deadline = Instant::now() + request.timeout;
        let state_dir = session::state_dir(request, &self.spec.name);
        // Only an implementer carries its conversation from one iteration to the next;
        // reviewers and auditors judge each time with a fresh one.
        let keeps_session = request.role == Role::Implementer;
        let mut resume = keeps_session.then(|| session::load(&state_dir)).flatten();
        let mut usage = Usage::default();
        let mut tries = 0;
        loop {
            tries += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let turn = CliTurn {
                request,
                state_dir: state_dir.clone(),
                resume: resume.clone(),
            };
            let (mut turn_out, retry) = self.try_once(&turn, left.max(Duration::from_secs(1)));
            usage.add(&turn_out.record.usage);
            // Only a turn that ended well is continued: a failed one's totals are partial.
            if let Some(id) = turn_out.session.take()
                && keeps_session
                && turn_out.record.error.is_none()
                && let Err(err) = session::save(&state_dir, &id)
            {
                tracing::warn!("cannot keep the session of agent {}: {err}", self.spec.name);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let again = retry && tries < MAX_TRIES && left >= MIN_RETRY_TIME;
            if turn_out.record.error.is_none() || !again {
                turn_out.record.usage = usage;
                if tries > 1
                    && let Some(error) = &mut turn_out.record.error
                {
                    error.push_str(&format!(" (after {tries} tries)"));
                }
                return Turn {
                    record: turn_out.record,
                    unavailable: turn_out.unavailable,
                };
            }
            tracing::warn!(
                "agent {} try {tries} failed, trying again: {}",
                self.spec.name,
                turn_out.record.error.as_deref().unwrap_or_default()
            );
            if resume.take().is_some() {
                // A session that cannot be continued is not tried twice.
                session::forget(&state_dir);
            }
        }
    }
}

/// One try: its record, the session it left, whether the agent cannot be started.
struct TryOut {
    record: TurnRecord,
    session: Option<Session>,
    unavailable: Option<String>,
}

impl<C: Cli> CliAdapter<C> {
    /// Runs the CLI once; also says whether a failure is worth another try.
    fn try_once(&self, turn: &CliTurn<'_>, timeout: Duration) -> (TryOut, bool) {
        let request = turn.request;
        let name = &self.spec.name;
        let adapter = self.spec.adapter.as_str();
        let line = cli_command_line(&self.cli, &self.spec, &turn.launch());
        let mut record = empty_record(&self.spec, request, &line.argv());
        let fail = |mut record: TurnRecord, why: String, unavailable: bool| {
            record.error = Some(why.clone());
            let out = TryOut {
                record,
                session: None,
                unavailable: unavailable.then_some(why),
            };
            (out, false)
        };
        if let Err(err) = write_prompt(&request.prompt_file, request.prompt) {
            let why = format!(
                "cannot write the prompt file {}: {err}",
                request.prompt_file.display()
            );
            return fail(record, why, false);
        }
        let extra_env = match self.cli.prepare(turn) {
            Ok(env) => env,
            Err(err) => {
                let why = format!(
                    "cannot prepare the private state of agent `{name}` in {}: {err}",
                    turn.state_dir.display()
                );
                return fail(record, why, false);
            }
        };
        let program = &line.program;
        let cmd = request
            .command(program, &line.args, timeout)
            .envs(extra_env.into_iter().map(|(k, v)| (OsString::from(k), v)));
        tracing::info!(
            role = request.role.as_str(),
            iteration = request.iteration,
            "agent {name} ({adapter}): {}",
            cmd.command_line()
        );
        let outcome = match process::run(&cmd, request.cancel) {
            Ok(outcome) => outcome,
            Err(err) => {
                let missing = matches!(
                    err,
                    ProcessError::NotFound { .. } | ProcessError::PermissionDenied { .. }
                );
                let where_ = if program.contains('/') {
                    "an executable file"
                } else {
                    "an executable on PATH"
                };
                let why = if missing {
                    format!(
                        "agent `{name}` (adapter {adapter}) cannot be started: `{program}` is not {where_}; install it with `{}`",
                        self.spec.adapter.install_command().unwrap_or_default()
                    )
                } else {
                    format!("cannot run agent `{name}`: {err}")
                };
                return fail(record, why, missing);
            }
        };
        let stdout = outcome.stdout.text_lossy();
        let parsed = self.cli.parse(&stdout);
        fill_record(&mut record, &outcome, &stdout);
        for command in &parsed.commands {
            tracing::info!(role = request.role.as_str(), "agent {name} ran: {command}");
        }
        record.commands = parsed.commands.clone();
        record.usage = turn_usage(&self.cli, turn.resume.as_ref(), &parsed.usage);
        record.usage.turns = 1;
        record.usage.wall_ms = record.record.duration_ms;
        let session = parsed.session_id.clone().map(|id| Session {
            id,
            totals: parsed.usage.clone(),
        });
        let (error, retry) = judge(name, adapter, request.timeout, &outcome, &parsed);
        record.error = error;
        record.message = parsed
            .result
            .clone()
            .unwrap_or_else(|| parsed.last_text.clone());
        let out = TryOut {
            record,
            session,
            unavailable: None,
        };
        (out, retry)
    }
}

/// The turn's own usage: for a CLI that reports a resumed session's totals, the part
/// added since the session's last report.
fn turn_usage<C: Cli>(cli: &C, resumed: Option<&Session>, reported: &Usage) -> Usage {
    let mut usage = reported.clone();
    if cli.cumulative_usage()
        && let Some(before) = resumed
    {
        let b = &before.totals;
        if reported.tokens_in >= b.tokens_in && reported.tokens_out >= b.tokens_out {
            usage.tokens_in -= b.tokens_in;
            usage.tokens_out -= b.tokens_out;
            usage.tokens_cached = usage.tokens_cached.saturating_sub(b.tokens_cached);
        }
    }
    usage
}

/// The turn's error, and whether another try may help: a CLI that ended without its
/// result (a crash, a model server that failed, output in another format) may do
/// better; a timeout has spent the budget and a cancel was asked for.
fn judge(
    name: &str,
    adapter: &str,
    timeout: Duration,
    outcome: &Outcome,
    parsed: &Parsed,
) -> (Option<String>, bool) {
    if outcome.timed_out || outcome.cancelled {
        let why = process_failure(name, timeout, outcome).unwrap_or_default();
        return (Some(with_stderr(why, outcome)), false);
    }
    let exit = process_failure(name, timeout, outcome);
    let mut problems = Vec::new();
    if let Some(error) = &parsed.error {
        problems.push(format!("the CLI reported: {error}"));
    }
    if parsed.result.is_none() {
        let mut what = format!("printed no {adapter} result");
        if parsed.bad_lines > 0 {
            what.push_str(&format!(
                " ({} line(s) of its output were not its JSON events)",
                parsed.bad_lines
            ));
        }
        problems.push(what);
    }
    if exit.is_none() && problems.is_empty() {
        return (None, false);
    }
    let head = exit.unwrap_or_else(|| format!("agent `{name}` exited 0"));
    let why = if problems.is_empty() {
        head
    } else {
        format!("{head}; {}", problems.join("; "))
    };
    (Some(with_stderr(why, outcome)), true)
}

/// A token count in a CLI's JSON output; 0 where it is missing or not a count.
pub(crate) fn count(value: &serde_json::Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Parses JSON lines; blank lines are skipped, others that are not JSON are counted.
pub(crate) fn json_lines(stdout: &str, bad: &mut usize) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l.trim()) {
            Ok(v @ serde_json::Value::Object(_)) => Some(v),
            _ => {
                *bad += 1;
                None
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
