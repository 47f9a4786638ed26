//! The `claude` adapter: `claude -p --output-format stream-json --verbose`, Claude Code
//! run unattended.
//!
//! Command line: `claude -p --output-format stream-json --verbose --permission-mode MODE
//! --allowedTools TOOLS [--model MODEL] ARGS... [--resume SESSION]`, the prompt on stdin.
//! An implementer (`acceptEdits`) may edit and run commands; a reviewer (`default`) may
//! read, search and run commands, and its edits are refused. `CLAUDE_CONFIG_DIR` is a directory of the attempt's own with the
//! user's `.credentials.json` linked in (from the agent's `CLAUDE_CONFIG_DIR` or
//! `~/.claude`); `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` keeps it to the model calls.
//!
//! Output: JSON lines. `system`/`init` names the session; `assistant` messages carry text
//! and `tool_use` blocks (tool calls; a `Bash` one's `input.command` is a command run); the
//! `result` line ends the turn with `result` (the final message), `is_error`,
//! `total_cost_usd`, `num_turns` and `modelUsage` (per model: `inputTokens`,
//! `cacheReadInputTokens`, `cacheCreationInputTokens`, `outputTokens`) that counts every
//! model call the turn made. Tokens in count the cached ones, as OpenAI counts them.

use std::ffi::OsString;
use std::fs;

use goalpost_shared::protocol::{AgentSpec, Role};
use serde_json::Value;

use crate::argv::{Launch, model_args};
use crate::cli::{Cli, CliTurn, Parsed, count, json_lines};
use crate::session::{lend, user_dir};

#[derive(Debug)]
pub(crate) struct Claude;

/// Tools an implementer may use without being asked.
const IMPLEMENTER_TOOLS: &str = "Bash,Edit,MultiEdit,Write,Read,Glob,Grep,NotebookEdit,TodoWrite";
/// Tools a reviewer may use: it reads and runs, it does not edit.
const REVIEWER_TOOLS: &str = "Bash,Read,Glob,Grep";

impl Cli for Claude {
    fn program(&self) -> &'static str {
        "claude"
    }

    fn args(&self, spec: &AgentSpec, launch: &Launch<'_>) -> Vec<String> {
        // A reviewer's edits are not accepted: in print mode what is neither allowed nor
        // accepted is refused, never asked about.
        let (mode, tools) = match launch.role {
            Role::Implementer => ("acceptEdits", IMPLEMENTER_TOOLS),
            _ => ("default", REVIEWER_TOOLS),
        };
        let mut args: Vec<String> = [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            mode,
            "--allowedTools",
            tools,
        ]
        .map(str::to_owned)
        .into();
        args.extend(model_args(spec, "--model"));
        if launch.verdict_schema.is_some() {
            // Claude Code takes the schema itself, and answers through its
            // `StructuredOutput` tool: the result line holds the JSON.
            args.extend(["--json-schema".to_owned(), compact_schema()]);
        }
        args.extend(spec.args.iter().cloned());
        if let Some(session) = launch.resume {
            args.extend(["--resume".to_owned(), session.to_owned()]);
        }
        args
    }

    fn prepare(&self, turn: &CliTurn<'_>) -> std::io::Result<Vec<(String, OsString)>> {
        let config = turn.state_dir.join("claude-config");
        fs::create_dir_all(&config)?;
        if let Some(user) = user_dir(turn, "CLAUDE_CONFIG_DIR", ".claude") {
            lend(
                &user.join(".credentials.json"),
                &config.join(".credentials.json"),
            )?;
        }
        let mut env = vec![("CLAUDE_CONFIG_DIR".to_owned(), config.into_os_string())];
        for key in [
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
            "DISABLE_AUTOUPDATER",
        ] {
            if turn.env(key).is_none() {
                env.push((key.to_owned(), "1".into()));
            }
        }
        Ok(env)
    }

    fn parse(&self, stdout: &str) -> Parsed {
        parse(stdout)
    }
}

/// The verdict's schema on one line.
fn compact_schema() -> String {
    serde_json::from_str::<Value>(goalpost_shared::verdict::SCHEMA)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| goalpost_shared::verdict::SCHEMA.to_owned())
}

pub(crate) fn parse(stdout: &str) -> Parsed {
    let mut p = Parsed::default();
    for event in json_lines(stdout, &mut p.bad_lines) {
        match event["type"].as_str().unwrap_or_default() {
            "system" => {
                if let Some(id) = event["session_id"].as_str() {
                    p.session_id = Some(id.to_owned());
                }
            }
            "assistant" => {
                let blocks = event["message"]["content"].as_array().cloned();
                for block in blocks.unwrap_or_default() {
                    match block["type"].as_str().unwrap_or_default() {
                        "text" => {
                            p.last_text = block["text"].as_str().unwrap_or_default().to_owned()
                        }
                        "tool_use" => {
                            p.usage.tool_calls += 1;
                            if block["name"] == "Bash"
                                && let Some(command) = block["input"]["command"].as_str()
                            {
                                p.commands.push(command.to_owned());
                            }
                        }
                        _ => {}
                    }
                }
            }
            "result" => result_line(&event, &mut p),
            _ => {}
        }
    }
    p
}

fn result_line(event: &Value, p: &mut Parsed) {
    let text = event["result"].as_str().unwrap_or_default().to_owned();
    if let Some(id) = event["session_id"].as_str() {
        p.session_id = Some(id.to_owned());
    }
    p.usage.cost_usd = event["total_cost_usd"].as_f64().unwrap_or(0.0);
    match event["modelUsage"].as_object() {
        Some(models) if !models.is_empty() => {
            for m in models.values() {
                let cached = count(&m["cacheReadInputTokens"]);
                p.usage.tokens_in +=
                    count(&m["inputTokens"]) + cached + count(&m["cacheCreationInputTokens"]);
                p.usage.tokens_cached += cached;
                p.usage.tokens_out += count(&m["outputTokens"]);
            }
        }
        _ => {
            let u = &event["usage"];
            let cached = count(&u["cache_read_input_tokens"]);
            p.usage.tokens_in =
                count(&u["input_tokens"]) + cached + count(&u["cache_creation_input_tokens"]);
            p.usage.tokens_cached = cached;
            p.usage.tokens_out = count(&u["output_tokens"]);
        }
    }
    let failed = event["is_error"].as_bool().unwrap_or(false)
        || event["subtype"].as_str().is_some_and(|s| s != "success");
    if failed {
        let subtype = event["subtype"].as_str().unwrap_or("error");
        p.error = Some(if text.is_empty() {
            subtype.to_owned()
        } else {
            format!("{subtype}: {text}")
        });
    }
    if !text.is_empty() {
        p.last_text = text.clone();
    }
    p.result = Some(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by Claude Code 2.1.197 driven by the scripted model server (the `init`
    /// line shortened).
    const CAPTURED: &str = r#"{"type":"system","subtype":"init","cwd":"/tmp/cx/repo","session_id":"c6ab75b5-027a-4fd7-826d-9a15fad275fc","tools":["Bash","Edit","Read"],"model":"claude-sonnet-4-5","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197"}
{"type":"assistant","message":{"content":[{"text":"Looks right.\nVERDICT: approve","type":"text"}],"id":"msg_2","model":"claude-sonnet-4-5","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":500,"input_tokens":1500,"output_tokens":1},"context_management":null},"parent_tool_use_id":null,"session_id":"c6ab75b5-027a-4fd7-826d-9a15fad275fc","uuid":"3e347dc6-5f0b-4bcb-ab00-c9def5d67d65"}
{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":114,"duration_api_ms":39,"num_turns":1,"result":"Looks right.\nVERDICT: approve","stop_reason":"end_turn","session_id":"c6ab75b5-027a-4fd7-826d-9a15fad275fc","total_cost_usd":0.0051,"usage":{"input_tokens":1500,"cache_creation_input_tokens":0,"cache_read_input_tokens":500,"output_tokens":30,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard"},"modelUsage":{"claude-sonnet-4-5":{"inputTokens":1500,"outputTokens":30,"cacheReadInputTokens":500,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.0051,"contextWindow":200000,"maxOutputTokens":32000}},"permission_denials":[],"terminal_reason":"completed","uuid":"d560cbdd-f420-478e-9c24-c171077b0275"}
"#;

    #[test]
    fn a_captured_turn_is_read() {
        let p = parse(CAPTURED);
        assert_eq!(p.result.as_deref(), Some("Looks right.\nVERDICT: approve"));
        assert_eq!(
            p.session_id.as_deref(),
            Some("c6ab75b5-027a-4fd7-826d-9a15fad275fc")
        );
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (2000, 500, 30)
        );
        assert!((p.usage.cost_usd - 0.0051).abs() < 1e-12);
        assert_eq!((p.error, p.bad_lines), (None, 0));
    }

    /// An implementer's turn printed by Claude Code 2.1.197 (the result line shortened): a
    /// Bash tool call, its result, the answer.
    const CAPTURED_TOOL_TURN: &str = r##"{"type":"assistant","message":{"content":[{"id":"toolu_2_0","input":{"command":"printf 'done\n' > notes.txt","description":"finish"},"name":"Bash","type":"tool_use"}],"id":"msg_2","model":"claude-sonnet-4-5","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":200,"input_tokens":800,"output_tokens":1},"context_management":null},"parent_tool_use_id":null,"session_id":"a17c3e92-45b2-4cfc-9696-8d5fea882bdb","uuid":"522b5c8d-43b7-4b97-8a86-a559da6d556e"}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_2_0","type":"tool_result","content":"(Bash completed with no output)","is_error":false}]},"parent_tool_use_id":null,"session_id":"a17c3e92-45b2-4cfc-9696-8d5fea882bdb","uuid":"120b7c15-6f00-4628-a402-397dd591e7c0","timestamp":"2026-11-22T03:39:10.089Z","tool_use_result":{"stdout":"","stderr":"","interrupted":false,"isImage":false,"noOutputExpected":false}}
{"type":"assistant","message":{"content":[{"text":"Finished.","type":"text"}],"id":"msg_3","model":"claude-sonnet-4-5","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":900,"input_tokens":400,"output_tokens":1},"context_management":null},"parent_tool_use_id":null,"session_id":"a17c3e92-45b2-4cfc-9696-8d5fea882bdb","uuid":"fcb86cbe-88da-4041-9d02-8cf18ffab536"}
{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"Finished.","stop_reason":"end_turn","session_id":"a17c3e92-45b2-4cfc-9696-8d5fea882bdb","total_cost_usd":0.00498,"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":1100,"output_tokens":70},"modelUsage":{"claude-sonnet-4-5":{"inputTokens":1200,"outputTokens":70,"cacheReadInputTokens":1100,"cacheCreationInputTokens":0,"webSearchRequests":0,"costUSD":0.00498,"contextWindow":200000,"maxOutputTokens":32000}}}
"##;

    #[test]
    fn a_captured_tool_turn_is_read() {
        let p = parse(CAPTURED_TOOL_TURN);
        assert_eq!(p.result.as_deref(), Some("Finished."));
        assert_eq!(p.usage.tool_calls, 1);
        assert_eq!(p.commands, ["printf 'done\n' > notes.txt"]);
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (2300, 1100, 70)
        );
        assert!((p.usage.cost_usd - 0.00498).abs() < 1e-12);
        assert_eq!((p.error, p.bad_lines), (None, 0));
    }

    #[test]
    fn an_error_result_is_an_error() {
        let out = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500 scripted error 500","session_id":"s","total_cost_usd":0}"#;
        let p = parse(out);
        assert_eq!(
            p.error.as_deref(),
            Some("success: API Error: 500 scripted error 500")
        );
        assert!(parse("garbage\n").result.is_none());
    }
}
