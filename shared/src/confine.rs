//! Confinement of the processes that run the work: agent turns and the checks the worker
//! and the auditor run. Under Landlock (Linux ≥ 6.2, ABI ≥ 3) such a child may read and
//! execute anything, but may write (create, delete, rename, truncate) only under the
//! directories of its [`Confinement`]: its worktree, that worktree's own git metadata and
//! the private directories it was given (its object quarantine among them). The
//! repository's objects, refs, `packed-refs`, config, hooks and every other worktree stay
//! read-only to it.
//!
//! Landlock is the second layer, inside the bubblewrap sandbox of `process::sandbox`
//! (which makes the file system outside those directories read-only as well). Where the
//! kernel has them (ABI 6), the signal and abstract-unix-socket scopes keep the child
//! from signalling, or connecting to an abstract socket of, any process not under its
//! rules.
//!
//! The ruleset is built here, in the parent, with the `landlock` crate; it reaches the
//! sandbox as an open descriptor, and the sandbox's entry point (`goalpost-sandbox`)
//! applies it with two system calls just before it execs the program, so the rules hold
//! from the program's first instruction and are inherited by everything it starts.
//!
//! ```no_run
//! use goalpost_shared::confine::{self, Confinement};
//! # fn demo(repo: &goalpost_shared::git::Repo, worktree: &std::path::Path, tmp: &std::path::Path) -> Result<(), confine::ConfineError> {
//! confine::probe()?; // refuses when Landlock is missing or too old
//! let rules = Confinement::for_worktree(repo, worktree, &[tmp])?;
//! let cmd = goalpost_shared::process::Command::new("sh", worktree).confine(Some(rules));
//! # let _ = cmd; Ok(()) }
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};
use serde::{Deserialize, Serialize};

use crate::git::Repo;

/// The oldest Landlock ABI goalpost accepts: ABI 3 (Linux 6.2) is the first that also
/// controls `truncate(2)`, without which a confined child could still empty any file.
pub const MIN_ABI: u32 = 3;

/// Test hook: `GOALPOST_LANDLOCK=unavailable` makes [`probe`] report that Landlock is
/// missing, as on a kernel without it, so the refusal can be tested on any machine.
pub const LANDLOCK_VAR: &str = "GOALPOST_LANDLOCK";

/// The ABI whose write rights the ruleset handles.
const RULES_ABI: ABI = ABI::V3;

/// The rights a writable directory's rule allows, as the kernel's bit mask.
pub(crate) fn write_access() -> u64 {
    AccessFs::from_write(RULES_ABI).bits()
}

/// Files outside every writable directory that programs open for writing as a matter
/// of course; writing to them reaches no file of anyone's.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// What a confined child may write: these directories and everything under them; and
/// what it does not see at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    pub writable: Vec<PathBuf>,
    /// Directories the child does not see: each is an empty, read-only directory in its
    /// sandbox (goalpost's state dir with its store, locks, prompts and results; the root
    /// of goalpost's worktrees). A writable directory inside one stays visible.
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
    /// Visible again, read-only, inside a hidden directory (the turn's prompt files); or
    /// read-only inside a writable one (an audit's protected files): each is bound
    /// read-only over itself after the directories it lies in, so a write, a truncation, a
    /// removal or a rename of it fails.
    #[serde(default)]
    pub readable: Vec<PathBuf>,
    /// The child's temp dir: a file system of its own at this path, empty when the child
    /// starts, at most `bytes` large (a write beyond fails with "no space left"), gone
    /// when the child's sandbox ends.
    #[serde(default)]
    pub scratch: Option<Scratch>,
    /// No network: the child gets a network namespace of its own, with only a loopback
    /// device of its own (`network = "none"` in the goal file, for checks).
    #[serde(default)]
    pub offline: bool,
    /// The most processes the child's sandbox may have; `None` for
    /// [`crate::process::sandbox::MAX_PROCESSES`].
    #[serde(default)]
    pub max_processes: Option<u64>,
}

/// A size-capped temp dir of a sandbox (see [`Confinement::scratch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scratch {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The temp dir's size cap when the goal file gives none (`tmp_mb` in `[budget]`).
pub const DEFAULT_SCRATCH_BYTES: u64 = 1 << 30;

/// Why a child cannot be confined, or confinement cannot be offered at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error(
        "Landlock is not available on this system ({why}); goalpost confines agents and \
         checks with it (Linux 6.2 or later, Landlock ABI {MIN_ABI} or later)"
    )]
    Unavailable { why: String },
    #[error(
        "no sandbox can be made on this system ({why}); goalpost runs agents and checks \
         in a bubblewrap sandbox with user and PID namespaces of its own"
    )]
    NoSandbox { why: String },
    #[error(
        "{} is not a linked worktree of the repository (its main working tree, or a \
         worktree whose git links do not lead back to it)",
        .0.display()
    )]
    MainWorktree(PathBuf),
    #[error("finding the git metadata of {}: {source}", .path.display())]
    Git {
        path: PathBuf,
        source: crate::git::GitError,
    },
    #[error("cannot confine to {}: {source}", .path.display())]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the Landlock rules: {0}")]
    Rules(#[from] landlock::RulesetError),
}

impl ConfineError {
    /// The hint to print under the error, for a user who has no Landlock.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ConfineError::Unavailable { .. } => Some(
                "run on a kernel with Landlock enabled (lsm=landlock), or pass --unconfined \
                 to run agents and checks with all of your rights",
            ),
            ConfineError::NoSandbox { .. } => Some(
                "install bubblewrap (`apt-get install bubblewrap`) and allow unprivileged \
                 user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                 user.max_user_namespaces > 0, and on Ubuntu \
                 kernel.apparmor_restrict_unprivileged_userns=0), or pass --unconfined to \
                 run agents and checks with all of your rights",
            ),
            _ => None,
        }
    }
}

/// The Landlock ABI the kernel offers, as far as the `landlock` crate knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abi(pub u32);

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Landlock ABI {}", self.0)
    }
}

/// Checks that this system can confine children: Landlock enabled, with ABI
/// [`MIN_ABI`] or later, and a bubblewrap sandbox can be made (see
/// [`crate::process::sandbox::probe`]). Honours the [`LANDLOCK_VAR`] and
/// [`crate::process::sandbox::BWRAP_VAR`] test hooks.
pub fn probe() -> Result<Abi, ConfineError> {
    let abi = landlock_abi()?;
    crate::process::sandbox::probe()?;
    Ok(abi)
}

/// The Landlock ABI the kernel offers, if it is [`MIN_ABI`] or later.
fn landlock_abi() -> Result<Abi, ConfineError> {
    if std::env::var_os(LANDLOCK_VAR).as_deref() == Some(OsStr::new("unavailable")) {
        return Err(ConfineError::Unavailable {
            why: format!("{LANDLOCK_VAR}=unavailable"),
        });
    }
    let known = [
        ABI::V7,
        ABI::V6,
        ABI::V5,
        ABI::V4,
        ABI::V3,
        ABI::V2,
        ABI::V1,
    ];
    // The newest ABI whose every file-system right the kernel handles, asked through the
    // crate's own compatibility check rather than a system call of ours.
    let offered = known.into_iter().zip((1..=7).rev()).find(|&(abi, _)| {
        Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|ruleset| ruleset.create())
            .is_ok()
    });
    match offered {
        Some((_, n)) if n >= MIN_ABI => Ok(Abi(n)),
        Some((_, n)) => Err(ConfineError::Unavailable {
            why: format!("the kernel offers Landlock ABI {n}"),
        }),
        None => Err(ConfineError::Unavailable {
            why: "the kernel has no Landlock, or it is not enabled".to_owned(),
        }),
    }
}

impl Confinement {
    /// Writes allowed under exactly these directories.
    pub fn new(writable: impl IntoIterator<Item = PathBuf>) -> Confinement {
        Confinement {
            writable: writable.into_iter().collect(),
            ..Confinement::default()
        }
    }

    /// The confinement of work in `worktree`, a linked worktree of `repo`: the worktree,
    /// its private git metadata (`<common dir>/worktrees/<name>`), and `private` (temp and
    /// state directories and the object quarantine, created if missing). The repository's
    /// object store is not among them: agents and checks write objects into a quarantine
    /// of their own (see [`crate::git::Quarantine`]).
    pub fn for_worktree(
        repo: &Repo,
        worktree: &Path,
        private: &[&Path],
    ) -> Result<Confinement, ConfineError> {
        let git_dir = repo
            .worktree_admin_dir(worktree)
            .ok_or_else(|| ConfineError::MainWorktree(worktree.to_owned()))?;
        let mut writable = vec![canonical(worktree)?, git_dir];
        for dir in private {
            std::fs::create_dir_all(dir).map_err(|source| ConfineError::Path {
                path: dir.to_path_buf(),
                source,
            })?;
            writable.push(canonical(dir)?);
        }
        Ok(Confinement::new(writable))
    }

    /// Also hidden: each of `dirs` that exists (see [`Confinement::hidden`]).
    pub fn hiding(mut self, dirs: &[PathBuf]) -> Confinement {
        self.hidden
            .extend(dirs.iter().filter_map(|dir| dir.canonicalize().ok()));
        self
    }

    /// Also readable inside a hidden directory: `path`, if it exists.
    pub fn showing(mut self, path: &Path) -> Confinement {
        self.readable.extend(path.canonicalize().ok());
        self
    }

    /// The child's temp dir `dir` (created if missing) becomes a fresh file system of at
    /// most `bytes`; it is writable to the child, and no longer one of its
    /// [`writable`](Confinement::writable) binds.
    pub fn with_scratch(mut self, dir: &Path, bytes: u64) -> Result<Confinement, ConfineError> {
        std::fs::create_dir_all(dir).map_err(|source| ConfineError::Path {
            path: dir.to_owned(),
            source,
        })?;
        let path = canonical(dir)?;
        self.writable.retain(|w| *w != path);
        self.scratch = Some(Scratch {
            path,
            bytes: bytes.max(1 << 20),
        });
        Ok(self)
    }

    /// Without network (see [`Confinement::offline`]) when `offline`.
    pub fn offline(mut self, offline: bool) -> Confinement {
        self.offline = offline;
        self
    }

    /// Also writable: `dir` (created if missing).
    pub fn with_writable(mut self, dir: &Path) -> Result<Confinement, ConfineError> {
        std::fs::create_dir_all(dir).map_err(|source| ConfineError::Path {
            path: dir.to_owned(),
            source,
        })?;
        self.writable.push(canonical(dir)?);
        Ok(self)
    }

    /// Also read-only: `paths`, absolute paths of existing files or directories under the
    /// writable directories (see [`Confinement::readable`]).
    pub fn with_read_only(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Confinement {
        self.readable.extend(paths);
        self
    }

    /// The Landlock ruleset for these rules, ready for `landlock_restrict_self(2)` in a
    /// child. Fails unless the kernel enforces every right goalpost asks for.
    /// Where the kernel has them (ABI 6), the signal and abstract-unix-socket scopes
    /// are set too: the child can signal, and connect to abstract sockets of, only
    /// processes under the same rules.
    pub fn ruleset(&self) -> Result<OwnedFd, ConfineError> {
        landlock_abi()?;
        let write = AccessFs::from_write(RULES_ABI);
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(write)?
            .set_compatibility(CompatLevel::BestEffort)
            .scope(Scope::Signal | Scope::AbstractUnixSocket)?
            .create()?;
        // The scratch dir's own rule is added inside the sandbox, where its file system is.
        for dir in &self.writable {
            let fd = PathFd::new(dir).map_err(|source| ConfineError::Path {
                path: dir.clone(),
                source: std::io::Error::other(source),
            })?;
            ruleset = ruleset.add_rule(PathBeneath::new(fd, write))?;
        }
        for device in DEVICES {
            // A device that is not there needs no rule.
            if let Ok(fd) = PathFd::new(device) {
                let access = AccessFs::WriteFile | AccessFs::Truncate;
                ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
            }
        }
        let fd: Option<OwnedFd> = ruleset.into();
        fd.ok_or_else(|| ConfineError::Unavailable {
            why: "the kernel gave no ruleset".to_owned(),
        })
    }
}

/// The files through which git finds a linked worktree's metadata: `<worktree>/.git`
/// and, in the metadata dir, `gitdir` and `commondir`. They are inside what a confined
/// child may write, yet goalpost's own git commands (the harvest, the checkout pool) follow
/// them with all of goalpost's rights: a child that pointed them at a repository of its
/// own could have those commands write there, or run what that repository's config says.
/// So they are read before a child runs and put back after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitLinks {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl GitLinks {
    /// Reads the links of `worktree`, a linked worktree.
    pub fn read(worktree: &Path) -> std::io::Result<GitLinks> {
        let link = worktree.join(".git");
        let text = std::fs::read(&link)?;
        let mut files = vec![(link, text.clone())];
        let target = String::from_utf8_lossy(&text);
        if let Some(dir) = target.trim().strip_prefix("gitdir:") {
            let dir = worktree.join(dir.trim());
            for name in ["gitdir", "commondir"] {
                let path = dir.join(name);
                if let Ok(bytes) = std::fs::read(&path) {
                    files.push((path, bytes));
                }
            }
        }
        Ok(GitLinks { files })
    }

    /// Puts back every link that changed (a file rewritten, removed, or replaced by a
    /// directory); returns the paths it put back.
    pub fn restore(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut restored = Vec::new();
        for (path, bytes) in &self.files {
            if std::fs::read(path).ok().as_ref() == Some(bytes) {
                continue;
            }
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path)?,
                Ok(_) => std::fs::remove_file(path)?,
                Err(_) => {}
            }
            std::fs::write(path, bytes)?;
            restored.push(path.clone());
        }
        Ok(restored)
    }
}

fn canonical(path: &Path) -> Result<PathBuf, ConfineError> {
    path.canonicalize().map_err(|source| ConfineError::Path {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_escape_hatch() {
        let err = ConfineError::Unavailable { why: "test".into() };
        assert!(err.hint().is_some_and(|h| h.contains("--unconfined")));
        assert!(err.to_string().contains("Landlock is not available"));
    }

    #[test]
    fn git_links_are_put_back() {
        let root = tempfile::tempdir().unwrap();
        let wt = root.path().join("wt");
        let meta = root.path().join("repo/.git/worktrees/wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", meta.display())).unwrap();
        std::fs::write(meta.join("commondir"), "../..\n").unwrap();
        std::fs::write(meta.join("gitdir"), "/wt/.git\n").unwrap();
        let links = GitLinks::read(&wt).unwrap();
        assert_eq!(links.restore().unwrap(), Vec::<PathBuf>::new());

        std::fs::remove_file(wt.join(".git")).unwrap();
        std::fs::create_dir_all(wt.join(".git/objects")).unwrap();
        std::fs::write(meta.join("commondir"), "/elsewhere\n").unwrap();
        assert_eq!(
            links.restore().unwrap(),
            [wt.join(".git"), meta.join("commondir")]
        );
        assert_eq!(GitLinks::read(&wt).unwrap(), links);
    }

    /// Files in the host's `/dev/shm` stay readable (not writable) in the sandbox, whose
    /// `/dev` is its own, and a writable directory there is writable.
    #[test]
    fn a_confined_child_sees_the_hosts_dev_shm_read_only() {
        if probe().is_err() || !Path::new("/dev/shm").is_dir() {
            return;
        }
        let Ok(root) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let inside = root.path().join("inside");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(root.path().join("script.sh"), "echo from-shm\n").unwrap();
        let script = "sh ../script.sh; echo in > new; (echo out > ../new) || echo refused >&2";
        let cmd = crate::process::Command::new("/bin/sh", &inside)
            .args(["-c", script])
            .confine(Some(Confinement::new([inside.clone()])));
        let outcome = crate::process::run(&cmd, None).unwrap();
        assert!(
            outcome.stdout.text_lossy().contains("from-shm"),
            "{outcome:?}"
        );
        assert!(
            outcome.stderr.text_lossy().contains("refused"),
            "{outcome:?}"
        );
        assert!(inside.join("new").is_file());
        assert!(!root.path().join("new").exists());
    }

    /// A read-only file inside a writable directory cannot be written, emptied, removed,
    /// replaced or made writable; its neighbours can. Skipped where no sandbox can be made.
    #[test]
    fn a_read_only_file_stays_as_it_is_inside_a_writable_directory() {
        if probe().is_err() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("wt");
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        let guarded = dir.join("tests/check.sh");
        std::fs::write(&guarded, "exit 1\n").unwrap();
        let script = "(echo 'exit 0' > tests/check.sh) || echo refused-write >&2; \
                      truncate -s 0 tests/check.sh || echo refused-truncate >&2; \
                      rm -f tests/check.sh || echo refused-rm >&2; \
                      echo 'exit 0' > other; mv other tests/check.sh || echo refused-mv >&2; \
                      chmod 777 tests/check.sh || echo refused-chmod >&2; \
                      echo fine > tests/neighbour";
        let rules = Confinement::new([dir.canonicalize().unwrap()])
            .with_read_only([guarded.canonicalize().unwrap()]);
        let cmd = crate::process::Command::new("/bin/sh", &dir)
            .args(["-c", script])
            .confine(Some(rules));
        let outcome = crate::process::run(&cmd, None).unwrap();
        let stderr = outcome.stderr.text_lossy();
        for refused in [
            "refused-write",
            "refused-truncate",
            "refused-rm",
            "refused-mv",
            "refused-chmod",
        ] {
            assert!(stderr.contains(refused), "{refused} missing: {stderr}");
        }
        assert_eq!(std::fs::read_to_string(&guarded).unwrap(), "exit 1\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("tests/neighbour")).unwrap(),
            "fine\n"
        );
    }

    /// Skipped (passes) where the kernel cannot confine: the refusal is tested end to end.
    #[test]
    fn a_confined_child_writes_only_where_it_may() {
        if probe().is_err() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("inside");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("kept"), "kept").unwrap();
        let script = "echo in > inside/new; echo ok >/dev/null || echo refused-null >&2; \
                      echo through-the-pipe > /dev/stderr; \
                      (echo out > outside/new) || echo refused-write >&2; \
                      truncate -s 0 outside/kept || echo refused-truncate >&2; \
                      rm -f outside/kept || echo refused-rm >&2; \
                      mv inside/new outside/moved || echo refused-mv >&2; \
                      (echo landlock > /dev/probe) || echo refused-dev >&2";
        let cmd = crate::process::Command::new("/bin/sh", root.path())
            .args(["-c", script])
            .confine(Some(Confinement::new([inside.clone()])));
        let outcome = crate::process::run(&cmd, None).unwrap();
        let stderr = outcome.stderr.text_lossy();
        for refused in [
            "refused-write",
            "refused-truncate",
            "refused-rm",
            "refused-mv",
            "refused-dev",
        ] {
            assert!(stderr.contains(refused), "{refused} missing: {stderr}");
        }
        // The sandbox's /dev is a writable tmpfs: only Landlock, inside, refuses there.
        assert!(stderr.contains("Permission denied"), "{stderr}");
        assert!(!stderr.contains("refused-null"), "{stderr}");
        assert!(stderr.contains("through-the-pipe"), "{stderr}");
        assert!(inside.join("new").exists());
        assert!(!outside.join("new").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("kept")).unwrap(),
            "kept"
        );
    }
}
