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
    /// What the run's auditor agents spent, over all its audits.
    pub fn audit_usage(&self) -> Usage {
        let mut total = Usage::default();
        for usage in self.audits.iter().filter_map(|a| a.agent_usage.as_ref()) {
            total.add(usage);
        }
        total
    }

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use goalpost_shared::protocol::{AuditReport, Recommendation, Role};

    use super::*;

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The fields the crate's docs list: a change here is a change of the documented
    /// JSON that dashboards read.
    #[test]
    fn the_json_has_the_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        store
            .insert_run("r1", "goal.md", "{}", "/repo", "main", "a", "refs/i")
            .unwrap();
        store.insert_phase("r1", "api", 0).unwrap();
        store
            .insert_attempt("r1", "api", 1, "codex", "/wt", "refs/a")
            .unwrap();
        let report = AuditReport {
            phase: "api".into(),
            base: "a".into(),
            candidate: "c".into(),
            tree: "t".into(),
            recommendation: Recommendation::Merge,
            summary: "ok".into(),
            checks: Vec::new(),
            unverified_checks: Vec::new(),
            violations: Vec::new(),
            claims: Vec::new(),
            changed_paths: Vec::new(),
            cache: Vec::new(),
            base_censuses: Vec::new(),
            setup: None,
            held_out: Vec::new(),
            agent: None,
        };
        store
            .record_audit("r1", Some(1), &report, Path::new("/d"), &[])
            .unwrap();
        store
            .append_event(
                "r1",
                &Event::TurnStarted {
                    phase: "api".into(),
                    attempt: 1,
                    iteration: 1,
                    role: Role::Implementer,
                },
            )
            .unwrap();
        let view = RunView::load(&store, Some("r1")).unwrap().unwrap();
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(keys(&json), ["attempts", "audits", "live", "phases", "run"]);
        assert_eq!(
            keys(&json["run"]),
            [
                "blocker",
                "created_at",
                "id",
                "integration_ref",
                "plan_path",
                "release_branch",
                "release_commit",
                "release_start",
                "state",
                "updated_at",
                "workdir"
            ]
        );
        assert_eq!(
            keys(&json["phases"][0]),
            [
                "base",
                "merged_commit",
                "phase_id",
                "state",
                "why",
                "winner"
            ]
        );
        assert_eq!(
            keys(&json["attempts"][0]),
            [
                "agent",
                "base",
                "candidate",
                "diff_lines",
                "head",
                "iterations",
                "metric",
                "n",
                "outcome",
                "phase_id",
                "ref_name",
                "rounds",
                "state",
                "usage",
                "worktree"
            ]
        );
        assert_eq!(
            keys(&json["attempts"][0]["usage"]),
            [
                "cost_usd",
                "tokens_cached",
                "tokens_in",
                "tokens_out",
                "tool_calls",
                "turns",
                "wall_ms"
            ]
        );
        assert_eq!(
            keys(&json["audits"][0]),
            [
                "agent_usage",
                "attempt",
                "base",
                "candidate",
                "phase_id",
                "recommendation",
                "report_dir",
                "summary",
                "tree"
            ]
        );
        assert_eq!(
            keys(&json["live"][0]),
            [
                "checks",
                "iteration",
                "n",
                "phase_id",
                "role",
                "turn_running",
                "usage"
            ]
        );
        assert_eq!(json["live"][0]["role"], "implementer");
        assert_eq!(json["run"]["state"], "active");
        assert_eq!(json["attempts"][0]["state"], "running");
        assert_eq!(json["audits"][0]["recommendation"], "merge");
    }

    #[test]
    fn there_is_no_view_of_a_run_that_is_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        assert!(RunView::load(&store, None).unwrap().is_none());
        assert!(RunView::load(&store, Some("r1")).unwrap().is_none());
    }
}
