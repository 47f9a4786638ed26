//! [`RunView`]: everything the store knows of one run, read back in one value, which
//! `status`, `report` and their `--json` forms print. Its JSON shape is documented in the
//! crate's docs.

use serde::Serialize;

use goalpost_shared::protocol::{Role, Usage};

use crate::events::{Event, EventRecord};
use crate::states::AttemptStatus;
use crate::store::{AttemptRow, AuditRow, PhaseRow, RunRow, Store, StoreError};

/// Everything the store knows of one run.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub run: RunRow,
    /// In the plan's order.
    pub phases: Vec<PhaseRow>,
    /// By phase (in the plan's order), then by attempt number.
    pub attempts: Vec<AttemptRow>,
    /// In the order they were recorded.
    pub audits: Vec<AuditRow>,
    /// Where each attempt whose worker round is running stands now, from the event log.
    pub live: Vec<LiveAttempt>,
}

/// A running attempt, as its worker's last reports say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveAttempt {
    pub phase_id: String,
    pub n: u32,
    /// The iteration it is in.
    pub iteration: u32,
    /// The agent whose turn is running, or the last one that ran.
    pub role: Role,
    /// Whether that turn is still running.
    pub turn_running: bool,
    /// What the attempt has used over its whole life, up to its last finished turn.
    pub usage: Usage,
    /// The last machine checks it ran in its worktree: passed, failed.
    pub checks: Option<(u32, u32)>,
}

/// Folds the event log into where each running attempt stands.
fn live(attempts: &[AttemptRow], events: &[EventRecord]) -> Vec<LiveAttempt> {
    let mut live: Vec<LiveAttempt> = Vec::new();
    let mut slot = |phase: &str, n: u32| -> Option<usize> {
        let running = attempts
            .iter()
            .any(|a| a.phase_id == phase && a.n == n && a.state == AttemptStatus::Running);
        if !running {
            return None;
        }
        Some(
            match live.iter().position(|l| l.phase_id == phase && l.n == n) {
                Some(k) => k,
                None => {
                    let usage = attempts
                        .iter()
                        .find(|a| a.phase_id == phase && a.n == n)
                        .map(|a| a.usage.clone())
                        .unwrap_or_default();
                    live.push(LiveAttempt {
                        phase_id: phase.to_owned(),
                        n,
                        iteration: 0,
                        role: Role::Implementer,
                        turn_running: false,
                        usage,
                        checks: None,
                    });
                    live.len() - 1
                }
            },
        )
    };
    let mut updates: Vec<(usize, &Event)> = Vec::new();
    for record in events {
        let (phase, n) = match &record.event {
            Event::AttemptRoundStarted { phase, attempt, .. }
            | Event::TurnStarted { phase, attempt, .. }
            | Event::TurnFinished { phase, attempt, .. }
            | Event::ChecksFinished { phase, attempt, .. } => (phase.as_str(), *attempt),
            _ => continue,
        };
        if let Some(k) = slot(phase, n) {
            updates.push((k, &record.event));
        }
    }
    for (k, event) in updates {
        let l = &mut live[k];
        match event {
            Event::AttemptRoundStarted {
                first_iteration, ..
            } => {
                l.iteration = *first_iteration;
                l.turn_running = false;
                l.checks = None;
            }
            Event::TurnStarted {
                iteration, role, ..
            } => {
                l.iteration = *iteration;
                l.role = *role;
                l.turn_running = true;
            }
            Event::TurnFinished {
                iteration,
                role,
                attempt_usage,
                ..
            } => {
                l.iteration = *iteration;
                l.role = *role;
                l.turn_running = false;
                l.usage = attempt_usage.clone();
            }
            Event::ChecksFinished { passed, failed, .. } => l.checks = Some((*passed, *failed)),
            _ => {}
        }
    }
    live
}

impl RunView {
    /// The view of run `run`, or of the most recent run; `None` if there is no such run.
    pub fn load(store: &Store, run: Option<&str>) -> Result<Option<RunView>, StoreError> {
        let Some(run) = store.run(run)? else {
            return Ok(None);
        };
        let attempts = store.attempts(&run.id)?;
        let events = store.events_since(&run.id, 0)?;
        Ok(Some(RunView {
            phases: store.phases(&run.id)?,
            live: live(&attempts, &events),
            attempts,
            audits: store.audits(&run.id)?,
            run,
        }))
    }
}
