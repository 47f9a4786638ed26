//! P4: a re-audit of an already verified tree against its first audit, side by side in
//! one run on a generated 20,000-file repository (2,000 with `--quick`). Each round
//! starts from an empty state store: the first audit adds a worktree and runs the check
//! (`find` over the checkout and `cat` of every file, the stand-in for a test suite);
//! its passing checks go into the store's verification cache exactly as the scheduler
//! records them; the second audit of the same candidate is offered what the store holds
//! for its tree, as the scheduler offers it.
//!
//! Prints `p4_first_s`, `p4_reaudit_s` (medians, seconds) and `p4_ratio`.

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
