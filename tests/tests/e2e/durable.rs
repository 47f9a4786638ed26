//! Durable runs, end to end on the real binaries: a run killed at any crash point and
//! resumed converges to the tree of an uninterrupted run; a killed worker or auditor
//! interrupts a run that `resume` completes; pause stops at a safe boundary or at once;
//! every budget stops the run at its limit; an agent that makes no progress is stopped; a
//! second run on the same repository is refused; the exit codes are the documented ones.
//!
//! The crash-recovery test covers 22 crash points chosen by a fixed seed, then the run's
//! last ones (every third case kills its first resume too); `GOALPOST_CRASH_SEEDS=1,2,3` adds the points of more seeds,
//! `GOALPOST_CRASH_POINTS=all` (or `=3,17,40`) runs every point (or those).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use goalpost_fixtures::repo::{CALC_FILES, CALC_MUL, CALC_SUB};
use goalpost_shared::exit::ExitCode;
use goalpost_shared::process::shell_quote;
use goalpost_tests::durable::{
    DEADLINE, Running, XorShift, alive, ancestor_named, await_orphans_gone, kill9, line_in,
    wait_for,
};
use goalpost_tests::{Run, TestEnv, binary, calc_env, path_quoted, quoted, repo_root};
use serde_json::Value;

/// The repository's directory under the test's directory.
const REPO: &str = "calc";

/// What varies between the goal files of these tests.
struct Goal<'a> {
    max_parallel: u32,
    /// Lines of `[budget]`.
    budget: &'a str,
    /// Lines of `[run_budget]`; none when empty.
    run_budget: &'a str,
    reviewer: bool,
    /// The plan's `## Verification surface` items.
    verification: &'a str,
    /// The blocked stop condition's no-progress limit.
    stop_after: u32,
    /// Everything from `## Phases` on.
    phases: &'a str,
}

impl Default for Goal<'_> {
    fn default() -> Self {
        Goal {
            max_parallel: 2,
            budget: "turns = 12\nwall = \"10m\"",
            run_budget: "",
            reviewer: true,
            verification: "- `sh calc.sh sub 5 3 | grep -qx 2`",
            stop_after: 2,
            phases: "",
        }
    }
}

/// One phase that adds `sub`.
const SUB_PHASE: &str = "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`
";

/// The reviewer turn: approve.
const APPROVE: &str = r#"
[[turn]]
role = "reviewer"
message = "The diff does what the phase asks.\nVERDICT: approve\n"
"#;

/// Writes `goal.md` and the scripted agent's `agent.toml` outside the repository.
fn write_goal(env: &TestEnv, script: &str, goal: &Goal<'_>) -> &'static str {
    let script_path = env.write("agent.toml", script);
    let agent = path_quoted(&binary("scripted-agent"));
    let script_q = path_quoted(&script_path);
    let run_budget = if goal.run_budget.is_empty() {
        String::new()
    } else {
        format!("\n[run_budget]\n{}\n", goal.run_budget)
    };
    let (critic, reviewer_role) = if goal.reviewer {
        (
            format!(
                "\n[agents.critic]\nadapter = \"command\"\ncommand = [{agent}]\nenv = {{ SCRIPTED_AGENT_SCRIPT = {script_q} }}\n"
            ),
            "reviewer = \"critic\"\n",
        )
    } else {
        (String::new(), "")
    };
    let text = format!(
        r#"+++
release = "main"
max_parallel = {max_parallel}

[budget]
{budget}
{run_budget}
[agents.coder]
adapter = "command"
command = [{agent}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script_q} }}
{critic}
[roles]
implementer = "coder"
{reviewer_role}+++

# Goal: calc grows, whatever happens to the run

## Outcome
calc does what each phase says.

## Verification surface
{verification}

## Constraints
- The command line of calc.sh stays as it is.

## Boundaries
- Allowed paths: ops/, docs/, notes/, bench/duration_ms, README.md
- Forbidden paths: calc.sh
- Protected paths: tests/, bench/run.sh

## Iteration policy
Run the checks after every change and say what changed.

## Blocked stop condition
Stop after {stop_after} iterations with no improvement, or when a check cannot run at all.

{phases}"#,
        max_parallel = goal.max_parallel,
        budget = goal.budget,
        verification = goal.verification,
        stop_after = goal.stop_after,
        phases = goal.phases,
    );
    env.write("goal.md", &text);
    "goal.md"
}

// The agents and checks of these tests hold on markers outside their worktrees, which
// only unconfined runs allow: the runs here are about durability, confinement has its
// own tests (`confinement.rs`).

fn run_goal(env: &TestEnv, plan: &str) -> Run {
    env.goalpost(["run", plan, "-C", REPO, "--unconfined"])
}

fn spawn_run(env: &TestEnv, plan: &str, extra: &[(&str, &OsStr)]) -> Running {
    env.spawn_goalpost(["run", plan, "-C", REPO, "--unconfined"], extra)
}

fn resume(env: &TestEnv, args: &[&str]) -> Run {
    let mut all = vec!["resume", "-C", REPO, "--unconfined"];
    all.extend_from_slice(args);
    env.goalpost(all)
}

fn status(env: &TestEnv) -> Value {
    let run = env.goalpost(["status", "--json", "-C", REPO]);
    run.assert_code(0);
    run.json()
}

fn report(env: &TestEnv) -> String {
    let run = env.goalpost(["report", "-C", REPO]);
    run.assert_code(0);
    run.stdout
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn attempts<'v>(status: &'v Value, id: &str) -> Vec<&'v Value> {
    status["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["phase_id"] == id)
        .collect()
}

/// A file in the test's directory, outside the repository, for agents and checks to
/// leave traces in and for the test to signal them through.
fn outside(env: &TestEnv, name: &str) -> PathBuf {
    env.dir().join(name)
}

/// The private dir of attempt `n` of `phase` (prompts, worker input and output).
fn attempt_dir(env: &TestEnv, phase: &str, n: u32) -> PathBuf {
    let runs = env.dir().join(REPO).join(".git/goalpost/runs");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("attempts").join(format!("{phase}.{n}")))
        .collect();
    assert_eq!(found.len(), 1, "one run expected in {}", runs.display());
    found.pop().unwrap()
}

/// The prompt files of `role` an attempt was given, by iteration.
fn prompts(env: &TestEnv, phase: &str, role: &str) -> BTreeSet<u32> {
    let dir = attempt_dir(env, phase, 1).join("prompts");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&format!("{role}-"))?
                .strip_suffix(".md")?
                .parse()
                .ok()
        })
        .collect()
}

fn lock_file(env: &TestEnv) -> PathBuf {
    env.dir().join(REPO).join(".git/goalpost/run.lock")
}

/// No worktree but the main one, nothing left where goalpost makes its worktrees, and
/// no run lock.
fn assert_nothing_left(env: &TestEnv, context: &str) {
    let list = env.git(REPO, &["worktree", "list", "--porcelain"]).stdout;
    let trees = list.lines().filter(|l| l.starts_with("worktree ")).count();
    assert_eq!(trees, 1, "{context}\nworktrees left:\n{list}");
    let left = env.leftover_worktree_files();
    assert!(
        left.is_empty(),
        "{context}\nleft under GOALPOST_WORKTREES: {left:?}"
    );
    assert!(!lock_file(env).exists(), "{context}\nthe run lock is left");
}

/// A shell command that, the first time it runs, leaves its pid in `started` and waits
/// (at most a minute) for the test to create `go`; later it does nothing.
fn hold(started: &Path, go: &Path) -> String {
    let (s, g) = (shell_quote(started), shell_quote(go));
    format!(
        "if [ ! -e {s} ]; then echo $$ > {s}.tmp && mv {s}.tmp {s}; i=0; \
         while [ ! -e {g} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; fi"
    )
}

// ---------------------------------------------------------------------------------------
// 1. Crash recovery

const README_BOTH: &str = "# calc: add, sub (fast)\n";
const DOCS: &str = "# Operations\n\n- add\n- sub\n- mul\n";

/// Six phases: `sub`, then `left` and `right` in parallel editing the README's first
/// line (whichever lands second gets a conflict round and writes both changes), then
/// `mul`, `docs` and `speed` in a row. Every action gives the same tree when replayed.
fn crash_plan(env: &TestEnv) -> &'static str {
    let readme = CALC_FILES
        .iter()
        .find(|(p, _)| *p == "README.md")
        .unwrap()
        .1;
    let combined = readme.replacen("# calc\n", README_BOTH, 1);
    let script = format!(
        r##"{APPROVE}
[[turn]]
role = "implementer"
phase = "sub"
actions = [{{ write = "ops/sub.sh", content = {sub} }}]
message = "Added sub.\n"

[[turn]]
role = "implementer"
phase = "left"
iteration_min = 2
actions = [{{ write = "README.md", content = {combined} }}]
message = "Kept both changes to the title.\n"

[[turn]]
role = "implementer"
phase = "left"
actions = [{{ run = "sed -i '1{{/add, sub/!s/^# calc/# calc: add, sub/}}' README.md" }}]
message = "Named the operations in the title.\nUSAGE: tool_calls=1\n"

[[turn]]
role = "implementer"
phase = "right"
iteration_min = 2
actions = [{{ write = "README.md", content = {combined} }}]
message = "Kept both changes to the title.\n"

[[turn]]
role = "implementer"
phase = "right"
actions = [{{ run = "sed -i '1{{/(fast)/!s/$/ (fast)/}}' README.md" }}]
message = "Said it is fast.\nUSAGE: tool_calls=1\n"

[[turn]]
role = "implementer"
phase = "mul"
actions = [{{ write = "ops/mul.sh", content = {mul} }}]
message = "Added mul.\n"

[[turn]]
role = "implementer"
phase = "docs"
actions = [{{ write = "docs/ops.md", content = {docs} }}]
message = "Documented the operations.\n"

[[turn]]
role = "implementer"
phase = "speed"
actions = [{{ write = "bench/duration_ms", content = "90\n" }}]
message = "Faster.\n"
"##,
        sub = quoted(CALC_SUB),
        mul = quoted(CALC_MUL),
        combined = quoted(&combined),
        docs = quoted(DOCS),
    );
    write_goal(
        env,
        &script,
        &Goal {
            verification: "- `sh tests/run.sh` passes\n- `head -n 1 README.md | grep -qF '(fast)'`",
            phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`

### left: Name the operations
Depends on: sub
Outcome: the README's title names add and sub.
Verification: `head -n 1 README.md | grep -q 'add, sub'`

### right: Say it is fast
Depends on: sub
Outcome: the README's title says calc is fast.
Verification: `head -n 1 README.md | grep -qF '(fast)'`

### mul: Multiplication
Depends on: left, right
Outcome: every test passes.
Verification: `sh tests/run.sh`

### docs: Documentation
Depends on: mul
Outcome: docs/ops.md lists every operation.
Verification: `grep -qx -- '- mul' docs/ops.md`

### speed: Speed
Depends on: docs
Outcome: the benchmark reports 90 ms.
Verification: `sh tests/run.sh && sh bench/run.sh | grep -qx duration_ms=90`
",
            ..Goal::default()
        },
    )
}

const CRASH_PHASES: [&str; 6] = ["sub", "left", "right", "mul", "docs", "speed"];

/// Phase id -> how many squash commits on the release's first-parent history since the
/// run started name it in their `Goalpost-Phase:` trailer.
fn landed_phases(env: &TestEnv, start: &str) -> BTreeMap<String, usize> {
    let log = env.git_out(
        REPO,
        &[
            "log",
            "--first-parent",
            "--format=%B%x00",
            &format!("{start}..main"),
        ],
    );
    let mut count = BTreeMap::new();
    for message in log.split('\0') {
        for phase in message
            .lines()
            .filter_map(|l| l.strip_prefix("Goalpost-Phase: "))
        {
            *count.entry(phase.trim().to_owned()).or_insert(0) += 1;
        }
    }
    count
}

/// Everything a completed run must leave: state complete, the expected release tree,
/// each phase landed once, every attempt's ref, no worktree and no lock.
fn assert_converged(env: &TestEnv, reference_tree: &str, context: &str) {
    let st = status(env);
    assert_eq!(st["run"]["state"], "complete", "{context}\n{st:#}");
    let tree = env.git_out(REPO, &["rev-parse", "main^{tree}"]);
    assert_eq!(
        tree,
        reference_tree,
        "{context}: the release tree differs\n{:?}",
        env.tree_files(REPO, "main")
    );
    let start = text(&st["run"]["release_start"]).to_owned();
    let landed = landed_phases(env, &start);
    let expected: BTreeMap<String, usize> =
        CRASH_PHASES.iter().map(|p| ((*p).to_owned(), 1)).collect();
    assert_eq!(landed, expected, "{context}: phases landed");
    for phase in CRASH_PHASES {
        let found = attempts(&st, phase);
        assert!(!found.is_empty(), "{context}: no attempt of {phase}");
        for a in found {
            let name = text(&a["ref_name"]);
            let target = env.git_out(REPO, &["rev-parse", "--verify", "-q", name]);
            assert!(!target.is_empty(), "{context}: {name} is missing");
            if let Some(head) = a["head"].as_str() {
                assert_eq!(target, head, "{context}: {name}");
            }
        }
    }
    assert_eq!(
        env.git_out(REPO, &["status", "--porcelain"]),
        "",
        "{context}: the main working tree does not hold the release"
    );
    assert_nothing_left(env, context);
}

/// Runs the crash plan on a fresh repository, killing goalpost with SIGKILL at crash
/// point `n`, then resumes. `None` when the run ended before reaching point `n`.
fn crash_case(n: u32, reference_tree: &str) -> Option<String> {
    let env = calc_env();
    let plan = crash_plan(&env);
    let marker = outside(&env, "crash-marker");
    let at = n.to_string();
    let mut run = spawn_run(
        &env,
        plan,
        &[
            ("GOALPOST_CRASH_AT", OsStr::new(&at)),
            ("GOALPOST_CRASH_MARKER", marker.as_os_str()),
        ],
    );
    let pid = run.pid();
    let point = match run.line_or_exit(&marker) {
        Ok(point) => point,
        Err(done) => {
            done.assert_code(0);
            return None;
        }
    };
    let killed = run.kill();
    await_orphans_gone(pid);
    // The lock names a dead process: stale. A new run is refused: the interrupted one
    // still holds its worktrees and refs (or, killed after the release branch moved, the
    // working tree does not hold the branch yet).
    let lock = std::fs::read_to_string(lock_file(&env)).unwrap_or_default();
    assert!(lock.ends_with(&format!(" {pid}\n")), "lock: {lock:?}");
    let again = run_goal(&env, plan);
    assert_eq!(again.code, i32::from(ExitCode::BadInput.code()), "{again}");
    assert!(
        again.stderr.contains("was interrupted") || again.stderr.contains("uncommitted changes"),
        "{again}"
    );
    // Every third case kills its first resume too, at one of the points it reaches.
    let mut killed_resume = String::new();
    if n.is_multiple_of(3) {
        let marker = outside(&env, "crash-marker-resume");
        let at = (n * 7 % 11 + 1).to_string();
        let mut again = env.spawn_goalpost(
            ["resume", "-C", REPO, "--unconfined"],
            &[
                ("GOALPOST_CRASH_AT", OsStr::new(&at)),
                ("GOALPOST_CRASH_MARKER", marker.as_os_str()),
            ],
        );
        let pid = again.pid();
        killed_resume = match again.line_or_exit(&marker) {
            Ok(second) => {
                let killed = again.kill();
                await_orphans_gone(pid);
                eprintln!("crash point {point}, then its resume killed at {second}");
                format!("--- resume killed at {second} ---\n{killed}\n")
            }
            Err(done) => format!("--- resume ended before point {at} ---\n{done}\n"),
        };
    }
    let resumed = resume(&env, &[]);
    let context = format!(
        "crash point {point}\n--- killed run ---\n{killed}\n{killed_resume}--- resume ---\n{resumed}"
    );
    assert_eq!(resumed.code, 0, "{context}");
    assert_converged(&env, reference_tree, &context);
    Some(point)
}

/// Crash cases run at once: each spends most of its time waiting for processes.
const PARALLEL: usize = 3;

/// [`crash_case`] for each of `points`, [`PARALLEL`] at a time.
fn crash_cases(points: &[u32], reference_tree: &str) -> Vec<(u32, Option<String>)> {
    std::thread::scope(|scope| {
        let cases: Vec<_> = points
            .iter()
            .map(|&n| scope.spawn(move || (n, crash_case(n, reference_tree))))
            .collect();
        cases
            .into_iter()
            .map(|case| case.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Notes what crash cases found: the points they reached, and where the run ends
/// (before the first point it did not reach). Returns how many points were reached.
fn record(
    results: Vec<(u32, Option<String>)>,
    covered: &mut BTreeMap<u32, String>,
    last_point: &mut u32,
) -> usize {
    let mut reached = 0;
    for (n, point) in results {
        match point {
            Some(point) => {
                eprintln!("crash point {point}: resumed and converged");
                covered.insert(n, point);
                reached += 1;
            }
            None => *last_point = (*last_point).min(n - 1),
        }
    }
    reached
}

/// The crash points to try: `GOALPOST_CRASH_POINTS=all` or `=3,17,40`; otherwise 22
/// points per seed of `GOALPOST_CRASH_SEEDS` (default: a fixed one), in the order the
/// seed gives, and then the run's last points.
fn crash_orders() -> Vec<Vec<u32>> {
    const MAX_POINTS: u32 = 96;
    match std::env::var("GOALPOST_CRASH_POINTS").ok().as_deref() {
        Some("all") => return vec![(1..=MAX_POINTS).collect()],
        Some(list) if !list.trim().is_empty() => {
            return vec![
                list.split(',')
                    .map(|n| n.trim().parse().expect("GOALPOST_CRASH_POINTS: numbers"))
                    .collect(),
            ];
        }
        _ => {}
    }
    let seeds: Vec<u64> = std::env::var("GOALPOST_CRASH_SEEDS")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("GOALPOST_CRASH_SEEDS: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![20_261_122]);
    seeds
        .into_iter()
        .map(|seed| XorShift::new(seed).shuffled(MAX_POINTS))
        .collect()
}

#[test]
fn a_run_killed_at_any_crash_point_and_resumed_converges_to_the_uninterrupted_result() {
    // The reference: one run nobody interrupts.
    let reference = calc_env();
    let plan = crash_plan(&reference);
    let run = run_goal(&reference, plan);
    run.assert_code(0)
        .assert_stdout_has("conflicts with the integration tip in README.md");
    let reference_tree = reference.git_out(REPO, &["rev-parse", "main^{tree}"]);
    assert_eq!(
        reference.read("calc/README.md").lines().next(),
        Some(README_BOTH.trim_end())
    );
    assert_converged(
        &reference,
        &reference_tree,
        &format!("the reference run\n{run}"),
    );

    const WANT: usize = 22;
    let exhaustive = std::env::var("GOALPOST_CRASH_POINTS").is_ok();
    let mut covered: BTreeMap<u32, String> = BTreeMap::new();
    // Points past this one are never reached: the run ended before them.
    let mut last_point = u32::MAX;
    for order in crash_orders() {
        let mut this_seed = 0;
        let mut order = order.into_iter();
        loop {
            let want = if exhaustive {
                PARALLEL
            } else {
                WANT - this_seed
            };
            let batch: Vec<u32> = order
                .by_ref()
                .filter(|&n| n <= last_point)
                .take(want.min(PARALLEL))
                .collect();
            if batch.is_empty() || want == 0 {
                break;
            }
            this_seed += record(
                crash_cases(&batch, &reference_tree),
                &mut covered,
                &mut last_point,
            );
        }
    }
    // The run's last points (the release move and the end) always: walk on from the
    // last point covered until the run ends before the point.
    if !exhaustive {
        let mut next = covered.keys().max().copied().unwrap_or(0) + 1;
        while next <= last_point {
            let batch: Vec<u32> = (next..next + PARALLEL as u32)
                .filter(|&n| n <= last_point)
                .collect();
            next += PARALLEL as u32;
            record(
                crash_cases(&batch, &reference_tree),
                &mut covered,
                &mut last_point,
            );
        }
    }
    eprintln!(
        "{} crash points covered of {}: {covered:?}",
        covered.len(),
        if last_point == u32::MAX {
            "?".to_owned()
        } else {
            last_point.to_string()
        }
    );
    let reachable = usize::try_from(last_point).unwrap_or(usize::MAX);
    if !exhaustive {
        assert!(
            covered.len() >= WANT.min(reachable),
            "only {} crash points covered: {covered:?}",
            covered.len()
        );
    }
    if exhaustive {
        return;
    }
    let names: BTreeSet<&str> = covered
        .values()
        .filter_map(|p| p.split_once(' ').map(|(_, name)| name))
        .collect();
    for name in [
        "job starts",
        "job recorded",
        "worktree made",
        "integration moved",
        "release audited",
        "release moved",
        "run ends",
    ] {
        assert!(names.contains(name), "no crash at {name:?}: {covered:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 2. A killed worker or auditor

/// The tree an uninterrupted one-phase `sub` run lands.
fn sub_reference_tree() -> String {
    let env = calc_env();
    let script = format!(
        r#"{APPROVE}
[[turn]]
role = "implementer"
actions = [{{ write = "ops/sub.sh", content = {sub} }}]
message = "Added sub.\n"
"#,
        sub = quoted(CALC_SUB)
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            phases: SUB_PHASE,
            ..Goal::default()
        },
    );
    run_goal(&env, plan).assert_code(0);
    env.git_out(REPO, &["rev-parse", "main^{tree}"])
}

/// The run ended blocked because an attempt was interrupted; `resume` completes it with
/// the tree an uninterrupted run lands, leaving nothing behind.
fn assert_interrupted_then_resumed(env: &TestEnv, run: &Run, reference_tree: &str) {
    assert_eq!(run.code, i32::from(ExitCode::Blocked.code()), "{run}");
    let st = status(env);
    assert_eq!(st["run"]["state"], "blocked", "{st:#}");
    let blocker = text(&st["run"]["blocker"]);
    assert!(blocker.contains("interrupted"), "{blocker}");
    assert!(blocker.contains("goalpost resume"), "{blocker}");
    assert!(!lock_file(env).exists(), "the lock outlived the run");

    let resumed = resume(env, &[]);
    resumed.assert_code(0);
    let st = status(env);
    assert_eq!(st["run"]["state"], "complete", "{st:#}\n{resumed}");
    assert_eq!(
        env.git_out(REPO, &["rev-parse", "main^{tree}"]),
        reference_tree,
        "{resumed}"
    );
    assert_nothing_left(env, &resumed.to_string());
}

#[test]
fn a_worker_killed_mid_turn_interrupts_the_run_and_resume_completes_it() {
    let reference_tree = sub_reference_tree();
    let env = calc_env();
    let started = outside(&env, "agent-started");
    let go = outside(&env, "agent-go");
    let script = format!(
        r#"{APPROVE}
[[turn]]
role = "implementer"
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ run = {hold} }},
]
message = "Added sub.\n"
"#,
        sub = quoted(CALC_SUB),
        hold = quoted(&hold(&started, &go)),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            phases: SUB_PHASE,
            ..Goal::default()
        },
    );
    let mut run = spawn_run(&env, plan, &[]);
    run.await_file(&started);
    // The agent's shell -> the scripted agent -> the worker.
    let shell: u32 = line_in(&started).unwrap().parse().unwrap();
    let agent = goalpost_tests::durable::parent_of(shell).unwrap();
    let worker = ancestor_named(shell, "goalpost-worker")
        .unwrap_or_else(|| panic!("no goalpost-worker above the agent's shell {shell}"));
    kill9(worker);
    let done = run.wait();
    // The agent outlived its worker; let it finish so nothing writes in the worktree
    // while the run resumes.
    std::fs::write(&go, "").unwrap();
    wait_for("the orphaned agent to exit", DEADLINE, || {
        (!alive(agent) && !alive(shell)).then_some(())
    });
    assert!(
        done.stdout.contains("interrupted: the worker failed"),
        "{done}"
    );
    assert_interrupted_then_resumed(&env, &done, &reference_tree);
}

/// Runs a one-phase `sub` plan whose check holds the first time it runs in an audit
/// worktree matching `audit` (a shell pattern), kills that auditor with SIGKILL, and
/// returns the finished run once the orphaned check is gone.
fn kill_auditor_mid_check(env: &TestEnv, audit: &str) -> Run {
    let started = outside(env, "check-started");
    let go = outside(env, "check-go");
    let probe = env.write(
        "probe.sh",
        &format!(
            "case \"$(basename \"$PWD\")\" in {audit}) {} ;; esac\n",
            hold(&started, &go)
        ),
    );
    let script = format!(
        r#"{APPROVE}
[[turn]]
role = "implementer"
actions = [{{ write = "ops/sub.sh", content = {sub} }}]
message = "Added sub.\n"
"#,
        sub = quoted(CALC_SUB),
    );
    let check = format!(
        "`sh {} && sh calc.sh sub 5 3 | grep -qx 2`",
        shell_quote(&probe)
    );
    let phases = format!(
        "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: {check}
"
    );
    let plan = write_goal(
        env,
        &script,
        &Goal {
            verification: &format!("- {check}"),
            phases: &phases,
            ..Goal::default()
        },
    );
    let mut run = spawn_run(env, plan, &[]);
    run.await_file(&started);
    let shell: u32 = line_in(&started).unwrap().parse().unwrap();
    let auditor = ancestor_named(shell, "goalpost-auditor")
        .unwrap_or_else(|| panic!("no goalpost-auditor above the check's shell {shell}"));
    kill9(auditor);
    let done = run.wait();
    std::fs::write(&go, "").unwrap();
    wait_for("the orphaned check to exit", DEADLINE, || {
        (!alive(shell)).then_some(())
    });
    done
}

#[test]
fn an_auditor_killed_mid_check_interrupts_the_run_and_resume_completes_it() {
    let reference_tree = sub_reference_tree();
    let env = calc_env();
    let done = kill_auditor_mid_check(&env, "audit-sub.*");
    assert!(
        done.stdout.contains("interrupted: the audit could not run"),
        "{done}"
    );
    assert_interrupted_then_resumed(&env, &done, &reference_tree);
}

#[test]
fn a_whole_goal_auditor_killed_mid_check_interrupts_the_run_and_resume_completes_it() {
    let reference_tree = sub_reference_tree();
    let env = calc_env();
    let done = kill_auditor_mid_check(&env, "audit-goal-*");
    assert!(
        done.stdout
            .contains("could not run, the run was interrupted"),
        "{done}"
    );
    assert_interrupted_then_resumed(&env, &done, &reference_tree);
}

// ---------------------------------------------------------------------------------------
// 3. Pause

/// One phase needing both `sub` and `mul`: the first turn (which holds until the test
/// says go) adds only `sub`, so without a pause a second turn would follow.
fn two_turn_plan(env: &TestEnv, first_turn_hold: &str) -> &'static str {
    let script = format!(
        r#"{APPROVE}
[[turn]]
role = "implementer"
iteration = 1
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ run = {first_turn_hold} }},
]
message = "Added sub.\n"

[[turn]]
role = "implementer"
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ write = "ops/mul.sh", content = {mul} }},
]
message = "Added mul.\n"
"#,
        sub = quoted(CALC_SUB),
        mul = quoted(CALC_MUL),
        first_turn_hold = quoted(first_turn_hold),
    );
    write_goal(
        env,
        &script,
        &Goal {
            verification: "- `sh tests/run.sh`",
            stop_after: 3,
            phases: "## Phases

### ops: Subtraction and multiplication
Outcome: every test passes.
Verification: `sh tests/run.sh`
",
            ..Goal::default()
        },
    )
}

/// The run stopped paused with exactly one implementer turn and nothing after it; its
/// work is on the attempt ref; `resume` completes the run and leaves nothing behind.
fn assert_paused_after_one_turn_then_resumed(env: &TestEnv, done: &Run) {
    assert_eq!(done.code, i32::from(ExitCode::Paused.code()), "{done}");
    let st = status(env);
    assert_eq!(st["run"]["state"], "paused", "{st:#}");
    assert!(!lock_file(env).exists(), "the lock outlived the run");
    let attempt = attempts(&st, "ops")[0];
    assert_eq!(attempt["iterations"], 1, "{st:#}");
    assert_eq!(prompts(env, "ops", "implementer"), BTreeSet::from([1]));
    assert_eq!(prompts(env, "ops", "reviewer"), BTreeSet::new());
    let kept = env.git_out(
        REPO,
        &[
            "show",
            &format!("{}:ops/sub.sh", text(&attempt["ref_name"])),
        ],
    );
    assert_eq!(format!("{kept}\n"), CALC_SUB);

    let resumed = resume(env, &[]);
    resumed.assert_code(0);
    let st = status(env);
    assert_eq!(st["run"]["state"], "complete", "{st:#}\n{resumed}");
    let tree = env.tree_files(REPO, "main");
    assert_eq!(tree["ops/sub.sh"], CALC_SUB);
    assert_eq!(tree["ops/mul.sh"], CALC_MUL);
    assert_eq!(prompts(env, "ops", "implementer"), BTreeSet::from([1, 2]));
    assert_nothing_left(env, &resumed.to_string());
}

#[test]
fn pause_lets_the_running_turn_finish_starts_no_other_and_resume_goes_on() {
    let env = calc_env();
    let started = outside(&env, "turn-started");
    let go = outside(&env, "turn-go");
    let plan = two_turn_plan(&env, &hold(&started, &go));
    let mut run = spawn_run(&env, plan, &[]);
    run.await_file(&started);

    let pause = env.spawn_goalpost(["pause", "--wait", "-C", REPO], &[]);
    // The run has taken the request once the attempt is told to stop at its boundary.
    let stop = attempt_dir(&env, "ops", 1).join("stop");
    run.await_file(&stop);
    assert!(
        alive(line_in(&started).unwrap().parse().unwrap()),
        "the turn was cut"
    );
    std::fs::write(&go, "").unwrap();
    let paused = pause.wait();
    paused.assert_code(0).assert_stdout_has("stopped");
    let done = run.wait();
    assert!(
        done.stdout.contains("paused after the running turns"),
        "{done}"
    );
    assert_paused_after_one_turn_then_resumed(&env, &done);
}

#[test]
fn pause_now_ends_the_agent_and_its_grandchildren_and_harvests_what_they_wrote() {
    let env = calc_env();
    let started = outside(&env, "turn-started");
    let grandchild = outside(&env, "grandchild");
    let (s, g) = (shell_quote(&started), shell_quote(&grandchild));
    // The agent's shell leaves a grandchild behind it and sleeps.
    let first_turn = format!(
        "if [ ! -e {s} ]; then sleep 1000 & echo $! > {g}.tmp && mv {g}.tmp {g}; \
         echo $$ > {s}.tmp && mv {s}.tmp {s}; sleep 1000; fi"
    );
    let plan = two_turn_plan(&env, &first_turn);
    let mut run = spawn_run(&env, plan, &[]);
    run.await_file(&started);
    let shell: u32 = line_in(&started).unwrap().parse().unwrap();
    let agent = goalpost_tests::durable::parent_of(shell).unwrap();
    let sleeper: u32 = line_in(&grandchild).unwrap().parse().unwrap();
    assert!(alive(sleeper) && alive(shell) && alive(agent));

    let paused = env.goalpost(["pause", "--now", "--wait", "-C", REPO]);
    paused.assert_code(0).assert_stdout_has("stopped");
    let done = run.wait();
    for (what, pid) in [("agent", agent), ("shell", shell), ("grandchild", sleeper)] {
        wait_for(&format!("the {what} ({pid}) to end"), DEADLINE, || {
            (!alive(pid)).then_some(())
        });
    }
    assert!(done.stdout.contains("paused at once"), "{done}");
    assert_paused_after_one_turn_then_resumed(&env, &done);
}

// ---------------------------------------------------------------------------------------
// 4. Budgets

/// Each turn reports this usage; two turns cross every limit of [`BUDGETS`].
const USAGE: &str =
    "USAGE: tokens_in=400 tokens_out=200 tokens_cached=100 cost_usd=0.02 tool_calls=2";

/// A budget, its limit, and what the stop report says after two turns.
const BUDGETS: &[(&str, &str, &str, &str)] = &[
    ("turns", "2", "2", "2"),
    ("iterations", "2", "2", "2"),
    ("tokens", "1000", "1200", "1000"),
    ("tokens_in", "700", "800", "700"),
    ("tokens_out", "300", "400", "300"),
    ("tokens_cached", "150", "200", "150"),
    ("cost_usd", "0.03", "0.0400", "0.0300"),
    ("tool_calls", "3", "4", "3"),
];

/// An implementer that takes notes (a new file each turn, which fixes nothing) until
/// its third turn, which adds `sub`; every turn logs its iteration and start time in
/// `turns.log` outside the repository and reports [`USAGE`].
fn budget_script(env: &TestEnv, usage: &str, turn_ms: u64) -> String {
    let log = outside(env, "turns.log");
    let log_turn = quoted(&format!(
        "echo \"$GOALPOST_ITERATION $(date +%s%3N)\" >> {}",
        shell_quote(&log)
    ));
    format!(
        r#"
[[turn]]
role = "implementer"
iteration_min = 3
actions = [
  {{ run = {log_turn} }},
  {{ write = "ops/sub.sh", content = {sub} }},
]
message = "Added sub.\n{usage}\n"

[[turn]]
role = "implementer"
actions = [
  {{ run = {log_turn} }},
  {{ sleep_ms = {turn_ms} }},
  {{ run = "mkdir -p notes && echo \"$GOALPOST_ITERATION\" > notes/$GOALPOST_ITERATION.txt" }},
]
message = "Took notes.\n{usage}\n"
"#,
        sub = quoted(CALC_SUB),
    )
}

/// The turns the agent started: (iteration, start in ms since the epoch).
fn logged_turns(env: &TestEnv) -> Vec<(u32, u64)> {
    std::fs::read_to_string(outside(env, "turns.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (i, t) = l.split_once(' ').unwrap();
            (i.parse().unwrap(), t.parse().unwrap())
        })
        .collect()
}

/// A one-phase run with `budget` under `[budget]`: returns the finished run.
fn budget_run(env: &TestEnv, budget: &str, usage: &str, turn_ms: u64) -> Run {
    let plan = write_goal(
        env,
        &budget_script(env, usage, turn_ms),
        &Goal {
            budget,
            reviewer: false,
            stop_after: 9,
            phases: SUB_PHASE,
            ..Goal::default()
        },
    );
    run_goal(env, plan)
}

/// The run stopped budget limited after `turns` turns, none started after the limit,
/// and the stop report names the budget and what was used of it.
fn assert_budget_stop(env: &TestEnv, run: &Run, turns: usize, kind: &str, used: &str, limit: &str) {
    assert_eq!(run.code, i32::from(ExitCode::BudgetLimited.code()), "{run}");
    let st = status(env);
    assert_eq!(st["run"]["state"], "budget_limited", "{st:#}");
    let logged = logged_turns(env);
    assert_eq!(logged.len(), turns, "turns started: {logged:?}\n{run}");
    let attempt = attempts(&st, "sub")[0];
    assert_eq!(attempt["iterations"], turns, "{st:#}");
    assert_eq!(attempt["state"], "budget_limited", "{st:#}");
    let expected: BTreeSet<u32> = (1..=turns as u32).collect();
    assert_eq!(prompts(env, "sub", "implementer"), expected);
    let md = report(env);
    let says = format!("budget {kind} reached: used {used} of {limit}");
    assert!(md.contains(&says), "the report lacks {says:?}:\n{md}");
    assert!(!lock_file(env).exists());
}

#[test]
fn every_budget_stops_the_run_at_its_limit_with_no_turn_after_it() {
    for &(kind, limit, used, shown) in BUDGETS {
        let env = calc_env();
        let run = budget_run(&env, &format!("{kind} = {limit}"), USAGE, 0);
        assert_budget_stop(&env, &run, 2, kind, used, shown);
        // Doubled, the budget leaves room for the third turn, which completes the work.
        let resumed = resume(&env, &["--budget", &format!("{kind}=+{limit}")]);
        resumed.assert_code(0);
        let turns: Vec<u32> = logged_turns(&env).iter().map(|(i, _)| *i).collect();
        assert_eq!(turns, [1, 2, 3], "{kind}\n{resumed}");
        assert_eq!(status(&env)["run"]["state"], "complete", "{kind}");
        eprintln!("{kind} = {limit}: stopped after 2 turns; +{limit} completed the run");
    }
}

#[test]
fn a_raised_token_budget_lets_resume_complete_the_attempt() {
    let env = calc_env();
    let run = budget_run(&env, "tokens = 1000", USAGE, 0);
    assert_budget_stop(&env, &run, 2, "tokens", "1200", "1000");

    // Resumed as it is, the budget is still spent: no turn starts.
    let again = resume(&env, &[]);
    assert_eq!(
        again.code,
        i32::from(ExitCode::BudgetLimited.code()),
        "{again}"
    );
    assert_eq!(logged_turns(&env).len(), 2, "{again}");

    let resumed = resume(&env, &["--budget", "tokens=+1000"]);
    resumed.assert_code(0);
    let st = status(&env);
    assert_eq!(st["run"]["state"], "complete", "{st:#}\n{resumed}");
    assert_eq!(attempts(&st, "sub")[0]["iterations"], 3, "{st:#}");
    assert_eq!(env.tree_files(REPO, "main")["ops/sub.sh"], CALC_SUB);
    let logged: Vec<u32> = logged_turns(&env).iter().map(|(i, _)| *i).collect();
    assert_eq!(logged, [1, 2, 3]);
    assert_nothing_left(&env, &resumed.to_string());
}

#[test]
fn the_wall_budget_stops_the_run_and_no_turn_starts_after_it() {
    let env = calc_env();
    // Turns of 1.2 s against 2 s: the second is cut at the wall, no third starts.
    let run = budget_run(&env, "wall = \"2s\"", "", 1200);
    assert_eq!(run.code, i32::from(ExitCode::BudgetLimited.code()), "{run}");
    let logged = logged_turns(&env);
    assert!(!logged.is_empty() && logged.len() <= 2, "{logged:?}");
    let first = logged[0].1;
    for (iteration, start) in &logged {
        assert!(
            start - first < 2000,
            "turn {iteration} started {} ms after the first",
            start - first
        );
    }
    let md = report(&env);
    assert!(md.contains("budget wall reached: used "), "{md}");
    assert!(md.contains(" of 2s"), "{md}");

    let resumed = resume(&env, &["--budget", "wall=+60"]);
    resumed.assert_code(0);
    assert_eq!(status(&env)["run"]["state"], "complete", "{resumed}");
    assert_nothing_left(&env, &resumed.to_string());
}

#[test]
fn the_run_budget_stops_before_the_next_worker_round_and_a_raised_one_completes() {
    let env = calc_env();
    let log = outside(&env, "turns.log");
    let log_turn = quoted(&format!(
        "echo \"$GOALPOST_PHASE $GOALPOST_ITERATION\" >> {}",
        shell_quote(&log)
    ));
    let script = format!(
        r#"
[[turn]]
role = "implementer"
phase = "sub"
actions = [{{ run = {log_turn} }}, {{ write = "ops/sub.sh", content = {sub} }}]
message = "Added sub.\nUSAGE: tokens_in=1000 tokens_out=200\n"

[[turn]]
role = "implementer"
phase = "mul"
actions = [{{ run = {log_turn} }}, {{ write = "ops/mul.sh", content = {mul} }}]
message = "Added mul.\nUSAGE: tokens_in=100 tokens_out=50\n"
"#,
        sub = quoted(CALC_SUB),
        mul = quoted(CALC_MUL),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            run_budget: "tokens = 1000",
            reviewer: false,
            phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `sh calc.sh sub 5 3 | grep -qx 2`

### mul: Multiplication
Depends on: sub
Outcome: every test passes.
Verification: `sh tests/run.sh`
",
            ..Goal::default()
        },
    );
    let run = run_goal(&env, plan);
    assert_eq!(run.code, i32::from(ExitCode::BudgetLimited.code()), "{run}");
    let st = status(&env);
    assert_eq!(st["run"]["state"], "budget_limited", "{st:#}");
    assert_eq!(env.read("turns.log"), "sub 1\n", "no turn after the limit");
    assert_eq!(prompts(&env, "mul", "implementer"), BTreeSet::new());
    let md = report(&env);
    assert!(
        md.contains("the run budget is spent: tokens: used 1200 of 1000"),
        "{md}"
    );

    // Resuming with the same budget stops again before any turn.
    let again = resume(&env, &[]);
    assert_eq!(
        again.code,
        i32::from(ExitCode::BudgetLimited.code()),
        "{again}"
    );
    assert_eq!(env.read("turns.log"), "sub 1\n", "no turn after the limit");

    let resumed = resume(&env, &["--budget", "tokens=+1000"]);
    resumed.assert_code(0);
    assert_eq!(env.read("turns.log"), "sub 1\nmul 1\n");
    assert_eq!(status(&env)["run"]["state"], "complete");
    assert_nothing_left(&env, &resumed.to_string());
}

// ---------------------------------------------------------------------------------------
// 5. No progress

/// An implementer that logs each turn in `turns.log` and runs `actions`.
fn logging_script(env: &TestEnv, actions: &str) -> String {
    let log_turn = quoted(&format!(
        "echo \"$GOALPOST_ITERATION\" >> {}",
        shell_quote(outside(env, "turns.log"))
    ));
    format!(
        r#"
[[turn]]
role = "implementer"
actions = [{{ run = {log_turn} }}{actions}]
message = "Done.\n"
"#
    )
}

#[test]
fn an_agent_that_never_improves_is_stopped_after_exactly_the_no_progress_limit() {
    let env = calc_env();
    // A new file every turn, and the check never passes.
    let script = logging_script(
        &env,
        r#", { run = "mkdir -p notes && echo \"$GOALPOST_ITERATION\" > notes/$GOALPOST_ITERATION.txt" }"#,
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            reviewer: false,
            stop_after: 3,
            phases: SUB_PHASE,
            ..Goal::default()
        },
    );
    let goal = env.read("goal.md");
    assert!(goal.contains("Stop after 3 iterations with no improvement"));
    let run = run_goal(&env, plan);
    assert_eq!(run.code, i32::from(ExitCode::Blocked.code()), "{run}");
    assert_eq!(env.read("turns.log"), "1\n2\n3\n", "{run}");
    let st = status(&env);
    assert_eq!(st["run"]["state"], "blocked", "{st:#}");
    assert_eq!(attempts(&st, "sub")[0]["iterations"], 3, "{st:#}");
    let blocker = text(&st["run"]["blocker"]);
    assert!(blocker.contains("no progress in 3 iterations"), "{blocker}");
    assert_nothing_left(&env, &run.to_string());
}

#[test]
fn an_agent_that_changes_nothing_is_stopped_after_two_empty_turns() {
    let env = calc_env();
    let plan = write_goal(
        &env,
        &logging_script(&env, ""),
        &Goal {
            reviewer: false,
            stop_after: 5,
            phases: SUB_PHASE,
            ..Goal::default()
        },
    );
    let run = run_goal(&env, plan);
    assert_eq!(run.code, i32::from(ExitCode::Blocked.code()), "{run}");
    assert_eq!(env.read("turns.log"), "1\n2\n", "{run}");
    let st = status(&env);
    assert_eq!(st["run"]["state"], "blocked", "{st:#}");
    let blocker = text(&st["run"]["blocker"]);
    assert!(
        blocker.contains("made no change in 2 turns in a row"),
        "{blocker}"
    );
    assert_nothing_left(&env, &run.to_string());
}

#[test]
fn a_check_that_cannot_run_blocks_the_attempt_at_once() {
    let env = calc_env();
    let script = logging_script(
        &env,
        &format!(
            ", {{ write = \"ops/sub.sh\", content = {} }}",
            quoted(CALC_SUB)
        ),
    );
    let plan = write_goal(
        &env,
        &script,
        &Goal {
            reviewer: false,
            stop_after: 5,
            phases: "## Phases

### sub: Subtraction
Outcome: `sh calc.sh sub 5 3` prints 2.
Verification: `./no-such-test-runner`
",
            ..Goal::default()
        },
    );
    let run = run_goal(&env, plan);
    assert_eq!(run.code, i32::from(ExitCode::Blocked.code()), "{run}");
    assert_eq!(env.read("turns.log"), "1\n", "{run}");
    let st = status(&env);
    let blocker = text(&st["run"]["blocker"]);
    assert!(blocker.contains("no-such-test-runner"), "{blocker}");
    assert_nothing_left(&env, &run.to_string());
}

// ---------------------------------------------------------------------------------------
// 6. One run per repository

/// A one-phase `sub` plan whose only turn holds until the test says go.
fn held_sub_plan(env: &TestEnv, started: &Path, go: &Path) -> &'static str {
    let script = format!(
        r#"{APPROVE}
[[turn]]
role = "implementer"
actions = [
  {{ write = "ops/sub.sh", content = {sub} }},
  {{ run = {hold} }},
]
message = "Added sub.\n"
"#,
        sub = quoted(CALC_SUB),
        hold = quoted(&hold(started, go)),
    );
    write_goal(
        env,
        &script,
        &Goal {
            phases: SUB_PHASE,
            ..Goal::default()
        },
    )
}

#[test]
fn a_second_run_on_the_same_repository_is_refused_and_the_first_is_not_harmed() {
    let env = calc_env();
    let (started, go) = (outside(&env, "turn-started"), outside(&env, "turn-go"));
    let plan = held_sub_plan(&env, &started, &go);
    let mut first = spawn_run(&env, plan, &[]);
    first.await_file(&started);
    let lock = std::fs::read_to_string(lock_file(&env)).unwrap();
    let (run_id, pid) = lock.trim().split_once(' ').unwrap();
    assert_eq!(pid, first.pid().to_string());

    let second = run_goal(&env, plan);
    second
        .assert_code(i32::from(ExitCode::BadInput.code()))
        .assert_stderr_has(&format!("run {run_id}, pid {pid}"));
    assert!(second.stdout.is_empty(), "{second}");
    assert_eq!(std::fs::read_to_string(lock_file(&env)).unwrap(), lock);

    std::fs::write(&go, "").unwrap();
    let done = first.wait();
    done.assert_code(0);
    let st = status(&env);
    assert_eq!(st["run"]["id"], run_id, "{st:#}");
    assert_eq!(st["run"]["state"], "complete", "{st:#}");
    assert_eq!(env.tree_files(REPO, "main")["ops/sub.sh"], CALC_SUB);
    assert_nothing_left(&env, &done.to_string());
}

// ---------------------------------------------------------------------------------------
// 7. Exit codes

#[test]
fn the_exit_codes_are_the_documented_ones() {
    let code = |c: ExitCode| i32::from(c.code());

    // 0: complete.
    let env = calc_env();
    let (started, go) = (outside(&env, "turn-started"), outside(&env, "turn-go"));
    std::fs::write(&go, "").unwrap();
    let plan = held_sub_plan(&env, &started, &go);
    run_goal(&env, plan).assert_code(code(ExitCode::Complete));

    // 2: bad input.
    let env = calc_env();
    env.goalpost(["run", "no-such-goal.md", "-C", REPO])
        .assert_code(code(ExitCode::BadInput));
    resume(&env, &[]).assert_code(code(ExitCode::BadInput));

    // 3: blocked.
    let env = calc_env();
    let plan = write_goal(
        &env,
        &logging_script(&env, ""),
        &Goal {
            reviewer: false,
            phases: SUB_PHASE,
            ..Goal::default()
        },
    );
    run_goal(&env, plan).assert_code(code(ExitCode::Blocked));

    // 4: budget limited.
    let env = calc_env();
    let run = budget_run(&env, "turns = 1", USAGE, 0);
    run.assert_code(code(ExitCode::BudgetLimited));

    // 5: paused.
    let env = calc_env();
    let (started, go) = (outside(&env, "turn-started"), outside(&env, "turn-go"));
    let plan = held_sub_plan(&env, &started, &go);
    let mut run = spawn_run(&env, plan, &[]);
    run.await_file(&started);
    env.goalpost(["pause", "-C", REPO])
        .assert_code(code(ExitCode::Complete));
    run.await_file(&attempt_dir(&env, "sub", 1).join("stop"));
    std::fs::write(&go, "").unwrap();
    run.wait().assert_code(code(ExitCode::Paused));
    resume(&env, &[]).assert_code(code(ExitCode::Complete));

    // The README's table says the same.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for (c, name) in [
        (ExitCode::Complete, "complete"),
        (ExitCode::Internal, "internal"),
        (ExitCode::BadInput, "bad input"),
        (ExitCode::Blocked, "blocked"),
        (ExitCode::BudgetLimited, "budget limited"),
        (ExitCode::Paused, "paused"),
    ] {
        let row = format!("| {} | {name}", c.code());
        assert!(readme.contains(&row), "README.md has no row {row:?}");
    }
}

#[test]
fn an_orchestrator_killed_mid_turn_takes_its_worker_along_and_the_turns_work_is_kept() {
    let reference_tree = sub_reference_tree();
    let env = calc_env();
    let (started, go) = (outside(&env, "turn-started"), outside(&env, "turn-go"));
    let plan = held_sub_plan(&env, &started, &go);
    let mut run = spawn_run(&env, plan, &[]);
    run.await_file(&started);
    let shell: u32 = line_in(&started).unwrap().parse().unwrap();
    let agent = goalpost_tests::durable::parent_of(shell).unwrap();
    let pid = run.pid();
    run.kill();
    // The worker follows its orchestrator: it ends the agent's turn (the agent's whole
    // process group) and harvests what the agent wrote before exiting.
    await_orphans_gone(pid);
    for (what, p) in [("agent", agent), ("shell", shell)] {
        wait_for(&format!("the {what} ({p}) to end"), DEADLINE, || {
            (!alive(p)).then_some(())
        });
    }
    let st = status(&env);
    assert_eq!(st["run"]["state"], "active", "{st:#}");
    let attempt_ref = text(&attempts(&st, "sub")[0]["ref_name"]).to_owned();
    let kept = env.git_out(REPO, &["show", &format!("{attempt_ref}:ops/sub.sh")]);
    assert_eq!(format!("{kept}\n"), CALC_SUB);

    let resumed = resume(&env, &[]);
    resumed.assert_code(0);
    assert_eq!(status(&env)["run"]["state"], "complete");
    assert_eq!(
        env.git_out(REPO, &["rev-parse", "main^{tree}"]),
        reference_tree
    );
    assert_nothing_left(&env, &resumed.to_string());
}

#[test]
fn ctrl_c_pauses_at_the_boundary_and_a_second_ctrl_c_ends_the_turn_at_once() {
    let env = calc_env();
    let started = outside(&env, "turn-started");
    // Never told to go: only the second interrupt ends this turn.
    let plan = two_turn_plan(&env, &hold(&started, &outside(&env, "never")));
    let mut run = spawn_run(&env, plan, &[]);
    run.await_file(&started);
    let shell: u32 = line_in(&started).unwrap().parse().unwrap();
    let interrupt = |pid: u32| {
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    interrupt(run.pid());
    run.await_file(&attempt_dir(&env, "ops", 1).join("stop"));
    assert!(
        alive(shell),
        "the first interrupt waits for the running turn"
    );
    interrupt(run.pid());
    let done = run.wait();
    wait_for("the agent's shell to end", DEADLINE, || {
        (!alive(shell)).then_some(())
    });
    assert!(done.stdout.contains("paused at once"), "{done}");
    assert_paused_after_one_turn_then_resumed(&env, &done);
}
