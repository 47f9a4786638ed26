//! P4: a re-audit of an already verified tree against its first audit, side by side in
//! one run on a generated 20,000-file repository (2,000 with `--quick`). Each round
//! starts from an empty state store: the first audit adds a worktree and runs the check
//! (`find` over the checkout and `cat` of every file, the stand-in for a test suite);
//! its passing checks go into the store's verification cache exactly as the scheduler
//! records them; the second audit of the same candidate is offered what the store holds
//! for its tree, as the scheduler offers it.
//!
//! Prints `p4_first_s`, `p4_reaudit_s` (medians, seconds) and `p4_ratio`.
//!
//! Then the same with a check the auditor knows the runner of (`python3 -m unittest`,
//! about a second of tests), so its canary and test census run: the first audit with
//! both switched off (`p4i_plain_s`), with both and the base's census run too
//! (`p4i_cold_s`), with the base's census from the store as in a run where the base was
//! audited before (`p4i_first_s`), and the re-audit (`p4i_reaudit_s`); `p4i_ratio` is
//! `p4i_first_s` against `p4i_plain_s`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use goalpost_shared::contract::{Boundaries, Check, CheckKind, Contract, Spanned};
use goalpost_shared::protocol::{AUDIT_REUSE_FILE, AuditReport, AuditReuse};
use goalpost_state::Store;

use common::{Scratch, binary, figure, median, quick, secs, time};

const CHECK: &str = "find . -name '*.txt' -type f -exec cat {} + | wc -c";

fn main() {
    let (files, rounds) = if quick() { (2_000, 2) } else { (20_000, 3) };
    let scratch = Scratch::new();
    let (base, candidate) = scratch.generate(files);
    let auditor = binary("goalpost-auditor");
    let contract = Contract {
        verification: vec![Check {
            text: Spanned::new(format!("`{CHECK}` passes"), 5, 3),
            kind: CheckKind::Machine {
                command: CHECK.to_owned(),
                metric: None,
            },
        }],
        boundaries: Boundaries {
            protected: vec![Spanned::new("src/d000/".to_owned(), 9, 1)],
            ..Boundaries::default()
        },
        ..Contract::default()
    };

    let (mut firsts, mut again) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let store = Store::open(&scratch.path(&format!("state-{round}.db"))).unwrap();
        let audit = |label: &str, reuse: Option<&AuditReuse>| -> AuditReport {
            let report_dir = scratch.path(&format!("reports/{label}"));
            fs::create_dir_all(&report_dir).unwrap();
            if let Some(reuse) = reuse {
                let json = serde_json::to_vec(reuse).unwrap();
                fs::write(report_dir.join(AUDIT_REUSE_FILE), json).unwrap();
            }
            let input = serde_json::json!({
                "run_id": "bench",
                "phase": "p",
                "repo": scratch.repo(),
                "worktree": scratch.path(&format!("wt/audit-{label}")),
                "base": base,
                "candidate": candidate,
                "contract": contract,
                "always_protected": ["goal.md"],
                "claims": [],
                "report_dir": report_dir,
                "check_timeout_secs": 600,
                "unconfined": true,
            });
            let input_path = report_dir.join("audit-input.json");
            fs::write(&input_path, serde_json::to_vec(&input).unwrap()).unwrap();
            run_auditor(&scratch, &auditor, &input_path, &report_dir)
        };

        let (t, report) = time(|| audit(&format!("first-{round}"), None));
        assert!(report.checks.iter().all(|c| c.passed), "{report:#?}");
        firsts.push(t);
        let dir = scratch.path(&format!("reports/first-{round}"));
        for note in &report.cache {
            let check = &report.checks[note.check];
            store
                .record_cached_check(&note.key, &report.tree, check, &dir.display().to_string())
                .unwrap();
        }

        let (t, report) = time(|| {
            let reuse = AuditReuse {
                cached_checks: store.cached_checks(&report.tree).unwrap(),
                pool: None,
            };
            audit(&format!("again-{round}"), Some(&reuse))
        });
        assert!(
            report.cache.iter().all(|n| n.reused_from.is_some()),
            "the re-audit reuses every check: {report:#?}"
        );
        again.push(t);
    }
    let (first, reaudit) = (median(&firsts), median(&again));
    println!(
        "P4: audit on a {files}-file repository, median of {rounds} rounds: first {} s, \
         re-audit of the verified tree {} s",
        secs(first),
        secs(reaudit)
    );
    figure("p4_first_s", secs(first));
    figure("p4_reaudit_s", secs(reaudit));
    figure(
        "p4_ratio",
        format!("{:.3}", reaudit.as_secs_f64() / first.as_secs_f64()),
    );
    with_a_known_runner(&auditor, rounds);
}

/// A test module of `n` tests of a few milliseconds each.
fn unittest_module(n: usize) -> String {
    let mut text = String::from("import unittest\n\n\nclass Work(unittest.TestCase):\n");
    for i in 0..n {
        text.push_str(&format!(
            "    def test_{i}(self):\n        self.assertGreater(sum(range(150000)), {i})\n\n"
        ));
    }
    text
}

fn with_a_known_runner(auditor: &Path, rounds: usize) {
    let command = "python3 -m unittest -q";
    let contract = |settings: &str| Contract {
        verification: vec![Check {
            text: Spanned::new(format!("`{command}` passes{settings}"), 5, 3),
            kind: CheckKind::Machine {
                command: command.to_owned(),
                metric: None,
            },
        }],
        ..Contract::default()
    };
    let (mut plain, mut cold, mut first, mut again) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let scratch = Scratch::new();
        let repo = scratch.repo();
        scratch.git(&repo, &["init", "-q", "-b", "main"]);
        fs::write(repo.join("test_work.py"), unittest_module(250)).unwrap();
        fs::write(repo.join(".gitignore"), "__pycache__/\n").unwrap();
        scratch.git(&repo, &["add", "-A"]);
        scratch.git(&repo, &["commit", "-q", "-m", "base"]);
        let base = scratch.git(&repo, &["rev-parse", "HEAD"]);
        fs::write(repo.join("work.py"), "def answer():\n    return 42\n").unwrap();
        scratch.git(&repo, &["add", "-A"]);
        scratch.git(&repo, &["commit", "-q", "-m", "candidate"]);
        let candidate = scratch.git(&repo, &["rev-parse", "HEAD"]);
        let store = Store::open(&scratch.path("state.db")).unwrap();
        let mut n = 0;
        let mut audit = |base: &str, candidate: &str, contract: &Contract, reuse: bool| {
            n += 1;
            let report_dir = scratch.path(&format!("reports/{n}"));
            fs::create_dir_all(&report_dir).unwrap();
            if reuse {
                // As the scheduler offers it: what the store holds for both trees.
                let mut cached = Vec::new();
                for rev in [candidate, base] {
                    let tree = scratch.git(&repo, &["rev-parse", &format!("{rev}^{{tree}}")]);
                    cached.extend(store.cached_checks(&tree).unwrap());
                }
                let reuse = AuditReuse {
                    cached_checks: cached,
                    pool: None,
                };
                fs::write(
                    report_dir.join(AUDIT_REUSE_FILE),
                    serde_json::to_vec(&reuse).unwrap(),
                )
                .unwrap();
            }
            let input = serde_json::json!({
                "run_id": "bench",
                "phase": "p",
                "repo": repo,
                "worktree": scratch.path(&format!("wt/audit-{n}")),
                "base": base,
                "candidate": candidate,
                "contract": contract,
                "always_protected": ["goal.md"],
                "claims": [],
                "report_dir": report_dir,
                "check_timeout_secs": 600,
                "unconfined": true,
            });
            let input_path = report_dir.join("audit-input.json");
            fs::write(&input_path, serde_json::to_vec(&input).unwrap()).unwrap();
            let (t, report) = time(|| run_auditor(&scratch, auditor, &input_path, &report_dir));
            assert!(report.checks.iter().all(|c| c.passed), "{report:#?}");
            for note in report.cache.iter().filter(|n| n.reused_from.is_none()) {
                let check = &report.checks[note.check];
                let dir = report_dir.display().to_string();
                store
                    .record_cached_check(&note.key, &report.tree, check, &dir)
                    .unwrap();
            }
            for run in &report.base_censuses {
                let tree = run.result.record.tree.as_deref().unwrap();
                store
                    .record_cached_check(&run.key, tree, &run.result, &run.source)
                    .unwrap();
            }
            (t, report)
        };
        let off = contract("; Canary: off; Census: off");
        let on = contract("");
        plain.push(audit(&base, &candidate, &off, false).0);
        // The base audited as a candidate of its own puts its census in the store.
        audit(&base, &base, &on, false);
        let (t, report) = audit(&base, &candidate, &on, true);
        assert!(report.cache.iter().all(|n| n.reused_from.is_none()));
        first.push(t);
        let (t, report) = audit(&base, &candidate, &on, true);
        assert!(
            report.cache.iter().all(|n| n.reused_from.is_some()),
            "the re-audit reuses every check and its canary: {report:#?}"
        );
        again.push(t);
        // Offered nothing: the base's census runs too.
        cold.push(audit(&base, &candidate, &on, false).0);
    }
    let (plain, cold, first, again) = (
        median(&plain),
        median(&cold),
        median(&first),
        median(&again),
    );
    println!(
        "P4 with `{command}`: without canary and census {} s, with both {} s ({} s with the \
         base's census run too), re-audit {} s",
        secs(plain),
        secs(first),
        secs(cold),
        secs(again)
    );
    figure("p4i_plain_s", secs(plain));
    figure("p4i_cold_s", secs(cold));
    figure("p4i_first_s", secs(first));
    figure("p4i_reaudit_s", secs(again));
    figure(
        "p4i_ratio",
        format!("{:.3}", first.as_secs_f64() / plain.as_secs_f64()),
    );
}

fn run_auditor(scratch: &Scratch, auditor: &Path, input: &Path, report_dir: &Path) -> AuditReport {
    let out = scratch
        .command(auditor, &scratch.repo())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .arg("--input")
        .arg(input)
        .output()
        .unwrap();
    common::check(&out, "goalpost-auditor");
    serde_json::from_slice(&fs::read(report_dir.join("audit.json")).unwrap()).unwrap()
}
