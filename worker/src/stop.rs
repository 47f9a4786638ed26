//! How the worker is told to stop: SIGTERM, SIGINT or SIGHUP end the running agent turn at
//! once (its process group is ended as on a timeout) and no turn starts after it; what the
//! agent wrote so far is still harvested and the result written.
//!
//! Agents lead process groups of their own, so a signal to the worker's group does not
//! reach them: without this, a stopped worker would leave its agent running in the
//! worktree.

use std::io;
use std::sync::{Arc, OnceLock};

use goalpost_shared::process::CancelToken;
use tokio::signal::unix::{SignalKind, signal};

/// Whether, and by which signal, the worker was told to stop.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancelToken,
    signal: Arc<OnceLock<&'static str>>,
}

impl Stop {
    /// A stop that only [`Stop::request`] triggers (tests, and a worker that could not
    /// install its signal handlers).
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Installs the signal handlers and returns the stop they trigger.
    pub fn on_signals() -> io::Result<Stop> {
        let stop = Stop::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered here, before the first turn, so a signal that comes early is not lost.
        let (mut term, mut int, mut hup) = runtime.block_on(async {
            io::Result::Ok((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        let watcher = stop.clone();
        std::thread::Builder::new()
            .name("goalpost-worker-signals".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                        _ = hup.recv() => "SIGHUP",
                    };
                    tracing::warn!("{name}: ending the running turn; no turn starts after it");
                    watcher.request(name);
                });
            })?;
        Ok(stop)
    }

    /// Asks the round to stop, naming why.
    pub fn request(&self, why: &'static str) {
        let _ = self.signal.set(why);
        self.token.cancel();
    }

    /// The token agent turns watch.
    pub fn token(&self) -> &CancelToken {
        &self.token
    }

    /// What stopped the worker, if it was stopped.
    pub fn requested(&self) -> Option<&'static str> {
        if self.token.is_cancelled() {
            Some(self.signal.get().copied().unwrap_or("a stop request"))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_cancels_the_token_and_names_the_signal() {
        let stop = Stop::new();
        assert_eq!(stop.requested(), None);
        stop.request("SIGTERM");
        stop.request("SIGINT");
        assert!(stop.token().is_cancelled());
        assert_eq!(stop.requested(), Some("SIGTERM"));
    }
}
