//! The store's schema: its versions (`PRAGMA user_version`) and the migrations between
//! them, applied in order when a store is opened.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};

use crate::store::{Result, StoreError};

/// The schema's migrations, in order: migration `k` (counting from 1) takes a store whose
/// `PRAGMA user_version` is `k - 1` to version `k`. A released migration is never edited;
/// a change of the schema is a new one at the end.
pub(crate) const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2];

/// The schema version this build reads and writes: that of its last migration.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1: the tables as builds before schema versions wrote them. Each statement
/// creates only what is missing, so on a store those builds left (user_version 0, the
/// tables there) it adds nothing but what they lacked, and the store is stamped.
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    plan_path       TEXT NOT NULL,
    plan_json       TEXT NOT NULL,
    workdir         TEXT NOT NULL,
    release_branch  TEXT NOT NULL,
    release_start   TEXT NOT NULL,
    integration_ref TEXT NOT NULL,
    state           TEXT NOT NULL,
    blocker         TEXT,
    release_commit  TEXT,
    pid             INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS phases (
    run_id        TEXT NOT NULL,
    phase_id      TEXT NOT NULL,
    position      INTEGER NOT NULL,
    state         TEXT NOT NULL,
    base          TEXT,
    merged_commit TEXT,
    winner        INTEGER,
    why           TEXT,
    PRIMARY KEY (run_id, phase_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id      TEXT NOT NULL,
    phase_id    TEXT NOT NULL,
    n           INTEGER NOT NULL,
    agent       TEXT NOT NULL,
    worktree    TEXT NOT NULL,
    ref_name    TEXT NOT NULL,
    state       TEXT NOT NULL,
    base        TEXT,
    head        TEXT,
    candidate   TEXT,
    rounds      INTEGER NOT NULL DEFAULT 0,
    iterations  INTEGER NOT NULL DEFAULT 0,
    usage_json  TEXT NOT NULL DEFAULT '{}',
    outcome     TEXT,
    metric      REAL,
    diff_lines  INTEGER,
    PRIMARY KEY (run_id, phase_id, n)
);
CREATE TABLE IF NOT EXISTS iterations (
    run_id    TEXT NOT NULL,
    phase_id  TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    record    TEXT NOT NULL,
    PRIMARY KEY (run_id, phase_id, attempt, iteration)
);
CREATE TABLE IF NOT EXISTS commands (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL,
    phase_id    TEXT,
    attempt     INTEGER,
    source      TEXT NOT NULL,
    argv        TEXT NOT NULL,
    cwd         TEXT NOT NULL,
    exit_code   INTEGER,
    signal      INTEGER,
    duration_ms INTEGER NOT NULL,
    stdout      TEXT NOT NULL,
    stderr      TEXT NOT NULL,
    tree        TEXT,
    timed_out   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audits (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         TEXT NOT NULL,
    phase_id       TEXT NOT NULL,
    attempt        INTEGER,
    base           TEXT NOT NULL,
    candidate      TEXT NOT NULL,
    tree           TEXT NOT NULL,
    recommendation TEXT NOT NULL,
    summary        TEXT NOT NULL,
    report_dir     TEXT NOT NULL,
    report         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS merges (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    TEXT NOT NULL,
    phase_id  TEXT,
    target    TEXT NOT NULL,
    old_tip   TEXT NOT NULL,
    new_tip   TEXT NOT NULL,
    audited   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS check_cache (
    key        TEXT PRIMARY KEY,
    tree       TEXT NOT NULL,
    command    TEXT NOT NULL,
    result     TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS check_cache_by_tree ON check_cache (tree);
"#;

/// Version 2: the event log (`crate::events`), one row per event of a run, numbered from 1
/// within the run.
const SCHEMA_V2: &str = r#"
CREATE TABLE events (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"#;

/// Brings the store at `path` to the version of the last of `migrations` (the schema's:
/// [`MIGRATIONS`]), applying those it lacks in order, all in one transaction; refuses a
/// store a newer goalpost wrote.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let latest = migrations.len() as u32;
    let wrap = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version = |conn: &Connection| -> Result<u32> {
        let found: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(wrap)?;
        if found > latest {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known: latest,
            });
        }
        Ok(found)
    };
    // Most opens find the store current: they take no write lock.
    if version(conn)? == latest {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(wrap)?;
    // Another process may have migrated it between the two reads.
    let found = version(&tx)?;
    if found == 0 && has_table(&tx, "runs").map_err(wrap)? {
        tracing::debug!(path = %path.display(), "stamping a store written before schema versions");
    }
    for (k, sql) in migrations.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(wrap)?;
        tx.pragma_update(None, "user_version", k as u32 + 1)
            .map_err(wrap)?;
    }
    tx.commit().map_err(wrap)
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        params![name],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunState, Store};

    fn user_version(path: &Path) -> u32 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    /// A store as a build before schema versions left it: version 1's tables, user_version
    /// 0, one paused run.
    fn unversioned_store(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute(
            "INSERT INTO runs (id, plan_path, plan_json, workdir, release_branch, release_start,
                integration_ref, state, created_at, updated_at)
             VALUES ('r1', 'goal.md', '{}', '/w', 'main', 'abc', 'refs/x', 'paused', 1, 1)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_new_store_is_at_the_latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/state.sqlite");
        Store::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        // Opening it again changes nothing.
        Store::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
    }

    #[test]
    fn a_store_from_before_schema_versions_is_stamped_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        unversioned_store(&path);
        assert_eq!(user_version(&path), 0);
        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        let run = store.run(Some("r1")).unwrap().unwrap();
        assert_eq!(run.state, RunState::Paused);
    }

    #[test]
    fn a_store_from_before_the_verification_cache_gets_its_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        unversioned_store(&path);
        Connection::open(&path)
            .unwrap()
            .execute_batch("DROP INDEX check_cache_by_tree; DROP TABLE check_cache;")
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert!(store.cached_checks("tree").unwrap().is_empty());
    }

    #[test]
    fn a_version_1_store_gets_the_event_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        unversioned_store(&path);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 1)
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&path), 2);
        assert!(store.events_since("r1", 0).unwrap().is_empty());
        assert_eq!(
            store.run(Some("r1")).unwrap().unwrap().state,
            RunState::Paused
        );
    }

    #[test]
    fn a_store_from_a_newer_goalpost_is_refused_naming_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Store::open(&path).unwrap();
        let newer = SCHEMA_VERSION + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found, known, .. } if found == newer && known == SCHEMA_VERSION),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("version {newer}")), "{text}");
        assert!(text.contains("newer goalpost"), "{text}");
        // Refused, not touched.
        assert_eq!(user_version(&path), newer);
    }

    #[test]
    fn migrations_apply_in_order_from_the_version_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let migrations = [
            "CREATE TABLE one (x INTEGER);",
            "INSERT INTO one (x) VALUES (2);",
            "INSERT INTO one (x) VALUES (3);",
        ];
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &migrations[..1]).unwrap();
        assert_eq!(user_version(&path), 1);
        migrate(&mut conn, &path, &migrations).unwrap();
        assert_eq!(user_version(&path), 3);
        let xs: Vec<i64> = conn
            .prepare("SELECT x FROM one ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(xs, [2, 3]);
    }

    #[test]
    fn a_failing_migration_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        let err = migrate(
            &mut conn,
            &path,
            &["CREATE TABLE one (x INTEGER);", "NOT SQL AT ALL;"],
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
        assert_eq!(user_version(&path), 0);
        assert!(!has_table(&conn, "one").unwrap());
    }
}
