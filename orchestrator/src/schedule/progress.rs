//! A running round's progress: each worker appends what it does to a file of its private
//! dir ([`PROGRESS_FILE`]); the loop reads what is new on every event and tick and records
//! it in the run's event log, so `status` and a dashboard show a running attempt's
//! iteration, turn and usage while its round goes on. Progress is shown, never used to
//! decide anything: the round's result is what counts.

use std::io::{Read as _, Seek as _, SeekFrom};

use goalpost_shared::protocol::{PROGRESS_FILE, WorkerEvent};

use super::{Purpose, RunEvent, ScheduleError, Scheduler};

impl Scheduler<'_> {
    /// Starts following attempt `i`'s progress from what its file holds now: a new round
    /// reports from here.
    pub(super) fn follow_progress(&mut self, i: usize) {
        let path = self.attempts[i].dir.join(PROGRESS_FILE);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.progress_read.insert(i, len);
    }

    /// Records what every running worker reported since the last look.
    pub(super) fn read_progress(&mut self) -> Result<(), ScheduleError> {
        let running: Vec<usize> = self
            .running
            .values()
            .filter_map(|p| match p {
                Purpose::Worker { attempt } => Some(*attempt),
                _ => None,
            })
            .collect();
        for i in running {
            for event in self.new_progress(i) {
                let event = self.progress_event(i, event);
                self.report(event)?;
            }
        }
        Ok(())
    }

    /// The complete lines attempt `i`'s worker appended since the last look; a line it is
    /// still writing waits for the next.
    fn new_progress(&mut self, i: usize) -> Vec<WorkerEvent> {
        let path = self.attempts[i].dir.join(PROGRESS_FILE);
        let from = self.progress_read.get(&i).copied().unwrap_or(0);
        let mut text = String::new();
        let read = std::fs::File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_string(&mut text)
        });
        if read.is_err() {
            return Vec::new();
        }
        let Some(end) = text.rfind('\n') else {
            return Vec::new();
        };
        self.progress_read.insert(i, from + end as u64 + 1);
        text[..end]
            .lines()
            .filter_map(|line| match serde_json::from_str(line) {
                Ok(event) => Some(event),
                Err(err) => {
                    tracing::warn!("a progress line of {} is not valid: {err}", path.display());
                    None
                }
            })
            .collect()
    }

    /// A worker's report as the run's event of attempt `i`.
    fn progress_event(&self, i: usize, event: WorkerEvent) -> RunEvent {
        let (phase, attempt) = self.key(i);
        match event {
            WorkerEvent::TurnStarted { iteration, role } => RunEvent::TurnStarted {
                phase,
                attempt,
                iteration,
                role,
            },
            WorkerEvent::TurnFinished {
                iteration,
                role,
                usage,
                round_usage,
                error,
            } => {
                let mut attempt_usage = self.attempts[i].usage.clone();
                attempt_usage.add(&round_usage);
                RunEvent::TurnFinished {
                    phase,
                    attempt,
                    iteration,
                    role,
                    usage,
                    attempt_usage,
                    error,
                }
            }
            WorkerEvent::ChecksFinished {
                iteration,
                passed,
                failed,
            } => RunEvent::ChecksFinished {
                phase,
                attempt,
                iteration,
                passed,
                failed,
            },
        }
    }
}
