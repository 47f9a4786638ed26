//! The attempts' worktrees: taken from the run's pool when an attempt's first round is
//! dispatched, given back as soon as no worker uses them, and removed at the run's end
//! once their work is on refs.

use goalpost_shared::protocol::HARVEST_DIR;

use super::{AttemptState, ScheduleError, Scheduler};
use crate::crash;
use crate::worktree;

impl<'a> Scheduler<'a> {
    /// The implementers' worktree pool of this run.
    pub(super) fn pool(&self) -> worktree::Pool<'a> {
        worktree::Pool::for_run(self.repo, self.layout, &self.run_id, self.max_parallel())
    }

    /// Attempt `i`'s worktree, through the pool, at its work (its base on the first
    /// round), unless it is there already.
    pub(super) fn make_worktree(&mut self, i: usize) -> Result<(), ScheduleError> {
        if self.attempts[i].worktree.join(".git").exists() {
            return Ok(());
        }
        self.recycle_finished_worktrees();
        let a = &self.attempts[i];
        self.pool()
            .checkout(&a.worktree, a.head.unwrap_or(a.base))?;
        self.adopt_index(i)?;
        crash::point("worktree made");
        Ok(())
    }

    /// Attempt `i`'s harvest starts from the index its worktree was just checked out with.
    pub(super) fn adopt_index(&self, i: usize) -> Result<(), ScheduleError> {
        let a = &self.attempts[i];
        self.repo
            .worktree_view(&a.worktree, &a.dir.join(HARVEST_DIR))
            .adopt_index()?;
        Ok(())
    }

    /// The worktrees of attempts no worker is using, and none will until a next round
    /// checks one out again (a candidate under audit or at the gate, merged, lost, or
    /// stopped for good), go back to the pool for the next attempts; `release` keeps any
    /// that holds work not on its attempt's ref.
    fn recycle_finished_worktrees(&self) {
        let pool = self.pool();
        for a in &self.attempts {
            let done = !matches!(
                a.state,
                AttemptState::Working | AttemptState::Interrupted { .. }
            );
            if done && a.worktree.join(".git").exists() {
                let released = pool.release(&a.worktree, &a.dir.join(HARVEST_DIR), &a.ref_name);
                tracing::debug!(worktree = %a.worktree.display(), ?released, "recycling");
            }
        }
    }

    /// Removes the worktrees whose work is on refs; keeps (and names) any that is not.
    pub(super) fn cleanup_worktrees(&mut self) {
        for a in &self.attempts {
            if !a.worktree.exists() {
                continue;
            }
            let on_ref = match self.repo.ref_target(&a.ref_name) {
                Ok(on_ref) => on_ref.unwrap_or(a.base),
                Err(e) => {
                    eprintln!("warning: kept {}: {e}", a.worktree.display());
                    continue;
                }
            };
            let view = self
                .repo
                .worktree_view(&a.worktree, &a.dir.join(HARVEST_DIR));
            match view.changes_from(on_ref).map(|c| !c.is_empty()) {
                // Its work is on its ref: the directory goes here, git's record of it with
                // the one prune below, not one `git worktree remove` per attempt.
                Ok(false) => {
                    if let Err(e) = std::fs::remove_dir_all(&a.worktree) {
                        eprintln!("warning: could not remove {}: {e}", a.worktree.display());
                    }
                }
                Ok(true) => eprintln!(
                    "warning: kept {}: it holds changes not on {}",
                    a.worktree.display(),
                    a.ref_name
                ),
                Err(e) => eprintln!("warning: kept {}: {e}", a.worktree.display()),
            }
        }
        self.pool().drain();
        worktree::drain_dir(
            self.repo,
            &worktree::audit_pool(self.layout, &self.run_id, self.max_parallel()).dir,
        );
        // Folders left empty go too; `remove_dir` refuses any that is not.
        let _ = std::fs::remove_dir(self.layout.worktree_root.join(&self.run_id));
        let _ = std::fs::remove_dir(&self.layout.worktree_root);
        let _ = self.repo.worktree_prune();
    }
}
