//! The shared crate's integration tests, one module per area, in one test binary so the
//! crate and its dependencies are linked into a test once, not once a file.

mod dag_props;
mod git;
mod goal_examples;
mod goal_model;
mod goal_robustness;
mod process;
