//! The `codex` adapter: `codex exec --json`, OpenAI's Codex CLI run unattended.
//!
//! Command line: `codex exec --json --skip-git-repo-check --sandbox SANDBOX
//! -c approval_policy="never" [-m MODEL] ARGS... [resume SESSION] -`, the prompt on stdin.
//! SANDBOX is `workspace-write` when the run is unconfined, and `danger-full-access` when
//! goalpost confines the turn itself: codex's own sandbox (bubblewrap, or its older
//! Landlock form, which also wants bubblewrap) cannot be set up inside goalpost's Landlock,
//! and goalpost's confinement already keeps the agent's writes to its worktree.
//! `CODEX_HOME` is a directory of the attempt's own, seeded with the user's `config.toml`
//! (copied) and `auth.json` (linked), from the agent's `CODEX_HOME` or `~/.codex`.
//!
//! Output: JSON lines. `thread.started` names the session; `item.completed` items are
//! `agent_message` (the last is the final message), `command_execution`, `file_change`,
//! `mcp_tool_call`, `web_search` (tool calls) and `error`; `turn.completed` carries the
//! usage (`input_tokens` with `cached_input_tokens` among them, `output_tokens`) and is the
//! result line; `turn.failed` and `error` report errors. A resumed session reports the
//! usage of the whole session, not of the turn. Codex reports no cost.

use std::ffi::OsString;
use std::fs;

use goalpost_shared::protocol::AgentSpec;
use serde_json::Value;

use crate::argv::{Launch, model_args};
use crate::cli::{Cli, CliTurn, Parsed, count, json_lines};
use crate::session::{lend, user_dir};

#[derive(Debug)]
pub(crate) struct Codex;

impl Cli for Codex {
    fn program(&self) -> &'static str {
        "codex"
    }

    fn args(&self, spec: &AgentSpec, launch: &Launch<'_>) -> Vec<String> {
        let mut args: Vec<String> = [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--sandbox",
            sandbox(launch),
            "-c",
            "approval_policy=\"never\"",
        ]
        .map(str::to_owned)
        .into();
        args.extend(model_args(spec, "-m"));
        if let Some(schema) = launch.verdict_schema {
            args.extend(["--output-schema".to_owned(), schema.display().to_string()]);
        }
        args.extend(spec.args.iter().cloned());
        if let Some(session) = launch.resume {
            args.extend(["resume".to_owned(), session.to_owned()]);
        }
        args.push("-".to_owned());
        args
    }

    fn prepare(&self, turn: &CliTurn<'_>) -> std::io::Result<Vec<(String, OsString)>> {
        let home = turn.state_dir.join("codex-home");
        fs::create_dir_all(&home)?;
        if let Some(user) = user_dir(turn, "CODEX_HOME", ".codex") {
            let config = user.join("config.toml");
            if config.is_file() && !home.join("config.toml").exists() {
                fs::copy(&config, home.join("config.toml"))?;
            }
            lend(&user.join("auth.json"), &home.join("auth.json"))?;
        }
        Ok(vec![("CODEX_HOME".to_owned(), home.into_os_string())])
    }

    fn parse(&self, stdout: &str) -> Parsed {
        parse(stdout)
    }

    fn cumulative_usage(&self) -> bool {
        true
    }
}

/// Codex's sandbox mode for a turn started with `launch`.
fn sandbox(launch: &Launch<'_>) -> &'static str {
    if launch.confined {
        "danger-full-access"
    } else {
        "workspace-write"
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

pub(crate) fn parse(stdout: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut completed = false;
    let mut errors = Vec::new();
    for event in json_lines(stdout, &mut p.bad_lines) {
        match event["type"].as_str().unwrap_or_default() {
            "thread.started" => p.session_id = text(&event["thread_id"]),
            "item.completed" => {
                let item = &event["item"];
                match item["type"].as_str().unwrap_or_default() {
                    "agent_message" => p.last_text = text(&item["text"]).unwrap_or_default(),
                    "command_execution" => {
                        p.usage.tool_calls += 1;
                        if let Some(command) = text(&item["command"]) {
                            p.commands.push(command);
                        }
                    }
                    "file_change" | "mcp_tool_call" | "web_search" => p.usage.tool_calls += 1,
                    "error" => errors.extend(text(&item["message"])),
                    _ => {}
                }
            }
            "turn.completed" => {
                completed = true;
                let u = &event["usage"];
                p.usage.tokens_in = count(&u["input_tokens"]);
                p.usage.tokens_cached = count(&u["cached_input_tokens"]);
                p.usage.tokens_out = count(&u["output_tokens"]);
            }
            "turn.failed" => errors.extend(text(&event["error"]["message"])),
            "error" => errors.extend(text(&event["message"])),
            _ => {}
        }
    }
    if completed {
        p.result = Some(p.last_text.clone());
        // What codex reports as an `error` before completing a turn is a warning (a
        // deprecated setting, a retried stream): the turn itself succeeded.
        errors.clear();
    }
    errors.dedup();
    if !errors.is_empty() {
        p.error = Some(errors.join("; "));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by codex-cli 0.169.0 driven by the scripted model server.
    const CAPTURED: &str = r#"{"type":"thread.started","thread_id":"01a2012d-f68f-7810-a1ad-1c5be510a5d8"}
{"type":"turn.started"}
{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc 'echo edited > a.txt'","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc 'echo edited > a.txt'","aggregated_output":"","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Done.\nClaims:\n- a.txt edited"}}
{"type":"turn.completed","usage":{"input_tokens":2300,"cached_input_tokens":1100,"cache_write_input_tokens":0,"output_tokens":70,"reasoning_output_tokens":0}}
"#;

    #[test]
    fn a_captured_turn_is_read() {
        let p = parse(CAPTURED);
        assert_eq!(p.result.as_deref(), Some("Done.\nClaims:\n- a.txt edited"));
        assert_eq!(
            p.session_id.as_deref(),
            Some("01a2012d-f68f-7810-a1ad-1c5be510a5d8")
        );
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (2300, 1100, 70)
        );
        assert_eq!(p.usage.tool_calls, 1);
        assert_eq!(p.commands, ["/bin/bash -lc 'echo edited > a.txt'"]);
        assert_eq!((p.error, p.bad_lines), (None, 0));
    }

    #[test]
    fn a_failed_turn_has_no_result() {
        let out = "{\"type\":\"thread.started\",\"thread_id\":\"t\"}\n\
                   {\"type\":\"error\",\"message\":\"stream disconnected\"}\n\
                   {\"type\":\"turn.failed\",\"error\":{\"message\":\"unexpected status 500\"}}\n\
                   not json\n";
        let p = parse(out);
        assert_eq!(p.result, None);
        assert_eq!(
            p.error.as_deref(),
            Some("stream disconnected; unexpected status 500")
        );
        assert_eq!(p.bad_lines, 1);
    }
}
