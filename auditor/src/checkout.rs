//! The auditor's own checkout of the candidate: a fresh linked worktree at a path the
//! orchestrator chose and nobody else has used, with every protected path put back to its
//! state at the base commit before anything runs in it, so the work being verified cannot
//! have changed the verification.
//!
//! The worktree is removed when the [`Checkout`] is dropped, on error paths too.
//!
//! # The auditor's pool
//!
//! With a [`PoolSpec`] from the orchestrator, a finished checkout is not removed but moved
//! into the pool's directory, and the next audit takes it from there instead of adding a
//! worktree: it is renamed to the new audit's path (a rename is atomic, so two auditors
//! never take the same one), re-registered with `git worktree repair`, moved to the
//! candidate with a fresh index (no skip-worktree or assume-unchanged bit of the last
//! audit's checks survives), every tracked file hashed again and written where it differs,
//! and every untracked file removed, ignored files and build caches included: the pool
//! keeps no cache directory, so no artifact of one candidate's build meets the next. Only
//! auditors write in that directory; no implementer's worktree ever enters it, so an agent
//! cannot leave anything there for a later audit to run on. A pooled worktree that git
//! does not know any more, or whose HEAD cannot be read, is removed, never reused.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use goalpost_shared::boundary::BoundaryRules;
use goalpost_shared::git::pool::{Put, WorktreePool};
use goalpost_shared::git::{EntryMode, GitError, Oid, PathChange, Repo};
use goalpost_shared::protocol::PoolSpec;

use crate::protected::ProtectedFiles;

/// Why the candidate could not be checked out as the audit needs it.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(
        "the audit worktree {} already exists; the auditor only checks out into a path \
         nobody has used (give the input a fresh `worktree`)",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("checking out the candidate: {0}")]
    Git(#[from] GitError),
    #[error("restoring protected path {path} in {}: {source}", .worktree.display())]
    Restore {
        path: String,
        worktree: PathBuf,
        source: io::Error,
    },
    #[error("protected path {0} is not a plain relative path")]
    BadPath(String),
}

/// A linked worktree of the candidate that exists as long as this value does.
#[derive(Debug)]
pub struct Checkout<'r> {
    repo: &'r Repo,
    path: PathBuf,
    removed: bool,
    /// Where [`Checkout::remove`] puts the worktree back instead of removing it.
    pool: Option<PoolSpec>,
}

impl<'r> Checkout<'r> {
    /// Adds a detached worktree of `commit` at `path`, which must not exist yet: an
    /// existing directory could be someone else's (the implementer's), and reusing it would
    /// verify whatever happens to be in it.
    pub fn create(repo: &'r Repo, path: &Path, commit: Oid) -> Result<Checkout<'r>, CheckoutError> {
        if fs::symlink_metadata(path).is_ok() {
            return Err(CheckoutError::Exists(path.to_path_buf()));
        }
        // A worktree of an earlier audit whose directory is gone but still registered
        // makes `git worktree add` refuse the path: prune, then try once more. Pruning
        // before every add would race with other processes adding worktrees to the same
        // repository (another audit, an attempt): git prunes an entry it is still creating.
        if repo.worktree_add_detached(path, commit).is_err() {
            repo.worktree_prune()?;
            repo.worktree_add_detached(path, commit)?;
        }
        Ok(Checkout {
            repo,
            path: path.to_path_buf(),
            removed: false,
            pool: None,
        })
    }

    /// Like [`Checkout::create`], but takes a worktree from `pool` when it holds one (see
    /// the module docs) and gives it back on [`Checkout::remove`].
    pub fn create_pooled(
        repo: &'r Repo,
        path: &Path,
        commit: Oid,
        pool: Option<&PoolSpec>,
    ) -> Result<Checkout<'r>, CheckoutError> {
        let Some(pool) = pool.filter(|p| p.size > 0) else {
            return Checkout::create(repo, path, commit);
        };
        if fs::symlink_metadata(path).is_ok() {
            return Err(CheckoutError::Exists(path.to_path_buf()));
        }
        if worktree_pool(repo, pool).take(path, commit) {
            return Ok(Checkout {
                repo,
                path: path.to_path_buf(),
                removed: false,
                pool: Some(pool.clone()),
            });
        }
        let mut checkout = Checkout::create(repo, path, commit)?;
        checkout.pool = Some(pool.clone());
        Ok(checkout)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the auditor the author of every protected file: the protected paths the
    /// candidate touched are put back as at `base` (see [`Checkout::restore_protected`]),
    /// and every other protected file of `base` in `protected` is written again from its
    /// verified blob, so nothing a pooled checkout or the checkout itself left there
    /// counts. Returns the paths the candidate had touched, sorted.
    pub fn own_protected(
        &self,
        base: Oid,
        changes: &[PathChange],
        rules: &BoundaryRules,
        protected: &ProtectedFiles,
    ) -> Result<Vec<String>, CheckoutError> {
        let restored = self.restore_protected(base, changes, rules)?;
        for file in &protected.files {
            if restored.binary_search(&file.path).is_err() {
                self.restore(base, &file.path)?;
            }
        }
        Ok(restored)
    }

    /// Puts every protected path the candidate touched back as it is at `base`: changed
    /// files get their base content and mode, files the candidate added are removed, files
    /// it deleted or renamed away come back. Paths the candidate did not touch are already
    /// as at base. Returns the restored paths, sorted.
    pub fn restore_protected(
        &self,
        base: Oid,
        changes: &[PathChange],
        rules: &BoundaryRules,
    ) -> Result<Vec<String>, CheckoutError> {
        let mut restored: Vec<String> = changes
            .iter()
            .flat_map(PathChange::paths)
            .filter(|path| rules.is_protected(path))
            .map(str::to_owned)
            .collect();
        restored.sort();
        restored.dedup();
        for path in &restored {
            self.restore(base, path)?;
        }
        Ok(restored)
    }

    fn restore(&self, base: Oid, path: &str) -> Result<(), CheckoutError> {
        let relative = plain_relative(path)?;
        let error = |source| CheckoutError::Restore {
            path: path.to_owned(),
            worktree: self.path.clone(),
            source,
        };
        let target = self.path.join(&relative);
        let mode = mode_at(self.repo, base, path)?;
        let is_dir = fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
        if is_dir && matches!(mode, Some(EntryMode::Tree | EntryMode::Submodule)) {
            return Ok(()); // Already a directory; its protected contents are restored one by one.
        }
        remove_entry(&target).map_err(error)?;
        let Some(mode) = mode else {
            return Ok(()); // Not in the base: the candidate added it; removed is restored.
        };
        make_parent_dirs(&self.path, &relative).map_err(error)?;
        match mode {
            EntryMode::Submodule | EntryMode::Tree => fs::create_dir(&target).map_err(error)?,
            EntryMode::Absent => {}
            EntryMode::File | EntryMode::Executable | EntryMode::Symlink => {
                let content = self.repo.read_blob_at(base, path)?.unwrap_or_default();
                if mode == EntryMode::Symlink {
                    let link = String::from_utf8_lossy(&content).into_owned();
                    std::os::unix::fs::symlink(link, &target).map_err(error)?;
                } else {
                    fs::write(&target, content).map_err(error)?;
                    let bits = if mode == EntryMode::Executable {
                        0o755
                    } else {
                        0o644
                    };
                    fs::set_permissions(&target, fs::Permissions::from_mode(bits))
                        .map_err(error)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the worktree now, reporting failure (dropping does the same silently).
    pub fn remove(mut self) -> Result<(), CheckoutError> {
        self.removed = true;
        match self.pool.take() {
            Some(pool) => release(self.repo, &self.path, &pool),
            None => remove_worktree(self.repo, &self.path),
        }
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if !self.removed
            && let Err(err) = remove_worktree(self.repo, &self.path)
        {
            tracing::warn!("could not remove the audit worktree: {err}");
        }
    }
}

/// The pool `spec` names, over `repo`.
fn worktree_pool<'r>(repo: &'r Repo, spec: &PoolSpec) -> WorktreePool<'r> {
    // The checks ran the candidate's code in every pooled checkout: nothing of it may
    // carry over, so no cache directory is kept whatever the spec says.
    WorktreePool::new(repo, spec.dir.clone(), spec.size, Vec::new()).verified()
}

/// Puts the finished checkout at `path` into the pool, or removes it when the pool is full.
fn release(repo: &Repo, path: &Path, pool: &PoolSpec) -> Result<(), CheckoutError> {
    match worktree_pool(repo, pool).put(path) {
        Ok(Put::Pooled | Put::Discarded) => Ok(()),
        Ok(Put::NoRoom) => remove_worktree(repo, path),
        Err(why) => {
            tracing::warn!("could not pool the audit worktree: {why}");
            remove_worktree(repo, path)
        }
    }
}

/// `git worktree remove --force`, and if git cannot (its metadata is damaged), the
/// directory itself followed by a prune, so no audit leaves a checkout behind.
fn remove_worktree(repo: &Repo, path: &Path) -> Result<(), CheckoutError> {
    if repo.worktree_remove(path, true).is_ok() {
        return Ok(());
    }
    if fs::symlink_metadata(path).is_ok() {
        fs::remove_dir_all(path).map_err(|source| CheckoutError::Restore {
            path: ".".to_owned(),
            worktree: path.to_path_buf(),
            source,
        })?;
    }
    repo.worktree_prune()?;
    Ok(())
}

/// The mode of `path` in `commit`'s tree, `None` when it is not there.
fn mode_at(repo: &Repo, commit: Oid, path: &str) -> Result<Option<EntryMode>, CheckoutError> {
    let git = |source, what: &str| {
        CheckoutError::Git(GitError::Git2 {
            context: format!("{what} {path} in {commit}"),
            source,
        })
    };
    let tree = repo
        .git2()
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| git(e, "reading the tree for"))?;
    match tree.get_path(Path::new(path)) {
        Ok(entry) => Ok(Some(entry_mode(entry.filemode()))),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git(e, "looking up")),
    }
}

/// A tree entry's raw git mode as an [`EntryMode`].
pub(crate) fn entry_mode(raw: i32) -> EntryMode {
    match raw {
        0o100755 => EntryMode::Executable,
        0o120000 => EntryMode::Symlink,
        0o160000 => EntryMode::Submodule,
        0o040000 => EntryMode::Tree,
        _ => EntryMode::File,
    }
}

/// `path` as components that stay inside the worktree: no `..`, no root, no `.git`.
fn plain_relative(path: &str) -> Result<PathBuf, CheckoutError> {
    let relative = PathBuf::from(path);
    let plain = relative.components().all(|c| match c {
        Component::Normal(name) => name != ".git",
        _ => false,
    });
    if plain && !path.is_empty() {
        Ok(relative)
    } else {
        Err(CheckoutError::BadPath(path.to_owned()))
    }
}

/// Removes whatever is at `path` (file, symlink, directory) without following symlinks.
fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        // Nothing there; or a file stands where the path wants a directory (the candidate
        // turned a protected directory into a file, put back before this path): nothing
        // of this path is there either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Makes every parent of `relative` under `root` a real directory. A symlink or file in
/// the way (the candidate replaced a protected directory with a link) is removed, so a
/// restored file is never written through a link to somewhere else.
fn make_parent_dirs(root: &Path, relative: &Path) -> io::Result<()> {
    let mut dir = root.to_path_buf();
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    for component in parent.components() {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => fs::remove_file(&dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir(&dir)?;
    }
    Ok(())
}
