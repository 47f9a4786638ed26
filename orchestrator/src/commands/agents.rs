//! `goalpost agents [FILE]`: the agents a goal file configures (or, without one, the
//! built-in adapters), whether each executable is found, its version, and the command
//! line goalpost would run for an implementer's first turn, as the agents crate builds
//! it for the turn itself.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use goalpost_agents::{Launch, command_line};
use goalpost_orchestrator::attempt::{WORKER_ENV_ALLOW, agent_spec};
use goalpost_orchestrator::run_cmd::{find_executable, install_hint};
use goalpost_shared::exit::ExitCode;
use goalpost_shared::goal;
use goalpost_shared::plan::Adapter;
use goalpost_shared::process;
use goalpost_shared::protocol::AgentSpec;
use serde_json::{Value, json};

use crate::cli::AgentsArgs;
use crate::error::Error;

/// How long `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: &AgentsArgs, dir: &Path) -> Result<ExitCode, Error> {
    let agents = match &args.file {
        Some(file) => {
            let plan = goal::load(file).map_err(Error::InvalidPlan)?;
            plan.settings
                .agents
                .values()
                .map(|def| agent_spec(def, &plan.settings.prices))
                .collect()
        }
        None => Adapter::ALL
            .into_iter()
            .filter(|adapter| *adapter != Adapter::Command)
            .map(|adapter| AgentSpec {
                name: adapter.as_str().to_owned(),
                adapter,
                command: Vec::new(),
                args: Vec::new(),
                model: None,
                env: Default::default(),
                price: None,
            })
            .collect::<Vec<_>>(),
    };
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut rows = Vec::new();
    let mut missing = false;
    for agent in &agents {
        let line = command_line(agent, &Launch::placeholder());
        let program = &line.program;
        let found = find_executable(program, dir, &path_var);
        let version = found.as_ref().and_then(|exe| version(exe, dir, agent));
        missing |= found.is_none();
        rows.push(json!({
            "name": agent.name,
            "adapter": agent.adapter.as_str(),
            "executable": program,
            "found": found,
            "version": version,
            "command": line.argv(),
            "install": found.is_none().then(|| install_hint(agent.adapter, program)),
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

/// The first line `EXE --version` prints, with the environment an agent would see.
fn version(exe: &Path, dir: &Path, agent: &AgentSpec) -> Option<String> {
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
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(process::shell_quote)
                    .collect()
            })
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
