//! Cancelling runs from another thread.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::{Event, lock};

/// Ends runs from another thread: [`CancelToken::cancel`] makes every [`run`](super::run) watching the
/// token end its child's group as a timeout would. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    state: Mutex<CancelState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    next_id: u64,
    watchers: Vec<(u64, Sender<Event>)>,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels for good; later runs watching the token are ended as soon as they start.
    pub fn cancel(&self) {
        let mut state = lock(&self.inner.state);
        state.cancelled = true;
        for (_, watcher) in state.watchers.drain(..) {
            // A watcher whose run already ended has dropped its receiver; nothing to do.
            let _ = watcher.send(Event::Cancelled);
        }
        self.inner.changed.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        lock(&self.inner.state).cancelled
    }

    /// Waits until cancelled or `timeout` passed; returns whether it is cancelled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let state = lock(&self.inner.state);
        let (state, _) = self
            .inner
            .changed
            .wait_timeout_while(state, timeout, |s| !s.cancelled)
            .unwrap_or_else(PoisonError::into_inner);
        state.cancelled
    }

    pub(super) fn watch(&self, events: Sender<Event>) -> Watch<'_> {
        let mut state = lock(&self.inner.state);
        let id = state.next_id;
        state.next_id += 1;
        if state.cancelled {
            let _ = events.send(Event::Cancelled);
        } else {
            state.watchers.push((id, events));
        }
        Watch { token: self, id }
    }
}

/// Stops a run's watch on a token when the run ends.
pub(super) struct Watch<'a> {
    token: &'a CancelToken,
    id: u64,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        lock(&self.token.inner.state)
            .watchers
            .retain(|(id, _)| *id != self.id);
    }
}
