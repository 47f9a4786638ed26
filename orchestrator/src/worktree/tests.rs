//! The pool on real repositories: a recycled worktree is byte for byte a fresh checkout of
//! its commit apart from the cache directories, nothing untracked of the attempt before
//! survives outside them, and no worktree that may hold work, or whose state is unknown,
//! is ever recycled.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use goalpost_fixtures::repo::{hermetic_command, hermetic_env};

use super::*;

/// A temporary repository with a hermetic git environment.
struct Fixture {
    dir: tempfile::TempDir,
    repo: Repo,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("repo")).expect("repo dir");
        fs::create_dir_all(dir.path().join("home")).expect("home dir");
        fs::create_dir_all(dir.path().join("wt")).expect("worktree dir");
        git(
            &dir.path().join("repo"),
            dir.path(),
            &["init", "-q", "-b", "main"],
        );
        let mut repo = Repo::open(&dir.path().join("repo")).expect("open");
        for (key, value) in hermetic_env(&dir.path().join("home")) {
            repo.set_cli_env(key, value);
        }
        Fixture { dir, repo }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Where goalpost keeps its own index of the worktree at `wt`.
    fn harvest(&self, wt: &Path) -> PathBuf {
        self.path("harvest").join(wt.file_name().unwrap())
    }

    fn pool(&self, size: usize) -> Pool<'_> {
        Pool::new(
            &self.repo,
            self.path("wt/pool"),
            PoolConfig {
                size,
                cache_dirs: vec!["target/".to_owned()],
            },
        )
    }

    /// Writes `files` (`None` deletes) in the main worktree, commits, returns the commit.
    fn commit(&self, files: &[(&str, Option<&str>)]) -> Oid {
        let root = self.path("repo");
        for (rel, content) in files {
            let path = root.join(rel);
            match content {
                Some(text) => {
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(&path, text).unwrap();
                }
                None => fs::remove_file(&path).unwrap(),
            }
        }
        git(&root, self.dir.path(), &["add", "-A"]);
        git(&root, self.dir.path(), &["commit", "-q", "-m", "c"]);
        self.repo.resolve("HEAD").unwrap()
    }

    fn set_ref(&self, name: &str, commit: Oid) {
        self.repo
            .update_ref_cas(name, commit, None, "test")
            .unwrap();
    }

    fn registered(&self) -> Vec<PathBuf> {
        self.repo
            .worktree_list()
            .unwrap()
            .into_iter()
            .filter(|w| !w.prunable)
            .map(|w| w.path)
            .collect()
    }
}

fn git(cwd: &Path, tmp: &Path, args: &[&str]) -> String {
    let out = hermetic_command(&mut Command::new("git"), &tmp.join("home"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every entry under `root` except `.git` and the cache directory `target/`: kind, mode
/// bits and contents (or link target).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".git" || rel == "target" {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, format!("link {}", target.display()));
            } else if meta.is_dir() {
                out.insert(rel.clone(), format!("dir {mode:o}"));
                walk(root, &path, out);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.insert(
                    rel,
                    format!("file {mode:o} {}", String::from_utf8_lossy(&bytes)),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Two commits that differ in every way a tree can: contents, added and deleted files,
/// a mode change, a symlink, a file turned into a directory, `.gitignore` itself.
fn two_commits(f: &Fixture) -> (Oid, Oid) {
    f.commit(&[
        (".gitignore", Some("*.log\ntarget/\n")),
        ("a.txt", Some("one\n")),
        ("dir/b.txt", Some("bee\n")),
        ("dir/deep/c.txt", Some("sea\n")),
        ("run.sh", Some("#!/bin/sh\necho hi\n")),
        ("thing", Some("a file\n")),
    ]);
    let root = f.path("repo");
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    git(&root, f.dir.path(), &["add", "-A"]);
    git(&root, f.dir.path(), &["commit", "-q", "-m", "link"]);
    let first = f.repo.resolve("HEAD").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    let second = f.commit(&[
        (".gitignore", Some("*.tmp\ntarget/\n")),
        ("a.txt", Some("two\n")),
        ("dir/b.txt", None),
        ("dir/deep/c.txt", None),
        ("thing", None),
        ("thing/inside.txt", Some("now a directory\n")),
        ("new/e.txt", Some("new\n")),
    ]);
    (first, second)
}

#[test]
fn a_recycled_worktree_is_a_fresh_checkout_apart_from_the_cache_dirs() {
    let f = Fixture::new();
    let (first, second) = two_commits(&f);
    let pool = f.pool(2);
    let attempt1 = f.path("wt/p.1");
    assert_eq!(pool.checkout(&attempt1, first).unwrap(), Ready::Added);

    // What the attempt and its checks left: all of it is harvested, ignored or cached.
    fs::create_dir_all(attempt1.join("target/debug")).unwrap();
    fs::write(attempt1.join("target/debug/cache.bin"), "incremental").unwrap();
    fs::write(attempt1.join("build.log"), "ignored, not a cache").unwrap();
    f.set_ref("refs/goalpost/r/p/1", first);
    assert_eq!(
        pool.release(&attempt1, &f.harvest(&attempt1), "refs/goalpost/r/p/1"),
        Released::Pooled
    );
    assert!(!attempt1.exists());
    assert_eq!(pool.idle().len(), 1);

    let attempt2 = f.path("wt/q.1");
    assert_eq!(pool.checkout(&attempt2, second).unwrap(), Ready::Recycled);
    assert!(pool.idle().is_empty());
    let fresh = f.path("wt/fresh");
    f.repo.worktree_add_detached(&fresh, second).unwrap();
    assert_eq!(snapshot(&attempt2), snapshot(&fresh));
    assert_eq!(
        Repo::open(&attempt2).unwrap().resolve("HEAD").unwrap(),
        second
    );
    assert!(!Repo::open(&attempt2).unwrap().is_dirty().unwrap());
    assert!(f.registered().contains(&attempt2), "{:?}", f.registered());

    // The cache survives; nothing else untracked of the attempt before does.
    assert_eq!(
        fs::read_to_string(attempt2.join("target/debug/cache.bin")).unwrap(),
        "incremental"
    );
    assert!(!attempt2.join("build.log").exists());
    assert!(
        !attempt2.join("dir").exists(),
        "dir/ is gone with its files"
    );
}

#[test]
fn nothing_untracked_survives_outside_the_cache_dirs() {
    let f = Fixture::new();
    let c = f.commit(&[(".gitignore", Some("*.o\n")), ("src/a.c", Some("int a;\n"))]);
    let pool = f.pool(1);
    let wt = f.path("wt/p.1");
    pool.checkout(&wt, c).unwrap();
    for junk in ["src/a.o", "deep/er/x.o", "target/keep.o"] {
        let path = wt.join(junk);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, junk).unwrap();
    }
    // A nested repository an agent cloned: `clean -ff` removes it too.
    git(&wt, f.dir.path(), &["init", "-q", "vendor/clone"]);
    f.set_ref("refs/goalpost/r/p/1", c);
    // Only ignored files: its work is all on the ref.
    fs::write(wt.join(".gitignore"), "*.o\nvendor/\ntarget/\n").unwrap();
    git(&wt, f.dir.path(), &["add", ".gitignore"]);
    git(&wt, f.dir.path(), &["commit", "-q", "-m", "ignore"]);
    let harvested = Repo::open(&wt).unwrap().resolve("HEAD").unwrap();
    f.set_ref("refs/goalpost/r/p/2", harvested);
    assert_eq!(
        pool.release(&wt, &f.harvest(&wt), "refs/goalpost/r/p/2"),
        Released::Pooled
    );

    let next = f.path("wt/q.1");
    assert_eq!(pool.checkout(&next, c).unwrap(), Ready::Recycled);
    let mut left: Vec<String> = snapshot(&next).into_keys().collect();
    left.sort();
    assert_eq!(left, [".gitignore", "src", "src/a.c"]);
    assert_eq!(
        fs::read_to_string(next.join("target/keep.o")).unwrap(),
        "target/keep.o"
    );
}

#[test]
fn a_worktree_that_may_hold_work_is_never_recycled() {
    let f = Fixture::new();
    let c = f.commit(&[("a.txt", Some("a\n"))]);
    let pool = f.pool(4);
    f.set_ref("refs/goalpost/r/p/1", c);

    // Untracked work.
    let wt = f.path("wt/p.1");
    pool.checkout(&wt, c).unwrap();
    fs::write(wt.join("notes.md"), "unharvested").unwrap();
    assert!(matches!(
        pool.release(&wt, &f.harvest(&wt), "refs/goalpost/r/p/1"),
        Released::Kept(_)
    ));
    assert!(wt.join("notes.md").exists());

    // A tracked change.
    let wt2 = f.path("wt/p.2");
    pool.checkout(&wt2, c).unwrap();
    fs::write(wt2.join("a.txt"), "changed").unwrap();
    assert!(matches!(
        pool.release(&wt2, &f.harvest(&wt2), "refs/goalpost/r/p/1"),
        Released::Kept(_)
    ));

    // A commit the ref does not hold.
    let wt3 = f.path("wt/p.3");
    pool.checkout(&wt3, c).unwrap();
    fs::write(wt3.join("a.txt"), "committed, not on the ref").unwrap();
    git(&wt3, f.dir.path(), &["commit", "-q", "-am", "x"]);
    assert!(matches!(
        pool.release(&wt3, &f.harvest(&wt3), "refs/goalpost/r/p/1"),
        Released::Kept(_)
    ));
    // No ref at all.
    assert!(matches!(
        pool.release(&wt3, &f.harvest(&wt3), "refs/goalpost/r/p/9"),
        Released::Kept(_)
    ));
    assert!(pool.idle().is_empty());
    assert_eq!(
        fs::read_to_string(wt3.join("a.txt")).unwrap(),
        "committed, not on the ref"
    );
}

#[test]
fn a_pooled_worktree_in_an_unknown_state_is_removed_not_reused() {
    let f = Fixture::new();
    let c = f.commit(&[("a.txt", Some("a\n"))]);
    let pool = f.pool(4);
    // Not a worktree git knows: a directory with a `.git` file pointing nowhere.
    let stray = f.path("wt/pool/stray");
    fs::create_dir_all(&stray).unwrap();
    fs::write(stray.join(".git"), "gitdir: /nonexistent/worktrees/x\n").unwrap();
    fs::write(stray.join("a.txt"), "not from any commit").unwrap();

    let wt = f.path("wt/p.1");
    assert_eq!(pool.checkout(&wt, c).unwrap(), Ready::Added);
    assert!(!stray.exists());
    assert_eq!(fs::read_to_string(wt.join("a.txt")).unwrap(), "a\n");
}

#[test]
fn a_full_pool_removes_and_an_off_pool_never_keeps() {
    let f = Fixture::new();
    let c = f.commit(&[("a.txt", Some("a\n"))]);
    f.set_ref("refs/goalpost/r/p/1", c);
    let pool = f.pool(1);
    let (a, b) = (f.path("wt/a"), f.path("wt/b"));
    pool.checkout(&a, c).unwrap();
    pool.checkout(&b, c).unwrap();
    assert_eq!(
        pool.release(&a, &f.harvest(&a), "refs/goalpost/r/p/1"),
        Released::Pooled
    );
    assert_eq!(
        pool.release(&b, &f.harvest(&b), "refs/goalpost/r/p/1"),
        Released::Removed
    );
    assert!(!b.exists());
    pool.drain();
    assert!(!f.path("wt/pool").exists());
    assert_eq!(f.registered().len(), 1, "only the main worktree");

    let off = f.pool(0);
    off.checkout(&a, c).unwrap();
    assert_eq!(
        off.release(&a, &f.harvest(&a), "refs/goalpost/r/p/1"),
        Released::Removed
    );
    assert!(!f.path("wt/pool").exists());
}

#[test]
fn untracked_files_in_a_cache_dir_are_not_work_but_anything_else_is() {
    let f = Fixture::new();
    // No .gitignore: `target/` is untracked, not ignored.
    let c = f.commit(&[("a.txt", Some("a\n"))]);
    f.set_ref("refs/goalpost/r/p/1", c);
    let pool = f.pool(2);
    let wt = f.path("wt/p.1");
    pool.checkout(&wt, c).unwrap();
    fs::create_dir_all(wt.join("target")).unwrap();
    fs::write(wt.join("target/o"), "cache").unwrap();
    assert_eq!(
        pool.release(&wt, &f.harvest(&wt), "refs/goalpost/r/p/1"),
        Released::Pooled
    );
    let wt = f.path("wt/p.2");
    pool.checkout(&wt, c).unwrap();
    fs::write(wt.join("targets.txt"), "work").unwrap();
    assert!(matches!(
        pool.release(&wt, &f.harvest(&wt), "refs/goalpost/r/p/1"),
        Released::Kept(_)
    ));
}

#[test]
fn cache_dir_patterns() {
    assert!(in_cache_dir("target/", "target/"));
    assert!(in_cache_dir("crates/x/target/", "target/"));
    assert!(!in_cache_dir("target.txt", "target/"));
    assert!(!in_cache_dir("src/target.rs", "target"));
    assert!(in_cache_dir("target/", "/target/"));
    assert!(!in_cache_dir("x/target/", "/target/"));
    assert!(in_cache_dir("build/cache/", "build/cache/"));
    assert!(!in_cache_dir("build/cachex/", "build/cache"));
}

#[test]
fn the_defaults_keep_target() {
    let config = PoolConfig::default();
    assert_eq!(config.size, DEFAULT_POOL_SIZE);
    assert_eq!(config.cache_dirs, ["target/"]);
}

/// A pool smaller than the jobs running at once would remove worktrees at the end of one
/// wave only to add them again for the next.
#[test]
fn the_default_size_is_max_parallel_and_at_least_eight() {
    if std::env::var_os("GOALPOST_POOL_SIZE").is_some() {
        return;
    }
    assert_eq!(PoolConfig::from_env(16).size, 16);
    assert_eq!(PoolConfig::from_env(2).size, DEFAULT_POOL_SIZE);
    assert_eq!(
        audit_pool(
            &Layout::new(Path::new("/r/.git"), Path::new("/r")),
            "r1",
            12
        )
        .size,
        12
    );
}

#[test]
fn pools_live_in_the_run_and_apart() {
    let layout = Layout::new(Path::new("/r/repo/.git"), Path::new("/r/repo"));
    let implementers = pool_dir(&layout, "r1");
    let auditors = audit_pool(&layout, "r1", 4).dir;
    assert!(implementers.ends_with("r1/pool"));
    assert!(auditors.ends_with("r1/audit-pool"));
    assert_ne!(implementers, auditors);
}
