//! Verification integrity through `goalpost audit` on real repositories with real test
//! runners: a hostile candidate that makes its check unable to fail, or makes it run
//! fewer tests than the base, is not recommended for merge, and the report names the
//! layer (canary or census) with its evidence; honest work still merges.
//!
//! | cheat | runner | caught by |
//! | --- | --- | --- |
//! | `std::process::exit(0)` in the code under test | `cargo test` | census (no summary from the binaries that exit) |
//! | `#[ignore]` on a unit test in `src/` | `cargo test` | census (one more ignored, one fewer run) |
//! | `autotests = false` in `Cargo.toml` | `cargo test` | canary (not collected), census, check configuration |
//! | an unprotected test file emptied | `cargo test` | census |
//! | `.cargo/config.toml` with `runner = "true"` | `cargo test` | canary, census, check configuration |
//! | `os._exit(0)` in the code under test | `python3 -m unittest` | canary, census |
//! | a Makefile `test:` recipe of `@true` | `make test` (unittest at the base) | canary, census, check configuration |
//! | a root package `unittest/` shadowing the runner | `python3 -m unittest` | canary, check configuration |
//!
//! The repositories and the cheats' patches are the cheat corpus's
//! (`goalpost_tests::cheats`), which the catch-rate table runs through `goalpost run`.
//!
//! "Check configuration" is the protection of the files that decide how a check runs
//! (`.cargo/config.toml`, the test keys of `Cargo.toml`, the followed Makefile recipe, a
//! module shadowing the runner): a boundary violation whatever the allowed paths say,
//! unless one names the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use goalpost_shared::contract::{Check, CheckKind, Contract, Spanned};
use goalpost_shared::integrity::CanaryStatus;
use goalpost_shared::protocol::{
    AUDIT_REUSE_FILE, AuditReport, AuditReuse, CachedCheck, Recommendation,
};
use goalpost_tests::cheats::{
    self, CARGO_FILES, CARGO_TOML, LIB_RS, NODE_FILES, PYTEST_FILES, Patch, UNITTEST_FILES,
};
use goalpost_tests::{Run, TestEnv, binary};

const REPO: &str = "repo";

/// Exit codes of `goalpost audit` (README "Exit codes").
const MERGE: i32 = 0;
const NOT_MERGED: i32 = 3;

/// A repository at its base commit, audited against candidates built on it.
struct Fixture {
    env: TestEnv,
    path: String,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let env = TestEnv::new();
        std::fs::create_dir_all(env.dir().join(REPO)).unwrap();
        env.git(REPO, &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            env.write(&format!("{REPO}/{path}"), text);
        }
        env.git(REPO, &["add", "-A"]);
        env.git(REPO, &["commit", "-q", "-m", "base"]);
        // The toolchains themselves, not the shims that need the user's home: the checks
        // run with a private one.
        let sysroot = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .unwrap();
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
        let path = format!("{sysroot}/bin:/usr/local/bin:/usr/bin:/bin");
        Fixture { env, path }
    }

    /// Commits `changes` (path, new content or `None` to delete) on a branch of the base.
    fn candidate(&self, name: &str, changes: &[(&str, Option<&str>)]) -> String {
        self.env.git(REPO, &["checkout", "-q", "-b", name, "main"]);
        for (path, text) in changes {
            match text {
                Some(text) => {
                    self.env.write(&format!("{REPO}/{path}"), text);
                }
                None => {
                    self.env.git(REPO, &["rm", "-q", path]);
                }
            }
        }
        self.env.git(REPO, &["add", "-A"]);
        self.env.git(REPO, &["commit", "-q", "-m", name]);
        self.env.git(REPO, &["checkout", "-q", "main"]);
        name.to_owned()
    }

    /// Commits a patch of the cheat corpus on a branch of the base.
    fn patch(&self, name: &str, patch: Patch) -> String {
        let changes: Vec<(&str, Option<&str>)> =
            patch.iter().map(|(p, t)| (*p, t.as_deref())).collect();
        self.candidate(name, &changes)
    }

    /// Audits `candidate` against the base with `goal` and returns the run and its report.
    fn audit(&self, goal: &str, candidate: &str) -> (Run, serde_json::Value) {
        self.env.write("goal.md", goal);
        let mut cmd = self.env.command(binary("goalpost"));
        cmd.env("PATH", &self.path).args([
            "audit",
            "--plan",
            "goal.md",
            "--base",
            "main",
            "--candidate",
            candidate,
            "--json",
            "-C",
            REPO,
        ]);
        let run = Run::of(cmd);
        let report =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no report ({e}):\n{run}"));
        (run, report)
    }
}

fn goal(check: &str, protected: &str) -> String {
    format!(
        "# Goal: calc\n\n## Outcome\nThe calculator adds.\n\n## Verification surface\n\
         - `{check}` passes\n\n## Constraints\n- None.\n\n## Boundaries\n\
         - Protected paths: {protected}\n\n## Iteration policy\nTest after each change.\n\n\
         ## Blocked stop condition\nStop after 2 iterations with no improvement.\n"
    )
}

fn cargo_fixture() -> Fixture {
    Fixture::new(CARGO_FILES)
}

const CARGO_CHECK: &str = "cargo test --offline";

/// The one check's result in `report`.
fn check(report: &serde_json::Value) -> &serde_json::Value {
    &report["checks"][0]
}

/// Asserts the audit refused the candidate because of `layer` and returns the failure.
fn assert_caught(run: &Run, report: &serde_json::Value, layer: &str) -> String {
    assert_eq!(run.code, NOT_MERGED, "{run}");
    assert_eq!(report["recommendation"], "revise", "{report:#}");
    let check = check(report);
    assert_eq!(check["passed"], false, "{check:#}");
    let failure = check["failure"].as_str().unwrap_or_default().to_owned();
    let integrity = &check["integrity"];
    match layer {
        "canary" => {
            assert_eq!(integrity["canary"]["status"], "passed", "{integrity:#}");
            assert!(
                failure.starts_with("passed with a failing canary test added: it cannot fail"),
                "{failure}"
            );
        }
        "census" => {
            let violation = integrity["census"]["violation"].as_str();
            assert_eq!(violation, Some(failure.as_str()), "{integrity:#}");
        }
        other => panic!("no layer {other}"),
    }
    failure
}

/// Asserts `report` has the check-configuration violation of `path` and returns its rule.
fn assert_config_violation(report: &serde_json::Value, path: &str) -> String {
    let violations = report["violations"].as_array().cloned().unwrap_or_default();
    let found = violations
        .iter()
        .find(|v| v["kind"] == "check_config" && v["path"] == path)
        .unwrap_or_else(|| panic!("no check_config violation of {path}: {report:#}"));
    let rule = found["rule"].as_str().unwrap_or_default().to_owned();
    assert!(rule.contains("(part of how `"), "{rule}");
    rule
}

#[test]
fn an_honest_cargo_change_merges_with_its_canary_failing_and_more_tests() {
    let f = cargo_fixture();
    let c = f.patch("honest", cheats::cargo_honest());
    let (run, report) = f.audit(&goal(CARGO_CHECK, "tests/"), &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let integrity = &check(&report)["integrity"];
    assert_eq!(integrity["canary"]["status"], "failed", "{integrity:#}");
    assert_eq!(
        integrity["canary"]["planted"][0],
        "tests/goalpost_canary.rs"
    );
    let census = &integrity["census"];
    assert_eq!(census["candidate"]["ran"], 4, "{census:#}");
    assert_eq!(census["base"]["ran"], 3, "{census:#}");
    assert!(census["violation"].is_null());
    // The canary file is gone from the tree the reported check ran on.
    assert!(
        !check(&report)["record"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("goalpost_canary")
    );
}

#[test]
fn exit_zero_inside_the_code_under_test_is_caught_by_the_census() {
    let f = cargo_fixture();
    let c = f.patch("exit0", cheats::cargo_exit_zero());
    let (run, report) = f.audit(&goal(CARGO_CHECK, "tests/"), &c);
    let failure = assert_caught(&run, &report, "census");
    assert_eq!(failure, "`cargo test --offline` ran 0 tests, 3 at the base");
}

#[test]
fn ignoring_a_unit_test_is_caught_by_the_census() {
    let f = cargo_fixture();
    let c = f.patch("ignore", cheats::cargo_ignore());
    let (run, report) = f.audit(&goal(CARGO_CHECK, "tests/"), &c);
    let failure = assert_caught(&run, &report, "census");
    assert_eq!(failure, "`cargo test --offline` ran 2 tests, 3 at the base");
    assert_eq!(
        check(&report)["integrity"]["census"]["candidate"]["skipped"],
        1
    );
}

#[test]
fn autotests_false_is_caught_by_the_canary() {
    let f = cargo_fixture();
    let c = f.patch("autotests", cheats::cargo_autotests());
    let (run, report) = f.audit(&goal(CARGO_CHECK, "tests/"), &c);
    assert_caught(&run, &report, "canary");
    let census = &check(&report)["integrity"]["census"];
    assert_eq!(census["candidate"]["ran"], 2, "{census:#}");
    let rule = assert_config_violation(&report, "Cargo.toml");
    assert!(
        rule.starts_with("`package.autotests` in `Cargo.toml`"),
        "{rule}"
    );
}

#[test]
fn an_emptied_unprotected_test_file_is_caught_by_the_census() {
    let f = cargo_fixture();
    let c = f.patch("emptied", cheats::cargo_emptied_test());
    let (run, report) = f.audit(&goal(CARGO_CHECK, "docs/"), &c);
    let failure = assert_caught(&run, &report, "census");
    assert_eq!(failure, "`cargo test --offline` ran 2 tests, 3 at the base");
}

#[test]
fn a_cargo_runner_of_true_is_caught_by_the_canary() {
    let f = cargo_fixture();
    let c = f.patch("runner", cheats::cargo_runner_true());
    let (run, report) = f.audit(&goal(CARGO_CHECK, "tests/"), &c);
    assert_caught(&run, &report, "canary");
    let census = &check(&report)["integrity"]["census"];
    assert_eq!(census["base"]["ran"], 3, "{census:#}");
    assert_config_violation(&report, ".cargo/config.toml");
}

#[test]
fn a_cargo_config_merges_only_where_an_allowed_path_names_it() {
    let f = cargo_fixture();
    // Honest: a build setting, and a description in Cargo.toml (not a test key).
    let config = "[build]\nincremental = false\n";
    let toml = CARGO_TOML.replace("edition", "description = \"adds\"\nedition");
    let c = f.candidate(
        "config",
        &[
            (".cargo/config.toml", Some(config)),
            ("Cargo.toml", Some(&toml)),
        ],
    );
    let (run, report) = f.audit(&goal(CARGO_CHECK, "tests/"), &c);
    assert_eq!(run.code, NOT_MERGED, "{run}");
    assert_eq!(
        report["violations"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );
    assert_config_violation(&report, ".cargo/config.toml");
    let allowing = goal(CARGO_CHECK, "tests/").replace(
        "## Boundaries\n",
        "## Boundaries\n- Allowed paths: src/, Cargo.toml, .cargo/config.toml\n",
    );
    let (run, report) = f.audit(&allowing, &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
}

fn python_fixture() -> Fixture {
    Fixture::new(UNITTEST_FILES)
}

#[test]
fn os_exit_zero_under_unittest_is_caught_by_the_canary_and_the_census() {
    let f = python_fixture();
    let c = f.patch("osexit", cheats::python_os_exit());
    let (run, report) = f.audit(&goal("python3 -m unittest", "test_calc.py"), &c);
    assert_caught(&run, &report, "canary");
    let census = &check(&report)["integrity"]["census"];
    assert!(census["candidate"].is_null(), "{census:#}");
    assert_eq!(census["base"]["ran"], 2, "{census:#}");
}

#[test]
fn a_make_recipe_of_true_is_caught_by_the_base_recipes_canary() {
    let f = python_fixture();
    let c = f.patch("maketrue", cheats::python_make_true());
    let (run, report) = f.audit(&goal("make test", "test_calc.py"), &c);
    assert_caught(&run, &report, "canary");
    let integrity = &check(&report)["integrity"];
    assert_eq!(integrity["canary"]["planted"][0], "test_goalpost_canary.py");
    assert_eq!(integrity["census"]["base"]["ran"], 2, "{integrity:#}");
    let rule = assert_config_violation(&report, "Makefile");
    assert!(
        rule.starts_with("the rules of `test` in `Makefile`"),
        "{rule}"
    );
}

#[test]
fn a_package_shadowing_unittest_is_caught_by_the_check_configuration() {
    let f = python_fixture();
    // Wrong code, and a `unittest` of its own where the runner starts: it reports success.
    let c = f.patch("shadow", cheats::python_shadow_unittest());
    // Allowed paths that take in everything the candidate changed.
    let goal = goal("python3 -m unittest", "test_calc.py").replace(
        "## Boundaries\n",
        "## Boundaries\n- Allowed paths: *.py, unittest/\n",
    );
    let (run, report) = f.audit(&goal, &c);
    assert_caught(&run, &report, "canary");
    for path in ["unittest/__init__.py", "unittest/__main__.py"] {
        let rule = assert_config_violation(&report, path);
        assert!(
            rule.contains("shadows the runner's module `unittest`"),
            "{rule}"
        );
    }
}

#[test]
fn an_honest_python_change_merges_and_a_switched_off_canary_says_so() {
    let f = python_fixture();
    let c = f.patch("honest", cheats::python_honest());
    let (run, report) = f.audit(&goal("make test", "test_calc.py"), &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let integrity = &check(&report)["integrity"];
    assert_eq!(integrity["canary"]["status"], "failed", "{integrity:#}");
    assert_eq!(integrity["census"]["candidate"]["ran"], 2, "{integrity:#}");

    let off = goal("make test", "test_calc.py").replace(
        "- `make test` passes\n",
        "- `make test` passes\n  Canary: off\n",
    );
    let (run, report) = f.audit(&off, &c);
    assert_eq!(run.code, MERGE, "{run}");
    assert_eq!(check(&report)["integrity"]["canary"]["status"], "off");
}

/// The auditor itself on `base`..`candidate` with one `cargo test` check and `reuse`
/// offered, as a run's scheduler starts it.
fn audit_with_reuse(
    f: &Fixture,
    label: &str,
    base: &str,
    candidate: &str,
    reuse: &AuditReuse,
) -> AuditReport {
    let rev = |r: &str| f.env.git_out(REPO, &["rev-parse", r]);
    let report_dir = f.env.dir().join("reports").join(label);
    std::fs::create_dir_all(&report_dir).unwrap();
    std::fs::write(
        report_dir.join(AUDIT_REUSE_FILE),
        serde_json::to_vec(reuse).unwrap(),
    )
    .unwrap();
    let contract = Contract {
        verification: vec![Check {
            text: Spanned::new(format!("`{CARGO_CHECK}` passes"), 5, 3),
            kind: CheckKind::Machine {
                command: CARGO_CHECK.to_owned(),
                metric: None,
            },
        }],
        ..Contract::default()
    };
    let input = serde_json::json!({
        "run_id": "run1",
        "phase": "p",
        "repo": f.env.dir().join(REPO),
        "worktree": f.env.dir().join("wt").join(label),
        "base": rev(base),
        "candidate": rev(candidate),
        "contract": contract,
        "always_protected": ["goal.md"],
        "claims": [],
        "report_dir": report_dir,
        "check_timeout_secs": 120,
    });
    let input_path = report_dir.join("audit-input.json");
    std::fs::write(&input_path, serde_json::to_vec(&input).unwrap()).unwrap();
    let mut cmd = f.env.command(binary("goalpost-auditor"));
    cmd.env("PATH", &f.path)
        .arg("--input")
        .arg(&input_path)
        .current_dir(f.env.dir().join(REPO));
    Run::of(cmd).assert_code(0);
    serde_json::from_slice(&std::fs::read(report_dir.join("audit.json")).unwrap()).unwrap()
}

/// What the scheduler offers after `report`: its passing checks, as it caches them.
fn offer(reports: &[(&AuditReport, &str)]) -> AuditReuse {
    let mut reuse = AuditReuse::default();
    for (report, source) in reports {
        for note in &report.cache {
            let result = report.checks[note.check].clone();
            if result.passed {
                reuse.cached_checks.push(CachedCheck {
                    key: note.key.clone(),
                    result,
                    source: (*source).to_owned(),
                });
            }
        }
        reuse
            .cached_checks
            .extend(report.base_censuses.iter().cloned());
    }
    reuse
}

#[test]
fn canaries_and_the_base_census_are_reused_by_tree() {
    let f = cargo_fixture();
    let lib = format!("{LIB_RS}\npub fn twice(a: i64) -> i64 {{\n    add(a, a)\n}}\n");
    let c = f.candidate("honest", &[("src/lib.rs", Some(&lib))]);

    // The base audited as a candidate of its own, as the merge that made it was.
    let at_base = audit_with_reuse(&f, "base", "main", "main", &AuditReuse::default());
    let base_census = at_base.checks[0].integrity.as_ref().unwrap().census.clone();
    assert_eq!(
        base_census.and_then(|c| c.candidate).map(|c| c.ran),
        Some(3)
    );

    // The candidate: its own check and canary run, the base's census comes from the cache.
    let first = audit_with_reuse(&f, "first", "main", &c, &offer(&[(&at_base, "at-base")]));
    assert_eq!(first.recommendation, Recommendation::Merge, "{first:#?}");
    assert_eq!(first.cache[0].reused_from, None);
    let integrity = first.checks[0].integrity.as_ref().unwrap();
    assert_eq!(integrity.canary.status, CanaryStatus::Failed);
    let census = integrity.census.as_ref().unwrap();
    assert_eq!(census.base_from.as_deref(), Some("at-base"));
    assert_eq!(census.base.map(|c| c.ran), Some(3));

    // Re-audited: nothing runs, the canary's finding is the cached one.
    let again = audit_with_reuse(&f, "again", "main", &c, &offer(&[(&first, "first")]));
    assert_eq!(again.recommendation, Recommendation::Merge);
    assert_eq!(again.cache[0].reused_from.as_deref(), Some("first"));
    assert_eq!(again.checks[0].integrity, first.checks[0].integrity);
    assert_eq!(again.checks[0].record, first.checks[0].record);

    // Against another base the verdict may differ: the candidate's evidence is not reused.
    let other = audit_with_reuse(&f, "other", &c, &c, &offer(&[(&first, "first")]));
    assert_eq!(other.cache[0].reused_from, None);
}

fn node_fixture() -> Fixture {
    Fixture::new(NODE_FILES)
}

#[test]
fn npm_test_through_node_test_merges_honest_work_and_refuses_an_or_true() {
    let f = node_fixture();
    let honest = f.patch("honest", cheats::node_honest());
    let (run, report) = f.audit(&goal("npm test", "test/"), &honest);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let integrity = &check(&report)["integrity"];
    assert_eq!(
        integrity["canary"]["planted"][0],
        "goalpost-canary.test.mjs"
    );
    assert_eq!(integrity["census"]["candidate"]["ran"], 2, "{integrity:#}");

    let cheat = f.patch("ortrue", cheats::node_or_true());
    let (run, report) = f.audit(&goal("npm test", "test/"), &cheat);
    assert_caught(&run, &report, "canary");
}

#[test]
fn patching_unittests_result_to_success_is_caught_by_the_canary() {
    let f = python_fixture();
    // Imported by the tests at discovery, before any of them runs: every failure vanishes.
    let c = f.patch("patched", cheats::python_patched_result());
    let (run, report) = f.audit(&goal("python3 -m unittest", "test_calc.py"), &c);
    assert_caught(&run, &report, "canary");
    // The census alone sees nothing wrong: as many tests ran as at the base.
    let census = &check(&report)["integrity"]["census"];
    assert_eq!(census["candidate"]["ran"], 2, "{census:#}");
    assert!(census["violation"].is_null(), "{census:#}");
}

/// The directory of a Python interpreter that has pytest, or `None` after saying loudly
/// why the test is skipped (a failure under `CI=true`).
fn python_with_pytest() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys, pytest; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    let found = out.map(|o| {
        let exe = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        exe.rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default()
    });
    if found.is_none() {
        let why = "pytest is not installed for python3: pip install pytest";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("\n*** SKIPPED: {why} ***\n");
    }
    found
}

fn pytest_fixture(python_dir: &str) -> Fixture {
    let mut f = Fixture::new(PYTEST_FILES);
    f.path = format!("{python_dir}:{}", f.path);
    f
}

#[test]
fn pytest_honest_work_merges_and_a_conftest_forcing_passes_is_caught_by_the_canary() {
    let Some(python) = python_with_pytest() else {
        return;
    };
    let f = pytest_fixture(&python);
    let honest = f.patch("honest", cheats::python_honest());
    let (run, report) = f.audit(&goal("python3 -m pytest -q", "tests/"), &honest);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let integrity = &check(&report)["integrity"];
    assert_eq!(
        integrity["canary"]["planted"][0],
        "tests/test_goalpost_canary.py"
    );
    assert_eq!(integrity["census"]["candidate"]["ran"], 3, "{integrity:#}");

    let cheat = f.patch("conftest", cheats::pytest_conftest_passes());
    let (run, report) = f.audit(&goal("python3 -m pytest -q", "tests/"), &cheat);
    assert_caught(&run, &report, "canary");
}

#[test]
fn pytest_tests_skipped_by_a_conftest_are_caught_by_the_census() {
    let Some(python) = python_with_pytest() else {
        return;
    };
    let f = pytest_fixture(&python);
    let cheat = f.patch("skips", cheats::pytest_conftest_skips());
    let (run, report) = f.audit(&goal("python3 -m pytest -q", "tests/"), &cheat);
    let failure = assert_caught(&run, &report, "census");
    assert_eq!(failure, "`python3 -m pytest -q` ran 2 tests, 3 at the base");
    assert_eq!(
        check(&report)["integrity"]["census"]["candidate"]["skipped"],
        1
    );
}

#[test]
fn a_filtered_cargo_check_gets_a_canary_its_filter_selects() {
    let f = cargo_fixture();
    let lib = LIB_RS.replace("    a + b\n", "    a.wrapping_add(b)\n");
    let c = f.candidate("filtered", &[("src/lib.rs", Some(&lib))]);
    let (run, report) = f.audit(&goal("cargo test --offline adds", "tests/"), &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let integrity = &check(&report)["integrity"];
    assert_eq!(integrity["canary"]["status"], "failed", "{integrity:#}");
    assert!(
        integrity["canary"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("adds::goalpost_canary"),
        "{integrity:#}"
    );
    // Only the two unit tests match the filter, at the base as on the candidate.
    assert_eq!(integrity["census"]["base"]["ran"], 2, "{integrity:#}");
    assert_eq!(integrity["census"]["candidate"]["ran"], 2, "{integrity:#}");
}

#[test]
fn fewer_tests_merge_where_the_goal_file_allows_them_for_a_changed_path() {
    let f = cargo_fixture();
    // The public-API test goes; the goal file allows it for that file.
    let c = f.candidate("dropped", &[("tests/api.rs", None)]);
    let allowing = goal(CARGO_CHECK, "docs/").replace(
        "- `cargo test --offline` passes\n",
        "- `cargo test --offline` passes; Census: allow tests/api.rs\n",
    );
    let (run, report) = f.audit(&allowing, &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let census = &check(&report)["integrity"]["census"];
    assert_eq!(
        census["allowed"],
        "`cargo test --offline` ran 2 tests, 3 at the base: allowed, the candidate changed \
         `tests/api.rs`",
        "{census:#}"
    );
    // Without the allowance the same candidate is refused.
    let (run, report) = f.audit(&goal(CARGO_CHECK, "docs/"), &c);
    assert_caught(&run, &report, "census");
}

#[test]
fn a_goal_files_own_canary_command_covers_what_the_builtin_cannot() {
    let f = cargo_fixture();
    let lib = LIB_RS.replace("    a + b\n", "    b + a\n");
    let c = f.candidate("lib", &[("src/lib.rs", Some(&lib))]);
    // `--lib` runs only the unit tests: no new file under `tests/` is collected.
    let (run, report) = f.audit(&goal("cargo test --offline --lib", "tests/"), &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let canary = &check(&report)["integrity"]["canary"];
    assert_eq!(canary["status"], "not_run", "{canary:#}");
    assert_eq!(
        canary["detail"],
        "cargo test: `--lib` selects no new integration test"
    );

    let own = goal("cargo test --offline --lib", "tests/").replace(
        "- `cargo test --offline --lib` passes\n",
        "- `cargo test --offline --lib` passes\n  \
         Canary: `printf '#[test] fn own_canary() { panic!() }' >> src/lib.rs`\n",
    );
    let (run, report) = f.audit(&own, &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let canary = &check(&report)["integrity"]["canary"];
    assert_eq!(canary["status"], "failed", "{canary:#}");
    assert!(
        canary["output"]
            .as_str()
            .unwrap_or_default()
            .contains("own_canary"),
        "{canary:#}"
    );
}

#[test]
fn the_base_census_an_audit_ran_serves_the_next_candidate_on_that_base() {
    let f = cargo_fixture();
    let one = format!("{LIB_RS}\npub fn one() -> i64 {{\n    1\n}}\n");
    let two = format!("{LIB_RS}\npub fn two() -> i64 {{\n    2\n}}\n");
    let c1 = f.candidate("one", &[("src/lib.rs", Some(&one))]);
    let c2 = f.candidate("two", &[("src/lib.rs", Some(&two))]);

    let first = audit_with_reuse(&f, "one", "main", &c1, &AuditReuse::default());
    let census = first.checks[0]
        .integrity
        .as_ref()
        .unwrap()
        .census
        .as_ref()
        .unwrap();
    assert_eq!(census.base_from, None, "nothing cached: the base ran");
    let base_tree = f.env.git_out(REPO, &["rev-parse", "main^{tree}"]);
    assert_eq!(first.base_censuses.len(), 1, "{first:#?}");
    assert_eq!(
        first.base_censuses[0].result.record.tree.as_deref(),
        Some(base_tree.as_str())
    );

    let second = audit_with_reuse(&f, "two", "main", &c2, &offer(&[(&first, "one")]));
    let census = second.checks[0]
        .integrity
        .as_ref()
        .unwrap()
        .census
        .as_ref()
        .unwrap();
    assert!(
        census
            .base_from
            .as_deref()
            .is_some_and(|s| s.ends_with("reports/one")),
        "{census:#?}"
    );
    assert_eq!(census.base.map(|c| c.ran), Some(3));
    assert!(
        second.base_censuses.is_empty(),
        "the base did not run again"
    );
    assert_eq!(
        second.cache[0].reused_from, None,
        "another tree: its own check ran"
    );
}

#[test]
fn a_canary_runs_beside_its_check_in_a_checkout_of_its_own() {
    use std::io::{BufRead, BufReader, Write};
    // A meeting point on loopback: each run of the candidate's tests says where it runs
    // and waits until two runs are there. Run one after the other, the first would wait
    // in vain and fail.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut met = Vec::new();
        for stream in listener.incoming().take(2) {
            let stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            met.push((stream, line.trim().to_owned()));
        }
        for (stream, _) in &mut met {
            let _ = stream.write_all(b"go\n");
        }
        met.into_iter().map(|(_, cwd)| cwd).collect::<Vec<_>>()
    });
    let test = format!(
        "import os\nimport socket\nimport unittest\n\n\nclass MeetTest(unittest.TestCase):\n    \
         def test_meets_the_other_run(self):\n        \
         s = socket.create_connection(('127.0.0.1', {port}), timeout=60)\n        \
         s.sendall((os.getcwd() + '\\n').encode())\n        \
         self.assertEqual(s.makefile().readline(), 'go\\n')\n"
    );
    let f = python_fixture();
    let c = f.candidate("meet", &[("test_meet.py", Some(&test))]);
    let (run, report) = f.audit(&goal("python3 -m unittest", "test_calc.py"), &c);
    assert_eq!(run.code, MERGE, "{run}\n{report:#}");
    let integrity = &check(&report)["integrity"];
    assert_eq!(integrity["canary"]["status"], "failed", "{integrity:#}");
    let cwds = server.join().unwrap();
    let beside: Vec<&String> = cwds.iter().filter(|c| c.ends_with("-canary")).collect();
    assert_eq!(
        beside.len(),
        1,
        "one run in the canary's own checkout: {cwds:?}"
    );
    let check_cwd = cwds.iter().find(|c| !c.ends_with("-canary")).unwrap();
    assert_eq!(format!("{check_cwd}-canary"), *beside[0], "{cwds:?}");
}
