//! The turn runner against stand-ins for the CLIs: sessions, retries, missing
//! executables, and the command line each adapter's turn runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use goalpost_shared::plan;

use super::*;
use crate::{command_line, for_spec};

/// A stand-in for `adapter`'s CLI: a shell script running `body`.
fn fake_cli(dir: &Path, adapter: plan::Adapter, body: &str) -> AgentSpec {
    let path = dir.join(adapter.as_str());
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    AgentSpec {
        name: "coder".into(),
        adapter,
        command: vec![path.to_string_lossy().into_owned()],
        args: Vec::new(),
        model: None,
        env: Default::default(),
        price: None,
    }
}

/// A stand-in for codex: a shell script printing codex's events.
fn fake_codex(dir: &Path, body: &str) -> AgentSpec {
    fake_cli(dir, plan::Adapter::Codex, body)
}

/// The prompt file of a test turn of `role`.
fn prompt_file(dir: &Path, role: Role) -> PathBuf {
    dir.join(format!("prompts/{}-1.md", role.as_str()))
}

fn turn(dir: &Path, spec: &AgentSpec, role: Role) -> Turn {
    let mut env = std::collections::BTreeMap::new();
    env.insert("PATH".into(), std::env::var_os("PATH").unwrap_or_default());
    env.insert("GOALPOST_STATE_DIR".into(), dir.join("state").into());
    let request = TurnRequest {
        role,
        iteration: 1,
        prompt: "do it",
        cwd: dir,
        env,
        prompt_file: prompt_file(dir, role),
        timeout: Duration::from_secs(30),
        cancel: None,
        tree: None,
        confine: None,
        verdict_schema: None,
    };
    for_spec(spec).run_turn(&request)
}

#[test]
fn every_adapter_runs_the_command_line_its_builder_returns() {
    for adapter in plan::Adapter::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = fake_cli(dir.path(), adapter, "exit 0");
        spec.command.push("--lead".into());
        spec.model = Some("m1".into());
        spec.args = vec!["--extra".into(), "x".into()];
        for role in [Role::Implementer, Role::Reviewer] {
            let ran = turn(dir.path(), &spec, role).record.record.argv;
            let prompt = prompt_file(dir.path(), role);
            let launch = Launch {
                role,
                prompt_file: &prompt,
                state_dir: &dir.path().join("state/agents/coder"),
                confined: false,
                resume: None,
                verdict_schema: None,
            };
            let built = command_line(&spec, &launch);
            assert_eq!(ran, built.argv(), "{adapter:?} {role:?}");
            assert_eq!(built.program, spec.command[0], "{adapter:?}");
            assert!(ran.windows(2).any(|w| w == spec.args), "{ran:?}");
        }
    }
}

#[test]
fn an_implementer_continues_its_session_and_is_charged_its_own_part() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fake_codex(
        dir.path(),
        r#"case "$*" in
  *"resume t1"*) n=300 ;;
  *) n=100 ;;
esac
echo '{"type":"thread.started","thread_id":"t1"}'
echo '{"type":"item.completed","item":{"type":"agent_message","text":"done"}}'
echo "{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":$n,\"cached_input_tokens\":0,\"output_tokens\":$n}}""#,
    );
    let first = turn(dir.path(), &spec, Role::Implementer);
    assert_eq!(first.record.error, None);
    assert_eq!(first.record.message, "done");
    assert_eq!(first.record.usage.tokens_in, 100);
    let second = turn(dir.path(), &spec, Role::Implementer);
    assert!(second.record.record.argv.contains(&"resume".to_owned()));
    assert_eq!(second.record.usage.tokens_in, 200);
    assert_eq!(second.record.usage.tokens_out, 200);
    // A reviewer starts fresh, whatever session the implementer left.
    let review = turn(dir.path(), &spec, Role::Reviewer);
    assert!(!review.record.record.argv.contains(&"resume".to_owned()));
}

#[test]
fn the_commands_an_agent_ran_are_in_its_turn_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fake_codex(
        dir.path(),
        r#"echo '{"type":"thread.started","thread_id":"t1"}'
echo '{"type":"item.completed","item":{"type":"command_execution","command":"sh tests/run.sh","exit_code":0,"status":"completed"}}'
echo '{"type":"item.completed","item":{"type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":1}}'"#,
    );
    let t = turn(dir.path(), &spec, Role::Implementer);
    assert_eq!(t.record.error, None);
    assert_eq!(t.record.commands, vec!["sh tests/run.sh".to_owned()]);
    assert_eq!(t.record.usage.tool_calls, 1);
}

#[test]
fn a_cli_without_its_result_is_tried_twice_and_fails_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fake_codex(
        dir.path(),
        "echo 'not an event'\necho 'model server said 503' >&2",
    );
    let t = turn(dir.path(), &spec, Role::Implementer);
    let error = t.record.error.unwrap();
    assert!(
        error.starts_with("agent `coder` exited 0; printed no codex result"),
        "{error}"
    );
    assert!(
        error.contains("1 line(s) of its output were not its JSON events"),
        "{error}"
    );
    assert!(error.contains("model server said 503"), "{error}");
    assert!(error.ends_with("(after 2 tries)"), "{error}");
    assert_eq!(t.record.usage.turns, 2);
    assert_eq!(t.unavailable, None);
}

#[test]
fn a_missing_cli_is_unavailable_and_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fake_codex(dir.path(), "");
    spec.command = vec![
        dir.path()
            .join("nowhere/codex")
            .to_string_lossy()
            .into_owned(),
    ];
    let t = turn(dir.path(), &spec, Role::Implementer);
    let why = t.unavailable.unwrap();
    assert!(why.contains("is not an executable file"), "{why}");
    assert!(why.contains("npm install -g @openai/codex"), "{why}");
}
