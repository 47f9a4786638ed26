//! The gate: moves the integration ref (and at the end the release branch) only to a
//! commit whose exact tree passed an audit, and only by compare-and-swap.

use goalpost_shared::git::{GitError, MergeOutcome, Oid, Repo};

/// What one step of the gate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStep {
    /// The ref moved from `old_tip` to `new_tip`.
    Moved { old_tip: Oid, new_tip: Oid },
    /// Merging onto the tip gave a tree nobody audited: audit `merge_commit` against
    /// `old_tip`, then [`land`] it.
    NeedsAudit { merge_commit: Oid, old_tip: Oid },
    /// The candidate conflicts with the tip in these paths. Nothing moved.
    Conflict { paths: Vec<String>, tip: Oid },
}

/// How a candidate lands on the tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing<'m> {
    /// One new commit on the tip with the candidate's changes and this message: the
    /// attempt's intermediate commits, which no audit saw, stay on the attempt ref only.
    Squash(&'m str),
    /// A fast-forward when possible, else a merge commit with both parents (the release
    /// branch, which must keep commits others pushed to it).
    Merge,
}

/// Brings `candidate`, whose tree `audited_tree` passed its audit, onto the commit
/// `refname` points at. Moves the ref when the result's tree is exactly the audited one;
/// otherwise returns the new commit for another audit. Conflicts are reported, never
/// resolved.
pub fn integrate(
    repo: &Repo,
    refname: &str,
    candidate: Oid,
    audited_tree: Oid,
    landing: Landing<'_>,
) -> Result<GateStep, GitError> {
    let tip = repo
        .ref_target(refname)?
        .ok_or_else(|| GitError::UnknownRevision {
            rev: refname.to_owned(),
        })?;
    let label = match landing {
        Landing::Squash(message) => message.lines().next().unwrap_or("phase").to_owned(),
        Landing::Merge => "release".to_owned(),
    };
    let fast_forward = repo.is_ancestor(tip, candidate)?;
    let (tree, commit) = match (landing, fast_forward) {
        (Landing::Merge, true) => (repo.tree_of(candidate)?, candidate),
        (Landing::Squash(message), true) => {
            let tree = repo.tree_of(candidate)?;
            (tree, repo.create_commit(tree, &[tip], message, None)?)
        }
        (landing, false) => match repo.merge_in_memory(tip, candidate)? {
            MergeOutcome::Conflict { paths } => return Ok(GateStep::Conflict { paths, tip }),
            MergeOutcome::Clean { tree } => {
                let commit = match landing {
                    Landing::Squash(message) => repo.create_commit(tree, &[tip], message, None)?,
                    Landing::Merge => repo.create_commit(
                        tree,
                        &[tip, candidate],
                        &format!("goalpost: merge {candidate} into {refname}"),
                        None,
                    )?,
                };
                (tree, commit)
            }
        },
    };
    if tree != audited_tree {
        return Ok(GateStep::NeedsAudit {
            merge_commit: commit,
            old_tip: tip,
        });
    }
    if commit != tip {
        land(repo, refname, commit, tip, &label)?;
    }
    Ok(GateStep::Moved {
        old_tip: tip,
        new_tip: commit,
    })
}

/// Moves `refname` from `expected` to `commit` by compare-and-swap.
pub fn land(
    repo: &Repo,
    refname: &str,
    commit: Oid,
    expected: Oid,
    label: &str,
) -> Result<(), GitError> {
    repo.update_ref_cas(
        refname,
        commit,
        Some(expected),
        &format!("goalpost: {label}"),
    )
}

/// After the release branch moved from `old` to `new`: when it is the branch checked out
/// in the main working tree, bring the files there along (a two-way merge that keeps any
/// local change and refuses to overwrite one).
pub fn refresh_checkout(repo: &Repo, branch: &str, old: Oid, new: Oid) -> Result<bool, GitError> {
    if repo.head_branch().as_deref() != Some(branch) {
        return Ok(false);
    }
    let Some(workdir) = repo.workdir().map(ToOwned::to_owned) else {
        return Ok(false);
    };
    repo.run_git(
        &workdir,
        ["read-tree", "-m", "-u", &old.to_string(), &new.to_string()],
    )?;
    Ok(true)
}
