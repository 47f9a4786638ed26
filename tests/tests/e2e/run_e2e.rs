//! `goalpost run`, `status`, `report`, `audit` and `demo`, driven through the real binaries
//! on real git repositories with the scripted agent standing in for models: what lands on
//! the release branch, what the gate keeps out, and what is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use goalpost_fixtures::repo::{CALC_FILES, CALC_MUL, CALC_SUB, hermetic_env};
use goalpost_shared::process::shell_quote;
use goalpost_tests::{Run, TestEnv, binary, calc_env, calc_file, path_quoted, quoted};
use serde_json::Value;

/// The repository's directory under the test's directory.
const REPO: &str = "calc";

/// The calc project's original `tests/run.sh`.
fn calc_tests() -> &'static str {
    calc_file("tests/run.sh")
}

/// What varies between the goal files of these tests.
struct Goal<'a> {
    release: &'a str,
    /// The implementer's argv; the scripted agent when `None`.
    coder_command: Option<&'a str>,
    /// More `KEY = "value"` pairs for the implementer's `env` table.
    coder_env: &'a str,
    /// The plan's `## Verification surface` items.
    verification: &'a str,
    /// Everything from `## Phases` on.
    phases: &'a str,
}

impl Default for Goal<'_> {
    fn default() -> Self {
        Goal {
            release: "main",
            coder_command: None,
            coder_env: "",
            verification: "- `sh tests/run.sh` passes",
            phases: "",
        }
    }
}

const BOUNDARIES: &str = "\
- Allowed paths: ops/, docs/, bench/duration_ms, README.md
- Forbidden paths: calc.sh
- Protected paths: tests/, bench/run.sh";

/// Writes `goal.md` (the plan) and `agent.toml` (the scripted agent's script) into the
/// test's directory, outside the repository; returns the plan's name.
fn write_goal(env: &TestEnv, script: &str, goal: &Goal<'_>) -> &'static str {
    let script_path = env.write("agent.toml", script);
    let agent = path_quoted(&binary("scripted-agent"));
    let coder_command = goal
        .coder_command
        .map(quoted)
        .unwrap_or_else(|| agent.clone());
    let script_q = path_quoted(&script_path);
    let coder_env = if goal.coder_env.is_empty() {
        String::new()
    } else {
        format!(", {}", goal.coder_env)
    };
    let text = format!(
        r#"+++
release = {release}
max_parallel = 2

[budget]
turns = 12
wall = "10m"

[agents.coder]
adapter = "command"
command = [{coder_command}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script_q}{coder_env} }}

[agents.critic]
adapter = "command"
command = [{agent}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script_q} }}

[roles]
implementer = "coder"
reviewer = "critic"
+++

# Goal: calc grows

## Outcome
calc does what each phase says.

## Verification surface
{verification}

## Constraints
- The command line of calc.sh stays as it is.

## Boundaries
{BOUNDARIES}

## Iteration policy
Run the checks after every change and say what changed.

## Blocked stop condition
Stop after 2 iterations with no improvement, or when a check cannot run at all.

{phases}"#,
        release = quoted(goal.release),
        verification = goal.verification,
        phases = goal.phases,
    );
    env.write("goal.md", &text);
    "goal.md"
}

/// The reviewer turn every script but one ends with: approve.
const APPROVE: &str = r#"
[[turn]]
role = "reviewer"
message = "The diff does what the phase asks.\nVERDICT: approve\n"
"#;

fn run_goal(env: &TestEnv, plan: &str) -> Run {
    env.goalpost(["run", plan, "-C", REPO])
}

/// The agents (or checks) of some tests leave probes outside their worktrees, which
/// only an unconfined run allows.
fn run_goal_unconfined(env: &TestEnv, plan: &str) -> Run {
    env.goalpost(["run", plan, "-C", REPO, "--unconfined"])
}

fn status(env: &TestEnv) -> Value {
    let run = env.goalpost(["status", "--json", "-C", REPO]);
    run.assert_code(0);
    run.json()
}

fn phase<'v>(status: &'v Value, id: &str) -> &'v Value {
    status["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase_id"] == id)
        .unwrap_or_else(|| panic!("no phase {id} in {status:#}"))
}

fn attempts<'v>(status: &'v Value, id: &str) -> Vec<&'v Value> {
    status["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["phase_id"] == id)
        .collect()
}

fn audits<'v>(status: &'v Value, id: &str) -> Vec<&'v Value> {
    status["audits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["phase_id"] == id)
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The `audit.json` and `audit.md` an audit row of `status --json` points to.
fn audit_files(audit: &Value) -> (Value, String) {
    let dir = PathBuf::from(text(&audit["report_dir"]));
    let json = std::fs::read_to_string(dir.join("audit.json")).unwrap();
    let md = std::fs::read_to_string(dir.join("audit.md")).unwrap();
    (serde_json::from_str(&json).unwrap(), md)
}

/// The worker's result of the round of attempt `n` of `phase` that began at `iteration`.
fn worker_result(env: &TestEnv, run_id: &str, phase: &str, n: u32, iteration: u32) -> Value {
    let path = env
        .dir()
        .join(REPO)
        .join(".git/goalpost/runs")
        .join(run_id)
        .join("attempts")
        .join(format!("{phase}.{n}"))
        .join(format!("worker-out-{iteration}.json"));
    let json = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&json).unwrap()
}

/// No worktree but the main one, and nothing left where goalpost makes its worktrees.
fn assert_no_worktree_left(env: &TestEnv) {
    let list = env.git(REPO, &["worktree", "list", "--porcelain"]).stdout;
    let trees: Vec<&str> = list
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .collect();
    let main = std::fs::canonicalize(env.dir().join(REPO)).unwrap();
    assert_eq!(trees, [main.to_str().unwrap()], "worktrees left:\n{list}");
    let left = env.leftover_worktree_files();
    assert!(left.is_empty(), "left under GOALPOST_WORKTREES: {left:?}");
}

/// [`TestEnv::repo_state`] without goalpost's own refs and files.
fn beyond_goalpost(state: &str) -> String {
    state
        .lines()
        .filter(|l| !l.starts_with("refs/goalpost/") && !l.starts_with(".git/goalpost"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The calc project's files with `changes` applied.
fn calc_tree(changes: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut tree: BTreeMap<String, String> = CALC_FILES
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect();
    for (p, c) in changes {
        tree.insert((*p).to_owned(), (*c).to_owned());
    }
    tree
}

const DOCS_AFTER_C: &str = "# Operations\n\n- add\n- sub\n";
const DOCS_AFTER_D: &str = "# Operations\n\n- add\n- sub\n- mul\n";

#[test]
fn a_diamond_of_phases_merges_in_dependency_order_and_the_release_holds_exactly_the_work() {
    let env = calc_env();
    let start = env.git_out(REPO, &["rev-parse", "main"]);
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "a"
actions = [{{ write = "ops/sub.sh", content = {sub} }}]
message = "Added sub.\nClaims:\n- `sh calc.sh sub 5 3` prints 2\n"

[[turn]]
role = "implementer"
phase = "b"
actions = [{{ write = "ops/mul.sh", content = {mul} }}]
message = "Added mul.\n"

[[turn]]
role = "implementer"
phase = "c"
actions = [{{ write = "docs/ops.md", content = {docs_c} }}]
message = "Documented add and sub.\n"

# d edits what c wrote: the agent fails if c's work is not in d's base.
[[turn]]
role = "implementer"
phase = "d"
actions = [
  {{ replace = "docs/ops.md", find = "- sub\n", with = "- sub\n- mul\n" }},
  {{ write = "bench/duration_ms", content = "90\n" }},
]
message = "Faster, and mul documented.\nClaims:\n- tests pass\n"
"##,
        sub = quoted(CALC_SUB),
        mul = quoted(CALC_MUL),
        docs_c = quoted(DOCS_AFTER_C),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            phases: "## Phases

### a: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`

### b: Multiplication
Depends on: a
Outcome: `sh calc.sh mul 4 3` prints 12.
Verification: `sh calc.sh mul 4 3 | grep -qx 12`

### c: Documentation
Depends on: a
Outcome: docs/ops.md lists the operations there are.
Verification: `test -f ops/sub.sh && grep -qx -- '- sub' docs/ops.md`

### d: Speed
Depends on: b, c
Outcome: every test passes and the benchmark reports at most 100 ms.
Verification: `sh tests/run.sh && grep -qx -- '- mul' docs/ops.md`
",
            ..Goal::default()
        },
    );

    let run = run_goal(&env, plan);
    run.assert_code(0);

    let st = status(&env);
    assert_eq!(st["run"]["state"], "complete", "{st:#}");
    let run_id = text(&st["run"]["id"]).to_owned();
    for id in ["a", "b", "c", "d"] {
        assert_eq!(phase(&st, id)["state"], "merged", "{st:#}");
    }

    // The release tip holds exactly the plan's work on top of the start.
    let release = env.git_out(REPO, &["rev-parse", "main"]);
    assert_eq!(text(&st["run"]["release_commit"]), release);
    let expected = calc_tree(&[
        ("ops/sub.sh", CALC_SUB),
        ("ops/mul.sh", CALC_MUL),
        ("docs/ops.md", DOCS_AFTER_D),
        ("bench/duration_ms", "90\n"),
    ]);
    assert_eq!(env.tree_files(REPO, "main"), expected, "\n{run}");

    // One squashed commit per phase, in an order the DAG allows.
    let integration = format!("refs/goalpost/{run_id}/integration");
    assert_eq!(env.git_out(REPO, &["rev-parse", &integration]), release);
    let subjects = env.git_out(
        REPO,
        &[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%s",
            &format!("{start}..{release}"),
        ],
    );
    let subjects: Vec<&str> = subjects.lines().collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert_eq!(subjects[0], "Subtraction", "{subjects:?}");
    let mut middle = subjects[1..3].to_vec();
    middle.sort_unstable();
    assert_eq!(middle, ["Documentation", "Multiplication"], "{subjects:?}");
    assert_eq!(subjects[3], "Speed", "{subjects:?}");
    let parents = env.git_out(
        REPO,
        &["rev-list", "--parents", &format!("{start}..{release}")],
    );
    for line in parents.lines() {
        assert_eq!(line.split(' ').count(), 2, "not one parent: {line}");
    }
    // And the store agrees: each phase merged on top of its dependencies.
    let merged = |id: &str| text(&phase(&st, id)["merged_commit"]).to_owned();
    for (dep, dependent) in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")] {
        env.git(
            REPO,
            &[
                "merge-base",
                "--is-ancestor",
                &merged(dep),
                &merged(dependent),
            ],
        );
    }

    // Every attempt's work is kept on its ref.
    let refs = env.git_out(
        REPO,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            &format!("refs/goalpost/{run_id}/"),
        ],
    );
    let refs: BTreeMap<&str, &str> = refs.lines().filter_map(|l| l.split_once(' ')).collect();
    for id in ["a", "b", "c", "d"] {
        let attempt = attempts(&st, id);
        assert_eq!(attempt.len(), 1, "{st:#}");
        assert!(
            Path::new(text(&attempt[0]["worktree"])).starts_with(env.worktrees()),
            "{st:#}"
        );
        let name = format!("refs/goalpost/{run_id}/{id}/1");
        assert_eq!(text(&attempt[0]["ref_name"]), name);
        assert_eq!(
            refs.get(name.as_str()).copied(),
            attempt[0]["head"].as_str(),
            "{refs:?}"
        );
    }
    assert_eq!(refs.len(), 5, "{refs:?}");

    assert_no_worktree_left(&env);

    // The main working tree followed the release branch.
    assert_eq!(
        env.git_out(REPO, &["symbolic-ref", "HEAD"]),
        "refs/heads/main"
    );
    assert_eq!(env.git_out(REPO, &["status", "--porcelain"]), "");
    assert_eq!(env.read("calc/ops/mul.sh"), CALC_MUL);
    assert_eq!(env.read("calc/docs/ops.md"), DOCS_AFTER_D);
}

#[test]
fn an_edit_of_a_forbidden_path_is_never_merged() {
    let env = calc_env();
    let start = env.repo_state(REPO);
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "sub"
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ append = "calc.sh", content = "# sub is supported\n" }},
]
message = "Added sub and noted it in calc.sh.\n"
"##,
        sub = quoted(CALC_SUB),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`
",
            ..Goal::default()
        },
    );

    let run = run_goal(&env, plan);
    run.assert_code(3);

    let st = status(&env);
    assert_eq!(st["run"]["state"], "blocked", "{st:#}");
    assert_eq!(phase(&st, "sub")["state"], "blocked", "{st:#}");
    let sub_audits = audits(&st, "sub");
    assert!(!sub_audits.is_empty(), "{st:#}");
    for audit in &sub_audits {
        assert_ne!(audit["recommendation"], "merge", "{st:#}");
        let (json, md) = audit_files(audit);
        assert_eq!(json["violations"][0]["path"], "calc.sh", "{json:#}");
        assert_eq!(json["violations"][0]["kind"], "forbidden", "{json:#}");
        assert!(md.contains("`calc.sh`"), "{md}");
    }
    let report = env.goalpost(["report", "-C", REPO]);
    report.assert_code(0).assert_stdout_has("`calc.sh`");

    // Nothing moved but goalpost's own refs; the attempt's work is kept on its ref.
    let run_id = text(&st["run"]["id"]);
    let main = env.git_out(REPO, &["rev-parse", "main"]);
    assert_eq!(text(&st["run"]["release_start"]), main);
    assert_eq!(
        env.git_out(
            REPO,
            &["rev-parse", &format!("refs/goalpost/{run_id}/integration")]
        ),
        main
    );
    let kept = env.git_out(
        REPO,
        &["show", &format!("refs/goalpost/{run_id}/sub/1:calc.sh")],
    );
    assert!(kept.ends_with("# sub is supported"), "{kept}");
    assert_eq!(
        beyond_goalpost(&env.repo_state(REPO)),
        beyond_goalpost(&start)
    );
    assert_no_worktree_left(&env);
}

#[test]
fn a_rewritten_protected_test_is_not_merged_though_it_passed_in_the_implementers_worktree() {
    let env = calc_env();
    let script = format!(
        r##"{APPROVE}
# First try: only sub, and the test script rewritten so nothing can fail.
[[turn]]
role = "implementer"
phase = "ops"
iteration = 1
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ write = "tests/run.sh", content = "#!/bin/sh\nexit 0\n" }},
]
message = "Added sub.\n"

# After the audit: the honest change.
[[turn]]
role = "implementer"
phase = "ops"
actions = [
  {{ write = "ops/mul.sh", content = {mul} }},
  {{ write = "tests/run.sh", content = {tests} }},
]
message = "Added mul and put the tests back.\n"
"##,
        sub = quoted(CALC_SUB),
        mul = quoted(CALC_MUL),
        tests = quoted(calc_tests()),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            phases: "## Phases

### ops: Subtraction and multiplication
Outcome: every test passes.
Verification: `sh tests/run.sh`
",
            ..Goal::default()
        },
    );

    let run = run_goal(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    let run_id = text(&st["run"]["id"]);
    let attempt = attempts(&st, "ops")[0];

    // In the implementer's worktree the rewritten script passed...
    let round1 = worker_result(&env, run_id, "ops", 1, 1);
    let check = &round1["iterations"][0]["checks"][0];
    assert_eq!(check["command"], "sh tests/run.sh", "{round1:#}");
    assert_eq!(check["passed"], true, "{round1:#}");
    assert_eq!(check["record"]["cwd"], attempt["worktree"], "{round1:#}");
    assert_eq!(round1["outcome"]["kind"], "candidate", "{round1:#}");

    // ...but the auditor ran the tests as they are at the base, and they failed.
    let ops_audits = audits(&st, "ops");
    assert_eq!(ops_audits[0]["recommendation"], "revise", "{st:#}");
    let (json, md) = audit_files(ops_audits[0]);
    let violation = json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "protected")
        .unwrap_or_else(|| panic!("no protected-path violation: {json:#}"));
    assert_eq!(violation["path"], "tests/run.sh");
    let audit_check = &json["checks"][0];
    assert_eq!(audit_check["passed"], false, "{json:#}");
    let stdout = text(&audit_check["record"]["stdout"]);
    assert!(stdout.contains("FAIL mul"), "{stdout}");
    assert!(stdout.contains("passed=2 failed=1"), "{stdout}");
    assert_ne!(audit_check["record"]["cwd"], attempt["worktree"]);
    assert!(md.contains("protected path changed"), "{md}");

    // The rewrite never reached the integration history or the release branch.
    let start = text(&st["run"]["release_start"]);
    let commits = env.git_out(REPO, &["rev-list", &format!("{start}..main")]);
    assert!(!commits.is_empty());
    for commit in commits.lines() {
        let tests = env.git(REPO, &["show", &format!("{commit}:tests/run.sh")]);
        assert_eq!(tests.stdout, calc_tests(), "at {commit}");
    }
    assert_eq!(
        env.tree_files(REPO, "main"),
        calc_tree(&[("ops/sub.sh", CALC_SUB), ("ops/mul.sh", CALC_MUL)])
    );
    assert_no_worktree_left(&env);
}

#[test]
fn a_claim_that_the_tests_pass_is_refuted_by_the_auditors_own_run() {
    let env = calc_env();
    // Local files are ignored: what works only thanks to one never reaches a commit.
    env.write("calc/.gitignore", "*.local\n");
    env.git(REPO, &["add", ".gitignore"]);
    env.git(REPO, &["commit", "-q", "-m", "Ignore local files"]);
    let before = env.repo_state(REPO);

    let script = format!(
        r##"{APPROVE}
# sub works in the implementer's worktree only: its body is in an ignored file.
[[turn]]
role = "implementer"
phase = "ops"
actions = [
  {{ write = "ops/sub.sh", content = ". ./ops/sub.local\n" }},
  {{ write = "ops/sub.local", content = {sub} }},
  {{ write = "ops/mul.sh", content = {mul} }},
]
message = "Added sub and mul.\nClaims:\n- tests pass\n"
"##,
        sub = quoted(CALC_SUB),
        mul = quoted(CALC_MUL),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            phases: "## Phases

### ops: Subtraction and multiplication
Outcome: every test passes.
Verification: `sh tests/run.sh`
",
            ..Goal::default()
        },
    );

    let run = run_goal(&env, plan);
    run.assert_code(3);
    let st = status(&env);
    let run_id = text(&st["run"]["id"]);

    // The implementer's own check passed...
    let round1 = worker_result(&env, run_id, "ops", 1, 1);
    assert_eq!(
        round1["iterations"][0]["checks"][0]["passed"], true,
        "{round1:#}"
    );
    assert_eq!(round1["outcome"]["claims"][0], "tests pass", "{round1:#}");

    // ...the auditor's did not, and its report says so, quoting its own output.
    let ops_audits = audits(&st, "ops");
    assert!(!ops_audits.is_empty(), "{st:#}");
    for audit in &ops_audits {
        assert_ne!(audit["recommendation"], "merge", "{st:#}");
    }
    let (json, md) = audit_files(ops_audits[0]);
    assert_eq!(json["claims"][0]["claim"], "tests pass", "{json:#}");
    assert_eq!(json["claims"][0]["status"], "refuted", "{json:#}");
    assert!(
        text(&json["claims"][0]["evidence"]).contains("FAIL sub"),
        "{json:#}"
    );
    assert!(md.contains("**refuted**: “tests pass”"), "{md}");
    assert!(md.contains("FAIL sub: expected '-1'"), "{md}");
    assert!(md.contains("passed=2 failed=1"), "{md}");
    env.goalpost(["report", "-C", REPO])
        .assert_code(0)
        .assert_stdout_has("1 claim refuted");

    // Not merged: the release branch and the working tree are as they were.
    assert_eq!(
        beyond_goalpost(&env.repo_state(REPO)),
        beyond_goalpost(&before)
    );
    assert_no_worktree_left(&env);
}

const README_LEFT: &str = "# calc: add, sub\n";
const README_RIGHT: &str = "# calc (fast)\n";
const README_BOTH: &str = "# calc: add, sub (fast)\n";

#[test]
fn parallel_edits_of_the_same_lines_conflict_and_neither_is_lost() {
    let env = calc_env();
    let readme = calc_file("README.md");
    let combined = readme.replacen("# calc\n", README_BOTH, 1);
    // Each phase changes the README's first line; whichever lands second gets a conflict
    // round and writes the line holding both changes.
    let mut script = APPROVE.to_owned();
    for (id, line) in [("left", README_LEFT), ("right", README_RIGHT)] {
        let snapshot = env.dir().join(format!("conflicted-{id}.md"));
        let prompt = env.dir().join(format!("prompt-{id}.txt"));
        script.push_str(&format!(
            r##"
[[turn]]
role = "implementer"
phase = "{id}"
iteration_min = 2
actions = [
  {{ copy_prompt = {prompt} }},
  {{ run = {copy} }},
  {{ fail_if_prompt_lacks = "resolve the conflict markers in:\n- README.md\n" }},
  {{ write = "README.md", content = {combined} }},
]
message = "Kept both changes to the first line.\n"

[[turn]]
role = "implementer"
phase = "{id}"
actions = [{{ replace = "README.md", find = "# calc\n", with = {line} }}]
message = "Changed the title.\n"
"##,
            prompt = path_quoted(&prompt),
            copy = quoted(&format!("cp README.md {}", shell_quote(&snapshot))),
            combined = quoted(&combined),
            line = quoted(line),
        ));
    }
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            verification: "- `head -n 1 README.md | grep -q 'add, sub'`
- `head -n 1 README.md | grep -qF '(fast)'`",
            phases: "## Phases

### left: Name the operations
Outcome: the README's title names add and sub.
Verification: `head -n 1 README.md | grep -q 'add, sub'`

### right: Say it is fast
Outcome: the README's title says calc is fast.
Verification: `head -n 1 README.md | grep -qF '(fast)'`
",
            ..Goal::default()
        },
    );

    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0)
        .assert_stdout_has("conflicts with the integration tip in README.md");

    // Exactly one phase went back for a conflict round, with the paths and the markers.
    let st = status(&env);
    let rounds = |id: &str| attempts(&st, id)[0]["rounds"].as_u64().unwrap();
    let (second, first) = match (rounds("left"), rounds("right")) {
        (2, 1) => ("left", "right"),
        (1, 2) => ("right", "left"),
        other => panic!("rounds (left, right) = {other:?}\n{st:#}"),
    };
    assert!(!env.dir().join(format!("conflicted-{first}.md")).exists());
    let conflicted = env.read(&format!("conflicted-{second}.md"));
    for needle in ["<<<<<<<", ">>>>>>>", README_LEFT, README_RIGHT] {
        assert!(conflicted.contains(needle), "{needle:?} in:\n{conflicted}");
    }
    let prompt = env.read(&format!("prompt-{second}.txt"));
    assert!(prompt.contains("## Merge conflict"), "{prompt}");
    assert!(
        prompt.contains("resolve the conflict markers in:\n- README.md\n"),
        "{prompt}"
    );

    // Both changes are on the release branch, nothing else changed.
    assert_eq!(
        env.tree_files(REPO, "main"),
        calc_tree(&[("README.md", &combined)])
    );
    let start = text(&st["run"]["release_start"]);
    let landed = env.git_out(
        REPO,
        &["rev-list", "--first-parent", &format!("{start}..main")],
    );
    assert_eq!(landed.lines().count(), 2, "{landed}");
    assert_eq!(env.read("calc/README.md"), combined);
    assert_no_worktree_left(&env);
}

#[test]
fn a_commit_pushed_to_the_release_branch_during_the_run_survives() {
    let env = calc_env();
    let repo = env.dir().join(REPO);
    // Someone else commits to `main` in the user's checkout while the phase runs: git as
    // hermetic as the test's own (the agent's environment is goalpost's allow-list), under
    // a name and on a day of their own.
    let someone_env: Vec<String> = hermetic_env(&env.home())
        .into_iter()
        .filter(|(key, _)| key.starts_with("GIT_") || key == "LC_ALL")
        .chain(
            [
                ("GIT_AUTHOR_NAME", "Someone"),
                ("GIT_AUTHOR_EMAIL", "someone@example.com"),
                ("GIT_AUTHOR_DATE", "2026-01-02T00:00:00Z"),
                ("GIT_COMMITTER_NAME", "Someone"),
                ("GIT_COMMITTER_EMAIL", "someone@example.com"),
                ("GIT_COMMITTER_DATE", "2026-01-02T00:00:00Z"),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        )
        .map(|(key, value)| format!("{key}={}", shell_quote(value)))
        .collect();
    let someone = format!(
        "cd {} && export {} && \
         printf 'notes\\n' > NOTES.md && git add NOTES.md && \
         git commit -q -m 'Notes from someone else'",
        shell_quote(&repo),
        someone_env.join(" ")
    );
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "sub"
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ run = {someone} }},
]
message = "Added sub.\n"
"##,
        sub = quoted(CALC_SUB),
        someone = quoted(&someone),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            verification: "- `sh calc.sh sub 5 3 | grep -qx 2`",
            phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`
",
            ..Goal::default()
        },
    );

    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0)
        .assert_stdout_has("main moved during the run");

    let st = status(&env);
    assert_eq!(st["run"]["state"], "complete", "{st:#}");
    let theirs = env.git_out(REPO, &["log", "--format=%H", "--author=Someone", "main"]);
    assert_eq!(theirs.lines().count(), 1, "their commit is on main\n{run}");
    let main = env.git_out(REPO, &["rev-parse", "main"]);
    let integration = format!("refs/goalpost/{}/integration", text(&st["run"]["id"]));
    env.git(REPO, &["merge-base", "--is-ancestor", &theirs, &main]);
    env.git(REPO, &["merge-base", "--is-ancestor", &integration, &main]);
    assert_eq!(text(&st["run"]["release_commit"]), main);
    let mut expected = calc_tree(&[("ops/sub.sh", CALC_SUB)]);
    expected.insert("NOTES.md".into(), "notes\n".into());
    assert_eq!(env.tree_files(REPO, "main"), expected);

    // The merge with their commit was verified before the release moved to it.
    let goal_audits = audits(&st, "goal");
    assert_eq!(goal_audits.len(), 2, "{st:#}");
    assert_eq!(text(&goal_audits[1]["candidate"]), main);
    assert_eq!(text(&goal_audits[1]["base"]), theirs);
    assert_eq!(goal_audits[1]["recommendation"], "merge");

    assert_eq!(env.git_out(REPO, &["status", "--porcelain"]), "");
    assert_eq!(env.read("calc/ops/sub.sh"), CALC_SUB);
    assert_eq!(env.read("calc/NOTES.md"), "notes\n");
    assert_no_worktree_left(&env);
}

const SECRET: &str = "s3cret-for-the-implementer-only";

#[test]
fn the_auditor_never_sees_the_implementers_environment_or_worktree() {
    let env = calc_env();
    std::fs::create_dir_all(env.dir().join("envs")).unwrap();
    let implementer_env = env.dir().join("implementer-env.txt");
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "sub"
actions = [
  {{ record_env = {implementer_env} }},
  {{ write = "ops/sub.sh", content = {sub} }},
]
message = "Added sub.\n"
"##,
        implementer_env = path_quoted(&implementer_env),
        sub = quoted(CALC_SUB),
    );
    // Every run of the check leaves its environment (PWD included) in a file named
    // after the directory it ran in.
    let check = format!(
        "`env > {}/\"$(basename \"$PWD\")\".env && sh calc.sh sub 5 3 | grep -qx 2`",
        shell_quote(env.dir().join("envs"))
    );
    // The whole-goal audit runs a check of its own (the phase's one on the same tree
    // would be a verification-cache hit and run nothing).
    let verification = format!("- {}", check.replacen("`env", "`true && env", 1));
    let phases = format!(
        "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: {check}
"
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            coder_env: &format!("SECRET_FOR_IMPLEMENTER = {}", quoted(SECRET)),
            verification: &verification,
            phases: &phases,
            ..Goal::default()
        },
    );

    // The agent and the check leave their probes outside their worktrees, which only an
    // unconfined run allows.
    let run = env.goalpost(["run", plan, "-C", REPO, "--unconfined"]);
    run.assert_code(0);
    let st = status(&env);
    let worktree = text(&attempts(&st, "sub")[0]["worktree"]).to_owned();

    let recorded = env.read("implementer-env.txt");
    assert!(
        recorded.contains(&format!("SECRET_FOR_IMPLEMENTER={SECRET}\n")),
        "{recorded}"
    );
    // The worker's own check ran in the implementer's worktree...
    let own = env.read("envs/sub.1.env");
    assert!(own.contains(&format!("PWD={worktree}\n")), "{own}");
    // ...every audit's checks somewhere else, without the implementer's variables.
    let mut audited = 0;
    for entry in std::fs::read_dir(env.dir().join("envs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("audit-") {
            continue;
        }
        audited += 1;
        let seen = std::fs::read_to_string(&path).unwrap();
        assert!(!seen.contains(SECRET), "{name}:\n{seen}");
        assert!(!seen.contains("SECRET_FOR_IMPLEMENTER"), "{name}:\n{seen}");
        assert!(
            !seen.contains(&format!("PWD={worktree}\n")),
            "{name}:\n{seen}"
        );
        assert!(seen.contains("PWD=/"), "{name}:\n{seen}");
        let home = env.home().display().to_string();
        assert!(!seen.contains(&format!("HOME={home}\n")), "{name}:\n{seen}");
    }
    // The phase's audit and the whole-goal audit.
    assert_eq!(audited, 2, "{run}");
}

const NOTE: &str = "NOTE-7f3a: print the result with printf, not echo";
const SUB_PRINTF: &str = "sub() { printf '%s\\n' $(($1 - $2)); }\n";

#[test]
fn a_reviewers_notes_reach_the_next_implementer_prompt() {
    let env = calc_env();
    let prompt = env.dir().join("prompt-2.txt");
    let script = format!(
        r##"
[[turn]]
role = "reviewer"
iteration = 1
message = "It works, but:\n{NOTE}\nVERDICT: changes\n"

[[turn]]
role = "reviewer"
message = "Good.\nVERDICT: approve\n"

[[turn]]
role = "implementer"
iteration = 1
actions = [{{ write = "ops/sub.sh", content = {sub} }}]
message = "Added sub.\n"

[[turn]]
role = "implementer"
iteration = 2
actions = [
  {{ copy_prompt = {prompt} }},
  {{ fail_if_prompt_lacks = {note} }},
  {{ write = "ops/sub.sh", content = {sub_printf} }},
]
message = "Printed with printf.\n"
"##,
        sub = quoted(CALC_SUB),
        sub_printf = quoted(SUB_PRINTF),
        prompt = path_quoted(&prompt),
        note = quoted(NOTE),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            verification: "- `sh calc.sh sub 5 3 | grep -qx 2`",
            phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`
",
            ..Goal::default()
        },
    );

    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    assert_eq!(attempts(&st, "sub")[0]["iterations"], 2, "{st:#}");
    let seen = env.read("prompt-2.txt");
    assert!(seen.contains(NOTE), "{seen}");
    assert_eq!(env.tree_files(REPO, "main")["ops/sub.sh"], SUB_PRINTF);
}

/// A goal file with one phase that would merge, for the bad-input tests.
fn one_phase_goal<'a>(release: &'a str, coder_command: Option<&'a str>) -> Goal<'a> {
    Goal {
        release,
        coder_command,
        verification: "- `sh calc.sh sub 5 3 | grep -qx 2`",
        phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`
",
        ..Goal::default()
    }
}

const SUB_SCRIPT: &str = r#"
[[turn]]
role = "implementer"
actions = [{ write = "ops/sub.sh", content = "sub() { echo $(($1 - $2)); }\n" }]
message = "Added sub.\n"

[[turn]]
role = "reviewer"
message = "VERDICT: approve\n"
"#;

/// Runs `goal.md` on `dir`, which it must refuse (exit 2) without changing anything
/// there; returns stderr with the test's directory written `[TMP]`.
fn assert_refused(env: &TestEnv, plan: &str, dir: &str, state: impl Fn() -> String) -> String {
    let before = state();
    let run = env.goalpost(["run", plan, "-C", dir]);
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "nothing on stdout\n{run}");
    assert_eq!(state(), before, "the repository changed\n{run}");
    let left = env.leftover_worktree_files();
    assert!(left.is_empty(), "{left:?}\n{run}");
    let tmp = std::fs::canonicalize(env.dir()).unwrap();
    run.stderr
        .replace(tmp.to_str().unwrap(), "[TMP]")
        .replace(env.dir().to_str().unwrap(), "[TMP]")
}

#[test]
fn run_outside_a_git_repository_is_bad_input() {
    let env = TestEnv::new();
    env.write("plain/notes.txt", "not a repository\n");
    let plan = write_goal(&env, SUB_SCRIPT, &one_phase_goal("main", None));
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(env.dir().join("plain"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.join("\n")
    };
    let stderr = assert_refused(&env, plan, "plain", listing);
    assert!(
        stderr.contains("is not inside a git repository"),
        "{stderr}"
    );
    insta::assert_snapshot!("not_a_repository", stderr);
}

#[test]
fn run_on_a_working_tree_with_a_tracked_change_is_bad_input() {
    let env = calc_env();
    let plan = write_goal(&env, SUB_SCRIPT, &one_phase_goal("main", None));
    env.write("calc/README.md", "# calc, edited but not committed\n");
    let stderr = assert_refused(&env, plan, REPO, || env.repo_state(REPO));
    assert!(
        stderr.contains("uncommitted changes: README.md"),
        "{stderr}"
    );
    insta::assert_snapshot!("dirty_tracked", stderr);
}

#[test]
fn run_on_a_working_tree_with_an_untracked_file_is_bad_input() {
    let env = calc_env();
    let plan = write_goal(&env, SUB_SCRIPT, &one_phase_goal("main", None));
    env.write("calc/scratch.txt", "work in progress\n");
    let stderr = assert_refused(&env, plan, REPO, || env.repo_state(REPO));
    assert!(
        stderr.contains("uncommitted changes: scratch.txt"),
        "{stderr}"
    );
    insta::assert_snapshot!("dirty_untracked", stderr);
}

#[test]
fn run_with_an_unknown_release_branch_is_bad_input() {
    let env = calc_env();
    let plan = write_goal(&env, SUB_SCRIPT, &one_phase_goal("nope", None));
    let stderr = assert_refused(&env, plan, REPO, || env.repo_state(REPO));
    assert!(
        stderr.contains("the release branch `nope` does not exist"),
        "{stderr}"
    );
    insta::assert_snapshot!("unknown_release", stderr);
}

#[test]
fn run_with_a_missing_agent_executable_is_bad_input() {
    let env = calc_env();
    let plan = write_goal(
        &env,
        SUB_SCRIPT,
        &one_phase_goal("main", Some("./no-such-agent")),
    );
    let stderr = assert_refused(&env, plan, REPO, || env.repo_state(REPO));
    assert!(
        stderr.contains("executable `./no-such-agent` not found"),
        "{stderr}"
    );
    insta::assert_snapshot!("missing_agent", stderr);
}

#[test]
fn the_demo_lands_every_phase_and_keeps_the_protected_tests() {
    let env = TestEnv::new();
    let run = env.goalpost(["demo", "--dir", "demo"]);
    run.assert_code(0)
        .assert_stdout_has("outcome of each phase:");
    for id in ["sub", "mul", "speed", "docs"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("  {id:<6} merged "))),
            "no outcome line for {id}\n{run}"
        );
    }
    // The demo's sent-back attempts are in the outcome too.
    run.assert_stdout_has("revise -> merge");

    let tree = env.tree_files("demo/calc", "main");
    assert_eq!(tree["ops/sub.sh"], CALC_SUB);
    assert_eq!(tree["ops/mul.sh"], CALC_MUL);
    assert!(tree["docs/ops.md"].contains("mul"), "{tree:?}");
    assert_eq!(tree["tests/run.sh"], calc_tests());
    assert_eq!(tree["calc.sh"], calc_file("calc.sh"));
    assert_eq!(tree["ops/add.sh"], calc_file("ops/add.sh"));
    assert_eq!(env.git_out("demo/calc", &["status", "--porcelain"]), "");
    let left = env.leftover_worktree_files();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn audit_judges_any_commit_pair() {
    let env = calc_env();
    let plan = write_goal(&env, SUB_SCRIPT, &one_phase_goal("main", None));
    for (branch, files) in [
        ("good", vec![("ops/sub.sh", CALC_SUB)]),
        (
            "bad",
            vec![
                ("ops/sub.sh", CALC_SUB),
                ("calc.sh", "#!/bin/sh\necho rewritten\n"),
            ],
        ),
    ] {
        env.git(REPO, &["checkout", "-q", "-b", branch, "main"]);
        for (path, content) in files {
            env.write(&format!("{REPO}/{path}"), content);
        }
        env.git(REPO, &["add", "-A"]);
        env.git(REPO, &["commit", "-q", "-m", branch]);
    }
    env.git(REPO, &["checkout", "-q", "main"]);
    let before = beyond_goalpost(&env.repo_state(REPO));
    let audit = |candidate: &str, json: bool| {
        let mut args = vec![
            "audit",
            "--plan",
            plan,
            "--phase",
            "sub",
            "--base",
            "main",
            "--candidate",
            candidate,
            "-C",
            REPO,
        ];
        if json {
            args.push("--json");
        }
        env.goalpost(args)
    };

    audit("good", false)
        .assert_code(0)
        .assert_stdout_has("**Recommendation: merge**");
    let good = audit("good", true);
    good.assert_code(0);
    let report = good.json();
    assert_eq!(report["recommendation"], "merge", "{good}");
    assert_eq!(
        text(&report["candidate"]),
        env.git_out(REPO, &["rev-parse", "good"])
    );
    assert_eq!(report["checks"][0]["passed"], true, "{good}");

    audit("bad", false)
        .assert_code(3)
        .assert_stdout_has("`calc.sh`");
    let bad = audit("bad", true);
    bad.assert_code(3);
    let report = bad.json();
    assert_ne!(report["recommendation"], "merge", "{bad}");
    assert_eq!(report["violations"][0]["path"], "calc.sh", "{bad}");
    assert_eq!(report["violations"][0]["kind"], "forbidden", "{bad}");

    // An audit moves nothing.
    assert_eq!(beyond_goalpost(&env.repo_state(REPO)), before);
    let left = env.leftover_worktree_files();
    assert!(left.is_empty(), "{left:?}");
}
