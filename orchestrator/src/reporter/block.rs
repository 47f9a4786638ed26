//! What the live block of `goalpost run` on a terminal says: the run, each phase's state,
//! each attempt with its agent (and, while its round runs, its iteration and turn), the
//! audits in flight, the candidates at the gate, and the budgets used against their
//! limits. [`block`] is a pure function of the run's view, of what the event log says is
//! in flight ([`InFlight`]) and of the time; drawing it in place is the terminal's side.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use goalpost_shared::budget::{BudgetKind, Spent};
use goalpost_shared::plan::Budget;
use goalpost_shared::protocol::Usage;
use goalpost_state::{
    AttemptRow, AttemptStatus, AuditKind, Event, EventRecord, PhaseStatus, RunView,
};

use super::short;

/// The limits the block measures against: each attempt's `[budget]` and the run's
/// `[run_budget]`.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub attempt: Budget,
    pub run: Budget,
}

/// The budget kinds every usage figure shows, limit or not, in this order.
const ALWAYS: [BudgetKind; 4] = [
    BudgetKind::Turns,
    BudgetKind::Wall,
    BudgetKind::Tokens,
    BudgetKind::CostUsd,
];

/// The kinds a usage figure shows only when the budget limits them.
const WHEN_LIMITED: [BudgetKind; 5] = [
    BudgetKind::TokensIn,
    BudgetKind::TokensOut,
    BudgetKind::TokensCached,
    BudgetKind::ToolCalls,
    BudgetKind::Iterations,
];

/// An audit queued or running, as the event log announced it.
#[derive(Debug, Clone, PartialEq)]
struct Audit {
    kind: AuditKind,
    phase: Option<String>,
    attempt: Option<u32>,
    /// A train's phases, in order.
    phases: Vec<String>,
    candidate: String,
}

/// What the event log says is going on that the store's rows do not hold: the audits in
/// flight, and since when each running attempt's clock has been going. Folded from the
/// events of this scheduler's run, from its `run_started` on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlight {
    /// When the scheduler started (or resumed) the run, in ms since the Unix epoch.
    started_ms: Option<i64>,
    /// In the order they were queued.
    audits: Vec<Audit>,
    /// By phase and attempt: when the attempt's usage was last reported (its round was
    /// queued, or a turn of it finished), so its wall time can run on from there.
    usage_since_ms: BTreeMap<(String, u32), i64>,
}

impl InFlight {
    /// Takes `record` into account.
    pub fn apply(&mut self, record: &EventRecord) {
        let at = record.at_ms;
        match &record.event {
            // A scheduler starts with nothing in flight: what a run that stopped had
            // queued was never finished, and `resume` queues it again.
            Event::RunStarted { .. } => {
                *self = InFlight {
                    started_ms: Some(at),
                    ..InFlight::default()
                };
            }
            Event::CandidateProposed {
                phase,
                attempt,
                candidate,
            } => self.audits.push(Audit {
                kind: AuditKind::Candidate,
                phase: Some(phase.clone()),
                attempt: Some(*attempt),
                phases: vec![phase.clone()],
                candidate: candidate.clone(),
            }),
            // A candidate's audit is announced by its proposal.
            Event::AuditStarted {
                purpose: AuditKind::Candidate,
                ..
            } => {}
            Event::AuditStarted {
                purpose,
                phase,
                attempt,
                phases,
                candidate,
                ..
            } => self.audits.push(Audit {
                kind: *purpose,
                phase: phase.clone(),
                attempt: *attempt,
                phases: phases.clone(),
                candidate: candidate.clone(),
            }),
            Event::AuditFinished { candidate, .. } => {
                if let Some(k) = self.audits.iter().position(|a| &a.candidate == candidate) {
                    self.audits.remove(k);
                }
            }
            Event::AttemptRoundStarted { phase, attempt, .. }
            | Event::TurnFinished { phase, attempt, .. } => {
                self.usage_since_ms.insert((phase.clone(), *attempt), at);
            }
            // An audit that could not run stops its attempt (every car of a train).
            Event::AttemptStopped { phase, attempt, .. } => {
                self.usage_since_ms.remove(&(phase.clone(), *attempt));
                self.audits.retain(|a| {
                    !(a.phase.as_deref() == Some(phase) && a.attempt == Some(*attempt)
                        || a.kind == AuditKind::Train && a.phases.contains(phase))
                });
            }
            _ => {}
        }
    }
}

/// The block's lines for `view` at `now_ms` (ms since the Unix epoch), unclipped.
pub fn block(view: &RunView, flight: &InFlight, limits: &Limits, now_ms: i64) -> Vec<String> {
    let mut lines = Vec::new();
    let started_ms = flight
        .started_ms
        .unwrap_or(view.run.created_at.saturating_mul(1000));
    lines.push(format!(
        "run {}  {}  {}",
        view.run.id,
        view.run.state,
        duration(now_ms.saturating_sub(started_ms))
    ));
    let phase_w = view
        .phases
        .iter()
        .map(|p| p.phase_id.len())
        .max()
        .unwrap_or(0);
    let agent_w = view
        .attempts
        .iter()
        .map(|a| a.agent.len())
        .max()
        .unwrap_or(0);
    let state_w = view
        .attempts
        .iter()
        .map(|a| a.state.as_str().len())
        .max()
        .unwrap_or(0);
    let mut run_used = Usage::default();
    let mut run_iterations = 0;
    for p in &view.phases {
        let mut line = format!("  {:<phase_w$}  {}", p.phase_id, p.state);
        if let Some(c) = &p.merged_commit {
            let _ = write!(line, " at {}", short(c));
        } else if let Some(why) = p.why.as_deref().filter(|_| p.state != PhaseStatus::Running) {
            let _ = write!(line, ": {why}");
        }
        lines.push(line);
        for a in view.attempts.iter().filter(|a| a.phase_id == p.phase_id) {
            let widths = (agent_w, state_w);
            let (line, used, iterations) = attempt_line(view, flight, limits, a, now_ms, widths);
            lines.push(line);
            run_used.add(&used);
            run_iterations += iterations;
        }
    }
    lines.push(format!("audits: {}", audits(flight)));
    lines.push(format!("train: {}", train(view)));
    let spent = Spent {
        usage: &run_used,
        iterations: Some(run_iterations),
        elapsed: None,
    };
    lines.push(format!("run budget: {}", figures(&limits.run, spent)));
    lines
}

/// An attempt's line (its agent and state padded to `widths`), what it has used so far
/// and its iterations (its running turn, its clock and its iteration in progress
/// included).
fn attempt_line(
    view: &RunView,
    flight: &InFlight,
    limits: &Limits,
    a: &AttemptRow,
    now_ms: i64,
    (agent_w, state_w): (usize, usize),
) -> (String, Usage, u32) {
    let mut line = format!(
        "    #{} {:<agent_w$}  {:<state_w$}",
        a.n,
        a.agent,
        a.state.as_str()
    );
    let live = view
        .live
        .iter()
        .find(|l| l.phase_id == a.phase_id && l.n == a.n);
    let mut used = a.usage.clone();
    let mut iterations = a.iterations;
    if let Some(l) = live {
        used = l.usage.clone();
        iterations = l.iteration;
        let turn = if l.turn_running { "running" } else { "done" };
        let _ = write!(
            line,
            "  iteration {}  {} turn {turn}",
            l.iteration,
            l.role.as_str()
        );
        if let Some((passed, failed)) = l.checks {
            let _ = write!(line, "  checks {passed} passed, {failed} failed");
        }
        // The running turn is one of the turns spent, and the clock runs on since the
        // last usage the worker reported.
        if l.turn_running {
            used.turns += 1;
        }
        if let Some(since) = flight.usage_since_ms.get(&(a.phase_id.clone(), a.n)) {
            used.wall_ms += u64::try_from(now_ms.saturating_sub(*since)).unwrap_or(0);
        }
    } else if a.iterations > 0 {
        let s = if a.iterations == 1 { "" } else { "s" };
        let _ = write!(line, "  {} iteration{s}", a.iterations);
    }
    let spent = Spent {
        usage: &used,
        iterations: Some(iterations),
        elapsed: None,
    };
    let _ = write!(line, "  {}", figures(&limits.attempt, spent));
    (line, used, iterations)
}

/// The audits in flight, in the order they were queued.
fn audits(flight: &InFlight) -> String {
    if flight.audits.is_empty() {
        return "none".to_owned();
    }
    let of = |a: &Audit| {
        let who = || {
            format!(
                "{} #{}",
                a.phase.as_deref().unwrap_or_default(),
                a.attempt.unwrap_or_default()
            )
        };
        let what = match a.kind {
            AuditKind::Candidate => format!("{} (candidate", who()),
            AuditKind::Merge => format!("{} (merge", who()),
            AuditKind::Train => format!("train {} (merge", a.phases.join("+")),
            AuditKind::Goal => "whole goal (".to_owned(),
        };
        let sep = if a.kind == AuditKind::Goal { "" } else { " " };
        format!("{what}{sep}{})", short(&a.candidate))
    };
    flight.audits.iter().map(of).collect::<Vec<_>>().join(", ")
}

/// The audited candidates waiting at the gate to land.
fn train(view: &RunView) -> String {
    let waiting: Vec<String> = view
        .attempts
        .iter()
        .filter(|a| matches!(a.state, AttemptStatus::Passed | AttemptStatus::Gating))
        .map(|a| format!("{} #{}", a.phase_id, a.n))
        .collect();
    if waiting.is_empty() {
        "empty".to_owned()
    } else {
        format!("{} at the gate", waiting.join(", "))
    }
}

/// What `spent` used of each kind `budget` limits, and of the kinds always shown:
/// `turns 1/4  time 12s/30m  tokens 1.2k  cost $0.0100/$5.00`.
fn figures(budget: &Budget, spent: Spent<'_>) -> String {
    let mut out = Vec::new();
    for kind in ALWAYS.into_iter().chain(WHEN_LIMITED) {
        let limit = kind.limit(budget);
        if limit.is_none() && !ALWAYS.contains(&kind) {
            continue;
        }
        let Some(used) = spent.of(kind) else {
            continue;
        };
        let name = match kind {
            BudgetKind::Wall => "time",
            BudgetKind::CostUsd => "cost",
            other => other.name(),
        };
        let mut figure = format!("{name} {}", amount(kind, used));
        if let Some(limit) = limit {
            let _ = write!(figure, "/{}", amount(kind, limit));
        }
        out.push(figure);
    }
    out.join("  ")
}

/// A figure of `kind`: seconds as a duration, dollars, or a count.
fn amount(kind: BudgetKind, value: f64) -> String {
    match kind {
        BudgetKind::Wall => duration((value * 1000.0) as i64),
        BudgetKind::CostUsd if value >= 1.0 => format!("${value:.2}"),
        BudgetKind::CostUsd => format!("${value:.4}"),
        BudgetKind::Turns | BudgetKind::Iterations | BudgetKind::ToolCalls => {
            format!("{}", value as u64)
        }
        _ => count(value as u64),
    }
}

/// A token count: exact below ten thousand, then in thousands or millions to a tenth.
fn count(n: u64) -> String {
    let (value, unit) = match n {
        0..10_000 => return n.to_string(),
        10_000..1_000_000 => (n as f64 / 1e3, "k"),
        _ => (n as f64 / 1e6, "M"),
    };
    let tenths = format!("{value:.1}");
    format!("{}{unit}", tenths.strip_suffix(".0").unwrap_or(&tenths))
}

/// `ms` as `42s`, `3m05s`, `30m`, `1h02m` or `2h`.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (big, small, unit, small_unit) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, s % 60, "m", "s"),
        _ => (s / 3600, s % 3600 / 60, "h", "m"),
    };
    if small == 0 {
        format!("{big}{unit}")
    } else {
        format!("{big}{unit}{small:02}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use goalpost_shared::contract::Spanned;
    use goalpost_shared::plan::WallTime;
    use goalpost_shared::protocol::{Recommendation, Role};
    use goalpost_state::{AuditRow, LiveAttempt, PhaseRow, RunRow, RunState};

    use super::*;

    const START_MS: i64 = 1_780_000_000_000;
    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "bbbbbbbbbbcccccccccccccccccccccccccccccc";
    const C: &str = "cccccccccceeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

    fn record(seq: u64, at_ms: i64, event: Event) -> EventRecord {
        EventRecord { seq, at_ms, event }
    }

    fn phase(id: &str, state: PhaseStatus) -> PhaseRow {
        PhaseRow {
            phase_id: id.into(),
            state,
            base: Some(A.into()),
            merged_commit: None,
            winner: None,
            why: None,
        }
    }

    fn attempt(phase: &str, n: u32, agent: &str, state: AttemptStatus) -> AttemptRow {
        AttemptRow {
            phase_id: phase.into(),
            n,
            base: Some(A.into()),
            agent: agent.into(),
            worktree: "/wt".into(),
            ref_name: format!("refs/goalpost/r1/{phase}/{n}"),
            state,
            head: None,
            candidate: None,
            rounds: 1,
            iterations: 0,
            usage: Usage::default(),
            outcome: None,
            metric: None,
            diff_lines: None,
        }
    }

    fn usage(turns: u32, tokens_in: u64, tokens_out: u64, cost_usd: f64, wall_s: u64) -> Usage {
        Usage {
            tokens_in,
            tokens_out,
            cost_usd,
            turns,
            wall_ms: wall_s * 1000,
            ..Usage::default()
        }
    }

    fn view(state: RunState, phases: Vec<PhaseRow>, attempts: Vec<AttemptRow>) -> RunView {
        RunView {
            run: RunRow {
                id: "20261204-120000".into(),
                plan_path: "goal.md".into(),
                workdir: "/repo".into(),
                release_branch: "main".into(),
                release_start: A.into(),
                integration_ref: "refs/goalpost/20261204-120000/integration".into(),
                state,
                blocker: None,
                release_commit: None,
                created_at: START_MS / 1000,
                updated_at: START_MS / 1000,
            },
            phases,
            attempts,
            audits: Vec::new(),
            live: Vec::new(),
        }
    }

    fn limits() -> Limits {
        let mut attempt = Budget {
            turns: Some(Spanned::new(4, 1, 1)),
            wall: Some(Spanned::new(
                WallTime {
                    text: "30m".into(),
                    duration: Duration::from_secs(1800),
                },
                1,
                1,
            )),
            tokens: Some(Spanned::new(100_000, 1, 1)),
            ..Budget::default()
        };
        attempt.cost_usd = Some(Spanned::new(2.0, 1, 1));
        let run = Budget {
            turns: Some(Spanned::new(20, 1, 1)),
            cost_usd: Some(Spanned::new(10.0, 1, 1)),
            iterations: Some(Spanned::new(12, 1, 1)),
            ..Budget::default()
        };
        Limits { attempt, run }
    }

    fn started() -> InFlight {
        let mut flight = InFlight::default();
        flight.apply(&record(
            1,
            START_MS,
            Event::RunStarted {
                plan_path: "goal.md".into(),
                release_branch: "main".into(),
                release_start: A.into(),
                phases: vec!["lexer".into(), "parser".into(), "docs".into()],
                resumed: false,
            },
        ));
        flight
    }

    /// Three phases 95 s into a run: one merged, one whose first attempt is in its
    /// implementer's turn of iteration 2 while its second attempt's candidate is audited,
    /// and one waiting for it. A third attempt waits at the gate.
    #[test]
    fn the_block_shows_each_phase_its_attempts_the_audits_the_gate_and_the_budgets() {
        let mut lexer = phase("lexer", PhaseStatus::Merged);
        lexer.merged_commit = Some(C.into());
        lexer.winner = Some(1);
        let mut lexer1 = attempt("lexer", 1, "claude", AttemptStatus::Merged);
        lexer1.iterations = 1;
        lexer1.usage = usage(2, 41_200, 3_100, 0.4213, 61);
        let mut parser1 = attempt("parser", 1, "codex", AttemptStatus::Running);
        parser1.usage = usage(2, 30_000, 2_000, 0.21, 20);
        let mut parser2 = attempt("parser", 2, "claude", AttemptStatus::Auditing);
        parser2.iterations = 1;
        parser2.usage = usage(2, 9_000, 800, 0.09, 25);
        let mut view = view(
            RunState::Active,
            vec![
                lexer,
                phase("parser", PhaseStatus::Running),
                phase("docs", PhaseStatus::Pending),
            ],
            vec![lexer1, parser1, parser2],
        );
        view.live.push(LiveAttempt {
            phase_id: "parser".into(),
            n: 1,
            iteration: 2,
            role: Role::Implementer,
            turn_running: true,
            usage: usage(3, 52_000, 4_400, 0.55, 40),
            checks: Some((3, 1)),
        });
        let mut flight = started();
        flight.apply(&record(
            2,
            START_MS + 50_000,
            Event::TurnFinished {
                phase: "parser".into(),
                attempt: 1,
                iteration: 1,
                role: Role::Reviewer,
                usage: Usage::default(),
                attempt_usage: Usage::default(),
                error: None,
            },
        ));
        flight.apply(&record(
            3,
            START_MS + 80_000,
            Event::CandidateProposed {
                phase: "parser".into(),
                attempt: 2,
                candidate: B.into(),
            },
        ));
        let text = block(&view, &flight, &limits(), START_MS + 95_000).join("\n");
        insta::assert_snapshot!("mid_run", text);
        // The running turn counts as spent, and the clock ran on for 45 s since the last
        // turn finished.
        assert!(
            text.contains("iteration 2  implementer turn running  checks 3 passed, 1 failed  turns 4/4  time 1m25s/30m"),
            "{text}"
        );
    }

    /// The same run once it ended: nothing in flight, every attempt with what it used.
    #[test]
    fn the_block_of_an_ended_run_shows_every_phase_merged_or_stopped() {
        let mut lexer = phase("lexer", PhaseStatus::Merged);
        lexer.merged_commit = Some(C.into());
        let mut parser = phase("parser", PhaseStatus::BudgetLimited);
        parser.why = Some("attempt 1 (codex): budget turns reached: used 4 of 4".into());
        let mut lexer1 = attempt("lexer", 1, "claude", AttemptStatus::Merged);
        lexer1.iterations = 1;
        lexer1.usage = usage(2, 41_200, 3_100, 0.4213, 61);
        let mut parser1 = attempt("parser", 1, "codex", AttemptStatus::BudgetLimited);
        parser1.iterations = 2;
        parser1.usage = usage(4, 1_250_000, 9_000, 2.5, 3723);
        let mut view = view(
            RunState::BudgetLimited,
            vec![lexer, parser, phase("docs", PhaseStatus::Pending)],
            vec![lexer1, parser1],
        );
        view.audits.push(AuditRow {
            phase_id: "lexer".into(),
            attempt: Some(1),
            base: A.into(),
            candidate: C.into(),
            tree: C.into(),
            recommendation: Recommendation::Merge,
            summary: "every check passed".into(),
            report_dir: "/audits/lexer.1-1".into(),
            agent_usage: None,
        });
        let text = block(&view, &started(), &limits(), START_MS + 3_900_000).join("\n");
        insta::assert_snapshot!("ended", text);
    }

    #[test]
    fn audits_leave_the_block_when_they_finish_or_their_attempt_stops() {
        let mut flight = started();
        let proposed = |phase: &str, attempt: u32, candidate: &str| Event::CandidateProposed {
            phase: phase.into(),
            attempt,
            candidate: candidate.into(),
        };
        flight.apply(&record(2, START_MS, proposed("api", 1, A)));
        flight.apply(&record(3, START_MS, proposed("docs", 1, B)));
        flight.apply(&record(
            4,
            START_MS,
            Event::AuditStarted {
                purpose: AuditKind::Train,
                phase: Some("api".into()),
                attempt: Some(2),
                phases: vec!["api".into(), "cli".into()],
                base: A.into(),
                candidate: C.into(),
            },
        ));
        assert_eq!(
            audits(&flight),
            "api #1 (candidate 0123456789), docs #1 (candidate bbbbbbbbbb), train api+cli (merge cccccccccc)"
        );
        flight.apply(&record(
            5,
            START_MS,
            Event::AuditFinished {
                phase: Some("docs".into()),
                attempt: Some(1),
                candidate: B.into(),
                recommendation: Recommendation::Revise,
                summary: "a check failed".into(),
                report_dir: "/d".into(),
            },
        ));
        // A car of the train stopped: the train's audit is no longer waited for.
        flight.apply(&record(
            6,
            START_MS,
            Event::AttemptStopped {
                phase: "cli".into(),
                attempt: 1,
                state: AttemptStatus::Interrupted,
                why: "the audit of its merge could not run".into(),
            },
        ));
        assert_eq!(audits(&flight), "api #1 (candidate 0123456789)");
        // A new scheduler (a resume) has nothing in flight.
        let mut resumed = flight.clone();
        resumed.apply(&record(
            7,
            START_MS + 1,
            Event::RunStarted {
                plan_path: "goal.md".into(),
                release_branch: "main".into(),
                release_start: A.into(),
                phases: Vec::new(),
                resumed: true,
            },
        ));
        assert_eq!(audits(&resumed), "none");
        assert_eq!(resumed.started_ms, Some(START_MS + 1));
    }

    #[test]
    fn the_whole_goals_audit_and_the_gate_are_named() {
        let mut flight = started();
        flight.apply(&record(
            2,
            START_MS,
            Event::AuditStarted {
                purpose: AuditKind::Goal,
                phase: None,
                attempt: None,
                phases: Vec::new(),
                base: A.into(),
                candidate: C.into(),
            },
        ));
        assert_eq!(audits(&flight), "whole goal (cccccccccc)");
        let view = view(
            RunState::Active,
            vec![phase("api", PhaseStatus::Running)],
            vec![
                attempt("api", 1, "codex", AttemptStatus::Passed),
                attempt("api", 2, "codex", AttemptStatus::Lost),
            ],
        );
        assert_eq!(train(&view), "api #1 at the gate");
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(1_800_000), "30m");
        assert_eq!(duration(3_723_000), "1h02m");
        assert_eq!(duration(7_200_000), "2h");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(1_250_000), "1.2M");
        assert_eq!(count(100_000), "100k");
        assert_eq!(amount(BudgetKind::CostUsd, 0.0123), "$0.0123");
        assert_eq!(amount(BudgetKind::CostUsd, 5.0), "$5.00");
    }
}
