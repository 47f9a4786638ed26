//! `goalpost plan check` and `goalpost plan graph`, driven through the real binary: the
//! example goal files pass with a readable summary, and every class of goal-file error
//! exits 2 naming the file, line, column and what was expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use goalpost_tests::{TestEnv, fixture_plan};

/// Copies `fixtures/plans/<rel>` into a fresh test dir under its own file name, so
/// messages name it relative to the working directory.
fn env_with(rel: &str) -> (TestEnv, String) {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(fixture_plan(rel)).expect("read the fixture");
    let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
    env.write(&name, &text);
    (env, name)
}

/// Runs `plan check` on an error fixture and asserts exit 2 and exactly the diagnostics
/// given as (`LINE:COL`, part of the message after it), in that order.
fn assert_errors(rel: &str, expected: &[(&str, &str)]) {
    let (env, name) = env_with(rel);
    let run = env.goalpost(["plan", "check", &name]);
    run.assert_code(2);
    assert!(
        run.stdout.is_empty(),
        "nothing on stdout for an invalid plan\n{run}"
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{name}:")))
        .collect();
    assert_eq!(lines.len(), expected.len(), "diagnostic count\n{run}");
    for (line, (at, message)) in lines.iter().zip(expected) {
        let prefix = format!("{name}:{at}: ");
        assert!(
            line.starts_with(&prefix),
            "expected {prefix:?} at the start of {line:?}\n{run}"
        );
        assert!(
            line.contains(message),
            "expected {message:?} in {line:?}\n{run}"
        );
        assert!(
            line.contains("; "),
            "no \"; what was expected\" in {line:?}"
        );
    }
    let s = if expected.len() == 1 { "" } else { "s" };
    run.assert_stderr_has(&format!("error: {} problem{s} in {name}", expected.len()));
}

#[test]
fn phased_example_summary() {
    let (env, name) = env_with("phased-plan.md");
    let run = env.goalpost(["plan", "check", &name]);
    run.assert_code(0);
    insta::assert_snapshot!("phased_plan_summary", run.stdout);
}

#[test]
fn single_goal_example_summary() {
    let (env, name) = env_with("single-goal.md");
    let run = env.goalpost(["plan", "check", &name]);
    run.assert_code(0);
    insta::assert_snapshot!("single_goal_summary", run.stdout);
}

#[test]
fn check_json_is_the_model() {
    let (env, name) = env_with("phased-plan.md");
    let run = env.goalpost(["plan", "check", &name, "--json"]);
    run.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["order"],
        serde_json::json!(["lexer", "schema", "parser", "errors"])
    );
    let parser = &v["plan"]["phases"][2];
    assert_eq!(parser["id"]["value"], "parser");
    assert_eq!(parser["attempts"]["value"], 3);
    assert_eq!(parser["select"]["value"]["policy"], "best");
    assert_eq!(parser["select"]["value"]["metric"], "parse_us");
    assert_eq!(v["plan"]["settings"]["max_parallel"]["value"], 3);
    assert_eq!(v["plan"]["contract"]["blocked"]["no_progress_limit"], 2);
}

#[test]
fn check_json_lists_errors_on_stdout() {
    let (env, name) = env_with("errors/cycle.md");
    let run = env.goalpost(["plan", "check", &name, "--json"]);
    run.assert_code(2);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 11);
    assert_eq!(v["errors"][0]["col"], 5);
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("a -> c -> b -> a"), "{message}");
}

#[test]
fn graph_formats() {
    let (env, name) = env_with("phased-plan.md");
    let text = env.goalpost(["plan", "graph", &name]);
    text.assert_code(0);
    assert_eq!(
        text.stdout,
        "lexer\nschema\nparser <- lexer, schema\nerrors <- parser\n"
    );
    let dot = env.goalpost(["plan", "graph", &name, "--format", "dot"]);
    dot.assert_code(0)
        .assert_stdout_has("digraph")
        .assert_stdout_has("\"lexer\" -> \"parser\"");
    let json = env.goalpost(["plan", "graph", &name, "--format", "json"]);
    json.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["critical_path"], 3);
}

#[test]
fn graph_of_an_invalid_plan_exits_2() {
    let (env, name) = env_with("errors/cycle.md");
    let run = env.goalpost(["plan", "graph", &name]);
    run.assert_code(2).assert_stderr_has("dependency cycle");
}

#[test]
fn help_reads_well() {
    let env = TestEnv::new();
    let run = env.goalpost(["--help"]);
    run.assert_code(0)
        .assert_stdout_has("goalpost runs a phased plan")
        .assert_stdout_has("goalpost plan check goal.md")
        .assert_stdout_has("Exit codes");
    for sub in ["check", "graph"] {
        let run = env.goalpost(["plan", sub, "--help"]);
        run.assert_code(0).assert_stdout_has("Example:");
    }
}

#[test]
fn bad_command_line_exits_2() {
    let env = TestEnv::new();
    env.goalpost(["plan", "frobnicate"]).assert_code(2);
    env.goalpost(["plan", "check"]).assert_code(2);
}

#[test]
fn unreadable_file() {
    let env = TestEnv::new();
    let run = env.goalpost(["plan", "check", "missing.md"]);
    run.assert_code(2)
        .assert_stderr_has("missing.md:0:0: cannot read the goal file")
        .assert_stderr_has("; a readable UTF-8 Markdown file");
    std::fs::write(env.dir().join("binary.md"), [0xff, 0xfe, 0x00]).expect("write");
    env.goalpost(["plan", "check", "binary.md"])
        .assert_code(2)
        .assert_stderr_has("binary.md:0:0: cannot read the goal file");
}

#[test]
fn front_matter_not_toml() {
    assert_errors(
        "errors/invalid-toml.md",
        &[
            ("2:16", "the front matter is not valid TOML: extra `=`"),
            ("2:18", "the front matter is not valid TOML"),
        ],
    );
}

#[test]
fn unterminated_front_matter() {
    assert_errors(
        "errors/unterminated-front-matter.md",
        &[(
            "1:1",
            "the front matter opened here with `+++` is never closed",
        )],
    );
}

#[test]
fn unknown_keys_at_every_level() {
    assert_errors(
        "errors/unknown-key.md",
        &[
            (
                "2:1",
                "unknown key \"max_paralel\"; did you mean \"max_parallel\"?",
            ),
            (
                "5:1",
                "unknown key \"budget.turn\"; did you mean \"turns\"?",
            ),
            (
                "9:1",
                "unknown key \"agents.codex.modle\"; did you mean \"model\"?",
            ),
        ],
    );
}

#[test]
fn missing_outcome() {
    assert_errors(
        "errors/missing-outcome.md",
        &[(
            "1:1",
            "the goal file has no Outcome; an `## Outcome` section",
        )],
    );
}

#[test]
fn empty_outcome() {
    assert_errors(
        "errors/empty-outcome.md",
        &[("3:4", "the \"Outcome\" section is empty")],
    );
}

#[test]
fn no_machine_check() {
    assert_errors(
        "errors/no-machine-check.md",
        &[(
            "6:4",
            "the goal has no machine check; a verification item with a command in backticks",
        )],
    );
    assert_errors(
        "errors/no-machine-check-phase.md",
        &[("11:5", "phase \"polish\" has no machine check")],
    );
}

#[test]
fn malformed_metric_expectations() {
    assert_errors(
        "errors/malformed-metric.md",
        &[
            (
                "7:3",
                "malformed metric expectation \"reports `p95` under 80\": unknown comparison \"under\"",
            ),
            (
                "8:3",
                "\"eighty\" is not a number; `COMMAND` reports `NAME` below|above|at most|at least NUMBER",
            ),
            (
                "9:3",
                "unknown measured metric `measured.wall_s`; one goalpost measures: \
                 `measured.wall_ms`, `measured.cpu_ms`, `measured.max_rss_mb`",
            ),
        ],
    );
}

#[test]
fn invalid_glob() {
    assert_errors(
        "errors/invalid-glob.md",
        &[(
            "10:26",
            "invalid glob \"src/[oops\": unclosed character class",
        )],
    );
}

#[test]
fn duplicate_phase_id() {
    assert_errors(
        "errors/duplicate-phase.md",
        &[(
            "13:5",
            "duplicate phase id \"greet\"; a unique id; \"greet\" is already used on line 11",
        )],
    );
}

#[test]
fn unknown_dependency() {
    assert_errors(
        "errors/unknown-dependency.md",
        &[(
            "14:13",
            "phase \"parser\" depends on unknown phase \"lexr\"; did you mean \"lexer\"?",
        )],
    );
}

#[test]
fn dependency_cycle_is_named() {
    assert_errors(
        "errors/cycle.md",
        &[("11:5", "dependency cycle: a -> c -> b -> a")],
    );
}

#[test]
fn self_dependency() {
    assert_errors(
        "errors/self-dependency.md",
        &[("12:13", "phase \"greet\" depends on itself")],
    );
}

#[test]
fn attempts_out_of_range() {
    assert_errors(
        "errors/attempts-range.md",
        &[
            (
                "12:11",
                "Attempts: 0 is out of range; a number of attempts from 1 to 16",
            ),
            ("15:11", "Attempts: 17 is out of range"),
        ],
    );
}

#[test]
fn undefined_agents() {
    assert_errors(
        "errors/undefined-agent.md",
        &[
            (
                "7:12",
                "the reviewer role names agent \"claude\", which is not defined",
            ),
            (
                "21:21",
                "phase \"greet\" names agent \"gemini\", which is not defined",
            ),
        ],
    );
}

#[test]
fn unknown_adapter_lists_the_known_ones() {
    assert_errors(
        "errors/unknown-adapter.md",
        &[(
            "3:11",
            "unknown adapter \"copilot\" for agent \"helper\"; the known adapters are \"codex\", \"claude\", \"gemini\", \"opencode\", \"aider\" or \"command\"",
        )],
    );
}

#[test]
fn invalid_release_branch() {
    assert_errors(
        "errors/bad-release.md",
        &[("2:11", "invalid release branch name \"main..next\"")],
    );
}

#[test]
fn bad_wall_time() {
    assert_errors(
        "errors/bad-wall-time.md",
        &[(
            "3:8",
            "invalid wall time \"30 minutes\" for \"budget.wall\"; a duration in quotes such as",
        )],
    );
}

#[test]
fn unknown_select_policy() {
    assert_errors(
        "errors/unknown-select.md",
        &[(
            "13:9",
            "unknown selection policy \"fastest\"; \"first\", \"best METRIC\"",
        )],
    );
}

#[test]
fn select_best_needs_a_reported_metric() {
    assert_errors(
        "errors/select-metric-missing.md",
        &[(
            "13:9",
            "phase \"search\" selects the best \"p99_ms\" but no check reports it",
        )],
    );
}

#[test]
fn every_error_of_a_file_is_reported_in_file_order() {
    assert_errors(
        "errors/many-errors.md",
        &[
            ("2:1", "unknown key \"max_paralel\""),
            ("3:11", "invalid release branch name \"bad..name\""),
            ("6:8", "invalid wall time \"soon\""),
            ("11:4", "the \"Outcome\" section is empty"),
            ("14:3", "malformed metric expectation"),
            ("18:5", "dependency cycle: a -> b -> a"),
            ("20:11", "Attempts: 0 is out of range"),
            ("23:16", "phase \"b\" depends on unknown phase \"nowhere\""),
            ("24:9", "unknown selection policy \"fastest\""),
        ],
    );
    let (env, name) = env_with("errors/many-errors.md");
    let run = env.goalpost(["plan", "check", &name]);
    insta::assert_snapshot!("many_errors_stderr", run.stderr);
}

#[test]
fn select_review_needs_a_reviewer() {
    assert_errors(
        "errors/review-without-reviewer.md",
        &[(
            "18:9",
            "phase \"greet\" selects by review but no reviewer is set",
        )],
    );
}

#[test]
fn several_agents_need_an_implementer_role() {
    assert_errors(
        "errors/no-implementer.md",
        &[(
            "1:1",
            "the goal names no agent and no implementer role is set, with 2 agents defined",
        )],
    );
}

/// A valid goal file whose agents are not installed here: the summary is printed and the
/// exit code is 0, and each missing CLI is named on stderr with how to install it.
#[test]
fn agents_whose_executable_is_missing_are_named_with_how_to_install_them() {
    let env = TestEnv::new();
    env.write(
        "goal.md",
        "+++\n[agents.coder]\nadapter = \"gemini\"\ncommand = [\"gemini-not-installed-here\"]\n\n[agents.local]\nadapter = \"command\"\ncommand = [\"./tools/no-such-agent.sh\"]\n\n[roles]\nimplementer = \"coder\"\nreviewer = \"local\"\n+++\n\n# Goal: g\n\n## Outcome\nDone.\n\n## Verification surface\n- `true`\n",
    );
    let run = env.goalpost(["plan", "check", "goal.md"]);
    run.assert_code(0).assert_stdout_has("agents");
    run.assert_stderr_has(
        "warning: goal.md:2: agent `coder` (adapter gemini): executable `gemini-not-installed-here` not found on PATH",
    )
    .assert_stderr_has("install it with `npm install -g @google/gemini-cli`")
    .assert_stderr_has("agent `local` (adapter command): executable `./tools/no-such-agent.sh` not found in");
    let json = env.goalpost(["plan", "check", "goal.md", "--json"]).json();
    assert_eq!(
        json["missing_agents"].as_array().unwrap().len(),
        2,
        "{json:#}"
    );

    // Once the executable is there, nothing is said.
    env.write("tools/no-such-agent.sh", "#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    let script = env.dir().join("tools/no-such-agent.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = env.goalpost(["plan", "check", "goal.md"]);
    assert!(!run.stderr.contains("no-such-agent"), "{run}");
}
