//! The auditor agent (`roles.auditor`) with the real codex and claude CLIs against the
//! scripted model server: it reads the candidate with its own tools in the sandbox,
//! refuses a special-cased implementation that passes every machine check (and its reason
//! reaches the implementer's next prompt), agrees with the honest one and verifies a
//! human-language check with quoted evidence; its session sees nothing of the
//! implementer's; a malformed verdict, or a merge said over a failing machine check,
//! merges nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use goalpost_tests::{Run, TestEnv, path_quoted};
use serde_json::{Value, json};

use crate::real_agents::{ModelServer, claude_agent, cli, codex_agent};

const REPO: &str = "repo";

/// Exit codes of `goalpost run` and `goalpost audit` (README "Exit codes").
const BLOCKED: i32 = 3;
const BAD_INPUT: i32 = 2;

/// What only the implementer has: its message, its environment, its state.
const IMPLEMENTER_NOTE: &str = "IMPLEMENTER_PRIVATE_NOTE";
const IMPLEMENTER_SECRET: &str = "impl-secret-4f7a";

/// The reason the auditor agent gives for refusing the lookup table.
const REASON: &str = "LOOKUP_TABLE_FOUND";

const CHEAT: &str = "_ANSWERS = {2: 4, 5: 10}\n\n\ndef double(x):\n    \"\"\"Returns twice x.\"\"\"\n    return _ANSWERS[x]\n";
const HONEST: &str = "def double(x):\n    \"\"\"Returns twice x.\"\"\"\n    return 2 * x\n";

#[derive(Clone, Copy, Debug)]
enum Judge {
    Codex,
    Claude,
}

impl Judge {
    /// The CLI, or `None` when the test is skipped (see `real_agents::cli`).
    fn table(self, env: &TestEnv, server: &ModelServer) -> Option<String> {
        Some(match self {
            Judge::Codex => {
                codex_agent(env, server, &cli("codex")?).replace("[agents.coder]", "[agents.judge]")
            }
            Judge::Claude => {
                claude_agent(server, &cli("claude")?).replace("[agents.critic]", "[agents.judge]")
            }
        })
    }

    fn api(self) -> &'static str {
        match self {
            Judge::Codex => "responses",
            Judge::Claude => "messages",
        }
    }

    /// A step that runs `cat double.py` with the CLI's own shell tool.
    fn read_step(self, matches: &str) -> Value {
        let call = match self {
            Judge::Codex => {
                json!({ "name": "exec_command", "arguments": { "cmd": "cat double.py" } })
            }
            Judge::Claude => json!({
                "name": "Bash",
                "arguments": { "command": "cat double.py", "description": "read the change" }
            }),
        };
        json!({ "api": self.api(), "match": matches, "tool_calls": [call] })
    }

    /// A step that answers with `verdict`: codex's final message, claude's
    /// `StructuredOutput` tool (what `--json-schema` asks of it).
    fn verdict_step(self, matches: &str, verdict: &Value) -> Value {
        match self {
            Judge::Codex => json!({
                "api": "responses",
                "match": matches,
                "message": verdict.to_string(),
                "usage": { "input": 3000, "output": 200 },
            }),
            Judge::Claude => json!({
                "api": "messages",
                "match": matches,
                "tool_calls": [{ "name": "StructuredOutput", "arguments": verdict }],
                "usage": { "input": 3000, "output": 200 },
            }),
        }
    }

    /// A step that answers with plain text, no verdict.
    fn text_step(self, matches: &str, text: &str) -> Value {
        json!({ "api": self.api(), "match": matches, "times": 0, "message": text })
    }
}

/// The scripted server's script of `steps`, and a last step that ends any other turn.
fn script(judge: Judge, mut steps: Vec<Value>) -> String {
    steps.push(json!({ "api": judge.api(), "times": 0, "message": "Done." }));
    toml::to_string(&json!({ "step": steps })).unwrap()
}

fn verdict(recommendation: &str, summary: &str, claim: &str, check: &str) -> Value {
    json!({
        "recommendation": recommendation,
        "summary": summary,
        "claims": [{ "n": 1, "status": claim, "evidence": "ran `python3 -m unittest`: OK; double.py:1 `_ANSWERS = {2: 4, 5: 10}`" }],
        "checks": [{ "n": 1, "status": check, "evidence": "double.py:5: \"\"\"Returns twice x.\"\"\"" }],
        "findings": [{ "file": "double.py", "line": 1, "text": "the tests' inputs answered from a table" }],
    })
}

/// The repository: a `double` to write and its protected test.
fn repo_env() -> TestEnv {
    let env = TestEnv::new();
    env.repo(
        REPO,
        &[
            (".gitignore", "__pycache__/\n"),
            (
                "double.py",
                "def double(x):\n    raise NotImplementedError\n",
            ),
            (
                "test_double.py",
                "import unittest\n\nfrom double import double\n\n\nclass T(unittest.TestCase):\n    def test_two(self):\n        self.assertEqual(double(2), 4)\n\n    def test_five(self):\n        self.assertEqual(double(5), 10)\n",
            ),
        ],
    );
    env
}

/// The implementer: writes the lookup table, and the honest `double` once its prompt
/// carries the auditor agent's reason.
fn implementer(env: &TestEnv) -> String {
    let script = env.write(
        "implementer.sh",
        &format!(
            "#!/bin/sh\nif grep -q {REASON} \"$GOALPOST_PROMPT_FILE\"; then\n  printf '%s' {honest} > double.py\n  echo 'Rewrote double. {IMPLEMENTER_NOTE} 2'\nelse\n  printf '%s' {cheat} > double.py\n  echo \"Done. {IMPLEMENTER_NOTE} 1 $IMPL_SECRET\" > \"$GOALPOST_STATE_DIR/notes.txt\"\n  echo 'Done. {IMPLEMENTER_NOTE} 1'\nfi\nprintf 'Claims:\\n- double(2) is 4\\n'\n",
            honest = sh_quote(HONEST),
            cheat = sh_quote(CHEAT),
        ),
    );
    format!(
        "[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", {}]\nenv = {{ IMPL_SECRET = \"{IMPLEMENTER_SECRET}\" }}\n",
        path_quoted(&script)
    )
}

fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Writes `goal.md` with the agents `agents` and `front` added to its front matter.
fn write_goal(env: &TestEnv, agents: &str, front: &str) -> &'static str {
    env.write(
        "goal.md",
        &format!(
            r#"+++
release = "main"
{front}
[budget]
wall = "5m"
iterations = 3

{agents}
[roles]
implementer = "coder"
auditor = "judge"
+++

# Goal: double doubles

## Outcome
`double(x)` returns twice `x` for every integer.

## Verification surface
- `python3 -m unittest test_double` passes
- double's docstring says what it returns

## Boundaries
- Allowed paths: double.py
- Protected paths: test_double.py

## Blocked stop condition
Stop after 2 iterations with no improvement.
"#
        ),
    );
    "goal.md"
}

/// Starts the scripted server with `steps` and writes the goal whose auditor agent is
/// `judge` on it, `front` added to its front matter; `None` when the CLI is missing.
fn judged(
    env: &TestEnv,
    judge: Judge,
    steps: Vec<Value>,
    front: &str,
) -> Option<(ModelServer, &'static str)> {
    let server = ModelServer::start(env, &script(judge, steps));
    let table = judge.table(env, &server)?;
    let plan = write_goal(env, &format!("{}\n{table}", implementer(env)), front);
    Some((server, plan))
}

/// The run's directory of attempt 1.
fn attempt_dir(env: &TestEnv) -> std::path::PathBuf {
    let runs = env.dir().join(REPO).join(".git/goalpost/runs");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    run.path().join("attempts/goal.1")
}

/// (a), (d), (e): the lookup table passes every machine check and is refused by the
/// auditor agent, whose reason reaches the implementer; the honest `double` merges, its
/// human-language check verified with the agent's quoted evidence; no request of the
/// auditor agent's carries anything of the implementer's.
fn refuses_the_lookup_table_and_merges_the_honest_double(judge: Judge) {
    let env = repo_env();
    let steps = vec![
        judge.read_step("_ANSWERS"),
        judge.verdict_step(
            "_ANSWERS",
            &verdict(
                "revise",
                &format!("{REASON}: double answers the tests' inputs from a table"),
                "refuted",
                "pass",
            ),
        ),
    ];
    // The whole goal's merged tree (an audit without claims), then the phase's candidate:
    // each a fresh session.
    let mut steps = steps;
    let no_claims = "implementer's claims\\n\\n(none)";
    let mut whole = verdict("merge", "double computes 2 * x", "verified", "pass");
    whole["claims"] = json!([]);
    steps.push(judge.read_step(no_claims));
    steps.push(judge.verdict_step(no_claims, &whole));
    steps.push(judge.read_step("return 2 * x"));
    steps.push(judge.verdict_step(
        "return 2 * x",
        &verdict("merge", "double computes 2 * x", "verified", "pass"),
    ));
    let Some((server, plan)) = judged(&env, judge, steps, "") else {
        return;
    };
    let run = env.goalpost(["run", plan, "-C", REPO]);
    assert_eq!(run.code, 0, "{run}");

    // The release branch has the honest double, never the table.
    assert_eq!(
        env.git_out(REPO, &["show", "main:double.py"]),
        HONEST.trim_end()
    );
    let audits = env.audit_reports(REPO);
    let refused = audits
        .iter()
        .find(|a| a["agent"]["verdict"]["recommendation"] == "revise")
        .unwrap_or_else(|| panic!("no audit was refused by the agent: {audits:#?}"));
    // Every machine check passed: the agent alone refused it, with its finding.
    assert!(
        refused["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{refused:#}"
    );
    assert_eq!(refused["recommendation"], "revise", "{refused:#}");
    assert!(
        refused["summary"].as_str().unwrap().contains(REASON),
        "{refused:#}"
    );
    assert_eq!(
        refused["agent"]["verdict"]["findings"][0]["file"],
        "double.py"
    );
    // The reason reached the implementer's next prompt.
    let prompts = attempt_dir(&env).join("prompts");
    let second = std::fs::read_to_string(prompts.join("implementer-2.md")).unwrap();
    assert!(second.contains(REASON), "{second}");
    assert!(
        second.contains("double.py:1"),
        "the finding's place: {second}"
    );

    // The agent read the candidate itself, with its own tool, in its sandbox.
    let requests = server.requests();
    assert!(
        requests.iter().any(
            |r| r["body"].to_string().contains("_ANSWERS = {2: 4, 5: 10}")
                && r["body"].to_string().contains("Returns twice x")
        ),
        "no request carried what `cat double.py` printed"
    );
    // (d) Nothing of the implementer's: not its messages, its environment or its state.
    let attempt = attempt_dir(&env);
    assert!(
        attempt.join("state").exists(),
        "the implementer's state dir"
    );
    for request in &requests {
        let body = request["body"].to_string();
        assert!(
            !body.contains(IMPLEMENTER_NOTE),
            "the implementer's message: {body}"
        );
        assert!(
            !body.contains(IMPLEMENTER_SECRET),
            "the implementer's environment: {body}"
        );
        assert!(
            !body.contains("attempts/goal.1"),
            "the implementer's private dir: {body}"
        );
    }

    // (e) The human-language check, judged pass with quoted evidence, is verified.
    let merged = audits
        .iter()
        .rfind(|a| a["recommendation"] == "merge")
        .unwrap();
    assert_eq!(merged["unverified_checks"], json!([]), "{merged:#}");
    let judged = &merged["agent"]["judged_checks"][0];
    assert_eq!(judged["check"], "double's docstring says what it returns");
    assert_eq!(judged["status"], "pass");
    assert!(
        judged["evidence"]
            .as_str()
            .unwrap()
            .contains("Returns twice x")
    );
    let report_dir = std::fs::read_dir(attempt.parent().unwrap().parent().unwrap().join("audits"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| {
            std::fs::read_to_string(d.join("audit.md"))
                .is_ok_and(|md| md.contains("**Recommendation: merge**"))
        })
        .unwrap();
    let md = std::fs::read_to_string(report_dir.join("audit.md")).unwrap();
    assert!(
        md.contains("“double's docstring says what it returns”: **verified**"),
        "{md}"
    );
    // Its cost is recorded with the run.
    let status = env.goalpost(["status", "--json", "-C", REPO]).json();
    let spent: u64 = status["audits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["agent_usage"]["tokens_in"].as_u64())
        .sum();
    assert!(spent >= 6000, "{status:#}");
    let text = env.goalpost(["status", "-C", REPO]);
    text.assert_stdout_has("auditor agent: 3 audits, ");
}

#[test]
fn codex_as_the_auditor_agent_refuses_a_lookup_table_that_passes_every_check() {
    refuses_the_lookup_table_and_merges_the_honest_double(Judge::Codex);
}

#[test]
fn claude_as_the_auditor_agent_refuses_a_lookup_table_that_passes_every_check() {
    refuses_the_lookup_table_and_merges_the_honest_double(Judge::Claude);
}

/// Commits `double.py` as `text` on a branch of its own; returns (base, candidate).
fn commit_candidate(env: &TestEnv, text: &str) -> (String, String) {
    let base = env.git_out(REPO, &["rev-parse", "HEAD"]);
    env.git(REPO, &["checkout", "-q", "-b", "candidate"])
        .assert_code(0);
    std::fs::write(env.dir().join(REPO).join("double.py"), text).unwrap();
    env.git(REPO, &["commit", "-q", "-am", "candidate"])
        .assert_code(0);
    let candidate = env.git_out(REPO, &["rev-parse", "HEAD"]);
    env.git(REPO, &["checkout", "-q", "main"]).assert_code(0);
    (base, candidate)
}

fn audit(env: &TestEnv, plan: &str, base: &str, candidate: &str) -> Run {
    env.goalpost([
        "audit",
        "--plan",
        plan,
        "--base",
        base,
        "--candidate",
        candidate,
        "--claim",
        "double(2) is 4",
        "--json",
        "-C",
        REPO,
    ])
}

/// (b) A verdict that is not one, twice: the audit fails closed, with both reasons; and
/// the goal file's own skill is what the agent was given.
fn a_malformed_verdict_merges_nothing(judge: Judge) {
    let env = repo_env();
    let steps = vec![judge.text_step("SKILL_OF_THE_USER", "Looks fine to me.")];
    env.write(
        "skill.md",
        "# My audit skill\n\nSKILL_OF_THE_USER: be thorough.\n",
    );
    let Some((server, plan)) = judged(&env, judge, steps, "audit_skill = \"skill.md\"\n") else {
        return;
    };
    let (base, candidate) = commit_candidate(&env, HONEST);
    let run = audit(&env, plan, &base, &candidate);
    assert_eq!(run.code, BLOCKED, "{run}");
    let report = run.json();
    assert_eq!(report["recommendation"], "abandon", "{report:#}");
    let agent = &report["agent"];
    assert_eq!(agent["turns"], 2, "{agent:#}");
    assert_eq!(agent["failures"].as_array().unwrap().len(), 2, "{agent:#}");
    assert!(agent["verdict"].is_null(), "{agent:#}");
    assert!(
        agent["skill_source"]
            .as_str()
            .unwrap()
            .ends_with("skill.md"),
        "{agent:#}"
    );
    // The second try was told why the first did not count.
    // (Only the requests of its turns: a CLI may ask its model other things on the side.)
    let bodies: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r["step"] == 0)
        .map(|r| r["body"].to_string())
        .collect();
    assert!(bodies.len() >= 2, "{bodies:#?}");
    assert!(
        bodies.iter().all(|b| b.contains("SKILL_OF_THE_USER")),
        "the user's skill"
    );
    assert!(
        bodies.iter().any(|b| b.contains("did not count")),
        "{bodies:#?}"
    );
    assert!(
        !bodies
            .iter()
            .any(|b| b.contains("The audit skill\\n\\nYou are")),
        "goalpost's own skill too"
    );
}

#[test]
fn codex_as_the_auditor_agent_with_a_malformed_verdict_merges_nothing() {
    a_malformed_verdict_merges_nothing(Judge::Codex);
}

#[test]
fn claude_as_the_auditor_agent_with_a_malformed_verdict_merges_nothing() {
    a_malformed_verdict_merges_nothing(Judge::Claude);
}

/// (c) The agent would say merge to anything; a failing machine check is not merged, and
/// the agent is not even asked.
fn merge_said_over_a_failing_check_merges_nothing(judge: Judge) {
    let env = repo_env();
    let steps =
        vec![judge.verdict_step("double", &verdict("merge", "all good", "verified", "pass"))];
    let Some((server, plan)) = judged(&env, judge, steps, "") else {
        return;
    };
    let (base, candidate) = commit_candidate(&env, "def double(x):\n    return x + 1\n");
    let run = audit(&env, plan, &base, &candidate);
    assert_eq!(run.code, BLOCKED, "{run}");
    let report = run.json();
    assert_eq!(report["recommendation"], "revise", "{report:#}");
    assert_eq!(report["checks"][0]["passed"], false, "{report:#}");
    assert!(report["agent"].is_null(), "{report:#}");
    assert!(server.requests().is_empty(), "the agent was asked");
}

#[test]
fn codex_as_the_auditor_agent_saying_merge_over_a_failing_check_merges_nothing() {
    merge_said_over_a_failing_check_merges_nothing(Judge::Codex);
}

#[test]
fn claude_as_the_auditor_agent_saying_merge_over_a_failing_check_merges_nothing() {
    merge_said_over_a_failing_check_merges_nothing(Judge::Claude);
}

/// A skill file that is not there is refused before anything runs, at its line.
#[test]
fn a_missing_audit_skill_is_refused_at_its_line() {
    let env = repo_env();
    let agents = format!(
        "{}\n[agents.judge]\nadapter = \"command\"\ncommand = [\"true\"]\n",
        implementer(&env)
    );
    let plan = write_goal(&env, &agents, "audit_skill = \"nowhere.md\"\n");
    let before = env.repo_state(REPO);
    let run = env.goalpost(["run", plan, "-C", REPO]);
    assert_eq!(run.code, BAD_INPUT, "{run}");
    run.assert_stderr_has("goal.md:3:15: audit_skill \"nowhere.md\" cannot be read");
    assert_eq!(env.repo_state(REPO), before);
    assert!(!Path::new(&env.dir().join(REPO).join(".git/goalpost/runs")).exists());
}

/// A verdict bought over `[budget.audit]` does not count: the audit fails closed, saying
/// what was spent against what.
#[test]
fn an_auditor_agent_over_its_budget_merges_nothing() {
    let judge = Judge::Codex;
    let env = repo_env();
    let steps = vec![judge.verdict_step(
        "return 2 * x",
        &verdict("merge", "double computes 2 * x", "verified", "pass"),
    )];
    let Some((_server, plan)) = judged(&env, judge, steps, "") else {
        return;
    };
    let text = std::fs::read_to_string(env.dir().join(plan))
        .unwrap()
        .replace(
            "iterations = 3\n",
            "iterations = 3\n\n[budget.audit]\ntokens = 1000\n",
        );
    env.write(plan, &text);
    let (base, candidate) = commit_candidate(&env, HONEST);
    let run = audit(&env, plan, &base, &candidate);
    assert_eq!(run.code, BLOCKED, "{run}");
    let report = run.json();
    assert_eq!(report["recommendation"], "abandon", "{report:#}");
    let failure = report["agent"]["failures"][0].as_str().unwrap();
    assert!(
        failure.contains("tokens, over its budget of 1000"),
        "{failure}"
    );
    assert_eq!(
        report["agent"]["turns"], 1,
        "no second turn once the budget is spent"
    );
    assert!(report["agent"]["usage"]["tokens_in"].as_u64().unwrap() >= 3000);
}
