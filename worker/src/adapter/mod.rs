//! Agent turns: one invocation of an agent process, whatever CLI it is, turned into a
//! [`TurnRecord`] (final message, usage, error). Each adapter knows one CLI's command line
//! and output; the `command` adapter runs any program with the prompt on stdin and in a
//! file. The environment every agent sees is built here, once, for all adapters, and so is
//! the way a CLI's turn is run, retried and recorded ([`cli`]).

mod aider;
mod claude;
pub(crate) mod cli;
mod codex;
mod command;
mod gemini;
mod opencode;
mod session;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use goalpost_shared::plan;
use goalpost_shared::process::CancelToken;
use goalpost_shared::protocol::{AgentSpec, CommandRecord, Role, TurnRecord, Usage, WorkerInput};

/// Bytes of each output stream kept from an agent turn.
const OUTPUT_CAP: usize = 1 << 20;
/// Bytes of stdout and stderr kept in a turn's [`CommandRecord`] (the message is whole).
const RECORD_TAIL: usize = 16 * 1024;
/// Bytes of stderr quoted in a failed turn's error.
const ERROR_TAIL: usize = 2_000;
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
    pub confine: Option<&'a goalpost_shared::confine::Confinement>,
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

/// Runs one turn of `spec`'s agent. A turn whose CLI reports no cost is priced from the
/// goal file's `[prices]` entry for the agent's model, when there is one.
pub fn run_turn(spec: &AgentSpec, request: &TurnRequest<'_>) -> Turn {
    let mut turn = for_spec(spec).run_turn(request);
    if let Some(price) = &spec.price {
        price_usage(price, &mut turn.record.usage);
    }
    turn
}

/// Sets `usage.cost_usd` from `price` (dollars per million tokens) unless the CLI already
/// reported a cost. `tokens_in` counts cached input too; cached tokens cost the cached
/// price.
pub fn price_usage(price: &plan::Price, usage: &mut Usage) {
    if usage.cost_usd > 0.0 {
        return;
    }
    let cached = usage.tokens_cached.min(usage.tokens_in) as f64;
    let fresh = usage.tokens_in as f64 - cached;
    usage.cost_usd = (fresh * price.input_per_mtok
        + cached * price.cached_per_mtok
        + usage.tokens_out as f64 * price.output_per_mtok)
        / 1_000_000.0;
}

/// The environment an agent's turn runs with: the allow-listed variables of the worker's
/// own environment, `TMPDIR` in the attempt's private dir, the run's agent environment,
/// the agent's own `env`, and last (so nothing overrides them) the `GOALPOST_*` facts of
/// the turn. `GOALPOST_PROMPT_FILE` is added by the adapter that writes the file.
pub fn agent_env(
    input: &WorkerInput,
    spec: &AgentSpec,
    role: Role,
    iteration: u32,
    tmpdir: &Path,
) -> BTreeMap<OsString, OsString> {
    let mut env = allowed_env(&input.env_allow);
    env.insert("TMPDIR".into(), tmpdir.into());
    for (key, value) in input.agent_env.iter().chain(&spec.env) {
        env.insert(key.into(), value.into());
    }
    let facts = [
        ("GOALPOST_ROLE", role.as_str().to_owned()),
        ("GOALPOST_PHASE", input.phase.clone()),
        ("GOALPOST_ATTEMPT", input.attempt.to_string()),
        ("GOALPOST_ITERATION", iteration.to_string()),
        ("GOALPOST_RUN", input.run_id.clone()),
    ];
    for (key, value) in facts {
        env.insert(key.into(), value.into());
    }
    env
}

/// The variables named in `names` that are set in the worker's own environment.
pub fn allowed_env(names: &[String]) -> BTreeMap<OsString, OsString> {
    names
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (OsString::from(name), value)))
        .collect()
}

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

/// Usage from the last `USAGE:` line of a `command` agent's output; fields it does not
/// name stay 0, words it does not know are ignored.
pub fn parse_usage(output: &str) -> Usage {
    let mut usage = Usage::default();
    let Some(line) = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USAGE:"))
    else {
        return usage;
    };
    for word in line.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let int = || value.parse::<u64>().ok();
        match key {
            "tokens_in" => usage.tokens_in = int().unwrap_or(0),
            "tokens_out" => usage.tokens_out = int().unwrap_or(0),
            "tokens_cached" => usage.tokens_cached = int().unwrap_or(0),
            "tool_calls" => usage.tool_calls = int().unwrap_or(0),
            "cost_usd" => {
                usage.cost_usd = value
                    .parse::<f64>()
                    .ok()
                    .filter(|c| c.is_finite())
                    .unwrap_or(0.0)
            }
            _ => {}
        }
    }
    usage
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_price_covers_fresh_cached_and_output_tokens_but_never_overrides_a_reported_cost() {
        let price = plan::Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cached_per_mtok: 0.3,
        };
        let mut usage = Usage {
            tokens_in: 1_500,
            tokens_cached: 500,
            tokens_out: 100,
            ..Usage::default()
        };
        price_usage(&price, &mut usage);
        assert!(
            (usage.cost_usd - (1_000.0 * 3.0 + 500.0 * 0.3 + 100.0 * 15.0) / 1e6).abs() < 1e-15
        );
        let mut reported = Usage {
            tokens_in: 1_500,
            cost_usd: 0.5,
            ..Usage::default()
        };
        price_usage(&price, &mut reported);
        assert_eq!(reported.cost_usd, 0.5);
    }
    use super::*;

    #[test]
    fn usage_line_is_read() {
        let out = "working\nUSAGE: tokens_in=10 tokens_out=5\nClaims:\n- x\n\
                   USAGE: tokens_in=1200 tokens_out=340 cost_usd=0.0125 tool_calls=7 bogus\n";
        let usage = parse_usage(out);
        assert_eq!(usage.tokens_in, 1200);
        assert_eq!(usage.tokens_out, 340);
        assert_eq!(usage.tool_calls, 7);
        assert!((usage.cost_usd - 0.0125).abs() < 1e-12);
        assert_eq!(usage.turns, 0);
    }

    #[test]
    fn no_usage_line_is_zero() {
        assert_eq!(parse_usage("done\n"), Usage::default());
        assert_eq!(
            parse_usage("USAGE: tokens_in=abc cost_usd=NaN").tokens_in,
            0
        );
        assert_eq!(
            parse_usage("USAGE: tokens_in=abc cost_usd=NaN").cost_usd,
            0.0
        );
    }
}
