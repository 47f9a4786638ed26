//! Held-out checks through the real binaries, confined: a table of the visible test's
//! answers passes every visible check and is caught by a held-out test whose files no
//! agent turn can read; the implementer is told "held-out check 1 failed" and nothing of
//! the check, revises honestly, and the honest work merges. The audit places the files
//! for the held-out checks alone, read-only, never through a link of the candidate's, and
//! a goal file whose held-out files are missing, inside the repository, or meant for an
//! unconfined run is refused before anything starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use goalpost_tests::{Run, TestEnv, binary, path_quoted, quoted};
use serde_json::Value;

const REPO: &str = "proj";

/// A word only the held-out test holds: wherever it shows up, the held-out files leaked.
const SECRET: &str = "UNSEEN_7c41";

const SORT_PY: &str = "def rsort(xs):\n    raise NotImplementedError\n";

const VISIBLE_TEST: &str = "import unittest\n\nfrom sort import rsort\n\n\n\
class Visible(unittest.TestCase):\n    def test_three(self):\n        \
self.assertEqual(rsort([3, 1, 2]), [3, 2, 1])\n";

/// The held-out test: other inputs than the visible one.
fn held_out_test() -> String {
    format!(
        "import unittest\n\nfrom sort import rsort\n\n\n\
class {SECRET}(unittest.TestCase):\n    def test_four(self):\n        \
self.assertEqual(rsort([5, 9, 1, 7]), [9, 7, 5, 1])\n\n    def test_empty(self):\n        \
self.assertEqual(rsort([]), [])\n"
    )
}

/// The answer for the visible test's input, and nothing else.
const LOOKUP_TABLE: &str =
    "ANSWERS = {(3, 1, 2): [3, 2, 1]}\n\n\ndef rsort(xs):\n    return ANSWERS.get(tuple(xs), xs)\n";

const HONEST: &str = "def rsort(xs):\n    return sorted(xs, reverse=True)\n";

const HELD_OUT_CHECK: &str = "python3 -m unittest discover -s .goalpost-held-out";

/// The repository at its base and the held-out files beside it (`hidden/`, outside).
fn project() -> TestEnv {
    let env = TestEnv::new();
    env.repo(
        REPO,
        &[
            (".gitignore", "__pycache__/\n"),
            ("sort.py", SORT_PY),
            ("tests/test_sort.py", VISIBLE_TEST),
        ],
    );
    env.write("hidden/test_held.py", &held_out_test());
    env
}

/// `goal.md` beside the repository: the scripted implementer, `front` added to the front
/// matter, the visible check, `held_out` as the `## Held-out checks` items.
fn write_goal(env: &TestEnv, script: &str, front: &str, held_out: &str) {
    let script = env.write("agent.toml", script);
    let agent = path_quoted(&binary("scripted-agent"));
    env.write(
        "goal.md",
        &format!(
            r#"+++
release = "main"
{front}

[budget]
turns = 4

[agents.coder]
adapter = "command"
command = [{agent}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script} }}

[roles]
implementer = "coder"
+++

# Goal: reverse sorting

## Outcome
`rsort` returns its list sorted from the largest to the smallest.

## Verification surface
- `python3 -m unittest discover -s tests` passes

## Held-out checks
{held_out}

## Boundaries
- Protected paths: tests/

## Blocked stop condition
Stop after 2 iterations with no improvement.
"#,
            script = path_quoted(&script),
        ),
    );
}

const HIDDEN_FILES: &str = "[held_out]\ndir = \"hidden\"";

fn held_out_item() -> String {
    format!("- `{HELD_OUT_CHECK}` passes")
}

#[test]
fn a_lookup_table_is_caught_by_a_held_out_check_the_implementer_never_sees() {
    let env = project();
    let hidden = env.dir().join("hidden");
    // The implementer tries to read the held-out files where they are, leaves what it saw
    // in its change, and writes the lookup table; told of the failure, it writes the real
    // thing and keeps the prompt it was given.
    let script = format!(
        r#"
[[turn]]
role = "implementer"
iteration = 1
actions = [
  {{ run = {peek} }},
  {{ write = "sort.py", content = {table} }},
]
message = "Done.\nClaims:\n- the tests pass\n"

[[turn]]
role = "implementer"
iteration = 2
actions = [
  {{ copy_prompt = "prompt-2.txt" }},
  {{ fail_if_prompt_lacks = "held-out check 1 failed" }},
  {{ write = "sort.py", content = {honest} }},
]
message = "Sorted for real.\nClaims:\n- the tests pass\n"
"#,
        peek = quoted(&format!(
            "cat {dir}/test_held.py > peek.txt 2>&1; ls -la {dir} >> peek.txt 2>&1; true",
            dir = hidden.display()
        )),
        table = quoted(LOOKUP_TABLE),
        honest = quoted(HONEST),
    );
    write_goal(&env, &script, HIDDEN_FILES, &held_out_item());

    let run = env.goalpost(["-C", REPO, "run", "goal.md"]);
    run.assert_code(0);

    let reports = env.audit_reports(REPO);
    let first = reports
        .iter()
        .find(|r| r["recommendation"] == "revise")
        .unwrap_or_else(|| panic!("no audit sent the table back: {reports:#?}\n{run}"));
    // Every visible check passed; the held-out one did not, and the summary says which
    // by number only.
    assert!(
        first["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{first:#}"
    );
    assert_eq!(first["summary"], "held-out check 1 failed", "{first:#}");
    let held = &first["held_out"][0];
    assert_eq!(held["passed"], false, "{held:#}");
    assert!(
        held["record"]["stderr"]
            .as_str()
            .unwrap()
            .contains("[9, 7, 5, 1]"),
        "{held:#}"
    );

    let main = env.tree_files(REPO, "main");
    assert_eq!(main["sort.py"], HONEST);
    // The agent could not read the held-out files.
    let peek = &main["peek.txt"];
    assert!(
        !peek.contains(SECRET),
        "the agent read the held-out test:\n{peek}"
    );
    assert!(peek.contains("No such file or directory"), "{peek}");
    assert!(
        !peek.lines().any(|l| l.ends_with(" test_held.py")),
        "the agent listed them:\n{peek}"
    );
    // What it was told of the failure: that held-out check 1 failed, not what it is.
    let prompt = &main["prompt-2.txt"];
    assert!(
        prompt.contains("held-out check 1: **failed** (exit 1)"),
        "{prompt}"
    );
    for secret in [SECRET, ".goalpost-held-out", "[9, 7, 5, 1]", "test_four"] {
        assert!(
            !prompt.contains(secret),
            "the prompt shows {secret}:\n{prompt}"
        );
    }
    // The merged tree holds no held-out file.
    assert!(
        main.keys().all(|p| !p.starts_with(".goalpost-held-out")),
        "{main:?}"
    );
    // The run's own report shows the user everything.
    let md = std::fs::read_to_string(
        env.dir()
            .join(REPO)
            .join(".git/goalpost")
            .join(find_report_md(&env, "held-out check 1 failed")),
    )
    .unwrap();
    assert!(
        md.contains("## Held-out checks") && md.contains(SECRET),
        "{md}"
    );
}

/// The path, relative to the state dir, of the first `audit.md` that contains `needle`.
fn find_report_md(env: &TestEnv, needle: &str) -> String {
    let root = env.dir().join(REPO).join(".git/goalpost");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "audit.md")
                && std::fs::read_to_string(&path).unwrap().contains(needle)
            {
                return path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
            }
        }
    }
    panic!("no audit.md says {needle}");
}

/// Commits `files` on a branch `name` of the base.
fn candidate(env: &TestEnv, name: &str, files: &[(&str, &str)]) {
    env.git(REPO, &["checkout", "-q", "-b", name, "main"]);
    for (path, text) in files {
        env.write(&format!("{REPO}/{path}"), text);
    }
    env.git(REPO, &["add", "-A"]);
    env.git(REPO, &["commit", "-q", "-m", name]);
    env.git(REPO, &["checkout", "-q", "main"]);
}

/// `goalpost audit` of `name` against main with `goal.md`, and its JSON report.
fn audit(env: &TestEnv, name: &str) -> (Run, Value) {
    let run = env.goalpost([
        "-C",
        REPO,
        "audit",
        "--plan",
        "goal.md",
        "--base",
        "main",
        "--candidate",
        name,
        "--json",
    ]);
    let report =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no report ({e}):\n{run}"));
    (run, report)
}

const NO_AGENT: &str = "";

#[test]
fn honest_work_passes_its_held_out_checks_which_no_other_check_sees() {
    let env = project();
    let hidden = env.dir().join("hidden");
    // A visible check that passes only while the held-out files are nowhere to be seen:
    // not at their own place, not in the checkout.
    let not_seen = format!(
        "- `test ! -e {}/test_held.py && test ! -e .goalpost-held-out` passes",
        hidden.display()
    );
    write_goal(&env, NO_AGENT, HIDDEN_FILES, &held_out_item());
    let goal = env.read("goal.md").replace(
        "## Held-out checks",
        &format!("{not_seen}\n\n## Held-out checks"),
    );
    env.write("goal.md", &goal);
    candidate(&env, "honest", &[("sort.py", HONEST)]);
    let (run, report) = audit(&env, "honest");
    assert_eq!(run.code, 0, "{run}\n{report:#}");
    assert_eq!(report["recommendation"], "merge", "{report:#}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 2, "{report:#}");
    let held = &report["held_out"][0];
    assert_eq!(held["passed"], true, "{held:#}");
    assert!(
        held["record"]["stderr"]
            .as_str()
            .unwrap()
            .contains("Ran 2 tests"),
        "{held:#}"
    );
    // The user's held-out files are as they were.
    assert_eq!(env.read("hidden/test_held.py"), held_out_test());
}

#[test]
fn the_held_out_files_are_read_only_to_the_code_they_check() {
    let env = project();
    write_goal(&env, NO_AGENT, HIDDEN_FILES, &held_out_item());
    // Code that, once imported by the held-out test, tries to rewrite it.
    let rewriting = format!(
        "import glob\nimport sys\n\nfor path in glob.glob('.goalpost-held-out/*.py'):\n    \
try:\n        open(path, 'w').write('')\n        print('rewrote', path, file=sys.stderr)\n    \
except OSError as err:\n        print('write refused:', err, file=sys.stderr)\n\n\n{HONEST}"
    );
    candidate(&env, "rewrite", &[("sort.py", &rewriting)]);
    let (_, report) = audit(&env, "rewrite");
    let stderr = report["held_out"][0]["record"]["stderr"].as_str().unwrap();
    assert!(stderr.contains("write refused:"), "{report:#}");
    assert!(!stderr.contains("rewrote"), "{report:#}");
    assert_eq!(env.read("hidden/test_held.py"), held_out_test());
}

#[test]
fn a_link_on_the_way_to_the_held_out_folder_is_never_followed() {
    let env = project();
    let elsewhere = env.dir().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    write_goal(
        &env,
        NO_AGENT,
        &format!("{HIDDEN_FILES}\ninto = \"checks/held\""),
        "- `python3 -m unittest discover -s checks/held` passes",
    );
    env.git(REPO, &["checkout", "-q", "-b", "link", "main"]);
    env.write(&format!("{REPO}/sort.py"), HONEST);
    std::os::unix::fs::symlink(&elsewhere, env.dir().join(REPO).join("checks")).unwrap();
    env.git(REPO, &["add", "-A"]);
    env.git(REPO, &["commit", "-q", "-m", "link"]);
    env.git(REPO, &["checkout", "-q", "main"]);

    let (run, report) = audit(&env, "link");
    assert_eq!(run.code, 3, "{run}");
    assert_eq!(report["recommendation"], "revise", "{report:#}");
    let failure = report["held_out"][0]["failure"].as_str().unwrap();
    assert!(
        failure.contains("the held-out files could not be placed")
            && failure.contains("a file or link at checks"),
        "{failure}"
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "the auditor wrote through the candidate's link"
    );
}

#[test]
fn held_out_files_that_are_missing_inside_the_repository_or_unconfined_are_refused() {
    let env = project();
    // Held-out files committed in the repository are in every attempt's worktree.
    env.write(&format!("{REPO}/inside/test_held.py"), &held_out_test());
    env.git(REPO, &["add", "-A"]);
    env.git(REPO, &["commit", "-q", "-m", "tests kept inside"]);
    let before = env.repo_state(REPO);
    let refused = |front: &str, args: &[&str], needle: &str| -> Run {
        write_goal(&env, NO_AGENT, front, &held_out_item());
        let mut all = vec!["-C", REPO, "run", "goal.md"];
        all.extend(args);
        let run = env.goalpost(all);
        run.assert_code(2).assert_stderr_has(needle);
        assert_eq!(
            env.repo_state(REPO),
            before,
            "the repository changed\n{run}"
        );
        let store = env.dir().join(REPO).join(".git/goalpost/state.db");
        assert!(!store.exists(), "a run was recorded\n{run}");
        run
    };
    refused(
        "[held_out]\ndir = \"nowhere\"",
        &[],
        "goal.md:4:7: held_out.dir \"nowhere\" is not a directory",
    );
    refused(
        "[held_out]\ndir = \"proj/inside\"",
        &[],
        "goal.md:4:7: held_out.dir \"proj/inside\" is inside the repository",
    )
    .assert_stderr_has("move the held-out files to a directory outside the repository");
    refused(
        HIDDEN_FILES,
        &["--unconfined"],
        "--unconfined with held-out checks",
    );
}

#[test]
fn plan_check_shows_the_held_out_checks_and_where_their_files_are() {
    let env = project();
    write_goal(&env, NO_AGENT, HIDDEN_FILES, &held_out_item());
    let run = env.goalpost(["plan", "check", "goal.md"]);
    run.assert_code(0)
        .assert_stdout_has(
            "held out      files in hidden, placed at .goalpost-held-out for the audit; the implementer told their numbers only",
        )
        .assert_stdout_has(&format!(
            "held-out checks (the auditor's alone)\n    - `{HELD_OUT_CHECK}` passes"
        ));
}
