//! The `command` adapter: any program, speaking goalpost's own plain-text convention.

use goalpost_shared::process::{self, ProcessError};
use goalpost_shared::protocol::AgentSpec;

use crate::argv::CommandLine;
use crate::record::{empty_record, fill_record, process_failure, with_stderr, write_prompt};
use crate::{Adapter, Turn, TurnRequest, parse_usage};

/// Any program: argv = `command` + `args`, cwd = the worktree, the prompt on stdin and in
/// the file named by `GOALPOST_PROMPT_FILE`, stdout = the final message. A line
/// `USAGE: tokens_in=N tokens_out=N tokens_cached=N cost_usd=X tool_calls=N` (any subset,
/// the last such line wins) reports usage; without one a turn counts as one turn and no
/// tool calls.
#[derive(Debug)]
pub(crate) struct CommandAdapter {
    pub spec: AgentSpec,
}

/// The `command` adapter's argv builder: the agent's `command`, then its `args`.
pub(crate) fn command_line(spec: &AgentSpec) -> CommandLine {
    let mut words = spec.command.iter().chain(&spec.args).cloned();
    CommandLine {
        program: words.next().unwrap_or_default(),
        args: words.collect(),
    }
}

impl Adapter for CommandAdapter {
    fn run_turn(&self, request: &TurnRequest<'_>) -> Turn {
        let line = command_line(&self.spec);
        let nothing_to_run = self.spec.command.is_empty() && self.spec.args.is_empty();
        let argv = if nothing_to_run {
            Vec::new()
        } else {
            line.argv()
        };
        let mut record = empty_record(&self.spec, request, &argv);
        if let Err(err) = write_prompt(&request.prompt_file, request.prompt) {
            record.error = Some(format!(
                "cannot write the prompt file {}: {err}",
                request.prompt_file.display()
            ));
            return Turn {
                record,
                unavailable: None,
            };
        }
        if nothing_to_run {
            let why = format!("agent `{}` has no command to run", self.spec.name);
            record.error = Some(why.clone());
            return Turn {
                record,
                unavailable: Some(why),
            };
        }
        let cmd = request.command(&line.program, &line.args, request.timeout);
        tracing::info!(
            role = request.role.as_str(),
            iteration = request.iteration,
            "agent {}: {}",
            self.spec.name,
            cmd.command_line()
        );
        let outcome = match process::run(&cmd, request.cancel) {
            Ok(outcome) => outcome,
            Err(err) => {
                let unavailable = matches!(
                    err,
                    ProcessError::NotFound { .. }
                        | ProcessError::PermissionDenied { .. }
                        | ProcessError::EmptyArgv { .. }
                )
                .then(|| format!("agent `{}` cannot be started: {err}", self.spec.name));
                record.error = Some(format!("cannot run agent `{}`: {err}", self.spec.name));
                return Turn {
                    record,
                    unavailable,
                };
            }
        };

        let stdout = outcome.stdout.text_lossy();
        fill_record(&mut record, &outcome, &stdout);
        record.usage = parse_usage(&stdout);
        record.usage.turns = 1;
        record.usage.wall_ms = record.record.duration_ms;
        record.error = process_failure(&self.spec.name, request.timeout, &outcome)
            .map(|why| with_stderr(why, &outcome));
        record.message = stdout;
        Turn {
            record,
            unavailable: None,
        }
    }
}
