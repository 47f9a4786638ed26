//! The object store and goalpost's own git against a hostile implementer, each through a
//! real `goalpost run`: agents and checks write objects only into a quarantine of their
//! own, the repository's store stays read-only to them, nothing they write is ever an
//! alternate of it, and no file they can write (the worktree's `.git`, its private git
//! dir's `config.worktree`) makes a git command of goalpost's run their code. After each
//! run, `goalpost clear --purge` and `git gc`, the repository passes `git fsck --full`
//! with every ref and object it had before.
//!
//! | behaviour | stopped by | asserted by |
//! | --- | --- | --- |
//! | rewrite the loose object of the protected test's blob | read-only store | refused, the audit runs the real test, nothing merged, fsck |
//! | add a shadow pack re-defining that blob | read-only store | refused, nothing merged, fsck |
//! | shadow the blob in its own quarantine | the harvest reads files, the audit its own checkout | `protected` violation, nothing merged |
//! | delete every object | read-only store | refused, `git log main` and fsck |
//! | add `objects/info/alternates` into its state dir | read-only store | refused, history kept after gc |
//! | `config.worktree` with `core.fsmonitor` and hooks | goalpost's git reads no worktree config | no marker |
//! | honest `git add` / `git commit` in the worktree | — | the commit's content merges |
//! | objects beyond `objects_mb` in the quarantine | the worker's cap | blocked, nothing in the repository |
//! | a worktree file beyond `objects_mb` | the harvest's cap | blocked, nothing in the repository |
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use goalpost_shared::process::shell_quote;
use goalpost_tests::Run;
use goalpost_tests::corpus::{Corpus, FILES, REPO, Snapshot, refused, toml_str};

/// Exit codes (README "Exit codes").
const BLOCKED: i32 = 3;
/// The phase merged into the integration ref; the release waits for approval.
const AWAITING_APPROVAL: i32 = 5;

/// A first implementer turn running `actions` then writing a harmless note; later turns
/// do nothing.
fn script(actions: &[String]) -> String {
    let mut all: Vec<String> = actions.to_vec();
    all.push(r#"{ write = "docs/notes.md", content = "notes\n" }"#.to_owned());
    format!(
        r#"[[turn]]
role = "implementer"
iteration = 1
actions = [
  {}
]
message = "Done.\n"

[[turn]]
role = "implementer"
message = "Nothing more to do.\n"
"#,
        all.join(",\n  "),
    )
}

/// An action running `command` with `sh -c` in the worktree.
fn run(command: &str) -> String {
    format!("{{ run = {} }}", toml_str(command))
}

/// An action that tries `attack` and keeps its stderr in `$GOALPOST_STATE_DIR/evidence`
/// (the state dir outlives the turn; its temp dir does not).
fn attempt(attack: &str) -> String {
    run(&format!(
        "{{ {attack} ; }} 2> \"$GOALPOST_STATE_DIR/evidence\""
    ))
}

/// The action that breaks the app, so only a poisoned check could let it merge.
fn break_app() -> String {
    r##"{ write = "app.sh", content = "#!/bin/sh\necho bye\n" }"##.to_owned()
}

/// Every object and ref of the repository, to compare before and after.
struct Store {
    refs: Snapshot,
    objects: String,
}

impl Store {
    fn take(corpus: &Corpus) -> Store {
        Store {
            refs: Snapshot::take(corpus),
            objects: objects(corpus),
        }
    }
}

/// The ids of every object reachable from the refs that are not goalpost's.
fn objects(corpus: &Corpus) -> String {
    let refs = corpus.env.git_out(
        REPO,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/tags",
        ],
    );
    let mut args = vec!["rev-list", "--objects"];
    args.extend(refs.lines());
    let mut ids: Vec<String> = corpus
        .env
        .git_out(REPO, &args)
        .lines()
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.join("\n")
}

/// The common dir's object store, as a shell word.
fn objects_dir(corpus: &Corpus) -> String {
    shell_quote(corpus.repo().join(".git/objects"))
}

/// Runs the goal, checks the exit code and that the release branch did not move.
fn run_goal(corpus: &Corpus, plan: &str, code: i32) -> Run {
    let release = corpus.release_files();
    let run = corpus.goalpost(&["run", plan], &[]);
    run.assert_code(code);
    assert_eq!(corpus.release_files(), release, "{run}");
    run
}

/// After the run: `clear --purge`, `git gc`, and the repository is whole — `git fsck
/// --full` passes, every ref, object and protected file as before.
fn assert_whole_after_purge_and_gc(corpus: &Corpus, before: &Store, run: &Run) {
    corpus
        .goalpost(&["clear", "--purge", "--yes"], &[])
        .assert_code(0);
    corpus
        .env
        .git(REPO, &["gc", "-q", "--prune=now"])
        .assert_code(0);
    let fsck = corpus.env.git(REPO, &["fsck", "--full", "--strict"]);
    fsck.assert_code(0);
    assert!(
        !format!("{fsck}").contains("mismatch"),
        "{fsck}\nafter\n{run}"
    );
    let after = Store::take(corpus);
    // `git gc` packs the refs: their names and values are what must be as before.
    assert_eq!(after.refs.refs, before.refs.refs, "refs changed\n{run}");
    assert_eq!(after.objects, before.objects, "objects changed\n{run}");
    corpus.env.git(REPO, &["log", "-q", "main"]).assert_code(0);
    let check = corpus.env.git_out(REPO, &["show", "main:tests/check.sh"]);
    assert_eq!(check, FILES[1].1.trim_end(), "{run}");
}

/// Asserts that the repository has no object `id`.
fn assert_missing(corpus: &Corpus, id: &str) {
    let mut cmd = corpus.env.command("git");
    cmd.args(["cat-file", "-e", id]).current_dir(corpus.repo());
    Run::of(cmd).assert_code(1);
}

/// The files at the integration tip, by name.
fn merged(corpus: &Corpus) -> Vec<String> {
    corpus.integration_files().into_keys().collect()
}

fn base_files() -> Vec<String> {
    let mut files: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
    files.sort();
    files
}

fn base_plus_note() -> Vec<String> {
    let mut files = base_files();
    files.push("docs/notes.md".to_owned());
    files.sort();
    files
}

/// Shell lines that leave in `$GOALPOST_STATE_DIR/bad-loose` the loose object of the blob `exit 0`
/// and in `$bad` its id, made in a scratch repository of the agent's own.
const MAKE_BAD_BLOB: &str = "env -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
     git init -q \"$GOALPOST_STATE_DIR/s\" && \
     bad=$(printf '#!/bin/sh\\nexit 0\\n' | env -u GIT_OBJECT_DIRECTORY \
       -u GIT_ALTERNATE_OBJECT_DIRECTORIES git -C \"$GOALPOST_STATE_DIR/s\" hash-object -w --stdin) && \
     id=$(git rev-parse HEAD:tests/check.sh) && \
     cp \"$GOALPOST_STATE_DIR/s/.git/objects/$(echo $bad | cut -c1-2)/$(echo $bad | cut -c3-)\" \"$GOALPOST_STATE_DIR/bad-loose\"";

#[test]
fn rewriting_the_loose_object_of_a_protected_blob_is_refused() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let target = format!(
        "{}/$(echo $id | cut -c1-2)/$(echo $id | cut -c3-)",
        objects_dir(&corpus)
    );
    let poison = attempt(&format!(
        "{MAKE_BAD_BLOB} && chmod u+w {target}; cp -f \"$GOALPOST_STATE_DIR/bad-loose\" {target}"
    ));
    let plan = corpus.write_goal(&script(&[poison, break_app()]), "60s");
    let run = run_goal(&corpus, plan, BLOCKED);
    let evidence = corpus.evidence("evidence");
    assert!(refused(&evidence), "not refused: {evidence:?}\n{run}");
    assert_eq!(merged(&corpus), base_files(), "{run}");
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

#[test]
fn a_shadow_pack_re_defining_a_protected_blob_is_refused() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    // A pack in which the protected test's blob id names `exit 0`: made from a loose
    // object copied under that id, in the agent's scratch repository.
    let shadow = attempt(&format!(
        "{MAKE_BAD_BLOB} && s=\"$GOALPOST_STATE_DIR/s/.git/objects\" && \
         mkdir -p \"$s/$(echo $id | cut -c1-2)\" && \
         cp \"$GOALPOST_STATE_DIR/bad-loose\" \"$s/$(echo $id | cut -c1-2)/$(echo $id | cut -c3-)\" && \
         echo $id | env -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
           git -C \"$GOALPOST_STATE_DIR/s\" pack-objects -q .git/objects/pack/shadow >/dev/null && \
         cp \"$s\"/pack/shadow-* {}/pack/",
        objects_dir(&corpus)
    ));
    let plan = corpus.write_goal(&script(&[shadow, break_app()]), "60s");
    let run = run_goal(&corpus, plan, BLOCKED);
    let evidence = corpus.evidence("evidence");
    assert!(refused(&evidence), "not refused: {evidence:?}\n{run}");
    assert_eq!(merged(&corpus), base_files(), "{run}");
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

#[test]
fn a_shadow_blob_in_the_agents_own_quarantine_reaches_nothing() {
    // In its own object directory the agent may write what it likes: its git then sees
    // `exit 0` as the protected test, and a checkout of it is a change to a protected
    // file, which the audit (in a checkout of its own, from the repository's store) names.
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let shadow = attempt(&format!(
        "{MAKE_BAD_BLOB} && q=\"$GIT_OBJECT_DIRECTORY\" && \
         mkdir -p \"$q/$(echo $id | cut -c1-2)\" && \
         cp \"$GOALPOST_STATE_DIR/bad-loose\" \"$q/$(echo $id | cut -c1-2)/$(echo $id | cut -c3-)\" && \
         rm tests/check.sh && git checkout -- tests/check.sh && cat tests/check.sh > \"$GOALPOST_STATE_DIR/seen\""
    ));
    let plan = corpus.write_goal(&script(&[shadow, break_app()]), "60s");
    let run = run_goal(&corpus, plan, BLOCKED);
    assert_eq!(
        corpus.evidence("seen"),
        "#!/bin/sh\nexit 0\n",
        "the agent's own git saw its shadow: {:?}\n{run}",
        corpus.evidence("evidence")
    );
    assert_eq!(merged(&corpus), base_files(), "{run}");
    assert!(
        corpus.audit_reports().contains("tests/check.sh"),
        "{}\n{run}",
        corpus.audit_reports()
    );
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

#[test]
fn deleting_every_object_is_refused() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let wipe = attempt(&format!(
        "chmod -R u+w {0}; rm -rf {0}/*",
        objects_dir(&corpus)
    ));
    let plan = corpus.write_goal(&script(&[wipe]), "60s");
    let run = run_goal(&corpus, plan, AWAITING_APPROVAL);
    let evidence = corpus.evidence("evidence");
    assert!(refused(&evidence), "not refused: {evidence:?}\n{run}");
    assert_eq!(merged(&corpus), base_plus_note(), "{run}");
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

#[test]
fn an_alternate_into_the_agents_state_dir_is_refused() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    // The agent's copy of the history in its state dir, named as an alternate of the
    // repository's store: `git gc` would then drop the repository's own copies.
    let alternate = attempt(&format!(
        "cp -r {0} \"$GOALPOST_STATE_DIR/objects\" && \
         echo \"$GOALPOST_STATE_DIR/objects\" >> {0}/info/alternates",
        objects_dir(&corpus)
    ));
    let plan = corpus.write_goal(&script(&[alternate]), "60s");
    let run = run_goal(&corpus, plan, AWAITING_APPROVAL);
    let evidence = corpus.evidence("evidence");
    assert!(refused(&evidence), "not refused: {evidence:?}\n{run}");
    assert!(!corpus.repo().join(".git/objects/info/alternates").exists());
    assert_eq!(merged(&corpus), base_plus_note(), "{run}");
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

/// The marker a hostile fsmonitor or hook would write, outside everything the sandbox
/// lets an agent write: only a process of goalpost's could create it.
fn marker(corpus: &Corpus) -> PathBuf {
    corpus.env.dir().join("hostile-code-ran")
}

#[test]
fn a_worktree_config_with_fsmonitor_and_hooks_runs_nothing_of_goalposts() {
    let corpus = Corpus::new();
    // A user whose repository reads per-worktree config (as `git sparse-checkout` sets
    // up): the agent writes its worktree's `config.worktree`, in its private git dir.
    corpus
        .env
        .git(REPO, &["config", "extensions.worktreeConfig", "true"])
        .assert_code(0);
    let before = Store::take(&corpus);
    let mark = shell_quote(marker(&corpus));
    let hostile = run(&format!(
        "gd=$(git rev-parse --git-dir) && mkdir -p \"$GOALPOST_STATE_DIR/hooks\" && \
         printf '#!/bin/sh\\necho ran >> {mark}\\n' > \"$GOALPOST_STATE_DIR/evil\" && chmod +x \"$GOALPOST_STATE_DIR/evil\" && \
         for h in post-index-change post-checkout pre-commit post-commit reference-transaction; do \
           cp \"$GOALPOST_STATE_DIR/evil\" \"$GOALPOST_STATE_DIR/hooks/$h\"; done && \
         git config --file \"$gd/config.worktree\" core.fsmonitor \"$GOALPOST_STATE_DIR/evil\" && \
         git config --file \"$gd/config.worktree\" core.hooksPath \"$GOALPOST_STATE_DIR/hooks\" && \
         git config --file \"$gd/config.worktree\" include.path \"$GOALPOST_STATE_DIR/more\" && \
         echo ok > \"$GOALPOST_STATE_DIR/evidence\""
    ));
    let plan = corpus.write_goal(&script(&[hostile]), "60s");
    let run = run_goal(&corpus, plan, AWAITING_APPROVAL);
    assert_eq!(corpus.evidence("evidence"), "ok\n", "{run}");
    assert!(!marker(&corpus).exists(), "a hostile hook ran\n{run}");
    assert_eq!(merged(&corpus), base_plus_note(), "{run}");
    corpus
        .goalpost(&["clear", "--purge", "--yes"], &[])
        .assert_code(0);
    assert!(!marker(&corpus).exists(), "a hostile hook ran on clear");
    assert_eq!(Snapshot::take(&corpus).refs, before.refs.refs);
}

#[test]
fn a_redirected_git_link_with_fsmonitor_runs_nothing_of_goalposts() {
    // The worktree's `.git` re-pointed at a repository of the agent's, whose config sets
    // `core.fsmonitor`, left so for the worker's harvest and the orchestrator's scans.
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let mark = shell_quote(marker(&corpus));
    let hijack = run(&format!(
        "env -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES git init -q \"$GOALPOST_STATE_DIR/fake\" && \
         printf '#!/bin/sh\\necho ran >> {mark}\\n' > \"$GOALPOST_STATE_DIR/evil\" && chmod +x \"$GOALPOST_STATE_DIR/evil\" && \
         git -C \"$GOALPOST_STATE_DIR/fake\" config core.fsmonitor \"$GOALPOST_STATE_DIR/evil\" && \
         git -C \"$GOALPOST_STATE_DIR/fake\" config core.hooksPath \"$GOALPOST_STATE_DIR\" && \
         printf 'gitdir: %s\\n' \"$GOALPOST_STATE_DIR/fake/.git\" > .git"
    ));
    let plan = corpus.write_goal(&script(&[hijack]), "60s");
    let run = run_goal(&corpus, plan, AWAITING_APPROVAL);
    assert!(
        !marker(&corpus).exists(),
        "the agent's fsmonitor ran\n{run}"
    );
    assert_eq!(merged(&corpus), base_plus_note(), "{run}");
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
    assert!(
        !marker(&corpus).exists(),
        "the agent's fsmonitor ran on clear"
    );
}

#[test]
fn an_honest_agents_own_git_add_and_commit_still_work() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let honest = run(
        "printf '# proj\\nIt says hello.\\n' > docs/readme.md && git add -A && \
         git -c user.name=agent -c user.email=agent@example.invalid commit -q -m 'docs' && \
         git status --porcelain > \"$GOALPOST_STATE_DIR/status\" && git log --format=%s -1 > \"$GOALPOST_STATE_DIR/evidence\"",
    );
    let plan = corpus.write_goal(&script(&[honest]), "60s");
    let run = run_goal(&corpus, plan, AWAITING_APPROVAL);
    assert_eq!(corpus.evidence("evidence"), "docs\n", "{run}");
    assert_eq!(corpus.evidence("status"), "", "{run}");
    let files = corpus.integration_files();
    assert_eq!(files["docs/readme.md"], "# proj\nIt says hello.\n", "{run}");
    assert_eq!(files["docs/notes.md"], "notes\n", "{run}");
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

/// The goal file of `script` with a 1 MiB cap on the attempt's objects.
fn write_capped_goal(corpus: &Corpus, script: &str) -> &'static str {
    let plan = corpus.write_goal(script, "60s");
    let text = corpus
        .env
        .read(plan)
        .replace("turns = 4\n", "turns = 4\nobjects_mb = 1\n");
    corpus.env.write(plan, &text);
    plan
}

#[test]
fn objects_beyond_the_cap_in_the_quarantine_stop_the_attempt_and_leave_nothing() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let flood = run(
        "head -c 3000000 /dev/urandom > \"$GOALPOST_STATE_DIR/big\" && \
         git hash-object -w \"$GOALPOST_STATE_DIR/big\" > \"$GOALPOST_STATE_DIR/evidence\"",
    );
    let plan = write_capped_goal(&corpus, &script(&[flood]));
    let run = run_goal(&corpus, plan, BLOCKED);
    let id = corpus.evidence("evidence");
    assert_eq!(id.trim().len(), 40, "{id:?}\n{run}");
    let status = corpus.goalpost(&["status"], &[]);
    assert!(
        format!("{status}").contains("objects_mb"),
        "{status}\n{run}"
    );
    // Neither in the repository nor left in the attempt's quarantine.
    assert_missing(&corpus, id.trim());
    let quarantine = corpus.attempt_tmp().with_file_name("objects");
    assert!(!quarantine.exists(), "{} is left", quarantine.display());
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}

#[test]
fn a_worktree_file_beyond_the_cap_is_not_imported() {
    let corpus = Corpus::new();
    let before = Store::take(&corpus);
    let big = run(
        "head -c 3000000 /dev/urandom > docs/big.bin && cp docs/big.bin \"$GOALPOST_STATE_DIR/big\"",
    );
    let plan = write_capped_goal(&corpus, &script(&[big]));
    let run = run_goal(&corpus, plan, BLOCKED);
    let status = corpus.goalpost(&["status"], &[]);
    assert!(
        format!("{status}").contains("objects_mb"),
        "{status}\n{run}"
    );
    let big = corpus.attempt_state().join("big");
    let id = corpus
        .env
        .git_out(REPO, &["hash-object", big.to_str().unwrap()]);
    assert_missing(&corpus, id.trim());
    assert_whole_after_purge_and_gc(&corpus, &before, &run);
}
