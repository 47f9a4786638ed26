//! One audit from input to report: the boundaries judged on the diff base..candidate, the
//! verification re-run in the auditor's own checkout with the protected paths as at base,
//! the claims matched to that evidence, and a recommendation.
//!
//! # Recommendation
//!
//! - Any boundary violation: `abandon` when every changed path breaks a boundary (nothing
//!   allowed would remain once the violations are undone), otherwise `revise` (the
//!   implementer can undo them).
//! - Otherwise, a failing machine check or a refuted claim: `revise`. A check that passes
//!   but still passes with a failing canary test added, or runs fewer tests or skips more
//!   than at the base, is a failing check (see `integrity`).
//! - Otherwise, with at least one machine check, all passing: `merge`. Unverifiable claims
//!   and human-language checks are listed but do not block.
//! - A contract without machine checks never yields `merge`: `revise`, saying nothing
//!   could be verified.
//! - Where the machine audit would merge and the goal file names an auditor agent, that
//!   agent's verdict can still make it `revise` or `abandon` (see `agent`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use goalpost_shared::boundary::{BoundaryError, BoundaryRules};
use goalpost_shared::cache;
use goalpost_shared::check::run_check;
use goalpost_shared::confine::ConfineError;
use goalpost_shared::contract::{Check, CheckKind};
use goalpost_shared::git::quote_path;
use goalpost_shared::git::{GitError, Repo};
use goalpost_shared::plan::{DEFAULT_HELD_OUT_INTO, HeldOutFeedback};
use goalpost_shared::process;
use goalpost_shared::protocol::{
    AUDIT_REUSE_FILE, AuditInput, AuditReport, AuditReuse, CachedCheck, CheckCacheNote,
    CheckResult, ClaimFinding, ClaimStatus, CommandRecord, HeldOutSpec, Recommendation, Violation,
};
use goalpost_shared::setup::{SetupRecord, run_setup};

use crate::checkout::CheckoutError;
use crate::claims::{judge_claims, tail};
use crate::integrity;
use crate::place::{self, Place};
use crate::protected::ProtectedFiles;
use crate::surface;

/// Variables the checks get from the auditor's own (already allow-listed) environment;
/// `HOME` and `TMPDIR` are always private directories of the audit. `CARGO_HOME` and
/// `RUSTUP_HOME` name the user's toolchain and registry, read-only to the checks.
const CHECK_ENV_ALLOW: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "CARGO_HOME", "RUSTUP_HOME"];

/// The checks' variables that name private directories of one audit: not part of a
/// check's cache key.
const PRIVATE_ENV: &[&str] = &["HOME", "TMPDIR"];

/// Bytes of each output stream kept while a check runs (metrics are read from these).
pub(crate) const RUN_OUTPUT_CAP: usize = 256 * 1024;

/// Bytes of each output stream kept in the report.
const REPORT_OUTPUT_BYTES: usize = 4096;

/// Why an audit could not be carried out (as opposed to carried out with a bad verdict).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading the repository: {0}")]
    Git(#[from] GitError),
    #[error("the contract's boundaries: {0}")]
    Boundary(#[from] BoundaryError),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error("cannot confine the checks: {0}")]
    Confine(#[from] ConfineError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl AuditError {
    /// Whether the input itself is at fault (unknown revisions, bad globs, a worktree path
    /// in use), rather than the auditor or the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AuditError::Boundary(_)
                | AuditError::Git(
                    GitError::UnknownRevision { .. } | GitError::NotARepository { .. }
                )
                | AuditError::Checkout(CheckoutError::Exists(_))
        )
    }
}

/// Runs the audit `input` describes and returns its report (not yet written).
pub fn audit(input: &AuditInput) -> Result<AuditReport, AuditError> {
    let repo = Repo::discover(&input.repo)?;
    let base = repo.resolve(&input.base)?;
    let candidate = repo.resolve(&input.candidate)?;
    let rules = BoundaryRules::new(&input.contract.boundaries, &input.always_protected)?;

    let changes = repo.changed_paths(base, candidate)?;
    let link_target = |path: &str| {
        repo.read_blob_at(candidate, path)
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    };
    let mut violations = rules.judge(&changes, &link_target);
    let machine: Vec<&Check> = input
        .contract
        .verification
        .iter()
        .filter(|c| c.command().is_some())
        .collect();
    let held_out: Vec<Check> = input
        .contract
        .held_out
        .iter()
        .filter(|c| c.command().is_some())
        .cloned()
        .collect();
    // The files that decide how a held-out check runs are as much the verification
    // surface as those of the others.
    let surface_checks: Vec<&Check> = machine.iter().copied().chain(&held_out).collect();
    violations.extend(surface::judge(
        &repo,
        base,
        candidate,
        &changes,
        &surface_checks,
        &rules,
    ));
    let changed_paths: Vec<String> = changes
        .iter()
        .flat_map(|c| c.paths().map(str::to_owned).collect::<Vec<_>>())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tree = repo.tree_of(candidate)?.to_string();

    let (scratch, env) = place::scratch("audit")?;

    // Evidence of an earlier audit stands for a check only when its whole key matches:
    // this tree, the same command, the same environment, the same protected paths.
    let reuse = read_reuse(&input.report_dir);
    let base_tree = repo.tree_of(base)?.to_string();
    let prepared = integrity::prepare(&repo, base, candidate, &machine);
    let keys: Vec<String> = check_keys(&repo, base, &tree, input, &rules, &env, &machine)?
        .into_iter()
        .zip(&prepared)
        .map(|(key, p)| p.key(key, &base_tree))
        .collect();
    let reused: Vec<Option<&CachedCheck>> = keys
        .iter()
        .map(|key| {
            reuse
                .cached_checks
                .iter()
                .find(|c| &c.key == key && c.result.passed)
        })
        .collect();
    let mut slots: Vec<Option<CheckResult>> = reused
        .iter()
        .zip(&machine)
        .map(|(cached, check)| {
            cached.map(|c| CheckResult {
                check: check.text.value.clone(),
                line: check.text.line,
                ..c.result.clone()
            })
        })
        .collect();
    let fresh: Vec<bool> = slots.iter().map(Option::is_none).collect();
    let mut base_censuses = Vec::new();
    let mut setup_record: Option<SetupRecord> = None;
    let mut held_out_results: Vec<CheckResult> = Vec::new();
    // Held-out checks are never cached: they run in every audit that has them.
    if slots.iter().any(Option::is_none) || !held_out.is_empty() {
        let timeout = Duration::from_secs(input.check_timeout_secs.max(1));
        let protected = ProtectedFiles::at_base(&repo, base, &rules)?;
        let from = place::Source {
            input,
            base,
            candidate,
            changes: &changes,
            rules: &rules,
            pool: reuse.pool.as_ref(),
        };
        let place = Place::make(
            &repo,
            &from,
            &protected,
            &input.worktree,
            scratch.path(),
            &env,
        )?;
        let (root, restored) = (&place.root, &place.restored);
        let confine = place.confine.as_ref();
        // The canaries that can run beside the checks do, in a checkout of their own, so
        // an audit with canaries takes about as long as one without on a machine with a
        // core to spare.
        let beside: Vec<usize> = (0..machine.len())
            .filter(|&i| fresh[i] && integrity::runs_beside(&prepared[i]))
            .collect();
        let beside_done = std::thread::scope(|scope| {
            let side = (!beside.is_empty()).then(|| {
                let (from, machine, prepared) = (&from, &machine, &prepared);
                let (beside, protected) = (&beside, &protected);
                scope.spawn(move || {
                    integrity::canaries_beside(
                        from,
                        protected,
                        machine,
                        prepared,
                        beside,
                        timeout,
                        RUN_OUTPUT_CAP,
                    )
                })
            });
            let mut watch = protected.watch(root);
            // The candidate's tree made ready for its checks (its own lockfile, its own
            // manifest), confined like a check; a failure leaves the checks unrun.
            if !input.contract.setup.commands.is_empty() {
                let mut record = run_setup(
                    &input.contract.setup,
                    place.path(),
                    &place.env,
                    RUN_OUTPUT_CAP,
                    confine,
                );
                for command in &mut record.commands {
                    command.tree = restored.is_empty().then(|| tree.clone());
                    cap_record(command);
                }
                setup_record = Some(record);
            }
            let setup_failed = setup_record.as_ref().is_some_and(SetupRecord::failed);
            for (slot, check) in slots.iter_mut().zip(&machine) {
                if slot.is_some() || setup_failed {
                    continue;
                }
                let mut result = run_check(
                    check,
                    place.path(),
                    &place.env,
                    timeout,
                    RUN_OUTPUT_CAP,
                    confine,
                );
                // What ran is the candidate's tree only when nothing had to be put back.
                result.record.tree = restored.is_empty().then(|| tree.clone());
                *slot = Some(result);
            }
            if !setup_failed && !held_out.is_empty() {
                let spec = input.held_out.clone().unwrap_or_else(|| HeldOutSpec {
                    dir: None,
                    into: DEFAULT_HELD_OUT_INTO.to_owned(),
                    feedback: HeldOutFeedback::Hidden,
                });
                held_out_results = crate::held_out::run(
                    &held_out,
                    &spec,
                    place.path(),
                    &place.env,
                    timeout,
                    RUN_OUTPUT_CAP,
                    confine,
                );
                for result in &mut held_out_results {
                    result.record.tree = restored.is_empty().then(|| tree.clone());
                    cap_output(result);
                }
            }
            violations.extend(protected.modified(root, watch.as_mut()));
            side.map(|side| side.join().unwrap_or_default())
                .unwrap_or_default()
        });
        let setup_failed = setup_record.as_ref().is_some_and(SetupRecord::failed);
        // Every reported check has run: the canaries may now change the checkout.
        if !setup_failed {
            integrity::run_canaries(
                &prepared,
                &machine,
                &mut slots,
                &fresh,
                beside_done,
                place.path(),
                &place.env,
                timeout,
                confine,
            );
        }
        let env = place.env.clone();
        place.finish();
        let at_base = integrity::BaseRun {
            repo: &repo,
            base,
            base_tree: base_tree.clone(),
            worktree: PathBuf::from(format!("{}-base", input.worktree.display())),
            pool: reuse.pool.as_ref(),
            cached: &reuse.cached_checks,
            unconfined: input.unconfined,
            scratch: scratch.path(),
            changed: &changed_paths,
            keys: &keys,
            source: input.report_dir.display().to_string(),
        };
        if !setup_failed {
            base_censuses = integrity::compare_censuses(
                &prepared,
                &machine,
                &mut slots,
                &fresh,
                &at_base,
                &env,
                timeout,
                RUN_OUTPUT_CAP,
            )?;
        }
        for (slot, _) in slots.iter_mut().zip(&fresh).filter(|(_, fresh)| **fresh) {
            if let Some(result) = slot {
                cap_output(result);
            }
        }
    }
    let checks: Vec<CheckResult> = slots.into_iter().flatten().collect();
    let cache: Vec<CheckCacheNote> = keys
        .into_iter()
        .zip(&reused)
        .enumerate()
        .map(|(check, (key, cached))| CheckCacheNote {
            check,
            key,
            reused_from: cached.map(|c| c.source.clone()),
        })
        .collect();
    let claims = judge_claims(&input.claims, &checks);
    let unverified_checks: Vec<String> = input
        .contract
        .verification
        .iter()
        .filter(|c| matches!(c.kind, CheckKind::Human))
        .map(|c| c.text.value.clone())
        .collect();
    let (mut recommendation, mut summary) =
        recommend(&checks, &violations, &claims, &changed_paths);
    if let Some(failed) = crate::held_out::failed_summary(&held_out_results) {
        // Told by number only: the summary reaches the implementer.
        if recommendation == Recommendation::Merge {
            recommendation = Recommendation::Revise;
            summary = failed;
        } else {
            summary = format!("{summary}; {failed}");
        }
    }
    if let Some(failure) = setup_record.as_ref().and_then(|s| s.failure.as_ref()) {
        // Not a failing check: nothing was checked. The candidate (its lockfile, its
        // manifest) or the goal file's setup has to change.
        if recommendation == Recommendation::Merge {
            recommendation = Recommendation::Revise;
        }
        summary = if violations.is_empty() {
            format!("the setup failed, so no check ran: {failure}")
        } else {
            format!("{summary}; and the setup failed, so no check ran: {failure}")
        };
    }
    let mut report = AuditReport {
        phase: input.phase.clone(),
        base: base.to_string(),
        candidate: candidate.to_string(),
        tree,
        recommendation,
        summary,
        checks,
        unverified_checks,
        violations,
        claims,
        changed_paths,
        cache,
        base_censuses,
        setup: setup_record,
        held_out: held_out_results,
        agent: None,
    };
    // The auditor agent must also agree: it sees the machine evidence, never the other way.
    if let Some(spec) = &input.agent
        && report.recommendation == Recommendation::Merge
    {
        let place = crate::agent::Place {
            repo: &repo,
            base,
            candidate,
            scratch: scratch.path(),
        };
        let found = crate::agent::review(input, spec, &place, &report);
        crate::agent::apply(&mut report, found);
    }
    Ok(report)
}

pub(crate) fn canonical(path: &std::path::Path) -> Result<PathBuf, AuditError> {
    path.canonicalize().map_err(|source| AuditError::Io {
        what: "resolving",
        path: path.to_path_buf(),
        source,
    })
}

/// The orchestrator's [`AuditReuse`] next to the input, if any. One that cannot be read
/// offers nothing: every check runs, in a fresh worktree.
fn read_reuse(report_dir: &std::path::Path) -> AuditReuse {
    let path = report_dir.join(AUDIT_REUSE_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            tracing::warn!("ignoring {}: {err}", path.display());
            AuditReuse::default()
        }),
        Err(_) => AuditReuse::default(),
    }
}

/// The verification cache key of each machine check (see `goalpost_shared::cache`). The
/// private `HOME` and `TMPDIR` are fresh for every audit and left out; every other
/// variable the checks get is part of the key.
fn check_keys(
    repo: &Repo,
    base: git2::Oid,
    tree: &str,
    input: &AuditInput,
    rules: &BoundaryRules,
    env: &BTreeMap<OsString, OsString>,
    machine: &[&Check],
) -> Result<Vec<String>, AuditError> {
    let mut patterns: Vec<String> = input
        .contract
        .boundaries
        .protected
        .iter()
        .map(|g| g.value.clone())
        .collect();
    patterns.extend(input.always_protected.iter().map(|p| format!("always {p}")));
    let protected = cache::protected_tree(repo, base, rules, &patterns)?;
    let key_env: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| !PRIVATE_ENV.iter().any(|p| k.as_os_str() == *p))
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    // What the setup installed is part of what the checks ran with: evidence gathered
    // after another setup does not stand for this one. (No variable has a space in its
    // name, so this entry is no variable's.)
    let mut key_env = key_env;
    let setup = &input.contract.setup.commands;
    if !setup.is_empty() {
        let commands: Vec<&str> = setup.iter().map(|c| c.value.as_str()).collect();
        key_env.insert("goalpost setup".to_owned(), commands.join("\n"));
    }
    Ok(machine
        .iter()
        .filter_map(|check| cache::check_key(tree, check, &key_env, &protected))
        .collect())
}

/// The checks' whole environment: a few variables of the auditor's own, and private
/// `HOME` and `TMPDIR` under `scratch`.
pub(crate) fn check_env(
    scratch: &std::path::Path,
) -> Result<BTreeMap<OsString, OsString>, AuditError> {
    let mut env = process::env_allowlist(CHECK_ENV_ALLOW);
    for (key, name) in [("HOME", "home"), ("TMPDIR", "tmp")] {
        let dir = scratch.join(name);
        fs::create_dir_all(&dir).map_err(|source| AuditError::Io {
            what: "creating",
            path: dir.clone(),
            source,
        })?;
        env.insert(key.into(), dir.into_os_string());
    }
    Ok(env)
}

/// Keeps the last [`REPORT_OUTPUT_BYTES`] of each stream for the report.
fn cap_output(check: &mut CheckResult) {
    cap_record(&mut check.record);
}

fn cap_record(record: &mut CommandRecord) {
    for text in [&mut record.stdout, &mut record.stderr] {
        if text.len() > REPORT_OUTPUT_BYTES {
            *text = tail(text, REPORT_OUTPUT_BYTES);
            record.truncated = true;
        }
    }
}

/// The recommendation and a one-line summary of why (see the module docs).
pub fn recommend(
    checks: &[CheckResult],
    violations: &[Violation],
    claims: &[ClaimFinding],
    changed_paths: &[String],
) -> (Recommendation, String) {
    let failed: Vec<&CheckResult> = checks.iter().filter(|c| !c.passed).collect();
    let refuted = claims
        .iter()
        .filter(|c| c.status == ClaimStatus::Refuted)
        .count();
    let verified = claims
        .iter()
        .filter(|c| c.status == ClaimStatus::Verified)
        .count();
    let violating: BTreeSet<&str> = violations.iter().map(|v| v.path.as_str()).collect();

    let mut reasons = Vec::new();
    if !violations.is_empty() {
        let paths: Vec<String> = violating
            .iter()
            .take(3)
            .map(|p| format!("`{}`", quote_path(p)))
            .collect();
        let more = violating.len().saturating_sub(3);
        reasons.push(format!(
            "{} boundary violation{} ({}{})",
            violations.len(),
            plural(violations.len()),
            paths.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if let Some(first) = failed.first() {
        reasons.push(format!(
            "{} of {} checks failed (`{}`: {})",
            failed.len(),
            checks.len(),
            first.command,
            first.failure.as_deref().unwrap_or("failed")
        ));
    }
    if refuted > 0 {
        reasons.push(format!("{refuted} claim{} refuted", plural(refuted)));
    }
    if checks.is_empty() {
        reasons.push("the contract has no machine check, so nothing could be verified".to_owned());
    }

    let recommendation =
        if !violations.is_empty() && changed_paths.iter().all(|p| violating.contains(p.as_str())) {
            Recommendation::Abandon
        } else if reasons.is_empty() {
            Recommendation::Merge
        } else {
            Recommendation::Revise
        };
    let summary = match recommendation {
        Recommendation::Merge => format!(
            "{} passed, no boundary violations, {verified} of {} claim{} verified",
            if checks.len() == 1 {
                "the check".to_owned()
            } else {
                format!("all {} checks", checks.len())
            },
            claims.len(),
            plural(claims.len())
        ),
        Recommendation::Abandon => format!(
            "every changed path breaks a boundary: {}",
            reasons.join("; ")
        ),
        Recommendation::Revise => reasons.join("; "),
    };
    (recommendation, summary)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use goalpost_shared::protocol::ViolationKind;

    use super::*;
    use crate::claims::tests::result;

    fn violation(path: &str) -> Violation {
        Violation {
            kind: ViolationKind::Forbidden,
            path: path.to_owned(),
            rule: "forbidden `secrets/` (line 3)".to_owned(),
        }
    }

    fn claim(status: ClaimStatus) -> ClaimFinding {
        ClaimFinding {
            claim: "tests pass".to_owned(),
            status,
            evidence: String::new(),
        }
    }

    fn paths(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn all_passing_without_violations_is_merge() {
        let checks = [result("make test", None, ""), result("make lint", None, "")];
        let claims = [
            claim(ClaimStatus::Verified),
            claim(ClaimStatus::Unverifiable),
        ];
        let (rec, summary) = recommend(&checks, &[], &claims, &paths(&["src/a.rs"]));
        assert_eq!(rec, Recommendation::Merge);
        assert_eq!(
            summary,
            "all 2 checks passed, no boundary violations, 1 of 2 claims verified"
        );
    }

    #[test]
    fn a_failing_check_or_refuted_claim_is_revise() {
        let checks = [result("make test", Some("exit status 2"), "")];
        let (rec, summary) = recommend(&checks, &[], &[], &paths(&["src/a.rs"]));
        assert_eq!(rec, Recommendation::Revise);
        assert_eq!(summary, "1 of 1 checks failed (`make test`: exit status 2)");
        let checks = [result("make test", None, "")];
        let claims = [claim(ClaimStatus::Refuted)];
        let (rec, summary) = recommend(&checks, &[], &claims, &paths(&["src/a.rs"]));
        assert_eq!(
            (rec, summary.as_str()),
            (Recommendation::Revise, "1 claim refuted")
        );
    }

    #[test]
    fn violations_are_revise_while_something_allowed_remains() {
        let checks = [result("make test", None, "")];
        let violations = [violation("secrets/key")];
        let changed = paths(&["secrets/key", "src/a.rs"]);
        let (rec, summary) = recommend(&checks, &violations, &[], &changed);
        assert_eq!(rec, Recommendation::Revise);
        assert_eq!(summary, "1 boundary violation (`secrets/key`)");
    }

    #[test]
    fn violations_only_is_abandon() {
        let checks = [result("make test", Some("exit status 1"), "")];
        let violations: Vec<_> = ["a", "b", "c", "d"].into_iter().map(violation).collect();
        let (rec, summary) = recommend(&checks, &violations, &[], &paths(&["a", "b", "c", "d"]));
        assert_eq!(rec, Recommendation::Abandon);
        assert_eq!(
            summary,
            "every changed path breaks a boundary: 4 boundary violations (`a`, `b`, `c` and 1 \
             more); 1 of 1 checks failed (`make test`: exit status 1)"
        );
    }

    #[test]
    fn no_machine_checks_never_merges() {
        let (rec, summary) = recommend(&[], &[], &[], &paths(&["src/a.rs"]));
        assert_eq!(rec, Recommendation::Revise);
        assert_eq!(
            summary,
            "the contract has no machine check, so nothing could be verified"
        );
    }

    #[test]
    fn report_output_is_capped_to_its_tail() {
        let mut check = result("make test", None, &"x\n".repeat(5000));
        cap_output(&mut check);
        assert!(check.record.truncated);
        assert!(check.record.stdout.len() <= REPORT_OUTPUT_BYTES + 40);
        assert!(
            check.record.stdout.starts_with("[... "),
            "{}",
            &check.record.stdout[..40]
        );
    }
}
