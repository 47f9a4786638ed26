//! Best-of-n, driven through the real binaries on real git repositories: `Attempts: N`
//! runs N attempts of a phase side by side, each in its own worktree, and `Select:
//! first|best METRIC|review` decides which one lands. Only an attempt that passed its
//! audit can win; the others' work stays on their refs; a phase none of whose attempts
//! passed blocks the run and everything that depends on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use goalpost_shared::process::shell_quote;
use goalpost_tests::{Run, TestEnv, binary, calc_env, calc_file, path_quoted, quoted};
use serde_json::Value;

/// The repository's directory under the test's directory.
const REPO: &str = "calc";

/// The phase every test runs several attempts of.
const PHASE: &str = "speed";

/// What varies between the goal files of these tests.
struct Goal<'a> {
    max_parallel: u32,
    /// The plan's `## Verification surface` items; [`BENCH_CHECK`] when empty.
    verification: &'a str,
    /// More `KEY = "value"` pairs for the `env` table of agent `a`, `b` or `c`.
    agent_env: &'a [(&'a str, &'a str)],
    /// Everything from `## Phases` on.
    phases: &'a str,
}

/// Writes `goal.md` and the scripted agent's `agent.toml` into the test's directory,
/// outside the repository; returns the plan's name. Agents `a`, `b` and `c` implement,
/// `critic` reviews; all four are the scripted agent playing the same script, told
/// apart by the attempt (or role) the script's turns filter on.
fn write_goal(env: &TestEnv, script: &str, goal: &Goal<'_>) -> &'static str {
    let script_path = env.write("agent.toml", script);
    let agent = path_quoted(&binary("scripted-agent"));
    let script_q = path_quoted(&script_path);
    let mut agents = String::new();
    for name in ["a", "b", "c", "critic"] {
        let extra: String = goal
            .agent_env
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, pair)| format!(", {pair}"))
            .collect();
        agents.push_str(&format!(
            "[agents.{name}]\nadapter = \"command\"\ncommand = [{agent}]\n\
             env = {{ SCRIPTED_AGENT_SCRIPT = {script_q}{extra} }}\n\n"
        ));
    }
    let text = format!(
        r#"+++
release = "main"
max_parallel = {max_parallel}

[budget]
turns = 12
wall = "2m"

{agents}[roles]
implementer = "a"
reviewer = "critic"
+++

# Goal: calc is fast

## Outcome
The benchmark reports at most 150 ms.

## Verification surface
{verification}

## Boundaries
- Allowed paths: ops/, docs/, bench/duration_ms
- Forbidden paths: calc.sh
- Protected paths: tests/, bench/run.sh

## Iteration policy
Run the benchmark after every change.

## Blocked stop condition
Stop after 2 iterations with no improvement.

{phases}"#,
        max_parallel = goal.max_parallel,
        verification = if goal.verification.is_empty() {
            BENCH_CHECK
        } else {
            goal.verification
        },
        phases = goal.phases,
    );
    env.write("goal.md", &text);
    "goal.md"
}

/// The plan's check unless a test says otherwise.
const BENCH_CHECK: &str = "- `sh bench/run.sh` reports `duration_ms` at most 150";

/// The `speed` phase with `attempts` (`3 (a, b, c)`) selected by `select`.
fn speed_phase(attempts: &str, select: &str) -> String {
    format!(
        "## Phases

### {PHASE}: A faster calc
Attempts: {attempts}
Select: {select}
Outcome: the benchmark reports at most 150 ms.
Verification: `sh bench/run.sh` reports `duration_ms` at most 150
"
    )
}

/// `goal.md` with the one phase of [`speed_phase`], the plan's own check, and
/// `max_parallel` jobs at once.
fn write_speed_goal(
    env: &TestEnv,
    script: &str,
    attempts: &str,
    select: &str,
    max_parallel: u32,
) -> &'static str {
    let phases = speed_phase(attempts, select);
    let goal = Goal {
        max_parallel,
        verification: "",
        agent_env: &[],
        phases: &phases,
    };
    write_goal(env, script, &goal)
}

/// The reviewer turn of every attempt: approve.
const APPROVE: &str = r#"
[[turn]]
role = "reviewer"
message = "The diff does what the phase asks.\nVERDICT: approve\n"
"#;

/// An implementer turn of attempt `n` of `speed` that records a benchmark of `ms`.
fn bench_turn(n: u32, ms: u32) -> String {
    format!(
        r#"
[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = {n}
actions = [{{ write = "bench/duration_ms", content = "{ms}\n" }}]
message = "Attempt {n} made calc faster.\n"
"#
    )
}

/// An implementer turn of attempt `n` of `speed` that "speeds up" the benchmark by
/// rewriting the protected `bench/run.sh`: the checks pass in its own worktree, but its
/// audit, which runs the benchmark as it was, says abandon.
fn cheating_turn(n: u32) -> String {
    format!(
        r#"
[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = {n}
actions = [{{ write = "bench/run.sh", content = {cheat} }}]
message = "Attempt {n} made calc fastest.\n"
"#,
        cheat = quoted(CHEAT),
    )
}

/// The protected benchmark as [`cheating_turn`] rewrites it.
const CHEAT: &str = "#!/bin/sh\necho duration_ms=40\n";

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

fn run_id(status: &Value) -> String {
    text(&status["run"]["id"]).to_owned()
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

fn attempt<'v>(status: &'v Value, id: &str, n: u32) -> &'v Value {
    attempts(status, id)
        .into_iter()
        .find(|a| a["n"] == n)
        .unwrap_or_else(|| panic!("no attempt {id}/{n} in {status:#}"))
}

/// The recommendation of the last audit of attempt `n` of `id`.
fn last_audit(status: &Value, id: &str, n: u32) -> String {
    status["audits"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|a| a["phase_id"] == id && a["attempt"] == n)
        .map(|a| text(&a["recommendation"]).to_owned())
        .unwrap_or_else(|| "-".into())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The refs goalpost keeps for the attempts of `phase`: attempt number -> commit.
fn attempt_refs(env: &TestEnv, run_id: &str, phase: &str) -> BTreeMap<u32, String> {
    let prefix = format!("refs/goalpost/{run_id}/{phase}/");
    env.git_out(
        REPO,
        &["for-each-ref", "--format=%(refname) %(objectname)", &prefix],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(name, oid)| {
        let n = name.strip_prefix(&prefix).unwrap().parse().unwrap();
        (n, oid.to_owned())
    })
    .collect()
}

/// The content of `path` in the commit `rev` of the repository.
fn file_at(env: &TestEnv, rev: &str, path: &str) -> String {
    env.git(REPO, &["show", &format!("{rev}:{path}")]).stdout
}

/// The private directory (prompts, temp dir, stop file) of attempt `n` of `phase`.
fn attempt_dir(env: &TestEnv, run_id: &str, phase: &str, n: u32) -> PathBuf {
    env.dir()
        .join(REPO)
        .join(".git/goalpost/runs")
        .join(run_id)
        .join("attempts")
        .join(format!("{phase}.{n}"))
}

/// The names of the prompt files written for the turns of attempt `n` of `phase`.
fn prompt_files(env: &TestEnv, run_id: &str, phase: &str, n: u32) -> Vec<String> {
    let dir = attempt_dir(env, run_id, phase, n).join("prompts");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// No worktree but the main one, and nothing left where goalpost makes its worktrees:
/// every attempt's work, the losers' included, is on its ref.
fn assert_no_worktree_left(env: &TestEnv) {
    let list = env.git(REPO, &["worktree", "list", "--porcelain"]).stdout;
    let trees = list.lines().filter(|l| l.starts_with("worktree ")).count();
    assert_eq!(trees, 1, "worktrees left:\n{list}");
    let left = env.leftover_worktree_files();
    assert!(left.is_empty(), "left under GOALPOST_WORKTREES: {left:?}");
}

#[test]
fn best_merges_the_lowest_metric_among_the_attempts_that_passed_their_audit() {
    let env = calc_env();
    // Attempt 1 passes first with 120; attempt 2 is slower and passes with 90; attempt 3
    // "reaches" 40 in its own worktree by rewriting the protected benchmark, which its
    // audit (run with the benchmark as it was) refuses.
    let script = format!(
        r##"{APPROVE}
{attempt1}
[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 2
actions = [{{ sleep_ms = 500 }}, {{ write = "bench/duration_ms", content = "90\n" }}]
message = "Attempt 2 made calc much faster.\n"
{attempt3}
"##,
        attempt1 = bench_turn(1, 120),
        attempt3 = cheating_turn(3),
    );
    let plan = write_speed_goal(&env, &script, "3 (a, b, c)", "best duration_ms", 3);

    let run = run_goal(&env, plan);
    run.assert_code(0);

    // The release holds the lower of the two passing benchmarks, and nothing of attempt 3.
    let tree = env.tree_files(REPO, "main");
    assert_eq!(tree["bench/duration_ms"], "90\n", "\n{run}");
    assert_eq!(tree["bench/run.sh"], calc_file("bench/run.sh"), "\n{run}");

    let st = status(&env);
    let id = run_id(&st);
    assert_eq!(st["run"]["state"], "complete", "{st:#}");
    let speed = phase(&st, PHASE);
    assert_eq!(speed["state"], "merged", "{st:#}");
    assert_eq!(speed["winner"], 2, "{st:#}");
    let why = text(&speed["why"]);
    assert!(why.contains("best duration_ms = 90"), "{why}");

    let rows: Vec<(u32, &str, &str, String, Option<f64>)> = attempts(&st, PHASE)
        .iter()
        .map(|a| {
            let n = a["n"].as_u64().unwrap() as u32;
            (
                n,
                text(&a["agent"]),
                text(&a["state"]),
                last_audit(&st, PHASE, n),
                a["metric"].as_f64(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "a", "lost", "merge".to_owned(), Some(120.0)),
            (2, "b", "merged", "merge".to_owned(), Some(90.0)),
            (3, "c", "blocked", "abandon".to_owned(), None),
        ],
        "{st:#}"
    );

    // The report's side-by-side table says the same, winner and why included.
    let report = env.goalpost(["report", "-C", REPO]);
    report.assert_code(0);
    let table: Vec<&str> = report
        .stdout
        .lines()
        .filter(|l| l.starts_with(PHASE))
        .collect();
    assert_eq!(table.len(), 3, "\n{report}");
    assert!(
        table[0].contains(" lost ") && table[0].contains(" 120 "),
        "{table:?}"
    );
    assert!(
        table[1].contains(" merged ") && table[1].contains("yes: best duration_ms = 90"),
        "{table:?}"
    );
    assert!(
        table[2].contains(" blocked ") && table[2].contains(" abandon "),
        "{table:?}"
    );
    let status_text = env.goalpost(["status", "-C", REPO]);
    status_text.assert_code(0);
    assert!(
        status_text
            .stdout
            .lines()
            .any(|l| l.starts_with(PHASE) && l.contains("yes: best duration_ms = 90")),
        "\n{status_text}"
    );
    let report_json = env.goalpost(["report", "--format", "json", "-C", REPO]);
    report_json.assert_code(0);
    assert_eq!(phase(&report_json.json(), PHASE)["winner"], 2);

    // Every attempt's work is kept on its own ref.
    let refs = attempt_refs(&env, &id, PHASE);
    assert_eq!(
        refs.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "{refs:?}"
    );
    assert_eq!(file_at(&env, &refs[&1], "bench/duration_ms"), "120\n");
    assert_eq!(file_at(&env, &refs[&2], "bench/duration_ms"), "90\n");
    assert_eq!(file_at(&env, &refs[&3], "bench/run.sh"), CHEAT);
    assert_no_worktree_left(&env);
}

#[test]
fn best_breaks_a_tie_by_the_smaller_diff_then_the_lower_cost() {
    let env = calc_env();
    // All three reach 90. Attempt 1 is the cheapest but also changes a second path;
    // attempts 2 and 3 change one path each, and attempt 3 costs less than attempt 2.
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 1
actions = [
  {{ write = "bench/duration_ms", content = "90\n" }},
  {{ write = "docs/speed.md", content = "faster\n" }},
]
message = "Attempt 1 made calc faster and said so.\nUSAGE: cost_usd=0.01\n"

[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 2
actions = [{{ write = "bench/duration_ms", content = "90\n" }}]
message = "Attempt 2 made calc faster.\nUSAGE: cost_usd=0.30\n"

[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 3
actions = [{{ write = "bench/duration_ms", content = "90\n" }}]
message = "Attempt 3 made calc faster.\nUSAGE: cost_usd=0.20\n"
"##
    );
    let plan = write_speed_goal(&env, &script, "3 (a, b, c)", "best duration_ms", 3);

    let run = run_goal(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    let rows: Vec<(u64, Option<f64>, Option<i64>, f64)> = attempts(&st, PHASE)
        .iter()
        .map(|a| {
            (
                a["n"].as_u64().unwrap(),
                a["metric"].as_f64(),
                a["diff_lines"].as_i64(),
                a["usage"]["cost_usd"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, Some(90.0), Some(2), 0.01),
            (2, Some(90.0), Some(1), 0.30),
            (3, Some(90.0), Some(1), 0.20),
        ],
        "{st:#}"
    );
    assert_eq!(phase(&st, PHASE)["winner"], 3, "{st:#}\n{run}");
    assert_eq!(attempt(&st, PHASE, 3)["state"], "merged", "{st:#}");
    assert!(!env.tree_files(REPO, "main").contains_key("docs/speed.md"));
}

#[test]
fn best_prefers_the_higher_value_of_an_at_least_metric() {
    let env = calc_env();
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 1
actions = [{{ write = "docs/coverage", content = "70\n" }}]
message = "Attempt 1 covered more.\n"

[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 2
actions = [{{ write = "docs/coverage", content = "90\n" }}]
message = "Attempt 2 covered much more.\n"

[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 3
actions = [{{ write = "docs/coverage", content = "40\n" }}]
message = "Attempt 3 covered a little.\n"
"##
    );
    let check = "`sed 's/^/coverage=/' docs/coverage` reports `coverage` at least 50";
    let phases = format!(
        "## Phases

### {PHASE}: Better covered
Attempts: 3 (a, b, c)
Select: best coverage
Outcome: coverage is at least 50.
Verification: {check}
"
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            max_parallel: 3,
            verification: &format!("- {check}"),
            agent_env: &[],
            phases: &phases,
        },
    );

    let run = run_goal(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    let speed = phase(&st, PHASE);
    assert_eq!(speed["winner"], 2, "{st:#}\n{run}");
    assert!(text(&speed["why"]).contains("best coverage = 90"), "{st:#}");
    assert_eq!(attempt(&st, PHASE, 1)["metric"], 70.0, "{st:#}");
    assert_eq!(attempt(&st, PHASE, 3)["state"], "blocked", "{st:#}");
    assert_eq!(env.tree_files(REPO, "main")["docs/coverage"], "90\n");
}

#[test]
fn first_stops_the_other_attempts_once_one_passed() {
    let env = calc_env();
    let marker = env.dir().join("attempt-3-went-on.txt");
    let released = env.dir().join("attempt-3-is-working");
    // One agent and one audit at a time, so the order is fixed. Attempt 1 proposes; its
    // audit holds its check until attempt 3 is at work. Attempt 2 proposes a better
    // benchmark meanwhile: its audit is queued behind attempt 1's. Attempt 3's first turn
    // lets attempt 1's audit go on, then lasts until attempt 3 is told to stop (or 20 s
    // pass); its benchmark misses the target, so left alone it would go on to a review
    // and more iterations.
    let hold = env.write(
        "hold.sh",
        &format!(
            "case \"$PWD\" in */audit-*) while [ ! -e {0} ]; do sleep 0.05; done ;; esac\n",
            quoted(released.to_str().unwrap())
        ),
    );
    let check = format!(
        "`sh {} && sh bench/run.sh` reports `duration_ms` at most 150",
        hold.display()
    );
    let wait_for_stop = format!(
        ": > {}; stop=\"$(dirname \"$(dirname \"$GOALPOST_PROMPT_FILE\")\")/stop\"; \
         i=0; while [ ! -e \"$stop\" ] && [ \"$i\" -lt 400 ]; do sleep 0.05; i=$((i + 1)); done",
        quoted(released.to_str().unwrap())
    );
    let script = format!(
        r##"{APPROVE}
{attempt1}
{attempt2}
[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 3
iteration = 1
actions = [
  {{ write = "docs/slow.md", content = "slow but steady\n" }},
  {{ run = {wait_for_stop} }},
  {{ write = "bench/duration_ms", content = "170\n" }},
]
message = "Attempt 3 is getting there.\n"

[[turn]]
role = "implementer"
phase = "{PHASE}"
attempt = 3
actions = [
  {{ append = {marker}, content = "another turn\n" }},
  {{ write = "bench/duration_ms", content = "160\n" }},
]
message = "Attempt 3 is still getting there.\n"
"##,
        attempt1 = bench_turn(1, 120),
        attempt2 = bench_turn(2, 100),
        wait_for_stop = quoted(&wait_for_stop),
        marker = path_quoted(&marker),
    );
    let phases = format!(
        "## Phases

### {PHASE}: A faster calc
Attempts: 3 (a, b, c)
Select: first
Outcome: the benchmark reports at most 150 ms.
Verification: {check}
"
    );
    let verification = format!("- {check}");
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            max_parallel: 1,
            verification: &verification,
            agent_env: &[],
            phases: &phases,
        },
    );

    // Attempt 3 lets the audit go on from outside its worktree.
    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0);

    // The release has attempt 1's change and nothing of the others'.
    let tree = env.tree_files(REPO, "main");
    assert_eq!(tree["bench/duration_ms"], "120\n", "\n{run}");
    assert!(!tree.contains_key("docs/slow.md"), "\n{run}");

    let st = status(&env);
    let id = run_id(&st);
    let speed = phase(&st, PHASE);
    assert_eq!(speed["winner"], 1, "{st:#}");
    assert_eq!(
        text(&speed["why"]),
        "first attempt to pass its audit",
        "{st:#}"
    );
    assert_eq!(attempt(&st, PHASE, 1)["state"], "merged", "{st:#}");
    let slow = attempt(&st, PHASE, 3);
    assert_eq!(slow["state"], "lost", "{st:#}\n{run}");
    assert_eq!(slow["iterations"], 1, "{st:#}");
    let outcome = text(&slow["outcome"]);
    assert!(outcome.contains("another attempt won"), "{outcome}");

    // Attempt 3's one turn is harvested on its ref...
    let refs = attempt_refs(&env, &id, PHASE);
    let slow_ref = &refs[&3];
    assert_eq!(Some(slow_ref.as_str()), slow["head"].as_str(), "{st:#}");
    assert_eq!(file_at(&env, slow_ref, "docs/slow.md"), "slow but steady\n");
    assert_eq!(file_at(&env, slow_ref, "bench/duration_ms"), "170\n");
    // ...and it made no turn after the stop: no review, no second iteration.
    assert_eq!(prompt_files(&env, &id, PHASE, 3), ["implementer-1.md"]);
    assert!(!marker.exists(), "attempt 3 made another turn\n{run}");
    assert_eq!(last_audit(&st, PHASE, 3), "-", "{st:#}");

    // Attempt 2's queued audit never started; its candidate stays on its ref.
    assert_eq!(attempt(&st, PHASE, 2)["state"], "lost", "{st:#}");
    assert_eq!(attempt(&st, PHASE, 2)["outcome"], "candidate", "{st:#}");
    assert_eq!(last_audit(&st, PHASE, 2), "-", "{st:#}");
    let audit_dirs: Vec<String> = std::fs::read_dir(
        env.dir()
            .join(REPO)
            .join(".git/goalpost/runs")
            .join(&id)
            .join("audits"),
    )
    .unwrap()
    .map(|e| e.unwrap().path())
    .filter(|dir| {
        let name = dir.file_name().unwrap().to_string_lossy();
        // An audit that started was handed its input; a queued one may only have been
        // offered cached evidence.
        name.starts_with(&format!("{PHASE}.2")) && dir.join("audit-input.json").exists()
    })
    .map(|dir| dir.display().to_string())
    .collect();
    assert!(audit_dirs.is_empty(), "{audit_dirs:?}");
    assert_eq!(file_at(&env, &refs[&2], "bench/duration_ms"), "100\n");
    assert_no_worktree_left(&env);
}

/// A `Select: review` run in which attempt 2 rewrites the protected benchmark (its
/// audit says abandon) and attempts 1 and 3 pass; the selection turn names `named`.
/// Returns the env, the run's status, and the prompt and environment the selection turn
/// saw.
fn review_run(named: u32) -> (TestEnv, Value, String, String) {
    let env = calc_env();
    let prompt = env.dir().join("select-prompt.md");
    let seen_env = env.dir().join("select-env.txt");
    let script = format!(
        r##"
# The selection turn belongs to no attempt.
[[turn]]
role = "reviewer"
attempt = 0
actions = [{{ copy_prompt = {prompt} }}, {{ record_env = {seen_env} }}]
message = "Attempt {named} reads best.\nWINNER: {named}\n"
{APPROVE}
{attempt1}
{attempt2}
{attempt3}
"##,
        prompt = path_quoted(&prompt),
        seen_env = path_quoted(&seen_env),
        attempt1 = bench_turn(1, 120),
        attempt2 = cheating_turn(2),
        attempt3 = bench_turn(3, 110),
    );
    let plan = write_speed_goal(&env, &script, "3 (a, b, c)", "review", 3);
    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    assert_eq!(attempt(&st, PHASE, 2)["state"], "blocked", "{st:#}");
    assert_eq!(last_audit(&st, PHASE, 2), "abandon", "{st:#}");
    let prompt = std::fs::read_to_string(&prompt)
        .unwrap_or_else(|e| panic!("the selection turn never ran ({e})\n{run}"));
    let seen_env = env.read("select-env.txt");
    (env, st, prompt, seen_env)
}

/// What every selection turn of [`review_run`] saw: the two candidates that passed, and
/// the environment of a reviewer that belongs to no attempt.
fn assert_selection_turn(prompt: &str, seen_env: &str) {
    assert!(prompt.contains("## Attempt 1 (a)"), "{prompt}");
    assert!(prompt.contains("## Attempt 3 (c)"), "{prompt}");
    assert!(!prompt.contains("## Attempt 2"), "{prompt}");
    for line in [
        "GOALPOST_ROLE=reviewer",
        "GOALPOST_ATTEMPT=0",
        "GOALPOST_ITERATION=0",
        "GOALPOST_SELECT=1",
        "GOALPOST_PHASE=speed",
    ] {
        assert!(seen_env.lines().any(|l| l == line), "{line}:\n{seen_env}");
    }
}

#[test]
fn review_never_lets_an_attempt_that_failed_its_audit_win() {
    let (env, st, prompt, seen_env) = review_run(2);
    assert_selection_turn(&prompt, &seen_env);

    let speed = phase(&st, PHASE);
    assert_eq!(speed["winner"], 1, "{st:#}");
    let why = text(&speed["why"]);
    assert!(
        why.contains("the reviewer named attempt 2, which did not pass its audit"),
        "{why}"
    );
    assert!(why.contains("attempt 1 is the first that did"), "{why}");
    assert_eq!(attempt(&st, PHASE, 1)["state"], "merged", "{st:#}");
    assert_eq!(attempt(&st, PHASE, 3)["state"], "lost", "{st:#}");

    let tree = env.tree_files(REPO, "main");
    assert_eq!(tree["bench/duration_ms"], "120\n");
    assert_eq!(tree["bench/run.sh"], calc_file("bench/run.sh"));
}

#[test]
fn review_merges_the_passing_attempt_the_reviewer_names() {
    let (env, st, prompt, seen_env) = review_run(3);
    assert_selection_turn(&prompt, &seen_env);

    let speed = phase(&st, PHASE);
    assert_eq!(speed["winner"], 3, "{st:#}");
    let why = text(&speed["why"]);
    assert!(
        why.starts_with("the reviewer chose attempt 3: Attempt 3 reads best."),
        "{why}"
    );
    assert_eq!(attempt(&st, PHASE, 3)["state"], "merged", "{st:#}");
    assert_eq!(attempt(&st, PHASE, 1)["state"], "lost", "{st:#}");
    assert_eq!(env.tree_files(REPO, "main")["bench/duration_ms"], "110\n");
}

#[test]
fn review_ignores_the_winner_named_by_a_selection_turn_that_failed() {
    let env = calc_env();
    let script = format!(
        r##"
[[turn]]
role = "reviewer"
attempt = 0
message = "WINNER: 3\n"
exit = 1
{APPROVE}
{attempt1}
{attempt2}
{attempt3}
"##,
        attempt1 = bench_turn(1, 120),
        attempt2 = cheating_turn(2),
        attempt3 = bench_turn(3, 110),
    );
    let plan = write_speed_goal(&env, &script, "3 (a, b, c)", "review", 3);

    let run = run_goal(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    let speed = phase(&st, PHASE);
    assert_eq!(speed["winner"], 1, "{st:#}\n{run}");
    let why = text(&speed["why"]);
    assert!(
        why.starts_with("the reviewer's turn failed (agent `critic` ended with exit code 1")
            && why.ends_with("attempt 1 is the first that passed"),
        "{why}"
    );
    assert_eq!(env.tree_files(REPO, "main")["bench/duration_ms"], "120\n");
}

#[test]
fn review_asks_no_reviewer_when_only_one_attempt_passed() {
    let env = calc_env();
    let marker = env.dir().join("selection-turn.txt");
    let script = format!(
        r##"
[[turn]]
role = "reviewer"
attempt = 0
actions = [{{ append = {marker}, content = "asked\n" }}]
message = "WINNER: 2\n"
{APPROVE}
{attempt1}
{attempt2}
"##,
        marker = path_quoted(&marker),
        attempt1 = cheating_turn(1),
        attempt2 = bench_turn(2, 120),
    );
    let plan = write_speed_goal(&env, &script, "2 (a, b)", "review", 2);

    let run = run_goal(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    let speed = phase(&st, PHASE);
    assert_eq!(speed["winner"], 2, "{st:#}");
    assert_eq!(
        text(&speed["why"]),
        "the only attempt that passed its audit",
        "{st:#}"
    );
    assert!(!marker.exists(), "a selection turn ran\n{run}");
    assert_eq!(env.tree_files(REPO, "main")["bench/duration_ms"], "120\n");
}

#[test]
fn a_phase_none_of_whose_attempts_pass_blocks_it_and_its_dependents() {
    let env = calc_env();
    let start = env.git_out(REPO, &["rev-parse", "main"]);
    let marker = env.dir().join("docs-started.txt");
    // Attempt 1's audit says abandon; attempt 2's reviewer blocks it.
    let script = format!(
        r##"
[[turn]]
role = "reviewer"
phase = "{PHASE}"
attempt = 2
message = "The benchmark machine is down.\nNEEDS: a benchmark machine\nVERDICT: blocked\n"
{APPROVE}
[[turn]]
role = "implementer"
phase = "docs"
actions = [
  {{ append = {marker}, content = "docs started\n" }},
  {{ write = "docs/speed.md", content = "calc is fast\n" }},
]
message = "Documented the speed.\n"
{attempt1}
{attempt2}
"##,
        marker = path_quoted(&marker),
        attempt1 = cheating_turn(1),
        attempt2 = bench_turn(2, 120),
    );
    let phases = format!(
        "{}
### docs: Document the speed
Depends on: {PHASE}
Outcome: docs/speed.md says how fast calc is.
Verification: `test -s docs/speed.md`
",
        speed_phase("2 (a, b)", "best duration_ms")
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            max_parallel: 2,
            verification: "",
            agent_env: &[],
            phases: &phases,
        },
    );

    let run = run_goal(&env, plan);
    run.assert_code(3);

    let st = status(&env);
    let id = run_id(&st);
    assert_eq!(st["run"]["state"], "blocked", "{st:#}");
    let abandon = "attempt 1 (a): the audit says abandon: every changed path breaks a boundary";
    let reviewer =
        "attempt 2 (b): blocked: The benchmark machine is down.; needs: a benchmark machine";
    let speed = phase(&st, PHASE);
    assert_eq!(speed["state"], "blocked", "{st:#}");
    assert_eq!(speed["winner"], Value::Null, "{st:#}");
    let why = text(&speed["why"]);
    assert!(why.contains(abandon) && why.contains(reviewer), "{why}");
    for n in [1, 2] {
        assert_eq!(attempt(&st, PHASE, n)["state"], "blocked", "{st:#}");
    }
    let blocker = text(&st["run"]["blocker"]);
    assert!(
        blocker.contains("speed attempt 1: the audit says abandon")
            && blocker.contains("speed attempt 2: blocked: The benchmark machine is down."),
        "{blocker}"
    );

    // The dependent phase never started: no attempt, no ref, no private dir, no turn.
    let docs = phase(&st, "docs");
    assert_eq!(docs["state"], "pending", "{st:#}");
    assert_eq!(
        text(&docs["why"]),
        "never started: waits on speed",
        "{st:#}"
    );
    assert!(attempts(&st, "docs").is_empty(), "{st:#}");
    assert!(attempt_refs(&env, &id, "docs").is_empty());
    assert!(!attempt_dir(&env, &id, "docs", 1).exists());
    assert!(!marker.exists(), "docs made a turn\n{run}");

    // The report lists every attempt's blocker; the release never moved.
    let report = env.goalpost(["report", "-C", REPO]);
    report
        .assert_code(0)
        .assert_stdout_has(abandon)
        .assert_stdout_has(reviewer)
        .assert_stdout_has("never started: waits on speed");
    assert_eq!(env.git_out(REPO, &["rev-parse", "main"]), start);
    // Both attempts' work is kept on their refs.
    let refs = attempt_refs(&env, &id, PHASE);
    assert_eq!(file_at(&env, &refs[&1], "bench/run.sh"), CHEAT);
    assert_eq!(file_at(&env, &refs[&2], "bench/duration_ms"), "120\n");
    assert_no_worktree_left(&env);
}

const ONLY_A: &str = "only-for-agent-a-4b1d";

#[test]
fn attempts_never_share_a_worktree_a_prompt_file_or_an_environment() {
    let env = calc_env();
    let out = env.dir().join("seen");
    std::fs::create_dir_all(&out).unwrap();
    let out_q = shell_quote(&out);
    // Every attempt leaves what it saw in files named after its attempt number, and a
    // file of its own in its temp dir; its benchmark is 100 + its attempt number.
    let record = format!(
        "n=$GOALPOST_ATTEMPT; env | sort > {out_q}/env-$n.txt; pwd -P > {out_q}/cwd-$n.txt; \
         touch \"$TMPDIR/mine-$n\"; ls \"$TMPDIR\" > {out_q}/tmp-$n.txt; \
         echo $((100 + n)) > bench/duration_ms"
    );
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "{PHASE}"
actions = [{{ run = {record} }}]
message = "Recorded what I see.\n"
"##,
        record = quoted(&record),
    );
    let phases = speed_phase("4 (a, b, c)", "best duration_ms");
    let only_a = format!("ONLY_A = {}", quoted(ONLY_A));
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            max_parallel: 4,
            verification: "",
            agent_env: &[("a", &only_a), ("b", "ONLY_B = \"b\"")],
            phases: &phases,
        },
    );

    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0);
    let st = status(&env);
    let id = run_id(&st);

    let mut cwds = BTreeSet::new();
    let mut prompts = BTreeSet::new();
    let mut tmpdirs = BTreeSet::new();
    for n in 1..=4u32 {
        let seen: BTreeMap<String, String> = env
            .read(&format!("seen/env-{n}.txt"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(seen["GOALPOST_ATTEMPT"], n.to_string(), "{seen:?}");

        // Its own worktree: the one the store names, under GOALPOST_WORKTREES.
        let cwd = env.read(&format!("seen/cwd-{n}.txt")).trim().to_owned();
        let worktree = text(&attempt(&st, PHASE, n)["worktree"]).to_owned();
        let worktrees = std::fs::canonicalize(env.worktrees()).unwrap();
        assert!(Path::new(&cwd).starts_with(&worktrees), "{cwd}");
        assert!(cwd.ends_with(&format!("/{PHASE}.{n}")), "{cwd}");
        assert!(worktree.ends_with(&format!("/{PHASE}.{n}")), "{worktree}");

        // Its own prompt file and temp dir, in its own private dir.
        let private = std::fs::canonicalize(attempt_dir(&env, &id, PHASE, n)).unwrap();
        let prompt = std::fs::canonicalize(&seen["GOALPOST_PROMPT_FILE"]).unwrap();
        assert_eq!(prompt, private.join("prompts/implementer-1.md"));
        let tmpdir = std::fs::canonicalize(&seen["TMPDIR"]).unwrap();
        assert!(tmpdir.starts_with(&private), "{}", tmpdir.display());
        assert_eq!(
            env.read(&format!("seen/tmp-{n}.txt")),
            format!("mine-{n}\n"),
            "attempt {n}'s temp dir holds another attempt's file"
        );

        // Agent `a`'s own variable reaches its attempts only (1, and 4: the listed agents
        // take the attempts in turn), `b`'s attempt 2 only.
        let agent = ["a", "b", "c", "a"][n as usize - 1];
        assert_eq!(attempt(&st, PHASE, n)["agent"], agent, "{st:#}");
        assert_eq!(
            seen.get("ONLY_A").map(String::as_str),
            [1, 4].contains(&n).then_some(ONLY_A)
        );
        assert_eq!(
            seen.get("ONLY_B").map(String::as_str),
            (n == 2).then_some("b")
        );

        // Its work, and only its work, is on its ref.
        let refs = attempt_refs(&env, &id, PHASE);
        assert_eq!(
            file_at(&env, &refs[&n], "bench/duration_ms"),
            format!("{}\n", 100 + n)
        );

        cwds.insert(cwd);
        prompts.insert(prompt);
        tmpdirs.insert(tmpdir);
    }
    assert_eq!(cwds.len(), 4, "{cwds:?}");
    assert_eq!(prompts.len(), 4, "{prompts:?}");
    assert_eq!(tmpdirs.len(), 4, "{tmpdirs:?}");
    let worktrees: BTreeSet<&str> = attempts(&st, PHASE)
        .iter()
        .map(|a| text(&a["worktree"]))
        .collect();
    assert_eq!(worktrees.len(), 4, "{st:#}");
    assert_eq!(phase(&st, PHASE)["winner"], 1, "{st:#}");
}

#[test]
fn attempts_run_within_max_parallel() {
    let env = calc_env();
    let out = env.dir().join("slots");
    std::fs::create_dir_all(&out).unwrap();
    let out_q = shell_quote(&out);
    // Each implementer turn takes the first free slot (a directory only one process can
    // make) for 300 ms and notes which one it took.
    let hold = format!(
        "n=$GOALPOST_ATTEMPT; for s in 1 2 3 4; do mkdir {out_q}/slot-$s 2>/dev/null && break; \
         done; echo $s > {out_q}/took-$n; sleep 0.3; rmdir {out_q}/slot-$s; \
         echo $((100 + n)) > bench/duration_ms"
    );
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "{PHASE}"
actions = [{{ run = {hold} }}]
message = "Held a slot.\n"
"##,
        hold = quoted(&hold),
    );
    let plan = write_speed_goal(&env, &script, "4 (a, b, c)", "best duration_ms", 2);

    let run = run_goal_unconfined(&env, plan);
    run.assert_code(0);
    let took: Vec<String> = (1..=4)
        .map(|n| env.read(&format!("slots/took-{n}")).trim().to_owned())
        .collect();
    assert!(
        took.iter().all(|s| s == "1" || s == "2"),
        "more than 2 implementers at once: {took:?}"
    );
    let st = status(&env);
    assert_eq!(phase(&st, PHASE)["winner"], 1, "{st:#}");
}
