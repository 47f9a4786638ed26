//! `goalpost agents [FILE]`: the agents a goal file configures (or, without one, the
//! built-in adapters), whether each executable is found, its version, and the command
//! line goalpost would run for an implementer's first turn.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use goalpost_orchestrator::attempt::WORKER_ENV_ALLOW;
use goalpost_orchestrator::run_cmd::{find_executable, install_hint};
use goalpost_shared::exit::ExitCode;
use goalpost_shared::goal;
use goalpost_shared::plan::Adapter;
use goalpost_shared::process;
use serde_json::{Value, json};

use crate::cli::AgentsArgs;
use crate::error::Error;

/// How long `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// One agent as `agents` shows it.
struct Agent {
    name: String,
    adapter: Adapter,
    /// The executable and its leading arguments.
    command: Vec<String>,
    args: Vec<String>,
    model: Option<String>,
    env: Vec<(String, String)>,
}

pub fn run(args: &AgentsArgs, dir: &Path) -> Result<ExitCode, Error> {
    let agents = match &args.file {
        Some(file) => {
            let plan = goal::load(file).map_err(Error::InvalidPlan)?;
            plan.settings
                .agents
                .values()
                .map(|def| Agent {
                    name: def.name.value.clone(),
                    adapter: def.adapter.value,
                    command: def.command.clone(),
                    args: def.args.clone(),
                    model: def.model.clone(),
                    env: def
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
                .collect()
        }
        None => [
            Adapter::Codex,
            Adapter::Claude,
            Adapter::Gemini,
            Adapter::Opencode,
            Adapter::Aider,
        ]
        .into_iter()
        .map(|adapter| Agent {
            name: adapter.as_str().to_owned(),
            adapter,
            command: Vec::new(),
            args: Vec::new(),
            model: None,
            env: Vec::new(),
        })
        .collect::<Vec<_>>(),
    };
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut rows = Vec::new();
    let mut missing = false;
    for agent in &agents {
        let program = agent
            .command
            .first()
            .cloned()
            .unwrap_or_else(|| default_program(agent.adapter).to_owned());
        let found = find_executable(&program, dir, &path_var);
        let version = found.as_ref().and_then(|exe| version(exe, dir, agent));
        missing |= found.is_none();
        rows.push(json!({
            "name": agent.name,
            "adapter": agent.adapter.as_str(),
            "executable": program,
            "found": found,
            "version": version,
            "command": command_line(agent, &program),
            "install": found.is_none().then(|| install_hint(agent.adapter, &program)),
        }));
    }
    let out = if args.json {
        format!("{:#}\n", Value::Array(rows))
    } else {
        text(&rows)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    // Without a goal file the list is informational: not every CLI need be installed.
    Ok(if missing && args.file.is_some() {
        ExitCode::BadInput
    } else {
        ExitCode::Complete
    })
}

fn default_program(adapter: Adapter) -> &'static str {
    match adapter {
        Adapter::Command => "",
        other => other.as_str(),
    }
}

/// The first line `EXE --version` prints, with the environment an agent would see.
fn version(exe: &Path, dir: &Path, agent: &Agent) -> Option<String> {
    let mut env = process::env_allowlist(WORKER_ENV_ALLOW);
    for (key, value) in &agent.env {
        env.insert(OsString::from(key), OsString::from(value));
    }
    let cmd = process::Command::new(exe.as_os_str(), dir)
        .args(agent.command.iter().skip(1))
        .arg("--version")
        .envs(env)
        .timeout(VERSION_TIMEOUT)
        .output_cap(64 * 1024);
    let outcome = process::run(&cmd, None).ok()?;
    if !outcome.success() {
        return None;
    }
    let text = outcome.stdout.text_lossy();
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// The argv of an implementer's first turn, as the worker's adapter builds it (the
/// worker is the one that runs it; `real_agents` checks the two agree).
fn command_line(agent: &Agent, program: &str) -> Vec<String> {
    let mut argv: Vec<String> = if agent.command.is_empty() {
        vec![program.to_owned()]
    } else {
        agent.command.clone()
    };
    let words: &[&str] = match agent.adapter {
        Adapter::Codex => &[
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--sandbox",
            // Goalpost's own confinement replaces codex's sandbox, which cannot be set up
            // inside it; `goalpost run --unconfined` keeps codex's `workspace-write`.
            "danger-full-access",
            "-c",
            "approval_policy=\"never\"",
        ],
        Adapter::Claude => &[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Bash,Edit,MultiEdit,Write,Read,Glob,Grep,NotebookEdit,TodoWrite",
        ],
        Adapter::Gemini => &["-o", "stream-json", "--approval-mode", "yolo"],
        Adapter::Opencode => &["run", "--format", "json"],
        Adapter::Aider => &[
            "--message-file",
            "PROMPT_FILE",
            "--yes-always",
            "--no-pretty",
            "--no-stream",
            "--no-git",
            "--no-check-update",
            "--analytics-disable",
            "--no-show-model-warnings",
            "--no-suggest-shell-commands",
            "--no-detect-urls",
            "--map-tokens",
            "0",
            "--input-history-file",
            "STATE/input.history",
            "--chat-history-file",
            "STATE/chat.history.md",
        ],
        Adapter::Command => &[],
    };
    argv.extend(words.iter().map(|w| (*w).to_owned()));
    if let Some(model) = &agent.model {
        let flag = match agent.adapter {
            Adapter::Codex | Adapter::Gemini | Adapter::Opencode => Some("-m"),
            Adapter::Claude | Adapter::Aider => Some("--model"),
            Adapter::Command => None,
        };
        if let Some(flag) = flag {
            argv.extend([flag.to_owned(), model.clone()]);
        }
    }
    argv.extend(agent.args.iter().cloned());
    if agent.adapter == Adapter::Codex {
        argv.push("-".to_owned());
    }
    argv
}

/// A word of a command line as a shell would need it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn text(rows: &[Value]) -> String {
    let mut out = String::new();
    for row in rows {
        let s = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
        let state = match row["found"].as_str() {
            Some(path) => match row["version"].as_str() {
                Some(v) => format!("{path} ({v})"),
                None => format!("{path} (no version)"),
            },
            None => format!("`{}` not found; install: {}", s("executable"), s("install")),
        };
        let argv: Vec<String> = row["command"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(shell_word).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{}  [{}]  {state}\n    runs: {}\n",
            s("name"),
            s("adapter"),
            argv.join(" ")
        ));
    }
    if rows.is_empty() {
        out.push_str("no agents configured\n");
    }
    out
}
