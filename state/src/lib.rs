//! goalpost's durable run state: the SQLite store in the repository's common git dir
//! ([`Store`]), the persisted states of runs, phases and attempts ([`RunState`],
//! [`PhaseStatus`], [`AttemptStatus`]), the schema's versions and migrations
//! ([`SCHEMA_VERSION`]), the view of one run that `status` and `report` print
//! ([`RunView`]) and the run's event log ([`Event`], [`Store::append_event`],
//! [`Store::events_since`]). The orchestrator is the store's only writer.
//!
//! ```
//! use goalpost_state::{PhaseStatus, RunState, RunView, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("state.sqlite"))?;
//! store.insert_run("r1", "goal.md", "{}", "/repo", "main", "abc", "refs/goalpost/r1/integration")?;
//! store.insert_phase("r1", "api", 0)?;
//! store.set_run_state("r1", RunState::Paused, Some("paused after the running turns"))?;
//!
//! let view = RunView::load(&store, None)?.expect("the run was recorded");
//! assert_eq!(view.run.state, RunState::Paused);
//! assert_eq!(view.phases[0].state, PhaseStatus::Pending);
//! let json = serde_json::to_value(&view)?;
//! assert_eq!(json["run"]["state"], "paused");
//! assert_eq!(json["phases"][0]["state"], "pending");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The JSON of a run view
//!
//! `goalpost status --json` and `goalpost report --format json` print a [`RunView`]; a web
//! dashboard and `--progress json` read the same shape. Commit and tree ids are full hex
//! ids, times are Unix seconds, and a field whose value is unknown is `null`.
//!
//! `run`, an object:
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `id` | string | the run's id, e.g. `20260101-120000` |
//! | `plan_path` | string | the goal file the run follows, as given to `goalpost run` |
//! | `workdir` | string | the repository's working tree |
//! | `release_branch` | string | the branch the run releases to |
//! | `release_start` | string | the commit the release branch was at when the run started |
//! | `integration_ref` | string | the ref the phases land on, `refs/goalpost/<run>/integration` |
//! | `state` | string | one of `active`, `paused`, `complete`, `blocked`, `budget_limited`, `awaiting_approval`, `cleared` ([`RunState`]) |
//! | `blocker` | string or null | why the run stopped short of complete |
//! | `release_commit` | string or null | the commit the release branch was moved to |
//! | `created_at` | integer | when the run started |
//! | `updated_at` | integer | when the run's record last changed |
//!
//! `phases`, an array in the plan's order, of objects:
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `phase_id` | string | the phase's id in the goal file |
//! | `state` | string | one of `pending`, `running`, `merged`, `blocked`, `budget_limited` ([`PhaseStatus`]) |
//! | `base` | string or null | the integration tip the phase started on |
//! | `merged_commit` | string or null | its squash commit on the integration ref |
//! | `winner` | integer or null | the number of the attempt that landed |
//! | `why` | string or null | why the winner won, or why the phase stopped or never started |
//!
//! `attempts`, an array by phase (in the plan's order) then attempt number, of objects:
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `phase_id` | string | the attempt's phase |
//! | `n` | integer | the attempt's number in its phase, from 1 |
//! | `base` | string or null | the commit its last round started from (it moves on a conflict) |
//! | `agent` | string | the implementer's agent name |
//! | `worktree` | string | the attempt's worktree |
//! | `ref_name` | string | the ref its work is harvested on, `refs/goalpost/<run>/<phase>/<n>` |
//! | `state` | string | one of `running`, `auditing`, `passed`, `gating`, `merged`, `lost`, `blocked`, `budget_limited`, `interrupted` ([`AttemptStatus`]) |
//! | `head` | string or null | the last commit harvested on its ref |
//! | `candidate` | string or null | the commit its last round proposed |
//! | `rounds` | integer | worker rounds it had |
//! | `iterations` | integer | the last iteration it reached |
//! | `usage` | object | what its agents used: `tokens_in`, `tokens_out`, `tokens_cached`, `turns`, `tool_calls`, `wall_ms` (integers) and `cost_usd` (number) |
//! | `outcome` | string or null | how its last round ended, in words (`candidate`, `blocked: ...`, ...) |
//! | `metric` | number or null | its value of the phase's `Select: best` metric, from its audit |
//! | `diff_lines` | integer or null | how many paths its audited candidate changes |
//!
//! `audits`, an array in the order they were recorded, of objects:
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `phase_id` | string | the audited phase, or `goal` for the whole-goal audit |
//! | `attempt` | integer or null | the audited attempt; `null` for a whole-goal audit |
//! | `base` | string | the commit the candidate is compared with |
//! | `candidate` | string | the audited commit |
//! | `tree` | string | the candidate's tree, the exact content that passed or failed |
//! | `recommendation` | string | `merge`, `revise` or `abandon` |
//! | `summary` | string | the audit's one-line summary |
//! | `report_dir` | string | the directory holding `audit.json` and `audit.md` |
//! | `agent_usage` | object or null | what its auditor agent spent (the usage fields of an attempt); `null` when none ran |
//!
//! `live`, an array of objects, one per attempt whose worker round is running now, folded
//! from the event log (see [`LiveAttempt`]):
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `phase_id` | string | the attempt's phase |
//! | `n` | integer | the attempt's number |
//! | `iteration` | integer | the iteration it is in |
//! | `role` | string | `implementer` or `reviewer`: whose turn is running, or ran last |
//! | `turn_running` | boolean | whether that turn is still running |
//! | `usage` | object | what the attempt has used over its whole life up to its last finished turn, as in `attempts` |
//! | `checks` | array or null | its last machine checks in its worktree: `[passed, failed]` |
//!
//! # The JSON of an event
//!
//! An [`EventRecord`] is an object with `seq` (integer, from 1 within its run), `at_ms`
//! (integer, milliseconds since the Unix epoch), `kind` (the [`Event`] variant in
//! snake_case: `run_started`, `run_ended`, `phase_started`, `phase_state_changed`,
//! `attempt_round_started`, `turn_started`, `turn_finished`, `checks_finished`,
//! `iteration_finished`, `check_finished`, `candidate_proposed`, `audit_started`,
//! `audit_finished`, `attempt_stopped`, `conflict`, `reviewer_choosing`, `winner_chosen`,
//! `phase_merged`, `train_landed`, `release_moved`, `paused`) and the variant's fields, as
//! [`Event`] documents them.

mod events;
mod schema;
mod states;
mod store;
mod view;

pub use events::{AuditKind, Event, EventRecord, TrainCar};
pub use schema::SCHEMA_VERSION;
pub use states::{AttemptStatus, PhaseStatus, RunState, UnknownName};
pub use store::{AttemptRow, AuditRow, PhaseRow, Result, RunRow, Store, StoreError, now};
pub use view::{LiveAttempt, RunView};
