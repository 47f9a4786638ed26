//! The run's durable state: SQLite (WAL) in the repository's common git dir. The
//! scheduler is its only writer; workers and auditors report through files it records.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use goalpost_shared::protocol::{
    AuditReport, CachedCheck, CheckResult, CommandRecord, IterationRecord, Recommendation, Usage,
};

use crate::schema::{MIGRATIONS, migrate};
use crate::states::{AttemptStatus, PhaseStatus, RunState, UnknownName};

/// Why the store could not do what it was asked, with its path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store: cannot encode a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "state store {path}: its schema is version {found}, written by a newer goalpost; this one knows versions up to {known}"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("state store {path}: event {seq} of run {run} cannot be read: {source}")]
    Event {
        path: PathBuf,
        run: String,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// The store's results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Column `column` of `row`, an audit's recommendation, read back as the protocol's type
/// by the names the protocol's serde gives it (those `Recommendation::as_str` writes).
fn recommendation(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Recommendation> {
    let text: String = row.get(column)?;
    serde_json::from_value(serde_json::Value::String(text.clone())).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            Box::new(UnknownName {
                kind: "audit recommendation",
                value: text,
            }),
        )
    })
}

/// An open state store.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

/// A run's row; its JSON is documented in the crate's docs.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub plan_path: String,
    pub workdir: String,
    pub release_branch: String,
    pub release_start: String,
    pub integration_ref: String,
    pub state: RunState,
    pub blocker: Option<String>,
    pub release_commit: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A phase's row; its JSON is documented in the crate's docs.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRow {
    pub phase_id: String,
    pub state: PhaseStatus,
    pub base: Option<String>,
    pub merged_commit: Option<String>,
    pub winner: Option<u32>,
    pub why: Option<String>,
}

/// An attempt's row; its JSON is documented in the crate's docs.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub phase_id: String,
    pub n: u32,
    pub base: Option<String>,
    pub agent: String,
    pub worktree: String,
    pub ref_name: String,
    pub state: AttemptStatus,
    pub head: Option<String>,
    pub candidate: Option<String>,
    pub rounds: u32,
    pub iterations: u32,
    pub usage: Usage,
    pub outcome: Option<String>,
    pub metric: Option<f64>,
    pub diff_lines: Option<i64>,
}

/// An audit's row; its JSON is documented in the crate's docs.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub phase_id: String,
    pub attempt: Option<u32>,
    pub base: String,
    pub candidate: String,
    pub tree: String,
    pub recommendation: Recommendation,
    pub summary: String,
    pub report_dir: String,
    /// What its auditor agent spent; `None` when no auditor agent ran.
    pub agent_usage: Option<Usage>,
}

/// Seconds since the Unix epoch (0 on a clock before it): the store's times.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let wrap = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(wrap)?;
        migrate(&mut conn, path, MIGRATIONS)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the store only if it exists (for `status` and `report`).
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        if path.exists() {
            Store::open(path).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn insert_run(
        &self,
        id: &str,
        plan_path: &str,
        plan_json: &str,
        workdir: &str,
        release_branch: &str,
        release_start: &str,
        integration_ref: &str,
    ) -> Result<()> {
        let t = now();
        self.conn
            .execute(
                "INSERT INTO runs (id, plan_path, plan_json, workdir, release_branch, release_start,
                    integration_ref, state, pid, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                params![
                    id,
                    plan_path,
                    plan_json,
                    workdir,
                    release_branch,
                    release_start,
                    integration_ref,
                    RunState::Active,
                    std::process::id(),
                    t
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records where run `id` stands, and why it stopped (`None` clears the blocker).
    pub fn set_run_state(&self, id: &str, state: RunState, blocker: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET state = ?2, blocker = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, state, blocker, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the commit the release branch was moved to.
    pub fn set_release_commit(&self, id: &str, commit: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET release_commit = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, commit, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
        Ok(RunRow {
            id: row.get(0)?,
            plan_path: row.get(1)?,
            workdir: row.get(2)?,
            release_branch: row.get(3)?,
            release_start: row.get(4)?,
            integration_ref: row.get(5)?,
            state: row.get(6)?,
            blocker: row.get(7)?,
            release_commit: row.get(8)?,
            created_at: row.get(9)?,
            updated_at: row.get(10)?,
        })
    }

    const RUN_COLUMNS: &'static str = "id, plan_path, workdir, release_branch, release_start,
        integration_ref, state, blocker, release_commit, created_at, updated_at";

    /// The most recent run, or the one named.
    pub fn run(&self, id: Option<&str>) -> Result<Option<RunRow>> {
        let sql = match id {
            Some(_) => format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLUMNS),
            None => format!(
                "SELECT {} FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1",
                Self::RUN_COLUMNS
            ),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let row = match id {
            Some(id) => stmt.query_row(params![id], Self::run_from_row),
            None => stmt.query_row([], Self::run_from_row),
        };
        row.optional().map_err(|e| self.err(e))
    }

    /// Every run of the repository, the most recent first.
    pub fn runs(&self) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {} FROM runs ORDER BY created_at DESC, rowid DESC",
            Self::RUN_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], Self::run_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// The plan run `id` follows, as JSON.
    pub fn run_plan_json(&self, id: &str) -> Result<String> {
        self.conn
            .query_row(
                "SELECT plan_json FROM runs WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Records phase `phase` of `run`, pending, at `position` in the plan; a phase
    /// recorded before stays as it is.
    pub fn insert_phase(&self, run: &str, phase: &str, position: usize) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO phases (run_id, phase_id, position, state)
                 VALUES (?1, ?2, ?3, ?4)",
                params![run, phase, position as i64, PhaseStatus::Pending],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records where a phase stands; `why`, when given, replaces the one recorded.
    pub fn set_phase_state(
        &self,
        run: &str,
        phase: &str,
        state: PhaseStatus,
        why: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE phases SET state = ?3, why = COALESCE(?4, why)
                 WHERE run_id = ?1 AND phase_id = ?2",
                params![run, phase, state, why],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the integration tip a phase started on.
    pub fn set_phase_base(&self, run: &str, phase: &str, base: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE phases SET base = ?3 WHERE run_id = ?1 AND phase_id = ?2",
                params![run, phase, base],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records that attempt `winner` of a phase landed as `commit`, and why it won.
    pub fn set_phase_merged(
        &self,
        run: &str,
        phase: &str,
        commit: &str,
        winner: u32,
        why: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE phases SET state = ?6, merged_commit = ?3, winner = ?4, why = ?5
                 WHERE run_id = ?1 AND phase_id = ?2",
                params![run, phase, commit, winner, why, PhaseStatus::Merged],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The phases of `run`, in the plan's order.
    pub fn phases(&self, run: &str) -> Result<Vec<PhaseRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT phase_id, state, base, merged_commit, winner, why FROM phases
                 WHERE run_id = ?1 ORDER BY position",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(PhaseRow {
                    phase_id: r.get(0)?,
                    state: r.get(1)?,
                    base: r.get(2)?,
                    merged_commit: r.get(3)?,
                    winner: r.get(4)?,
                    why: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Records attempt `n` of a phase, running; an attempt recorded before stays as it is.
    pub fn insert_attempt(
        &self,
        run: &str,
        phase: &str,
        n: u32,
        agent: &str,
        worktree: &str,
        ref_name: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO attempts (run_id, phase_id, n, agent, worktree, ref_name, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run, phase, n, agent, worktree, ref_name, AttemptStatus::Running],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the base a round of attempt `n` starts from (it moves on a conflict).
    pub fn set_attempt_base(&self, run: &str, phase: &str, n: u32, base: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE attempts SET base = ?4 WHERE run_id = ?1 AND phase_id = ?2 AND n = ?3",
                params![run, phase, n, base],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Replaces the plan a run follows (a resume that raised its budget).
    pub fn set_plan_json(&self, run: &str, plan_json: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET plan_json = ?2, updated_at = ?3 WHERE id = ?1",
                params![run, plan_json, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The candidate, tree and summary of the last audit of attempt `n` that said merge.
    pub fn last_passing_audit(
        &self,
        run: &str,
        phase: &str,
        n: u32,
    ) -> Result<Option<(String, String, String)>> {
        self.conn
            .query_row(
                "SELECT candidate, tree, summary FROM audits
                 WHERE run_id = ?1 AND phase_id = ?2 AND attempt = ?3 AND recommendation = ?4
                 ORDER BY id DESC LIMIT 1",
                params![run, phase, n, Recommendation::Merge.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records where attempt `n` of a phase stands.
    pub fn set_attempt_state(
        &self,
        run: &str,
        phase: &str,
        n: u32,
        state: AttemptStatus,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE attempts SET state = ?4 WHERE run_id = ?1 AND phase_id = ?2 AND n = ?3",
                params![run, phase, n, state],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the end of one worker round.
    #[allow(clippy::too_many_arguments)]
    pub fn record_round(
        &self,
        run: &str,
        phase: &str,
        n: u32,
        state: AttemptStatus,
        head: Option<&str>,
        candidate: Option<&str>,
        usage: &Usage,
        outcome: &str,
        iterations: &[IterationRecord],
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for it in iterations {
            tx.execute(
                "INSERT OR REPLACE INTO iterations (run_id, phase_id, attempt, iteration, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, phase, n, it.iteration, serde_json::to_string(it)?],
            )
            .map_err(|e| self.err(e))?;
            let mut cmds: Vec<&CommandRecord> = vec![&it.implementer.record];
            cmds.extend(it.checks.iter().map(|c| &c.record));
            if let Some(r) = &it.reviewer {
                cmds.push(&r.record);
            }
            for c in cmds {
                insert_command(&tx, run, Some(phase), Some(n), "worker", c)
                    .map_err(|e| self.err(e))?;
            }
        }
        let old: String = tx
            .query_row(
                "SELECT usage_json FROM attempts WHERE run_id = ?1 AND phase_id = ?2 AND n = ?3",
                params![run, phase, n],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let mut total: Usage = serde_json::from_str(&old).unwrap_or_default();
        total.add(usage);
        let max_iter = iterations.iter().map(|i| i.iteration).max().unwrap_or(0);
        tx.execute(
            "UPDATE attempts SET state = ?4, head = COALESCE(?5, head), candidate = ?6,
                rounds = rounds + 1, iterations = MAX(iterations, ?7), usage_json = ?8, outcome = ?9
             WHERE run_id = ?1 AND phase_id = ?2 AND n = ?3",
            params![
                run,
                phase,
                n,
                state,
                head,
                candidate,
                max_iter,
                serde_json::to_string(&total)?,
                outcome
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records an audited attempt's metric value and the number of paths it changes.
    pub fn set_attempt_metric(
        &self,
        run: &str,
        phase: &str,
        n: u32,
        metric: Option<f64>,
        diff_lines: i64,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE attempts SET metric = ?4, diff_lines = ?5
                 WHERE run_id = ?1 AND phase_id = ?2 AND n = ?3",
                params![run, phase, n, metric, diff_lines],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The attempts of `run`, by phase in the plan's order, then by number.
    pub fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.phase_id, n, agent, worktree, ref_name, a.state, head, candidate, rounds,
                        iterations, usage_json, outcome, metric, diff_lines, a.base
                 FROM attempts a JOIN phases p ON p.run_id = a.run_id AND p.phase_id = a.phase_id
                 WHERE a.run_id = ?1 ORDER BY p.position, n",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                let usage: String = r.get(10)?;
                Ok(AttemptRow {
                    phase_id: r.get(0)?,
                    n: r.get(1)?,
                    agent: r.get(2)?,
                    worktree: r.get(3)?,
                    ref_name: r.get(4)?,
                    state: r.get(5)?,
                    head: r.get(6)?,
                    candidate: r.get(7)?,
                    rounds: r.get(8)?,
                    iterations: r.get(9)?,
                    usage: serde_json::from_str(&usage).unwrap_or_default(),
                    outcome: r.get(11)?,
                    metric: r.get(12)?,
                    diff_lines: r.get(13)?,
                    base: r.get(14)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Records an audit of attempt `attempt` (`None`: a whole-goal audit) with the
    /// commands it ran.
    pub fn record_audit(
        &self,
        run: &str,
        attempt: Option<u32>,
        report: &AuditReport,
        report_dir: &Path,
        commands: &[CommandRecord],
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO audits (run_id, phase_id, attempt, base, candidate, tree, recommendation,
                summary, report_dir, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                run,
                report.phase,
                attempt,
                report.base,
                report.candidate,
                report.tree,
                report.recommendation.as_str(),
                report.summary,
                report_dir.display().to_string(),
                serde_json::to_string(report)?
            ],
        )
        .map_err(|e| self.err(e))?;
        for c in commands {
            insert_command(&tx, run, Some(&report.phase), attempt, "auditor", c)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The audits of `run`, in the order they were recorded.
    pub fn audits(&self, run: &str) -> Result<Vec<AuditRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT phase_id, attempt, base, candidate, tree, recommendation, summary, report_dir,
                        json_extract(report, '$.agent.usage')
                 FROM audits WHERE run_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run], |r| {
                Ok(AuditRow {
                    phase_id: r.get(0)?,
                    attempt: r.get(1)?,
                    base: r.get(2)?,
                    candidate: r.get(3)?,
                    tree: r.get(4)?,
                    recommendation: recommendation(r, 5)?,
                    summary: r.get(6)?,
                    report_dir: r.get(7)?,
                    // Only the usage is read out of the report: views load on every tick.
                    agent_usage: r
                        .get::<_, Option<String>>(8)?
                        .and_then(|json| serde_json::from_str::<Usage>(&json).ok()),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Records a move of `target` (the integration ref or the release branch) from
    /// `old_tip` to `new_tip`, and the commit whose audit allowed it.
    pub fn record_merge(
        &self,
        run: &str,
        phase: Option<&str>,
        target: &str,
        old_tip: &str,
        new_tip: &str,
        audited: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO merges (run_id, phase_id, target, old_tip, new_tip, audited)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run, phase, target, old_tip, new_tip, audited],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Deletes every record of a run.
    pub fn delete_run(&self, run: &str) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for table in [
            "events",
            "iterations",
            "commands",
            "audits",
            "merges",
            "attempts",
            "phases",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE run_id = ?1"),
                params![run],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.execute("DELETE FROM runs WHERE id = ?1", params![run])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }
}

fn insert_command(
    conn: &Connection,
    run: &str,
    phase: Option<&str>,
    attempt: Option<u32>,
    source: &str,
    c: &CommandRecord,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO commands (run_id, phase_id, attempt, source, argv, cwd, exit_code, signal,
            duration_ms, stdout, stderr, tree, timed_out)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            run,
            phase,
            attempt,
            source,
            serde_json::to_string(&c.argv).unwrap_or_default(),
            c.cwd.display().to_string(),
            c.exit_code,
            c.signal,
            c.duration_ms as i64,
            c.stdout,
            c.stderr,
            c.tree,
            c.timed_out
        ],
    )?;
    Ok(())
}

/// The verification cache: passing checks an auditor ran, by their key
/// (`goalpost_shared::cache`), for later audits of the same tree to reuse. Shared by every
/// run on the repository.
impl Store {
    /// Records that the check with `key` passed on `tree`; `source` is the report
    /// directory of the audit that ran it. A key recorded before keeps its first evidence.
    pub fn record_cached_check(
        &self,
        key: &str,
        tree: &str,
        result: &CheckResult,
        source: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO check_cache (key, tree, command, result, source, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key,
                    tree,
                    result.command,
                    serde_json::to_string(result)?,
                    source,
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every cached check recorded for `tree`, oldest first. The auditor picks the ones
    /// whose key matches its own: the tree is only the first part of the key.
    pub fn cached_checks(&self, tree: &str) -> Result<Vec<CachedCheck>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, result, source FROM check_cache WHERE tree = ?1
                 ORDER BY created_at, key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![tree], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, result, source) = row.map_err(|e| self.err(e))?;
            // A row this version cannot read is no evidence: the check runs again.
            if let Ok(result) = serde_json::from_str(&result) {
                out.push(CachedCheck {
                    key,
                    result,
                    source,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
