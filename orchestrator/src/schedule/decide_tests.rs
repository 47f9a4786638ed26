//! The run loop's decisions on hand-built states: no process, no repository.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use goalpost_shared::contract::Spanned;
use goalpost_shared::git::Oid;

use super::*;

fn oid(n: u8) -> Oid {
    Oid::from_bytes(&[n; 20]).unwrap()
}

/// Attempt `n` of phase `phase`, in `state`.
fn attempt(phase: usize, n: u32, state: AttemptState) -> Attempt {
    Attempt {
        phase,
        n,
        agent: format!("agent{n}"),
        worktree: PathBuf::from(format!("/wt/{phase}/{n}")),
        dir: PathBuf::from(format!("/state/{phase}/{n}")),
        ref_name: format!("refs/goalpost/r/{phase}/{n}"),
        base: oid(1),
        head: None,
        rounds: 1,
        next_iteration: 2,
        usage: Usage::default(),
        claims: Vec::new(),
        metric: None,
        diff_size: 10,
        audited: None,
        audit_summary: String::new(),
        evidence: Vec::new(),
        sent_back: Vec::new(),
        state,
    }
}

fn failed(why: &str, budget: bool) -> AttemptState {
    AttemptState::Failed {
        why: why.into(),
        budget,
    }
}

fn policy(select: &Selection) -> Policy<'_> {
    Policy {
        select,
        lower_is_better: true,
        has_reviewer: true,
    }
}

fn busy(agents: usize, audits: usize) -> Busy {
    Busy { agents, audits }
}

// --- admission ---------------------------------------------------------------------

#[test]
fn a_job_starts_while_a_slot_of_its_kind_is_free() {
    let start = |is_audit, b| admit(is_audit, !is_audit, false, None, b, 2, Pause::None);
    assert_eq!(start(false, busy(1, 0)), Admit::Start);
    assert_eq!(start(false, busy(2, 0)), Admit::Wait);
    assert_eq!(start(true, busy(0, 1)), Admit::Start);
    assert_eq!(start(true, busy(0, 2)), Admit::Wait);
}

#[test]
fn audits_have_slots_of_their_own_beside_the_agents() {
    assert_eq!(
        admit(true, false, false, None, busy(2, 0), 2, Pause::None),
        Admit::Start
    );
    assert_eq!(
        admit(false, true, false, None, busy(0, 2), 2, Pause::None),
        Admit::Start
    );
}

#[test]
fn nothing_starts_once_a_pause_is_asked_for_at_a_boundary_or_now() {
    for pause in [Pause::AtBoundary, Pause::Now] {
        for is_audit in [false, true] {
            assert_eq!(
                admit(is_audit, !is_audit, false, None, busy(0, 0), 4, pause),
                Admit::Wait
            );
        }
    }
}

#[test]
fn a_queued_job_of_an_attempt_that_lost_never_starts() {
    assert_eq!(
        admit(false, true, true, None, busy(0, 0), 4, Pause::None),
        Admit::Drop
    );
    assert_eq!(
        admit(true, false, true, None, busy(0, 0), 4, Pause::None),
        Admit::Drop
    );
}

#[test]
fn a_worker_round_after_the_run_budget_is_spent_interrupts_but_audits_still_run() {
    let spent = Some("the run budget is spent: turns: used 9 of 8");
    assert_eq!(
        admit(false, true, false, spent, busy(0, 0), 4, Pause::None),
        Admit::Interrupt("the run budget is spent: turns: used 9 of 8".into())
    );
    assert_eq!(
        admit(true, false, false, spent, busy(0, 0), 4, Pause::None),
        Admit::Start
    );
    // A selection turn is an agent but not a worker round: it still chooses.
    assert_eq!(
        admit(false, false, false, spent, busy(0, 0), 4, Pause::None),
        Admit::Start
    );
}

#[test]
fn the_run_budget_counts_every_attempts_usage_and_iterations() {
    let budget = Budget {
        tokens: Some(Spanned::new(1000, 1, 1)),
        iterations: Some(Spanned::new(5, 1, 1)),
        ..Budget::default()
    };
    let mut a = attempt(0, 1, AttemptState::Working);
    a.usage.tokens_in = 600;
    let mut b = attempt(1, 1, AttemptState::Working);
    b.usage.tokens_out = 300;
    assert_eq!(run_budget_spent(&budget, &[a.clone(), b.clone()]), None);
    b.usage.tokens_out = 400;
    assert_eq!(
        run_budget_spent(&budget, &[a.clone(), b.clone()]).unwrap(),
        "the run budget is spent: tokens: used 1000 of 1000"
    );
    b.usage.tokens_out = 0;
    a.next_iteration = 4;
    b.next_iteration = 3;
    assert_eq!(
        run_budget_spent(&budget, &[a, b]).unwrap(),
        "the run budget is spent: iterations: used 5 of 5"
    );
}

// --- a round's outcome, an audit, a conflict -----------------------------------------

#[test]
fn each_round_outcome_is_recorded_and_routed() {
    let candidate = AttemptOutcome::Candidate {
        commit: oid(2).to_string(),
        claims: vec![],
    };
    assert_eq!(
        after_round(&candidate),
        (
            AttemptStatus::Auditing,
            "candidate".into(),
            AfterRound::Audit
        )
    );
    let blocked = AttemptOutcome::Blocked {
        reason: "the tests cannot run".into(),
        needs: "a database".into(),
    };
    assert_eq!(
        after_round(&blocked),
        (
            AttemptStatus::Blocked,
            "blocked: the tests cannot run; needs: a database".into(),
            AfterRound::Fail { budget: false }
        )
    );
    let budget = AttemptOutcome::BudgetLimited {
        budget: "turns".into(),
        limit: "4".into(),
        used: "4".into(),
    };
    assert_eq!(
        after_round(&budget),
        (
            AttemptStatus::BudgetLimited,
            "budget turns reached: used 4 of 4".into(),
            AfterRound::Fail { budget: true }
        )
    );
    let stopped = AttemptOutcome::Stopped {
        reason: "stopped by SIGTERM".into(),
    };
    assert_eq!(
        after_round(&stopped),
        (
            AttemptStatus::Interrupted,
            "stopped by SIGTERM".into(),
            AfterRound::Interrupt
        )
    );
}

#[test]
fn an_audit_that_says_merge_passes_the_attempt() {
    assert_eq!(
        after_candidate_audit(Recommendation::Merge, MAX_ROUNDS, "ok"),
        Route::Pass
    );
}

#[test]
fn revise_sends_the_attempt_back_until_its_rounds_are_used() {
    assert_eq!(
        after_candidate_audit(Recommendation::Revise, 1, "x"),
        Route::Again
    );
    assert_eq!(
        after_candidate_audit(Recommendation::Revise, MAX_ROUNDS - 1, "x"),
        Route::Again
    );
    assert_eq!(
        after_candidate_audit(Recommendation::Revise, MAX_ROUNDS, "calc.sh is forbidden"),
        Route::Fail(format!(
            "the audit still asks for revisions after {MAX_ROUNDS} rounds: calc.sh is forbidden"
        ))
    );
}

#[test]
fn abandon_stops_the_attempt_at_once() {
    assert_eq!(
        after_candidate_audit(Recommendation::Abandon, 1, "it deleted the tests"),
        Route::Fail("the audit says abandon: it deleted the tests".into())
    );
}

#[test]
fn a_conflict_sends_the_attempt_to_the_new_tip_until_its_rounds_are_used() {
    let paths = vec!["a.rs".to_owned(), "b.rs".to_owned()];
    assert_eq!(after_conflict(1, "0123456789", &paths), Route::Again);
    assert_eq!(
        after_conflict(MAX_ROUNDS, "0123456789", &paths),
        Route::Fail("conflicts with the integration tip 0123456789 in: a.rs, b.rs".into())
    );
}

// --- selection ---------------------------------------------------------------------

#[test]
fn first_takes_the_first_that_passed_while_others_still_work() {
    let attempts = [
        attempt(0, 1, AttemptState::Working),
        attempt(0, 2, AttemptState::Passed),
        attempt(0, 3, AttemptState::Passed),
        attempt(1, 1, AttemptState::Passed),
    ];
    assert_eq!(
        choose(
            policy(&Selection::First),
            PhaseState::Running,
            0,
            &attempts,
            false
        ),
        Choice::Gate {
            winner: 1,
            because: None
        }
    );
}

#[test]
fn a_phase_waits_while_none_passed_and_blocks_once_all_failed() {
    let mut attempts = vec![
        attempt(0, 1, failed("blocked", false)),
        attempt(0, 2, AttemptState::Auditing),
    ];
    let first = policy(&Selection::First);
    assert_eq!(
        choose(first, PhaseState::Running, 0, &attempts, false),
        Choice::Wait
    );
    attempts[1].state = failed("abandon", false);
    assert_eq!(
        choose(first, PhaseState::Running, 0, &attempts, false),
        Choice::Block
    );
}

#[test]
fn best_waits_until_every_attempt_settled() {
    let best = Selection::Best {
        metric: "ms".into(),
    };
    let mut attempts = vec![
        attempt(0, 1, AttemptState::Passed),
        attempt(0, 2, AttemptState::Working),
    ];
    assert_eq!(
        choose(policy(&best), PhaseState::Running, 0, &attempts, false),
        Choice::Wait
    );
    attempts[1].state = failed("blocked", false);
    assert_eq!(
        choose(policy(&best), PhaseState::Running, 0, &attempts, false),
        Choice::Gate {
            winner: 0,
            because: None
        }
    );
}

#[test]
fn best_takes_the_best_metric_in_its_direction() {
    let best = Selection::Best {
        metric: "ms".into(),
    };
    let mut attempts = vec![
        attempt(0, 1, AttemptState::Passed),
        attempt(0, 2, AttemptState::Passed),
        attempt(0, 3, AttemptState::Passed),
    ];
    attempts[0].metric = Some(120.0);
    attempts[1].metric = Some(80.0);
    // The third has no figure: it comes after every attempt that has one.
    let lower = Policy {
        lower_is_better: true,
        ..policy(&best)
    };
    let higher = Policy {
        lower_is_better: false,
        ..policy(&best)
    };
    let winner = |p| match choose(p, PhaseState::Running, 0, &attempts, false) {
        Choice::Gate { winner, .. } => winner,
        other => panic!("{other:?}"),
    };
    assert_eq!(winner(lower), 1);
    assert_eq!(winner(higher), 0);
}

#[test]
fn best_breaks_a_tie_by_the_smaller_diff_then_the_lower_cost_then_the_number() {
    let mut attempts = vec![
        attempt(0, 1, AttemptState::Passed),
        attempt(0, 2, AttemptState::Passed),
        attempt(0, 3, AttemptState::Passed),
    ];
    for a in &mut attempts {
        a.metric = Some(5.0);
    }
    attempts[0].diff_size = 30;
    attempts[1].usage.cost_usd = 0.5;
    attempts[2].usage.cost_usd = 0.2;
    assert_eq!(best_of(&attempts, &[0, 1, 2], true), Some(2));
    attempts[2].usage.cost_usd = 0.5;
    assert_eq!(best_of(&attempts, &[0, 1, 2], true), Some(1));
    assert_eq!(best_of(&attempts, &[], true), None);
}

#[test]
fn review_asks_the_reviewer_once_several_passed_and_all_settled() {
    let attempts = [
        attempt(0, 1, AttemptState::Passed),
        attempt(0, 2, failed("blocked", false)),
        attempt(0, 3, AttemptState::Passed),
    ];
    let review = policy(&Selection::Review);
    assert_eq!(
        choose(review, PhaseState::Running, 0, &attempts, false),
        Choice::AskReviewer(vec![0, 2])
    );
    // While the reviewer chooses, nothing else is decided.
    assert_eq!(
        choose(review, PhaseState::Running, 0, &attempts, true),
        Choice::Wait
    );
}

#[test]
fn review_without_a_reviewer_or_with_one_candidate_says_why_its_winner_won() {
    let two = [
        attempt(0, 1, AttemptState::Passed),
        attempt(0, 2, AttemptState::Passed),
    ];
    let no_reviewer = Policy {
        has_reviewer: false,
        ..policy(&Selection::Review)
    };
    assert_eq!(
        choose(no_reviewer, PhaseState::Running, 0, &two, false),
        Choice::Gate {
            winner: 0,
            because: Some("no reviewer agent to choose: the first attempt that passed".into())
        }
    );
    let one = [
        attempt(0, 1, failed("blocked", false)),
        attempt(0, 2, AttemptState::Passed),
    ];
    assert_eq!(
        choose(
            policy(&Selection::Review),
            PhaseState::Running,
            0,
            &one,
            false
        ),
        Choice::Gate {
            winner: 1,
            because: Some("the only attempt that passed its audit".into())
        }
    );
}

#[test]
fn nothing_is_chosen_while_an_attempt_is_at_the_gate_or_the_phase_is_not_running() {
    let attempts = [
        attempt(0, 1, AttemptState::Gating),
        attempt(0, 2, AttemptState::Passed),
    ];
    let first = policy(&Selection::First);
    assert_eq!(
        choose(first, PhaseState::Running, 0, &attempts, false),
        Choice::Wait
    );
    let passed = [attempt(0, 1, AttemptState::Passed)];
    for state in [PhaseState::Pending, PhaseState::Merged, PhaseState::Blocked] {
        assert_eq!(choose(first, state, 0, &passed, false), Choice::Wait);
    }
}

#[test]
fn the_reviewers_choice_wins_only_among_the_attempts_that_passed() {
    let attempts = [
        attempt(0, 1, AttemptState::Passed),
        attempt(0, 2, failed("blocked", false)),
        attempt(0, 3, AttemptState::Passed),
    ];
    let passed = [0, 2];
    assert_eq!(
        reviewed(
            &attempts,
            &passed,
            Ok((Some(3), "\n  smaller and faster\nmore"))
        ),
        Some((2, "the reviewer chose attempt 3: smaller and faster".into()))
    );
    assert_eq!(
        reviewed(&attempts, &passed, Ok((Some(2), ""))),
        Some((
            0,
            "the reviewer named attempt 2, which did not pass its audit; attempt 1 is the first that did"
                .into()
        ))
    );
    assert_eq!(
        reviewed(&attempts, &passed, Ok((None, "both fine"))),
        Some((
            0,
            "the reviewer named no winner; attempt 1 is the first that passed".into()
        ))
    );
    assert_eq!(
        reviewed(&attempts, &passed, Err("the turn timed out")),
        Some((
            0,
            "the reviewer's turn failed (the turn timed out); attempt 1 is the first that passed"
                .into()
        ))
    );
    assert_eq!(reviewed(&attempts, &[], Ok((Some(1), ""))), None);
}

// --- the gate's trains ------------------------------------------------------------

#[test]
fn a_train_takes_every_waiting_candidate_up_to_one_that_must_land_alone() {
    let solo = BTreeSet::from([7]);
    assert_eq!(next_train_len(&[1, 2, 7, 3], &solo), 2);
    assert_eq!(next_train_len(&[7, 1, 2], &solo), 1);
    assert_eq!(next_train_len(&[1, 2, 3], &solo), 3);
    assert_eq!(next_train_len(&[], &solo), 0);
}

#[test]
fn a_train_whose_merge_fails_its_audit_splits_and_a_lone_one_stops() {
    assert_eq!(
        after_train_audit(Recommendation::Merge, 3, "ok"),
        AfterTrainAudit::Land
    );
    assert_eq!(
        after_train_audit(Recommendation::Revise, 3, "tests fail"),
        AfterTrainAudit::EachAlone
    );
    assert_eq!(
        after_train_audit(Recommendation::Abandon, 1, "tests fail"),
        AfterTrainAudit::Fail(
            "its merge with the integration tip fails the audit: tests fail".into()
        )
    );
}

// --- how phases and runs end -----------------------------------------------------

#[test]
fn a_phase_is_budget_limited_only_when_every_attempt_hit_a_budget() {
    let mut attempts = vec![
        attempt(0, 1, failed("budget turns reached: used 4 of 4", true)),
        attempt(0, 2, failed("budget tokens reached: used 9 of 9", true)),
        attempt(1, 1, failed("blocked", false)),
    ];
    let (status, why) = phase_blocked(0, &attempts);
    assert_eq!(status, PhaseStatus::BudgetLimited);
    assert_eq!(
        why,
        "attempt 1 (agent1): budget turns reached: used 4 of 4; attempt 2 (agent2): budget tokens reached: used 9 of 9"
    );
    attempts[1].state = failed("the audit says abandon: x", false);
    assert_eq!(phase_blocked(0, &attempts).0, PhaseStatus::Blocked);
}

#[test]
fn a_run_whose_every_phase_merged_has_no_blocked_end() {
    let phases = [PhaseState::Merged, PhaseState::Merged];
    assert_eq!(run_end(&["a", "b"], &phases, &[], None), None);
}

#[test]
fn a_blocked_run_names_each_stopped_attempt_and_is_budget_limited_when_all_were() {
    let attempts = [
        attempt(1, 1, failed("budget turns reached: used 4 of 4", true)),
        attempt(1, 2, failed("blocked: x; needs: y", false)),
    ];
    let phases = [PhaseState::Merged, PhaseState::Blocked, PhaseState::Pending];
    assert_eq!(
        run_end(&["a", "b", "c"], &phases, &attempts, None),
        Some(RunEnd::Blocked {
            why:
                "b attempt 1: budget turns reached: used 4 of 4; b attempt 2: blocked: x; needs: y"
                    .into()
        })
    );
    let budget_only = [attempt(
        1,
        1,
        failed("budget turns reached: used 4 of 4", true),
    )];
    assert_eq!(
        run_end(&["a", "b", "c"], &phases, &budget_only, None),
        Some(RunEnd::BudgetLimited {
            why: "b attempt 1: budget turns reached: used 4 of 4".into()
        })
    );
}

#[test]
fn an_interrupted_run_is_blocked_and_says_resume_goes_on() {
    let attempts = [attempt(
        0,
        1,
        AttemptState::Interrupted {
            why: "the worker failed: killed".into(),
        },
    )];
    assert_eq!(
        run_end(&["a"], &[PhaseState::Running], &attempts, None),
        Some(RunEnd::Blocked {
            why: "a attempt 1 interrupted: the worker failed: killed; `goalpost resume` goes on from the attempts' refs"
                .into()
        })
    );
}

#[test]
fn a_spent_run_budget_makes_the_run_budget_limited_whatever_else_stopped() {
    let attempts = [attempt(0, 1, failed("blocked: x; needs: y", false))];
    assert_eq!(
        run_end(
            &["a"],
            &[PhaseState::Blocked],
            &attempts,
            Some("the run budget is spent: turns: used 8 of 8")
        ),
        Some(RunEnd::BudgetLimited {
            why: "the run budget is spent: turns: used 8 of 8; a attempt 1: blocked: x; needs: y"
                .into()
        })
    );
}

// --- recovery ----------------------------------------------------------------------

#[test]
fn resume_takes_each_recorded_state_up_where_it_still_holds() {
    use AttemptStatus as S;
    assert_eq!(restore(S::Lost, true, true, true), Restore::Lost);
    assert_eq!(
        restore(S::Blocked, true, false, false),
        Restore::Failed { budget: false }
    );
    // A budget stop holds while the budget is spent; a raised one lets it go on.
    assert_eq!(
        restore(S::BudgetLimited, false, false, false),
        Restore::Failed { budget: true }
    );
    assert_eq!(
        restore(S::BudgetLimited, true, false, false),
        Restore::Round
    );
    // A passed candidate goes to the gate only while it is still the attempt's work.
    assert_eq!(restore(S::Passed, true, true, false), Restore::Passed);
    assert_eq!(restore(S::Gating, true, true, false), Restore::Passed);
    assert_eq!(restore(S::Passed, true, false, false), Restore::Round);
    // A candidate under audit is audited again only while it is the attempt's head.
    assert_eq!(restore(S::Auditing, true, false, true), Restore::Audit);
    assert_eq!(restore(S::Auditing, true, false, false), Restore::Round);
    for s in [S::Running, S::Interrupted, S::Merged] {
        assert_eq!(restore(s, true, false, false), Restore::Round, "{s:?}");
    }
}

#[test]
fn a_budget_stop_is_told_in_the_attempts_whole_life_figures_not_the_rounds_remainder() {
    let budget = Budget {
        turns: Some(Spanned::new(4, 1, 1)),
        ..Budget::default()
    };
    let mut a = attempt(0, 1, AttemptState::Working);
    a.usage.turns = 4;
    // The worker's last round started with 0 of the 4 turns left.
    let from_the_worker = AttemptOutcome::BudgetLimited {
        budget: "turns".into(),
        limit: "0".into(),
        used: "0".into(),
    };
    assert_eq!(
        whole_life(from_the_worker, &budget, a.spent()),
        AttemptOutcome::BudgetLimited {
            budget: "turns".into(),
            limit: "4".into(),
            used: "4".into(),
        }
    );
    // Any other outcome, or a kind the goal file does not limit, is left as it is.
    let blocked = AttemptOutcome::Blocked {
        reason: "x".into(),
        needs: "y".into(),
    };
    assert_eq!(whole_life(blocked.clone(), &budget, a.spent()), blocked);
    let wall = AttemptOutcome::BudgetLimited {
        budget: "wall".into(),
        limit: "30s".into(),
        used: "30.2s".into(),
    };
    assert_eq!(whole_life(wall.clone(), &budget, a.spent()), wall);
}

#[test]
fn a_stop_after_the_same_finding_again_and_again_names_it_and_what_to_change() {
    let calc = SentBack {
        summary: "1 boundary violation (`calc.sh`)".into(),
        paths: vec!["calc.sh".into()],
    };
    let other = SentBack {
        summary: "1 of 1 checks failed".into(),
        paths: vec![],
    };
    let why = "budget turns reached: used 4 of 4".to_owned();
    assert_eq!(
        explain_stop(why.clone(), &[other.clone(), calc.clone(), calc.clone()]),
        "budget turns reached: used 4 of 4; the audit sent it back 2 times in a row for the same finding: 1 boundary violation (`calc.sh`); needs: the goal's boundaries to allow `calc.sh` (its Allowed or Forbidden paths), or an implementer that leaves them alone"
    );
    // Once, or different findings each time: nothing to add.
    assert_eq!(explain_stop(why.clone(), std::slice::from_ref(&calc)), why);
    assert_eq!(explain_stop(why.clone(), &[calc, other]), why);
    assert_eq!(explain_stop(why.clone(), &[]), why);
    // A path broken in two ways is named once.
    let twice = SentBack {
        summary: "2 boundary violations (`calc.sh`)".into(),
        paths: vec!["calc.sh".into(), "calc.sh".into(), "ops.sh".into()],
    };
    assert!(
        explain_stop(why, &[twice.clone(), twice]).ends_with(
            "needs: the goal's boundaries to allow `calc.sh`, `ops.sh` (its Allowed or Forbidden paths), or an implementer that leaves them alone"
        )
    );
}
