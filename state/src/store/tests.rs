//! The store's writes, each read back.

use std::path::PathBuf;

use goalpost_shared::protocol::{Role, TurnRecord};

use super::*;

const RUN: &str = "r1";

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
    (dir, store)
}

fn oid(c: char) -> String {
    c.to_string().repeat(40)
}

/// A store with run `r1` of two phases, `api` then `docs`.
fn with_run() -> (tempfile::TempDir, Store) {
    let (dir, store) = store();
    store
        .insert_run(
            RUN,
            "goal.md",
            r#"{"plan":1}"#,
            "/repo",
            "main",
            &oid('a'),
            "refs/goalpost/r1/integration",
        )
        .unwrap();
    store.insert_phase(RUN, "api", 0).unwrap();
    store.insert_phase(RUN, "docs", 1).unwrap();
    (dir, store)
}

fn phase(store: &Store, id: &str) -> PhaseRow {
    store
        .phases(RUN)
        .unwrap()
        .into_iter()
        .find(|p| p.phase_id == id)
        .unwrap()
}

fn attempt(store: &Store, phase: &str, n: u32) -> AttemptRow {
    store
        .attempts(RUN)
        .unwrap()
        .into_iter()
        .find(|a| a.phase_id == phase && a.n == n)
        .unwrap()
}

fn command(argv: &str) -> CommandRecord {
    CommandRecord {
        exit_code: Some(0),
        duration_ms: 7,
        stdout: format!("{argv} ran"),
        tree: Some(oid('t')),
        measured: Default::default(),
        ..CommandRecord::not_run(vec![argv.to_owned()], PathBuf::from("/wt"))
    }
}

fn check(command_line: &str, passed: bool) -> CheckResult {
    CheckResult {
        check: format!("`{command_line}` passes"),
        line: 3,
        command: command_line.to_owned(),
        record: command(command_line),
        metric: None,
        passed,
        failure: (!passed).then(|| "exit status 1".to_owned()),
        integrity: None,
    }
}

fn turn(role: Role, iteration: u32, usage: &Usage) -> TurnRecord {
    TurnRecord {
        role,
        iteration,
        agent: "codex".into(),
        record: command(role.as_str()),
        usage: usage.clone(),
        message: "done".into(),
        verdict: None,
        error: None,
        commands: Vec::new(),
    }
}

fn iteration(n: u32, usage: &Usage) -> IterationRecord {
    IterationRecord {
        iteration: n,
        implementer: turn(Role::Implementer, n, usage),
        commit: Some(oid('c')),
        tree: oid('t'),
        checks: vec![check("cargo test", true)],
        reviewer: Some(turn(Role::Reviewer, n, &Usage::default())),
        claims: vec!["tests pass".into()],
        progress: true,
    }
}

fn report(phase: &str, recommendation: Recommendation, candidate: char) -> AuditReport {
    AuditReport {
        phase: phase.to_owned(),
        base: oid('a'),
        candidate: oid(candidate),
        tree: oid('t'),
        recommendation,
        summary: format!("says {}", recommendation.as_str()),
        checks: vec![check("cargo test", true)],
        unverified_checks: Vec::new(),
        violations: Vec::new(),
        claims: Vec::new(),
        changed_paths: vec!["src/lib.rs".into()],
        cache: Vec::new(),
        base_censuses: Vec::new(),
        setup: None,
        held_out: Vec::new(),
        agent: None,
    }
}

fn count(store: &Store, sql: &str) -> i64 {
    store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_run_reads_back_as_it_was_inserted_and_active() {
    let (_dir, store) = with_run();
    let run = store.run(Some(RUN)).unwrap().unwrap();
    assert_eq!(run.id, RUN);
    assert_eq!(run.plan_path, "goal.md");
    assert_eq!(run.workdir, "/repo");
    assert_eq!(run.release_branch, "main");
    assert_eq!(run.release_start, oid('a'));
    assert_eq!(run.integration_ref, "refs/goalpost/r1/integration");
    assert_eq!(run.state, RunState::Active);
    assert_eq!(run.blocker, None);
    assert_eq!(run.release_commit, None);
    assert!(run.created_at > 0 && run.created_at == run.updated_at);
    assert_eq!(store.run_plan_json(RUN).unwrap(), r#"{"plan":1}"#);
    assert!(store.run(Some("nope")).unwrap().is_none());
}

#[test]
fn no_run_is_the_latest_of_an_empty_store() {
    let (_dir, store) = store();
    assert!(store.run(None).unwrap().is_none());
}

#[test]
fn the_latest_run_is_the_last_inserted() {
    let (_dir, store) = with_run();
    store
        .insert_run("r2", "g.md", "{}", "/repo", "main", &oid('a'), "refs/x")
        .unwrap();
    assert_eq!(store.run(None).unwrap().unwrap().id, "r2");
    assert_eq!(store.run(Some(RUN)).unwrap().unwrap().id, RUN);
}

#[test]
fn every_run_state_is_written_and_read_back() {
    let (_dir, store) = with_run();
    for &state in RunState::ALL {
        store.set_run_state(RUN, state, Some("why")).unwrap();
        let run = store.run(Some(RUN)).unwrap().unwrap();
        assert_eq!(run.state, state);
        assert_eq!(run.blocker.as_deref(), Some("why"));
    }
    store.set_run_state(RUN, RunState::Active, None).unwrap();
    assert_eq!(store.run(Some(RUN)).unwrap().unwrap().blocker, None);
}

#[test]
fn the_release_commit_and_a_new_plan_are_recorded() {
    let (_dir, store) = with_run();
    store.set_release_commit(RUN, &oid('f')).unwrap();
    store.set_plan_json(RUN, r#"{"plan":2}"#).unwrap();
    let run = store.run(Some(RUN)).unwrap().unwrap();
    assert_eq!(run.release_commit, Some(oid('f')));
    assert_eq!(store.run_plan_json(RUN).unwrap(), r#"{"plan":2}"#);
}

#[test]
fn an_unknown_state_in_the_database_is_an_error_naming_it() {
    let (_dir, store) = with_run();
    store
        .conn
        .execute("UPDATE runs SET state = 'frobbed'", [])
        .unwrap();
    let err = store.run(Some(RUN)).unwrap_err();
    assert!(
        err.to_string().contains("unknown run state `frobbed`"),
        "{err}"
    );
    store
        .conn
        .execute(
            "UPDATE phases SET state = 'ready' WHERE phase_id = 'api'",
            [],
        )
        .unwrap();
    let err = store.phases(RUN).unwrap_err();
    assert!(
        err.to_string().contains("unknown phase state `ready`"),
        "{err}"
    );
}

#[test]
fn phases_come_back_pending_in_the_plans_order_and_once() {
    let (_dir, store) = with_run();
    // A resume inserts them again: the first record stays.
    store
        .set_phase_state(RUN, "api", PhaseStatus::Running, None)
        .unwrap();
    store.insert_phase(RUN, "api", 0).unwrap();
    let phases = store.phases(RUN).unwrap();
    assert_eq!(
        phases
            .iter()
            .map(|p| p.phase_id.as_str())
            .collect::<Vec<_>>(),
        ["api", "docs"]
    );
    assert_eq!(phases[0].state, PhaseStatus::Running);
    assert_eq!(phases[1].state, PhaseStatus::Pending);
    assert_eq!(phases[1].base, None);
    assert_eq!(phases[1].merged_commit, None);
    assert_eq!(phases[1].winner, None);
    assert_eq!(phases[1].why, None);
}

#[test]
fn every_phase_state_is_written_and_a_why_is_kept_until_replaced() {
    let (_dir, store) = with_run();
    store
        .set_phase_state(RUN, "api", PhaseStatus::Blocked, Some("stuck"))
        .unwrap();
    for &state in PhaseStatus::ALL {
        store.set_phase_state(RUN, "api", state, None).unwrap();
        let p = phase(&store, "api");
        assert_eq!(p.state, state);
        assert_eq!(p.why.as_deref(), Some("stuck"));
    }
    store
        .set_phase_state(RUN, "api", PhaseStatus::Pending, Some("waits on x"))
        .unwrap();
    assert_eq!(phase(&store, "api").why.as_deref(), Some("waits on x"));
    assert_eq!(phase(&store, "docs").state, PhaseStatus::Pending);
}

#[test]
fn a_phase_records_its_base_and_its_merge() {
    let (_dir, store) = with_run();
    store.set_phase_base(RUN, "api", &oid('b')).unwrap();
    store
        .set_phase_merged(RUN, "api", &oid('m'), 2, "first attempt to pass its audit")
        .unwrap();
    let p = phase(&store, "api");
    assert_eq!(p.state, PhaseStatus::Merged);
    assert_eq!(p.base, Some(oid('b')));
    assert_eq!(p.merged_commit, Some(oid('m')));
    assert_eq!(p.winner, Some(2));
    assert_eq!(p.why.as_deref(), Some("first attempt to pass its audit"));
}

#[test]
fn an_attempt_reads_back_running_with_nothing_done_yet() {
    let (_dir, store) = with_run();
    store
        .insert_attempt(
            RUN,
            "api",
            1,
            "codex",
            "/wt/api-1",
            "refs/goalpost/r1/api/1",
        )
        .unwrap();
    let a = attempt(&store, "api", 1);
    assert_eq!(a.agent, "codex");
    assert_eq!(a.worktree, "/wt/api-1");
    assert_eq!(a.ref_name, "refs/goalpost/r1/api/1");
    assert_eq!(a.state, AttemptStatus::Running);
    assert_eq!((a.base, a.head, a.candidate), (None, None, None));
    assert_eq!((a.rounds, a.iterations), (0, 0));
    assert_eq!(a.usage, Usage::default());
    assert_eq!((a.outcome, a.metric, a.diff_lines), (None, None, None));
}

#[test]
fn attempts_come_in_the_plans_phase_order_then_by_number() {
    let (_dir, store) = with_run();
    for (phase, n) in [("docs", 1), ("api", 2), ("api", 1)] {
        store
            .insert_attempt(RUN, phase, n, "codex", "/wt", "refs/x")
            .unwrap();
    }
    // Inserted again by a resume: still one.
    store
        .insert_attempt(RUN, "api", 1, "claude", "/wt", "refs/x")
        .unwrap();
    let order: Vec<(String, u32, String)> = store
        .attempts(RUN)
        .unwrap()
        .into_iter()
        .map(|a| (a.phase_id, a.n, a.agent))
        .collect();
    assert_eq!(
        order,
        [
            ("api".into(), 1, "codex".into()),
            ("api".into(), 2, "codex".into()),
            ("docs".into(), 1, "codex".into())
        ]
    );
}

#[test]
fn every_attempt_state_is_written_and_read_back() {
    let (_dir, store) = with_run();
    store
        .insert_attempt(RUN, "api", 1, "codex", "/wt", "refs/x")
        .unwrap();
    for &state in AttemptStatus::ALL {
        store.set_attempt_state(RUN, "api", 1, state).unwrap();
        assert_eq!(attempt(&store, "api", 1).state, state);
    }
}

#[test]
fn an_attempt_records_its_base_and_its_metric() {
    let (_dir, store) = with_run();
    store
        .insert_attempt(RUN, "api", 1, "codex", "/wt", "refs/x")
        .unwrap();
    store.set_attempt_base(RUN, "api", 1, &oid('b')).unwrap();
    store
        .set_attempt_metric(RUN, "api", 1, Some(98.5), 4)
        .unwrap();
    let a = attempt(&store, "api", 1);
    assert_eq!(a.base, Some(oid('b')));
    assert_eq!(a.metric, Some(98.5));
    assert_eq!(a.diff_lines, Some(4));
    store.set_attempt_metric(RUN, "api", 1, None, 0).unwrap();
    assert_eq!(attempt(&store, "api", 1).metric, None);
}

#[test]
fn rounds_add_up_their_usage_and_keep_their_iterations_and_commands() {
    let (_dir, store) = with_run();
    store
        .insert_attempt(RUN, "api", 1, "codex", "/wt", "refs/x")
        .unwrap();
    let usage = Usage {
        tokens_in: 100,
        tokens_out: 20,
        cost_usd: 0.5,
        turns: 1,
        ..Usage::default()
    };
    store
        .record_round(
            RUN,
            "api",
            1,
            AttemptStatus::Auditing,
            Some(&oid('h')),
            Some(&oid('h')),
            &usage,
            "candidate",
            &[iteration(1, &usage), iteration(2, &usage)],
        )
        .unwrap();
    let a = attempt(&store, "api", 1);
    assert_eq!(a.state, AttemptStatus::Auditing);
    assert_eq!(a.head, Some(oid('h')));
    assert_eq!(a.candidate, Some(oid('h')));
    assert_eq!((a.rounds, a.iterations), (1, 2));
    assert_eq!(a.usage, usage);
    assert_eq!(a.outcome.as_deref(), Some("candidate"));
    // Implementer, check and reviewer of each iteration.
    assert_eq!(count(&store, "SELECT COUNT(*) FROM iterations"), 2);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM commands WHERE source = 'worker' AND attempt = 1"
        ),
        6
    );
    let record: String = store
        .conn
        .query_row(
            "SELECT record FROM iterations WHERE iteration = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let back: IterationRecord = serde_json::from_str(&record).unwrap();
    assert_eq!(back, iteration(2, &usage));

    // A round with no harvest keeps the head, drops the candidate, adds its usage.
    store
        .record_round(
            RUN,
            "api",
            1,
            AttemptStatus::Blocked,
            None,
            None,
            &usage,
            "blocked: no way on",
            &[iteration(1, &usage)],
        )
        .unwrap();
    let a = attempt(&store, "api", 1);
    assert_eq!(a.state, AttemptStatus::Blocked);
    assert_eq!(a.head, Some(oid('h')));
    assert_eq!(a.candidate, None);
    assert_eq!((a.rounds, a.iterations), (2, 2));
    assert_eq!(a.usage.tokens_in, 200);
    assert_eq!(a.usage.turns, 2);
    assert_eq!(a.usage.cost_usd, 1.0);
    assert_eq!(a.outcome.as_deref(), Some("blocked: no way on"));
    // The iteration written again replaces its record.
    assert_eq!(count(&store, "SELECT COUNT(*) FROM iterations"), 2);
}

#[test]
fn audits_read_back_in_order_and_the_last_passing_one_is_found() {
    let (_dir, store) = with_run();
    let dir = Path::new("/runs/r1/audits/api.1-1");
    let commands = [command("cargo test")];
    store
        .record_audit(
            RUN,
            Some(1),
            &report("api", Recommendation::Merge, 'c'),
            dir,
            &commands,
        )
        .unwrap();
    store
        .record_audit(
            RUN,
            Some(1),
            &report("api", Recommendation::Merge, 'd'),
            dir,
            &[],
        )
        .unwrap();
    store
        .record_audit(
            RUN,
            Some(1),
            &report("api", Recommendation::Revise, 'e'),
            dir,
            &[],
        )
        .unwrap();
    store
        .record_audit(
            RUN,
            None,
            &report("goal", Recommendation::Abandon, 'f'),
            dir,
            &[],
        )
        .unwrap();
    let audits = store.audits(RUN).unwrap();
    assert_eq!(
        audits
            .iter()
            .map(|a| (a.attempt, a.recommendation))
            .collect::<Vec<_>>(),
        [
            (Some(1), Recommendation::Merge),
            (Some(1), Recommendation::Merge),
            (Some(1), Recommendation::Revise),
            (None, Recommendation::Abandon)
        ]
    );
    let first = &audits[0];
    assert_eq!(first.phase_id, "api");
    assert_eq!(first.base, oid('a'));
    assert_eq!(first.candidate, oid('c'));
    assert_eq!(first.tree, oid('t'));
    assert_eq!(first.summary, "says merge");
    assert_eq!(first.report_dir, "/runs/r1/audits/api.1-1");
    assert_eq!(audits[3].phase_id, "goal");
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM commands WHERE source = 'auditor'"
        ),
        1
    );
    assert_eq!(
        store.last_passing_audit(RUN, "api", 1).unwrap(),
        Some((oid('d'), oid('t'), "says merge".to_owned()))
    );
    assert_eq!(store.last_passing_audit(RUN, "api", 2).unwrap(), None);
}

#[test]
fn an_unknown_recommendation_in_the_database_is_an_error_naming_it() {
    let (_dir, store) = with_run();
    let dir = Path::new("/d");
    store
        .record_audit(
            RUN,
            Some(1),
            &report("api", Recommendation::Merge, 'c'),
            dir,
            &[],
        )
        .unwrap();
    store
        .conn
        .execute("UPDATE audits SET recommendation = 'shrug'", [])
        .unwrap();
    let err = store.audits(RUN).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown audit recommendation `shrug`"),
        "{err}"
    );
}

#[test]
fn merges_are_recorded() {
    let (_dir, store) = with_run();
    store
        .record_merge(
            RUN,
            Some("api"),
            "refs/goalpost/r1/integration",
            &oid('a'),
            &oid('m'),
            &oid('c'),
        )
        .unwrap();
    store
        .record_merge(
            RUN,
            None,
            "refs/heads/main",
            &oid('a'),
            &oid('m'),
            &oid('m'),
        )
        .unwrap();
    let rows: Vec<(Option<String>, String, String, String, String)> = store
        .conn
        .prepare("SELECT phase_id, target, old_tip, new_tip, audited FROM merges ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            (
                Some("api".into()),
                "refs/goalpost/r1/integration".into(),
                oid('a'),
                oid('m'),
                oid('c')
            ),
            (None, "refs/heads/main".into(), oid('a'), oid('m'), oid('m')),
        ]
    );
}

#[test]
fn deleting_a_run_deletes_every_record_of_it_and_nothing_else() {
    let (_dir, store) = with_run();
    store
        .insert_run("r2", "g.md", "{}", "/repo", "main", &oid('a'), "refs/x")
        .unwrap();
    store.insert_phase("r2", "api", 0).unwrap();
    for run in [RUN, "r2"] {
        store
            .insert_attempt(run, "api", 1, "codex", "/wt", "refs/x")
            .unwrap();
        store
            .record_round(
                run,
                "api",
                1,
                AttemptStatus::Auditing,
                None,
                None,
                &Usage::default(),
                "candidate",
                &[iteration(1, &Usage::default())],
            )
            .unwrap();
        store
            .record_audit(
                run,
                Some(1),
                &report("api", Recommendation::Merge, 'c'),
                Path::new("/d"),
                &[command("x")],
            )
            .unwrap();
        store
            .record_merge(run, Some("api"), "refs/x", &oid('a'), &oid('m'), &oid('c'))
            .unwrap();
    }
    store.delete_run(RUN).unwrap();
    assert!(store.run(Some(RUN)).unwrap().is_none());
    for table in [
        "phases",
        "attempts",
        "iterations",
        "commands",
        "audits",
        "merges",
    ] {
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM {table} WHERE run_id = 'r1'")
            ),
            0,
            "{table}"
        );
        assert!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM {table} WHERE run_id = 'r2'")
            ) > 0,
            "{table}"
        );
    }
    assert!(store.run(Some("r2")).unwrap().is_some());
}

#[test]
fn a_cached_check_keeps_its_first_evidence_and_is_found_by_its_tree() {
    let (_dir, store) = store();
    let passed = check("cargo test", true);
    store
        .record_cached_check("k1", &oid('t'), &passed, "/audits/one")
        .unwrap();
    let mut later = passed.clone();
    later.record.stdout = "a later run".into();
    store
        .record_cached_check("k1", &oid('t'), &later, "/audits/two")
        .unwrap();
    store
        .record_cached_check("k2", &oid('t'), &check("cargo clippy", true), "/audits/two")
        .unwrap();
    store
        .record_cached_check("k3", &oid('u'), &passed, "/audits/three")
        .unwrap();
    let cached = store.cached_checks(&oid('t')).unwrap();
    assert_eq!(
        cached.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert_eq!(cached[0].result, passed);
    assert_eq!(cached[0].source, "/audits/one");
    assert!(store.cached_checks(&oid('v')).unwrap().is_empty());
}

#[test]
fn a_cached_check_this_version_cannot_read_is_no_evidence() {
    let (_dir, store) = store();
    store
        .record_cached_check("k1", &oid('t'), &check("cargo test", true), "/a")
        .unwrap();
    store
        .conn
        .execute(
            "INSERT INTO check_cache (key, tree, command, result, source, created_at)
             VALUES ('k0', ?1, 'x', '{\"not\": \"a check\"}', '/b', 0)",
            params![oid('t')],
        )
        .unwrap();
    let cached = store.cached_checks(&oid('t')).unwrap();
    assert_eq!(
        cached.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["k1"]
    );
}

#[test]
fn open_existing_opens_only_a_store_that_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    assert!(Store::open_existing(&path).unwrap().is_none());
    assert!(!path.exists());
    Store::open(&path).unwrap();
    assert!(Store::open_existing(&path).unwrap().is_some());
}
