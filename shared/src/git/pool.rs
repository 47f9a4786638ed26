//! A pool of idle linked worktrees of one repository, waiting in a directory of their own
//! to be checked out again at another commit instead of added anew. Moving a worktree
//! costs what differs between two commits; adding one costs the whole tree.
//!
//! A worktree is taken by renaming it to where it is wanted (a rename is atomic: whoever
//! renames an idle worktree first owns it), re-registered, and moved to its commit with
//! [`Repo::worktree_recycle`]; one that cannot be (git no longer knows it, it belongs to
//! another repository, its HEAD cannot be read) is removed, never reused. A worktree is
//! put back by renaming it into the pool's directory while the pool has room. What may
//! enter a pool (whose work must be on a ref first) is the caller's rule; this is only the
//! mechanism the attempts' pool and the auditors' pool share.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Oid, Repo};

/// What became of a worktree put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// It waits in the pool.
    Pooled,
    /// The pool is off or full: it is where it was.
    NoRoom,
    /// It could not be registered again in the pool, and was removed.
    Discarded,
}

/// One pool of one repository's worktrees.
#[derive(Debug, Clone)]
pub struct WorktreePool<'r> {
    repo: &'r Repo,
    dir: PathBuf,
    /// Idle worktrees kept at most; 0 turns pooling off.
    size: usize,
    /// gitignore-style patterns of untracked directories a recycled worktree keeps.
    cache_dirs: Vec<String>,
    /// Whether a worktree taken is brought back with [`Repo::worktree_recycle_verified`]
    /// (and keeps no cache directory) rather than [`Repo::worktree_recycle`].
    verified: bool,
}

impl<'r> WorktreePool<'r> {
    pub fn new(repo: &'r Repo, dir: PathBuf, size: usize, cache_dirs: Vec<String>) -> Self {
        WorktreePool {
            repo,
            dir,
            size,
            cache_dirs,
            verified: false,
        }
    }

    /// The same pool, whose worktrees held code under audit: each one taken gets a fresh
    /// index, every tracked file is verified by hash and nothing untracked is kept, cache
    /// directories included.
    pub fn verified(mut self) -> Self {
        self.verified = true;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Idle worktrees waiting in the pool, in name order.
    pub fn idle(&self) -> Vec<PathBuf> {
        let mut idle: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        idle.sort();
        idle
    }

    /// Moves an idle worktree to `path` (which must not exist; its parent must) and checks
    /// it out at `commit`, with exactly `commit`'s files apart from untracked files in the
    /// cache directories. False when the pool is off or has no worktree it could reuse;
    /// every one it could not reuse is removed.
    pub fn take(&self, path: &Path, commit: Oid) -> bool {
        if self.size == 0 {
            return false;
        }
        for entry in self.idle() {
            if fs::rename(&entry, path).is_err() {
                continue;
            }
            let recycled = if self.verified {
                self.repo.worktree_recycle_verified(path, commit)
            } else {
                self.repo.worktree_recycle(path, commit, &self.cache_dirs)
            };
            match recycled {
                Ok(()) => return true,
                Err(err) => {
                    tracing::warn!("not reusing pooled worktree {}: {err}", entry.display());
                    discard(self.repo, path);
                }
            }
        }
        false
    }

    /// Puts the disposable worktree at `path` into the pool when it has room; an error
    /// when it could not be moved there (it is where it was).
    pub fn put(&self, path: &Path) -> Result<Put, String> {
        if self.size == 0 || self.idle().len() >= self.size {
            return Ok(Put::NoRoom);
        }
        fs::create_dir_all(&self.dir)
            .map_err(|err| format!("creating {}: {err}", self.dir.display()))?;
        let slot = self.dir.join(slot_name());
        fs::rename(path, &slot).map_err(|err| format!("moving it into the pool: {err}"))?;
        if let Err(err) = self.repo.worktree_repair(&slot) {
            // The caller put it here as disposable: nothing is lost with it.
            tracing::warn!("could not pool {}: {err}", path.display());
            discard(self.repo, &slot);
            return Ok(Put::Discarded);
        }
        Ok(Put::Pooled)
    }

    /// Removes every idle worktree of the pool, and the pool's directory once empty.
    pub fn drain(&self) {
        drain_dir(self.repo, &self.dir);
    }
}

/// Removes every worktree in `dir` (a pool's directory), then `dir` itself: every pooled
/// worktree is disposable, so the directories go and git forgets them with one prune.
pub fn drain_dir(repo: &Repo, dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Err(err) = fs::remove_dir_all(entry.path()) {
            tracing::warn!("could not remove {}: {err}", entry.path().display());
        }
    }
    // Refuses a directory something was put in meanwhile; that one goes with the next drain.
    let _ = fs::remove_dir(dir);
    if let Err(err) = repo.worktree_prune() {
        tracing::warn!("could not prune the worktree records: {err}");
    }
}

/// Removes a worktree that is disposable (its work is on a ref, or it was never anyone's):
/// `git worktree remove --force`, or when git cannot, the directory and a prune.
pub fn discard(repo: &Repo, path: &Path) {
    if repo.worktree_remove(path, true).is_ok() {
        return;
    }
    if let Err(err) = fs::remove_dir_all(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {err}", path.display());
    }
    if let Err(err) = repo.worktree_prune() {
        tracing::warn!("could not prune the worktree records: {err}");
    }
}

/// A name no other slot of any pool has: the process and the time in nanoseconds.
fn slot_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}
