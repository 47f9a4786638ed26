//! The goal-file parser never panics, whatever the text: it returns a plan or diagnostics,
//! and every diagnostic points inside the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use goalpost_shared::goal;
use proptest::prelude::*;

const PHASED: &str = include_str!("../../../fixtures/plans/phased-plan.md");
const SINGLE: &str = include_str!("../../../fixtures/plans/single-goal.md");

fn check(text: &str) {
    if let Err(d) = goal::parse(Path::new("g.md"), text) {
        let lines = u32::try_from(text.lines().count()).unwrap() + 1;
        assert!(
            !d.0.is_empty(),
            "an error result names at least one problem"
        );
        for diag in &d.0 {
            assert!(
                diag.line >= 1 && diag.line <= lines,
                "{diag} outside the file"
            );
            assert!(diag.col >= 1, "{diag} has no column");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text(text in "\\PC*") {
        check(&text);
    }

    #[test]
    fn goal_file_shaped_text(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("+++".to_string()),
                Just("## Phases".to_string()),
                Just("## Outcome".to_string()),
                Just("## Verification".to_string()),
                Just("#### Verification".to_string()),
                Just("- `cargo test` reports `x` below 3".to_string()),
                Just("Attempts: 3 (a, b)".to_string()),
                Just("Depends on: a, b, ç".to_string()),
                "### [a-cé]{0,3}: [a-z ]{0,8}",
                "[A-Za-z]{1,12}: [ -~é]{0,20}",
                "[ -~é`#*+-]{0,30}",
            ],
            0..40,
        )
    ) {
        check(&lines.join("\n"));
    }

    #[test]
    fn examples_cut_anywhere(cut in 0usize..4000, which in 0usize..2) {
        let text = if which == 0 { PHASED } else { SINGLE };
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        check(&text[..cut]);
    }
}
