//! The example goal files in `fixtures/plans/` parse, and their model reads as expected.

use std::path::{Path, PathBuf};

use goalpost_shared::goal;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/plans")
        .join(name)
}

#[test]
fn phased_plan_parses() {
    let plan = goal::load(&fixture("phased-plan.md")).unwrap_or_else(|e| panic!("{e:?}"));
    println!("{plan:#?}");
}

#[test]
fn single_goal_parses() {
    let plan = goal::load(&fixture("single-goal.md")).unwrap_or_else(|e| panic!("{e:?}"));
    println!("{plan:#?}");
}
