//! How a round ends, in the words the stop report shows: every way the worker stops an
//! attempt short of a candidate says what stopped it (`reason`) and what input would let
//! it go on (`needs`), from the latest evidence.

use goalpost_shared::protocol::{AttemptOutcome, CheckResult, Role};
use goalpost_shared::setup::SetupRecord;

use crate::budget::Crossed;
use crate::progress::failing;
use crate::prompt::Review;

/// What the latest iterations showed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Evidence<'a> {
    /// The last verification run.
    pub checks: &'a [CheckResult],
    /// The reviewer's notes from the last `changes` verdict.
    pub reviewer_notes: Option<&'a str>,
    /// Empty implementer turns in a row, up to now.
    pub empty_turns: u32,
}

pub fn budget_limited(crossed: Crossed) -> AttemptOutcome {
    AttemptOutcome::BudgetLimited {
        budget: crossed.kind.name().to_owned(),
        limit: crossed.limit,
        used: crossed.used,
    }
}

/// The worker was told to stop (a signal).
pub fn stopped(why: &str, attempt_ref: &str) -> AttemptOutcome {
    AttemptOutcome::Stopped {
        reason: format!("stopped by {why}; the work so far is harvested on {attempt_ref}"),
    }
}

/// `streak` iterations in a row made no progress.
pub fn no_progress(streak: u32, evidence: &Evidence<'_>) -> AttemptOutcome {
    let (detail, needs) = stuck(evidence);
    AttemptOutcome::Blocked {
        reason: format!(
            "no progress in {streak} iteration{}: {detail}",
            plural(streak)
        ),
        needs,
    }
}

/// The round used all its iterations without a candidate.
pub fn out_of_iterations(max: u32, evidence: &Evidence<'_>) -> AttemptOutcome {
    let (detail, needs) = stuck(evidence);
    AttemptOutcome::Blocked {
        reason: format!(
            "no candidate after {max} iteration{} of this round: {detail}",
            plural(max)
        ),
        needs,
    }
}

/// The implementer changed nothing, `turns` times in a row.
pub fn no_change(turns: u32, last_error: Option<&str>) -> AttemptOutcome {
    AttemptOutcome::Blocked {
        reason: format!(
            "the implementer made no change in {turns} turns in a row{}",
            last_error
                .map(|e| format!(" (last turn: {e})"))
                .unwrap_or_default()
        ),
        needs: "an implementer that changes the worktree, or a clearer contract".to_owned(),
    }
}

/// An agent cannot be started at all.
pub fn unavailable(why: String, role: Role, agent: &str) -> AttemptOutcome {
    AttemptOutcome::Blocked {
        reason: why,
        needs: format!("a runnable {} agent (`{agent}`)", role.as_str()),
    }
}

/// A check's command could not run (the shell said 126 or 127): no turn can fix that.
pub fn check_cannot_run(check: &CheckResult) -> AttemptOutcome {
    AttemptOutcome::Blocked {
        reason: format!(
            "the check `{}` cannot run: {}",
            check.command,
            check.failure.as_deref().unwrap_or("exit status 126/127")
        ),
        needs: format!(
            "{}a runnable `{}`",
            missing_dependency(std::slice::from_ref(check))
                .map(|line| setup_hint(&line))
                .unwrap_or_default(),
            check.command
        ),
    }
}

/// The setup commands failed before the first turn: the attempt cannot start.
pub fn setup_failed(setup: &SetupRecord) -> AttemptOutcome {
    let failure = setup.failure.as_deref().unwrap_or("the setup failed");
    let tail = setup.output_tail(SETUP_TAIL_LINES);
    let output = if tail.is_empty() {
        " (no output)".to_owned()
    } else {
        format!("; its output ends:\n{tail}")
    };
    AttemptOutcome::Blocked {
        reason: format!("setup failed: {failure}{output}"),
        needs: "setup commands that succeed in a fresh checkout of the phase's base (the \
                goal file's `setup`, or the phase's `Setup:` line): run them by hand in a \
                clean clone to see why"
            .to_owned(),
    }
}

/// The setup left files in the worktree that git does not ignore: they would be
/// harvested into the attempt's commit as if the agent had written them.
pub fn setup_left_files(paths: &[String]) -> AttemptOutcome {
    let shown: Vec<String> = paths.iter().take(5).map(|p| format!("`{p}`")).collect();
    let more = paths.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    AttemptOutcome::Blocked {
        reason: format!(
            "setup failed: it left files git does not ignore: {}{more}",
            shown.join(", ")
        ),
        needs: "a `.gitignore` that ignores what the setup creates (`node_modules/`, \
                `.venv/`), or setup commands that write elsewhere"
            .to_owned(),
    }
}

/// Lines of a failed setup's output the stop report quotes.
const SETUP_TAIL_LINES: usize = 8;

/// Words in a failing check's output that say a dependency is not installed.
const MISSING_DEPENDENCY: &[&str] = &[
    "ModuleNotFoundError",
    "No module named",
    "Cannot find module",
    "Cannot find package",
    "ERR_MODULE_NOT_FOUND",
    "command not found",
    "no required module provides package",
    "can't find crate",
];

/// The first output line of a failing check that says a dependency is missing.
fn missing_dependency(checks: &[CheckResult]) -> Option<String> {
    checks.iter().filter(|c| !c.passed).find_map(|c| {
        c.record
            .stderr
            .lines()
            .chain(c.record.stdout.lines())
            .find(|line| MISSING_DEPENDENCY.iter().any(|w| line.contains(w)))
            .map(|line| line.trim().to_owned())
    })
}

/// What to say about a missing dependency, for a needs line.
fn setup_hint(line: &str) -> String {
    format!(
        "the checks fail for want of a dependency (`{line}`): install the project's \
         dependencies before the checks with `setup = [\"...\"]` in the goal file's front \
         matter (see the README's Real projects); or "
    )
}

/// The reviewer's verdict was `blocked`: its notes are the reason, its `NEEDS:` line
/// what would unblock the attempt.
pub fn reviewer_blocked(review: &Review) -> AttemptOutcome {
    let notes = review.notes.trim();
    AttemptOutcome::Blocked {
        reason: if notes.is_empty() {
            "the reviewer blocked the attempt".to_owned()
        } else {
            notes.to_owned()
        },
        needs: review
            .needs
            .clone()
            .unwrap_or_else(|| "input on the reviewer's blocker".to_owned()),
    }
}

/// The attempt's agents wrote more git objects into its quarantine than its cap allows.
pub fn objects_over_cap(bytes: u64, cap: u64) -> AttemptOutcome {
    const MIB: u64 = 1024 * 1024;
    AttemptOutcome::Blocked {
        reason: format!(
            "the attempt's git objects take {} MiB, over the cap of {} MiB (`objects_mb` in \
             the goal file's [budget]); they were removed and nothing of them is in the \
             repository",
            bytes.div_ceil(MIB),
            cap / MIB
        ),
        needs: "a larger `objects_mb` in [budget], or work that writes fewer objects".to_owned(),
    }
}

/// The worker itself failed after the round started: a harvest over its object cap, an
/// object that is not what its id says, or a failure of the worker's own.
pub fn round_failed(error: &goalpost_shared::git::GitError) -> AttemptOutcome {
    use goalpost_shared::git::GitError;
    match error {
        GitError::TooManyObjects { .. } => AttemptOutcome::Blocked {
            reason: format!("{error}; nothing of it was imported"),
            needs: "a larger `objects_mb` in [budget], or smaller files in the worktree".to_owned(),
        },
        GitError::ObjectMismatch { .. } => AttemptOutcome::Blocked {
            reason: format!("violation: {error}"),
            needs: "nothing: the attempt's objects cannot be trusted".to_owned(),
        },
        other => worker_failed(other),
    }
}

/// The worker itself failed after the round started.
pub fn worker_failed(error: &dyn std::fmt::Display) -> AttemptOutcome {
    AttemptOutcome::Blocked {
        reason: format!("goalpost-worker failed: {error}"),
        needs: "a look at the worker's failure; the work harvested so far is on the attempt ref"
            .to_owned(),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Where the attempt is stuck, and what input would help.
fn stuck(evidence: &Evidence<'_>) -> (String, String) {
    let failing_checks: Vec<String> = evidence
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("`{}`", c.command))
        .collect();
    if !failing_checks.is_empty() {
        let list = failing_checks.join(", ");
        let hint = missing_dependency(evidence.checks)
            .map(|line| setup_hint(&line))
            .unwrap_or_default();
        return (
            format!(
                "{} of {} checks still fail ({list})",
                failing(evidence.checks),
                evidence.checks.len()
            ),
            format!("{hint}help with the failing checks, or a revised contract: {list}"),
        );
    }
    if let Some(notes) = evidence.reviewer_notes {
        let first = notes.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return (
            "the checks pass but the reviewer still asks for changes".to_owned(),
            format!("a decision on the reviewer's notes: {}", first.trim()),
        );
    }
    let detail = if evidence.empty_turns > 0 {
        "the implementer's last turn changed nothing"
    } else {
        "no iteration beat the best result so far"
    };
    (
        detail.to_owned(),
        "a different approach or a revised contract".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use goalpost_shared::protocol::CommandRecord;
    use std::path::PathBuf;

    fn check(command: &str, passed: bool) -> CheckResult {
        CheckResult {
            check: format!("`{command}`"),
            line: 1,
            command: command.into(),
            record: CommandRecord {
                exit_code: Some(if passed { 0 } else { 127 }),
                ..CommandRecord::not_run(vec![], PathBuf::new())
            },
            metric: None,
            passed,
            failure: (!passed).then(|| "exit status 127".into()),
            integrity: None,
        }
    }

    fn blocked(outcome: AttemptOutcome) -> (String, String) {
        match outcome {
            AttemptOutcome::Blocked { reason, needs } => (reason, needs),
            other => panic!("not blocked: {other:?}"),
        }
    }

    #[test]
    fn failing_checks_are_named() {
        let checks = [
            check("cargo test", false),
            check("true", true),
            check("x", false),
        ];
        let evidence = Evidence {
            checks: &checks,
            ..Evidence::default()
        };
        let (reason, needs) = blocked(no_progress(3, &evidence));
        assert_eq!(
            reason,
            "no progress in 3 iterations: 2 of 3 checks still fail (`cargo test`, `x`)"
        );
        assert_eq!(
            needs,
            "help with the failing checks, or a revised contract: `cargo test`, `x`"
        );
        let (reason, _) = blocked(no_progress(1, &evidence));
        assert!(reason.starts_with("no progress in 1 iteration: "));
        let (reason, _) = blocked(out_of_iterations(1, &evidence));
        assert!(reason.starts_with("no candidate after 1 iteration of this round: 2 of 3"));
    }

    #[test]
    fn green_checks_point_at_the_reviewer_then_at_the_approach() {
        let checks = [check("true", true)];
        let evidence = Evidence {
            checks: &checks,
            reviewer_notes: Some("\nSplit the function.\nAnd more."),
            empty_turns: 0,
        };
        let (reason, needs) = blocked(no_progress(2, &evidence));
        assert!(reason.ends_with("the checks pass but the reviewer still asks for changes"));
        assert_eq!(
            needs,
            "a decision on the reviewer's notes: Split the function."
        );
        let evidence = Evidence {
            empty_turns: 1,
            ..Evidence::default()
        };
        let (reason, needs) = blocked(out_of_iterations(4, &evidence));
        assert!(reason.ends_with("the implementer's last turn changed nothing"));
        assert_eq!(needs, "a different approach or a revised contract");
    }

    #[test]
    fn unrunnable_checks_and_agents() {
        let (reason, needs) = blocked(check_cannot_run(&check("mytool", false)));
        assert_eq!(reason, "the check `mytool` cannot run: exit status 127");
        assert_eq!(needs, "a runnable `mytool`");
        let (_, needs) = blocked(unavailable("x".into(), Role::Reviewer, "rev"));
        assert_eq!(needs, "a runnable reviewer agent (`rev`)");
    }

    #[test]
    fn reviewer_blocked_uses_notes_and_needs() {
        let review =
            crate::prompt::parse_verdict("Needs a key.\nNEEDS: an API key\nVERDICT: blocked");
        assert_eq!(
            blocked(reviewer_blocked(&review)),
            ("Needs a key.".to_owned(), "an API key".to_owned())
        );
        let review = crate::prompt::parse_verdict("VERDICT: blocked");
        assert_eq!(
            blocked(reviewer_blocked(&review)),
            (
                "the reviewer blocked the attempt".to_owned(),
                "input on the reviewer's blocker".to_owned()
            )
        );
    }
}
