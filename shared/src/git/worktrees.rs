//! Linked worktrees: adding, recycling, removing and listing them.
//!
//! git does not expect two processes to change its records of a repository's worktrees
//! at once: a `git worktree add` that lists the worktrees while another is being added
//! can read that one's half-written `commondir` and die. The orchestrator and every
//! auditor add and recycle worktrees of one repository concurrently, so each change to
//! (and each listing of) those records here holds an exclusive lock on
//! `<common dir>/goalpost/worktrees.lock` for the length of one git command.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{GitError, Oid, Repo};

/// One entry of `git worktree list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    pub path: PathBuf,
    /// `None` for a bare repository or an unborn branch.
    pub head: Option<Oid>,
    /// The checked-out branch (full ref name), `None` when detached.
    pub branch: Option<String>,
    pub detached: bool,
    pub locked: bool,
    pub prunable: bool,
}

/// The lock on a repository's worktree records, released when dropped. `None` when the
/// lock file cannot be opened (a read-only repository): git's own checks are all there is.
pub(super) struct RecordsLock {
    _file: Option<File>,
}

impl Repo {
    /// Waits for, then takes, the lock on this repository's worktree records; an error
    /// when something else holds it past [`crate::lock::wait_limit`]. Not reentrant: one
    /// git command at a time under it.
    pub(super) fn lock_worktree_records(&self) -> Result<RecordsLock, GitError> {
        let dir = self.common_dir().join("goalpost");
        let path = dir.join("worktrees.lock");
        let file = fs::create_dir_all(&dir).and_then(|()| {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        });
        let file = match file {
            Ok(file) => file,
            Err(err) => {
                tracing::warn!("cannot open {}: {err}; not locking", path.display());
                return Ok(RecordsLock { _file: None });
            }
        };
        match crate::lock::exclusive(&file, &path, crate::lock::wait_limit()) {
            Ok(()) => Ok(RecordsLock { _file: Some(file) }),
            Err(crate::lock::LockError::Io { source, .. }) => {
                tracing::warn!("cannot lock {}: {source}; not locking", path.display());
                Ok(RecordsLock { _file: None })
            }
            Err(err @ crate::lock::LockError::Held { .. }) => Err(GitError::Lock(err)),
        }
    }

    pub fn worktree_add_detached(&self, path: &Path, commit: Oid) -> Result<(), GitError> {
        let hex = commit.to_string();
        let args: [&OsStr; 5] = [
            "worktree".as_ref(),
            "add".as_ref(),
            "--detach".as_ref(),
            path.as_os_str(),
            hex.as_ref(),
        ];
        let _lock = self.lock_worktree_records()?;
        self.run_git(self.cli_dir(), args).map(drop)
    }

    /// Removes the linked worktree at `path`. Without `force`, git refuses when it holds
    /// changes (untracked files included).
    pub fn worktree_remove(&self, path: &Path, force: bool) -> Result<(), GitError> {
        let mut args: Vec<&OsStr> = vec!["worktree".as_ref(), "remove".as_ref()];
        if force {
            // Twice: also removes a locked worktree.
            args.extend([OsStr::new("--force"), OsStr::new("--force")]);
        }
        args.push(path.as_os_str());
        let _lock = self.lock_worktree_records()?;
        self.run_git(self.cli_dir(), args).map(drop)
    }

    /// Forgets worktrees whose directories are gone.
    pub fn worktree_prune(&self) -> Result<(), GitError> {
        let _lock = self.lock_worktree_records()?;
        self.run_git(self.cli_dir(), ["worktree", "prune"])
            .map(drop)
    }

    /// Every worktree of the repository, the main one first.
    pub fn worktree_list(&self) -> Result<Vec<Worktree>, GitError> {
        let out = {
            let _lock = self.lock_worktree_records()?;
            self.run_git(self.cli_dir(), ["worktree", "list", "--porcelain", "-z"])?
        };
        let mut list = Vec::new();
        let mut current: Option<Worktree> = None;
        for field in out.split('\0') {
            if field.is_empty() {
                list.extend(current.take());
                continue;
            }
            let (key, value) = field.split_once(' ').unwrap_or((field, ""));
            if key == "worktree" {
                list.extend(current.take());
                current = Some(Worktree {
                    path: PathBuf::from(value),
                    head: None,
                    branch: None,
                    detached: false,
                    locked: false,
                    prunable: false,
                });
                continue;
            }
            let Some(wt) = current.as_mut() else {
                return Err(GitError::Output {
                    command: "git worktree list --porcelain -z".to_owned(),
                    output: out.clone(),
                });
            };
            match key {
                "HEAD" => wt.head = Oid::from_str(value).ok().filter(|o| !o.is_zero()),
                "branch" => wt.branch = Some(value.to_owned()),
                "detached" => wt.detached = true,
                "locked" => wt.locked = true,
                "prunable" => wt.prunable = true,
                _ => {}
            }
        }
        list.extend(current);
        Ok(list)
    }

    /// Makes the pooled worktree now at `path` a checkout of `commit` as `git worktree add`
    /// would, except for untracked files matching `cache_dirs`. Fails, changing nothing, when
    /// the worktree is in an unknown state.
    pub fn worktree_recycle(
        &self,
        path: &Path,
        commit: Oid,
        cache_dirs: &[String],
    ) -> Result<(), GitError> {
        self.worktree_repair(path)?;
        let tree = Repo::open(path)?;
        if tree.common_dir() != self.common_dir() {
            return Err(GitError::NotARepository {
                path: path.to_path_buf(),
            });
        }
        tree.git2()
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|source| GitError::Git2 {
                context: format!("reading the HEAD of {}", path.display()),
                source,
            })?;
        let hex = commit.to_string();
        // `--force` writes only the files that differ from the index (stat data tells which)
        // and throws away anything else in the way.
        self.run_git(path, ["checkout", "--quiet", "--detach", "--force", &hex])?;
        let mut clean: Vec<String> = vec!["clean".into(), "-ffdxq".into()];
        for dir in cache_dirs {
            clean.push("-e".into());
            clean.push(dir.clone());
        }
        self.run_git(path, clean)?;
        Ok(())
    }

    /// Makes the pooled worktree now at `path`, where code under audit ran, a checkout of
    /// `commit` that owes nothing to what ran in it: a fresh index read from `commit`'s tree
    /// (no skip-worktree or assume-unchanged bit, no stat data of the old one), every
    /// tracked file hashed again against it and written anew where it differs, and every
    /// untracked file removed, ignored ones and build caches included. Fails when the
    /// worktree is in an unknown state; the caller then discards it.
    pub fn worktree_recycle_verified(&self, path: &Path, commit: Oid) -> Result<(), GitError> {
        self.worktree_repair(path)?;
        let tree = Repo::open(path)?;
        if tree.common_dir() != self.common_dir() {
            return Err(GitError::NotARepository {
                path: path.to_path_buf(),
            });
        }
        let index = tree.git_dir().join("index");
        match fs::remove_file(&index) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(GitError::Git2 {
                    context: format!("removing the index {}", index.display()),
                    source: git2::Error::from_str(&err.to_string()),
                });
            }
        }
        let hex = commit.to_string();
        self.run_git(path, ["read-tree", &hex])?;
        // The new index has no stat data: git hashes every file to fill it in, and those
        // that differ from `commit` stay stale for the checkout to write.
        self.run_git(path, ["update-index", "-q", "--refresh"])?;
        self.run_git(path, ["checkout", "--quiet", "--detach", "--force", &hex])?;
        self.run_git(path, ["clean", "-ffdxq"])?;
        Ok(())
    }

    /// Points git's record of the linked worktree now at `path` back at it after a rename:
    /// what `git worktree repair <path>` does for a moved worktree, without starting git. The
    /// worktree's `.git` file names its administrative directory, which must be one of this
    /// repository's; that directory's `gitdir` file gets the worktree's new location.
    pub fn worktree_repair(&self, path: &Path) -> Result<(), GitError> {
        let unknown = || GitError::NotARepository {
            path: path.to_path_buf(),
        };
        let root = fs::canonicalize(path).map_err(|_| unknown())?;
        let dotgit = root.join(".git");
        let text = fs::read_to_string(&dotgit).map_err(|_| unknown())?;
        let admin = text
            .trim()
            .strip_prefix("gitdir:")
            .map(|a| root.join(a.trim()))
            .ok_or_else(unknown)?;
        let admin = fs::canonicalize(admin).map_err(|_| unknown())?;
        let worktrees =
            fs::canonicalize(self.common_dir().join("worktrees")).map_err(|_| unknown())?;
        if admin.parent() != Some(worktrees.as_path()) {
            return Err(unknown());
        }
        // Written aside and renamed over, so git never reads a half-written record.
        let _lock = self.lock_worktree_records()?;
        let next = admin.join("gitdir.goalpost-new");
        fs::write(&next, format!("{}\n", dotgit.display())).map_err(|_| unknown())?;
        fs::rename(&next, admin.join("gitdir")).map_err(|_| unknown())
    }
}
