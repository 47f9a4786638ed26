//! `goalpost dashboard` in headless Chromium beside real runs of scripted agents: the page
//! follows a run without a reload, shows an attempt's diff and an audit's failing output,
//! and its approve button moves the release branch; over plain HTTP, a request without
//! the token and a cross-site POST are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use goalpost_fixtures::repo::{CALC_MUL, CALC_SUB};
use goalpost_tests::browser::{Browser, output_dir};
use goalpost_tests::dashboard::{Dashboard, csrf_of};
use goalpost_tests::durable::{DEADLINE, wait_for};
use goalpost_tests::{TestEnv, calc_env, calc_file, quoted, repo_root};

use crate::approve::{main_tip, setup as awaiting_approval};

/// The calc project and a goal whose implementer, in iteration 1, adds `sub` and rewrites
/// the protected test script so it passes in its worktree (the audit runs the real one,
/// which fails on `mul`), and in iteration 2 waits for the file `release` before it adds
/// `mul` and puts the tests back.
fn held_goal() -> (TestEnv, std::path::PathBuf) {
    let env = calc_env();
    let release = env.dir().join("release-iteration-2");
    let sub = env.write("sub.sh", CALC_SUB);
    let mul = env.write("mul.sh", CALC_MUL);
    let tests = env.write("tests.sh", calc_file("tests/run.sh"));
    let script = r#"
if [ "$GOALPOST_ITERATION" = 1 ]; then
  cp "$SUB" ops/sub.sh
  printf '#!/bin/sh\nexit 0\n' > tests/run.sh
else
  n=0
  while [ ! -e "$RELEASE" ]; do
    n=$((n + 1)); [ "$n" -gt 6000 ] && exit 1
    sleep 0.02
  done
  cp "$MUL" ops/mul.sh
  cp "$TESTS" tests/run.sh
fi
echo 'USAGE: tokens_in=500 tokens_out=20'
"#;
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nenv = {{ RELEASE = {}, SUB = {}, MUL = {}, TESTS = {} }}\n\n[budget]\ntokens = 10000\nturns = 10\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts and multiplies\n\n## Outcome\nEvery test of calc passes.\n\n## Verification surface\n- `sh tests/run.sh`\n\n## Boundaries\n- Allowed paths: ops/\n- Protected paths: tests/\n",
            quoted(script),
            quoted(release.to_str().unwrap()),
            quoted(sub.to_str().unwrap()),
            quoted(mul.to_str().unwrap()),
            quoted(tests.to_str().unwrap()),
        ),
    );
    (env, release)
}

/// The JavaScript test of the state of attempt `goal #1` on a run's page.
fn attempt_state_is(state: &str) -> String {
    format!(
        "document.querySelector('tr.attempt[data-attempt=\"goal/1\"]')?.dataset.state === '{state}'"
    )
}

#[test]
fn the_dashboard_follows_a_run_live_and_shows_its_diff_and_failing_audit() {
    let (env, release) = held_goal();
    let dash = Dashboard::start(&env, "calc");
    let mut running = env.spawn_goalpost(["-C", "calc", "run", "goal.md"], &[]);
    let run_id = wait_for("the run in the store", DEADLINE, || {
        if let Some(run) = running.finished() {
            panic!("the run ended before its second iteration\n{run}");
        }
        let status = env.goalpost(["-C", "calc", "status", "--json"]);
        (status.code == 0).then(|| status.json()["run"]["id"].as_str().unwrap().to_owned())
    });
    let shots = output_dir("dashboard");
    let mut browser = Browser::start();

    // The runs of the repository link to the run.
    let index = browser.open(&dash.url);
    browser.wait_true(
        &index,
        "the run in the list",
        &format!("!!document.querySelector('#runs a[href^=\"/runs/{run_id}\"]')"),
    );

    let page = browser.open(&dash.link(&format!("/runs/{run_id}")));
    // A mark of this document: still there later means the page was never reloaded.
    browser.eval(&page, "window.loadedOnce = 'yes'");
    browser.wait_true(
        &page,
        "the attempt running in iteration 2, its turn held",
        &format!(
            "{} && document.querySelector('tr.attempt').textContent.includes('iteration 2, implementer turn running')",
            attempt_state_is("running")
        ),
    );
    // The DAG is drawn, its phase running; the budgets are bars.
    browser.wait_true(
        &page,
        "the DAG's phase running",
        "document.querySelector('#dag g.node[data-phase=\"goal\"]')?.dataset.state === 'running'",
    );
    assert_eq!(
        browser.eval(
            &page,
            "document.querySelector('tr.budget[data-budget=\"tokens\"]').textContent"
        ),
        "tokens520 / 10000"
    );
    browser.screenshot(&page, &shots.join("run-live.png"));

    // The first audit failed: its evidence quotes the real test script's output.
    let audit = browser.open(&dash.link(&format!("/runs/{run_id}/attempts/goal/1")));
    let text = browser.eval(&audit, "document.body.innerText");
    let text = text.as_str().unwrap();
    assert!(
        text.contains("FAIL mul: expected '6', got 'unknown operation: mul'"),
        "{text}"
    );
    assert!(text.contains("tests/run.sh"), "the protected path: {text}");
    assert_eq!(
        browser.eval(
            &audit,
            "document.querySelector('.check.fail pre.stdout') !== null"
        ),
        true
    );
    // The diff of the attempt's work so far against its base.
    let diff = browser.eval(&audit, "document.getElementById('diff').innerText");
    let diff = diff.as_str().unwrap();
    assert!(diff.contains("+++ b/ops/sub.sh"), "{diff}");
    assert!(diff.contains("+exit 0"), "{diff}");
    browser.screenshot(&audit, &shots.join("attempt.png"));

    // Let the held turn go: the same document turns the attempt merged.
    std::fs::write(&release, "go\n").unwrap();
    browser.wait_true(
        &page,
        "the attempt merged on the open page",
        &format!(
            "{} && document.getElementById('run-state').textContent === 'complete'",
            attempt_state_is("merged")
        ),
    );
    assert_eq!(
        browser.eval(&page, "window.loadedOnce"),
        "yes",
        "the page reloaded"
    );
    assert_eq!(
        browser.eval(
            &page,
            "document.querySelector('#dag g.node[data-phase=\"goal\"]').dataset.state"
        ),
        "merged"
    );
    browser.screenshot(&page, &shots.join("run-merged.png"));
    running.wait().assert_code(0);
    // The README's picture is this test's, taken again on request so that a test run
    // leaves the clone as it was.
    if std::env::var_os("GOALPOST_DOCS_SCREENSHOTS").is_some() {
        std::fs::create_dir_all(repo_root().join("docs")).unwrap();
        std::fs::copy(
            shots.join("run-merged.png"),
            repo_root().join("docs/dashboard.png"),
        )
        .unwrap();
    }
}

#[test]
fn the_approve_button_moves_the_release_branch_of_a_run_awaiting_approval() {
    let env = awaiting_approval();
    let start = main_tip(&env);
    env.goalpost(["-C", "calc", "run", "goal.md"])
        .assert_code(5);
    let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
    let run_id = status["run"]["id"].as_str().unwrap().to_owned();
    let tip = env
        .git_out(
            "calc",
            &[
                "rev-parse",
                status["run"]["integration_ref"].as_str().unwrap(),
            ],
        )
        .trim()
        .to_owned();
    let dash = Dashboard::start(&env, "calc");
    let mut browser = Browser::start();
    let page = browser.open(&dash.link(&format!("/runs/{run_id}")));
    assert_eq!(
        browser.eval(&page, "document.getElementById('run-state').textContent"),
        "awaiting_approval"
    );
    browser.screenshot(
        &page,
        &output_dir("dashboard").join("awaiting-approval.png"),
    );
    assert_eq!(main_tip(&env), start);

    browser.eval(&page, "document.getElementById('approve').click()");
    browser.wait_true(
        &page,
        "what `goalpost approve` said",
        "document.getElementById('said')?.textContent.includes('approved') === true",
    );
    assert_eq!(
        main_tip(&env),
        tip,
        "the release is the audited integration tip"
    );
    let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "complete");
}

#[test]
fn the_dashboard_refuses_requests_without_its_token_and_cross_site_posts() {
    let env = awaiting_approval();
    let start = main_tip(&env);
    env.goalpost(["-C", "calc", "run", "goal.md"])
        .assert_code(5);
    let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
    let run_id = status["run"]["id"].as_str().unwrap().to_owned();
    let dash = Dashboard::start(&env, "calc");
    let run_path = format!("/runs/{run_id}");

    // No token, a wrong one: 401, on pages and on the event stream alike.
    for path in ["/", run_path.as_str(), &format!("{run_path}/events")] {
        assert_eq!(dash.request("GET", path, &[], "").status, 401, "{path}");
    }
    let wrong = format!("{run_path}?token=0000");
    assert_eq!(dash.request("GET", &wrong, &[], "").status, 401);
    // With it: the page, and a cookie that stands for it afterwards.
    let page = dash.get(&run_path);
    assert_eq!(page.status, 200);
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.contains(&dash.token));
    let by_cookie = dash.request("GET", &run_path, &[("Cookie", &cookie)], "");
    assert_eq!(by_cookie.status, 200);
    // Another Host (a rebound DNS name) is refused even with the token.
    let rebound = dash.request(
        "GET",
        &dash.with_token("/"),
        &[("Host", "evil.example")],
        "",
    );
    assert_eq!(rebound.status, 403);

    let csrf = csrf_of(&page.body);
    let approve = dash.with_token(&format!("{run_path}/approve"));
    let form = format!("csrf={csrf}");
    let origin = format!("http://{}", dash.addr);
    // A page of another site posting the form: refused by Origin, by Sec-Fetch-Site.
    let cross = dash.request(
        "POST",
        &approve,
        &[("Origin", "http://evil.example")],
        &form,
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    let cross = dash.request("POST", &approve, &[("Sec-Fetch-Site", "cross-site")], &form);
    assert_eq!(cross.status, 403, "{}", cross.body);
    // Without the form's token, or with another: refused.
    let no_form = dash.request("POST", &approve, &[("Origin", &origin)], "");
    assert_eq!(no_form.status, 403);
    let wrong_form = dash.request("POST", &approve, &[("Origin", &origin)], "csrf=0000");
    assert_eq!(wrong_form.status, 403);
    // Without the URL's token, even with the form's: 401.
    let no_token = dash.request("POST", &format!("{run_path}/approve"), &[], &form);
    assert_eq!(no_token.status, 401);
    assert_eq!(main_tip(&env), start, "a refused POST moved the release");
    let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "awaiting_approval");

    // The same POST from the page itself goes through.
    let ok = dash.request(
        "POST",
        &approve,
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        &form,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_ne!(main_tip(&env), start);
}

#[test]
fn the_dashboard_listens_on_loopback_unless_told_otherwise() {
    let env = calc_env();
    env.goalpost(["-C", "calc", "dashboard", "--listen", "0.0.0.0:0"])
        .assert_code(2)
        .assert_stderr_has("not a loopback address");
    // Told, it listens there, and still asks for the token.
    let dash = Dashboard::start_with(&env, "calc", &["--listen", "0.0.0.0:0", "--allow-remote"]);
    assert!(dash.addr.starts_with("0.0.0.0:"), "{}", dash.url);
    let port = dash.addr.rsplit(':').next().unwrap();
    let loopback = Dashboard {
        addr: format!("127.0.0.1:{port}"),
        ..dash
    };
    assert_eq!(loopback.request("GET", "/", &[], "").status, 401);
    assert_eq!(loopback.get("/").status, 200);
}

#[test]
fn the_pause_and_resume_buttons_stop_a_run_and_start_it_again() {
    let (env, release) = held_goal();
    let start = env
        .git_out("calc", &["rev-parse", "main"])
        .trim()
        .to_owned();
    let dash = Dashboard::start(&env, "calc");
    let mut running = env.spawn_goalpost(["-C", "calc", "run", "goal.md"], &[]);
    let run_id = wait_for("the run in the store", DEADLINE, || {
        if let Some(run) = running.finished() {
            panic!("the run ended before its second iteration\n{run}");
        }
        let status = env.goalpost(["-C", "calc", "status", "--json"]);
        (status.code == 0).then(|| status.json()["run"]["id"].as_str().unwrap().to_owned())
    });
    let mut browser = Browser::start();
    let page = browser.open(&dash.link(&format!("/runs/{run_id}")));
    browser.wait_true(
        &page,
        "the held turn of iteration 2",
        "document.querySelector('tr.attempt')?.textContent.includes('iteration 2, implementer turn running') === true",
    );
    browser.eval(&page, "document.getElementById('pause').click()");
    browser.wait_true(
        &page,
        "what `goalpost pause` said",
        "document.getElementById('said')?.textContent.includes('asked run') === true",
    );
    // The run stops after the held turn, paused.
    std::fs::write(&release, "go\n").unwrap();
    running.wait().assert_code(5);
    let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "paused");

    let page = browser.open(&dash.link(&format!("/runs/{run_id}")));
    browser.eval(&page, "document.getElementById('resume').click()");
    browser.wait_true(
        &page,
        "what the dashboard started",
        "document.getElementById('said')?.textContent.includes('started `goalpost resume') === true",
    );
    // `goalpost resume`, on its own, takes the run to its end.
    wait_for("the resumed run to complete", DEADLINE, || {
        let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
        (status["run"]["state"] == "complete").then_some(())
    });
    assert_ne!(
        env.git_out("calc", &["rev-parse", "main"]).trim(),
        start,
        "the release did not move"
    );
}

#[test]
fn the_demos_run_shows_its_dag_of_four_phases_merged() {
    let env = TestEnv::new();
    env.goalpost(["demo", "--dir", "demo"]).assert_code(0);
    let dash = Dashboard::start(&env, "demo/calc");
    let status = env.goalpost(["-C", "demo/calc", "status", "--json"]).json();
    let run_id = status["run"]["id"].as_str().unwrap().to_owned();
    let mut browser = Browser::start();
    let page = browser.open(&dash.link(&format!("/runs/{run_id}")));
    assert_eq!(
        browser.eval(
            &page,
            "[...document.querySelectorAll('#dag g.node')].map(n => n.dataset.phase + '=' + n.dataset.state).join(' ')"
        ),
        "sub=merged mul=merged speed=merged docs=merged"
    );
    assert_eq!(
        browser.eval(&page, "document.querySelectorAll('#dag line.edge').length"),
        3
    );
    let shot = output_dir("dashboard").join("demo.png");
    browser.screenshot(&page, &shot);
    // The README's picture is this one, taken again on request so that a test run leaves
    // the clone as it was.
    if std::env::var_os("GOALPOST_DOCS_SCREENSHOTS").is_some() {
        std::fs::create_dir_all(repo_root().join("docs")).unwrap();
        std::fs::copy(&shot, repo_root().join("docs/dashboard.png")).unwrap();
    }
}
