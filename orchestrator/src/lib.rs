//! goalpost's orchestrator: validates a plan and the repository, schedules the phase DAG,
//! starts workers and auditors as separate processes, and moves branches only through the
//! gate. The `goalpost` binary is a thin command line over this library.

pub mod approve;
pub mod attempt;
pub mod audit;
pub mod control;
pub mod crash;
pub mod dashboard;
pub mod demo;
pub mod executor;
pub mod gate;
pub mod layout;
pub mod lifecycle;
pub mod lock;
pub mod report;
pub mod reporter;
pub mod run_cmd;
pub mod schedule;
pub mod worktree;
