//! Waiting for an exclusive `flock(2)` lock with a deadline. A lock goalpost takes is
//! held for one short operation; one still held after the deadline is held by something
//! else (a stuck process, or one that is not goalpost's), and the wait ends with an error
//! that names the holder instead of stalling the run for ever.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a lock is waited for when [`WAIT_VAR`] does not say otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);

/// Override of [`DEFAULT_WAIT`], in seconds (for tests, and for users whose locks are
/// legitimately held longer).
pub const WAIT_VAR: &str = "GOALPOST_LOCK_WAIT";

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is still locked after {}s, by {holder}; goalpost holds this lock only for \
         moments, so whatever holds it is stuck or is not goalpost",
        path.display(),
        waited.as_secs()
    )]
    Held {
        path: PathBuf,
        waited: Duration,
        /// The holding process as `/proc/locks` and its command line name it.
        holder: String,
    },
    #[error("locking {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long to wait: [`WAIT_VAR`] when it holds a number of seconds, else
/// [`DEFAULT_WAIT`].
pub fn wait_limit() -> Duration {
    std::env::var(WAIT_VAR)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(DEFAULT_WAIT, Duration::from_secs)
}

/// Takes an exclusive lock on `file` (opened from `path`), waiting at most `limit`.
pub fn exclusive(file: &File, path: &Path, limit: Duration) -> Result<(), LockError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let waited = start.elapsed();
        if waited >= limit {
            return Err(LockError::Held {
                path: path.to_owned(),
                waited,
                holder: holder(file).unwrap_or_else(|| "an unknown process".to_owned()),
            });
        }
        // Polling, with a pause that grows to 50 ms: the lock is usually free within one.
        std::thread::sleep(pause.min(limit - waited));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The process holding a lock on `file`'s inode, from `/proc/locks`: "pid N (command)".
fn holder(file: &File) -> Option<String> {
    let inode = file.metadata().ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| holder_pid(line, inode))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    Some(if words.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({})", words.join(" "))
    })
}

/// The pid of the lock a `/proc/locks` line describes, when it is held (not waited for)
/// on `inode`: `1: FLOCK  ADVISORY  WRITE 8287 fe:00:10024779 0 EOF`.
fn holder_pid(line: &str, inode: u64) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) == Some(&"->") {
        return None;
    }
    let pid = fields.get(4)?.parse().ok()?;
    let ino = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
    (ino == inode).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn a_proc_locks_line_names_its_holder_and_a_waiter_is_no_holder() {
        let held = "1: FLOCK  ADVISORY  WRITE 8287 fe:00:10024779 0 EOF";
        assert_eq!(holder_pid(held, 10024779), Some(8287));
        assert_eq!(holder_pid(held, 10024778), None);
        let waiting = "1: -> FLOCK  ADVISORY  WRITE 8233 fe:00:10024779 0 EOF";
        assert_eq!(holder_pid(waiting, 10024779), None);
    }

    #[test]
    fn a_lock_held_by_another_process_times_out_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.lock");
        std::fs::write(&path, "").unwrap();
        // A process that is not goalpost holds the lock (opened read-only, as anyone
        // who may read the file can) and says so once it does.
        let mut holder = std::process::Command::new("flock")
            .args(["--shared", "--no-fork"])
            .arg(&path)
            .args(["sh", "-c", "echo held; exec sleep 600"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock(1) runs");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "held\n");
        let file = File::options().write(true).open(&path).unwrap();
        let err = exclusive(&file, &path, Duration::from_millis(300)).unwrap_err();
        holder.kill().unwrap();
        holder.wait().unwrap();
        let text = err.to_string();
        assert!(text.contains("records.lock is still locked"), "{text}");
        assert!(text.contains("sleep 600"), "{text}");
        // Free again, it is taken at once.
        exclusive(&file, &path, Duration::ZERO).unwrap();
    }
}
