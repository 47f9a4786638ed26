//! Objects and worktrees goalpost does not trust. An agent's git writes objects only into
//! a quarantine of its attempt's own ([`Quarantine`]: `GIT_OBJECT_DIRECTORY`, with the
//! repository's store as a read-only alternate), never into the repository's store; and
//! goalpost looks at a linked worktree only as files ([`WorktreeView`]): its git commands
//! there take the common dir as git dir and an index of goalpost's own, never the
//! worktree's `.git` file, private git dir, index or config, all of which an agent can
//! rewrite. Objects enter the repository's store only through a harvest, which stages the
//! worktree's files into a directory of goalpost's, caps its size, and imports each
//! object after hashing it again.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Context, GitError, Oid, Repo, parse_oid};

/// The object directory of one attempt's (or one audit's) agents and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    /// The quarantine at `dir`, created if missing.
    pub fn create(dir: &Path) -> io::Result<Quarantine> {
        fs::create_dir_all(dir.join("pack"))?;
        fs::create_dir_all(dir.join("info"))?;
        Ok(Quarantine {
            dir: dir.canonicalize()?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The environment that makes git write objects here and read the repository's
    /// objects from its store (which the sandbox keeps read-only).
    pub fn env(&self, repo: &Repo) -> [(OsString, OsString); 2] {
        [
            ("GIT_OBJECT_DIRECTORY".into(), self.dir.clone().into()),
            (
                "GIT_ALTERNATE_OBJECT_DIRECTORIES".into(),
                repo.common_dir().join("objects").into(),
            ),
        ]
    }

    /// Bytes the quarantine holds on disk.
    pub fn size(&self) -> u64 {
        dir_size(&self.dir)
    }

    /// Removes the quarantine and everything in it.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// Bytes of every file under `dir`, symlinks counted as themselves, never followed.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// What a worktree holds that a commit does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Tracked paths whose files differ from the commit.
    pub tracked: Vec<String>,
    /// Untracked files that are not ignored.
    pub untracked: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty() && self.untracked.is_empty()
    }
}

/// goalpost's own view of a linked worktree: the worktree's files, read with git run on
/// the repository's common dir and an index of goalpost's, in a directory (`state`) no
/// agent can write. Nothing of the worktree's `.git` file, private git dir or config is
/// read; the worktree's HEAD and index are only ever written, for the agents' own git.
#[derive(Debug, Clone)]
pub struct WorktreeView<'r> {
    repo: &'r Repo,
    worktree: PathBuf,
    state: PathBuf,
}

impl Repo {
    /// goalpost's view of the linked worktree at `worktree`, keeping its index and its
    /// staged objects in `state` (a directory of goalpost's own, created if missing).
    pub fn worktree_view(&self, worktree: &Path, state: &Path) -> WorktreeView<'_> {
        WorktreeView {
            repo: self,
            worktree: worktree.to_path_buf(),
            state: state.to_path_buf(),
        }
    }
}

impl WorktreeView<'_> {
    pub fn worktree(&self) -> &Path {
        &self.worktree
    }

    fn index(&self) -> PathBuf {
        self.state.join("index")
    }

    fn staging(&self) -> PathBuf {
        self.state.join("objects-in")
    }

    /// git on the worktree's files with the common dir as git dir, goalpost's index and,
    /// when given, `objects` as where new objects go.
    fn git<I, S>(&self, objects: Option<&Path>, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut git_dir = OsString::from("--git-dir=");
        git_dir.push(self.repo.common_dir());
        let mut work_tree = OsString::from("--work-tree=");
        work_tree.push(&self.worktree);
        let mut env: Vec<(OsString, OsString)> =
            vec![("GIT_INDEX_FILE".into(), self.index().into())];
        if let Some(objects) = objects {
            env.push(("GIT_OBJECT_DIRECTORY".into(), objects.into()));
            env.push((
                "GIT_ALTERNATE_OBJECT_DIRECTORIES".into(),
                self.repo.common_dir().join("objects").into(),
            ));
        }
        let all: Vec<OsString> = [git_dir, work_tree]
            .into_iter()
            .chain(args.into_iter().map(|a| a.as_ref().to_owned()))
            .collect();
        self.repo.run_git_with(&self.worktree, &env, all)
    }

    /// Makes goalpost's index hold `commit`'s tree if it has no index yet: its first
    /// harvest then hashes every file of the worktree once.
    fn ensure_index(&self, commit: Oid) -> Result<(), GitError> {
        fs::create_dir_all(&self.state).map_err(|e| self.io_error("creating", &self.state, e))?;
        if !self.index().is_file() {
            self.git(None, ["read-tree", &commit.to_string()])?;
        }
        Ok(())
    }

    /// Stages every file of the worktree (additions, modifications, deletions, untracked
    /// files that are not ignored) over `parent`'s tree into goalpost's index and returns
    /// the tree. The new objects are written into a staging directory of goalpost's, then
    /// imported into the repository's store, each hashed again; more than `cap` bytes of
    /// them fails the harvest with [`GitError::TooManyObjects`] and imports nothing.
    pub fn harvest_tree(&self, parent: Oid, cap: u64) -> Result<Oid, GitError> {
        self.ensure_index(parent)?;
        let staging = self.staging();
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|e| self.io_error("creating", &staging, e))?;
        let staged = self
            .git(Some(&staging), ["add", "--all", "--", "."])
            .and_then(|_| self.git(Some(&staging), ["write-tree"]));
        let imported = staged.and_then(|hex| {
            let bytes = dir_size(&staging);
            if bytes > cap {
                return Err(GitError::TooManyObjects {
                    worktree: self.worktree.clone(),
                    bytes,
                    cap,
                });
            }
            import_objects(self.repo, &staging)?;
            parse_oid(hex.trim(), "git write-tree")
        });
        let _ = fs::remove_dir_all(&staging);
        if imported.is_err() {
            // Its entries may name objects that were never imported.
            let _ = fs::remove_file(self.index());
        }
        imported
    }

    /// Puts `tree` in the worktree's files and goalpost's index, whatever the worktree
    /// held (untracked files stay).
    pub fn reset_to(&self, tree: Oid) -> Result<(), GitError> {
        self.ensure_index(tree)?;
        self.git(None, ["read-tree", "--reset", "-u", &tree.to_string()])
            .map(drop)
    }

    /// The merge of `theirs` into `ours` as a tree whose conflicted files hold git's
    /// conflict markers, and the conflicting paths.
    pub fn merge_with_markers(
        &self,
        ours: Oid,
        theirs: Oid,
    ) -> Result<(Oid, Vec<String>), GitError> {
        // On the common dir: nothing of the worktree is needed, and nothing of it is
        // followed.
        let mut git_dir = OsString::from("--git-dir=");
        git_dir.push(self.repo.common_dir());
        let out = self.repo.run_git_with_status(
            self.repo.common_dir(),
            &[],
            [
                git_dir.as_os_str(),
                OsStr::new("merge-tree"),
                OsStr::new("--write-tree"),
                OsStr::new("--name-only"),
                OsStr::new("--no-messages"),
                OsStr::new("-z"),
                OsStr::new(&ours.to_string()),
                OsStr::new(&theirs.to_string()),
            ],
            &[0, 1],
        )?;
        let mut fields = out.split('\0').filter(|f| !f.is_empty());
        let tree = parse_oid(fields.next().unwrap_or(""), "git merge-tree")?;
        let mut paths: Vec<String> = fields.map(str::to_owned).collect();
        paths.sort();
        paths.dedup();
        Ok((tree, paths))
    }

    /// The paths whose files differ from `commit`'s tree, then the untracked files that
    /// are not ignored, each list sorted. goalpost's index only speeds this up (its stat
    /// data); a path it cannot vouch for is hashed.
    pub fn changes_from(&self, commit: Oid) -> Result<Changes, GitError> {
        self.ensure_index(commit)?;
        let hex = commit.to_string();
        // The index holds the commit's tree, keeping the stat data of the entries that
        // already match it; refreshing then hashes every file whose stat data changed.
        // Both rewrite only goalpost's index and write no object.
        self.git(None, ["read-tree", "--reset", &hex])?;
        let _ = self.git(None, ["update-index", "-q", "--refresh"]);
        let list = |out: String| {
            let mut paths: Vec<String> = out
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            paths.sort();
            paths.dedup();
            paths
        };
        Ok(Changes {
            tracked: list(self.git(None, ["diff-index", "--name-only", "-z", &hex, "--"])?),
            untracked: list(self.git(None, ["ls-files", "--others", "--exclude-standard", "-z"])?),
        })
    }

    /// Starts goalpost's index from the worktree's own, for a worktree goalpost's git has
    /// just checked out, before any agent ran in it: the first harvest then hashes only
    /// the files that changed since, not every file of the worktree. An index only says
    /// which files are known to match; whatever it says, a harvest commits the worktree's
    /// files as they are, and the commit is what the auditor judges.
    pub fn adopt_index(&self) -> Result<(), GitError> {
        let Some(admin) = self.repo.worktree_admin_dir(&self.worktree) else {
            return Ok(());
        };
        let Ok(index) = fs::read(admin.join("index")) else {
            return Ok(());
        };
        fs::create_dir_all(&self.state).map_err(|e| self.io_error("creating", &self.state, e))?;
        replace_file(&self.index(), &index).map_err(|e| self.io_error("writing", &self.index(), e))
    }

    /// Points the worktree's own HEAD at `commit` (detached) and gives it goalpost's
    /// index, so the agents' git sees the harvest as committed. Only writes: each file is
    /// written aside and renamed over, never written through a link an agent left there.
    /// A worktree whose private git dir cannot be told is left alone.
    pub fn show_commit(&self, commit: Oid) -> Result<(), GitError> {
        let Some(admin) = self.repo.worktree_admin_dir(&self.worktree) else {
            tracing::warn!(
                "not updating the HEAD of {}: its git dir is not one of the repository's",
                self.worktree.display()
            );
            return Ok(());
        };
        replace_file(&admin.join("HEAD"), format!("{commit}\n").as_bytes())
            .map_err(|e| self.io_error("writing", &admin.join("HEAD"), e))?;
        let index =
            fs::read(self.index()).map_err(|e| self.io_error("reading", &self.index(), e))?;
        replace_file(&admin.join("index"), &index)
            .map_err(|e| self.io_error("writing", &admin.join("index"), e))
    }

    fn io_error(&self, what: &str, path: &Path, err: io::Error) -> GitError {
        GitError::Io {
            what: format!("{what} {}", path.display()),
            source: err,
        }
    }
}

/// Writes `bytes` to a new file beside `path` and renames it over `path`.
pub(super) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".goalpost-new");
    let aside = PathBuf::from(aside);
    match fs::remove_file(&aside) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    {
        use std::io::Write as _;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)?;
        file.write_all(bytes)?;
    }
    fs::rename(&aside, path)
}

/// Imports every object in the object directory `dir` into the repository's store,
/// after hashing it again: an object whose content does not hash to its id is
/// [`GitError::ObjectMismatch`], and nothing after it is imported.
pub fn import_objects(repo: &Repo, dir: &Path) -> Result<usize, GitError> {
    let source = git2::Odb::new().context(|| "opening an object database".to_owned())?;
    source
        .add_disk_alternate(&dir.to_string_lossy())
        .context(|| format!("reading objects in {}", dir.display()))?;
    let mut ids = Vec::new();
    source
        .foreach(|oid| {
            ids.push(*oid);
            true
        })
        .context(|| format!("listing objects in {}", dir.display()))?;
    let target = repo
        .git2()
        .odb()
        .context(|| "opening the repository's object store".to_owned())?;
    for &id in &ids {
        if target.exists(id) {
            continue;
        }
        let object = source
            .read(id)
            .context(|| format!("reading object {id} in {}", dir.display()))?;
        let kind = object.kind();
        let hashed =
            Oid::hash_object(kind, object.data()).context(|| format!("hashing object {id}"))?;
        if hashed != id {
            return Err(GitError::ObjectMismatch {
                id,
                hashed,
                dir: dir.to_path_buf(),
            });
        }
        target
            .write(kind, object.data())
            .context(|| format!("importing object {id}"))?;
    }
    Ok(ids.len())
}
