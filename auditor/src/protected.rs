//! The protected files the auditor owns in its checkout: every file of the base that the
//! boundaries protect (not only those the diff shows changed) is written from a blob whose
//! content was hashed again against its id, is read-only to the checks (a read-only bind
//! in their sandbox), is watched while they run (inotify: the file changed, or it or a
//! directory on its way moved or went, even if put back before the checks end), and is
//! hashed again once the checks are done. A file changed, watched or found changed, was
//! changed by something the checks ran (a build script, a test of the candidate's that got
//! past the bind by moving its directory, or any write when the checks run unconfined): a
//! violation.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use goalpost_shared::boundary::BoundaryRules;
use goalpost_shared::git::{EntryMode, GitError, Oid, Repo, quote_path};
use goalpost_shared::process::watch::{ChangeWatch, Watched};
use goalpost_shared::protocol::{Violation, ViolationKind};

use crate::checkout::entry_mode;

/// One protected file of the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedFile {
    pub path: String,
    pub mode: EntryMode,
    pub blob: Oid,
}

/// Every protected file (regular, executable or symlink) of one base commit, in tree order,
/// and the outermost directories protected as a whole (any name under them is protected).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectedFiles {
    pub files: Vec<ProtectedFile>,
    pub dirs: Vec<String>,
}

/// A name no repository has, to ask the globs whether everything under a directory is
/// protected (`tests/` and `tests/**` say yes, `tests/*.sh` says no).
const ANY_NAME: &str = ".goalpost-any-name";

impl ProtectedFiles {
    /// The files of `base`'s tree that `rules` protects. Submodules are not files the
    /// auditor can write; a name that is not UTF-8 cannot be matched by the globs.
    pub fn at_base(repo: &Repo, base: Oid, rules: &BoundaryRules) -> Result<Self, GitError> {
        let git = |context: String| move |source| GitError::Git2 { context, source };
        let tree = repo
            .git2()
            .find_commit(base)
            .and_then(|c| c.tree())
            .map_err(git(format!("reading the tree of {base}")))?;
        let (mut files, mut dirs) = (Vec::new(), Vec::<String>::new());
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            let mode = entry_mode(entry.filemode());
            let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
                return git2::TreeWalkResult::Skip;
            };
            let path = format!("{root}{name}");
            let outermost = !dirs.iter().any(|d| path.starts_with(&format!("{d}/")));
            if mode == EntryMode::Tree
                && outermost
                && rules.is_protected(&format!("{path}/{ANY_NAME}"))
            {
                dirs.push(path.clone());
            }
            if matches!(
                mode,
                EntryMode::File | EntryMode::Executable | EntryMode::Symlink
            ) && rules.is_protected(&path)
            {
                files.push(ProtectedFile {
                    path,
                    mode,
                    blob: entry.id(),
                });
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(git(format!("walking the tree of {base}")))?;
        Ok(ProtectedFiles { files, dirs })
    }

    /// The paths under `root` (the checkout, canonical) the checks may not write: each
    /// directory protected as a whole (one bind, which also keeps new files out of it and
    /// the directory from being moved), and every other protected regular file. A symlink
    /// cannot be bound over itself (the bind would follow it); it is hashed again
    /// afterwards like the rest. One bind per file costs the sandbox's start about 0.3 ms
    /// each at a hundred and grows faster than their number, hence the directories.
    pub fn read_only_paths(&self, root: &Path) -> Vec<PathBuf> {
        let in_dir = |path: &str| self.dirs.iter().any(|d| path.starts_with(&format!("{d}/")));
        let files = self
            .files
            .iter()
            .filter(|f| f.mode != EntryMode::Symlink && !in_dir(&f.path))
            .map(|f| root.join(&f.path));
        self.dirs
            .iter()
            .map(|d| root.join(d))
            .chain(files)
            .collect()
    }

    /// A watch of every protected file under `root` and of every directory on the way to
    /// one, `root` included. `None`, with a warning, when the kernel refuses one (too many
    /// watches): the files are still hashed again afterwards.
    pub fn watch(&self, root: &Path) -> Option<ChangeWatch> {
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let watched = ChangeWatch::new().and_then(|mut watch| {
            for file in &self.files {
                let path = root.join(&file.path);
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(root)) {
                    if dirs.insert(d.to_path_buf()) {
                        watch.add(d, Watched::Directory)?;
                    }
                    dir = d.parent();
                }
                watch.add(&path, Watched::File)?;
            }
            Ok(watch)
        });
        match watched {
            Ok(watch) => Some(watch),
            Err(err) => {
                tracing::warn!("cannot watch the protected files while the checks run: {err}");
                None
            }
        }
    }

    /// A violation for each protected file under `root` that is no longer as the auditor
    /// wrote it (another content, another kind of file, the executable bit changed, or
    /// gone), or that `watch` saw changed, moved or removed, itself or a directory on its
    /// way, since it started.
    pub fn modified(&self, root: &Path, watch: Option<&mut ChangeWatch>) -> Vec<Violation> {
        let seen: Vec<PathBuf> = match watch.map(|w| w.changed()) {
            Some(Ok(seen)) => seen,
            Some(Err(err)) => {
                tracing::warn!("cannot read the watch of the protected files: {err}");
                vec![root.to_path_buf()]
            }
            None => Vec::new(),
        };
        self.files
            .iter()
            .filter(|f| {
                let path = root.join(&f.path);
                seen.iter().any(|s| path.starts_with(s)) || !is_intact(&path, f)
            })
            .map(|f| Violation {
                kind: ViolationKind::ModifiedByCheck,
                path: f.path.clone(),
                rule: format!(
                    "the check modified a protected file {}",
                    quote_path(&f.path)
                ),
            })
            .collect()
    }
}

/// Whether the file at `path` is exactly `file`: same kind, same executable bit, and
/// content (or link target) hashing to the same blob id.
fn is_intact(path: &Path, file: &ProtectedFile) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    let content = match file.mode {
        EntryMode::Symlink if meta.file_type().is_symlink() => {
            fs::read_link(path).map(|target| target.as_os_str().as_bytes().to_vec())
        }
        EntryMode::File | EntryMode::Executable if meta.file_type().is_file() => {
            let executable = meta.permissions().mode() & 0o111 != 0;
            if executable != (file.mode == EntryMode::Executable) {
                return false;
            }
            fs::read(path)
        }
        _ => return false,
    };
    content
        .is_ok_and(|bytes| Oid::hash_object(git2::ObjectType::Blob, &bytes).ok() == Some(file.blob))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::process::Command;

    use goalpost_fixtures::repo::hermetic_command;
    use goalpost_shared::contract::{Boundaries, Spanned};

    use super::*;
    use crate::checkout::Checkout;

    fn git(home: &Path, cwd: &Path, args: &[&str]) -> String {
        let out = hermetic_command(&mut Command::new("git"), home)
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The auditor writes every protected file of the base, not only those the candidate
    /// changed, and afterwards names each one that is no longer as it wrote it.
    #[test]
    fn every_protected_file_is_written_from_the_base_and_hashed_again_after() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, dir) = (tmp.path().join("home"), tmp.path().join("repo"));
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(dir.join("tests/golden")).unwrap();
        git(&home, &dir, &["init", "-q", "-b", "main"]);
        fs::write(dir.join("tests/run.sh"), "exit 1\n").unwrap();
        fs::write(dir.join("tests/golden/a.txt"), "a\n").unwrap();
        fs::write(dir.join("tests/golden/b.txt"), "b\n").unwrap();
        fs::write(dir.join("src.txt"), "src\n").unwrap();
        fs::create_dir_all(dir.join("bench")).unwrap();
        fs::write(dir.join("bench/config.sh"), "config\n").unwrap();
        fs::write(dir.join("bench/other.sh"), "other\n").unwrap();
        std::os::unix::fs::symlink("a.txt", dir.join("tests/golden/link")).unwrap();
        git(&home, &dir, &["add", "-A"]);
        git(&home, &dir, &["commit", "-qm", "base"]);
        let base = Oid::from_str(&git(&home, &dir, &["rev-parse", "HEAD"])).unwrap();
        let repo = Repo::open(&dir).unwrap();
        let boundaries = Boundaries {
            protected: vec![
                Spanned::new("tests/".to_owned(), 1, 1),
                Spanned::new("bench/config.sh".to_owned(), 1, 1),
            ],
            ..Boundaries::default()
        };
        let rules = BoundaryRules::new(&boundaries, &[]).unwrap();
        let protected = ProtectedFiles::at_base(&repo, base, &rules).unwrap();
        let paths: Vec<&str> = protected.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bench/config.sh",
                "tests/golden/a.txt",
                "tests/golden/b.txt",
                "tests/golden/link",
                "tests/run.sh"
            ]
        );
        assert_eq!(protected.dirs, ["tests"]);

        // A checkout whose unchanged protected files were tampered with before the audit
        // (as a reused checkout could be): the candidate is the base, the diff is empty.
        let checkout = Checkout::create(&repo, &tmp.path().join("audit"), base).unwrap();
        let root = checkout.path().canonicalize().unwrap();
        fs::write(root.join("tests/run.sh"), "exit 0\n").unwrap();
        fs::remove_file(root.join("tests/golden/a.txt")).unwrap();
        fs::remove_file(root.join("tests/golden/link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("tests/golden/link")).unwrap();
        assert_eq!(protected.modified(&root, None).len(), 3);
        let restored = checkout
            .own_protected(base, &[], &rules, &protected)
            .unwrap();
        assert!(restored.is_empty(), "the candidate touched nothing");
        assert_eq!(
            fs::read_to_string(root.join("tests/run.sh")).unwrap(),
            "exit 1\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("tests/golden/a.txt")).unwrap(),
            "a\n"
        );
        assert_eq!(
            fs::read_link(root.join("tests/golden/link")).unwrap(),
            Path::new("a.txt")
        );
        assert_eq!(protected.modified(&root, None), []);
        assert_eq!(
            protected.read_only_paths(&root),
            [root.join("tests"), root.join("bench/config.sh")]
        );

        // Changed by what the checks ran: another content, the executable bit, a directory.
        fs::write(root.join("tests/golden/b.txt"), "B\n").unwrap();
        fs::set_permissions(root.join("tests/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("src.txt"), "not protected\n").unwrap();
        let named: Vec<String> = protected
            .modified(&root, None)
            .into_iter()
            .map(|v| {
                assert_eq!(v.kind, ViolationKind::ModifiedByCheck);
                v.rule
            })
            .collect();
        assert_eq!(
            named,
            [
                "the check modified a protected file tests/golden/b.txt",
                "the check modified a protected file tests/run.sh"
            ]
        );
        checkout.remove().unwrap();
    }
}
