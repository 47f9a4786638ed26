//! The event log: what a run did, in the order it did it, for a dashboard or a
//! `--progress json` reader to follow while the run goes on. Each event has a sequence
//! number of its run (1, 2, ...), the time it was written and its kind.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use goalpost_shared::protocol::{Recommendation, Role, Usage};

use crate::states::{AttemptStatus, PhaseStatus, RunState};
use crate::store::{Result, Store, StoreError};

/// One thing a run did. In JSON an object whose `kind` names the variant in snake_case
/// (`"run_started"`, `"phase_state_changed"`, ...), beside the variant's fields. Commit,
/// tree and ref names are full hex ids and full ref names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `goalpost run` or `goalpost resume` started the run's scheduler.
    RunStarted {
        /// The goal file, as given.
        plan_path: String,
        /// The branch the run releases to, and the commit it started from.
        release_branch: String,
        release_start: String,
        /// The plan's phase ids, in the plan's order.
        phases: Vec<String>,
        /// A resume of a run that stopped before.
        resumed: bool,
    },
    /// The run stopped: complete, blocked, budget-limited, paused or awaiting approval.
    RunEnded {
        state: RunState,
        /// Why it stopped short of complete.
        blocker: Option<String>,
    },
    /// A phase's dependencies merged: its attempts start on the integration tip `base`.
    PhaseStarted { phase: String, base: String },
    /// A phase's recorded state changed.
    PhaseStateChanged {
        phase: String,
        state: PhaseStatus,
        why: Option<String>,
    },
    /// A worker round of an attempt was queued: its first, or another after a `revise`
    /// audit, a conflict or a resume.
    AttemptRoundStarted {
        phase: String,
        attempt: u32,
        agent: String,
        /// 1 for the first round.
        round: u32,
        /// The iteration the round starts at.
        first_iteration: u32,
        /// The commit the round works on top of.
        base: String,
    },
    /// An agent turn of an iteration started, as its worker reported it.
    TurnStarted {
        phase: String,
        attempt: u32,
        iteration: u32,
        role: Role,
    },
    /// One agent turn of an iteration ended.
    TurnFinished {
        phase: String,
        attempt: u32,
        iteration: u32,
        role: Role,
        /// What the turn used.
        usage: Usage,
        /// What the attempt has used over its whole life, this turn included.
        attempt_usage: Usage,
        /// Why the turn failed, if it did.
        error: Option<String>,
    },
    /// The machine checks of an iteration ran in the attempt's worktree (informational:
    /// the audit's run is the one that counts).
    ChecksFinished {
        phase: String,
        attempt: u32,
        iteration: u32,
        passed: u32,
        failed: u32,
    },
    /// One iteration (implementer turn, harvest, checks, reviewer turn) ended.
    IterationFinished {
        phase: String,
        attempt: u32,
        iteration: u32,
        /// What the iteration's turns used, together.
        usage: Usage,
        /// The commit the iteration harvested, if it changed anything.
        head: Option<String>,
    },
    /// A machine check ran: in a worker's worktree (`attempt` set, informational) or in an
    /// audit (`role` auditor).
    CheckFinished {
        /// The phase, or `None` for the whole-goal audit.
        phase: Option<String>,
        attempt: Option<u32>,
        role: Role,
        command: String,
        passed: bool,
        duration_ms: u64,
    },
    /// A round proposed a candidate; its audit is queued.
    CandidateProposed {
        phase: String,
        attempt: u32,
        candidate: String,
    },
    /// An audit of a candidate, of a merge with the integration tip, of a train of
    /// candidates or of the whole goal was queued.
    AuditStarted {
        purpose: AuditKind,
        /// The phase (the first of a train's), or `None` for the whole-goal audit.
        phase: Option<String>,
        /// The attempt (the first of a train's), or `None` for a whole-goal audit.
        attempt: Option<u32>,
        /// For a train: the phases landing together, in order.
        phases: Vec<String>,
        base: String,
        candidate: String,
    },
    /// An audit ended with its recommendation.
    AuditFinished {
        phase: Option<String>,
        attempt: Option<u32>,
        candidate: String,
        recommendation: Recommendation,
        summary: String,
        /// Where `audit.json` and `audit.md` are.
        report_dir: String,
    },
    /// An attempt stopped short of landing: interrupted (`resume` goes on), blocked, or
    /// stopped by a budget.
    AttemptStopped {
        phase: String,
        attempt: u32,
        state: AttemptStatus,
        why: String,
    },
    /// An audited candidate conflicts with the integration tip in these paths.
    Conflict {
        phase: String,
        attempt: u32,
        paths: Vec<String>,
    },
    /// Several attempts of a `Select: review` phase passed: its reviewer chooses.
    ReviewerChoosing { phase: String, attempts: Vec<u32> },
    /// A phase's winner was chosen, and why.
    WinnerChosen {
        phase: String,
        attempt: u32,
        why: String,
    },
    /// A phase's winner landed on the integration ref as `commit`.
    PhaseMerged {
        phase: String,
        attempt: u32,
        commit: String,
    },
    /// A train of audited candidates landed on the integration ref.
    TrainLanded {
        /// Each landed attempt, in the order they were squashed.
        cars: Vec<TrainCar>,
        old_tip: String,
        new_tip: String,
    },
    /// The release branch moved by compare-and-swap to an audited commit.
    ReleaseMoved {
        branch: String,
        old_tip: String,
        new_tip: String,
    },
    /// A pause was asked for: at once (`now`) or after the running turns.
    Paused { now: bool, why: String },
}

/// What an audit judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An attempt's candidate against its base.
    Candidate,
    /// One candidate's merge with an integration tip that moved.
    Merge,
    /// Several candidates squashed onto the integration tip together.
    Train,
    /// The integration tip against the whole goal.
    Goal,
}

/// One attempt of a landed train.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainCar {
    pub phase: String,
    pub attempt: u32,
    /// Its squash commit on the integration ref.
    pub commit: String,
}

/// An event as the log holds it. In JSON the event's own fields (with `kind`) beside
/// `seq` and `at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event's place in its run's log: 1 for the first, each next one greater.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// Milliseconds since the Unix epoch (0 on a clock before it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Appends `event` to run `run`'s log and returns its sequence number.
    pub fn append_event(&self, run: &str, event: &Event) -> Result<u64> {
        self.append_event_record(run, event).map(|r| r.seq)
    }

    /// Appends `event` to run `run`'s log, like [`Store::append_event`], and gives back the
    /// record as written: its number and time with the event.
    pub fn append_event_record(&self, run: &str, event: &Event) -> Result<EventRecord> {
        let payload = serde_json::to_value(event)?;
        let at_ms = now_ms();
        // The kind is spelt once, by serde's tag.
        let kind = payload
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.conn
            .query_row(
                "INSERT INTO events (run_id, seq, at_ms, kind, payload)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1),
                         ?2, ?3, ?4)
                 RETURNING seq",
                params![run, at_ms, kind, payload.to_string()],
                |r| r.get::<_, i64>(0),
            )
            // Numbered from 1 up: never negative.
            .map(|seq| EventRecord {
                seq: seq as u64,
                at_ms,
                event: event.clone(),
            })
            .map_err(|e| self.err(e))
    }

    /// The events of run `run` after sequence number `seq` (0 for all), in order.
    pub fn events_since(&self, run: &str, seq: u64) -> Result<Vec<EventRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, at_ms, payload FROM events WHERE run_id = ?1 AND seq > ?2
                 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        // SQLite's integers are signed; no run has more than i64::MAX events.
        let after = i64::try_from(seq).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![run, after], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at_ms, payload) = row.map_err(|e| self.err(e))?;
            let event = serde_json::from_str(&payload).map_err(|source| StoreError::Event {
                path: self.path.clone(),
                run: run.to_owned(),
                seq,
                source,
            })?;
            out.push(EventRecord { seq, at_ms, event });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        (dir, store)
    }

    fn phase_changed(phase: &str, state: PhaseStatus) -> Event {
        Event::PhaseStateChanged {
            phase: phase.to_owned(),
            state,
            why: None,
        }
    }

    /// One event of each kind.
    fn every_kind() -> Vec<Event> {
        let usage = Usage {
            tokens_in: 10,
            tokens_out: 5,
            turns: 1,
            ..Usage::default()
        };
        vec![
            Event::RunStarted {
                plan_path: "goal.md".into(),
                release_branch: "main".into(),
                release_start: "a".repeat(40),
                phases: vec!["api".into(), "docs".into()],
                resumed: false,
            },
            phase_changed("api", PhaseStatus::Running),
            Event::AttemptRoundStarted {
                phase: "api".into(),
                attempt: 1,
                agent: "codex".into(),
                round: 1,
                first_iteration: 1,
                base: "a".repeat(40),
            },
            Event::PhaseStarted {
                phase: "api".into(),
                base: "a".repeat(40),
            },
            Event::TurnStarted {
                phase: "api".into(),
                attempt: 1,
                iteration: 1,
                role: Role::Implementer,
            },
            Event::TurnFinished {
                phase: "api".into(),
                attempt: 1,
                iteration: 1,
                role: Role::Implementer,
                usage: usage.clone(),
                attempt_usage: usage.clone(),
                error: None,
            },
            Event::ChecksFinished {
                phase: "api".into(),
                attempt: 1,
                iteration: 1,
                passed: 2,
                failed: 1,
            },
            Event::IterationFinished {
                phase: "api".into(),
                attempt: 1,
                iteration: 1,
                usage,
                head: Some("b".repeat(40)),
            },
            Event::CheckFinished {
                phase: Some("api".into()),
                attempt: Some(1),
                role: Role::Auditor,
                command: "cargo test".into(),
                passed: true,
                duration_ms: 1200,
            },
            Event::CandidateProposed {
                phase: "api".into(),
                attempt: 1,
                candidate: "b".repeat(40),
            },
            Event::AuditStarted {
                purpose: AuditKind::Candidate,
                phase: Some("api".into()),
                attempt: Some(1),
                phases: vec!["api".into()],
                base: "a".repeat(40),
                candidate: "b".repeat(40),
            },
            Event::AttemptStopped {
                phase: "api".into(),
                attempt: 2,
                state: AttemptStatus::BudgetLimited,
                why: "budget turns reached: used 4 of 4".into(),
            },
            Event::Conflict {
                phase: "api".into(),
                attempt: 3,
                paths: vec!["src/lib.rs".into()],
            },
            Event::ReviewerChoosing {
                phase: "api".into(),
                attempts: vec![1, 3],
            },
            Event::WinnerChosen {
                phase: "api".into(),
                attempt: 1,
                why: "the reviewer chose attempt 1".into(),
            },
            Event::PhaseMerged {
                phase: "api".into(),
                attempt: 1,
                commit: "c".repeat(40),
            },
            Event::AuditFinished {
                phase: Some("api".into()),
                attempt: Some(1),
                candidate: "b".repeat(40),
                recommendation: Recommendation::Merge,
                summary: "every check passed".into(),
                report_dir: "/x/audits/api.1-1".into(),
            },
            Event::TrainLanded {
                cars: vec![TrainCar {
                    phase: "api".into(),
                    attempt: 1,
                    commit: "c".repeat(40),
                }],
                old_tip: "a".repeat(40),
                new_tip: "c".repeat(40),
            },
            Event::Paused {
                now: false,
                why: "asked to".into(),
            },
            Event::ReleaseMoved {
                branch: "main".into(),
                old_tip: "a".repeat(40),
                new_tip: "c".repeat(40),
            },
            Event::RunEnded {
                state: RunState::Complete,
                blocker: None,
            },
        ]
    }

    #[test]
    fn events_come_back_in_the_order_they_were_appended_numbered_from_one() {
        let (_dir, store) = store();
        let events = every_kind();
        for (k, e) in events.iter().enumerate() {
            assert_eq!(store.append_event("r1", e).unwrap(), k as u64 + 1);
        }
        let back = store.events_since("r1", 0).unwrap();
        assert_eq!(
            back.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=events.len() as u64).collect::<Vec<_>>()
        );
        assert_eq!(
            back.into_iter().map(|r| r.event).collect::<Vec<_>>(),
            events
        );
    }

    #[test]
    fn events_since_gives_only_the_later_events() {
        let (_dir, store) = store();
        for phase in ["a", "b", "c", "d"] {
            store
                .append_event("r1", &phase_changed(phase, PhaseStatus::Running))
                .unwrap();
        }
        let later = store.events_since("r1", 2).unwrap();
        assert_eq!(later.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(later[0].event, phase_changed("c", PhaseStatus::Running));
        assert!(store.events_since("r1", 4).unwrap().is_empty());
        assert!(store.events_since("r1", u64::MAX).unwrap().is_empty());
    }

    #[test]
    fn each_run_numbers_its_own_events() {
        let (_dir, store) = store();
        let e = phase_changed("a", PhaseStatus::Merged);
        assert_eq!(store.append_event("r1", &e).unwrap(), 1);
        assert_eq!(store.append_event("r2", &e).unwrap(), 1);
        assert_eq!(store.append_event("r1", &e).unwrap(), 2);
        assert_eq!(store.events_since("r1", 0).unwrap().len(), 2);
        assert_eq!(store.events_since("r2", 0).unwrap().len(), 1);
        assert!(store.events_since("r3", 0).unwrap().is_empty());
    }

    #[test]
    fn an_event_records_its_time_and_its_kind_as_its_json_spells_it() {
        let (_dir, store) = store();
        let before = now_ms();
        store
            .append_event("r1", &phase_changed("api", PhaseStatus::Blocked))
            .unwrap();
        let record = store.events_since("r1", 0).unwrap().remove(0);
        assert!(
            record.at_ms >= before && record.at_ms <= now_ms(),
            "{record:?}"
        );
        let kind: String = store
            .conn
            .query_row("SELECT kind FROM events WHERE run_id = 'r1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kind, "phase_state_changed");
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["seq"], 1);
        assert_eq!(json["kind"], "phase_state_changed");
        assert_eq!(json["phase"], "api");
        assert_eq!(json["state"], "blocked");
        let again: EventRecord = serde_json::from_value(json).unwrap();
        assert_eq!(again, record);
    }

    #[test]
    fn an_event_this_version_cannot_read_is_an_error_naming_it() {
        let (_dir, store) = store();
        store
            .conn
            .execute(
                "INSERT INTO events (run_id, seq, at_ms, kind, payload)
                 VALUES ('r1', 1, 0, 'from_the_future', '{\"kind\":\"from_the_future\"}')",
                [],
            )
            .unwrap();
        let err = store.events_since("r1", 0).unwrap_err();
        assert!(matches!(err, StoreError::Event { seq: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("from_the_future"), "{err}");
    }

    #[test]
    fn deleting_a_run_deletes_its_events() {
        let (_dir, store) = store();
        let e = phase_changed("a", PhaseStatus::Merged);
        store.append_event("r1", &e).unwrap();
        store.append_event("r2", &e).unwrap();
        store.delete_run("r1").unwrap();
        assert!(store.events_since("r1", 0).unwrap().is_empty());
        assert_eq!(store.events_since("r2", 0).unwrap().len(), 1);
    }
}
