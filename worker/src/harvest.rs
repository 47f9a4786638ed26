//! The attempt's lineage in git: each harvest commits what the agent changed in the
//! worktree on top of the last harvest and moves the attempt ref to it by compare-and-swap.
//! The worker, not the agent, writes the attempt ref. A round that starts after a merge
//! conflict first puts the worktree at the merge of the new base and the previous
//! candidate, and its first harvest is that merge commit, so the lineage is kept.

use std::path::{Path, PathBuf};

use goalpost_shared::git::{GitError, Identity, Oid, Repo};
use goalpost_shared::protocol::WorkerInput;

/// The attempt ref, the commit harvests build on, and the repository they live in.
#[derive(Debug)]
pub struct Lineage {
    repo: Repo,
    worktree: PathBuf,
    attempt_ref: String,
    base: Oid,
    /// What the attempt ref holds now (`None`: it does not exist yet).
    ref_value: Option<Oid>,
    /// The commit the next harvest goes on top of.
    head: Oid,
    /// In a conflict round until the first harvest: the previous candidate, the merge's
    /// second parent.
    merge_parent: Option<Oid>,
}

impl Lineage {
    /// Opens the worktree's repository and reads where the attempt stands: the base, the
    /// attempt ref, and the commit to continue from (`resume_from`, else the base).
    pub fn open(input: &WorkerInput) -> Result<Lineage, GitError> {
        let repo = Repo::discover(&input.worktree)?;
        let base = repo.resolve(&input.base)?;
        let ref_value = repo.ref_target(&input.attempt_ref)?;
        let head = match (&input.resume_from, ref_value) {
            (Some(rev), _) => repo.resolve(rev)?,
            // A round restarted without `resume_from` (after a crash) still builds on what
            // earlier harvests of this attempt put on the ref, so none of it is dropped.
            (None, Some(current)) if repo.is_ancestor(base, current)? => current,
            (None, _) => base,
        };
        if input.resume_from.is_some() && ref_value != Some(head) {
            tracing::warn!(
                "attempt ref {} is at {:?}, not at resume_from {head}; continuing from {head}",
                input.attempt_ref,
                ref_value
            );
        }
        Ok(Lineage {
            repo,
            worktree: input.worktree.clone(),
            attempt_ref: input.attempt_ref.clone(),
            base,
            ref_value,
            head,
            merge_parent: None,
        })
    }

    /// Puts the worktree at the merge of the base and `previous` with conflict markers
    /// left in the files, and makes the next harvest a commit with both as parents.
    pub fn start_conflict_merge(&mut self, previous: &str) -> Result<(), GitError> {
        let previous = self.repo.resolve(previous)?;
        let base = self.base.to_string();
        let wt = self.worktree.clone();
        self.repo
            .run_git(&wt, ["checkout", "--quiet", "--detach", &base])?;
        let merge = self.repo.run_git(
            &wt,
            [
                // A merge that stops for conflicts still wants an identity; the user's
                // config may hold none.
                "-c",
                "user.name=goalpost",
                "-c",
                "user.email=goalpost@localhost",
                "merge",
                "--no-commit",
                "--no-ff",
                "--no-edit",
                &previous.to_string(),
            ],
        );
        match merge {
            Ok(_) => {}
            // A conflicted merge exits 1; that is the state asked for. Anything else is not.
            Err(GitError::Command { .. }) if self.merge_in_progress() => {}
            Err(err) => return Err(err),
        }
        self.head = self.base;
        self.merge_parent = Some(previous);
        Ok(())
    }

    fn merge_in_progress(&self) -> bool {
        self.repo.git_dir().join("MERGE_HEAD").exists()
    }

    /// Commits the worktree's changes on top of the last harvest and moves the attempt
    /// ref there. `None` when nothing changed (in a conflict round the first harvest is
    /// always a commit: the merge itself is the change).
    pub fn harvest(&mut self, message: &str) -> Result<Option<Oid>, GitError> {
        let commit = match self.merge_parent {
            Some(previous) => Some(self.commit_merge(previous, message)?),
            None => self.repo.commit_worktree(
                &self.worktree,
                self.head,
                message,
                &Identity::goalpost(),
            )?,
        };
        if let Some(commit) = commit {
            self.move_ref(commit, "goalpost: harvest")?;
            self.head = commit;
        }
        Ok(commit)
    }

    /// The merge commit of a conflict round: whatever the worktree holds (markers
    /// resolved or not), with the base and the previous candidate as parents.
    fn commit_merge(&mut self, previous: Oid, message: &str) -> Result<Oid, GitError> {
        let wt = self.worktree.clone();
        self.repo.run_git(&wt, ["add", "--all", "--", "."])?;
        let tree_hex = self.repo.run_git(&wt, ["write-tree"])?;
        let tree = Oid::from_str(tree_hex.trim()).map_err(|_| GitError::Output {
            command: "git write-tree".to_owned(),
            output: tree_hex.clone(),
        })?;
        let commit = self.repo.create_commit(
            tree,
            &[self.head, previous],
            message,
            Some(&Identity::goalpost()),
        )?;
        // The merge is recorded; forget git's own merge state so later turns see a plain
        // detached HEAD.
        if self.merge_in_progress() {
            self.repo.run_git(&wt, ["merge", "--quit"])?;
        }
        self.repo.detach_worktree_head(&wt, commit)?;
        self.merge_parent = None;
        Ok(commit)
    }

    /// Makes sure the attempt ref exists (at the current head) and returns the head.
    pub fn ensure_ref(&mut self) -> Result<Oid, GitError> {
        if self.ref_value != Some(self.head) {
            self.move_ref(self.head, "goalpost: candidate")?;
        }
        Ok(self.head)
    }

    fn move_ref(&mut self, to: Oid, message: &str) -> Result<(), GitError> {
        self.repo
            .update_ref_cas(&self.attempt_ref, to, self.ref_value, message)?;
        self.ref_value = Some(to);
        Ok(())
    }

    /// What the attempt ref holds.
    pub fn ref_value(&self) -> Option<Oid> {
        self.ref_value
    }

    pub fn head_tree(&self) -> Result<Oid, GitError> {
        self.repo.tree_of(self.head)
    }

    /// The tree of the attempt's base commit.
    pub fn base_tree(&self) -> Result<Oid, GitError> {
        self.repo.tree_of(self.base)
    }

    /// `git diff base..head`, cut after about `max_bytes`.
    pub fn diff(&self, max_bytes: usize) -> Result<(String, bool), GitError> {
        let text = self.repo.diff_text(self.base, self.head, max_bytes)?;
        let truncated = text.ends_with(&format!("[diff truncated at {max_bytes} bytes]\n"));
        Ok((text, truncated))
    }

    /// Whether the worktree holds changes not harvested yet.
    pub fn is_dirty(&self) -> Result<bool, GitError> {
        self.repo.is_dirty()
    }

    pub fn worktree(&self) -> &Path {
        &self.worktree
    }
}
