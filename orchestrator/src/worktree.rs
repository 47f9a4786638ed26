//! The worktree pool: attempts get their worktrees from here, and give them back when
//! their work is on their refs, so the next attempt starts from a recycled worktree moved
//! to its base commit instead of a fresh `git worktree add`. Moving costs what differs
//! between the two commits; adding costs the whole tree. Untracked files of the previous
//! attempt are removed, except the configured cache directories (`target/` by default),
//! so builds in the checks stay incremental.
//!
//! Idle worktrees wait in a directory of the run's (`<worktree root>/<run>/pool/`) and
//! are taken by renaming them to the attempt's path, then re-registered with `git worktree
//! repair`. What may enter the pool, and what may leave it:
//!
//! - a worktree goes back only when its HEAD is on its attempt's ref (the ref's commit or
//!   an ancestor of it) and it holds no change git would see (tracked or untracked files
//!   that are not ignored): no work is ever destroyed by recycling it;
//! - a pooled worktree that git no longer knows, that belongs to another repository, or
//!   whose HEAD cannot be read is in an unknown state: it is removed, never reused.
//!
//! The auditor has a pool of its own (`<worktree root>/<run>/audit-pool/`), which only
//! auditors write in; no implementer's worktree ever enters it. A run's pools are emptied
//! when the run ends.
//!
//! Pool size and cache directories are read from the environment:
//! `GOALPOST_POOL_SIZE` (idle worktrees kept per pool; 0 turns pooling off) and
//! `GOALPOST_POOL_CACHE_DIRS` (comma-separated gitignore-style patterns, default
//! `target/`; empty keeps nothing untracked). A pool keeps, by default, as many idle
//! worktrees as the plan runs jobs at once (`max_parallel`, and at least 8): a smaller one
//! would remove worktrees as a wave of attempts or audits ends only to add them again
//! for the next wave, writing the whole tree each time.

use std::path::{Path, PathBuf};

use goalpost_shared::git::pool::{Put, WorktreePool};
use goalpost_shared::git::{GitError, Oid, Repo};
use goalpost_shared::protocol::PoolSpec;

use crate::layout::Layout;

/// Idle worktrees a pool keeps at least when `GOALPOST_POOL_SIZE` is not set (the plan's
/// `max_parallel` when that is more).
pub const DEFAULT_POOL_SIZE: usize = 8;

/// Untracked directories a recycled worktree keeps when `GOALPOST_POOL_CACHE_DIRS` is
/// not set.
pub const DEFAULT_CACHE_DIRS: &[&str] = &["target/"];

/// How big a pool is and what a recycled worktree keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle worktrees kept at most; 0: every worktree is added fresh and removed after.
    pub size: usize,
    /// gitignore-style patterns of untracked directories kept when recycling.
    pub cache_dirs: Vec<String>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: DEFAULT_POOL_SIZE,
            cache_dirs: DEFAULT_CACHE_DIRS.iter().map(|d| (*d).to_owned()).collect(),
        }
    }
}

impl PoolConfig {
    /// The configuration `GOALPOST_POOL_SIZE` and `GOALPOST_POOL_CACHE_DIRS` give, with
    /// the defaults for what they leave out (or set to something unreadable) for a run of
    /// `max_parallel` jobs at once.
    pub fn from_env(max_parallel: usize) -> PoolConfig {
        let mut config = PoolConfig {
            size: DEFAULT_POOL_SIZE.max(max_parallel),
            ..PoolConfig::default()
        };
        if let Some(size) = std::env::var("GOALPOST_POOL_SIZE")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            config.size = size;
        }
        if let Ok(dirs) = std::env::var("GOALPOST_POOL_CACHE_DIRS") {
            config.cache_dirs = dirs
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
        }
        config
    }
}

/// How a worktree was made ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// A pooled worktree, moved to the commit.
    Recycled,
    /// A new worktree (`git worktree add`).
    Added,
}

/// What became of a worktree given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// It waits in the pool for the next attempt.
    Pooled,
    /// The pool was full (or off): it was removed.
    Removed,
    /// It was left where it is, for the reason given: it may hold work not on its ref.
    Kept(String),
}

/// The attempts' pool of one run (see [`WorktreePool`] for the mechanism): what enters it
/// must have its work on its attempt's ref.
#[derive(Debug)]
pub struct Pool<'r> {
    repo: &'r Repo,
    pool: WorktreePool<'r>,
    config: PoolConfig,
}

impl<'r> Pool<'r> {
    /// A pool whose idle worktrees live in `dir`.
    pub fn new(repo: &'r Repo, dir: PathBuf, config: PoolConfig) -> Pool<'r> {
        let pool = WorktreePool::new(repo, dir, config.size, config.cache_dirs.clone());
        Pool { repo, pool, config }
    }

    /// The implementers' pool of `run` of `max_parallel` jobs at once, configured from the
    /// environment.
    pub fn for_run(repo: &'r Repo, layout: &Layout, run: &str, max_parallel: usize) -> Pool<'r> {
        Pool::new(
            repo,
            pool_dir(layout, run),
            PoolConfig::from_env(max_parallel),
        )
    }

    /// Idle worktrees waiting in the pool.
    pub fn idle(&self) -> Vec<PathBuf> {
        self.pool.idle()
    }

    /// A worktree at `path` (which must not exist; its parent must) with a detached HEAD
    /// at `commit` and exactly `commit`'s files, apart from untracked files in the cache
    /// directories: a pooled one moved there when the pool has one in a known state, else
    /// a new one.
    pub fn checkout(&self, path: &Path, commit: Oid) -> Result<Ready, GitError> {
        if self.pool.take(path, commit) {
            return Ok(Ready::Recycled);
        }
        self.repo.worktree_add_detached(path, commit)?;
        Ok(Ready::Added)
    }

    /// Gives back the worktree at `path` of the attempt whose work is on `attempt_ref`
    /// (and whose own index of it is in `harvest_dir`): pooled when its work is safe on
    /// the ref and the pool has room, removed when it is safe and the pool is full, kept
    /// otherwise.
    pub fn release(&self, path: &Path, harvest_dir: &Path, attempt_ref: &str) -> Released {
        let cache_dirs = &self.config.cache_dirs;
        if let Err(why) = work_is_on_ref(self.repo, path, harvest_dir, attempt_ref, cache_dirs) {
            return Released::Kept(why);
        }
        match self.pool.put(path) {
            Ok(Put::Pooled) => Released::Pooled,
            Ok(Put::Discarded) => Released::Removed,
            Ok(Put::NoRoom) => match self.repo.worktree_remove(path, true) {
                Ok(()) => Released::Removed,
                Err(err) => Released::Kept(err.to_string()),
            },
            Err(why) => Released::Kept(why),
        }
    }

    /// Removes every idle worktree of the pool, and the pool's directory once empty.
    pub fn drain(&self) {
        self.pool.drain();
    }
}

/// Where the implementers' pool of `run` keeps its idle worktrees.
pub fn pool_dir(layout: &Layout, run: &str) -> PathBuf {
    layout.worktree_root.join(run).join("pool")
}

/// The auditor's pool of `run` of `max_parallel` jobs at once: its own directory, next to
/// the implementers' but never shared with them. It keeps no cache directory: what one
/// candidate's build left there must not meet the next candidate's checks.
pub fn audit_pool(layout: &Layout, run: &str, max_parallel: usize) -> PoolSpec {
    let config = PoolConfig::from_env(max_parallel);
    PoolSpec {
        dir: layout.worktree_root.join(run).join("audit-pool"),
        size: config.size,
        cache_dirs: Vec::new(),
    }
}

pub use goalpost_shared::git::pool::drain_dir;

/// Why the worktree at `path` may hold work that is not on `attempt_ref`, if it may. The
/// worktree is read as files only, against the ref's tree, through the attempt's own
/// index in `harvest_dir`; nothing of its git links or metadata is followed.
fn work_is_on_ref(
    repo: &Repo,
    path: &Path,
    harvest_dir: &Path,
    attempt_ref: &str,
    cache_dirs: &[String],
) -> Result<(), String> {
    let on_ref = repo
        .ref_target(attempt_ref)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{attempt_ref} does not exist"))?;
    let changes = repo
        .worktree_view(path, harvest_dir)
        .changes_from(on_ref)
        .map_err(|e| e.to_string())?;
    // Untracked files in the cache directories stay with the recycled worktree: they are
    // never lost with it.
    let first = changes.tracked.iter().chain(
        changes
            .untracked
            .iter()
            .filter(|p| !cache_dirs.iter().any(|d| in_cache_dir(p, d))),
    );
    if let Some(path) = first.into_iter().next() {
        return Err(format!("it holds changes not on {attempt_ref} ({path})"));
    }
    Ok(())
}

/// Whether repository-relative `path` is inside the cache directory `pattern`: `target/`
/// (any directory of that name), `/target/` or `build/cache/` (from the root).
fn in_cache_dir(path: &str, pattern: &str) -> bool {
    let dir = pattern.trim_end_matches('/');
    if let Some(anchored) = dir.strip_prefix('/') {
        return path
            .strip_prefix(anchored)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    if dir.contains('/') {
        return path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    path.split('/')
        .rev()
        .skip(1)
        .any(|component| component == dir)
}

#[cfg(test)]
mod tests;
