//! The run loop's decisions, as pure functions of the run's state: which queued job may
//! start, what a worker's outcome or an audit's report makes of its attempt, which
//! attempt of a phase wins, where a conflict sends an attempt, what a train's merge audit
//! means for its candidates, how far a crash had got with an attempt, and how the run
//! ends. Nothing here starts a process, reads git or writes the store: the loop carries
//! out what these return, and the tests below pin every rule down without a process.

use std::collections::BTreeSet;

use goalpost_shared::budget::{self, Spent};
use goalpost_shared::plan::{Budget, Selection};
use goalpost_shared::protocol::{AttemptOutcome, Recommendation, Usage};

use super::{Attempt, AttemptState, MAX_ROUNDS, PhaseState, RunEnd, SentBack};
use crate::control::Pause;
use goalpost_state::{AttemptStatus, PhaseStatus};

/// The jobs at work now: agents (workers and selection turns) and audits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub agents: usize,
    pub audits: usize,
}

/// What the loop does with the queued job it looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    Start,
    /// All slots of its kind are taken: it stays queued.
    Wait,
    /// Its attempt lost meanwhile: it never starts.
    Drop,
    /// A worker round after the run budget was spent: the attempt is interrupted.
    Interrupt(String),
}

/// Whether a queued job starts now. `max_parallel` bounds the agents at work; audits,
/// which run no agent, have as many slots of their own, so verifying one wave of
/// candidates never holds the next wave of agents back. Nothing starts once a pause was
/// asked for.
pub fn admit(
    is_audit: bool,
    is_worker: bool,
    attempt_lost: bool,
    run_budget_spent: Option<&str>,
    busy: Busy,
    max_parallel: usize,
    pause: Pause,
) -> Admit {
    if pause > Pause::None {
        return Admit::Wait;
    }
    let running = if is_audit { busy.audits } else { busy.agents };
    if running >= max_parallel {
        return Admit::Wait;
    }
    if attempt_lost {
        return Admit::Drop;
    }
    match run_budget_spent {
        Some(why) if is_worker => Admit::Interrupt(why.to_owned()),
        _ => Admit::Start,
    }
}

/// The run budget's verdict over every attempt's whole life: `Some(why)` once a limit is
/// reached.
pub fn run_budget_spent(run_budget: &Budget, attempts: &[Attempt]) -> Option<String> {
    let mut used = Usage::default();
    for a in attempts {
        used.add(&a.usage);
    }
    let iterations: u32 = attempts.iter().map(|a| a.next_iteration - 1).sum();
    let spent = Spent {
        usage: &used,
        iterations: Some(iterations),
        elapsed: None,
    };
    budget::crossed(run_budget, spent).map(|why| format!("the run budget is spent: {why}"))
}

/// What a worker round's outcome makes of its attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterRound {
    /// A candidate: audit it.
    Audit,
    /// Stopped for good (`budget`: by a budget).
    Fail { budget: bool },
    /// Stopped short of an outcome: `resume` goes on.
    Interrupt,
}

/// The round's outcome as the store records it (state and one-line text), and what the
/// loop does next.
pub fn after_round(outcome: &AttemptOutcome) -> (AttemptStatus, String, AfterRound) {
    match outcome {
        AttemptOutcome::Candidate { .. } => (
            AttemptStatus::Auditing,
            "candidate".to_owned(),
            AfterRound::Audit,
        ),
        AttemptOutcome::Blocked { reason, needs } => (
            AttemptStatus::Blocked,
            format!("blocked: {reason}; needs: {needs}"),
            AfterRound::Fail { budget: false },
        ),
        AttemptOutcome::BudgetLimited {
            budget,
            limit,
            used,
        } => (
            AttemptStatus::BudgetLimited,
            format!("budget {budget} reached: used {used} of {limit}"),
            AfterRound::Fail { budget: true },
        ),
        AttemptOutcome::Stopped { reason } => (
            AttemptStatus::Interrupted,
            reason.clone(),
            AfterRound::Interrupt,
        ),
    }
}

/// The worker measures a round against what was left of the attempt's budget when the
/// round started, so its budget stop speaks of that remainder ("turns: used 0 of 0" once a
/// revised attempt starts its last round with nothing left). The stop is told in the
/// attempt's whole-life figures instead: the goal file's limit, and everything the attempt
/// used, this round included. `spent` is the attempt's whole life.
pub fn whole_life(outcome: AttemptOutcome, budget: &Budget, spent: Spent<'_>) -> AttemptOutcome {
    let AttemptOutcome::BudgetLimited {
        budget: kind,
        limit,
        used,
    } = outcome
    else {
        return outcome;
    };
    let figures = kind
        .parse()
        .ok()
        .and_then(|kind| budget::figures(budget, kind, spent));
    match figures {
        Some(c) => AttemptOutcome::BudgetLimited {
            budget: c.kind.name().to_owned(),
            limit: c.limit,
            used: c.used,
        },
        None => AttemptOutcome::BudgetLimited {
            budget: kind,
            limit,
            used,
        },
    }
}

/// Why an attempt stopped, with what its audits said when they sent it back for the same
/// finding more than once: the finding, how often, and what the user can change.
pub fn explain_stop(why: String, sent_back: &[SentBack]) -> String {
    let Some(last) = sent_back.last() else {
        return why;
    };
    let repeats = sent_back
        .iter()
        .rev()
        .take_while(|s| s.summary == last.summary)
        .count();
    if repeats < 2 {
        return why;
    }
    let mut out = format!(
        "{why}; the audit sent it back {repeats} times in a row for the same finding: {}",
        last.summary
    );
    if !last.paths.is_empty() {
        let mut seen = BTreeSet::new();
        let paths: Vec<String> = last
            .paths
            .iter()
            .filter(|p| seen.insert(p.as_str()))
            .map(|p| format!("`{p}`"))
            .collect();
        out.push_str(&format!(
            "; needs: the goal's boundaries to allow {} (its Allowed or Forbidden paths), or an implementer that leaves them alone",
            paths.join(", ")
        ));
    }
    out
}

/// Where an audit report or a conflict sends an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Its candidate passed: on to its phase's selection.
    Pass,
    /// Another worker round, with feedback.
    Again,
    /// Stopped for good.
    Fail(String),
}

/// A candidate's audit says `recommendation`; the attempt has had `rounds` rounds.
pub fn after_candidate_audit(recommendation: Recommendation, rounds: u32, summary: &str) -> Route {
    match recommendation {
        Recommendation::Merge => Route::Pass,
        Recommendation::Revise if rounds < MAX_ROUNDS => Route::Again,
        Recommendation::Revise => Route::Fail(format!(
            "the audit still asks for revisions after {MAX_ROUNDS} rounds: {summary}"
        )),
        Recommendation::Abandon => Route::Fail(format!("the audit says abandon: {summary}")),
    }
}

/// A candidate conflicts with the integration tip (`tip`, shortened) in `paths`: another
/// round on the new tip, unless the attempt has had its rounds.
pub fn after_conflict(rounds: u32, tip: &str, paths: &[String]) -> Route {
    if rounds >= MAX_ROUNDS {
        Route::Fail(format!(
            "conflicts with the integration tip {tip} in: {}",
            paths.join(", ")
        ))
    } else {
        Route::Again
    }
}

/// What a phase's selection policy makes of its attempts now.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Nothing yet: attempts are still at work, one is at the gate, or the reviewer is
    /// choosing.
    Wait,
    /// This attempt goes to the gate; `because` says why when the policy alone does not.
    Gate {
        winner: usize,
        because: Option<String>,
    },
    /// Several passed under `Select: review`: a reviewer turn chooses among these.
    AskReviewer(Vec<usize>),
    /// Every attempt settled and none passed.
    Block,
}

/// A phase's selection policy, with what it needs to know about the plan.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub select: &'a Selection,
    /// For `Select: best`: whether the metric's target is "below" or "at most".
    pub lower_is_better: bool,
    pub has_reviewer: bool,
}

/// Picks phase `phase`'s winner among `attempts` (all of the run's; indices into it) when
/// its policy can: `first` takes the first that passed, `best` waits until every attempt
/// settled and takes the best metric, `review` waits likewise and asks the reviewer when
/// more than one passed.
pub fn choose(
    policy: Policy<'_>,
    phase_state: PhaseState,
    phase: usize,
    attempts: &[Attempt],
    reviewer_is_choosing: bool,
) -> Choice {
    if phase_state != PhaseState::Running || reviewer_is_choosing {
        return Choice::Wait;
    }
    let mine: Vec<usize> = (0..attempts.len())
        .filter(|&i| attempts[i].phase == phase)
        .collect();
    if mine
        .iter()
        .any(|&i| attempts[i].state == AttemptState::Gating)
    {
        return Choice::Wait;
    }
    let passed: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| attempts[i].state == AttemptState::Passed)
        .collect();
    let all_settled = mine.iter().all(|&i| {
        matches!(
            attempts[i].state,
            AttemptState::Passed | AttemptState::Failed { .. }
        )
    });
    let gate = |winner: usize, because: Option<&str>| Choice::Gate {
        winner,
        because: because.map(str::to_owned),
    };
    let winner = match policy.select {
        Selection::First => passed.first().map(|&w| gate(w, None)),
        Selection::Best { .. } if all_settled => {
            best_of(attempts, &passed, policy.lower_is_better).map(|w| gate(w, None))
        }
        Selection::Review if all_settled && passed.len() > 1 && policy.has_reviewer => {
            return Choice::AskReviewer(passed);
        }
        Selection::Review if all_settled && passed.len() > 1 => Some(gate(
            passed[0],
            Some("no reviewer agent to choose: the first attempt that passed"),
        )),
        Selection::Review if all_settled => passed
            .first()
            .map(|&w| gate(w, Some("the only attempt that passed its audit"))),
        _ => None,
    };
    match winner {
        Some(choice) => choice,
        None if all_settled && passed.is_empty() => Choice::Block,
        None => Choice::Wait,
    }
}

/// The best passing attempt: best metric in its direction, then the smaller diff, then the
/// lower cost, then the lower attempt number.
pub fn best_of(attempts: &[Attempt], passed: &[usize], lower_is_better: bool) -> Option<usize> {
    passed.iter().copied().min_by(|&a, &b| {
        let (x, y) = (&attempts[a], &attempts[b]);
        let metric = match (x.metric, y.metric) {
            (Some(p), Some(q)) if lower_is_better => p.total_cmp(&q),
            (Some(p), Some(q)) => q.total_cmp(&p),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        metric
            .then(x.diff_size.cmp(&y.diff_size))
            .then(x.usage.cost_usd.total_cmp(&y.usage.cost_usd))
            .then(x.n.cmp(&y.n))
    })
}

/// What the reviewer's selection turn said: the attempt it named and its notes, or why the
/// turn failed.
pub type ReviewerSaid<'a> = Result<(Option<u32>, &'a str), &'a str>;

/// The winner after a reviewer's choice among `passed` (indices into `attempts`, in the
/// order they passed), and why. Only an attempt that passed can win: a name outside
/// `passed`, no name or a failed turn falls back to the first that passed.
pub fn reviewed(
    attempts: &[Attempt],
    passed: &[usize],
    said: ReviewerSaid<'_>,
) -> Option<(usize, String)> {
    let &fallback = passed.first()?;
    let first = attempts[fallback].n;
    let named = said.ok().and_then(|(n, _)| n);
    let pick = named.and_then(|n| passed.iter().copied().find(|&i| attempts[i].n == n));
    let why = match (said, named, pick) {
        (Ok((_, notes)), Some(n), Some(_)) => {
            match notes.lines().map(str::trim).find(|l| !l.is_empty()) {
                Some(note) => format!("the reviewer chose attempt {n}: {note}"),
                None => format!("the reviewer chose attempt {n}"),
            }
        }
        (Ok(_), Some(n), None) => format!(
            "the reviewer named attempt {n}, which did not pass its audit; attempt {first} is the first that did"
        ),
        (Ok(_), None, _) => {
            format!("the reviewer named no winner; attempt {first} is the first that passed")
        }
        (Err(e), _, _) => {
            format!("the reviewer's turn failed ({e}); attempt {first} is the first that passed")
        }
    };
    Some((pick.unwrap_or(fallback), why))
}

/// How many of the candidates waiting at the gate (in the order they passed) ride the
/// next train: one that must land alone goes alone; otherwise every one up to the first
/// that must.
pub fn next_train_len(waiting: &[usize], solo: &BTreeSet<usize>) -> usize {
    match waiting.first() {
        None => 0,
        Some(first) if solo.contains(first) => 1,
        Some(_) => waiting.iter().take_while(|i| !solo.contains(i)).count(),
    }
}

/// What a train's merge audit means for its candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterTrainAudit {
    /// Move the integration ref to the train's last commit.
    Land,
    /// Which candidate the merge fails for is not known: each lands on its own.
    EachAlone,
    /// The one candidate's merge with the tip fails: it stops.
    Fail(String),
}

pub fn after_train_audit(
    recommendation: Recommendation,
    cars: usize,
    summary: &str,
) -> AfterTrainAudit {
    if recommendation == Recommendation::Merge {
        AfterTrainAudit::Land
    } else if cars > 1 {
        AfterTrainAudit::EachAlone
    } else {
        AfterTrainAudit::Fail(format!(
            "its merge with the integration tip fails the audit: {summary}"
        ))
    }
}

/// The state and reason phase `phase` ends with when every attempt stopped and none
/// passed: budget-limited when every attempt was stopped by a budget.
pub fn phase_blocked(phase: usize, attempts: &[Attempt]) -> (PhaseStatus, String) {
    let mine = || attempts.iter().filter(move |a| a.phase == phase);
    let why: Vec<String> = mine()
        .filter_map(|a| match &a.state {
            AttemptState::Failed { why, .. } => {
                Some(format!("attempt {} ({}): {why}", a.n, a.agent))
            }
            _ => None,
        })
        .collect();
    let all_budget = mine().all(|a| matches!(a.state, AttemptState::Failed { budget: true, .. }));
    let status = if all_budget {
        PhaseStatus::BudgetLimited
    } else {
        PhaseStatus::Blocked
    };
    (status, why.join("; "))
}

/// How a run whose phases did not all merge ends, from what each phase and attempt came
/// to; `None` when every phase merged. `ids` are the phases' ids, `run_budget_spent` why
/// the run budget stopped it, if it did.
pub fn run_end(
    ids: &[&str],
    phases: &[PhaseState],
    attempts: &[Attempt],
    run_budget_spent: Option<&str>,
) -> Option<RunEnd> {
    if phases.iter().all(|s| *s == PhaseState::Merged) {
        return None;
    }
    let mut parts = Vec::new();
    let mut all_budget = true;
    let mut interrupted = false;
    for (pi, state) in phases.iter().enumerate() {
        let id = ids[pi];
        let mine = attempts.iter().filter(|a| a.phase == pi);
        match state {
            PhaseState::Blocked => {
                for a in mine {
                    if let AttemptState::Failed { why, budget } = &a.state {
                        all_budget &= *budget;
                        parts.push(format!("{id} attempt {}: {why}", a.n));
                    }
                }
            }
            PhaseState::Running => {
                for a in mine {
                    if let AttemptState::Interrupted { why } = &a.state {
                        interrupted = true;
                        parts.push(format!("{id} attempt {} interrupted: {why}", a.n));
                    }
                }
            }
            PhaseState::Pending | PhaseState::Merged => {}
        }
    }
    let mut why = parts.join("; ");
    if let Some(spent) = run_budget_spent {
        return Some(RunEnd::BudgetLimited {
            why: format!("{spent}; {why}"),
        });
    }
    if interrupted {
        why.push_str("; `goalpost resume` goes on from the attempts' refs");
    }
    Some(if all_budget && !interrupted && !parts.is_empty() {
        RunEnd::BudgetLimited { why }
    } else {
        RunEnd::Blocked { why }
    })
}

/// How `resume` takes an attempt up again, from what the store recorded and what its
/// ref holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    Lost,
    /// Stopped for good (`budget`: by a budget that was not raised since).
    Failed {
        budget: bool,
    },
    /// Its candidate passed an audit and is still its work: on to the gate.
    Passed,
    /// Its candidate was under audit and is still its work: audit it again.
    Audit,
    /// Anything else: another worker round from its ref.
    Round,
}

/// What the store says of an attempt (`status`) and whether that still holds: a passed
/// or gated attempt only while its audited candidate is its ref's head, an audited one
/// only while its candidate is, a budget-limited one only while its budget is still
/// spent (a `resume --budget` raise lets it go on).
pub fn restore(
    status: AttemptStatus,
    budget_left: bool,
    audited_is_head: bool,
    candidate_is_head: bool,
) -> Restore {
    match status {
        AttemptStatus::Lost => Restore::Lost,
        AttemptStatus::Blocked => Restore::Failed { budget: false },
        AttemptStatus::BudgetLimited if !budget_left => Restore::Failed { budget: true },
        AttemptStatus::Passed | AttemptStatus::Gating if audited_is_head => Restore::Passed,
        // A worker may have gone on (and harvested more) before the crash.
        AttemptStatus::Auditing if candidate_is_head => Restore::Audit,
        _ => Restore::Round,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
