//! The reporter: the one way the run loop tells what happens. Every event goes to the
//! run's event log in the store, which `status` or a dashboard follow, and to a
//! [`Reporter`] for whoever watches: [`PlainLines`] writes the events a person follows as
//! one line each on stdout; [`JsonLines`] (`--progress json`) writes every event as one
//! JSON object a line, as the state crate documents them, for CI and scripts;
//! [`InPlace`] (`--progress tty`, the default on a terminal) prints the same lines as
//! `plain` with the run's live block below them, redrawn in place. The loop never prints
//! itself.

mod block;
mod terminal;

use std::fmt::Debug;
use std::io::{IsTerminal as _, Write as _};

use goalpost_shared::plan::Plan;
use goalpost_state::{AttemptStatus, AuditKind, Event, EventRecord, Store};

pub use block::{InFlight, Limits, block};
pub use terminal::InPlace;

/// Where the run's events go, besides the event log.
pub trait Reporter: Debug {
    fn report(&mut self, record: &EventRecord);

    /// Nothing happened for a while (the loop's idle tick).
    fn tick(&mut self) {}

    /// The run ended with `ended` (a `run_ended` event); the lines that say how follow.
    fn finish(&mut self, ended: &EventRecord) {
        let _ = ended;
    }
}

/// How `goalpost run` and `resume` show the run's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    /// One plain line per event a person follows.
    #[default]
    Plain,
    /// Every event as a JSON line on stdout; the other lines a run prints go to stderr.
    Json,
    /// The plain lines, and below them the run's live block redrawn in place: for a
    /// terminal.
    Tty,
}

impl Progress {
    /// `tty` when stdout is a terminal that can move its cursor, `plain` otherwise;
    /// `plain` under CI (`CI=true`), whose logs keep every byte written.
    pub fn auto() -> Progress {
        Progress::detect(
            std::io::stdout().is_terminal(),
            std::env::var("TERM").ok().as_deref(),
            std::env::var("CI").ok().as_deref(),
        )
    }

    /// [`Progress::auto`]'s choice for a stdout that `is_terminal` or not, and the values
    /// of `TERM` and `CI`.
    pub fn detect(is_terminal: bool, term: Option<&str>, ci: Option<&str>) -> Progress {
        let dumb = matches!(term, None | Some("" | "dumb"));
        let ci = ci.is_some_and(|v| v == "true" || v == "1");
        if is_terminal && !dumb && !ci {
            Progress::Tty
        } else {
            Progress::Plain
        }
    }

    /// The reporter of run `run` of `store`, following `plan`'s budgets.
    pub fn reporter<'a>(self, store: &'a Store, run: &str, plan: &Plan) -> Box<dyn Reporter + 'a> {
        match self {
            Progress::Plain => Box::new(PlainLines),
            Progress::Json => Box::new(JsonLines),
            Progress::Tty => Box::new(InPlace::new(
                store,
                run,
                Limits {
                    attempt: plan.settings.budget.clone(),
                    run: plan.settings.run_budget.clone(),
                },
            )),
        }
    }

    /// Prints one of the lines a run says besides its events (where it starts, how it
    /// ended): on stdout, unless stdout carries the JSON event stream.
    pub fn say(self, line: &str) {
        match self {
            Progress::Plain | Progress::Tty => println!("{line}"),
            Progress::Json => eprintln!("{line}"),
        }
    }
}

/// Every event as one JSON object a line on stdout.
#[derive(Debug, Default)]
pub struct JsonLines;

impl Reporter for JsonLines {
    fn finish(&mut self, ended: &EventRecord) {
        self.report(ended);
    }

    fn report(&mut self, record: &EventRecord) {
        match serde_json::to_string(record) {
            Ok(json) => {
                let mut out = std::io::stdout().lock();
                // stdout gone (a closed pipe) is no reason to stop the run.
                let _ = writeln!(out, "{json}");
                let _ = out.flush();
            }
            Err(e) => tracing::warn!("cannot write event {} as JSON: {e}", record.seq),
        }
    }
}

/// One line per event a person follows, on stdout.
#[derive(Debug, Default)]
pub struct PlainLines;

impl Reporter for PlainLines {
    fn report(&mut self, record: &EventRecord) {
        if let Some(line) = line(&record.event) {
            let mut out = std::io::stdout().lock();
            // stdout gone (a closed pipe) is no reason to stop the run.
            let _ = writeln!(out, "{line}");
        }
    }
}

/// The first ten hex digits of a commit id.
fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// The line a person reads for `event`, if it is one they follow.
pub fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::PhaseStarted { phase, base } => format!("phase {phase}: started on {}", short(base)),
        Event::AttemptRoundStarted {
            phase,
            attempt,
            agent,
            round,
            first_iteration,
            ..
        } => format!(
            "phase {phase}: attempt {attempt} ({agent}) round {round} from iteration {first_iteration}"
        ),
        Event::CandidateProposed {
            phase,
            attempt,
            candidate,
        } => format!(
            "phase {phase}: attempt {attempt} proposes {}; auditing",
            short(candidate)
        ),
        Event::AuditStarted {
            purpose,
            phase,
            phases,
            candidate,
            ..
        } => match purpose {
            AuditKind::Candidate => return None,
            AuditKind::Merge => format!(
                "phase {}: merged tree differs from the audited one; auditing merge {}",
                phase.as_deref().unwrap_or_default(),
                short(candidate)
            ),
            AuditKind::Train => format!(
                "gate: {} candidates land together ({}); auditing their merge {}",
                phases.len(),
                phases.join(", "),
                short(candidate)
            ),
            AuditKind::Goal => format!("whole goal: auditing {}", short(candidate)),
        },
        Event::AuditFinished {
            phase: Some(phase),
            attempt: Some(attempt),
            recommendation,
            summary,
            report_dir,
            ..
        } => format!(
            "phase {phase}: attempt {attempt} audit says {}: {summary} (report: {report_dir}/audit.md)",
            recommendation.as_str()
        ),
        Event::AuditFinished {
            recommendation,
            summary,
            ..
        } => format!(
            "whole goal: audit says {}: {summary}",
            recommendation.as_str()
        ),
        Event::AttemptStopped {
            phase,
            attempt,
            state: AttemptStatus::Interrupted,
            why,
        } => format!("phase {phase}: attempt {attempt} interrupted: {why}"),
        Event::AttemptStopped {
            phase,
            attempt,
            why,
            ..
        } => format!("phase {phase}: attempt {attempt} stopped: {why}"),
        Event::TurnFinished {
            phase,
            attempt,
            iteration,
            role,
            error: Some(why),
            ..
        } => format!(
            "phase {phase}: attempt {attempt} iteration {iteration}: the {} turn failed: {why}",
            role.as_str()
        ),
        Event::Conflict {
            phase,
            attempt,
            paths,
        } => format!(
            "phase {phase}: attempt {attempt} conflicts with the integration tip in {}",
            paths.join(", ")
        ),
        Event::ReviewerChoosing { phase, attempts } => format!(
            "phase {phase}: {} attempts passed; the reviewer chooses",
            attempts.len()
        ),
        Event::WinnerChosen { phase, why, .. } => format!("phase {phase}: {why}"),
        Event::PhaseMerged {
            phase,
            attempt,
            commit,
        } => format!(
            "phase {phase}: merged attempt {attempt} at {}",
            short(commit)
        ),
        Event::PhaseStateChanged {
            phase,
            state,
            why: Some(_),
        } => format!("phase {phase}: {state}"),
        Event::RunEnded {
            state,
            blocker: None,
        } => format!("run ended: {state}"),
        Event::RunEnded {
            state,
            blocker: Some(why),
        } => format!("run ended: {state}: {why}"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use goalpost_shared::protocol::{Role, Usage};
    use goalpost_state::PhaseStatus;

    use super::*;

    #[test]
    fn auto_progress_is_the_live_block_only_on_a_terminal_outside_ci() {
        assert_eq!(
            Progress::detect(true, Some("xterm-256color"), None),
            Progress::Tty
        );
        assert_eq!(
            Progress::detect(true, Some("screen"), Some("false")),
            Progress::Tty
        );
        // A pipe or a file, a terminal that cannot move its cursor, or CI: plain lines.
        assert_eq!(
            Progress::detect(false, Some("xterm-256color"), None),
            Progress::Plain
        );
        assert_eq!(Progress::detect(true, Some("dumb"), None), Progress::Plain);
        assert_eq!(Progress::detect(true, None, None), Progress::Plain);
        assert_eq!(
            Progress::detect(true, Some("xterm"), Some("true")),
            Progress::Plain
        );
        assert_eq!(
            Progress::detect(false, Some("xterm"), Some("true")),
            Progress::Plain
        );
    }

    const A: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_lines_a_person_follows_name_the_phase_the_attempt_and_a_short_commit() {
        let cases = [
            (
                Event::PhaseStarted {
                    phase: "api".into(),
                    base: A.into(),
                },
                "phase api: started on 0123456789",
            ),
            (
                Event::CandidateProposed {
                    phase: "api".into(),
                    attempt: 2,
                    candidate: A.into(),
                },
                "phase api: attempt 2 proposes 0123456789; auditing",
            ),
            (
                Event::AuditStarted {
                    purpose: AuditKind::Train,
                    phase: Some("api".into()),
                    attempt: Some(1),
                    phases: vec!["api".into(), "docs".into()],
                    base: A.into(),
                    candidate: A.into(),
                },
                "gate: 2 candidates land together (api, docs); auditing their merge 0123456789",
            ),
            (
                Event::AttemptStopped {
                    phase: "api".into(),
                    attempt: 1,
                    state: AttemptStatus::Interrupted,
                    why: "the worker failed".into(),
                },
                "phase api: attempt 1 interrupted: the worker failed",
            ),
            (
                Event::AttemptStopped {
                    phase: "api".into(),
                    attempt: 1,
                    state: AttemptStatus::BudgetLimited,
                    why: "budget turns reached: used 4 of 4".into(),
                },
                "phase api: attempt 1 stopped: budget turns reached: used 4 of 4",
            ),
            (
                Event::TurnFinished {
                    phase: "api".into(),
                    attempt: 1,
                    iteration: 2,
                    role: Role::Reviewer,
                    usage: Usage::default(),
                    attempt_usage: Usage::default(),
                    error: Some("exit status 1".into()),
                },
                "phase api: attempt 1 iteration 2: the reviewer turn failed: exit status 1",
            ),
            (
                Event::PhaseStateChanged {
                    phase: "api".into(),
                    state: PhaseStatus::BudgetLimited,
                    why: Some("attempt 1 (a): budget".into()),
                },
                "phase api: budget_limited",
            ),
        ];
        for (event, want) in cases {
            assert_eq!(line(&event).as_deref(), Some(want), "{event:?}");
        }
    }

    #[test]
    fn turns_and_candidate_audits_starting_are_logged_not_printed() {
        let quiet = [
            Event::AuditStarted {
                purpose: AuditKind::Candidate,
                phase: Some("api".into()),
                attempt: Some(1),
                phases: vec!["api".into()],
                base: A.into(),
                candidate: A.into(),
            },
            Event::TurnStarted {
                phase: "api".into(),
                attempt: 1,
                iteration: 1,
                role: Role::Implementer,
            },
        ];
        for event in quiet {
            assert_eq!(line(&event), None, "{event:?}");
        }
    }
}
