//! The verification cache and the auditor's worktree pool, through the real auditor
//! binary: evidence is reused only when every part of its key matches (the tree, the
//! command, the allowed environment, the protected paths' tree), changed one at a time;
//! the report says what was reused in `audit.json` and `audit.md`; a pooled audit checkout
//! verifies exactly what a fresh one does.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use goalpost_fixtures::repo::hermetic_command;
use goalpost_shared::contract::{Boundaries, Check, CheckKind, Contract, Spanned};
use goalpost_shared::protocol::{AUDIT_REUSE_FILE, AuditReport, AuditReuse, CachedCheck, PoolSpec};
use goalpost_tests::binary;

/// A repository whose check prints a fresh random token each time it really runs, so a
/// reused result is told from a new run by its output as well as by the report's note.
struct Fixture {
    dir: tempfile::TempDir,
    audits: u32,
}

const CHECK: &str = "sh tests/check.sh";

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["repo", "home"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let f = Fixture { dir, audits: 0 };
        f.git(&["init", "-q", "-b", "main"]);
        f.write(
            "tests/check.sh",
            "cat src/value.txt; od -An -N8 -tx8 /dev/urandom; echo PATH=$PATH\n",
        );
        f.write("src/value.txt", "1\n");
        f.write("docs/readme.txt", "docs\n");
        f.commit();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn git(&self, args: &[&str]) -> String {
        let out = hermetic_command(&mut Command::new("git"), &self.path("home"))
            .args(args)
            .current_dir(self.path("repo"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path("repo").join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn commit(&self) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", "c"]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs the auditor on base..candidate with `command` as the check, `PATH` set to
    /// `path_var`, and `reuse` offered; returns the report and its Markdown.
    fn audit(
        &mut self,
        base: &str,
        candidate: &str,
        command: &str,
        path_var: &str,
        reuse: &AuditReuse,
    ) -> (AuditReport, String) {
        self.audits += 1;
        let k = self.audits;
        let report_dir = self.path(&format!("reports/{k}"));
        fs::create_dir_all(&report_dir).unwrap();
        fs::write(
            report_dir.join(AUDIT_REUSE_FILE),
            serde_json::to_vec(reuse).unwrap(),
        )
        .unwrap();
        let contract = Contract {
            verification: vec![Check {
                text: Spanned::new(format!("`{command}` passes"), 5, 3),
                kind: CheckKind::Machine {
                    command: command.to_owned(),
                    metric: None,
                },
            }],
            boundaries: Boundaries {
                protected: vec![Spanned::new("tests/".to_owned(), 9, 1)],
                ..Boundaries::default()
            },
            ..Contract::default()
        };
        // Built as JSON so the test reads only the fields it sets; the rest default.
        let input = serde_json::json!({
            "run_id": "run1",
            "phase": "p",
            "repo": self.path("repo"),
            "worktree": self.path(&format!("wt/audit-{k}")),
            "base": base,
            "candidate": candidate,
            "contract": contract,
            "always_protected": ["goal.md"],
            "claims": [],
            "report_dir": report_dir,
            "check_timeout_secs": 30,
        });
        let input_path = report_dir.join("audit-input.json");
        fs::write(&input_path, serde_json::to_vec(&input).unwrap()).unwrap();
        fs::create_dir_all(self.path("wt")).unwrap();
        let out = hermetic_command(
            &mut Command::new(binary("goalpost-auditor")),
            &self.path("home"),
        )
        .arg("--input")
        .arg(&input_path)
        .current_dir(self.path("repo"))
        .env("PATH", path_var)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "auditor: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let json = fs::read(report_dir.join("audit.json")).unwrap();
        let md = fs::read_to_string(report_dir.join("audit.md")).unwrap();
        (serde_json::from_slice(&json).unwrap(), md)
    }
}

/// What the orchestrator would offer after `report`: its passing checks, as cached.
fn offer(report: &AuditReport, source: &str) -> AuditReuse {
    AuditReuse {
        cached_checks: report
            .cache
            .iter()
            .filter(|n| report.checks[n.check].passed)
            .map(|n| CachedCheck {
                key: n.key.clone(),
                result: report.checks[n.check].clone(),
                source: source.to_owned(),
            })
            .collect(),
        pool: None,
    }
}

fn reused(report: &AuditReport) -> bool {
    report.cache.iter().any(|n| n.reused_from.is_some())
}

fn system_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
}

#[test]
fn evidence_is_reused_only_when_every_part_of_the_key_matches() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.txt", "2\n");
    let candidate = f.commit();
    let path = system_path();
    let none = AuditReuse::default();

    let (first, first_md) = f.audit(&base, &candidate, CHECK, &path, &none);
    assert!(first.checks[0].passed, "{first_md}");
    assert_eq!(first.cache.len(), 1);
    assert!(!reused(&first));
    assert!(!first_md.contains("Verification cache"), "{first_md}");
    let cache = offer(&first, "reports/1");

    // Everything equal: the evidence is reused, and both reports say so.
    let (hit, hit_md) = f.audit(&base, &candidate, CHECK, &path, &cache);
    assert!(reused(&hit), "{hit_md}");
    assert_eq!(hit.cache[0].reused_from.as_deref(), Some("reports/1"));
    assert_eq!(hit.cache[0].key, first.cache[0].key);
    assert_eq!(hit.checks[0].record.stdout, first.checks[0].record.stdout);
    assert!(hit_md.contains("Verification cache: 1 of 1 check was not run again"));
    assert!(hit_md.contains("passed (cached)"), "{hit_md}");
    assert!(hit_md.contains("from `reports/1`"), "{hit_md}");
    let json = fs::read_to_string(f.path("reports/2/audit.json")).unwrap();
    assert!(json.contains("\"reused_from\": \"reports/1\""), "{json}");

    // A base that differs only outside the protected paths: the same key.
    f.write("docs/readme.txt", "other docs\n");
    let other_base = f.commit();
    let (same, md) = f.audit(&other_base, &candidate, CHECK, &path, &cache);
    assert!(reused(&same), "unprotected base changes keep the key: {md}");

    // One part at a time.
    let mut misses: Vec<(&str, AuditReport)> = Vec::new();
    f.write("src/value.txt", "3\n");
    let other_tree = f.commit();
    misses.push(("tree", f.audit(&base, &other_tree, CHECK, &path, &cache).0));
    misses.push((
        "command",
        f.audit(&base, &candidate, "sh  tests/check.sh", &path, &cache)
            .0,
    ));
    let other_path = format!("{path}:/nonexistent");
    misses.push((
        "environment",
        f.audit(&base, &candidate, CHECK, &other_path, &cache).0,
    ));
    f.write(
        "tests/check.sh",
        "cat src/value.txt; od -An -N8 -tx8 /dev/urandom\n",
    );
    f.write("src/value.txt", "1\n");
    let protected_base = f.commit();
    misses.push((
        "protected paths",
        f.audit(&protected_base, &candidate, CHECK, &path, &cache).0,
    ));
    for (part, report) in &misses {
        assert!(!reused(report), "a different {part} must not hit the cache");
        assert!(report.checks[0].passed, "{part}: {:?}", report.checks[0]);
        assert_ne!(
            report.cache[0].key, first.cache[0].key,
            "a different {part} gives a different key"
        );
        assert_ne!(
            report.checks[0].record.stdout, first.checks[0].record.stdout,
            "{part}: the check ran again"
        );
    }
}

#[test]
fn a_failed_check_is_never_reused() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    let path = system_path();
    let (first, _) = f.audit(&base, &base, "false", &path, &AuditReuse::default());
    assert!(!first.checks[0].passed);
    let cached = AuditReuse {
        cached_checks: vec![CachedCheck {
            key: first.cache[0].key.clone(),
            result: first.checks[0].clone(),
            source: "reports/1".to_owned(),
        }],
        pool: None,
    };
    let (again, _) = f.audit(&base, &base, "false", &path, &cached);
    assert!(!reused(&again));
}

#[test]
fn a_pooled_audit_checkout_verifies_what_a_fresh_one_does() {
    let mut f = Fixture::new();
    let base = f.git(&["rev-parse", "HEAD"]);
    f.write("src/value.txt", "2\n");
    // The candidate rewrites the protected check: the audit must put it back.
    f.write("tests/check.sh", "echo rewritten; exit 0\n");
    let candidate = f.commit();
    let pool_dir = f.path("wt/audit-pool");
    let pooled = AuditReuse {
        cached_checks: Vec::new(),
        pool: Some(PoolSpec {
            dir: pool_dir.clone(),
            size: 2,
            cache_dirs: vec!["target/".to_owned()],
        }),
    };
    let path = system_path();
    // A check that lists the checkout's files and leaves junk and a cache behind.
    let list = "find . -path ./.git -prune -o -type f -print | sort; \
                cat tests/check.sh; echo junk > junk.txt; mkdir -p target; \
                echo cached >> target/c";
    let (fresh, md) = f.audit(&base, &candidate, list, &path, &pooled);
    assert!(fresh.checks[0].passed, "{md}");
    let idle: Vec<_> = fs::read_dir(&pool_dir).unwrap().flatten().collect();
    assert_eq!(
        idle.len(),
        1,
        "the checkout went back to the auditor's pool"
    );
    let slot = idle[0].path();
    assert!(slot.join("junk.txt").exists());

    let (recycled, md) = f.audit(&base, &candidate, list, &path, &pooled);
    assert!(recycled.checks[0].passed, "{md}");
    // The same files, the protected check as at base; the junk gone, and the cache too:
    // the auditor's pool keeps none, whatever the spec says (`target/c` is listed by the
    // check: it is a file in the checkout).
    let fresh_out = &fresh.checks[0].record.stdout;
    assert_eq!(&recycled.checks[0].record.stdout, fresh_out);
    assert!(fresh_out.contains("od -An"), "{fresh_out}");
    assert!(!fresh_out.contains("junk.txt"));
    assert!(!fresh_out.contains("./target/c"), "{fresh_out}");
    let slot = fs::read_dir(&pool_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_eq!(
        fs::read_to_string(slot.join("target/c")).unwrap(),
        "cached\n"
    );
}

/// The index flags of the checkout at `dir` that are not plain `H` (tracked, cached):
/// `S` for skip-worktree, a lower-case tag for assume-unchanged.
fn index_flags(f: &Fixture, dir: &std::path::Path) -> Vec<String> {
    let out = hermetic_command(&mut Command::new("git"), &f.path("home"))
        .args(["ls-files", "-v"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("H "))
        .map(str::to_owned)
        .collect()
}

/// The one idle checkout of the pool at `dir`.
fn idle_slot(dir: &std::path::Path) -> PathBuf {
    let idle: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(idle.len(), 1, "one checkout waits in the pool: {idle:?}");
    idle[0].clone()
}

#[test]
fn a_poisoned_audit_checkout_never_influences_the_next_audit() {
    let mut f = Fixture::new();
    // The protected check builds `target/out` from `src/value.txt` unless it is newer
    // (as `make` would) and passes when the build says good; the candidate's build step
    // runs first.
    f.write(
        "tests/check.sh",
        "sh ./build.sh
         mkdir -p target
         [ target/out -nt src/value.txt ] || cp src/value.txt target/out
         cat target/out src/value.txt
         grep -qx good target/out && grep -qx good src/value.txt
",
    );
    f.write(
        "build.sh", "true
",
    );
    f.write(
        "src/value.txt",
        "broken
",
    );
    let base = f.commit();
    // A good candidate whose build step poisons the checkout it runs in: an artifact
    // dated in the future, and the source and the protected check marked skip-worktree
    // and assume-unchanged with other content in them.
    f.write(
        "src/value.txt",
        "good
",
    );
    f.write(
        "build.sh",
        "mkdir -p target && echo good > target/out && touch -d 2100-01-01 target/out
         git update-index --skip-worktree src/value.txt
         git update-index --assume-unchanged tests/check.sh
         echo unrelated > .poison
",
    );
    let good = f.commit();
    // The broken candidate after it: its value is broken, its build step does nothing.
    f.write(
        "src/value.txt",
        "broken
",
    );
    f.write(
        "build.sh", "true
",
    );
    let broken = f.commit();

    let pool_dir = f.path("wt/audit-pool");
    let pooled = AuditReuse {
        cached_checks: Vec::new(),
        pool: Some(PoolSpec {
            dir: pool_dir.clone(),
            size: 2,
            cache_dirs: vec!["target/".to_owned()],
        }),
    };
    let path = system_path();
    let (first, md) = f.audit(&base, &good, CHECK, &path, &pooled);
    assert!(first.checks[0].passed, "{md}");
    let poisoned = idle_slot(&pool_dir);
    assert_eq!(
        index_flags(&f, &poisoned),
        ["S src/value.txt", "h tests/check.sh"],
        "the first audit's check poisoned its checkout"
    );
    assert!(poisoned.join("target/out").exists());
    let admin = fs::read_to_string(poisoned.join(".git")).unwrap();

    let (second, md) = f.audit(&base, &broken, CHECK, &path, &pooled);
    let recycled = idle_slot(&pool_dir);
    assert_eq!(
        fs::read_to_string(recycled.join(".git")).unwrap(),
        admin,
        "the second audit ran in the poisoned checkout"
    );
    assert!(!second.checks[0].passed, "{md}");
    assert_eq!(second.checks[0].record.stdout, "broken\nbroken\n", "{md}");
    assert_ne!(
        second.recommendation,
        goalpost_shared::protocol::Recommendation::Merge
    );
    assert_eq!(index_flags(&f, &recycled), Vec::<String>::new());
    assert!(!recycled.join(".poison").exists());

    // The same audit in a fresh checkout says the same.
    let (fresh, _) = f.audit(&base, &broken, CHECK, &path, &AuditReuse::default());
    assert_eq!(
        fresh.checks[0].record.stdout,
        second.checks[0].record.stdout
    );
}
