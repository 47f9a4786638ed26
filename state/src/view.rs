//! [`RunView`]: everything the store knows of one run, read back in one value, which
//! `status`, `report` and their `--json` forms print. Its JSON shape is documented in the
//! crate's docs.

use serde::Serialize;

use crate::store::{AttemptRow, AuditRow, PhaseRow, RunRow, Store, StoreError};

/// Everything the store knows of one run.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub run: RunRow,
    /// In the plan's order.
    pub phases: Vec<PhaseRow>,
    /// By phase (in the plan's order), then by attempt number.
    pub attempts: Vec<AttemptRow>,
    /// In the order they were recorded.
    pub audits: Vec<AuditRow>,
}

impl RunView {
    /// The view of run `run`, or of the most recent run; `None` if there is no such run.
    pub fn load(store: &Store, run: Option<&str>) -> Result<Option<RunView>, StoreError> {
        let Some(run) = store.run(run)? else {
            return Ok(None);
        };
        Ok(Some(RunView {
            phases: store.phases(&run.id)?,
            attempts: store.attempts(&run.id)?,
            audits: store.audits(&run.id)?,
            run,
        }))
    }
}
