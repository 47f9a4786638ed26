//! `goalpost clear` and `goalpost gc`: worktrees go only once their work is on a ref, and
//! `--purge` deletes refs and records only when confirmed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use goalpost_fixtures::repo::CALC_SUB;
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
