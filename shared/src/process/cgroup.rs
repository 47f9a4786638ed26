//! A `pids` cgroup of its own for each sandbox, where goalpost may make one: the limit on
//! processes that holds for root too, for whom `RLIMIT_NPROC` is not enforced. cgroup v1's
//! `pids` hierarchy and cgroup v2 with the `pids` controller are both used; where neither
//! can be written (an unprivileged user without a delegated tree) there is none, and
//! `RLIMIT_NPROC` is the limit.
//!
//! The groups live under `<hierarchy>/goalpost/`. A sandbox's group is left when its last
//! process ends; empty groups older than a minute are removed when the next is made.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The hierarchies tried, in order: cgroup v1's `pids`, then the v2 root.
const HIERARCHIES: &[&str] = &["/sys/fs/cgroup/pids", "/sys/fs/cgroup"];

/// How old an empty group must be before it is removed: one that was just made may not
/// have been joined yet.
const STALE: Duration = Duration::from_secs(60);

/// Makes a group whose `pids.max` is `max` and returns its `cgroup.procs` file, which the
/// child writes itself into before it execs; `None` where no group can be made.
pub(super) fn make(max: u64) -> Option<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let parent = HIERARCHIES
        .iter()
        .find_map(|root| parent_in(Path::new(root)))?;
    sweep(&parent);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let group = parent.join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir(&group).ok()?;
    if std::fs::write(group.join("pids.max"), max.to_string()).is_err() {
        let _ = std::fs::remove_dir(&group);
        return None;
    }
    Some(group.join("cgroup.procs"))
}

/// `<root>/goalpost`, made if missing, when groups with a `pids` controller can be made
/// in it.
fn parent_in(root: &Path) -> Option<PathBuf> {
    if !root.join("cgroup.procs").is_file() {
        return None;
    }
    let v2 = root.join("cgroup.controllers").is_file();
    if v2 {
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "pids") {
            return None;
        }
    }
    let parent = root.join("goalpost");
    if !parent.is_dir() {
        std::fs::create_dir(&parent).ok()?;
    }
    if v2 {
        // Children of the group get the controller only when the group hands it down.
        let control = parent.join("cgroup.subtree_control");
        let has = std::fs::read_to_string(&control)
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "pids"));
        if !has && std::fs::write(&control, "+pids").is_err() {
            return None;
        }
    }
    Some(parent)
}

/// Removes the groups under `parent` that are empty and older than [`STALE`]; a group
/// still in use refuses (`EBUSY`) and stays.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
        if old && entry.path().is_dir() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}
