//! The `gemini` adapter: Google's Gemini CLI in headless mode, `gemini -o stream-json`.
//!
//! Command line: `gemini -o stream-json --approval-mode yolo [-m MODEL] ARGS...
//! [--resume SESSION]`, the prompt on stdin. `GEMINI_CLI_HOME` (gemini's stand-in for the
//! home directory) is a directory of the attempt's own: the user's `.gemini` login files
//! (`oauth_creds.json`, `google_accounts.json`) linked in and `settings.json` copied, from
//! the agent's `GEMINI_CLI_HOME` or `HOME`. The workspace is trusted for the turn.
//!
//! Output: JSON lines. `init` names the session; `message` lines of the `assistant` role
//! carry the answer (in `delta` pieces, concatenated); `tool_use` lines are tool calls
//! (a `run_shell_command`'s `parameters.command` is a command run); `error` lines report
//! problems; the `result` line ends the turn with `status` and `stats` (`input_tokens`,
//! `output_tokens`, `cached`, `tool_calls`). Gemini reports no cost.

use std::ffi::OsString;
use std::fs;

use goalpost_shared::protocol::AgentSpec;

use crate::argv::{Launch, model_args};
use crate::cli::{Cli, CliTurn, Parsed, count, json_lines};
use crate::session::{lend, user_dir};

#[derive(Debug)]
pub(crate) struct Gemini;

impl Cli for Gemini {
    fn program(&self) -> &'static str {
        "gemini"
    }

    fn args(&self, spec: &AgentSpec, launch: &Launch<'_>) -> Vec<String> {
        let mut args: Vec<String> = ["-o", "stream-json", "--approval-mode", "yolo"]
            .map(str::to_owned)
            .into();
        args.extend(model_args(spec, "-m"));
        args.extend(spec.args.iter().cloned());
        if let Some(session) = launch.resume {
            args.extend(["--resume".to_owned(), session.to_owned()]);
        }
        args
    }

    fn prepare(&self, turn: &CliTurn<'_>) -> std::io::Result<Vec<(String, OsString)>> {
        let home = turn.state_dir.join("gemini-home");
        let dot = home.join(".gemini");
        fs::create_dir_all(&dot)?;
        if let Some(user) = user_dir(turn, "GEMINI_CLI_HOME", "").map(|h| h.join(".gemini")) {
            for file in ["oauth_creds.json", "google_accounts.json"] {
                lend(&user.join(file), &dot.join(file))?;
            }
            let settings = user.join("settings.json");
            if settings.is_file() && !dot.join("settings.json").exists() {
                fs::copy(&settings, dot.join("settings.json"))?;
            }
        }
        Ok(vec![
            ("GEMINI_CLI_HOME".to_owned(), home.into_os_string()),
            ("GEMINI_CLI_TRUST_WORKSPACE".to_owned(), "true".into()),
        ])
    }

    fn parse(&self, stdout: &str) -> Parsed {
        parse(stdout)
    }
}

pub(crate) fn parse(stdout: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut answer = String::new();
    let mut errors = Vec::new();
    for event in json_lines(stdout, &mut p.bad_lines) {
        match event["type"].as_str().unwrap_or_default() {
            "init" => p.session_id = event["session_id"].as_str().map(str::to_owned),
            "message" if event["role"] == "assistant" => {
                let content = event["content"].as_str().unwrap_or_default();
                if event["delta"].as_bool().unwrap_or(false) {
                    answer.push_str(content);
                } else {
                    answer = content.to_owned();
                }
            }
            "message" => answer.clear(),
            "tool_use" => {
                p.usage.tool_calls += 1;
                if event["tool_name"] == "run_shell_command"
                    && let Some(command) = event["parameters"]["command"].as_str()
                {
                    p.commands.push(command.to_owned());
                }
                // Text before a tool call is not the final answer.
                answer.clear();
            }
            "error" => errors.extend(event["message"].as_str().map(str::to_owned)),
            "result" => {
                let stats = &event["stats"];
                p.usage.tokens_in = count(&stats["input_tokens"]);
                p.usage.tokens_out = count(&stats["output_tokens"]);
                p.usage.tokens_cached = count(&stats["cached"]);
                if event["status"] != "success" {
                    let message = event["error"]["message"].as_str().unwrap_or("failed");
                    errors.push(message.to_owned());
                }
                p.result = Some(String::new());
            }
            _ => {}
        }
    }
    p.last_text = answer.clone();
    if p.result.is_some() {
        p.result = Some(answer);
    }
    if !errors.is_empty() {
        p.error = Some(errors.join("; "));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by Gemini CLI 0.61.0 driven by the scripted model server.
    const CAPTURED: &str = r#"{"type":"init","timestamp":"2026-11-22T03:18:11.156Z","session_id":"73bec937-e76b-489c-9e50-4fb2cdce63fa","model":"gemini-2.5-flash"}
{"type":"message","timestamp":"2026-11-22T03:18:11.157Z","role":"user","content":"PLEASE_EDIT notes\n"}
{"type":"tool_use","timestamp":"2026-11-22T03:18:11.283Z","tool_name":"run_shell_command","tool_id":"run_shell_command__run_shell_command_1795317491212_0","parameters":{"command":"printf 'done\n' > notes.txt","description":"write"}}
{"type":"tool_result","timestamp":"2026-11-22T03:18:11.608Z","tool_id":"run_shell_command__run_shell_command_1795317491212_0","status":"success","output":""}
{"type":"message","timestamp":"2026-11-22T03:18:11.709Z","role":"assistant","content":"Finished.","delta":true}
{"type":"result","timestamp":"2026-11-22T03:18:11.712Z","status":"success","stats":{"total_tokens":2370,"input_tokens":2300,"output_tokens":70,"cached":1100,"input":1200,"duration_ms":556,"tool_calls":1,"models":{"gemini-2.5-flash":{"total_tokens":2370,"input_tokens":2300,"output_tokens":70,"cached":1100,"input":1200}}}}
"#;

    #[test]
    fn a_captured_turn_is_read() {
        let p = parse(CAPTURED);
        assert_eq!(p.result.as_deref(), Some("Finished."));
        assert_eq!(
            p.session_id.as_deref(),
            Some("73bec937-e76b-489c-9e50-4fb2cdce63fa")
        );
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (2300, 1100, 70)
        );
        assert_eq!(p.commands, ["printf 'done\n' > notes.txt"]);
        assert_eq!((p.error, p.bad_lines), (None, 0));
    }

    /// The format of Gemini CLI's headless reference (`-o stream-json`).
    const DOCUMENTED: &str = r#"{"type":"init","timestamp":"2025-10-10T12:00:00.000Z","session_id":"abc123","model":"gemini-2.5-flash"}
{"type":"message","role":"user","content":"Fix calc","timestamp":"2025-10-10T12:00:01.000Z"}
{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{"command":"sh tests/run.sh"},"timestamp":"2025-10-10T12:00:02.000Z"}
{"type":"tool_result","tool_id":"t1","status":"success","output":"ok","timestamp":"2025-10-10T12:00:03.000Z"}
{"type":"message","role":"assistant","content":"Done.","delta":true,"timestamp":"2025-10-10T12:00:04.000Z"}
{"type":"message","role":"assistant","content":" Tests pass.","delta":true,"timestamp":"2025-10-10T12:00:04.100Z"}
{"type":"result","status":"success","stats":{"total_tokens":1300,"input_tokens":1200,"output_tokens":100,"cached":300,"duration_ms":1800,"tool_calls":1},"timestamp":"2025-10-10T12:00:05.000Z"}
"#;

    #[test]
    fn a_documented_turn_is_read() {
        let p = parse(DOCUMENTED);
        assert_eq!(p.result.as_deref(), Some("Done. Tests pass."));
        assert_eq!(p.session_id.as_deref(), Some("abc123"));
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (1200, 300, 100)
        );
        assert_eq!(p.usage.tool_calls, 1);
        assert_eq!(p.commands, ["sh tests/run.sh"]);
        assert_eq!(p.error, None);
    }

    #[test]
    fn an_error_result_is_an_error() {
        let p = parse(
            r#"{"type":"result","status":"error","error":{"type":"FatalError","message":"quota"},"stats":{}}"#,
        );
        assert_eq!(p.error.as_deref(), Some("quota"));
        assert_eq!(parse("").result, None);
    }
}
