//! Agent turns: one invocation of an agent process, whatever CLI it is, turned into a
//! [`TurnRecord`] (final message, usage, error). The worker runs its implementer and
//! reviewer turns through this crate and `goalpost agents` shows with it the command line
//! a turn runs; each process links it on its own, so none of them imports another.
//!
//! Each adapter knows one CLI: its command line ([`command_line`], built in one place
//! for the turn that runs it and for the line that shows it), the private home it gets in
//! each attempt and the session it continues (`session`), and how to read what it
//! printed. The `command` adapter runs any program with the prompt on stdin and in a
//! file. The environment every agent sees ([`agent_env`]), the way a CLI's turn is run,
//! retried and recorded (`cli`), and the pricing of usage a CLI does not cost
//! ([`price_usage`]) are here once, for all adapters.
//!
//! A new adapter for a CLI:
//! 1. add its variant to [`goalpost_shared::plan::Adapter`] (its name and the command
//!    that installs it);
//! 2. write `src/NAME.rs` with a unit struct implementing `cli::Cli`: its executable,
//!    its arguments (the adapter's only argv builder), the private home it prepares and
//!    the parser of its output, tested on output the real CLI printed;
//! 3. declare `mod NAME;` below and map the variant to it in [`command_line`] and
//!    [`for_spec`] (both matches are exhaustive: the compiler points at them);
//! 4. add a case to `argv`'s tests (the line `goalpost agents` shows), its row to the
//!    README's table of adapters and, when the CLI can be installed in CI, a test in
//!    `tests/tests/real_agents.rs` against the scripted model server.

mod aider;
mod argv;
mod claude;
mod cli;
mod codex;
mod command;
mod env;
mod gemini;
mod opencode;
mod record;
mod session;
mod usage;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use goalpost_shared::confine::Confinement;
use goalpost_shared::plan;
use goalpost_shared::process::CancelToken;
use goalpost_shared::protocol::{AgentSpec, Role, TurnRecord};

pub use argv::{CommandLine, Launch, command_line};
pub use env::{agent_env, allowed_env};
pub use record::tail;
pub use usage::{parse_usage, price_usage};

/// Bytes of each output stream kept from an agent turn.
const OUTPUT_CAP: usize = 1 << 20;
/// Between SIGTERM and SIGKILL for an agent's group: short, so a stopped worker still
/// harvests and writes its result within the grace its own parent gives it.
const AGENT_GRACE: Duration = Duration::from_secs(3);

/// One turn to run.
#[derive(Debug)]
pub struct TurnRequest<'a> {
    pub role: Role,
    pub iteration: u32,
    pub prompt: &'a str,
    /// The worktree: the agent's cwd.
    pub cwd: &'a Path,
    /// The agent's whole environment but `GOALPOST_PROMPT_FILE` (see [`agent_env`]).
    pub env: BTreeMap<OsString, OsString>,
    /// Where the prompt goes; the adapter writes it.
    pub prompt_file: PathBuf,
    pub timeout: Duration,
    /// Cancelling it ends the turn at once.
    pub cancel: Option<&'a CancelToken>,
    /// The git tree the turn starts on, for the record.
    pub tree: Option<String>,
    /// Where the agent may write (see [`goalpost_shared::confine`]); `None`: anywhere.
    pub confine: Option<&'a Confinement>,
    /// An auditor's turn: the file holding the verdict's JSON schema
    /// ([`goalpost_shared::verdict::SCHEMA`]), for CLIs that hold their answer to one.
    pub verdict_schema: Option<PathBuf>,
}

impl TurnRequest<'_> {
    /// The agent's process: `program` with `rest` in the worktree, the turn's environment
    /// and `GOALPOST_PROMPT_FILE`, the prompt on stdin, cut at `timeout`, confined as the
    /// turn is.
    pub(crate) fn command(
        &self,
        program: &str,
        rest: &[String],
        timeout: Duration,
    ) -> goalpost_shared::process::Command {
        goalpost_shared::process::Command::new(program, self.cwd)
            .args(rest)
            .envs(self.env.clone())
            .env("GOALPOST_PROMPT_FILE", &self.prompt_file)
            .stdin_bytes(self.prompt.as_bytes())
            .timeout(timeout)
            .grace(AGENT_GRACE)
            .output_cap(OUTPUT_CAP)
            .confine(self.confine.cloned())
    }
}

/// A turn that ran, or could not be started at all.
#[derive(Debug)]
pub struct Turn {
    pub record: TurnRecord,
    /// Set when the agent cannot be started (not installed, adapter missing): retrying
    /// is pointless, the attempt needs this input instead.
    pub unavailable: Option<String>,
}

/// A way to run one agent CLI for one turn.
pub trait Adapter: std::fmt::Debug {
    fn run_turn(&self, request: &TurnRequest<'_>) -> Turn;
}

/// The adapter for `spec`.
pub fn for_spec(spec: &AgentSpec) -> Box<dyn Adapter> {
    match spec.adapter {
        plan::Adapter::Command => Box::new(command::CommandAdapter { spec: spec.clone() }),
        plan::Adapter::Codex => cli::adapter(spec, codex::Codex),
        plan::Adapter::Claude => cli::adapter(spec, claude::Claude),
        plan::Adapter::Gemini => cli::adapter(spec, gemini::Gemini),
        plan::Adapter::Opencode => cli::adapter(spec, opencode::Opencode),
        plan::Adapter::Aider => cli::adapter(spec, aider::Aider),
    }
}

/// Runs one turn of `spec`'s agent. Usage no turn can have (a negative cost, say) is put
/// right and the turn says so in its error. A turn whose
/// CLI reports no cost is priced from the goal file's `[prices]` entry for the agent's
/// model, when there is one.
pub fn run_turn(spec: &AgentSpec, request: &TurnRequest<'_>) -> Turn {
    let mut turn = for_spec(spec).run_turn(request);
    if let Some(why) = usage::refuse_impossible(&mut turn.record.usage) {
        turn.record.error = Some(match turn.record.error.take() {
            Some(error) => format!("{error}; {why}"),
            None => why,
        });
    }
    if let Some(price) = &spec.price {
        price_usage(price, &mut turn.record.usage);
    }
    turn
}
