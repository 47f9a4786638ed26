//! `approval = "human"`: a run that passed its whole-goal audit stops before the release
//! move (exit 5) until `goalpost approve`, which moves the release branch by
//! compare-and-swap, merging and verifying again when someone pushed to it meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use goalpost_fixtures::repo::{CALC_MUL, CALC_SUB};
use goalpost_tests::{TestEnv, binary, calc_env, quoted};

const REPO: &str = "calc";

/// The calc project and a one-phase goal whose implementer adds `sub` and `mul`.
pub(crate) fn setup() -> TestEnv {
    let env = calc_env();
    let script = env.write(
        "agent.toml",
        &format!(
            "[[turn]]\nrole = \"implementer\"\nactions = [\n  {{ write = \"ops/sub.sh\", content = {} }},\n  {{ write = \"ops/mul.sh\", content = {} }},\n]\nmessage = \"Added sub and mul.\\nClaims:\\n- tests pass\\n\"\n",
            quoted(CALC_SUB),
            quoted(CALC_MUL)
        ),
    );
    let agent = quoted(binary("scripted-agent").to_str().unwrap());
    let script = quoted(script.to_str().unwrap());
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\napproval = \"human\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [{agent}]\nenv = {{ SCRIPTED_AGENT_SCRIPT = {script} }}\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts and multiplies\n\n## Outcome\nEvery test of calc passes.\n\n## Verification surface\n- `sh tests/run.sh`\n\n## Boundaries\n- Allowed paths: ops/\n- Protected paths: tests/\n"
        ),
    );
    env
}

pub(crate) fn main_tip(env: &TestEnv) -> String {
    env.git_out(REPO, &["rev-parse", "main"]).trim().to_owned()
}

#[test]
fn a_run_awaiting_approval_moves_the_release_only_when_approved() {
    let env = setup();
    let start = main_tip(&env);
    env.goalpost(["-C", REPO, "run", "goal.md"])
        .assert_code(5)
        .assert_stdout_has("waits for `goalpost approve`");
    assert_eq!(main_tip(&env), start, "the release moved before approval");
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "awaiting_approval");
    let integration = status["run"]["integration_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let tip = env
        .git_out(REPO, &["rev-parse", &integration])
        .trim()
        .to_owned();
    assert_ne!(tip, start);

    env.goalpost(["-C", REPO, "approve"])
        .assert_code(0)
        .assert_stdout_has("approved");
    assert_eq!(
        main_tip(&env),
        tip,
        "the release is the audited integration tip"
    );
    assert_eq!(
        env.read("calc/ops/mul.sh"),
        CALC_MUL,
        "the working tree followed"
    );
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "complete");
    // Approving twice is refused: nothing waits any more.
    env.goalpost(["-C", REPO, "approve"])
        .assert_code(2)
        .assert_stderr_has("not waiting for approval");
}

#[test]
fn approve_merges_and_verifies_again_when_the_release_moved_meanwhile() {
    let env = setup();
    env.goalpost(["-C", REPO, "run", "goal.md"]).assert_code(5);
    // Someone else commits to the release branch while the run waits.
    env.write("calc/NOTES.md", "notes\n");
    env.git(REPO, &["add", "NOTES.md"]);
    env.git(REPO, &["commit", "-q", "-m", "Notes"]);
    let theirs = main_tip(&env);
    let status = env.goalpost(["-C", REPO, "status", "--json"]).json();
    let integration = status["run"]["integration_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let tip = env
        .git_out(REPO, &["rev-parse", &integration])
        .trim()
        .to_owned();

    env.goalpost(["-C", REPO, "approve"]).assert_code(0);
    let release = main_tip(&env);
    for ancestor in [&theirs, &tip] {
        env.git(REPO, &["merge-base", "--is-ancestor", ancestor, &release]);
    }
    let files = env.tree_files(REPO, "main");
    assert_eq!(files["NOTES.md"], "notes\n");
    assert_eq!(files["ops/sub.sh"], CALC_SUB);
    // The merge was audited before the release moved to it.
    let report = env
        .goalpost(["-C", REPO, "report", "--format", "json"])
        .json();
    let audited: Vec<&str> = report["audits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["candidate"].as_str())
        .collect();
    assert!(audited.contains(&release.as_str()), "{audited:?}");
}
