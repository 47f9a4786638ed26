//! The gate: moves the integration ref (and at the end the release branch) only to a
//! commit whose exact tree passed an audit, and only by compare-and-swap.
//!
//! Candidates that passed their audits land as a **train**: each is squashed onto the one
//! before it, starting at the integration tip ([`build_train`]); when the result is
//! exactly one candidate's audited tree the ref moves at once, otherwise the train's last
//! commit is audited first ([`Landing`] of a train) and the ref moves to it only if that
//! audit passes. One train's audit runs at a time, so landing many phases costs one merge
//! audit per train rather than one per phase redone each time another lands first.

use goalpost_shared::git::{GitError, MergeOutcome, Oid, Repo};

/// One candidate squashed onto the commit before it in a train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Squashed {
    /// The new commit and its tree.
    Commit { commit: Oid, tree: Oid },
    /// It conflicts with the commit it was squashed onto, in these paths.
    Conflict(Vec<String>),
}

/// How a candidate is squashed onto a commit: over git in a run ([`RepoSquasher`]), over
/// a table in the tests.
pub trait Squasher {
    /// Squashes attempt `attempt`'s `candidate` onto `at`.
    fn squash(&mut self, at: Oid, attempt: usize, candidate: Oid) -> Result<Squashed, GitError>;
}

/// A train, as [`build_train`] made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Train {
    /// Each attempt with its squash commit and that commit's tree, in order.
    pub cars: Vec<(usize, Oid, Oid)>,
    /// Attempts that conflict with a candidate ahead of them (not with the tip): they wait
    /// for the next train.
    pub deferred: Vec<usize>,
    /// Attempts that conflict with the tip itself, with their candidate and the paths.
    pub conflicts: Vec<(usize, Oid, Vec<String>)>,
}

/// Squashes each of `batch` (attempt, audited candidate) onto the one before it,
/// starting at `tip`.
pub fn build_train(
    tip: Oid,
    batch: &[(usize, Oid)],
    squasher: &mut impl Squasher,
) -> Result<Train, GitError> {
    let mut at = tip;
    let mut train = Train::default();
    for &(i, candidate) in batch {
        match squasher.squash(at, i, candidate)? {
            Squashed::Commit { commit, tree } => {
                train.cars.push((i, commit, tree));
                at = commit;
            }
            Squashed::Conflict(paths) if at == tip => train.conflicts.push((i, candidate, paths)),
            Squashed::Conflict(_) => train.deferred.push(i),
        }
    }
    Ok(train)
}

/// What the gate does with a train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainLanding {
    /// Nothing to land.
    Empty,
    /// One candidate whose squash commit has exactly its audited tree: move the ref now.
    Now { attempt: usize, commit: Oid },
    /// The merged tree is one nobody audited: audit the last commit first.
    AuditFirst { head: Oid },
}

/// Whether `train` can land without another audit: `audited_tree` gives each attempt's
/// audited tree.
pub fn landing(train: &Train, audited_tree: impl Fn(usize) -> Option<Oid>) -> TrainLanding {
    match train.cars[..] {
        [] => TrainLanding::Empty,
        [(attempt, commit, tree)] if audited_tree(attempt) == Some(tree) => {
            TrainLanding::Now { attempt, commit }
        }
        [.., (_, head, _)] => TrainLanding::AuditFirst { head },
    }
}

/// Squashes over git: a candidate that descends from `at` keeps its own tree; another is
/// merged with `at` in memory. Each squash commit has `at` as its only parent and the
/// message `message` gives for its attempt.
#[derive(Debug)]
pub struct RepoSquasher<'r, F> {
    pub repo: &'r Repo,
    pub message: F,
}

impl<F: Fn(usize, Oid) -> String> Squasher for RepoSquasher<'_, F> {
    fn squash(&mut self, at: Oid, attempt: usize, candidate: Oid) -> Result<Squashed, GitError> {
        let tree = if self.repo.is_ancestor(at, candidate)? {
            self.repo.tree_of(candidate)?
        } else {
            match self.repo.merge_in_memory(at, candidate)? {
                MergeOutcome::Clean { tree } => tree,
                MergeOutcome::Conflict { paths } => return Ok(Squashed::Conflict(paths)),
            }
        };
        let message = (self.message)(attempt, candidate);
        let commit = self.repo.create_commit(tree, &[at], &message, None)?;
        Ok(Squashed::Commit { commit, tree })
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    /// Squashes by table: `(at, candidate)` → the commit it gives (its tree is the
    /// commit's id + 100), or a conflict where the table has none.
    #[derive(Default)]
    struct Table {
        commits: BTreeMap<(Oid, Oid), u8>,
        calls: Vec<(Oid, usize, Oid)>,
    }

    impl Squasher for Table {
        fn squash(
            &mut self,
            at: Oid,
            attempt: usize,
            candidate: Oid,
        ) -> Result<Squashed, GitError> {
            self.calls.push((at, attempt, candidate));
            Ok(match self.commits.get(&(at, candidate)) {
                Some(&n) => Squashed::Commit {
                    commit: oid(n),
                    tree: oid(n + 100),
                },
                None => Squashed::Conflict(vec![format!("file{attempt}")]),
            })
        }
    }

    #[test]
    fn a_train_squashes_each_candidate_onto_the_one_before_it() {
        let tip = oid(1);
        let mut table = Table::default();
        table.commits.insert((tip, oid(10)), 20);
        table.commits.insert((oid(20), oid(11)), 21);
        let train = build_train(tip, &[(0, oid(10)), (1, oid(11))], &mut table).unwrap();
        assert_eq!(
            table.calls,
            [(tip, 0, oid(10)), (oid(20), 1, oid(11))],
            "each goes onto the last commit"
        );
        assert_eq!(train.cars, [(0, oid(20), oid(120)), (1, oid(21), oid(121))]);
        assert!(train.deferred.is_empty() && train.conflicts.is_empty());
    }

    #[test]
    fn a_conflict_with_the_tip_goes_back_and_one_with_a_car_ahead_waits() {
        let tip = oid(1);
        let mut table = Table::default();
        table.commits.insert((tip, oid(11)), 21);
        // 0 conflicts with the tip itself; 1 lands; 2 conflicts with 1's commit only.
        table.commits.insert((tip, oid(12)), 22);
        let train =
            build_train(tip, &[(0, oid(10)), (1, oid(11)), (2, oid(12))], &mut table).unwrap();
        assert_eq!(train.conflicts, [(0, oid(10), vec!["file0".to_owned()])]);
        assert_eq!(train.cars, [(1, oid(21), oid(121))]);
        assert_eq!(train.deferred, [2]);
    }

    #[test]
    fn a_lone_candidate_with_its_audited_tree_lands_at_once_and_anything_else_is_audited() {
        let one = Train {
            cars: vec![(4, oid(20), oid(120))],
            ..Train::default()
        };
        assert_eq!(
            landing(&one, |_| Some(oid(120))),
            TrainLanding::Now {
                attempt: 4,
                commit: oid(20)
            }
        );
        assert_eq!(
            landing(&one, |_| Some(oid(99))),
            TrainLanding::AuditFirst { head: oid(20) }
        );
        let two = Train {
            cars: vec![(4, oid(20), oid(120)), (5, oid(21), oid(121))],
            ..Train::default()
        };
        assert_eq!(
            landing(&two, |i| Some(oid(if i == 4 { 120 } else { 121 }))),
            TrainLanding::AuditFirst { head: oid(21) }
        );
        assert_eq!(landing(&Train::default(), |_| None), TrainLanding::Empty);
    }
}
