//! Where an audit's checks run: a checkout of the candidate made ready for them, with the
//! protected files the auditor's own, an object quarantine, a private home, temp dir and
//! package cache, and the sandbox the checks run in. The audit makes one for the checks
//! and, when canaries can run beside them, a second one for the canaries (see
//! `integrity::runs_beside`), each from its own repository handle.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use git2::Oid;
use goalpost_shared::boundary::BoundaryRules;
use goalpost_shared::confine::{Confinement, GitLinks};
use goalpost_shared::git::{PathChange, Quarantine, Repo};
use goalpost_shared::protocol::{AuditInput, PoolSpec};
use goalpost_shared::setup;

use crate::audit::{AuditError, canonical, check_env};
use crate::checkout::Checkout;
use crate::protected::ProtectedFiles;

/// What a place is made from: the candidate, its base and what changed between them.
pub struct Source<'a> {
    pub input: &'a AuditInput,
    pub base: Oid,
    pub candidate: Oid,
    pub changes: &'a [PathChange],
    pub rules: &'a BoundaryRules,
    pub pool: Option<&'a PoolSpec>,
}

/// A checkout ready for checks.
pub struct Place<'r> {
    pub checkout: Checkout<'r>,
    /// The checkout's canonical path, as the sandbox binds it.
    pub root: PathBuf,
    /// The protected paths the candidate had touched, put back as at base.
    pub restored: Vec<String>,
    /// The checks' environment: `env` as given plus the quarantine's and the package
    /// cache's variables.
    pub env: BTreeMap<OsString, OsString>,
    pub confine: Option<Confinement>,
    /// The checkout's git links, put back before it is removed or recycled.
    links: Option<GitLinks>,
}

impl<'r> Place<'r> {
    /// Makes a checkout of the candidate at `worktree`, whose checks keep their private
    /// directories in `scratch` and get `env` (from [`check_env`] of `scratch`).
    pub fn make(
        repo: &'r Repo,
        from: &Source<'_>,
        protected: &ProtectedFiles,
        worktree: &Path,
        scratch: &Path,
        env: &BTreeMap<OsString, OsString>,
    ) -> Result<Place<'r>, AuditError> {
        let input = from.input;
        let checkout = Checkout::create_pooled(repo, worktree, from.candidate, from.pool)?;
        let restored = checkout.own_protected(from.base, from.changes, from.rules, protected)?;
        let root = canonical(checkout.path())?;
        if !restored.is_empty() {
            tracing::info!(
                ?restored,
                "protected paths put back as at base before verifying"
            );
        }
        // The candidate's own scripts run here: they may write in the checkout, its git
        // metadata and the audit's private home, temp (a capped file system of each
        // check's own) and object quarantine, nowhere else, and see nothing of goalpost's.
        // Their git writes objects into that quarantine, which goes with the scratch dir.
        // The protected files are read-only to them even in the checkout.
        let objects = scratch.join("objects");
        let quarantine = Quarantine::create(&objects).map_err(|source| AuditError::Io {
            what: "creating",
            path: objects.clone(),
            source,
        })?;
        let mut env = env.clone();
        if !input.unconfined {
            env.extend(quarantine.env(repo));
        }
        let sandbox = &input.sandbox;
        let confine = if input.unconfined {
            None
        } else {
            Some(
                Confinement::for_worktree(repo, checkout.path(), &[scratch])?
                    .hiding(&sandbox.hidden)
                    .offline(sandbox.offline_checks)
                    .with_scratch(&scratch.join("tmp"), sandbox.tmp_bytes())?
                    .with_read_only(protected.read_only_paths(&root)),
            )
        };
        // A check may rewrite the checkout's git links; they are put back before the
        // checkout is removed or recycled by git commands that follow them.
        let links = GitLinks::read(checkout.path()).ok();
        // The audit's own package cache, in its scratch dir: nothing an attempt (or an
        // earlier audit) put in a cache reaches these checks.
        env.extend(setup::cache_env(&scratch.join("cache")));
        Ok(Place {
            checkout,
            root,
            restored,
            env,
            confine,
            links,
        })
    }

    pub fn path(&self) -> &Path {
        self.checkout.path()
    }

    /// Puts the git links back and removes (or recycles) the checkout. A leftover
    /// directory is for `goalpost gc`, not a reason to throw the audit away.
    pub fn finish(self) {
        if let Some(Err(err)) = self.links.as_ref().map(GitLinks::restore) {
            tracing::warn!("cannot put back the audit worktree's git links: {err}");
        }
        if let Err(err) = self.checkout.remove() {
            tracing::warn!("could not remove the audit worktree: {err}");
        }
    }
}

/// A private directory for an audit's checks (their home, temp dir, quarantine and
/// cache), apart from every other, with the environment that names its parts.
pub fn scratch(
    what: &str,
) -> Result<(tempfile::TempDir, BTreeMap<OsString, OsString>), AuditError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("goalpost-{what}-"))
        .tempdir()
        .map_err(|source| AuditError::Io {
            what: "creating a private directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let env = check_env(dir.path())?;
    Ok((dir, env))
}
