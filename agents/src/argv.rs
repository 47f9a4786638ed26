//! The command line of an agent's turn, built in one place per adapter: the worker's turn
//! runs what [`command_line`] returns and `goalpost agents` prints it, so no adapter's
//! flags are written twice.

use std::path::Path;

use goalpost_shared::plan::Adapter;
use goalpost_shared::protocol::{AgentSpec, Role};

use crate::cli::Cli;
use crate::{aider, claude, codex, command, gemini, opencode};

/// What a turn's command line depends on besides the agent's definition: the parts only
/// known when the turn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch<'a> {
    /// Implementers and reviewers get different permissions from some CLIs.
    pub role: Role,
    /// The file the prompt is written to (aider reads it from there, the others from stdin).
    pub prompt_file: &'a Path,
    /// The agent's private state dir in its attempt: its CLI home, session and histories.
    pub state_dir: &'a Path,
    /// goalpost confines the turn itself, so a CLI's own sandbox, which cannot be set up
    /// inside goalpost's, is off (`goalpost run --unconfined` leaves it on).
    pub confined: bool,
    /// The id of the session the turn continues, if any.
    pub resume: Option<&'a str>,
    /// An auditor's turn: the file of the verdict's JSON schema.
    pub verdict_schema: Option<&'a Path>,
}

impl Launch<'static> {
    /// The runtime parts `goalpost agents` shows an implementer's first turn with: the
    /// placeholders `PROMPT_FILE` and `STATE` for the paths only an attempt has,
    /// goalpost's confinement on (as `goalpost run` has it by default), no session yet.
    pub fn placeholder() -> Launch<'static> {
        Launch {
            role: Role::Implementer,
            prompt_file: Path::new("PROMPT_FILE"),
            state_dir: Path::new("STATE"),
            confined: true,
            resume: None,
            verdict_schema: None,
        }
    }
}

/// A program and the arguments it runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The agent's `command`'s first word, or the adapter's executable.
    pub program: String,
    pub args: Vec<String>,
}

impl CommandLine {
    /// The program, then its arguments.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(&self.program)
            .chain(&self.args)
            .cloned()
            .collect()
    }
}

/// The command line of `spec`'s turn started with `launch`: for a CLI adapter, the
/// agent's `command` (or the CLI's executable), the CLI's unattended mode and machine
/// output, the model, the agent's own `args` and the session to resume; for `command`,
/// the agent's `command` and `args`.
pub fn command_line(spec: &AgentSpec, launch: &Launch<'_>) -> CommandLine {
    match spec.adapter {
        Adapter::Command => command::command_line(spec),
        Adapter::Codex => cli_command_line(&codex::Codex, spec, launch),
        Adapter::Claude => cli_command_line(&claude::Claude, spec, launch),
        Adapter::Gemini => cli_command_line(&gemini::Gemini, spec, launch),
        Adapter::Opencode => cli_command_line(&opencode::Opencode, spec, launch),
        Adapter::Aider => cli_command_line(&aider::Aider, spec, launch),
    }
}

/// [`command_line`] for the CLI `cli` drives.
pub(crate) fn cli_command_line<C: Cli>(
    cli: &C,
    spec: &AgentSpec,
    launch: &Launch<'_>,
) -> CommandLine {
    let (program, mut args) = match spec.command.split_first() {
        Some((program, lead)) => (program.clone(), lead.to_vec()),
        None => (cli.program().to_owned(), Vec::new()),
    };
    args.extend(cli.args(spec, launch));
    CommandLine { program, args }
}

/// `FLAG MODEL` for the agent's `model`, in the CLI's spelling of the flag.
pub(crate) fn model_args(spec: &AgentSpec, flag: &str) -> Vec<String> {
    spec.model
        .iter()
        .flat_map(|m| [flag.to_owned(), m.clone()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(adapter: Adapter) -> AgentSpec {
        AgentSpec {
            name: "coder".into(),
            adapter,
            command: Vec::new(),
            args: vec!["--extra".into()],
            model: Some("m1".into()),
            env: Default::default(),
            price: None,
        }
    }

    /// What `goalpost agents` prints for `adapter`'s agent with model `m1` and the
    /// argument `--extra`.
    fn shown(adapter: Adapter) -> Vec<String> {
        command_line(&spec(adapter), &Launch::placeholder()).argv()
    }

    fn words(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn codex_runs_unattended_under_goalposts_confinement() {
        assert_eq!(
            shown(Adapter::Codex),
            words(
                "codex exec --json --skip-git-repo-check --sandbox danger-full-access \
                 -c approval_policy=\"never\" -m m1 --extra -"
            )
        );
        let launch = Launch {
            confined: false,
            resume: Some("t1"),
            ..Launch::placeholder()
        };
        let line = command_line(&spec(Adapter::Codex), &launch);
        assert_eq!(line.args[4], "workspace-write");
        assert!(line.argv().ends_with(&words("--extra resume t1 -")));
    }

    #[test]
    fn claude_lets_an_implementer_edit_and_a_reviewer_only_read() {
        assert_eq!(
            shown(Adapter::Claude),
            words(
                "claude -p --output-format stream-json --verbose --permission-mode acceptEdits \
                 --allowedTools Bash,Edit,MultiEdit,Write,Read,Glob,Grep,NotebookEdit,TodoWrite \
                 --model m1 --extra"
            )
        );
        let launch = Launch {
            role: Role::Reviewer,
            resume: Some("s1"),
            ..Launch::placeholder()
        };
        assert!(
            command_line(&spec(Adapter::Claude), &launch)
                .argv()
                .ends_with(&words(
                    "--permission-mode default --allowedTools Bash,Read,Glob,Grep \
                     --model m1 --extra --resume s1"
                ))
        );
    }

    #[test]
    fn an_auditors_turn_holds_codex_and_claude_to_the_verdict_schema() {
        let launch = Launch {
            role: Role::Auditor,
            verdict_schema: Some(Path::new("/a/verdict.schema.json")),
            ..Launch::placeholder()
        };
        let codex = command_line(&spec(Adapter::Codex), &launch).argv();
        assert!(
            codex.ends_with(&words(
                "-m m1 --output-schema /a/verdict.schema.json --extra -"
            )),
            "{codex:?}"
        );
        let claude = command_line(&spec(Adapter::Claude), &launch).argv();
        let at = claude.iter().position(|a| a == "--json-schema").unwrap();
        let schema: serde_json::Value = serde_json::from_str(&claude[at + 1]).unwrap();
        assert_eq!(schema["required"][0], "recommendation");
        // An auditor reads and runs; it does not edit.
        assert!(
            claude
                .windows(2)
                .any(|w| w == words("--allowedTools Bash,Read,Glob,Grep"))
        );
        // Without a schema, neither flag.
        let plain = command_line(&spec(Adapter::Codex), &Launch::placeholder()).argv();
        assert!(!plain.iter().any(|a| a == "--output-schema"));
    }

    #[test]
    fn gemini_and_opencode_print_json_events_and_resume_their_session() {
        assert_eq!(
            shown(Adapter::Gemini),
            words("gemini -o stream-json --approval-mode yolo -m m1 --extra")
        );
        assert_eq!(
            shown(Adapter::Opencode),
            words("opencode run --format json -m m1 --extra")
        );
        let launch = Launch {
            resume: Some("s1"),
            ..Launch::placeholder()
        };
        let resumed = |adapter| command_line(&spec(adapter), &launch).argv();
        assert!(resumed(Adapter::Gemini).ends_with(&words("--extra --resume s1")));
        assert!(resumed(Adapter::Opencode).ends_with(&words("--extra --session s1")));
    }

    #[test]
    fn aider_reads_the_prompt_file_and_keeps_its_histories_in_the_state_dir() {
        assert_eq!(
            shown(Adapter::Aider),
            words(
                "aider --message-file PROMPT_FILE --yes-always --no-pretty --no-stream --no-git \
                 --no-check-update --analytics-disable --no-show-model-warnings \
                 --no-suggest-shell-commands --no-detect-urls --map-tokens 0 \
                 --input-history-file STATE/input.history \
                 --chat-history-file STATE/chat.history.md --model m1 --extra"
            )
        );
    }

    #[test]
    fn a_command_agent_runs_its_command_and_args_and_an_agents_command_replaces_the_cli() {
        let mut command = spec(Adapter::Command);
        command.command = words("./tools/agent.sh --fast");
        assert_eq!(
            command_line(&command, &Launch::placeholder()),
            CommandLine {
                program: "./tools/agent.sh".into(),
                args: words("--fast --extra"),
            }
        );
        let mut gemini = spec(Adapter::Gemini);
        gemini.command = words("npx gemini");
        let line = command_line(&gemini, &Launch::placeholder());
        assert_eq!(line.program, "npx");
        assert_eq!(line.args[..3], words("gemini -o stream-json"));
    }
}
