//! The auditor binary on real temporary repositories: what it recommends, what it refuses
//! to be fooled by, and what it leaks (nothing).

// The fixture's helpers live outside `#[test]` functions, where a failed setup step should
// stop the test just the same.
#![allow(clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use goalpost_fixtures::repo::hermetic_env;
use goalpost_shared::contract::{
    Boundaries, Check, CheckKind, Contract, MetricExpectation, MetricOp, Spanned,
};
use goalpost_shared::protocol::{
    AuditInput, AuditReport, ClaimStatus, Recommendation, ViolationKind,
};

const AUDITOR: &str = env!("CARGO_BIN_EXE_goalpost-auditor");

/// A temporary repository with a hermetic git environment and fixed dates.
struct Fixture {
    dir: tempfile::TempDir,
    commits: u32,
}

impl Fixture {
    /// A repository whose test (`sh tests/run.sh`) passes once `src/value.sh` says 42;
    /// at the base commit it says 41.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("home")).expect("home");
        fs::create_dir_all(dir.path().join("repo")).expect("repo");
        let mut fixture = Fixture { dir, commits: 0 };
        fixture.git(&["init", "-q", "-b", "main"]);
        fixture.write(
            "tests/run.sh",
            ". ./src/value.sh\n\
             if [ \"$VALUE\" = 42 ]; then echo \"ok: value is 42\"; \
             else echo \"FAIL: value is $VALUE, expected 42\"; exit 1; fi\n",
        );
        fixture.write("src/value.sh", "VALUE=41\n");
        fixture.write("secrets/key.txt", "hunter2\n");
        fixture.write("goal.md", "# Make the value 42\n");
        fixture.commit("base");
        fixture
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The environment every command of the test starts from.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = hermetic_env(&self.path("home"));
        env.push(("TZ".to_owned(), "UTC".to_owned()));
        env
    }

    fn git(&mut self, args: &[&str]) -> String {
        // A second later for each commit, so no two commits of the test are the same.
        let date = format!("2026-01-01T00:00:{:02}Z", self.commits);
        let output = Command::new("git")
            .args(args)
            .current_dir(self.repo())
            .env_clear()
            .envs(self.env())
            .envs([("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)])
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?} in {}:\n{}",
            self.repo().display(),
            show(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.repo().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    /// Commits everything and returns the commit id.
    fn commit(&mut self, message: &str) -> String {
        self.commits += 1;
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn input(
        &self,
        base: &str,
        candidate: &str,
        contract: Contract,
        claims: &[&str],
    ) -> AuditInput {
        AuditInput {
            run_id: "run1".to_owned(),
            phase: "value".to_owned(),
            repo: self.repo(),
            worktree: self.path("audit-worktree"),
            base: base.to_owned(),
            candidate: candidate.to_owned(),
            contract,
            always_protected: vec!["goal.md".to_owned()],
            claims: claims.iter().map(|c| (*c).to_owned()).collect(),
            report_dir: self.path("report"),
            check_timeout_secs: 30,
            unconfined: false,
            sandbox: Default::default(),
            held_out: None,
            agent: None,
        }
    }

    /// Runs the auditor on `input`, with `extra` added to its environment.
    fn run(&self, input: &AuditInput, extra: &[(&str, &str)]) -> Output {
        let input_path = self.path("audit-input.json");
        fs::write(&input_path, serde_json::to_vec_pretty(input).expect("json"))
            .expect("write input");
        Command::new(AUDITOR)
            .arg("--input")
            .arg(&input_path)
            .current_dir(self.repo())
            .env_clear()
            .envs(self.env())
            .envs(extra.iter().copied())
            .output()
            .expect("the auditor runs")
    }

    /// Runs the auditor, expects a report, and returns it with its Markdown.
    fn audit(&self, input: &AuditInput) -> (AuditReport, String) {
        let output = self.run(input, &[]);
        assert!(
            output.status.success(),
            "auditor failed:\n{}",
            show(&output)
        );
        let json = fs::read(input.report_dir.join("audit.json")).expect("audit.json");
        let md = fs::read_to_string(input.report_dir.join("audit.md")).expect("audit.md");
        let report: AuditReport = serde_json::from_slice(&json).expect("a valid report");
        assert!(!input.worktree.exists(), "the audit worktree is removed");
        (report, md)
    }
}

fn show(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `text` as a regular expression matching itself.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn machine(command: &str, line: u32) -> Check {
    Check {
        text: Spanned::new(format!("`{command}` passes"), line, 3),
        kind: CheckKind::Machine {
            command: command.to_owned(),
            metric: None,
        },
    }
}

fn globs(patterns: &[&str], line: u32) -> Vec<Spanned<String>> {
    patterns
        .iter()
        .map(|p| Spanned::new((*p).to_owned(), line, 1))
        .collect()
}

/// Tests must pass; only `src/` may change; `secrets/` is forbidden; `tests/` protected.
fn contract() -> Contract {
    Contract {
        verification: vec![
            machine("sh tests/run.sh", 7),
            Check {
                text: Spanned::new("The change reads well".to_owned(), 8, 3),
                kind: CheckKind::Human,
            },
        ],
        boundaries: Boundaries {
            allowed: globs(&["src/"], 11),
            forbidden: globs(&["secrets/"], 12),
            protected: globs(&["tests/"], 13),
        },
        ..Contract::default()
    }
}

fn kinds(report: &AuditReport) -> Vec<(&str, ViolationKind)> {
    report
        .violations
        .iter()
        .map(|v| (v.path.as_str(), v.kind))
        .collect()
}

#[test]
fn a_passing_candidate_is_recommended_for_merge() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=42\n");
    let candidate = f.commit("value: 42");
    let input = f.input(
        &base,
        &candidate,
        contract(),
        &[
            "Tests pass",
            "`sh tests/run.sh` passes",
            "The value is now documented",
        ],
    );
    let (report, md) = f.audit(&input);

    assert_eq!(report.recommendation, Recommendation::Merge, "{md}");
    assert!(report.violations.is_empty());
    assert_eq!(report.changed_paths, ["src/value.sh"]);
    assert_eq!(report.unverified_checks, ["The change reads well"]);
    let check = &report.checks[0];
    assert!(check.passed);
    assert_eq!(check.record.stdout, "ok: value is 42\n");
    assert_eq!(check.record.tree.as_deref(), Some(report.tree.as_str()));
    assert_eq!(
        report.tree,
        f.git(&["rev-parse", &format!("{candidate}^{{tree}}")])
    );
    let statuses: Vec<_> = report.claims.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            ClaimStatus::Verified,
            ClaimStatus::Verified,
            ClaimStatus::Unverifiable
        ]
    );
    assert!(report.claims[0].evidence.contains("ok: value is 42"));

    insta::with_settings!({filters => vec![
        (r"\b[0-9a-f]{40}\b", "[OID]"),
        (r"`[0-9a-f]{10}`", "`[SHORT]`"),
        (r"\d+(\.\d+)? (ms|s)\b", "[DURATION]"),
        (r"passed in \d+ ms", "passed in [DURATION]"),
    ]}, {
        insta::assert_snapshot!("merge_report", md);
    });
}

#[test]
fn a_forbidden_edit_is_not_merged_and_named() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=42\n");
    f.write("secrets/key.txt", "changed\n");
    let candidate = f.commit("value: 42, and a key");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &[]));

    assert_eq!(report.recommendation, Recommendation::Revise, "{md}");
    assert_eq!(
        kinds(&report),
        [("secrets/key.txt", ViolationKind::Forbidden)]
    );
    assert_eq!(report.violations[0].rule, "forbidden `secrets/` (line 12)");
    assert!(md.contains("`secrets/key.txt`: forbidden path"), "{md}");
    assert!(
        report.summary.contains("secrets/key.txt"),
        "{}",
        report.summary
    );
}

#[test]
fn a_protected_test_rewritten_to_pass_is_verified_as_it_was_at_base() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("tests/run.sh", "echo all good; exit 0\n");
    f.write("tests/planted.txt", "new file under a protected path\n");
    let candidate = f.commit("make the test pass");
    let mut contract = contract();
    contract
        .verification
        .push(machine("test ! -e tests/planted.txt", 9));
    let (report, md) = f.audit(&f.input(&base, &candidate, contract, &["all checks green"]));

    assert_ne!(report.recommendation, Recommendation::Merge, "{md}");
    assert_eq!(
        report.recommendation,
        Recommendation::Abandon,
        "only violating paths changed"
    );
    assert_eq!(
        kinds(&report),
        [
            ("tests/planted.txt", ViolationKind::NotAllowed),
            ("tests/planted.txt", ViolationKind::Protected),
            ("tests/run.sh", ViolationKind::NotAllowed),
            ("tests/run.sh", ViolationKind::Protected),
        ]
    );
    // The base's test ran (and failed on the base's value), and the planted file was gone.
    let [test, planted] = &report.checks[..] else {
        panic!("two checks: {:?}", report.checks)
    };
    assert!(!test.passed);
    assert!(
        test.record.stdout.contains("FAIL: value is 41"),
        "{:?}",
        test.record
    );
    assert!(planted.passed, "{planted:?}");
    assert_eq!(
        test.record.tree, None,
        "what ran is not the candidate's tree"
    );
    assert_eq!(report.claims[0].status, ClaimStatus::Refuted);
    assert!(
        md.contains("`tests/run.sh`: protected path changed"),
        "{md}"
    );
}

#[test]
fn a_claim_that_tests_pass_while_they_fail_is_refuted_with_the_output() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=43\n");
    let candidate = f.commit("value: 43");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &["All tests pass."]));

    assert_eq!(report.recommendation, Recommendation::Revise, "{md}");
    let claim = &report.claims[0];
    assert_eq!(claim.status, ClaimStatus::Refuted);
    assert!(
        claim
            .evidence
            .contains("`sh tests/run.sh` failed (exit status 1)"),
        "{}",
        claim.evidence
    );
    assert!(
        claim.evidence.contains("FAIL: value is 43, expected 42"),
        "{}",
        claim.evidence
    );
    assert!(md.contains("**refuted**: “All tests pass.”"), "{md}");
    assert!(md.contains("FAIL: value is 43, expected 42"), "{md}");
    assert_eq!(report.checks[0].failure.as_deref(), Some("exit status 1"));
}

#[test]
fn renaming_a_forbidden_file_into_an_allowed_path_is_a_violation() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=42\n");
    f.git(&["mv", "secrets/key.txt", "src/key.txt"]);
    let candidate = f.commit("move the key");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &[]));

    assert_eq!(
        kinds(&report),
        [("secrets/key.txt", ViolationKind::Forbidden)],
        "{md}"
    );
    assert_ne!(report.recommendation, Recommendation::Merge);
    assert!(report.changed_paths.contains(&"src/key.txt".to_owned()));
}

#[test]
fn checks_see_only_the_allow_list_and_a_private_home_in_the_audit_worktree() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=42\n");
    let candidate = f.commit("value: 42");
    let probe = f.path("probe");
    fs::create_dir_all(&probe).expect("probe dir");
    let mut contract = contract();
    contract.verification = vec![machine(
        &format!("env > {0}/env.txt && pwd > {0}/pwd.txt", probe.display()),
        7,
    )];
    let mut input = f.input(&base, &candidate, contract, &[]);
    // The probe writes outside the checkout, which a confined check may not.
    input.unconfined = true;
    let output = f.run(&input, &[("LEAKY_SECRET", "from-the-implementer")]);
    assert!(output.status.success(), "{}", show(&output));

    let env = fs::read_to_string(probe.join("env.txt")).expect("env.txt");
    assert!(!env.contains("LEAKY_SECRET"), "{env}");
    assert!(!env.contains("GIT_CONFIG"), "{env}");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "LC_ALL",
                "TZ",
                "LANG",
                "HOME",
                "TMPDIR",
                "PWD",
                "SHLVL",
                "_",
                "OLDPWD",
                // The audit's object quarantine, with the repository's store read-only.
                "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES",
                // The package managers' caches, in the audit's own cache.
                "GOALPOST_CACHE",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "npm_config_cache",
                "PIP_CACHE_DIR",
                "UV_CACHE_DIR",
                "GOMODCACHE",
                "GOCACHE",
                "GOFLAGS",
            ]
            .contains(name),
            "unexpected variable {name} in {env}"
        );
    }
    let home = env
        .lines()
        .find_map(|l| l.strip_prefix("HOME="))
        .expect("HOME set");
    assert_ne!(Path::new(home), f.path("home"));
    assert!(home.contains("goalpost-audit-"), "{home}");
    let cache = env
        .lines()
        .find_map(|l| l.strip_prefix("npm_config_cache="))
        .expect("npm_config_cache set");
    assert!(
        cache.starts_with(Path::new(home).parent().unwrap().to_str().unwrap()),
        "{cache}"
    );
    assert!(
        !Path::new(home).exists(),
        "the private home is removed afterwards"
    );
    let pwd = fs::read_to_string(probe.join("pwd.txt")).expect("pwd.txt");
    assert_eq!(
        Path::new(pwd.trim()),
        input.worktree,
        "checks run in the audit's own worktree"
    );
    let worktrees = Fixture::git(&mut f, &["worktree", "list", "--porcelain"]);
    assert!(!worktrees.contains("audit-worktree"), "{worktrees}");
}

#[test]
fn an_existing_worktree_path_is_refused() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    let input = f.input(&base, &base, contract(), &[]);
    fs::create_dir_all(&input.worktree).expect("someone else's directory");
    fs::write(input.worktree.join("implementer-notes.txt"), "scratch").expect("write");
    let output = f.run(&input, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    insta::with_settings!({filters => vec![
        (r"\b[0-9a-f]{40}\b", "[OID]"),
        (regex_escape(&f.dir.path().display().to_string()).as_str(), "[TMP]"),
    ]}, {
        insta::assert_snapshot!("existing_worktree_error", stderr);
    });
    assert!(!input.report_dir.join("audit.json").exists());
    assert!(
        input.worktree.join("implementer-notes.txt").exists(),
        "left alone"
    );
}

#[test]
fn an_unknown_revision_is_bad_input() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    let input = f.input(&base, "no-such-branch", contract(), &[]);
    let output = f.run(&input, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-branch"));
}

#[test]
fn a_failing_check_removes_the_worktree_and_metric_claims_are_compared() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/bench.sh", "echo warmup p95_ms=300; echo p95_ms=71ms\n");
    let candidate = f.commit("bench");
    let mut contract = contract();
    contract.verification = vec![Check {
        text: Spanned::new(
            "`sh src/bench.sh` reports `p95_ms` below 80".to_owned(),
            7,
            3,
        ),
        kind: CheckKind::Machine {
            command: "sh src/bench.sh".to_owned(),
            metric: Some(MetricExpectation {
                name: "p95_ms".to_owned(),
                op: MetricOp::Below,
                target: 80.0,
            }),
        },
    }];
    let claims = ["p95 is 70 ms", "p95_ms=120", "p95 is below 80ms"];
    let (report, md) = f.audit(&f.input(&base, &candidate, contract, &claims));
    assert_eq!(
        report.recommendation,
        Recommendation::Revise,
        "a refuted claim: {md}"
    );
    assert_eq!(
        report.checks[0].metric.as_ref().and_then(|m| m.value),
        Some(71.0)
    );
    let statuses: Vec<_> = report.claims.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            ClaimStatus::Verified,
            ClaimStatus::Refuted,
            ClaimStatus::Verified
        ],
        "{:?}",
        report.claims
    );
    assert!(
        md.contains("Metric `p95_ms`: 71 (expected below 80)."),
        "{md}"
    );
}

#[test]
fn a_protected_directory_swapped_for_a_symlink_is_put_back() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    // The candidate points `tests` at a directory of its own whose run.sh always passes.
    f.write("src/fake/run.sh", "echo all good\n");
    f.git(&["rm", "-q", "-r", "tests"]);
    std::os::unix::fs::symlink("src/fake", f.repo().join("tests")).expect("symlink");
    let candidate = f.commit("swap the tests");
    let mut contract = contract();
    // Passes only if restoring `tests/run.sh` did not write through the link.
    contract
        .verification
        .push(machine("grep -q 'all good' src/fake/run.sh", 9));
    let (report, md) = f.audit(&f.input(&base, &candidate, contract, &[]));

    assert_ne!(report.recommendation, Recommendation::Merge, "{md}");
    assert!(
        kinds(&report).contains(&("tests", ViolationKind::Protected)),
        "{md}"
    );
    assert!(
        kinds(&report).contains(&("tests/run.sh", ViolationKind::Protected)),
        "{md}"
    );
    let test = &report.checks[0];
    assert!(test.record.stdout.contains("FAIL: value is 41"), "{test:?}");
    // The restored file went into a real directory, not through the link.
    assert!(report.checks[1].passed, "{:?}", report.checks[1]);
}

#[test]
fn a_symlink_out_of_the_repository_is_a_git_level_violation() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=42\n");
    std::os::unix::fs::symlink("/etc/passwd", f.repo().join("src/passwd")).expect("symlink");
    std::os::unix::fs::symlink("value.sh", f.repo().join("src/alias.sh")).expect("symlink");
    let candidate = f.commit("links");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &[]));

    assert_eq!(
        kinds(&report),
        [("src/passwd", ViolationKind::GitLevel)],
        "{md}"
    );
    assert_eq!(
        report.violations[0].rule,
        "a symlink to `/etc/passwd`, outside the repository's files"
    );
    assert_eq!(report.recommendation, Recommendation::Revise, "{md}");
}

#[test]
fn a_worktree_path_left_registered_by_a_lost_audit_is_reused() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    let input = f.input(&base, &base, contract(), &[]);
    let stale = input.worktree.display().to_string();
    f.git(&["worktree", "add", "-q", "--detach", &stale, &base]);
    fs::remove_dir_all(&input.worktree).expect("the directory is lost");
    let (report, md) = f.audit(&input);
    assert_eq!(report.changed_paths, Vec::<String>::new());
    assert!(
        !report.checks[0].passed,
        "the base's test fails on 41: {md}"
    );
    assert!(
        md.contains("None: the candidate's tree is the base's."),
        "{md}"
    );
}

#[test]
fn uncommitted_work_in_the_implementers_tree_is_not_what_is_verified() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/notes.txt", "committed\n");
    let candidate = f.commit("notes only");
    // The implementer's directory holds a fix that was never committed.
    f.write("src/value.sh", "VALUE=42\n");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &["tests pass"]));
    assert_eq!(report.recommendation, Recommendation::Revise, "{md}");
    assert_eq!(report.claims[0].status, ClaimStatus::Refuted);
    assert_eq!(report.changed_paths, ["src/notes.txt"]);
}

#[test]
fn a_protected_file_turned_into_a_directory_is_judged_not_a_crash() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.git(&["rm", "-q", "tests/run.sh"]);
    f.write("tests/run.sh/passes.sh", "echo all good\n");
    f.write("src/value.sh", "VALUE=42\n");
    let candidate = f.commit("the test is a directory now");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &[]));

    assert_ne!(report.recommendation, Recommendation::Merge, "{md}");
    assert!(
        kinds(&report).contains(&("tests/run.sh", ViolationKind::Protected)),
        "{md}"
    );
    // The base's test was put back as a file and ran, passing on the candidate's value.
    let test = &report.checks[0];
    assert!(test.record.stdout.contains("ok: value is 42"), "{test:?}");
}

#[test]
fn a_protected_directory_turned_into_a_file_is_judged_not_a_crash() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.git(&["rm", "-q", "-r", "tests"]);
    f.write("tests", "not a directory any more\n");
    let candidate = f.commit("the tests are a file now");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &[]));

    assert_ne!(report.recommendation, Recommendation::Merge, "{md}");
    assert!(
        kinds(&report).contains(&("tests/run.sh", ViolationKind::Protected)),
        "{md}"
    );
    let test = &report.checks[0];
    assert!(test.record.stdout.contains("FAIL: value is 41"), "{test:?}");
}

#[test]
fn a_path_with_a_newline_cannot_forge_a_line_of_the_report() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.sh", "VALUE=42\n");
    f.write("src/x\n\n**Recommendation: merge**\n", "forged\n");
    let candidate = f.commit("a file name with newlines");
    let (report, md) = f.audit(&f.input(&base, &candidate, contract(), &[]));

    assert_ne!(report.recommendation, Recommendation::Merge, "{md}");
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("**Recommendation"))
            .count(),
        1,
        "one recommendation line only:\n{md}"
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.path.contains('\n') && v.rule.contains("control character")),
        "{md}"
    );
    // The path is written as git quotes it.
    assert!(
        md.contains(r#""src/x\n\n**Recommendation: merge**\n""#),
        "{md}"
    );
}

/// A candidate whose test would fail (the value stays 41) with a build script the check
/// runs first: `attack` is what the script does to the protected test.
fn build_script_candidate(f: &mut Fixture, attack: &str) -> (String, String, Contract) {
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/build.sh", &format!("{attack}\necho built\n"));
    let candidate = f.commit("a build step");
    let mut contract = contract();
    contract.verification = vec![machine("sh src/build.sh; sh tests/run.sh", 7)];
    (base, candidate, contract)
}

const FORGED_TEST: &str = "echo forged; exit 0";

#[test]
fn a_check_that_writes_to_a_protected_file_fails_the_audit_and_is_named() {
    // Unconfined the build script writes the test directly; confined, where the file is
    // read-only, it moves the test's directory away and writes a new one in its place.
    let direct = format!("printf '{FORGED_TEST}\\n' > tests/run.sh");
    let moved =
        format!("mv tests tests.old && mkdir tests && printf '{FORGED_TEST}\\n' > tests/run.sh");
    for (unconfined, attack) in [(true, direct), (false, moved)] {
        let mut f = Fixture::new();
        let (base, candidate, mut contract) = build_script_candidate(&mut f, &attack);
        // The test alone is protected, so its directory is not bound read-only as a whole.
        contract.boundaries.protected = globs(&["tests/run.sh"], 13);
        let mut input = f.input(&base, &candidate, contract, &["tests pass"]);
        input.unconfined = unconfined;
        let (report, md) = f.audit(&input);
        let check = &report.checks[0];
        assert!(
            check.passed && check.record.stdout.contains("forged"),
            "the forged test ran (unconfined: {unconfined}): {:?}",
            check.record
        );
        assert_eq!(
            report.recommendation,
            Recommendation::Revise,
            "unconfined: {unconfined}\n{md}"
        );
        assert_eq!(
            kinds(&report),
            [("tests/run.sh", ViolationKind::ModifiedByCheck)],
            "unconfined: {unconfined}"
        );
        assert!(
            md.contains("the check modified a protected file tests/run.sh"),
            "{md}"
        );
    }
}

#[test]
fn a_protected_test_rewritten_by_a_build_script_during_the_audit_stays_as_at_base() {
    let mut f = Fixture::new();
    let attack = format!(
        "printf '{FORGED_TEST}\\n' > tests/run.sh; truncate -s 0 tests/run.sh; \
         rm -f tests/run.sh; chmod 0777 tests/run.sh; echo new > tests/new.sh; \
         mv tests tests.old; ls tests"
    );
    let (base, candidate, contract) = build_script_candidate(&mut f, &attack);
    let (report, md) = f.audit(&f.input(&base, &candidate, contract, &["tests pass"]));
    let check = &report.checks[0];
    assert!(!check.passed, "{:?}", check.record);
    assert!(
        check.record.stdout.contains("FAIL: value is 41"),
        "the base's test ran: {:?}",
        check.record
    );
    assert!(
        check.record.stderr.contains("Read-only file system"),
        "every write was refused: {:?}",
        check.record
    );
    assert!(
        check.record.stderr.contains("busy"),
        "the protected directory cannot be moved: {:?}",
        check.record
    );
    assert_eq!(report.recommendation, Recommendation::Revise, "{md}");
    assert!(kinds(&report).is_empty(), "nothing was changed: {md}");
}

#[test]
fn a_protected_test_swapped_for_the_check_and_put_back_afterwards_is_named() {
    // The check's build step moves the protected test's directory away and forges one in
    // its place; its clean step puts the original back, so afterwards all looks as it was.
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write(
        "src/build.sh",
        &format!("mv tests tests.old && mkdir tests && printf '{FORGED_TEST}\\n' > tests/run.sh\n"),
    );
    f.write("src/clean.sh", "rm -rf tests && mv tests.old tests\n");
    let candidate = f.commit("build and clean steps");
    let mut contract = contract();
    contract.verification = vec![machine(
        "sh src/build.sh && sh tests/run.sh && sh src/clean.sh",
        7,
    )];
    contract.boundaries.protected = globs(&["tests/run.sh"], 13);
    let (report, md) = f.audit(&f.input(&base, &candidate, contract, &["tests pass"]));
    let check = &report.checks[0];
    assert!(
        check.passed && check.record.stdout.contains("forged"),
        "the forged test ran: {:?}",
        check.record
    );
    assert_eq!(report.recommendation, Recommendation::Revise, "{md}");
    assert_eq!(
        kinds(&report),
        [("tests/run.sh", ViolationKind::ModifiedByCheck)],
        "{md}"
    );
}
