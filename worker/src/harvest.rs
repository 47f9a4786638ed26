//! The attempt's lineage in git: each harvest commits what the agent changed in the
//! worktree on top of the last harvest and moves the attempt ref to it by compare-and-swap.
//! The worker, not the agent, writes the attempt ref. A round that starts after a merge
//! conflict first puts the worktree at the merge of the new base and the previous
//! candidate, and its first harvest is that merge commit, so the lineage is kept.
//!
//! The worktree is read as files only (see [`WorktreeView`]): the repository is opened
//! from the input's `repo`, git runs on the common dir with an index of the worker's own,
//! and the objects of a harvest are hashed by goalpost, capped and hashed again on import.

use std::path::{Path, PathBuf};

use goalpost_shared::git::{GitError, Identity, Oid, Repo, WorktreeView};
use goalpost_shared::protocol::{HARVEST_DIR, WorkerInput};

/// The attempt ref, the commit harvests build on, and the repository they live in.
#[derive(Debug)]
pub struct Lineage {
    repo: Repo,
    worktree: PathBuf,
    /// The worker's own index and staged objects of the worktree (no agent writes here).
    harvest_dir: PathBuf,
    /// Bytes of new objects one harvest may import.
    objects_cap: u64,
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
        let repo = Repo::open(&input.repo)?;
        if repo.worktree_admin_dir(&input.worktree).is_none() {
            return Err(GitError::NotARepository {
                path: input.worktree.clone(),
            });
        }
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
            harvest_dir: input.private_dir.join(HARVEST_DIR),
            objects_cap: input.budget.objects_bytes(),
            attempt_ref: input.attempt_ref.clone(),
            base,
            ref_value,
            head,
            merge_parent: None,
        })
    }

    fn view(&self) -> WorktreeView<'_> {
        self.repo.worktree_view(&self.worktree, &self.harvest_dir)
    }

    /// Puts the worktree at the merge of the base and `previous` with conflict markers
    /// left in the files, and makes the next harvest a commit with both as parents.
    pub fn start_conflict_merge(&mut self, previous: &str) -> Result<(), GitError> {
        let previous = self.repo.resolve(previous)?;
        let view = self.view();
        let (tree, conflicts) = view.merge_with_markers(self.base, previous)?;
        tracing::info!(?conflicts, "worktree put at the merge of the new base");
        view.reset_to(tree)?;
        view.show_commit(self.base)?;
        self.head = self.base;
        self.merge_parent = Some(previous);
        Ok(())
    }

    /// Commits the worktree's changes on top of the last harvest and moves the attempt
    /// ref there. `None` when nothing changed (in a conflict round the first harvest is
    /// always a commit: the merge itself is the change).
    pub fn harvest(&mut self, message: &str) -> Result<Option<Oid>, GitError> {
        let commit = match self.merge_parent {
            Some(previous) => Some(self.commit_merge(previous, message)?),
            None => self.repo.commit_worktree(
                &self.view(),
                self.head,
                message,
                &Identity::goalpost(),
                self.objects_cap,
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
        let view = self.view();
        let tree = view.harvest_tree(self.head, self.objects_cap)?;
        let commit = self.repo.create_commit(
            tree,
            &[self.head, previous],
            message,
            Some(&Identity::goalpost()),
        )?;
        view.show_commit(commit)?;
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

    /// The paths whose files differ from the last harvest: tracked ones that changed and
    /// untracked ones git does not ignore.
    pub fn pending_paths(&self) -> Result<Vec<String>, GitError> {
        let changes = self.view().changes_from(self.head)?;
        Ok(changes
            .tracked
            .into_iter()
            .chain(changes.untracked)
            .collect())
    }

    /// Whether the worktree holds changes not harvested yet.
    pub fn is_dirty(&self) -> Result<bool, GitError> {
        Ok(!self.view().changes_from(self.head)?.is_empty())
    }

    /// The repository, as opened from the input (never through the worktree).
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    pub fn worktree(&self) -> &Path {
        &self.worktree
    }
}
