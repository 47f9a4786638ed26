//! Pausing a running run: Ctrl-C (SIGINT) or SIGTERM, or `goalpost pause` from another
//! process through a request file in goalpost's state dir. The first request stops the
//! run at the next safe boundary (running turns finish and are harvested, nothing new
//! starts); a second one, or `--now`, ends the running turns at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// How urgently the run should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pause {
    None = 0,
    /// After the running turns.
    AtBoundary = 1,
    /// Now: running turns are ended, their work harvested.
    Now = 2,
}

/// The run's pause state, shared with the signal-watching thread.
#[derive(Debug)]
pub struct Control {
    level: AtomicU8,
    request_file: PathBuf,
}

/// The file `goalpost pause` writes for the run that holds the repository's lock.
pub fn request_file(state_dir: &Path) -> PathBuf {
    state_dir.join("pause-request")
}

impl Control {
    pub fn new(state_dir: &Path) -> Arc<Control> {
        let file = request_file(state_dir);
        // A request left from an earlier run is not for this one.
        let _ = std::fs::remove_file(&file);
        Arc::new(Control {
            level: AtomicU8::new(Pause::None as u8),
            request_file: file,
        })
    }

    /// Raises the pause level (never lowers it).
    pub fn request(&self, pause: Pause) {
        self.level.fetch_max(pause as u8, Ordering::SeqCst);
    }

    /// The current level, after reading any request `goalpost pause` left.
    pub fn poll(&self) -> Pause {
        if let Ok(text) = std::fs::read_to_string(&self.request_file) {
            let _ = std::fs::remove_file(&self.request_file);
            self.request(if text.trim() == "now" {
                Pause::Now
            } else {
                Pause::AtBoundary
            });
        }
        match self.level.load(Ordering::SeqCst) {
            0 => Pause::None,
            1 => Pause::AtBoundary,
            _ => Pause::Now,
        }
    }

    /// Watches SIGINT and SIGTERM: the first pauses at a safe boundary, the second now.
    pub fn watch_signals(self: &Arc<Self>) {
        let control = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("goalpost-signals".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                        if control.level.load(Ordering::SeqCst) == Pause::None as u8 {
                            eprintln!(
                                "\ngoalpost: pausing after the running turns (interrupt again to stop them now)"
                            );
                            control.request(Pause::AtBoundary);
                        } else {
                            eprintln!("\ngoalpost: stopping the running turns now");
                            control.request(Pause::Now);
                        }
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot watch for Ctrl-C: {e}");
        }
    }
}
