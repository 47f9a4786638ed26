//! How a turn of an agent CLI runs: its command line and per-attempt state from the
//! CLI's adapter, the process under goalpost's supervision, its machine output read back
//! into a [`TurnRecord`], and a bounded retry when the CLI ended without its result.
//! Every try shares the turn's wall budget: no retry starts once it is spent.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use goalpost_shared::process::{self, Outcome, ProcessError};
use goalpost_shared::protocol::{AgentSpec, Role, TurnRecord, Usage};

use super::session::{self, Session};
use super::{Adapter, ERROR_TAIL, RECORD_TAIL, Turn, TurnRequest, empty_record, write_prompt};
use crate::budget::duration_ms;
use crate::prompt::tail;

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
    /// to resume. The prompt goes on stdin unless [`Cli::prompt_arg`] says otherwise.
    fn args(&self, turn: &CliTurn<'_>) -> Vec<String>;
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
    pub spec: &'a AgentSpec,
    pub request: &'a TurnRequest<'a>,
    /// This agent's private state in this attempt: config home, session.
    pub state_dir: PathBuf,
    /// The session this turn continues, if any.
    pub resume: Option<Session>,
}

impl CliTurn<'_> {
    /// `--model` words for the agent's `model`, in the CLI's spelling.
    pub fn model_args(&self, flag: &str) -> Vec<String> {
        self.spec
            .model
            .iter()
            .flat_map(|m| [flag.to_owned(), m.clone()])
            .collect()
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
                spec: &self.spec,
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
        let mut argv: Vec<String> = if self.spec.command.is_empty() {
            vec![self.cli.program().to_owned()]
        } else {
            self.spec.command.clone()
        };
        argv.extend(self.cli.args(turn));
        let mut record = empty_record(&self.spec, request, &argv);
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
        let Some((program, rest)) = argv.split_first() else {
            let why = format!("agent `{name}` has no command to run");
            return fail(record, why, true);
        };
        let cmd = request
            .command(program, rest, timeout)
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

/// The exit status, timing and output tails of a process that ran.
pub(crate) fn fill_record(record: &mut TurnRecord, outcome: &Outcome, stdout: &str) {
    let stderr = outcome.stderr.text_lossy();
    let c = &mut record.record;
    c.exit_code = outcome.status.code;
    c.signal = outcome.status.signal;
    c.duration_ms = duration_ms(outcome.duration);
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

/// Links `from` at `to` (or copies it where links are not possible), replacing `to`.
/// Used to lend an attempt's private CLI home the user's login, read-only by intent.
pub(crate) fn lend(from: &Path, to: &Path) -> std::io::Result<()> {
    if !from.is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_file(to);
    if std::os::unix::fs::symlink(from, to).is_err() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

/// The user's own directory for a CLI: the variable `var` of the agent's environment, or
/// `$HOME/<default>`.
pub(crate) fn user_dir(turn: &CliTurn<'_>, var: &str, default: &str) -> Option<PathBuf> {
    if let Some(dir) = turn.env(var) {
        return Some(PathBuf::from(dir));
    }
    turn.env("HOME").map(|home| Path::new(home).join(default))
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
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use goalpost_shared::plan;

    use super::*;
    use crate::adapter::for_spec;

    /// A stand-in for codex: a shell script printing codex's events.
    fn fake_codex(dir: &Path, body: &str) -> AgentSpec {
        let path = dir.join("codex");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        AgentSpec {
            name: "coder".into(),
            adapter: plan::Adapter::Codex,
            command: vec![path.to_string_lossy().into_owned()],
            args: Vec::new(),
            model: None,
            env: Default::default(),
            price: None,
        }
    }

    fn turn(dir: &Path, spec: &AgentSpec, role: Role) -> Turn {
        let mut env = std::collections::BTreeMap::new();
        env.insert("PATH".into(), std::env::var_os("PATH").unwrap_or_default());
        env.insert("GOALPOST_STATE_DIR".into(), dir.join("state").into());
        let request = TurnRequest {
            role,
            iteration: 1,
            prompt: "do it",
            cwd: dir,
            env,
            prompt_file: dir.join("prompts/implementer-1.md"),
            timeout: Duration::from_secs(30),
            cancel: None,
            tree: None,
            confine: None,
        };
        for_spec(spec).run_turn(&request)
    }

    #[test]
    fn an_implementer_continues_its_session_and_is_charged_its_own_part() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fake_codex(
            dir.path(),
            r#"case "$*" in
  *"resume t1"*) n=300 ;;
  *) n=100 ;;
esac
echo '{"type":"thread.started","thread_id":"t1"}'
echo '{"type":"item.completed","item":{"type":"agent_message","text":"done"}}'
echo "{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":$n,\"cached_input_tokens\":0,\"output_tokens\":$n}}""#,
        );
        let first = turn(dir.path(), &spec, Role::Implementer);
        assert_eq!(first.record.error, None);
        assert_eq!(first.record.message, "done");
        assert_eq!(first.record.usage.tokens_in, 100);
        let second = turn(dir.path(), &spec, Role::Implementer);
        assert!(second.record.record.argv.contains(&"resume".to_owned()));
        assert_eq!(second.record.usage.tokens_in, 200);
        assert_eq!(second.record.usage.tokens_out, 200);
        // A reviewer starts fresh, whatever session the implementer left.
        let review = turn(dir.path(), &spec, Role::Reviewer);
        assert!(!review.record.record.argv.contains(&"resume".to_owned()));
    }

    #[test]
    fn the_commands_an_agent_ran_are_in_its_turn_record() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fake_codex(
            dir.path(),
            r#"echo '{"type":"thread.started","thread_id":"t1"}'
echo '{"type":"item.completed","item":{"type":"command_execution","command":"sh tests/run.sh","exit_code":0,"status":"completed"}}'
echo '{"type":"item.completed","item":{"type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":1}}'"#,
        );
        let t = turn(dir.path(), &spec, Role::Implementer);
        assert_eq!(t.record.error, None);
        assert_eq!(t.record.commands, vec!["sh tests/run.sh".to_owned()]);
        assert_eq!(t.record.usage.tool_calls, 1);
    }

    #[test]
    fn a_cli_without_its_result_is_tried_twice_and_fails_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let spec = fake_codex(
            dir.path(),
            "echo 'not an event'\necho 'model server said 503' >&2",
        );
        let t = turn(dir.path(), &spec, Role::Implementer);
        let error = t.record.error.unwrap();
        assert!(
            error.starts_with("agent `coder` exited 0; printed no codex result"),
            "{error}"
        );
        assert!(
            error.contains("1 line(s) of its output were not its JSON events"),
            "{error}"
        );
        assert!(error.contains("model server said 503"), "{error}");
        assert!(error.ends_with("(after 2 tries)"), "{error}");
        assert_eq!(t.record.usage.turns, 2);
        assert_eq!(t.unavailable, None);
    }

    #[test]
    fn a_missing_cli_is_unavailable_and_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = fake_codex(dir.path(), "");
        spec.command = vec![
            dir.path()
                .join("nowhere/codex")
                .to_string_lossy()
                .into_owned(),
        ];
        let t = turn(dir.path(), &spec, Role::Implementer);
        let why = t.unavailable.unwrap();
        assert!(why.contains("is not an executable file"), "{why}");
        assert!(why.contains("npm install -g @openai/codex"), "{why}");
    }
}
