//! Canaries: a deliberately failing test added where a check's runner collects it, in
//! the audit's checkout once the checks whose results are reported have run. A check that
//! still passes with its canary cannot fail, whatever it prints: it is compromised.
//!
//! Where each runner's canary goes is [`crate::placement`]'s; this module plants it, runs
//! the check again and removes it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Duration;

use goalpost_shared::check::{cannot_run, run_check};
use goalpost_shared::confine::Confinement;
use goalpost_shared::contract::{Check, CheckKind, Spanned};
use goalpost_shared::integrity::{CanaryOutcome, CanarySetting, CanaryStatus};

use crate::claims::tail;
use crate::placement::{file_content, plant};
use crate::runner::{Files, Runner};

/// What a failing canary test says, so its failure is recognised in the output.
pub const MESSAGE: &str = "goalpost canary: this test must fail";

/// Bytes of the canary run's output kept in the report.
const OUTPUT_BYTES: usize = 1024;

/// How a check's canary is put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Files to add: (path relative to the checkout, content).
    Plant(Vec<(String, String)>),
    /// The goal file's own command, run in the checkout.
    Command(String),
    /// No canary: the status to report and why.
    None(CanaryStatus, String),
}

/// The canary of a check whose command starts `runners`, by `setting`, in a tree of
/// `files`.
pub fn plan(setting: &CanarySetting, runners: &[Runner], files: &dyn Files) -> Plan {
    match setting {
        CanarySetting::Off => Plan::None(
            CanaryStatus::Off,
            "switched off by the goal file".to_owned(),
        ),
        CanarySetting::Command(command) => Plan::Command(command.clone()),
        CanarySetting::File(path) => match file_content(path, runners, files) {
            Some(content) => Plan::Plant(vec![(path.clone(), content)]),
            None => Plan::None(
                CanaryStatus::NotRun,
                format!("no Go package in the directory of `{path}`"),
            ),
        },
        CanarySetting::Builtin => {
            if runners.is_empty() {
                return Plan::None(
                    CanaryStatus::NotRun,
                    "the command starts no test runner the auditor knows".to_owned(),
                );
            }
            let mut planted: Vec<(String, String)> = Vec::new();
            let mut reasons = Vec::new();
            for runner in runners {
                match plant(runner, files) {
                    Ok(more) => {
                        for (path, content) in more {
                            if !planted.iter().any(|(p, _)| *p == path) {
                                planted.push((path, content));
                            }
                        }
                    }
                    Err(why) => reasons.push(format!("{}: {why}", runner.kind.as_str())),
                }
            }
            if planted.is_empty() {
                Plan::None(CanaryStatus::NotRun, reasons.join("; "))
            } else {
                Plan::Plant(planted)
            }
        }
    }
}

/// Runs `check` once more in `checkout` with its canary in place and says whether it
/// failed as it must. Planted files are removed again afterwards.
pub fn run(
    plan: &Plan,
    check: &Check,
    checkout: &Path,
    env: &BTreeMap<OsString, OsString>,
    timeout: Duration,
    confine: Option<&Confinement>,
) -> CanaryOutcome {
    let mut outcome = CanaryOutcome {
        status: CanaryStatus::NotRun,
        detail: String::new(),
        planted: Vec::new(),
        exit_code: None,
        duration_ms: 0,
        output: String::new(),
    };
    let mut created = Vec::new();
    match plan {
        Plan::None(status, why) => {
            outcome.status = *status;
            outcome.detail = why.clone();
            return outcome;
        }
        Plan::Command(command) => {
            let planting = Check {
                text: Spanned::new(format!("`{command}`"), check.text.line, check.text.col),
                kind: CheckKind::Machine {
                    command: command.clone(),
                    metric: None,
                },
            };
            let result = run_check(&planting, checkout, env, timeout, 64 * 1024, confine);
            if !result.passed {
                // Nothing shows the check can fail: it counts as one that cannot.
                outcome.status = CanaryStatus::Passed;
                outcome.detail = format!(
                    "the canary command `{command}` failed ({}), so the check was not shown to be able to fail",
                    result.failure.as_deref().unwrap_or("failed")
                );
                outcome.output = tail(&result.record.stderr, OUTPUT_BYTES);
                return outcome;
            }
        }
        Plan::Plant(files) => {
            for (path, content) in files {
                match write_new(checkout, path, content, &mut created) {
                    Ok(()) => outcome.planted.push(path.clone()),
                    Err(err) => {
                        remove(checkout, &outcome.planted, &created);
                        // The candidate's tree decides whether the path can be written (a
                        // directory there, a file where a directory must be): a canary it
                        // keeps out shows nothing.
                        outcome.status = CanaryStatus::Passed;
                        outcome.detail = format!(
                            "cannot add `{path}` ({err}), so the check was not shown to be able to fail"
                        );
                        return outcome;
                    }
                }
            }
        }
    }
    let result = run_check(check, checkout, env, timeout, 256 * 1024, confine);
    remove(checkout, &outcome.planted, &created);
    outcome.exit_code = result.record.exit_code;
    outcome.duration_ms = result.record.duration_ms;
    let output = format!("{}{}", result.record.stdout, result.record.stderr);
    outcome.output = tail(&output, OUTPUT_BYTES);
    let added = match plan {
        Plan::Command(command) => format!("after `{command}`"),
        _ => format!("with {} added", code_list(&outcome.planted)),
    };
    // Only a runner that ran to its end and reported failure shows the check can fail: a
    // check that hangs, is killed or cannot start once a canary is there shows nothing.
    let reported_failure = !result.record.timed_out
        && !cannot_run(&result)
        && result.record.exit_code.is_some_and(|code| code != 0);
    if result.passed {
        outcome.status = CanaryStatus::Passed;
        outcome.detail = format!("the check passed {added}: it cannot fail");
    } else if !reported_failure {
        outcome.status = CanaryStatus::Passed;
        outcome.detail = format!(
            "the check did not fail {added} but ended otherwise ({}): it was not shown to be able to fail",
            result.failure.as_deref().unwrap_or("no exit status")
        );
    } else {
        outcome.status = CanaryStatus::Failed;
        outcome.detail = format!(
            "the check failed {added} ({})",
            result.failure.as_deref().unwrap_or("failed")
        );
    }
    outcome
}

fn code_list(paths: &[String]) -> String {
    let quoted: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
    quoted.join(", ")
}

/// Writes `content` at `path` under `root`, creating missing parent directories (kept in
/// `created`, deepest last).
fn write_new(
    root: &Path,
    path: &str,
    content: &str,
    created: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    let target = root.join(path);
    let mut missing = Vec::new();
    let mut dir = target.parent();
    while let Some(d) = dir {
        if d == root || fs::symlink_metadata(d).is_ok() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.into_iter().rev() {
        fs::create_dir(&d)?;
        created.push(d);
    }
    // A symlink the checks left at the path must not be followed out of the checkout.
    if fs::symlink_metadata(&target).is_ok() {
        fs::remove_file(&target)?;
    }
    fs::write(&target, content)
}

fn remove(root: &Path, planted: &[String], created: &[std::path::PathBuf]) {
    for path in planted {
        let _ = fs::remove_file(root.join(path));
    }
    for dir in created.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{name_from_pattern, rust_test};
    use crate::runner::recognise;
    use crate::runner::tests::Mem;

    fn planted(command: &str, files: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let mem = Mem::new(files);
        match plan(&CanarySetting::Builtin, &recognise(command, &mem), &mem) {
            Plan::Plant(files) => Ok(files.into_iter().map(|(p, _)| p).collect()),
            Plan::None(_, why) => Err(why),
            Plan::Command(c) => Err(c),
        }
    }

    const PACKAGE: &str = "[package]\nname = \"core\"\n";

    #[test]
    fn cargo_canaries_go_into_the_tested_packages() {
        let ws = [
            ("Cargo.toml", "[workspace]\nmembers = [\"core\", \"cli\"]\n"),
            ("core/Cargo.toml", PACKAGE),
            ("core/tests/goalpost_canary.rs", ""),
            ("cli/Cargo.toml", "[package]\nname = \"cli\"\n"),
            ("target/debug/x/Cargo.toml", PACKAGE),
        ];
        assert_eq!(
            planted("cargo test -p core", &ws),
            Ok(vec!["core/tests/goalpost_canary_2.rs".to_owned()])
        );
        assert_eq!(
            planted("cargo test", &ws),
            Ok(vec![
                "cli/tests/goalpost_canary.rs".to_owned(),
                "core/tests/goalpost_canary_2.rs".to_owned()
            ])
        );
        let single = [("Cargo.toml", PACKAGE)];
        assert_eq!(
            planted("cargo nextest run", &single),
            Ok(vec!["tests/goalpost_canary.rs".to_owned()])
        );
        assert_eq!(
            planted("cargo test --lib", &single),
            Err("cargo test: `--lib` selects no new integration test".to_owned())
        );
        assert_eq!(
            planted("cargo test -- --exact a::b", &single),
            Err("cargo test: `--exact` selects tests a new one cannot match".to_owned())
        );
    }

    #[test]
    fn a_cargo_canary_matches_the_test_filter() {
        assert_eq!(
            rust_test(Some("parser::errors")).unwrap(),
            "// Added by goalpost's audit: the check must fail with this test.\n\
             mod r#parser { mod r#errors { #[test] fn goalpost_canary() { \
             panic!(\"goalpost canary: this test must fail\"); } } }\n"
        );
        assert!(rust_test(Some("a b")).is_err());
    }

    #[test]
    fn python_canaries_follow_discovery_and_configuration() {
        assert_eq!(
            planted("python3 -m unittest", &[]),
            Ok(vec!["test_goalpost_canary.py".to_owned()])
        );
        assert_eq!(
            planted("python -m unittest discover -s tests -p '*_check.py'", &[]),
            Ok(vec!["tests/goalpost_canary_check.py".to_owned()])
        );
        assert_eq!(
            planted("python -m unittest tests.test_a", &[]),
            Err("unittest: the command names its test modules".to_owned())
        );
        let ini = [(
            "pytest.ini",
            "[pytest]\ntestpaths =\n    tests\n    more\npython_files = check_*.py\n",
        )];
        assert_eq!(
            planted("pytest -q", &ini),
            Ok(vec!["tests/check_goalpost_canary.py".to_owned()])
        );
        let pyproject = [(
            "pyproject.toml",
            "[tool.pytest.ini_options]\ntestpaths = [\"t\"]\n",
        )];
        assert_eq!(
            planted("python -m pytest", &pyproject),
            Ok(vec!["t/test_goalpost_canary.py".to_owned()])
        );
        assert_eq!(
            planted("pytest tests/test_a.py", &[]),
            Err("pytest: the command names its test files".to_owned())
        );
        assert!(planted("pytest -k fast", &[]).is_err());
    }

    #[test]
    fn javascript_and_go_canaries() {
        assert_eq!(
            planted("node --test", &[]),
            Ok(vec!["goalpost-canary.test.mjs".to_owned()])
        );
        assert_eq!(
            planted("node --test 'test/**/*.spec.js'", &[]),
            Ok(vec!["test/goalpost-canary.spec.js".to_owned()])
        );
        let pkg = [("package.json", "{\"scripts\": {\"test\": \"jest\"}}")];
        assert_eq!(
            planted("npm test", &pkg),
            Ok(vec!["goalpost-canary.test.js".to_owned()])
        );
        let go = [("go.mod", "module x\n"), ("lib.go", "// x\npackage lib\n")];
        assert_eq!(
            planted("go test ./...", &go),
            Ok(vec!["goalpost_canary_test.go".to_owned()])
        );
        assert!(planted("go test ./...", &[]).is_err());
        assert_eq!(
            planted("./bench.sh", &[]),
            Err("the command starts no test runner the auditor knows".to_owned())
        );
    }

    #[test]
    fn a_makefile_recipe_gets_its_runners_canary() {
        let files = [("Makefile", "test:\n\tpython3 -m unittest\n")];
        assert_eq!(
            planted("make test", &files),
            Ok(vec!["test_goalpost_canary.py".to_owned()])
        );
    }

    fn shell_check(command: &str) -> Check {
        Check {
            text: Spanned::new(format!("`{command}` passes"), 4, 3),
            kind: CheckKind::Machine {
                command: command.to_owned(),
                metric: None,
            },
        }
    }

    /// Runs `command` as a check with a canary file `t/canary.txt` planted.
    fn canary_of(command: &str, timeout: Duration) -> (CanaryOutcome, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let env = goalpost_shared::process::env_allowlist(&["PATH"]);
        let plan = Plan::Plant(vec![("t/canary.txt".to_owned(), "x\n".to_owned())]);
        let outcome = run(
            &plan,
            &shell_check(command),
            dir.path(),
            &env,
            timeout,
            None,
        );
        (outcome, dir.keep())
    }

    #[test]
    fn a_check_that_fails_with_its_canary_is_sound_and_the_canary_is_removed() {
        let (outcome, dir) = canary_of("test ! -f t/canary.txt", Duration::from_secs(30));
        assert_eq!(outcome.status, CanaryStatus::Failed, "{outcome:?}");
        assert_eq!(outcome.planted, ["t/canary.txt"]);
        assert_eq!(outcome.exit_code, Some(1));
        assert!(
            !dir.join("t").exists(),
            "the canary and its directory are gone"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_check_that_passes_hangs_or_is_killed_with_its_canary_cannot_fail() {
        let (outcome, dir) = canary_of("cat t/canary.txt", Duration::from_secs(30));
        assert_eq!(outcome.status, CanaryStatus::Passed, "{outcome:?}");
        assert_eq!(
            outcome.detail,
            "the check passed with `t/canary.txt` added: it cannot fail"
        );
        fs::remove_dir_all(dir).unwrap();
        let (outcome, dir) = canary_of(
            "test -f t/canary.txt && sleep 30",
            Duration::from_millis(300),
        );
        assert_eq!(outcome.status, CanaryStatus::Passed, "{outcome:?}");
        assert!(outcome.detail.contains("timed out"), "{}", outcome.detail);
        fs::remove_dir_all(dir).unwrap();
        let (outcome, dir) = canary_of(
            "test -f t/canary.txt && kill -9 $$",
            Duration::from_secs(30),
        );
        assert_eq!(outcome.status, CanaryStatus::Passed, "{outcome:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_canary_the_tree_keeps_out_does_not_count_as_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("t"),
            "a file where the canary's directory goes",
        )
        .unwrap();
        let env = goalpost_shared::process::env_allowlist(&["PATH"]);
        let plan = Plan::Plant(vec![("t/canary.txt".to_owned(), "x\n".to_owned())]);
        let check = shell_check("false");
        let outcome = run(
            &plan,
            &check,
            dir.path(),
            &env,
            Duration::from_secs(30),
            None,
        );
        assert_eq!(outcome.status, CanaryStatus::Passed, "{outcome:?}");
        assert!(
            outcome.detail.starts_with("cannot add `t/canary.txt`"),
            "{}",
            outcome.detail
        );
        fs::remove_file(dir.path().join("t")).unwrap();
        fs::create_dir_all(dir.path().join("t/canary.txt")).unwrap();
        let outcome = run(
            &plan,
            &check,
            dir.path(),
            &env,
            Duration::from_secs(30),
            None,
        );
        assert_eq!(outcome.status, CanaryStatus::Passed, "{outcome:?}");
    }

    #[test]
    fn a_failing_canary_command_does_not_count_as_a_canary() {
        let dir = tempfile::tempdir().unwrap();
        let env = goalpost_shared::process::env_allowlist(&["PATH"]);
        let plan = Plan::Command("exit 4".to_owned());
        let outcome = run(
            &plan,
            &shell_check("false"),
            dir.path(),
            &env,
            Duration::from_secs(30),
            None,
        );
        assert_eq!(outcome.status, CanaryStatus::Passed, "{outcome:?}");
        assert!(
            outcome
                .detail
                .starts_with("the canary command `exit 4` failed (exit status 4)")
        );
        let plan = Plan::Command("touch planted".to_owned());
        let outcome = run(
            &plan,
            &shell_check("test ! -f planted"),
            dir.path(),
            &env,
            Duration::from_secs(30),
            None,
        );
        assert_eq!(outcome.status, CanaryStatus::Failed, "{outcome:?}");
        assert_eq!(
            outcome.detail,
            "the check failed after `touch planted` (exit status 1)"
        );
    }

    #[test]
    fn name_patterns() {
        assert_eq!(
            name_from_pattern("test*.py"),
            Some(("test_goalpost_canary".into(), ".py".into()))
        );
        assert_eq!(
            name_from_pattern("*_test.py"),
            Some(("goalpost_canary_test".into(), ".py".into()))
        );
        assert_eq!(name_from_pattern("test_?.py"), None);
    }
}
