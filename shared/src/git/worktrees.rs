//! Linked worktrees: adding, recycling, removing and listing them.
//!
//! git does not expect two processes to change its records of a repository's worktrees
//! at once: a `git worktree add` that lists the worktrees while another is being added
//! can read that one's half-written `commondir` and die. The orchestrator and every
//! auditor add and recycle worktrees of one repository concurrently, so each change to
//! (and each listing of) those records here holds an exclusive lock on
//! `<common dir>/goalpost/worktrees.lock` for the length of one git command.

use std::ffi::{OsStr, OsString};
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
        let admin = self
            .worktree_admin_dir(path)
            .ok_or_else(|| GitError::NotARepository {
                path: path.to_path_buf(),
            })?;
        // git runs on the common dir and the worktree's files, never through the
        // worktree's `.git` file or private git dir (whose config an agent may have
        // written); the worktree's index only tells which files already match.
        let mut git_dir = OsString::from("--git-dir=");
        git_dir.push(self.common_dir());
        let mut work_tree = OsString::from("--work-tree=");
        work_tree.push(path);
        let env = [(OsString::from("GIT_INDEX_FILE"), admin.join("index").into())];
        let hex = commit.to_string();
        // `--reset -u` writes only the files that differ from the index (stat data tells
        // which) and throws away anything else in the way.
        let mut read_tree: Vec<OsString> = vec![git_dir.clone(), work_tree.clone()];
        read_tree.extend(["read-tree", "--reset", "-u", &hex].map(OsString::from));
        self.run_git_with(path, &env, read_tree)?;
        let mut clean: Vec<OsString> = vec![git_dir, work_tree];
        clean.extend(["clean", "-ffdxq"].map(OsString::from));
        for dir in cache_dirs {
            clean.push("-e".into());
            clean.push(dir.into());
        }
        self.run_git_with(path, &env, clean)?;
        let head = admin.join("HEAD");
        super::quarantine::replace_file(&head, format!("{hex}\n").as_bytes()).map_err(|source| {
            GitError::Io {
                what: format!("writing {}", head.display()),
                source,
            }
        })
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
        let (root, admin) = self.admin_dir_named(path).ok_or_else(unknown)?;
        let dotgit = root.join(".git");
        // Written aside and renamed over, so git never reads a half-written record.
        let _lock = self.lock_worktree_records()?;
        let next = admin.join("gitdir.goalpost-new");
        let _ = fs::remove_file(&next);
        fs::write(&next, format!("{}\n", dotgit.display())).map_err(|_| unknown())?;
        fs::rename(&next, admin.join("gitdir")).map_err(|_| unknown())
    }

    /// The private git dir of the linked worktree at `path` (`<common>/worktrees/<name>`),
    /// when its `.git` file names one of this repository's and that one's `gitdir` names
    /// this worktree back. Only ever a place to write to (HEAD and index for the agents'
    /// own git); nothing read from it is trusted.
    pub fn worktree_admin_dir(&self, path: &Path) -> Option<PathBuf> {
        let (root, admin) = self.admin_dir_named(path)?;
        let back = fs::read_to_string(admin.join("gitdir")).ok()?;
        let back = fs::canonicalize(back.trim()).ok()?;
        (back == root.join(".git")).then_some(admin)
    }

    /// The commit the linked worktree at `path` has checked out, read from its private git
    /// dir's `HEAD` as data (a commit id, or a ref resolved in this repository), `None`
    /// when it names nothing this repository has. An agent may have written it: it says
    /// where the worktree claims to be, never what its files hold.
    pub fn worktree_head(&self, path: &Path) -> Option<Oid> {
        let admin = self.worktree_admin_dir(path)?;
        let text = fs::read_to_string(admin.join("HEAD")).ok()?;
        let text = text.trim();
        let commit = match text.strip_prefix("ref:") {
            Some(name) => self.ref_target(name.trim()).ok()??,
            None => Oid::from_str(text).ok()?,
        };
        self.git2().find_commit(commit).ok().map(|c| c.id())
    }

    /// The worktree's canonical path and the admin dir its `.git` file names, if that is a
    /// directory right under this repository's `worktrees/`.
    fn admin_dir_named(&self, path: &Path) -> Option<(PathBuf, PathBuf)> {
        let root = fs::canonicalize(path).ok()?;
        let text = fs::read_to_string(root.join(".git")).ok()?;
        let admin = text
            .trim()
            .strip_prefix("gitdir:")
            .map(|a| root.join(a.trim()))?;
        let admin = fs::canonicalize(admin).ok()?;
        let worktrees = fs::canonicalize(self.common_dir().join("worktrees")).ok()?;
        let direct = admin.parent() == Some(worktrees.as_path());
        (direct && admin.is_dir()).then_some((root, admin))
    }
}
