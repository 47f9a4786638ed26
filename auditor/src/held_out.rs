//! Held-out checks: checks only the auditor runs, with files no agent turn and no other
//! check can read (the sandbox hides their directory). They run after the candidate's
//! other checks, in the same checkout: the files are copied into the checkout's `into`
//! folder, read-only to the checks, and removed after. A candidate that only satisfies the
//! visible tests (a table of their answers, special cases, reading them at run time) fails
//! them.
//!
//! The auditor itself runs unconfined, so the copy never follows the candidate's tree: a
//! link or a file on the way to `into` refuses the placement, and whatever the candidate
//! keeps at `into` is removed first (the held-out files are exactly the directory's).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::time::Duration;

use goalpost_shared::check::{not_run, run_check};
use goalpost_shared::confine::Confinement;
use goalpost_shared::contract::Check;
use goalpost_shared::protocol::{CheckResult, HeldOutSpec};

/// Runs the held-out `checks` in `checkout` with the files of `spec` in place, and returns
/// their results in order. A placement that fails fails every held-out check, saying why.
pub fn run(
    checks: &[Check],
    spec: &HeldOutSpec,
    checkout: &Path,
    env: &BTreeMap<OsString, OsString>,
    timeout: Duration,
    output_cap: usize,
    confine: Option<&Confinement>,
) -> Vec<CheckResult> {
    let target = checkout.join(&spec.into);
    if let Err(why) = place(spec, checkout, &target) {
        let _ = remove(&target);
        return checks
            .iter()
            .map(|c| {
                let why = format!("the held-out files could not be placed: {why}");
                not_run(c, checkout, why)
            })
            .collect();
    }
    let confine = confine.map(|c| c.clone().with_read_only([target.clone()]));
    let results = checks
        .iter()
        .map(|c| run_check(c, checkout, env, timeout, output_cap, confine.as_ref()))
        .collect();
    if let Err(err) = remove(&target) {
        tracing::warn!(
            "cannot remove the held-out files from {}: {err}",
            target.display()
        );
    }
    results
}

/// Copies the directory's files to `target`, a fresh directory inside `checkout`.
fn place(spec: &HeldOutSpec, checkout: &Path, target: &Path) -> Result<(), String> {
    let rel = Path::new(&spec.into);
    let mut at = checkout.to_path_buf();
    let parts: Vec<Component<'_>> = rel.components().collect();
    let Some((_, ancestors)) = parts.split_last() else {
        return Err(format!("\"{}\" names no folder", spec.into));
    };
    for part in ancestors {
        let Component::Normal(name) = part else {
            return Err(format!(
                "\"{}\" is not a path inside the checkout",
                spec.into
            ));
        };
        at.push(name);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "the candidate's tree has a file or link at {}, on the way to the held-out folder",
                    at.strip_prefix(checkout).unwrap_or(&at).display()
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| format!("creating {}: {e}", at.display()))?;
            }
            Err(err) => return Err(format!("reading {}: {err}", at.display())),
        }
    }
    remove(target).map_err(|e| format!("clearing {}: {e}", target.display()))?;
    fs::create_dir(target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    if let Some(dir) = &spec.dir {
        copy_tree(dir, target)
            .map_err(|e| format!("copying the held-out files from {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Copies the regular files and folders under `from` into `to`, read-only; links are
/// followed (the directory is the user's), anything else is left out.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let meta = fs::metadata(&source)?;
        if meta.is_dir() {
            fs::create_dir(&dest)?;
            copy_tree(&source, &dest)?;
        } else if meta.is_file() {
            fs::copy(&source, &dest)?;
            let mode = meta.permissions().mode() & 0o555;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode | 0o444))?;
        }
    }
    Ok(())
}

/// Removes what is at `path`, a link itself and never what it points to.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// Where a results list says which held-out checks failed, by number only (1-based):
/// "held-out check 2 failed", "held-out checks 1 and 3 failed".
pub fn failed_summary(results: &[CheckResult]) -> Option<String> {
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.passed)
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    match failed.as_slice() {
        [] => None,
        [one] => Some(format!("held-out check {one} failed")),
        [rest @ .., last] => Some(format!(
            "held-out checks {} and {last} failed",
            rest.join(", ")
        )),
    }
}
