//! The door to git against real, hermetic temporary repositories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use goalpost_fixtures::repo::{hermetic_command, hermetic_env};
use goalpost_shared::git::{
    ChangeStatus, EntryMode, GitError, Identity, MergeOutcome, Oid, PathChange, Repo,
};
use tempfile::TempDir;

/// A repository in a temp dir, with `HOME` and git's global config out of reach.
struct TestRepo {
    _tmp: TempDir,
    root: PathBuf,
    path: PathBuf,
    home: PathBuf,
}

impl TestRepo {
    /// A repository on `main` with one commit holding `files`.
    fn new(files: &[(&str, &str)]) -> TestRepo {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let path = root.join("repo");
        let home = root.join("home");
        fs::create_dir_all(&path).unwrap();
        fs::create_dir_all(&home).unwrap();
        let repo = TestRepo {
            _tmp: tmp,
            root,
            path,
            home,
        };
        repo.git(&repo.path, &["init", "-q", "-b", "main"]);
        let changes: Vec<(&str, Option<&str>)> = files.iter().map(|&(p, c)| (p, Some(c))).collect();
        repo.commit(&changes, "initial");
        repo
    }

    /// Runs the git CLI hermetically; panics with the command, cwd and both streams.
    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = hermetic_command(&mut Command::new("git"), &self.home)
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} in {} failed ({})\nstdout:\n{}\nstderr:\n{}",
            cwd.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes (`Some`) or deletes (`None`) files in the main working tree and commits.
    fn commit(&self, changes: &[(&str, Option<&str>)], message: &str) -> Oid {
        apply(&self.path, changes);
        self.git(&self.path, &["add", "-A"]);
        self.git(
            &self.path,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.rev("HEAD")
    }

    fn rev(&self, rev: &str) -> Oid {
        Oid::from_str(self.git(&self.path, &["rev-parse", rev]).trim()).unwrap()
    }

    /// The repository through the door under test, its CLI calls as hermetic as ours.
    fn open(&self) -> Repo {
        let mut repo = Repo::open(&self.path).unwrap();
        for (key, value) in hermetic_env(&self.home) {
            repo.set_cli_env(key, value);
        }
        repo
    }
}

fn apply(dir: &Path, changes: &[(&str, Option<&str>)]) {
    for &(file, content) in changes {
        let path = dir.join(file);
        match content {
            Some(c) => {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, c).unwrap();
            }
            None => fs::remove_file(&path).unwrap(),
        }
    }
}

fn identity() -> Identity {
    Identity {
        name: "Worker".to_owned(),
        email: "worker@example.invalid".to_owned(),
        time: Some((981_173_106, 0)),
    }
}

/// Enough lines that a rename with a small edit is still similar.
fn long_text(tag: &str) -> String {
    (0..40).map(|i| format!("{tag} line {i}\n")).collect()
}

#[test]
fn discover_outside_a_repository_is_not_a_repository() {
    let tmp = TempDir::new().unwrap();
    let err = Repo::discover(tmp.path()).unwrap_err();
    assert!(
        matches!(err, GitError::NotARepository { ref path } if path == tmp.path()),
        "{err:?}"
    );
    assert!(matches!(
        Repo::open(tmp.path()).unwrap_err(),
        GitError::NotARepository { .. }
    ));
}

#[test]
fn discover_from_a_subdirectory() {
    let t = TestRepo::new(&[("src/lib.rs", "fn main() {}\n")]);
    let repo = Repo::discover(&t.path.join("src")).unwrap();
    assert_eq!(repo.workdir().unwrap(), t.path.join("").as_path());
    assert_eq!(repo.common_dir(), t.path.join(".git/").as_path());
    assert_eq!(repo.head_branch().as_deref(), Some("main"));
}

#[test]
fn dirty_means_tracked_changes_or_untracked_unignored_files() {
    let t = TestRepo::new(&[("a.txt", "a\n"), (".gitignore", "*.log\n")]);
    let repo = t.open();
    assert!(!repo.is_dirty().unwrap());
    fs::write(t.path.join("debug.log"), "x").unwrap();
    assert!(!repo.is_dirty().unwrap(), "ignored files are not dirt");
    fs::write(t.path.join("new.txt"), "x").unwrap();
    assert!(repo.is_dirty().unwrap(), "untracked file");
    fs::remove_file(t.path.join("new.txt")).unwrap();
    fs::write(t.path.join("a.txt"), "changed\n").unwrap();
    assert!(repo.is_dirty().unwrap(), "modified tracked file");
    t.git(&t.path, &["add", "a.txt"]);
    assert!(repo.is_dirty().unwrap(), "staged change");
}

#[test]
fn dirty_paths_lists_every_file_of_an_untracked_directory_but_the_one_left_out() {
    let t = TestRepo::new(&[("a.txt", "a\n"), (".gitignore", "*.log\n")]);
    let repo = t.open();
    assert!(repo.dirty_paths(None).unwrap().is_empty());
    fs::write(t.path.join("a.txt"), "changed\n").unwrap();
    fs::create_dir_all(t.path.join("plans")).unwrap();
    fs::write(t.path.join("plans/goal.md"), "x").unwrap();
    fs::write(t.path.join("plans/notes.md"), "x").unwrap();
    fs::write(t.path.join("plans/debug.log"), "x").unwrap();
    assert_eq!(
        repo.dirty_paths(None).unwrap(),
        ["a.txt", "plans/goal.md", "plans/notes.md"]
    );
    assert_eq!(
        repo.dirty_paths(Some("plans/goal.md")).unwrap(),
        ["a.txt", "plans/notes.md"]
    );
    fs::write(t.path.join("a.txt"), "a\n").unwrap();
    fs::remove_file(t.path.join("plans/notes.md")).unwrap();
    assert!(repo.dirty_paths(Some("plans/goal.md")).unwrap().is_empty());
    assert!(repo.is_dirty().unwrap());
}

#[test]
fn resolve_branch_tip_and_tree() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let first = t.rev("HEAD");
    let second = t.commit(&[("b.txt", Some("b\n"))], "second");
    let repo = t.open();
    assert_eq!(repo.resolve("HEAD").unwrap(), second);
    assert_eq!(repo.resolve("main~1").unwrap(), first);
    assert_eq!(repo.resolve(&first.to_string()).unwrap(), first);
    assert!(matches!(
        repo.resolve("no-such-branch").unwrap_err(),
        GitError::UnknownRevision { .. }
    ));
    assert_eq!(repo.branch_tip("main").unwrap(), Some(second));
    assert_eq!(repo.branch_tip("nope").unwrap(), None);
    assert_eq!(repo.tree_of(second).unwrap(), t.rev("HEAD^{tree}"));
    assert!(repo.is_ancestor(first, second).unwrap());
    assert!(repo.is_ancestor(second, second).unwrap());
    assert!(!repo.is_ancestor(second, first).unwrap());
}

#[test]
fn compare_and_swap_moves_only_from_the_expected_value() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let first = t.rev("HEAD");
    let second = t.commit(&[("a.txt", Some("b\n"))], "second");
    let repo = t.open();
    let name = "refs/goalpost/run1/integration";

    repo.update_ref_cas(name, first, None, "create").unwrap();
    assert_eq!(repo.ref_target(name).unwrap(), Some(first));

    match repo.update_ref_cas(name, second, None, "create again") {
        Err(GitError::RefMoved {
            expected, actual, ..
        }) => {
            assert_eq!(expected, None);
            assert_eq!(actual, Some(first));
        }
        other => panic!("expected RefMoved, got {other:?}"),
    }

    repo.update_ref_cas(name, second, Some(first), "advance")
        .unwrap();
    assert_eq!(repo.ref_target(name).unwrap(), Some(second));

    let err = repo
        .update_ref_cas(name, first, Some(first), "stale")
        .unwrap_err();
    match &err {
        GitError::RefMoved {
            name: n,
            expected,
            actual,
        } => {
            assert_eq!(n, name);
            assert_eq!(*expected, Some(first));
            assert_eq!(*actual, Some(second));
        }
        other => panic!("expected RefMoved, got {other:?}"),
    }
    assert!(err.to_string().contains(&second.to_string()), "{err}");
    assert_eq!(repo.ref_target(name).unwrap(), Some(second), "unchanged");

    match repo.update_ref_cas("refs/goalpost/run1/missing", first, Some(first), "x") {
        Err(GitError::RefMoved { actual: None, .. }) => {}
        other => panic!("expected RefMoved from a missing ref, got {other:?}"),
    }
    assert_eq!(repo.ref_target("refs/goalpost/run1/missing").unwrap(), None);
}

#[test]
fn merge_in_memory_clean_and_conflicting() {
    let t = TestRepo::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let base = t.rev("HEAD");
    let ours = t.commit(&[("a.txt", Some("a ours\n"))], "ours");
    t.git(&t.path, &["checkout", "-q", "--detach", &base.to_string()]);
    let theirs = t.commit(&[("b.txt", Some("b theirs\n"))], "theirs");
    let clash = {
        t.git(&t.path, &["checkout", "-q", "--detach", &base.to_string()]);
        t.commit(
            &[("a.txt", Some("a clash\n")), ("c.txt", Some("c\n"))],
            "clash",
        )
    };
    t.git(&t.path, &["checkout", "-q", "main"]);
    let repo = t.open();

    let tree = match repo.merge_in_memory(ours, theirs).unwrap() {
        MergeOutcome::Clean { tree } => tree,
        other => panic!("expected a clean merge, got {other:?}"),
    };
    let merged = repo
        .create_commit(tree, &[ours, theirs], "merge", None)
        .unwrap();
    assert_eq!(
        repo.read_blob_at(merged, "a.txt").unwrap().unwrap(),
        b"a ours\n"
    );
    assert_eq!(
        repo.read_blob_at(merged, "b.txt").unwrap().unwrap(),
        b"b theirs\n"
    );
    let author = repo
        .git2()
        .find_commit(merged)
        .unwrap()
        .author()
        .to_string();
    assert_eq!(author, "goalpost <goalpost@localhost>");

    assert_eq!(
        repo.merge_in_memory(ours, clash).unwrap(),
        MergeOutcome::Conflict {
            paths: vec!["a.txt".to_owned()]
        }
    );
    assert_eq!(repo.branch_tip("main").unwrap(), Some(ours), "no ref moved");
    assert!(!repo.is_dirty().unwrap(), "no working tree touched");
}

/// A harvest's cap on new objects in the tests: far above what they write.
const CAP: u64 = 64 * 1024 * 1024;

#[test]
fn harvest_commits_every_change_without_moving_branches() {
    let t = TestRepo::new(&[
        ("keep.txt", "keep\n"),
        ("edit.txt", "old\n"),
        ("gone.txt", "gone\n"),
        (".gitignore", "target/\n"),
    ]);
    let base = t.rev("HEAD");
    let repo = t.open();
    let wt = t.root.join("attempt-1");
    repo.worktree_add_detached(&wt, base).unwrap();
    assert_eq!(fs::read_to_string(wt.join("keep.txt")).unwrap(), "keep\n");

    assert_eq!(
        repo.commit_worktree(
            &repo.worktree_view(&wt, &t.root.join("harvest")),
            base,
            "nothing",
            &identity(),
            CAP
        )
        .unwrap(),
        None,
        "no change, no commit"
    );

    apply(
        &wt,
        &[
            ("edit.txt", Some("new\n")),
            ("gone.txt", None),
            ("src/new.rs", Some("pub fn f() {}\n")),
            ("target/out.bin", Some("ignored")),
        ],
    );
    let first = repo
        .commit_worktree(
            &repo.worktree_view(&wt, &t.root.join("harvest")),
            base,
            "iteration 1",
            &identity(),
            CAP,
        )
        .unwrap()
        .expect("a commit");
    let commit = repo.git2().find_commit(first).unwrap();
    assert_eq!(commit.parent_ids().collect::<Vec<_>>(), vec![base]);
    assert_eq!(commit.message().unwrap(), "iteration 1");
    assert_eq!(
        commit.author().to_string(),
        "Worker <worker@example.invalid>"
    );

    let summary: Vec<(ChangeStatus, String)> = repo
        .changed_paths(base, first)
        .unwrap()
        .into_iter()
        .map(|c| (c.status, c.paths().collect::<Vec<_>>().join(" -> ")))
        .collect();
    assert_eq!(
        summary,
        vec![
            (ChangeStatus::Modified, "edit.txt".to_owned()),
            (ChangeStatus::Deleted, "gone.txt".to_owned()),
            (ChangeStatus::Added, "src/new.rs".to_owned()),
        ]
    );

    // The worktree's HEAD follows the harvest; the main repository does not move.
    assert_eq!(t.git(&wt, &["rev-parse", "HEAD"]).trim(), first.to_string());
    assert_eq!(t.rev("HEAD"), base);
    assert_eq!(repo.branch_tip("main").unwrap(), Some(base));
    assert!(t.git(&wt, &["status", "--porcelain"]).trim().is_empty());

    // Nothing new since: no commit on top of the harvest.
    assert_eq!(
        repo.commit_worktree(
            &repo.worktree_view(&wt, &t.root.join("harvest")),
            first,
            "again",
            &identity(),
            CAP
        )
        .unwrap(),
        None
    );
    apply(&wt, &[("edit.txt", Some("newer\n"))]);
    let second = repo
        .commit_worktree(
            &repo.worktree_view(&wt, &t.root.join("harvest")),
            first,
            "iteration 2",
            &identity(),
            CAP,
        )
        .unwrap()
        .unwrap();
    assert_eq!(repo.changed_paths(first, second).unwrap().len(), 1);
    assert!(repo.is_ancestor(base, second).unwrap());
}

#[test]
fn renames_symlinks_and_type_changes_are_reported_with_both_sides() {
    let t = TestRepo::new(&[("docs/guide.md", &long_text("guide")), ("x", "file\n")]);
    let base = t.rev("HEAD");
    fs::create_dir_all(t.path.join("book")).unwrap();
    t.git(&t.path, &["mv", "docs/guide.md", "book/guide.md"]);
    fs::remove_file(t.path.join("x")).unwrap();
    std::os::unix::fs::symlink("book/guide.md", t.path.join("x")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", t.path.join("link")).unwrap();
    let candidate = t.commit(&[], "move things");
    let repo = t.open();

    let changes = repo.changed_paths(base, candidate).unwrap();
    assert_eq!(
        changes,
        vec![
            PathChange {
                status: ChangeStatus::Renamed,
                old_path: Some("docs/guide.md".to_owned()),
                new_path: Some("book/guide.md".to_owned()),
                old_mode: EntryMode::File,
                new_mode: EntryMode::File,
            },
            PathChange {
                status: ChangeStatus::Added,
                old_path: None,
                new_path: Some("link".to_owned()),
                old_mode: EntryMode::Absent,
                new_mode: EntryMode::Symlink,
            },
            PathChange {
                status: ChangeStatus::TypeChange,
                old_path: Some("x".to_owned()),
                new_path: Some("x".to_owned()),
                old_mode: EntryMode::File,
                new_mode: EntryMode::Symlink,
            },
        ]
    );
    assert_eq!(
        changes[0].paths().collect::<Vec<_>>(),
        ["docs/guide.md", "book/guide.md"]
    );
    assert_eq!(changes[2].paths().collect::<Vec<_>>(), ["x"]);
}

#[test]
fn worktrees_are_added_listed_removed_and_pruned() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let base = t.rev("HEAD");
    let repo = t.open();
    let wt = t.root.join("wt");
    repo.worktree_add_detached(&wt, base).unwrap();

    let list = repo.worktree_list().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].path, t.path);
    assert_eq!(list[0].branch.as_deref(), Some("refs/heads/main"));
    assert_eq!(list[1].path, wt);
    assert_eq!(list[1].head, Some(base));
    assert!(list[1].detached);

    // A worktree opened on its own shares the main repository's common dir.
    let inside = Repo::discover(&wt).unwrap();
    assert_eq!(inside.common_dir(), repo.common_dir());
    assert_eq!(inside.head_branch(), None);

    // Unharvested work blocks a plain remove; the error names the command.
    fs::write(wt.join("scratch.txt"), "x").unwrap();
    match repo.worktree_remove(&wt, false).unwrap_err() {
        GitError::Command {
            command, stderr, ..
        } => {
            assert!(command.starts_with("git worktree remove"), "{command}");
            assert!(!stderr.is_empty());
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    assert!(wt.exists());
    repo.worktree_remove(&wt, true).unwrap();
    assert!(!wt.exists());
    assert_eq!(repo.worktree_list().unwrap().len(), 1);

    let lost = t.root.join("lost");
    repo.worktree_add_detached(&lost, base).unwrap();
    fs::remove_dir_all(&lost).unwrap();
    assert!(repo.worktree_list().unwrap()[1].prunable);
    repo.worktree_prune().unwrap();
    assert_eq!(repo.worktree_list().unwrap().len(), 1);
}

/// git alone lets a `worktree add` die reading a sibling's half-written record when two
/// run at once (about one in fifteen at this concurrency); every add through the door
/// succeeds, and so does every listing taken meanwhile.
#[test]
fn worktrees_added_concurrently_all_succeed() {
    let files: Vec<(String, String)> = (0..50)
        .map(|i| (format!("f{i}"), format!("{i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let t = TestRepo::new(&files);
    let base = t.rev("HEAD");
    const ROUNDS: usize = 5;
    const THREADS: usize = 12;
    for round in 0..ROUNDS {
        let failures: Vec<String> = std::thread::scope(|scope| {
            let adds: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (t, path) = (&t, t.root.join(format!("wt/{round}-{i}")));
                    scope.spawn(move || {
                        let repo = t.open();
                        let added = repo.worktree_add_detached(&path, base).err();
                        let listed = repo.worktree_list().err();
                        added.into_iter().chain(listed).map(|e| e.to_string())
                    })
                })
                .collect();
            adds.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert!(failures.is_empty(), "round {round}: {failures:#?}");
    }
    assert_eq!(
        t.open().worktree_list().unwrap().len(),
        1 + ROUNDS * THREADS
    );
}

#[test]
fn blobs_and_diff_text() {
    let t = TestRepo::new(&[("a.txt", "one\n"), ("dir/b.txt", "b\n")]);
    let base = t.rev("HEAD");
    let big: String = (0..500).map(|i| format!("added line {i}\n")).collect();
    let candidate = t.commit(
        &[("a.txt", Some("one\ntwo\n")), ("z.txt", Some(&big))],
        "grow",
    );
    let repo = t.open();

    assert_eq!(repo.read_blob_at(base, "a.txt").unwrap().unwrap(), b"one\n");
    assert_eq!(repo.read_blob_at(base, "z.txt").unwrap(), None);
    assert_eq!(repo.read_blob_at(base, "dir").unwrap(), None, "a tree");
    assert_eq!(
        repo.read_blob_at(base, "dir/b.txt").unwrap().unwrap(),
        b"b\n"
    );

    let full = repo.diff_text(base, candidate, 1 << 20).unwrap();
    assert!(full.contains("diff --git a/a.txt b/a.txt"), "{full}");
    assert!(full.contains("\n+two\n"), "{full}");
    assert!(full.contains("+added line 499\n"));
    assert!(!full.contains("truncated"));

    let capped = repo.diff_text(base, candidate, 300).unwrap();
    assert!(capped.len() < 400, "{} bytes", capped.len());
    assert!(
        capped.ends_with("[diff truncated at 300 bytes]\n"),
        "{capped}"
    );
}

#[test]
fn cli_errors_carry_command_cwd_and_stderr() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let repo = t.open();
    let err = repo
        .run_git(&t.path, ["rev-parse", "--verify", "no-such-rev"])
        .unwrap_err();
    match &err {
        GitError::Command {
            command,
            cwd,
            status,
            stderr,
        } => {
            assert_eq!(command, "git rev-parse --verify no-such-rev");
            assert_eq!(cwd, &t.path);
            assert!(status.contains("128"), "{status}");
            assert!(stderr.contains("Needed a single revision"), "{stderr}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-rev"));
}

#[test]
fn harvest_squashes_commits_an_agent_made_itself_onto_the_given_parent() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let base = t.rev("HEAD");
    let repo = t.open();
    let wt = t.root.join("attempt");
    repo.worktree_add_detached(&wt, base).unwrap();

    // The agent commits on a branch of its own, then leaves one more change uncommitted.
    t.git(&wt, &["checkout", "-q", "-b", "agent-branch"]);
    apply(&wt, &[("b.txt", Some("b\n"))]);
    t.git(&wt, &["add", "-A"]);
    t.git(&wt, &["commit", "-q", "-m", "agent commit"]);
    apply(&wt, &[("c.txt", Some("c\n"))]);

    let harvested = repo
        .commit_worktree(
            &repo.worktree_view(&wt, &t.root.join("harvest")),
            base,
            "harvest",
            &identity(),
            CAP,
        )
        .unwrap()
        .unwrap();
    let commit = repo.git2().find_commit(harvested).unwrap();
    assert_eq!(commit.parent_ids().collect::<Vec<_>>(), vec![base]);
    let paths: Vec<String> = repo
        .changed_paths(base, harvested)
        .unwrap()
        .into_iter()
        .filter_map(|c| c.new_path)
        .collect();
    assert_eq!(paths, ["b.txt", "c.txt"]);
    // The worktree is detached at the harvest, off the agent's branch.
    assert_eq!(
        t.git(&wt, &["rev-parse", "HEAD"]).trim(),
        harvested.to_string()
    );
    assert_eq!(Repo::open(&wt).unwrap().head_branch(), None);
}

#[test]
fn paths_are_quoted_as_git_itself_quotes_them() {
    let names = [
        "plain/name.rs",
        "with space.txt",
        "new\nline",
        "tab\there",
        "quote\"d",
        "back\\slash",
        "caf\u{e9}",
        "esc\u{1b}ape",
    ];
    let files: Vec<(&str, &str)> = names.iter().map(|n| (*n, "x\n")).collect();
    let repo = TestRepo::new(&files);
    let listed = repo.git(&repo.path, &["-c", "core.quotePath=true", "ls-files"]);
    let mut ours: Vec<String> = names
        .iter()
        .map(|n| goalpost_shared::git::quote_path(n))
        .collect();
    let mut git: Vec<String> = listed.lines().map(str::to_owned).collect();
    ours.sort();
    git.sort();
    assert_eq!(ours, git);
    for name in names {
        assert_eq!(
            goalpost_shared::git::has_control_character(name),
            name.contains(['\n', '\t', '\u{1b}']),
            "{name:?}"
        );
    }
}

/// The loose object file of `oid` in `repo`'s store.
fn loose_object(repo: &TestRepo, oid: Oid) -> PathBuf {
    let hex = oid.to_string();
    repo.path
        .join(".git/objects")
        .join(&hex[..2])
        .join(&hex[2..])
}

#[test]
fn a_blob_whose_content_does_not_match_its_id_is_refused() {
    let t = TestRepo::new(&[("tests/check.sh", "exit 1\n"), ("forged.sh", "exit 0\n")]);
    let base = t.rev("HEAD");
    let repo = t.open();
    let id = |path: &str| {
        let tree = repo.git2().find_commit(base).unwrap().tree().unwrap();
        tree.get_path(Path::new(path)).unwrap().id()
    };
    let (protected, forged) = (id("tests/check.sh"), id("forged.sh"));
    assert_eq!(
        repo.read_blob_at(base, "tests/check.sh").unwrap().unwrap(),
        b"exit 1\n"
    );
    drop(repo);

    // The protected blob's object file now holds the other blob: same name, other content.
    let target = loose_object(&t, protected);
    let mut perms = fs::metadata(&target).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&target, perms).unwrap();
    fs::copy(loose_object(&t, forged), &target).unwrap();

    let repo = t.open();
    let err = repo.read_blob_at(base, "tests/check.sh").unwrap_err();
    assert!(
        matches!(err, GitError::Corrupt { oid, .. } if oid == protected),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("tests/check.sh") && err.to_string().contains("corrupt"),
        "{err}"
    );
    assert_eq!(
        repo.verified_blob(forged, "forged.sh").unwrap(),
        b"exit 0\n",
        "an intact object reads as before"
    );

    // With every read verified, libgit2 itself refuses the object too.
    goalpost_shared::git::verify_object_reads();
    let repo = t.open();
    assert!(repo.git2().find_blob(protected).is_err());
}

#[test]
fn a_verified_recycle_owes_nothing_to_what_ran_in_the_worktree() {
    let t = TestRepo::new(&[
        (".gitignore", "target/\n"),
        ("src/value.txt", "good\n"),
        ("src/other.txt", "other\n"),
    ]);
    let base = t.rev("HEAD");
    let candidate = t.commit(&[("src/other.txt", Some("changed\n"))], "candidate");
    let repo = t.open();
    let wt = t.root.join("wt");
    repo.worktree_add_detached(&wt, base).unwrap();
    // What a check could leave: a file changed behind skip-worktree and assume-unchanged
    // bits, an ignored build artifact dated in the future, an untracked file.
    t.git(&wt, &["update-index", "--skip-worktree", "src/value.txt"]);
    t.git(&wt, &["update-index", "--assume-unchanged", ".gitignore"]);
    fs::write(wt.join("src/value.txt"), "poisoned\n").unwrap();
    fs::write(wt.join(".gitignore"), "*\n").unwrap();
    fs::create_dir_all(wt.join("target")).unwrap();
    fs::write(wt.join("target/out"), "stale\n").unwrap();
    let far = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_800);
    fs::File::options()
        .write(true)
        .open(wt.join("target/out"))
        .unwrap()
        .set_modified(far)
        .unwrap();
    fs::write(wt.join("junk.txt"), "junk\n").unwrap();

    repo.worktree_recycle_verified(&wt, candidate).unwrap();
    assert_eq!(
        fs::read_to_string(wt.join("src/value.txt")).unwrap(),
        "good\n"
    );
    assert_eq!(
        fs::read_to_string(wt.join(".gitignore")).unwrap(),
        "target/\n"
    );
    assert_eq!(
        fs::read_to_string(wt.join("src/other.txt")).unwrap(),
        "changed\n"
    );
    assert!(!wt.join("target").exists());
    assert!(!wt.join("junk.txt").exists());
    let flags = t.git(&wt, &["ls-files", "-v"]);
    assert!(flags.lines().all(|l| l.starts_with("H ")), "{flags}");
    assert_eq!(t.git(&wt, &["status", "--porcelain", "--ignored"]), "");
    assert_eq!(
        t.git(&wt, &["rev-parse", "HEAD"]).trim(),
        candidate.to_string()
    );
}

/// A linked worktree left as a hostile agent would leave it for goalpost's own git: its
/// `.git` re-pointed at a repository whose config sets `core.fsmonitor` and hooks, its
/// private git dir's `config.worktree` setting the same (read because the user's
/// repository has `extensions.worktreeConfig`), and nothing put back. The harvest, the
/// dirty scan and the pool's recycle run none of it, and still see the worktree's files.
#[test]
fn goalposts_git_never_runs_what_a_worktrees_links_or_config_name() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let base = t.rev("HEAD");
    t.git(&t.path, &["config", "extensions.worktreeConfig", "true"]);
    let repo = t.open();
    let wt = t.root.join("attempt");
    repo.worktree_add_detached(&wt, base).unwrap();
    let admin = repo
        .worktree_admin_dir(&wt)
        .expect("the worktree's git dir");

    let marker = t.root.join("hostile-code-ran");
    let evil = t.root.join("evil.sh");
    fs::write(
        &evil,
        format!("#!/bin/sh\necho ran >> '{}'\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hooks = t.root.join("hooks");
    fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "post-index-change",
        "post-checkout",
        "reference-transaction",
    ] {
        fs::copy(&evil, hooks.join(hook)).unwrap();
    }
    let hostile_config = format!(
        "[core]\n\tfsmonitor = {}\n\thooksPath = {}\n",
        evil.display(),
        hooks.display()
    );
    fs::write(admin.join("config.worktree"), &hostile_config).unwrap();
    let fake = t.root.join("fake");
    t.git(&t.root, &["init", "-q", fake.to_str().unwrap()]);
    fs::write(fake.join(".git/config"), &hostile_config).unwrap();
    let real_link = fs::read(wt.join(".git")).unwrap();
    fs::write(
        wt.join(".git"),
        format!("gitdir: {}\n", fake.join(".git").display()),
    )
    .unwrap();

    // Without goalpost's settings, git itself would run the hostile fsmonitor here.
    t.git(&wt, &["status", "--porcelain"]);
    assert!(marker.exists(), "the test's fsmonitor is not one git runs");
    fs::remove_file(&marker).unwrap();

    apply(
        &wt,
        &[("a.txt", Some("changed\n")), ("new.txt", Some("new\n"))],
    );
    let view = repo.worktree_view(&wt, &t.root.join("harvest"));
    let changes = view.changes_from(base).unwrap();
    assert_eq!(changes.tracked, ["a.txt"]);
    assert_eq!(changes.untracked, ["new.txt"]);
    let commit = repo
        .commit_worktree(&view, base, "harvest", &identity(), CAP)
        .unwrap()
        .expect("a commit");
    assert_eq!(
        repo.read_blob_at(commit, "a.txt").unwrap().as_deref(),
        Some(&b"changed\n"[..])
    );
    assert!(view.changes_from(commit).unwrap().is_empty());
    // The fake repository got nothing: its HEAD is unborn, no object was written there.
    assert!(
        fs::read_dir(fake.join(".git/objects/pack"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(!marker.exists(), "goalpost's git ran the agent's code");

    // The pool's recycle, once the link is put back (it refuses a worktree it cannot
    // tell), with the hostile `config.worktree` still there.
    fs::write(wt.join(".git"), &real_link).unwrap();
    repo.worktree_recycle(&wt, base, &[]).unwrap();
    assert_eq!(fs::read_to_string(wt.join("a.txt")).unwrap(), "a\n");
    assert!(!wt.join("new.txt").exists());
    assert!(!marker.exists(), "the recycle ran the agent's code");
}

#[test]
fn a_harvest_over_its_cap_imports_nothing() {
    let t = TestRepo::new(&[("a.txt", "a\n")]);
    let base = t.rev("HEAD");
    let repo = t.open();
    let wt = t.root.join("attempt");
    repo.worktree_add_detached(&wt, base).unwrap();
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(wt.join("big.bin"), &big).unwrap();
    let id = Oid::hash_object(git2::ObjectType::Blob, &big).unwrap();
    let view = repo.worktree_view(&wt, &t.root.join("harvest"));
    match repo.commit_worktree(&view, base, "harvest", &identity(), 1024) {
        Err(GitError::TooManyObjects { bytes, cap, .. }) => {
            assert!(bytes > cap, "{bytes} <= {cap}");
            assert_eq!(cap, 1024);
        }
        other => panic!("expected the cap to stop the harvest, got {other:?}"),
    }
    assert!(
        !repo.git2().odb().unwrap().exists(id),
        "the blob was imported"
    );
    // Under a cap that fits, the same worktree is harvested.
    let commit = repo
        .commit_worktree(&view, base, "harvest", &identity(), CAP)
        .unwrap()
        .expect("a commit");
    assert!(repo.git2().odb().unwrap().exists(id));
    assert_eq!(repo.changed_paths(base, commit).unwrap().len(), 1);
}

#[test]
fn a_dirty_scan_is_right_whatever_tree_goalposts_index_last_held() {
    let t = TestRepo::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let base = t.rev("HEAD");
    let next = t.commit(&[("a.txt", Some("a2\n"))], "next");
    let repo = t.open();
    let wt = t.root.join("attempt");
    repo.worktree_add_detached(&wt, base).unwrap();
    let view = repo.worktree_view(&wt, &t.root.join("harvest"));
    assert!(view.changes_from(base).unwrap().is_empty());
    // The worktree moves on without goalpost's index (the index still holds `base`).
    t.git(&wt, &["checkout", "-q", "--detach", &next.to_string()]);
    assert!(view.changes_from(next).unwrap().is_empty());
    assert_eq!(view.changes_from(base).unwrap().tracked, ["a.txt"]);
    fs::write(wt.join("b.txt"), "b2\n").unwrap();
    assert_eq!(view.changes_from(next).unwrap().tracked, ["b.txt"]);
}
