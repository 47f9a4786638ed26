//! goalpost's common vocabulary: the goal contract and plan, the phase DAG, the protocol
//! the orchestrator, worker and auditor speak, exit codes, and the two low-level doors to
//! the outside every role uses: git and child processes.

pub mod boundary;
pub mod budget;
pub mod cache;
pub mod check;
pub mod confine;
pub mod contract;
pub mod dag;
pub mod exit;
pub mod git;
pub mod goal;
pub mod integrity;
pub mod lock;
pub mod plan;
pub mod process;
pub mod protocol;
pub mod setup;
pub mod verdict;
