//! `goalpost status`: where the last run (or a named one) stands; with `--watch`, then
//! every event of the run as it is recorded, until the run ends.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use goalpost_orchestrator::lock::{self, RunLock};
use goalpost_orchestrator::report;
use goalpost_orchestrator::reporter::{JsonLines, PlainLines, Reporter};
use goalpost_shared::exit::ExitCode;
use goalpost_state::{Event, RunState, Store};

use super::open_run;
use crate::cli::StatusArgs;
use crate::error::Error;

/// How often `--watch` looks for new events.
const WATCH_POLL: Duration = Duration::from_millis(250);

pub fn run(args: &StatusArgs, dir: &Path) -> Result<ExitCode, Error> {
    let (store, view, ws) = open_run(dir, args.run.as_deref())?;
    {
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &view).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", report::status_text(&view))?;
        }
        out.flush()?;
    }
    if args.watch && view.run.state == RunState::Active {
        let lock_file = RunLock::path_in(&ws.layout.state_dir);
        let mut reporter: Box<dyn Reporter> = if args.json {
            Box::new(JsonLines)
        } else {
            Box::new(PlainLines)
        };
        watch(&store, &view.run.id, &lock_file, reporter.as_mut())?;
    }
    Ok(ExitCode::Complete)
}

/// Tells `reporter` each event of run `run` recorded from now on, until the run ends: its
/// end is recorded, or no live process holds its lock any more (it was killed; `goalpost
/// resume` goes on).
fn watch(
    store: &Store,
    run: &str,
    lock_file: &Path,
    reporter: &mut dyn Reporter,
) -> Result<(), Error> {
    let err = goalpost_orchestrator::run_cmd::RunError::from;
    let mut seen = store
        .events_since(run, 0)
        .map_err(err)?
        .last()
        .map_or(0, |r| r.seq);
    loop {
        // Whether the run still goes on is read before its events, so the events of a run
        // that ended meanwhile are all told before the watch ends.
        let alive = lock::holder(lock_file)
            .is_some_and(|(holder, pid)| holder == run && lock::process_alive(pid));
        for record in store.events_since(run, seen).map_err(err)? {
            seen = record.seq;
            reporter.report(&record);
            if matches!(record.event, Event::RunEnded { .. }) {
                return Ok(());
            }
        }
        if !alive {
            eprintln!("run {run} is no longer running; `goalpost resume` goes on with it");
            return Ok(());
        }
        std::thread::sleep(WATCH_POLL);
    }
}
