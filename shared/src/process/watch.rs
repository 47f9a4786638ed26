//! Watching files and directories while a child runs, for changes a look at them afterwards
//! cannot see: a directory moved away and back, a file changed and changed back. Built on
//! inotify, which reports what happens to an inode whatever mount namespace (or sandbox)
//! the process doing it is in.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::sys;

/// What a watch looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// A file: its content or attributes changed, or it was moved or removed.
    File,
    /// A directory: it was moved or removed (not what happens inside it).
    Directory,
}

/// An inotify instance and the paths it watches.
#[derive(Debug)]
pub struct ChangeWatch {
    events: std::os::fd::OwnedFd,
    paths: BTreeMap<i32, PathBuf>,
}

impl ChangeWatch {
    pub fn new() -> io::Result<ChangeWatch> {
        Ok(ChangeWatch {
            events: sys::inotify_init()?,
            paths: BTreeMap::new(),
        })
    }

    /// Watches `path` from now on.
    pub fn add(&mut self, path: &Path, what: Watched) -> io::Result<()> {
        let mask = match what {
            Watched::File => {
                libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF
            }
            Watched::Directory => libc::IN_MOVE_SELF | libc::IN_DELETE_SELF,
        } | libc::IN_DONT_FOLLOW;
        let wd = sys::inotify_add_watch(&self.events, path, mask)?;
        self.paths.insert(wd, path.to_path_buf());
        Ok(())
    }

    /// The watched paths something happened to since they were added, sorted, each once.
    /// When the kernel's queue overflowed, events were lost: every watched path is named.
    pub fn changed(&mut self) -> io::Result<Vec<PathBuf>> {
        let mut events = std::fs::File::from(self.events.try_clone()?);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match events.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut changed: Vec<PathBuf> = Vec::new();
        // Each event: wd (i32), mask, cookie, len (u32), then `len` bytes of name.
        let mut at = 0;
        while at + 16 <= bytes.len() {
            let word = |i: usize| {
                let mut b = [0u8; 4];
                b.copy_from_slice(&bytes[at + 4 * i..at + 4 * i + 4]);
                b
            };
            let wd = i32::from_ne_bytes(word(0));
            let mask = u32::from_ne_bytes(word(1));
            let len = u32::from_ne_bytes(word(3)) as usize;
            at += 16 + len;
            if mask & libc::IN_Q_OVERFLOW != 0 {
                return Ok(self.paths.values().cloned().collect());
            }
            if mask & !(libc::IN_IGNORED | libc::IN_ISDIR) == 0 {
                continue; // A watch removed after its path went, already reported.
            }
            if let Some(path) = self.paths.get(&wd) {
                changed.push(path.clone());
            }
        }
        changed.sort();
        changed.dedup();
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_directory_moved_away_and_back_and_a_file_changed_back_are_seen() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tests");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("run.sh");
        let other = root.path().join("other.txt");
        std::fs::write(&file, "exit 1\n").unwrap();
        std::fs::write(&other, "x\n").unwrap();
        let mut watch = ChangeWatch::new().unwrap();
        watch.add(&dir, Watched::Directory).unwrap();
        watch.add(&file, Watched::File).unwrap();
        watch.add(&other, Watched::File).unwrap();
        // Inside the directory, and reading: nothing to report.
        std::fs::write(dir.join("new.txt"), "new\n").unwrap();
        std::fs::read(&file).unwrap();
        assert_eq!(watch.changed().unwrap(), Vec::<PathBuf>::new());

        std::fs::rename(&dir, root.path().join("moved")).unwrap();
        std::fs::rename(root.path().join("moved"), &dir).unwrap();
        std::fs::write(&other, "y\n").unwrap();
        std::fs::write(&other, "x\n").unwrap();
        assert_eq!(watch.changed().unwrap(), [other, dir]);
        assert_eq!(watch.changed().unwrap(), Vec::<PathBuf>::new(), "drained");
    }
}
