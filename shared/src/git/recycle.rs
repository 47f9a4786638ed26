//! Recycling a linked worktree that was moved (renamed) into place: git's record of it is
//! pointed at its new location, and it becomes a checkout of another commit as
//! `git worktree add` would make it, apart from untracked files in cache directories.

use std::fs;
use std::path::Path;

use super::{GitError, Oid, Repo};

impl Repo {
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
        fs::write(admin.join("gitdir"), format!("{}\n", dotgit.display())).map_err(|_| unknown())
    }
}
