//! `goalpost clear` and `goalpost gc`: worktrees go only once their work is on a ref, and
//! `--purge` deletes refs and records only when confirmed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use goalpost_fixtures::repo::CALC_SUB;
use goalpost_tests::durable::processes_with_env;
use goalpost_tests::{TestEnv, binary, calc_env, quoted};

const REPO: &str = "calc";

/// The calc project and a one-phase goal whose implementer adds `sub`.
fn setup() -> TestEnv {
    let env = calc_env();
    let script = env.write(
        "agent.toml",
        &format!(
            "[[turn]]\nrole = \"implementer\"\nactions = [{{ write = \"ops/sub.sh\", content = {} }}]\nmessage = \"Added sub.\\n\"\n",
            quoted(CALC_SUB)
        ),
    );
    let agent = quoted(binary("scripted-agent").to_str().unwrap());
    let script = quoted(script.to_str().unwrap());
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [{agent}]\nenv = {{ SCRIPTED_AGENT_SCRIPT = {script} }}\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts\n\n## Outcome\n`sh calc.sh sub 5 3` prints 2.\n\n## Verification surface\n- `sh calc.sh sub 5 3 | grep -qx 2`\n\n## Boundaries\n- Allowed paths: ops/\n"
        ),
    );
    env
}

/// Runs the goal and kills goalpost with SIGKILL at crash point 3: the worker has
/// harvested its turn and the attempt's worktree is still there. Returns the run's id.
fn crash_after_the_first_round(env: &TestEnv) -> String {
    let marker = env.dir().join("crashed");
    let mut child = env
        .command(binary("goalpost"))
        .args(["-C", REPO, "run", "goal.md"])
        .env("GOALPOST_CRASH_AT", "3")
        .env("GOALPOST_CRASH_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "crash point 3 never reached");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("goalpost ended ({status}) before crash point 3");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    status["run"]["id"].as_str().unwrap().to_owned()
}

fn attempt_worktree(env: &TestEnv) -> PathBuf {
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    PathBuf::from(status["attempts"][0]["worktree"].as_str().unwrap())
}

fn refs(env: &TestEnv, run: &str) -> String {
    env.git_out(
        REPO,
        &[
            "for-each-ref",
            "--format=%(refname)",
            &format!("refs/goalpost/{run}/"),
        ],
    )
}

#[test]
fn clear_harvests_what_an_interrupted_agent_left_then_removes_the_worktree() {
    let env = setup();
    let run = crash_after_the_first_round(&env);
    let worktree = attempt_worktree(&env);
    assert!(worktree.join("ops/sub.sh").is_file());
    // What a turn cut short would leave: a change that is on no ref yet.
    std::fs::write(worktree.join("ops/leftover.sh"), "half done\n").unwrap();
    let attempt_ref = format!("refs/goalpost/{run}/goal/1");

    env.goalpost(["-C", REPO, "clear"])
        .assert_code(0)
        .assert_stdout_has("worktrees removed");
    assert!(!worktree.exists(), "{} is still there", worktree.display());
    let on_ref = env.git_out(REPO, &["show", &format!("{attempt_ref}:ops/leftover.sh")]);
    assert_eq!(on_ref, "half done");
    assert_eq!(env.git_out(REPO, &["worktree", "list"]).lines().count(), 1);
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "cleared");
    // A cleared run no longer holds the repository.
    env.goalpost(["-C", REPO, "run", "goal.md"]).assert_code(0);
}

#[test]
fn purge_needs_confirmation_and_then_deletes_refs_and_records() {
    let env = setup();
    let run = crash_after_the_first_round(&env);
    assert!(!refs(&env, &run).is_empty());
    // No terminal to ask on (stdin is not one here): refused, nothing deleted.
    env.goalpost(["-C", REPO, "clear", "--purge"])
        .assert_code(2)
        .assert_stderr_has("--yes");
    assert!(!refs(&env, &run).is_empty());
    assert!(attempt_worktree(&env).exists());

    env.goalpost(["-C", REPO, "clear", "--purge", "--yes"])
        .assert_code(0);
    assert_eq!(refs(&env, &run), "");
    env.goalpost(["-C", REPO, "status"])
        .assert_code(2)
        .assert_stderr_has("has no goalpost run");
    assert!(
        !env.dir()
            .join(REPO)
            .join(".git/goalpost/runs")
            .join(&run)
            .exists()
    );
}

/// Adds a worktree at `path` the way goalpost does, for a run the store never knew.
fn orphan(env: &TestEnv, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    env.git(
        REPO,
        &[
            "worktree",
            "add",
            "--detach",
            path.to_str().unwrap(),
            "main",
        ],
    );
}

#[test]
fn gc_removes_orphaned_worktrees_but_never_one_holding_unharvested_work() {
    let env = setup();
    let run = crash_after_the_first_round(&env);
    let live = attempt_worktree(&env);
    let repo_root = live.parent().unwrap().parent().unwrap().to_path_buf();
    let clean = repo_root.join("gone-run").join("goal.1");
    let dirty = repo_root.join("gone-run").join("goal.2");
    orphan(&env, &clean);
    orphan(&env, &dirty);
    std::fs::write(dirty.join("unharvested.txt"), "work\n").unwrap();

    let gc = env.goalpost(["-C", REPO, "gc"]);
    gc.assert_code(0).assert_stderr_has("kept");
    assert!(!clean.exists(), "the clean orphan is still there");
    assert!(
        dirty.join("unharvested.txt").is_file(),
        "gc destroyed work:\n{gc}"
    );
    // The interrupted run's own worktree is left for `resume`.
    assert!(live.exists(), "gc removed a worktree of run {run}");
    env.goalpost(["-C", REPO, "resume"]).assert_code(0);
}

/// `goal.md`: one phase per entry of `phases` (`"id: title"`), independent of each other,
/// each writing under `out/` with the shell script `agent` as its implementer, `true` as
/// the check, and `max_parallel` jobs at once.
fn shell_goal(env: &TestEnv, agent: &Path, max_parallel: u32, phases: &[&str]) {
    let phases: String = phases.iter().map(|p| format!("\n### {p}\n")).collect();
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\nmax_parallel = {max_parallel}\n\n[agents.sh]\nadapter = \"command\"\ncommand = [\"/bin/sh\", {}]\n\n[roles]\nimplementer = \"sh\"\n+++\n\n# Goal: a file per phase\n\n## Outcome\nout/ holds a file per phase.\n\n## Verification surface\n- `true` passes\n\n## Boundaries\n- Allowed paths: out/\n\n## Phases\n{phases}",
            quoted(agent.to_str().unwrap())
        ),
    );
}

/// An internal error in the middle of a run (here the next attempt's worktree cannot be
/// made: the first agent left a file where it goes) ends the turns still running and waits
/// for their harvest: once `goalpost` has exited, none of its workers runs, the stopped
/// attempt's work is on its ref, and the store says it was interrupted.
#[test]
fn an_internal_error_stops_and_harvests_the_running_agents_before_goalpost_exits() {
    let env = calc_env();
    let fixed = env.dir().join("fixed");
    let agent = env.write(
        "agent.sh",
        &r#"mkdir -p out
blocker="$(dirname "$PWD")/p3.1"
case "$GOALPOST_PHASE" in
p1) echo slow > out/p1.txt; [ -e FIXED ] || { : > "$blocker"; exec sleep 600; } ;;
p2) while [ ! -e "$blocker" ]; do sleep 0.05; done; echo fast > out/p2.txt ;;
*) echo last > out/p3.txt ;;
esac
"#
        .replace("FIXED", &quoted(fixed.to_str().unwrap())),
    );
    shell_goal(&env, &agent, 2, &["p1: slow", "p2: fast", "p3: last"]);
    let running = env.spawn_goalpost(["-C", REPO, "run", "goal.md", "--unconfined"], &[]);
    let pid = running.pid();
    let run = running.wait();
    run.assert_code(1).assert_stderr_has("p3.1");
    assert_eq!(
        processes_with_env("GOALPOST_PARENT_PID", &pid.to_string()),
        Vec::<u32>::new(),
        "workers outlived goalpost\n{run}"
    );
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    let attempts = status["attempts"].as_array().unwrap();
    let p1 = attempts
        .iter()
        .find(|a| a["phase_id"] == "p1")
        .unwrap_or_else(|| panic!("no attempt of p1: {status:#}"));
    assert_eq!(p1["state"], "interrupted", "{status:#}\n{run}");
    let harvested = env.git_out(
        REPO,
        &[
            "show",
            &format!("{}:out/p1.txt", p1["ref_name"].as_str().unwrap()),
        ],
    );
    assert_eq!(harvested.trim(), "slow");

    // Once the cause is gone, `resume` goes on from the harvested work and completes.
    let blocker = PathBuf::from(p1["worktree"].as_str().unwrap()).with_file_name("p3.1");
    std::fs::remove_file(&blocker).unwrap();
    std::fs::write(&fixed, "").unwrap();
    let resumed = env.goalpost(["-C", REPO, "resume", "--unconfined"]);
    resumed.assert_code(0);
    let tree = env.tree_files(REPO, "main");
    assert_eq!(tree["out/p1.txt"], "slow\n", "{resumed}");
    assert_eq!(tree["out/p2.txt"], "fast\n", "{resumed}");
    assert_eq!(tree["out/p3.txt"], "last\n", "{resumed}");
}

/// A candidate's worktree goes back to the pool as soon as its worker is done, not when it
/// merges: the next attempt, started while that audit is still to run, gets it recycled
/// (its cache directory kept) instead of a fresh `git worktree add`.
#[test]
fn a_candidates_worktree_is_recycled_for_the_next_attempt_while_it_is_audited() {
    let env = calc_env();
    env.write(&format!("{REPO}/.gitignore"), "target/\n");
    env.git(REPO, &["add", ".gitignore"]);
    env.git(REPO, &["commit", "-q", "-m", "ignore target/"]);
    let agent = env.write(
        "agent.sh",
        r#"mkdir -p out
case "$GOALPOST_PHASE" in
p1) mkdir -p target; echo warm > target/cache; echo one > out/p1.txt ;;
*) if [ -e target/cache ]; then echo recycled; else echo fresh; fi > out/p2.txt ;;
esac
"#,
    );
    shell_goal(&env, &agent, 1, &["p1: first", "p2: second"]);
    let run = env.goalpost(["-C", REPO, "run", "goal.md"]);
    run.assert_code(0);
    let tree = env.tree_files(REPO, "main");
    assert_eq!(tree["out/p1.txt"], "one\n", "{run}");
    assert_eq!(tree["out/p2.txt"], "recycled\n", "{run}");
    assert!(!tree.contains_key("target/cache"));
}
