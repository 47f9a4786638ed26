//! What people read of a run, as snapshots: `status`, `report` and the stop report of a
//! two-phase run in which one phase merges and the other is stopped by its audit. Run ids,
//! commit ids, temp paths and durations are filtered; everything else is as printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use goalpost_fixtures::repo::CALC_SUB;
use goalpost_tests::{TestEnv, calc_env, quoted};

/// The calc project and a plan of two phases, one after the other: `sub` adds
/// subtraction; `mul`'s agent also rewrites `calc.sh`, outside the allowed paths, every time.
fn setup() -> TestEnv {
    let env = calc_env();
    let sub = env.write("sub.sh", CALC_SUB);
    let script = r##"
case "$GOALPOST_PHASE" in
  sub) cp "$SUB" ops/sub.sh ;;
  *) printf 'mul() { echo $(($1 * $2)); }\n' > ops/mul.sh
     echo "# rewritten $GOALPOST_ITERATION" >> calc.sh ;;
esac
echo 'USAGE: tokens_in=100 tokens_out=10'
"##;
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nenv = {{ SUB = {} }}\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts and multiplies\n\n## Outcome\nBoth operations work.\n\n## Verification surface\n- `sh calc.sh sub 5 3 | grep -qx 2`\n\n## Boundaries\n- Allowed paths: ops/\n\n## Phases\n\n### sub: Subtraction\nVerification: `sh calc.sh sub 5 3 | grep -qx 2`\n\n### mul: Multiplication\nDepends on: sub\nVerification: `sh calc.sh mul 2 3 | grep -qx 6`\n",
            quoted(script),
            quoted(sub.to_str().unwrap()),
        ),
    );
    env
}

/// Runs `f` with the filters that take what differs between runs out of the text.
fn filtered(env: &TestEnv, f: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&env.dir().display().to_string()), "[dir]");
    settings.add_filter(r"\b\d{8}-\d{6}(-\d+)?\b", "[run]");
    settings.add_filter(r"\b[0-9a-f]{10,40}\b", "[commit]");
    settings.add_filter(r" +\d+\.\ds\b", " [secs]");
    settings.bind(f);
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[test]
fn status_report_and_stop_report_of_a_run_with_a_merged_and_a_blocked_phase() {
    let env = setup();
    let run = env.goalpost(["-C", "calc", "run", "goal.md"]);
    run.assert_code(3);
    let status = env.goalpost(["-C", "calc", "status"]);
    status.assert_code(0);
    let report = env.goalpost(["-C", "calc", "report"]);
    report.assert_code(0);
    let stop_path = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .expect("the run names its stop report");
    let stop = std::fs::read_to_string(stop_path).unwrap();
    // The stop report is what `report` prints, written when the run stopped.
    assert_eq!(stop, report.stdout);
    filtered(&env, || {
        insta::assert_snapshot!("status", status.stdout);
        insta::assert_snapshot!("report", report.stdout);
        insta::assert_snapshot!("run_output", run.stdout);
    });
}

#[test]
fn a_budget_stop_after_the_same_audit_finding_each_round_names_the_budget_the_finding_and_the_path()
{
    let env = calc_env();
    let sub = env.write("sub.sh", CALC_SUB);
    // Right about `sub`, but it also rewrites `calc.sh`, outside the allowed paths, every
    // round; the reviewer approves each time.
    let implementer =
        r##"cp "$SUB" ops/sub.sh; echo "# rewritten $GOALPOST_ITERATION" >> calc.sh"##;
    let reviewer = "echo 'Fine.'; echo 'VERDICT: approve'";
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[budget]\nturns = 4\n\n[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nenv = {{ SUB = {} }}\n\n[agents.critic]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\n\n[roles]\nimplementer = \"coder\"\nreviewer = \"critic\"\n+++\n\n# Goal: calc subtracts\n\n## Outcome\n`sh calc.sh sub 5 3` prints 2.\n\n## Verification surface\n- `sh calc.sh sub 5 3 | grep -qx 2`\n\n## Boundaries\n- Allowed paths: ops/\n",
            quoted(implementer),
            quoted(sub.to_str().unwrap()),
            quoted(reviewer),
        ),
    );
    let run = env.goalpost(["-C", "calc", "run", "goal.md"]);
    run.assert_code(4);
    let status = env.goalpost(["-C", "calc", "status"]);
    status.assert_code(0);
    assert!(
        status.stdout.contains("budget turns reached: used 4 of 4"),
        "{status}"
    );
    assert!(!status.stdout.contains("used 0 of 0"), "{status}");
    // The stop report the run wrote names the budget, what it used of it, and the path
    // the audit refused each round.
    let stop_path = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .expect("the run names its stop report");
    let stop = std::fs::read_to_string(stop_path).unwrap();
    for needle in ["turns", "4 of 4", "`calc.sh`", "2 times in a row"] {
        assert!(
            stop.contains(needle),
            "{needle:?} not in the stop report:\n{stop}"
        );
    }
    filtered(&env, || {
        insta::assert_snapshot!("repeated_finding_status", status.stdout);
        insta::assert_snapshot!("repeated_finding_stop_report", stop);
    });
}
