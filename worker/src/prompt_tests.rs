use std::collections::BTreeMap;
use std::path::PathBuf;

use goalpost_shared::contract::{
    Boundaries, Check, CheckKind, Contract, MetricExpectation, MetricOp, Section, Spanned,
    StopCondition,
};
use goalpost_shared::plan::{Adapter, Budget};
use goalpost_shared::protocol::{
    AgentSpec, CheckResult, CommandRecord, Feedback, Verdict, WorkerInput,
};

use super::*;

fn s<T>(v: T) -> Spanned<T> {
    Spanned::new(v, 1, 1)
}

fn agent(name: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        adapter: Adapter::Command,
        command: vec!["sh".into()],
        args: vec![],
        model: None,
        env: BTreeMap::new(),
        price: None,
    }
}

fn input() -> WorkerInput {
    WorkerInput {
        run_id: "r1".into(),
        phase: "api".into(),
        phase_title: "Add the API".into(),
        attempt: 2,
        plan_title: "Goal: faster search".into(),
        repo: PathBuf::from("/repo/.git"),
        worktree: PathBuf::from("/wt"),
        base: "0".repeat(40),
        attempt_ref: "refs/goalpost/r1/api/2".into(),
        resume_from: None,
        first_iteration: 1,
        contract: Contract {
            outcome: Some(s("Search answers in under 80 ms.".into())),
            verification: vec![
                Check {
                    text: s("`cargo test` passes".into()),
                    kind: CheckKind::Machine {
                        command: "cargo test".into(),
                        metric: None,
                    },
                },
                Check {
                    text: s("`./bench.sh` reports `p95_ms` below 80".into()),
                    kind: CheckKind::Machine {
                        command: "./bench.sh".into(),
                        metric: Some(MetricExpectation {
                            name: "p95_ms".into(),
                            op: MetricOp::Below,
                            target: 80.0,
                        }),
                    },
                },
                Check {
                    text: s("The code reads well".into()),
                    kind: CheckKind::Human,
                },
            ],
            constraints: vec![s("No new dependencies.".into())],
            boundaries: Boundaries {
                allowed: vec![s("src/".into())],
                forbidden: vec![s("vendor/".into())],
                protected: vec![s("tests/fixtures/".into())],
            },
            iteration_policy: Some(s("Small steps.".into())),
            blocked: Some(StopCondition {
                text: s("3 consecutive iterations with no improvement.".into()),
                no_progress_limit: Some(3),
            }),
            context: vec![Section {
                heading: s("Background".into()),
                body: "The index lives in `idx/`.".into(),
            }],
            setup: Default::default(),
            held_out: vec![],
        },
        held_out_checks: 0,
        implementer: agent("impl"),
        reviewer: None,
        budget: Budget::default(),
        no_progress_limit: 3,
        max_iterations: 5,
        feedback: None,
        private_dir: PathBuf::from("/private"),
        env_allow: vec![],
        agent_env: BTreeMap::new(),
        unconfined: false,
        sandbox: Default::default(),
    }
}

fn failing_check(command: &str, stdout: &str) -> CheckResult {
    CheckResult {
        check: format!("`{command}`"),
        line: 7,
        command: command.into(),
        record: CommandRecord {
            exit_code: Some(1),
            duration_ms: 5,
            stdout: stdout.into(),
            stderr: "boom\n".into(),
            ..CommandRecord::not_run(
                vec!["/bin/sh".into(), "-c".into(), command.into()],
                PathBuf::from("/wt"),
            )
        },
        metric: None,
        passed: false,
        failure: Some("exit status 1".into()),
        integrity: None,
    }
}

#[test]
fn implementer_prompt_carries_the_whole_contract() {
    let p = implementer(&input(), &ImplementerTurn::default());
    for needle in [
        "# Goal: faster search",
        "Phase `api`: Add the API (attempt 2",
        "Search answers in under 80 ms.",
        "- `cargo test` must exit 0",
        "- `./bench.sh` must exit 0 and report `p95_ms` below 80",
        "The code reads well (checked by a person)",
        "No new dependencies.",
        "Allowed paths (change nothing else): `src/`",
        "Forbidden paths: `vendor/`",
        "Protected paths (must not change at all): `tests/fixtures/`",
        "Small steps.",
        "3 consecutive iterations with no improvement.",
        "### Background",
        "The index lives in `idx/`.",
        "Work only in the current directory.",
        "Do not commit",
        "`Claims:`",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
    assert!(!p.contains("## Last verification"));
    assert!(!p.contains("## Reviewer notes"));
}

#[test]
fn implementer_prompt_carries_evidence_notes_and_feedback() {
    let mut input = input();
    input.feedback = Some(Feedback::Audit {
        report_markdown: "# Audit\nrecommendation: revise\n".into(),
    });
    let long = format!("{}\nlast line of output\n", "x".repeat(5_000));
    let checks = [failing_check("cargo test", &long)];
    let p = implementer(
        &input,
        &ImplementerTurn {
            iteration: 3,
            last_checks: &checks,
            reviewer_notes: Some("Rename `foo` to `bar`."),
            last_turn_note: Some("Your last turn changed no file."),
        },
    );
    assert!(p.contains("iteration 3, implementer"));
    assert!(p.contains("0 of 1 machine checks pass."));
    assert!(p.contains("- FAIL `cargo test`: exit status 1"));
    assert!(p.contains("last line of output"));
    assert!(p.contains("boom"));
    assert!(p.len() < 5_000 + 3_000, "the output tail is capped");
    assert!(p.contains("## Reviewer notes"));
    assert!(p.contains("Rename `foo` to `bar`."));
    assert!(p.contains("recommendation: revise"));
    assert!(p.contains("Your last turn changed no file."));
}

#[test]
fn the_implementer_is_told_that_held_out_checks_exist_and_nothing_of_them() {
    let plain = implementer(&input(), &ImplementerTurn::default());
    assert!(!plain.contains("held-out"), "{plain}");
    let mut held = input();
    held.held_out_checks = 2;
    let prompt = implementer(&held, &ImplementerTurn::default());
    assert!(
        prompt.contains("### Held-out checks")
            && prompt.contains("also runs 2 held-out checks that you cannot see"),
        "{prompt}"
    );
}

#[test]
fn conflict_feedback_names_the_paths() {
    let mut input = input();
    input.feedback = Some(Feedback::Conflict {
        paths: vec!["src/a.rs".into(), "src/b.rs".into()],
        previous_candidate: "1".repeat(40),
    });
    let p = implementer(&input, &ImplementerTurn::default());
    assert!(p.contains(
        "worktree holds the merge of the new base and your previous candidate; resolve the conflict markers in:"
    ));
    assert!(p.contains("- src/a.rs\n- src/b.rs\n"));
}

#[test]
fn reviewer_prompt_has_diff_checks_claims_and_verdict_rules() {
    let checks = [failing_check("cargo test", "1 failed\n")];
    let claims = vec!["tests pass".to_owned()];
    let p = reviewer(
        &input(),
        &ReviewerTurn {
            iteration: 1,
            diff: "+fn added() {}\n",
            diff_truncated: true,
            checks: &checks,
            claims: &claims,
        },
    );
    assert!(p.contains("```diff\n+fn added() {}\n```"));
    assert!(p.contains("the diff was cut"));
    assert!(p.contains("- FAIL `cargo test`"));
    assert!(p.contains("- tests pass"));
    assert!(p.contains("`VERDICT: approve`"));
    assert!(p.contains("`NEEDS: ...`"));
    assert!(p.contains("Search answers in under 80 ms."));
}

#[test]
fn claims_are_the_items_under_the_last_claims_line() {
    let msg = "I did things.\nClaims:\n- old claim\n\nMore work.\n\n**Claims:**\n\
               - file written\n* tests pass\n  on Linux\n\n1. p95 is 70 ms\n2) nothing else\n\
               USAGE: tokens_in=1\n- not a claim\n";
    assert_eq!(
        parse_claims(msg),
        vec![
            "file written",
            "tests pass on Linux",
            "p95 is 70 ms",
            "nothing else"
        ]
    );
}

#[test]
fn no_claims_line_means_no_claims() {
    assert!(parse_claims("- a\n- b\n").is_empty());
    assert!(parse_claims("Claims:\n").is_empty());
    assert_eq!(parse_claims("## Claims\n- x"), vec!["x"]);
    assert_eq!(parse_claims("claims:\n+ y"), vec!["y"]);
}

#[test]
fn verdict_lines_are_read_and_removed_from_the_notes() {
    let r = parse_verdict("Looks good.\nVERDICT: approve\n");
    assert_eq!(r.verdict, Verdict::Approve);
    assert_eq!(r.notes, "Looks good.");
    assert!(!r.missing_verdict);

    let r = parse_verdict("Rename foo.\nAdd a test.\n**Verdict:** changes\n");
    assert_eq!(r.verdict, Verdict::Changes);
    assert_eq!(r.notes, "Rename foo.\nAdd a test.");

    let r = parse_verdict(
        "The API key is missing.\nNEEDS: an API key for the service\nVERDICT: blocked",
    );
    assert_eq!(r.verdict, Verdict::Blocked);
    assert_eq!(r.notes, "The API key is missing.");
    assert_eq!(r.needs.as_deref(), Some("an API key for the service"));

    // The last verdict line wins.
    let r = parse_verdict("VERDICT: changes\nfixed now\nverdict: APPROVE.");
    assert_eq!(r.verdict, Verdict::Approve);
}

#[test]
fn a_missing_verdict_counts_as_changes_with_a_note() {
    let r = parse_verdict("I am not sure.\nVERDICT: maybe\n");
    assert_eq!(r.verdict, Verdict::Changes);
    assert!(r.missing_verdict);
    assert!(r.notes.starts_with("I am not sure.\nVERDICT: maybe"));
    assert!(r.notes.contains("no `VERDICT:` line"));
    let r = parse_verdict("");
    assert_eq!(r.verdict, Verdict::Changes);
    assert!(r.notes.contains("no `VERDICT:` line"));
}

#[test]
fn tail_cuts_at_a_character_boundary() {
    assert_eq!(tail("héllo", 4), "llo");
    assert_eq!(tail("abc", 10), "abc");
}
