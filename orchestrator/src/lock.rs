//! One run per repository at a time: a lock file in goalpost's state dir naming the run
//! and the process that holds it. A lock whose process is gone is stale and taken over.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another goalpost run holds this repository: run {run}, pid {pid} (lock file {})", path.display())]
    Held {
        run: String,
        pid: u32,
        path: PathBuf,
    },
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("run.lock")
    }

    /// Takes the lock for `run`, or says who holds it.
    pub fn acquire(state_dir: &Path, run: &str) -> Result<RunLock, LockError> {
        let path = Self::path_in(state_dir);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{run} {}", std::process::id()).map_err(io)?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match holder(&path) {
                        Some((run, pid)) if process_alive(pid) => {
                            return Err(LockError::Held { run, pid, path });
                        }
                        // Stale (its process is gone) or unreadable half-written: take over.
                        _ => {
                            tracing::info!("removing the stale lock {}", path.display());
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        let (run, pid) = holder(&path).unwrap_or_default();
        Err(LockError::Held { run, pid, path })
    }

    /// Records a new run id in the lock this process holds.
    pub fn rename(&self, run: &str) -> Result<(), LockError> {
        std::fs::write(&self.path, format!("{run} {}\n", std::process::id())).map_err(|source| {
            LockError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The run and pid written in a lock file.
pub fn holder(path: &Path) -> Option<(String, u32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace();
    let run = words.next()?.to_owned();
    let pid = words.next()?.parse().ok()?;
    Some((run, pid))
}

/// Whether a process with this pid runs (a lock whose holder is gone is stale).
pub fn process_alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "r1").unwrap();
        let err = RunLock::acquire(dir.path(), "r2").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("run r1"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        RunLock::acquire(dir.path(), "r3").unwrap();
    }

    #[test]
    fn a_lock_of_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // Pid numbers are below 2^22 on Linux; this one cannot be running.
        std::fs::write(RunLock::path_in(dir.path()), "old 4194999\n").unwrap();
        let lock = RunLock::acquire(dir.path(), "new").unwrap();
        assert_eq!(holder(&lock.path).unwrap().0, "new");
    }
}
