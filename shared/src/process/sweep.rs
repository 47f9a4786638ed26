//! Finding what a confined child left behind outside its process group: a daemon that
//! called `setsid` is no longer signalled with the group, so each confined child carries
//! a tag of its own in its environment, which everything it starts inherits, and once
//! the child is gone every process still carrying the tag is killed.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::sys;

/// The environment variable holding the tag.
pub(super) const TAG_VAR: &str = "GOALPOST_PROCESS_TAG";

/// A tag no other child of any goalpost process carries.
pub(super) fn new_tag() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}.{}.{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills every process whose environment holds `TAG_VAR=tag`; returns how many. A
/// process that cleared its environment is not found (it is still under the child's
/// Landlock rules), nor is one of another user, whose environment cannot be read.
pub(super) fn kill_tagged(tag: &str) -> usize {
    let needle = format!("{TAG_VAR}={tag}");
    let own = std::process::id();
    let mut killed = 0;
    // A second pass catches what forked while the first one ran.
    for _ in 0..2 {
        let mut found = 0;
        let Ok(entries) = fs::read_dir("/proc") else {
            return killed;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == own {
                continue;
            }
            let Ok(environ) = fs::read(entry.path().join("environ")) else {
                continue;
            };
            let tagged = environ
                .split(|&b| b == 0)
                .any(|var| var == needle.as_bytes());
            if tagged && sys::signal_process(pid, libc::SIGKILL).unwrap_or(false) {
                found += 1;
            }
        }
        killed += found;
        if found == 0 {
            break;
        }
    }
    killed
}
