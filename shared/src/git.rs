//! The one door to git: git2 for reads, diffs, in-memory merges and compare-and-swap ref
//! updates; the git CLI, through [`Repo::run_git`] only, for what libgit2 does badly
//! (worktrees, staging a whole working tree).
//!
//! Every failure is a [`GitError`] that carries what was being done: the ref and both
//! values for a moved ref, the command line, exit status and stderr tail for the CLI.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git2::{
    Delta, DiffFindOptions, DiffFormat, DiffOptions, ErrorCode, MergeOptions, ObjectType,
    Repository, Signature, StatusOptions,
};
use thiserror::Error;

use crate::process::{self, shell_quote};

pub use git2::Oid;

/// A repository path as git writes it in its own output (`core.quotePath`, the default):
/// as it is when it has only printable ASCII other than `"` and `\`; otherwise in double
/// quotes, with C escapes for control characters, `"` and `\`, and octal escapes for
/// every other byte. A quoted path always fits on one line, so a path can never forge a
/// line of a report.
///
/// ```
/// use goalpost_shared::git::quote_path;
/// assert_eq!(quote_path("src/lib.rs"), "src/lib.rs");
/// assert_eq!(quote_path("a\nb"), r#""a\nb""#);
/// assert_eq!(quote_path("é"), r#""\303\251""#);
/// ```
pub fn quote_path(path: &str) -> String {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if path.bytes().all(plain) {
        return path.to_owned();
    }
    let mut out = String::from("\"");
    for b in path.bytes() {
        match b {
            b'\x07' => out.push_str("\\a"),
            b'\x08' => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\x0b' => out.push_str("\\v"),
            b'\x0c' => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if plain(b) => out.push(char::from(b)),
            b => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// Whether `path` holds a control character (a newline, a tab, an escape...): git can
/// store such a name, but no report line can show it as it is.
pub fn has_control_character(path: &str) -> bool {
    path.chars().any(char::is_control)
}

pub mod pool;
pub mod quarantine;
mod worktrees;

pub use quarantine::{Quarantine, WorktreeView};
pub use worktrees::Worktree;

/// How much of a failed command's stderr an error keeps (the end of it).
const STDERR_TAIL_BYTES: usize = 4096;

/// What can go wrong at the door to git.
#[derive(Debug, Error)]
pub enum GitError {
    /// The path is not inside a git repository.
    #[error("{} is not inside a git repository", path.display())]
    NotARepository { path: PathBuf },
    /// A compare-and-swap ref update found the ref somewhere other than expected.
    #[error(
        "ref {name} moved: expected {}, found {}",
        show(expected),
        show(actual)
    )]
    RefMoved {
        name: String,
        expected: Option<Oid>,
        actual: Option<Oid>,
    },
    /// A revision did not name a commit.
    #[error("unknown revision {rev:?}")]
    UnknownRevision { rev: String },
    /// The git CLI could not be started.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The git CLI ran and failed.
    #[error("`{command}` in {} exited with {status}: {stderr}", cwd.display())]
    Command {
        command: String,
        cwd: PathBuf,
        status: String,
        /// The last few KiB of stderr, trimmed.
        stderr: String,
    },
    /// The git CLI printed something this module cannot read.
    #[error("`{command}` printed unexpected output: {output:?}")]
    Output { command: String, output: String },
    /// An object's content does not hash to its id: the object store was tampered with.
    #[error("{what}: object {oid} does not match its content; the object store is corrupt")]
    Corrupt { oid: Oid, what: String },
    /// A lock on the repository's records is held by something else.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// One harvest would bring more objects into the repository than its cap allows.
    #[error(
        "the harvest of {} would import {} MiB of git objects, over the cap of {} MiB \
         (`objects_mb` in the goal file's [budget])",
        worktree.display(),
        bytes.div_ceil(1024 * 1024),
        cap / (1024 * 1024)
    )]
    TooManyObjects {
        worktree: PathBuf,
        bytes: u64,
        cap: u64,
    },
    /// An object to import does not hash to its id.
    #[error("object {id} in {} hashes to {hashed}: it is not what its id says", dir.display())]
    ObjectMismatch { id: Oid, hashed: Oid, dir: PathBuf },
    /// A file goalpost keeps for a worktree could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// libgit2 failed.
    #[error("{context}: {source}")]
    Git2 {
        context: String,
        #[source]
        source: git2::Error,
    },
}

fn show(oid: &Option<Oid>) -> String {
    oid.map_or_else(|| "no ref".to_owned(), |o| o.to_string())
}

/// Attaches what was being done to a libgit2 error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, GitError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, GitError> {
        self.map_err(|source| GitError::Git2 {
            context: what(),
            source,
        })
    }
}

/// Who a commit is by. Without a time, the commit is dated now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
    /// Seconds since the Unix epoch, and the UTC offset in minutes.
    pub time: Option<(i64, i32)>,
}

impl Identity {
    /// `goalpost <goalpost@localhost>`, dated now: the author and committer of every
    /// commit goalpost makes unless told otherwise.
    pub fn goalpost() -> Identity {
        Identity {
            name: "goalpost".to_owned(),
            email: "goalpost@localhost".to_owned(),
            time: None,
        }
    }

    fn signature(&self) -> Result<Signature<'static>, GitError> {
        match self.time {
            Some((secs, offset)) => {
                Signature::new(&self.name, &self.email, &git2::Time::new(secs, offset))
            }
            None => Signature::now(&self.name, &self.email),
        }
        .context(|| format!("bad identity {} <{}>", self.name, self.email))
    }
}

/// The result of merging two commits in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The merge is clean; `tree` is the merged tree, written to the object store.
    Clean { tree: Oid },
    /// The merge conflicts in these paths (sorted, each once).
    Conflict { paths: Vec<String> },
}

/// What happened to one path between two trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
    /// The path changed kind: file ↔ symlink ↔ submodule.
    TypeChange,
}

/// The kind of a tree entry, enough to tell symlinks and submodules from files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryMode {
    /// The path does not exist on this side.
    Absent,
    File,
    Executable,
    Symlink,
    /// A gitlink: a commit of another repository.
    Submodule,
    Tree,
}

impl From<git2::FileMode> for EntryMode {
    fn from(mode: git2::FileMode) -> Self {
        match mode {
            git2::FileMode::Blob | git2::FileMode::BlobGroupWritable => EntryMode::File,
            git2::FileMode::BlobExecutable => EntryMode::Executable,
            git2::FileMode::Link => EntryMode::Symlink,
            git2::FileMode::Commit => EntryMode::Submodule,
            git2::FileMode::Tree => EntryMode::Tree,
            git2::FileMode::Unreadable => EntryMode::Absent,
        }
    }
}

/// One changed path between a base and a candidate. A rename has both paths; boundaries
/// are judged on both, so moving a protected file away counts as touching it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathChange {
    pub status: ChangeStatus,
    /// The path in the base (`None` when added). Non-UTF-8 bytes are replaced.
    pub old_path: Option<String>,
    /// The path in the candidate (`None` when deleted).
    pub new_path: Option<String>,
    pub old_mode: EntryMode,
    pub new_mode: EntryMode,
}

impl PathChange {
    /// Every path this change touches: one, or two for a rename.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let old = self.old_path.as_deref();
        let new = self.new_path.as_deref().filter(|n| Some(*n) != old);
        old.into_iter().chain(new)
    }
}

/// A repository, opened through git2, with the environment its git CLI calls get.
pub struct Repo {
    repo: Repository,
    cli_env: Vec<(OsString, OsString)>,
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo")
            .field("git_dir", &self.repo.path())
            .field("workdir", &self.repo.workdir())
            .finish_non_exhaustive()
    }
}

impl Repo {
    /// Opens the repository containing `path`, searching upwards.
    pub fn discover(path: &Path) -> Result<Repo, GitError> {
        Repository::discover(path)
            .map(Repo::from)
            .map_err(|e| open_error(path, e))
    }

    /// Opens the repository whose working tree or git dir is exactly `path`.
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        Repository::open(path)
            .map(Repo::from)
            .map_err(|e| open_error(path, e))
    }

    /// Adds an environment variable to every git CLI call (tests point `HOME` and
    /// `GIT_CONFIG_GLOBAL` somewhere hermetic with it).
    pub fn set_cli_env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        self.cli_env.push((key.into(), value.into()));
    }

    /// The underlying git2 repository, for reads this module does not wrap.
    pub fn git2(&self) -> &Repository {
        &self.repo
    }

    /// The working tree, `None` for a bare repository.
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    /// This repository's (or worktree's) own git dir.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// The git dir shared by the main working tree and all linked worktrees: where the
    /// object store, the refs and goalpost's state live.
    pub fn common_dir(&self) -> &Path {
        self.repo.commondir()
    }

    /// The branch HEAD points at (short name, even if unborn); `None` when detached.
    pub fn head_branch(&self) -> Option<String> {
        let head = self.repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok().flatten()?;
        target.strip_prefix("refs/heads/").map(str::to_owned)
    }

    /// True when the working tree has tracked changes (staged or not) or untracked files
    /// that are not ignored.
    pub fn is_dirty(&self) -> Result<bool, GitError> {
        Ok(!self.dirty_paths(None)?.is_empty())
    }

    /// The paths of the working tree's tracked changes (staged or not) and of its untracked
    /// files that are not ignored (each file of an untracked directory), in git's order,
    /// leaving out `except` (a path relative to the working tree, such as a goal file the
    /// user has not committed). A path that is not UTF-8 is shown with its invalid bytes
    /// replaced.
    pub fn dirty_paths(&self, except: Option<&str>) -> Result<Vec<String>, GitError> {
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .include_ignored(false)
            .recurse_untracked_dirs(true)
            .exclude_submodules(false);
        let statuses = self
            .repo
            .statuses(Some(&mut opts))
            .context(|| "reading the working tree's status".to_owned())?;
        Ok(statuses
            .iter()
            .filter(|e| !e.status().is_empty() && !e.status().contains(git2::Status::IGNORED))
            .map(|e| String::from_utf8_lossy(e.path_bytes()).into_owned())
            .filter(|path| Some(path.as_str()) != except)
            .collect())
    }

    /// The commit `rev` names (any revision syntax git accepts: branch, tag, oid, `HEAD~2`).
    pub fn resolve(&self, rev: &str) -> Result<Oid, GitError> {
        let unknown = || GitError::UnknownRevision {
            rev: rev.to_owned(),
        };
        let object = self.repo.revparse_single(rev).map_err(|e| match e.code() {
            ErrorCode::NotFound | ErrorCode::InvalidSpec | ErrorCode::Ambiguous => unknown(),
            _ => GitError::Git2 {
                context: format!("resolving {rev}"),
                source: e,
            },
        })?;
        object
            .peel_to_commit()
            .map(|c| c.id())
            .map_err(|_| unknown())
    }

    /// The commit local branch `name` points at, `None` if there is no such branch.
    pub fn branch_tip(&self, name: &str) -> Result<Option<Oid>, GitError> {
        self.ref_target(&format!("refs/heads/{name}"))
    }

    /// The object full ref `name` points at (peeled through symbolic refs), `None` if the
    /// ref does not exist.
    pub fn ref_target(&self, name: &str) -> Result<Option<Oid>, GitError> {
        match self.repo.refname_to_id(name) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("reading ref {name}")),
        }
    }

    /// The tree of `commit`.
    pub fn tree_of(&self, commit: Oid) -> Result<Oid, GitError> {
        Ok(self.commit(commit)?.tree_id())
    }

    /// True when `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Oid, descendant: Oid) -> Result<bool, GitError> {
        if ancestor == descendant {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(descendant, ancestor)
            .context(|| format!("is {ancestor} an ancestor of {descendant}"))
    }

    /// Points ref `name` at `new` only if it is at `expected_old` now (`None`: only if it
    /// does not exist), atomically with respect to every other git writer.
    pub fn update_ref_cas(
        &self,
        name: &str,
        new: Oid,
        expected_old: Option<Oid>,
        log_message: &str,
    ) -> Result<(), GitError> {
        let result = match expected_old {
            Some(old) => self
                .repo
                .reference_matching(name, new, true, old, log_message),
            None => self.repo.reference(name, new, false, log_message),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::Modified | ErrorCode::Exists | ErrorCode::NotFound
                ) =>
            {
                let actual = self.ref_target(name)?;
                if actual == expected_old {
                    // The ref is where we expected, so the failure was something else.
                    Err(e).context(|| format!("updating ref {name}"))
                } else {
                    Err(GitError::RefMoved {
                        name: name.to_owned(),
                        expected: expected_old,
                        actual,
                    })
                }
            }
            Err(e) => Err(e).context(|| format!("updating ref {name}")),
        }
    }

    /// Merges `theirs` into `ours` without touching any working tree, index or ref,
    /// using their merge base and rename detection.
    pub fn merge_in_memory(&self, ours: Oid, theirs: Oid) -> Result<MergeOutcome, GitError> {
        let (our_commit, their_commit) = (self.commit(ours)?, self.commit(theirs)?);
        let mut index = self
            .repo
            .merge_commits(&our_commit, &their_commit, Some(&MergeOptions::new()))
            .context(|| format!("merging {theirs} into {ours}"))?;
        if index.has_conflicts() {
            let mut paths: Vec<String> = Vec::new();
            let conflicts = index
                .conflicts()
                .context(|| "listing merge conflicts".to_owned())?;
            for conflict in conflicts {
                let conflict = conflict.context(|| "reading a merge conflict".to_owned())?;
                for entry in [conflict.ancestor, conflict.our, conflict.their]
                    .into_iter()
                    .flatten()
                {
                    paths.push(String::from_utf8_lossy(&entry.path).into_owned());
                }
            }
            paths.sort();
            paths.dedup();
            return Ok(MergeOutcome::Conflict { paths });
        }
        let tree = index
            .write_tree_to(&self.repo)
            .context(|| "writing the merged tree".to_owned())?;
        Ok(MergeOutcome::Clean { tree })
    }

    /// Writes a commit of `tree` with `parents` and returns it; no ref moves. Author and
    /// committer are `identity`, or goalpost's own.
    pub fn create_commit(
        &self,
        tree: Oid,
        parents: &[Oid],
        message: &str,
        identity: Option<&Identity>,
    ) -> Result<Oid, GitError> {
        let signature = identity
            .cloned()
            .unwrap_or_else(Identity::goalpost)
            .signature()?;
        let tree = self
            .repo
            .find_tree(tree)
            .context(|| format!("reading tree {tree}"))?;
        let parents = parents
            .iter()
            .map(|&p| self.commit(p))
            .collect::<Result<Vec<_>, _>>()?;
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        self.repo
            .commit(None, &signature, &signature, message, &tree, &parent_refs)
            .context(|| "writing a commit".to_owned())
    }

    /// Harvests a worktree: stages every change in it (additions, modifications,
    /// deletions, untracked files that are not ignored) through goalpost's `view` of it and
    /// commits the result on top of `parent`, without moving any branch; at most `cap`
    /// bytes of new objects are imported. The worktree's detached HEAD is left at the new
    /// commit, for the agents' own git. `None` when the worktree's tree equals `parent`'s.
    pub fn commit_worktree(
        &self,
        view: &WorktreeView<'_>,
        parent: Oid,
        message: &str,
        author: &Identity,
        cap: u64,
    ) -> Result<Option<Oid>, GitError> {
        let tree = view.harvest_tree(parent, cap)?;
        if tree == self.tree_of(parent)? {
            return Ok(None);
        }
        let commit = self.create_commit(tree, &[parent], message, Some(author))?;
        view.show_commit(commit)?;
        Ok(Some(commit))
    }

    /// The paths that differ between two commits, with renames detected, sorted by path.
    pub fn changed_paths(&self, base: Oid, candidate: Oid) -> Result<Vec<PathChange>, GitError> {
        let diff = self.diff(base, candidate)?;
        let mut changes = Vec::new();
        for delta in diff.deltas() {
            let status = match delta.status() {
                Delta::Added | Delta::Untracked | Delta::Copied => ChangeStatus::Added,
                Delta::Deleted => ChangeStatus::Deleted,
                Delta::Modified => ChangeStatus::Modified,
                Delta::Renamed => ChangeStatus::Renamed,
                Delta::Typechange => ChangeStatus::TypeChange,
                Delta::Unmodified | Delta::Ignored | Delta::Unreadable | Delta::Conflicted => {
                    continue;
                }
            };
            let side = |file: git2::DiffFile<'_>, present: bool| {
                let path = present
                    .then(|| file.path_bytes())
                    .flatten()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let mode = if present {
                    EntryMode::from(file.mode())
                } else {
                    EntryMode::Absent
                };
                (path, mode)
            };
            let (old_path, old_mode) = side(delta.old_file(), status != ChangeStatus::Added);
            let (new_path, new_mode) = side(delta.new_file(), status != ChangeStatus::Deleted);
            changes.push(PathChange {
                status,
                old_path,
                new_path,
                old_mode,
                new_mode,
            });
        }
        changes.sort_by(|a, b| {
            let key = |c: &PathChange| c.new_path.clone().or_else(|| c.old_path.clone());
            key(a).cmp(&key(b))
        });
        Ok(changes)
    }

    /// The contents of `path` in `commit`, `None` if there is no file there.
    pub fn read_blob_at(&self, commit: Oid, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let tree = self
            .commit(commit)?
            .tree()
            .context(|| format!("reading the tree of {commit}"))?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e).context(|| format!("looking up {path} in {commit}")),
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Ok(None);
        }
        self.verified_blob(entry.id(), &format!("{path} in {commit}"))
            .map(Some)
    }

    /// The content of blob `oid`, hashed again and refused unless it matches the id, so
    /// a file goalpost writes or judges is never one an object store could have swapped.
    pub fn verified_blob(&self, oid: Oid, what: &str) -> Result<Vec<u8>, GitError> {
        let blob = self
            .repo
            .find_blob(oid)
            .context(|| format!("reading {what}"))?;
        let content = blob.content().to_vec();
        if Oid::hash_object(ObjectType::Blob, &content).ok() != Some(oid) {
            return Err(GitError::Corrupt {
                oid,
                what: format!("reading {what}"),
            });
        }
        Ok(content)
    }

    /// The unified diff from `base` to `candidate` (renames detected), cut after about
    /// `max_bytes` with a note saying so.
    pub fn diff_text(
        &self,
        base: Oid,
        candidate: Oid,
        max_bytes: usize,
    ) -> Result<String, GitError> {
        let diff = self.diff(base, candidate)?;
        let mut out: Vec<u8> = Vec::new();
        let mut truncated = false;
        let printed = diff.print(DiffFormat::Patch, |_, _, line| {
            if out.len() >= max_bytes {
                truncated = true;
                return false;
            }
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin() as u8);
            }
            out.extend_from_slice(line.content());
            true
        });
        // Stopping the callback early reports a user error; anything else is real.
        if !truncated {
            printed.context(|| format!("printing the diff {base}..{candidate}"))?;
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if truncated || text.len() > max_bytes {
            let mut cut = max_bytes.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[diff truncated at {max_bytes} bytes]\n"));
        }
        Ok(text)
    }

    /// Runs the git CLI in `cwd` and returns its stdout. The only place goalpost starts
    /// git: `LC_ALL=C` so messages are stable, no terminal prompts, no inherited
    /// `GIT_DIR`-style variables, no fsmonitor and no hooks (whatever a config says: a
    /// config an agent wrote must not run its code with goalpost's rights), stdin closed,
    /// the command line logged, and a failure turned into [`GitError::Command`] with the
    /// tail of stderr.
    pub fn run_git<I, S>(&self, cwd: &Path, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_git_with(cwd, &[], args)
    }

    /// [`Repo::run_git`] with more environment variables.
    pub(crate) fn run_git_with<I, S>(
        &self,
        cwd: &Path,
        env: &[(OsString, OsString)],
        args: I,
    ) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_git_with_status(cwd, env, args, &[0])
    }

    /// [`Repo::run_git_with`] that also takes the exit codes in `ok` as success.
    pub(crate) fn run_git_with_status<I, S>(
        &self,
        cwd: &Path,
        env: &[(OsString, OsString)],
        args: I,
        ok: &[i32],
    ) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        // Shown and logged as the caller wrote it; `SAFE_CONFIG` goes with every command.
        let command_line = std::iter::once("git".to_owned())
            .chain(args.iter().map(shell_quote))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::debug!(cwd = %cwd.display(), "{command_line}");
        let mut cmd = Command::new("git");
        cmd.args(SAFE_CONFIG)
            .args(&args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in INHERITED_REPO_VARS {
            cmd.env_remove(var);
        }
        cmd.env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0");
        for (key, value) in self.cli_env.iter().chain(env) {
            cmd.env(key, value);
        }
        let output = cmd.output().map_err(|source| GitError::Spawn {
            command: command_line.clone(),
            source,
        })?;
        if !output.status.code().is_some_and(|c| ok.contains(&c)) {
            return Err(GitError::Command {
                command: command_line,
                cwd: cwd.to_owned(),
                status: output.status.to_string(),
                stderr: process::tail(&output.stderr, STDERR_TAIL_BYTES)
                    .text()
                    .trim()
                    .to_owned(),
            });
        }
        String::from_utf8(output.stdout).map_err(|e| GitError::Output {
            command: command_line,
            output: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn cli_dir(&self) -> &Path {
        self.repo.workdir().unwrap_or_else(|| self.repo.path())
    }

    fn commit(&self, oid: Oid) -> Result<git2::Commit<'_>, GitError> {
        self.repo
            .find_commit(oid)
            .map_err(|_| GitError::UnknownRevision {
                rev: oid.to_string(),
            })
    }

    fn diff(&self, base: Oid, candidate: Oid) -> Result<git2::Diff<'_>, GitError> {
        let old = self
            .commit(base)?
            .tree()
            .context(|| format!("reading the tree of {base}"))?;
        let new = self
            .commit(candidate)?
            .tree()
            .context(|| format!("reading the tree of {candidate}"))?;
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let mut diff = self
            .repo
            .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut opts))
            .context(|| format!("diffing {base}..{candidate}"))?;
        let mut find = DiffFindOptions::new();
        find.renames(true).copies(false).for_untracked(false);
        diff.find_similar(Some(&mut find))
            .context(|| format!("finding renames in {base}..{candidate}"))?;
        Ok(diff)
    }
}

impl From<Repository> for Repo {
    fn from(repo: Repository) -> Self {
        tune_libgit2();
        Repo {
            repo,
            cli_env: Vec::new(),
        }
    }
}

/// libgit2's process-wide settings, made once before the first repository is used. The
/// trees and commits goalpost writes name only objects it has just read or written (an
/// index of a worktree, a merge of two commits), so libgit2 need not look each of them up
/// in the object store again before writing (a lookup per path of the tree); and objects
/// read back are not re-hashed, as git itself does not re-hash them outside `git fsck`.
fn tune_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        git2::opts::strict_object_creation(false);
        git2::opts::strict_hash_verification(false);
    });
}

/// From now on, libgit2 hashes every object this process reads again and fails the read
/// when it does not match its id. For the processes where a merge is decided (the auditor,
/// the gate): what they judge is then exactly what the ids say, whoever could write the
/// object store.
pub fn verify_object_reads() {
    tune_libgit2();
    git2::opts::strict_hash_verification(true);
}

/// Settings every git command of goalpost's runs with, over any config file: no
/// fsmonitor daemon or hook program is started, and the index is one plain file.
const SAFE_CONFIG: [&str; 8] = [
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.splitIndex=false",
    "-c",
    "core.untrackedCache=false",
];

/// Variables that would point the git CLI at another repository than `cwd`'s.
const INHERITED_REPO_VARS: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

fn open_error(path: &Path, e: git2::Error) -> GitError {
    if e.code() == ErrorCode::NotFound {
        GitError::NotARepository {
            path: path.to_owned(),
        }
    } else {
        GitError::Git2 {
            context: format!("opening the repository at {}", path.display()),
            source: e,
        }
    }
}

fn parse_oid(hex: &str, command: &str) -> Result<Oid, GitError> {
    Oid::from_str(hex).map_err(|_| GitError::Output {
        command: command.to_owned(),
        output: hex.to_owned(),
    })
}
