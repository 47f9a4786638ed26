//! The `opencode` adapter: `opencode run --format json`.
//!
//! Command line: `opencode run --format json [-m MODEL] ARGS... [--session SESSION]`, the
//! prompt on stdin. `XDG_DATA_HOME`, `XDG_STATE_HOME`, `XDG_CACHE_HOME` and
//! `XDG_CONFIG_HOME` are directories of the attempt's own (opencode's sessions and the
//! provider packages it fetches live there) with the user's `opencode/auth.json` linked
//! and `opencode/opencode.json` copied in; an `OPENCODE_CONFIG` of the agent's `env` is
//! read where it is.
//!
//! Output: JSON lines, each with `type`, `sessionID` and a `part`: `text` parts carry the
//! answer, `tool_use` parts are tool calls (a `bash` one's `state.input.command` is a
//! command run), `step_finish` parts carry the step's `tokens` (`input`, `output`,
//! `cache.read`) and `cost`, and end the turn when their `reason` is `stop`; `error`
//! lines report errors.

use std::ffi::OsString;
use std::fs;

use goalpost_shared::protocol::AgentSpec;

use crate::argv::{Launch, model_args};
use crate::cli::{Cli, CliTurn, Parsed, count, json_lines};
use crate::session::{lend, user_dir};

#[derive(Debug)]
pub(crate) struct Opencode;

impl Cli for Opencode {
    fn program(&self) -> &'static str {
        "opencode"
    }

    fn args(&self, spec: &AgentSpec, launch: &Launch<'_>) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--format", "json"].map(str::to_owned).into();
        args.extend(model_args(spec, "-m"));
        args.extend(spec.args.iter().cloned());
        if let Some(session) = launch.resume {
            args.extend(["--session".to_owned(), session.to_owned()]);
        }
        args
    }

    fn prepare(&self, turn: &CliTurn<'_>) -> std::io::Result<Vec<(String, OsString)>> {
        let data = turn.state_dir.join("opencode-data");
        let state = turn.state_dir.join("opencode-state");
        let cache = turn.state_dir.join("opencode-cache");
        let config = turn.state_dir.join("opencode-config");
        fs::create_dir_all(config.join("opencode"))?;
        if let Some(user) = user_dir(turn, "XDG_CONFIG_HOME", ".config") {
            for file in ["opencode.json", "opencode.jsonc", "config.json"] {
                let from = user.join("opencode").join(file);
                let to = config.join("opencode").join(file);
                if from.is_file() && !to.exists() {
                    fs::copy(&from, &to)?;
                }
            }
        }
        fs::create_dir_all(data.join("opencode"))?;
        fs::create_dir_all(&state)?;
        fs::create_dir_all(&cache)?;
        if let Some(user) = user_dir(turn, "XDG_DATA_HOME", ".local/share") {
            lend(
                &user.join("opencode/auth.json"),
                &data.join("opencode/auth.json"),
            )?;
        }
        Ok(vec![
            ("XDG_DATA_HOME".to_owned(), data.into_os_string()),
            ("XDG_STATE_HOME".to_owned(), state.into_os_string()),
            ("XDG_CACHE_HOME".to_owned(), cache.into_os_string()),
            ("XDG_CONFIG_HOME".to_owned(), config.into_os_string()),
        ])
    }

    fn parse(&self, stdout: &str) -> Parsed {
        parse(stdout)
    }
}

pub(crate) fn parse(stdout: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut errors = Vec::new();
    let mut stopped = false;
    for event in json_lines(stdout, &mut p.bad_lines) {
        if let Some(id) = event["sessionID"].as_str() {
            p.session_id = Some(id.to_owned());
        }
        let part = &event["part"];
        match event["type"].as_str().unwrap_or_default() {
            "text" => p.last_text = part["text"].as_str().unwrap_or_default().to_owned(),
            "tool_use" => {
                p.usage.tool_calls += 1;
                if part["tool"] == "bash"
                    && let Some(command) = part["state"]["input"]["command"].as_str()
                {
                    p.commands.push(command.to_owned());
                }
            }
            "step_finish" => {
                let tokens = &part["tokens"];
                let cached = count(&tokens["cache"]["read"]);
                p.usage.tokens_in +=
                    count(&tokens["input"]) + cached + count(&tokens["cache"]["write"]);
                p.usage.tokens_cached += cached;
                p.usage.tokens_out += count(&tokens["output"]) + count(&tokens["reasoning"]);
                p.usage.cost_usd += part["cost"].as_f64().unwrap_or(0.0);
                stopped = part["reason"] == "stop";
            }
            "error" => {
                let error = &event["error"];
                let message = error["data"]["message"]
                    .as_str()
                    .or_else(|| error["message"].as_str())
                    .or_else(|| error["name"].as_str())
                    .unwrap_or("error");
                errors.push(message.to_owned());
            }
            _ => {}
        }
    }
    if stopped {
        p.result = Some(p.last_text.clone());
    }
    if !errors.is_empty() {
        p.error = Some(errors.join("; "));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by opencode 1.18.33 driven by the scripted model server: a bash tool step,
    /// then the answer.
    const CAPTURED: &str = r##"{"type":"step_start","timestamp":1795317190925,"sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","part":{"id":"prt_2013e50c20017CI797fThrixED","messageID":"msg_2013e43fa001kR4KOSCWZjwZfI","sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","snapshot":"aae7aeec48ec76b030f0c54308274a1edd45e062","type":"step-start"}}
{"type":"tool_use","timestamp":1795317191260,"sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","part":{"type":"tool","tool":"bash","callID":"call_2_0","state":{"status":"completed","input":{"command":"printf 'done\n' > notes.txt","description":"write"},"output":"(no output)","metadata":{"output":"(no output)","exit":0,"truncated":false},"title":"printf 'done\n' > notes.txt","time":{"start":1795317190894,"end":1795317191255}},"id":"prt_2013e50d00010C81wkdnXi3Ek0","sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","messageID":"msg_2013e43fa001kR4KOSCWZjwZfI"}}
{"type":"step_finish","timestamp":1795317191685,"sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","part":{"id":"prt_2013e53f1001btf7yC5SkbqOwO","reason":"tool-calls","snapshot":"05d5c582af92fedb4324ee1af51e9bc94eb214dc","messageID":"msg_2013e43fa001kR4KOSCWZjwZfI","sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","type":"step-finish","tokens":{"total":1050,"input":800,"output":50,"reasoning":0,"cache":{"write":0,"read":200}},"cost":0}}
{"type":"step_start","timestamp":1795317192502,"sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","part":{"id":"prt_2013e5712001S0xIIKgI2b12jr","messageID":"msg_2013e54db001N5RByTi8GQ64mx","sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","snapshot":"05d5c582af92fedb4324ee1af51e9bc94eb214dc","type":"step-start"}}
{"type":"text","timestamp":1795317192502,"sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","part":{"id":"prt_2013e5715001jn5YNJx0drkK0r","messageID":"msg_2013e54db001N5RByTi8GQ64mx","sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","type":"text","text":"Finished.","time":{"start":1795317192469,"end":1795317192494}}}
{"type":"step_finish","timestamp":1795317192616,"sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","part":{"id":"prt_2013e579f001M2q5MQqqJ07ory","reason":"stop","snapshot":"05d5c582af92fedb4324ee1af51e9bc94eb214dc","messageID":"msg_2013e54db001N5RByTi8GQ64mx","sessionID":"ses_dfec1c949ffe2xufRS1erAgpeG","type":"step-finish","tokens":{"total":1320,"input":400,"output":20,"reasoning":0,"cache":{"write":0,"read":900}},"cost":0}}
"##;

    #[test]
    fn a_captured_turn_is_read() {
        let p = parse(CAPTURED);
        assert_eq!(p.result.as_deref(), Some("Finished."));
        assert_eq!(
            p.session_id.as_deref(),
            Some("ses_dfec1c949ffe2xufRS1erAgpeG")
        );
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (2300, 1100, 70)
        );
        assert_eq!(p.usage.tool_calls, 1);
        assert_eq!(p.commands, ["printf 'done\n' > notes.txt"]);
        assert_eq!((p.error, p.bad_lines), (None, 0));
    }

    /// The format of `opencode run --format json` (a tool step, then the answer).
    const DOCUMENTED: &str = r#"{"type":"step_start","timestamp":1767036059338,"sessionID":"ses_4947","part":{"id":"prt_1","sessionID":"ses_4947","messageID":"msg_1","type":"step-start"}}
{"type":"tool_use","timestamp":1767036059400,"sessionID":"ses_4947","part":{"id":"prt_2","type":"tool","tool":"bash","callID":"c1","state":{"status":"completed","input":{"command":"sh tests/run.sh"},"output":"ok"}}}
{"type":"step_finish","timestamp":1767036059500,"sessionID":"ses_4947","part":{"id":"prt_3","type":"step-finish","reason":"tool-calls","cost":0.001,"tokens":{"input":1000,"output":50,"reasoning":0,"cache":{"read":200,"write":0}}}}
{"type":"text","timestamp":1767036059600,"sessionID":"ses_4947","part":{"id":"prt_4","type":"text","text":"Done."}}
{"type":"step_finish","timestamp":1767036059700,"sessionID":"ses_4947","part":{"id":"prt_5","type":"step-finish","reason":"stop","cost":0.002,"tokens":{"input":300,"output":20,"reasoning":0,"cache":{"read":1000,"write":0}}}}
"#;

    #[test]
    fn a_documented_turn_is_read() {
        let p = parse(DOCUMENTED);
        assert_eq!(p.result.as_deref(), Some("Done."));
        assert_eq!(p.session_id.as_deref(), Some("ses_4947"));
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (2500, 1200, 70)
        );
        assert!((p.usage.cost_usd - 0.003).abs() < 1e-12);
        assert_eq!(p.commands, ["sh tests/run.sh"]);
    }

    #[test]
    fn an_error_has_no_result() {
        let p = parse(
            r#"{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"500 scripted"}}}"#,
        );
        assert_eq!(p.result, None);
        assert_eq!(p.error.as_deref(), Some("500 scripted"));
    }
}
