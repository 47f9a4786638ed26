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

/// Brings `candidate`, whose tree `audited_tree` passed its audit, onto the commit
/// `refname` points at. Moves the ref when the result's tree is exactly the audited one
/// (a fast-forward, or a merge whose tree equals the candidate's); otherwise returns the
/// merge commit for another audit. Conflicts are reported, never resolved.
pub fn integrate(
    repo: &Repo,
    refname: &str,
    candidate: Oid,
    audited_tree: Oid,
    label: &str,
) -> Result<GateStep, GitError> {
    let tip = repo
        .ref_target(refname)?
        .ok_or_else(|| GitError::UnknownRevision {
            rev: refname.to_owned(),
        })?;
    if tip == candidate {
        return Ok(GateStep::Moved {
            old_tip: tip,
            new_tip: tip,
        });
    }
    if repo.is_ancestor(tip, candidate)? {
        if repo.tree_of(candidate)? != audited_tree {
            return Ok(GateStep::NeedsAudit {
                merge_commit: candidate,
                old_tip: tip,
            });
        }
        land(repo, refname, candidate, tip, label)?;
        return Ok(GateStep::Moved {
            old_tip: tip,
            new_tip: candidate,
        });
    }
    match repo.merge_in_memory(tip, candidate)? {
        MergeOutcome::Conflict { paths } => Ok(GateStep::Conflict { paths, tip }),
        MergeOutcome::Clean { tree } => {
            let message = format!("goalpost: merge {label}");
            let merge_commit = repo.create_commit(tree, &[tip, candidate], &message, None)?;
            if tree == audited_tree {
                land(repo, refname, merge_commit, tip, label)?;
                Ok(GateStep::Moved {
                    old_tip: tip,
                    new_tip: merge_commit,
                })
            } else {
                Ok(GateStep::NeedsAudit {
                    merge_commit,
                    old_tip: tip,
                })
            }
        }
    }
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
