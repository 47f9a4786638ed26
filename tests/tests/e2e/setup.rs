//! Setup commands and package caches on real projects, through the real binaries: a Node
//! project whose test needs a package installed from a local tarball (`npm pack`, `npm
//! ci`, no network) and a Python project whose test needs a package installed with `pip
//! --no-index`; each merges with `setup` and, without it, stops with checks that fail for
//! want of the dependency and a stop report that suggests `setup`. A setup that fails in
//! the attempt or in the audit is reported as a setup failure with its output, and nothing
//! merges. An attempt's write to the run's package cache never reaches an audit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use goalpost_tests::{Run, TestEnv, binary, path_quoted, quoted};
use serde_json::Value;

const REPO: &str = "proj";

/// Writes the scripted agent's script and `goal.md`: `front` is extra front matter,
/// `check` the plan's one machine check, `rest` whatever follows the contract.
fn write_goal(env: &TestEnv, script: &str, front: &str, check: &str, rest: &str) {
    let script = env.write("agent.toml", script);
    let agent = path_quoted(&binary("scripted-agent"));
    env.write(
        "goal.md",
        &format!(
            r#"+++
release = "main"
{front}

[agents.coder]
adapter = "command"
command = [{agent}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script} }}

[roles]
implementer = "coder"
+++

# Goal: the project's tests pass

## Outcome
The tests pass.

## Verification surface
- `{check}` passes

## Blocked stop condition
Stop after 1 iteration with no improvement.
{rest}"#,
            script = path_quoted(&script),
        ),
    );
}

/// An implementer that adds a line to `NOTES.md` every turn.
const NOTE_TAKER: &str = r#"
[[turn]]
role = "implementer"
actions = [{ append = "NOTES.md", content = "checked\n" }]
message = "Done.\nClaims:\n- the tests pass\n"
"#;

fn run(env: &TestEnv) -> Run {
    env.goalpost(["-C", REPO, "run", "goal.md"])
}

fn status(env: &TestEnv) -> Value {
    let run = env.goalpost(["-C", REPO, "status", "--json"]);
    run.assert_code(0);
    run.json()
}

/// The stop report the run names on its `report:` line.
fn stop_report(run: &Run) -> String {
    let path = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("the run names no report\n{run}"));
    std::fs::read_to_string(path).unwrap()
}

/// Every `audit.md` the run wrote, in the order of `status`.
fn audit_mds(env: &TestEnv) -> Vec<(Value, String)> {
    status(env)["audits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let dir = PathBuf::from(a["report_dir"].as_str().unwrap());
            let json = std::fs::read_to_string(dir.join("audit.json")).unwrap();
            let md = std::fs::read_to_string(dir.join("audit.md")).unwrap();
            (serde_json::from_str(&json).unwrap(), md)
        })
        .collect()
}

fn tool(env: &TestEnv, dir: &Path, program: &str, args: &[&str]) -> Run {
    let mut cmd = env.command(program);
    cmd.current_dir(dir)
        .args(args)
        .env("npm_config_cache", env.dir().join("npm-cache"));
    let run = Run::of(cmd);
    run.assert_code(0);
    run
}

/// A Node project whose `test.js` requires `tinydep`, declared in `package.json` as a
/// local tarball the test packs with `npm pack`, with its `package-lock.json`.
fn node_project(env: &TestEnv) {
    let pkg = env.dir().join("tinydep");
    env.write(
        "tinydep/package.json",
        r#"{ "name": "tinydep", "version": "1.0.0", "main": "index.js" }"#,
    );
    env.write("tinydep/index.js", "exports.answer = () => 42;\n");
    tool(env, &pkg, "npm", &["pack", "--silent"]);
    let root = env.repo(REPO, &[(".gitignore", "node_modules/\n")]);
    std::fs::create_dir_all(root.join("vendor")).unwrap();
    std::fs::copy(
        pkg.join("tinydep-1.0.0.tgz"),
        root.join("vendor/tinydep-1.0.0.tgz"),
    )
    .unwrap();
    env.write(
        &format!("{REPO}/package.json"),
        r#"{ "name": "proj", "version": "1.0.0", "private": true,
  "dependencies": { "tinydep": "file:vendor/tinydep-1.0.0.tgz" } }"#,
    );
    env.write(
        &format!("{REPO}/test.js"),
        "const { answer } = require('tinydep');\nif (answer() !== 42) process.exit(1);\nconsole.log('ok');\n",
    );
    tool(
        env,
        &root,
        "npm",
        &[
            "install",
            "--package-lock-only",
            "--offline",
            "--no-audit",
            "--no-fund",
        ],
    );
    env.git(REPO, &["add", "-A"]);
    env.git(REPO, &["commit", "-q", "-m", "node project"]);
}

/// A Python project whose `test_app.py` imports `tinydep`, a wheel under `vendor/`.
fn python_project(env: &TestEnv) {
    let root = env.repo(REPO, &[(".gitignore", ".deps/\n")]);
    let wheel = root.join("vendor/tinydep-1.0-py3-none-any.whl");
    std::fs::create_dir_all(wheel.parent().unwrap()).unwrap();
    // A wheel is a zip of the module and its metadata; pip installs it with no index.
    let make = format!(
        r#"import zipfile
with zipfile.ZipFile({wheel}, "w") as z:
    z.writestr("tinydep/__init__.py", "def answer():\n    return 42\n")
    z.writestr("tinydep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n")
    z.writestr("tinydep-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("tinydep-1.0.dist-info/RECORD", "")
"#,
        wheel = quoted(wheel.to_str().unwrap()),
    );
    tool(env, &root, "python3", &["-c", &make]);
    env.write(
        &format!("{REPO}/test_app.py"),
        "import tinydep\nassert tinydep.answer() == 42\nprint('ok')\n",
    );
    env.git(REPO, &["add", "-A"]);
    env.git(REPO, &["commit", "-q", "-m", "python project"]);
}

const NPM_SETUP: &str = r#"setup = ["npm ci --offline --no-audit --no-fund"]"#;
/// The setup that installs the wheel into `.deps/` with pip and no index. It runs the
/// interpreter itself rather than a version manager's shim, which would try to write its
/// own files after an install.
fn pip_setup(env: &TestEnv) -> String {
    let python = tool(
        env,
        env.dir(),
        "python3",
        &["-c", "import sys; print(sys.executable)"],
    );
    let python = python.stdout.trim();
    format!(
        "setup = [{}]\nsetup_timeout = \"5m\"",
        quoted(&format!(
            "{python} -m pip install --no-index --quiet --disable-pip-version-check \
             --target .deps vendor/tinydep-1.0-py3-none-any.whl"
        ))
    )
}
const PY_CHECK: &str = "PYTHONPATH=.deps python3 test_app.py";

/// The run merged: exit 0, the release branch holds the agent's note, and the setup's
/// output is evidence in the worker's result and in the audit's reports.
fn assert_merged_with_setup(env: &TestEnv, run: &Run, installed: &str) {
    run.assert_code(0);
    let files = env.tree_files(REPO, "main");
    assert_eq!(files.get("NOTES.md").map(String::as_str), Some("checked\n"));
    assert!(
        !files.keys().any(|p| p.starts_with(installed)),
        "the setup's output was harvested: {files:?}"
    );
    let st = status(env);
    let run_id = st["run"]["id"].as_str().unwrap();
    let worker_out = env
        .dir()
        .join(REPO)
        .join(".git/goalpost/runs")
        .join(run_id)
        .join("attempts/goal.1/worker-out-1.json");
    let worker: Value =
        serde_json::from_str(&std::fs::read_to_string(worker_out).unwrap()).unwrap();
    let setup = &worker["setup"];
    assert!(setup["failure"].is_null(), "{worker:#}");
    assert_eq!(setup["commands"][0]["exit_code"], 0, "{worker:#}");
    let audits = audit_mds(env);
    assert!(!audits.is_empty());
    for (json, md) in &audits {
        assert_eq!(json["recommendation"], "merge", "{md}");
        let setup = &json["setup"];
        assert!(setup["failure"].is_null(), "{md}");
        assert_eq!(setup["commands"].as_array().unwrap().len(), 1, "{md}");
        assert!(md.contains("## Setup"), "{md}");
        assert!(md.contains("Every setup command succeeded"), "{md}");
    }
}

/// Without setup the checks fail for want of the dependency; the stop report says so and
/// suggests `setup`.
fn assert_blocked_for_want_of(run: &Run, missing: &str) {
    run.assert_code(3);
    let report = stop_report(run);
    assert!(report.contains(missing), "{report}");
    assert!(report.contains("for want of a dependency"), "{report}");
    assert!(report.contains("`setup = [\"...\"]`"), "{report}");
}

#[test]
fn a_node_project_merges_with_npm_ci_as_its_setup() {
    let env = TestEnv::new();
    node_project(&env);
    write_goal(&env, NOTE_TAKER, NPM_SETUP, "node test.js", "");
    let run = run(&env);
    assert_merged_with_setup(&env, &run, "node_modules/");
}

#[test]
fn a_node_project_without_setup_stops_for_want_of_its_dependency() {
    let env = TestEnv::new();
    node_project(&env);
    write_goal(&env, NOTE_TAKER, "", "node test.js", "");
    let run = run(&env);
    assert_blocked_for_want_of(&run, "Cannot find module 'tinydep'");
    assert_eq!(env.tree_files(REPO, "main").get("NOTES.md"), None);
}

#[test]
fn a_python_project_merges_with_pip_install_as_its_setup() {
    let env = TestEnv::new();
    python_project(&env);
    write_goal(&env, NOTE_TAKER, &pip_setup(&env), PY_CHECK, "");
    let run = run(&env);
    assert_merged_with_setup(&env, &run, ".deps/");
}

#[test]
fn a_python_project_without_setup_stops_for_want_of_its_dependency() {
    let env = TestEnv::new();
    python_project(&env);
    write_goal(&env, NOTE_TAKER, "", PY_CHECK, "");
    let run = run(&env);
    assert_blocked_for_want_of(&run, "No module named 'tinydep'");
}

#[test]
fn a_failing_setup_is_a_setup_failure_with_its_output_and_nothing_merges() {
    let env = TestEnv::new();
    python_project(&env);
    let before = env.git_out(REPO, &["rev-parse", "main"]);
    let failing =
        r#"setup = ["echo fetching tinydep; echo 'ERROR: tinydep 9.9 not found' >&2; exit 7"]"#;
    write_goal(&env, NOTE_TAKER, failing, PY_CHECK, "");
    let run = run(&env);
    // Blocked (3): the attempt could not start; no turn ran.
    run.assert_code(3);
    let report = stop_report(&run);
    assert!(report.contains("setup failed"), "{report}");
    assert!(report.contains("failed: exit status 7"), "{report}");
    assert!(report.contains("ERROR: tinydep 9.9 not found"), "{report}");
    assert!(report.contains("setup commands that succeed"), "{report}");
    assert!(!report.contains("checks still fail"), "{report}");
    assert_eq!(env.git_out(REPO, &["rev-parse", "main"]), before);
    assert!(audit_mds(&env).is_empty(), "nothing to audit");
    let st = status(&env);
    let attempt = &st["attempts"][0];
    assert_eq!(attempt["tokens_in"].as_u64().unwrap_or(0), 0, "{st:#}");
}

#[test]
fn a_setup_the_candidate_breaks_fails_in_the_audit_not_as_a_failing_check() {
    let env = TestEnv::new();
    python_project(&env);
    let before = env.git_out(REPO, &["rev-parse", "main"]);
    // The setup reads a file of the tree, which the implementer breaks: the worker's
    // setup ran before its turn, the audit's runs on the candidate.
    let script = r#"
[[turn]]
role = "implementer"
actions = [{ write = "requirements.txt", content = "tinydep==9.9\n" }]
message = "Done.\nClaims:\n- the tests pass\n"
"#;
    let setup = pip_setup(&env).replace(
        "setup = [\"",
        "setup = [\"if grep -q 9.9 requirements.txt 2>/dev/null; then echo 'ERROR: no tinydep 9.9' >&2; exit 1; fi; ",
    );
    write_goal(&env, script, &setup, PY_CHECK, "");
    let run = run(&env);
    run.assert_code(3);
    let audits = audit_mds(&env);
    let (json, md) = audits.first().expect("the candidate was audited");
    assert_eq!(json["recommendation"], "revise", "{md}");
    assert!(json["checks"].as_array().unwrap().is_empty(), "{md}");
    let summary = json["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("the setup failed, so no check ran"),
        "{summary}"
    );
    assert!(md.contains("**The setup failed**"), "{md}");
    assert!(md.contains("ERROR: no tinydep 9.9"), "{md}");
    assert!(!md.contains("## Checks"), "{md}");
    // The next round's setup, on the attempt's own tree now, fails in the worker.
    let report = stop_report(&run);
    assert!(report.contains("setup failed"), "{report}");
    assert_eq!(env.git_out(REPO, &["rev-parse", "main"]), before);
}

#[test]
fn an_attempts_write_to_the_package_cache_does_not_reach_the_audit() {
    let env = TestEnv::new();
    env.repo(REPO, &[("README.md", "cache\n")]);
    // The implementer leaves a file in the npm cache the attempts share; the phase's own
    // check only needs the cache to be set. The whole-goal check, which only the auditor
    // runs, fails if the attempt's file is in the cache it sees.
    let script = r#"
[[turn]]
role = "implementer"
actions = [
  { run = "mkdir -p \"$npm_config_cache\" && echo attempt > \"$npm_config_cache/poison\"" },
  { run = "cat \"$HOME/.npm/seed\" > NOTES.md; echo attempt > \"$HOME/.npm/written\"" },
]
message = "Done.\nClaims:\n- the tests pass\n"
"#;
    let phases = r#"
## Phases

### work: Leave a note
Verification: `test -n "$npm_config_cache"`
"#;
    write_goal(
        &env,
        script,
        "",
        r#"test -n "$npm_config_cache" && test ! -e "$npm_config_cache/poison""#,
        phases,
    );
    // The user's own npm cache: readable in the attempt's sandbox, never writable.
    env.write("home/.npm/seed", "from the user's cache\n");
    let run = run(&env);
    run.assert_code(0);
    assert_eq!(
        env.tree_files(REPO, "main")
            .get("NOTES.md")
            .map(String::as_str),
        Some("from the user's cache\n")
    );
    assert!(!env.home().join(".npm/written").exists());
    let st = status(&env);
    let run_id = st["run"]["id"].as_str().unwrap();
    let shared = env
        .dir()
        .join(REPO)
        .join(".git/goalpost/runs")
        .join(run_id)
        .join("cache/npm/poison");
    assert_eq!(
        std::fs::read_to_string(&shared).ok().as_deref(),
        Some("attempt\n"),
        "the attempt wrote into the run's cache at {}",
        shared.display()
    );
    let audits = audit_mds(&env);
    assert!(audits.len() >= 2, "the phase's audit and the whole goal's");
    for (json, md) in &audits {
        assert_eq!(json["recommendation"], "merge", "{md}");
    }
}

#[test]
fn a_setup_that_leaves_files_git_does_not_ignore_stops_before_the_harvest_takes_them() {
    let env = TestEnv::new();
    env.repo(REPO, &[("README.md", "no ignore file\n")]);
    let leaky = r#"setup = ["mkdir -p build && echo generated > build/out.txt"]"#;
    write_goal(&env, NOTE_TAKER, leaky, "test -f build/out.txt", "");
    let before = env.git_out(REPO, &["rev-parse", "main"]);
    let run = run(&env);
    run.assert_code(3);
    let report = stop_report(&run);
    assert!(
        report.contains("setup failed: it left files git does not ignore: `build/out.txt`"),
        "{report}"
    );
    assert!(report.contains("`.gitignore`"), "{report}");
    assert_eq!(env.git_out(REPO, &["rev-parse", "main"]), before);
    // No turn ran, so nothing was harvested: the attempt's ref, if any, is the base.
    let refs = env.git_out(
        REPO,
        &["for-each-ref", "--format=%(objectname)", "refs/goalpost/"],
    );
    assert!(refs.lines().all(|r| r == before), "{refs}");
}

/// Where this machine's Rust toolchain is: `RUSTUP_HOME` and `CARGO_HOME` as the test
/// runs, else under the real `HOME`.
fn toolchain_env() -> Vec<(&'static str, String)> {
    let home = std::env::var("HOME").unwrap_or_default();
    [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")]
        .into_iter()
        .map(|(var, dir)| {
            (
                var,
                std::env::var(var).unwrap_or_else(|_| format!("{home}/{dir}")),
            )
        })
        .collect()
}

#[test]
fn a_rust_project_builds_in_the_audit_with_the_users_toolchain_read_only() {
    let env = TestEnv::new();
    env.repo(
        REPO,
        &[
            (".gitignore", "target/\n"),
            (
                "Cargo.toml",
                "[package]\nname = \"proj\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    write_goal(&env, NOTE_TAKER, "", "cargo build --offline --quiet", "");
    // The test's HOME has no toolchain: only the toolchain homes goalpost passes on let
    // rustup's `cargo` run, in the attempt and in the audit, whose HOME is private.
    let mut cmd = env.command(binary("goalpost"));
    cmd.args(["-C", REPO, "run", "goal.md"]);
    for (var, value) in toolchain_env() {
        cmd.env(var, value);
    }
    let run = Run::of(cmd);
    run.assert_code(0);
    let audits = audit_mds(&env);
    assert!(!audits.is_empty());
    for (json, md) in &audits {
        assert_eq!(json["recommendation"], "merge", "{md}");
    }
}
