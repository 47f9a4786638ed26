//! The dashboard's HTML, rendered on the server from what the state store holds: the
//! list of runs, a run (its DAG, budgets, phases and attempts, audits, stop report and
//! the buttons a user has), an attempt (its diff and its audits) and an audit's evidence.

use std::fmt::Write as _;

use goalpost_shared::plan::{Approval, Budget, Plan};
use goalpost_shared::protocol::{AuditReport, Usage};
use goalpost_state::{AuditRow, RunRow, RunState, RunView};

use super::dag;

/// `text` with the characters HTML gives a meaning escaped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#223;color:#eee;padding:8px 16px}header a{color:#9cf}
main{padding:8px 16px}h2{margin:18px 0 6px;font-size:17px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef}pre{background:#fff;border:1px solid #ddd;padding:6px;overflow:auto;max-height:420px}
.side{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.bar{display:inline-block;width:220px;height:12px;background:#ddd;border-radius:3px;vertical-align:middle}
.bar span{display:block;height:100%;background:#48a;border-radius:3px}.bar.over span{background:#c33}
#dag rect{fill:#ddd;stroke:#888}#dag .merged rect{fill:#9d9}#dag .running rect,#dag .auditing rect,#dag .merging rect{fill:#fd7}
#dag .blocked rect,#dag .abandoned rect,#dag .budget_limited rect{fill:#e88}#dag .ready rect{fill:#bdf}
#dag text.id{font-weight:bold}#dag text.state{font-size:11px}
.s-merged{color:#070}.s-running,.s-auditing{color:#a60}.s-failed,.s-blocked,.s-abandoned{color:#b00}
.pass{color:#070}.fail{color:#b00}form{display:inline}button{margin-right:6px}
.diff .add{color:#070}.diff .del{color:#b00}.diff .hunk{color:#66a}
";

/// A whole page: `body` under a header that links back to the runs.
pub fn page(title: &str, token: &str, body: &str, script: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · goalpost</title>\
         <style>{STYLE}</style></head><body><header><a href=\"/?token={token}\">goalpost</a> \
         · {t}</header><main>{body}</main>{script}</body></html>",
        t = esc(title),
    )
}

/// The runs of the repository, the most recent first.
pub fn runs(workdir: &str, runs: &[RunRow], token: &str) -> String {
    let mut b = format!("<h2>Runs of {}</h2>", esc(workdir));
    if runs.is_empty() {
        b.push_str("<p>No runs yet: start one with <code>goalpost run GOAL.md</code>.</p>");
    } else {
        b.push_str(
            "<table id=\"runs\"><tr><th>run</th><th>state</th><th>plan</th><th>release</th>\
             <th>blocker</th></tr>",
        );
        for r in runs {
            let _ = write!(
                b,
                "<tr><td><a href=\"/runs/{id}?token={token}\">{id}</a></td>\
                 <td class=\"s-{st}\">{st}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.plan_path),
                esc(&r.release_branch),
                esc(r.blocker.as_deref().unwrap_or("")),
                id = esc(&r.id),
                st = r.state,
            );
        }
        b.push_str("</table>");
    }
    page("runs", token, &b, "")
}

/// What a run's page shows.
#[derive(Debug)]
pub struct RunPage<'a> {
    pub view: &'a RunView,
    pub plan: &'a Plan,
    pub stop_report: Option<&'a str>,
    pub token: &'a str,
    pub csrf: &'a str,
    /// The last event of the log the page was rendered from.
    pub seq: u64,
}

/// The live part of a run's page: what the page fetches again when the event log grows.
pub fn run_live(p: &RunPage<'_>) -> String {
    let v = p.view;
    let id = esc(&v.run.id);
    let token = p.token;
    let mut b = format!(
        "<div id=\"summary\" data-seq=\"{}\"><b>{id}</b> · state <b class=\"s-{st}\" id=\"run-state\">{st}</b> \
         · release <code>{}</code>{}</div>",
        p.seq,
        esc(&v.run.release_branch),
        v.run
            .blocker
            .as_deref()
            .map(|w| format!(" · <span class=\"fail\">{}</span>", esc(w)))
            .unwrap_or_default(),
        st = v.run.state,
    );
    b.push_str(&actions(p));
    b.push_str("<h2>Phase DAG</h2>");
    b.push_str(&dag::svg(p.plan, &v.phases));
    b.push_str("<h2>Budgets</h2>");
    b.push_str(&budgets(p));
    b.push_str("<div class=\"side\"><div><h2>Phases</h2><table id=\"phases\"><tr><th>phase</th><th>state</th><th>winner</th><th>why</th></tr>");
    for ph in &v.phases {
        let _ = write!(
            b,
            "<tr id=\"phase-{pid}\"><td>{pid}</td><td class=\"s-{st}\">{st}</td><td>{}</td><td>{}</td></tr>",
            ph.winner.map(|n| format!("#{n}")).unwrap_or_default(),
            esc(ph.why.as_deref().unwrap_or("")),
            pid = esc(&ph.phase_id),
            st = ph.state,
        );
    }
    b.push_str("</table></div><div><h2>Attempts</h2><table id=\"attempts\"><tr><th>attempt</th><th>agent</th><th>state</th><th>iterations</th><th>tokens</th><th>cost</th><th>time</th><th>metric</th><th>now</th></tr>");
    for a in &v.attempts {
        let live = v
            .live
            .iter()
            .find(|l| l.phase_id == a.phase_id && l.n == a.n);
        let usage = live.map_or(&a.usage, |l| &l.usage);
        let iterations = live.map_or(a.iterations, |l| l.iteration.max(a.iterations));
        let now = live
            .map(|l| {
                format!(
                    "iteration {}, {} {}{}",
                    l.iteration,
                    l.role.as_str(),
                    if l.turn_running {
                        "turn running"
                    } else {
                        "turn done"
                    },
                    l.checks
                        .map(|(ok, bad)| format!("; checks {ok} passed, {bad} failed"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr class=\"attempt\" data-attempt=\"{ph}/{n}\" data-state=\"{st}\"><td>\
             <a href=\"/runs/{id}/attempts/{ph}/{n}?token={token}\">{ph} #{n}</a></td><td>{}</td>\
             <td class=\"s-{st}\">{st}</td><td>{iterations}</td><td>{}</td><td>${:.4}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.agent),
            usage.tokens_in + usage.tokens_out,
            usage.cost_usd,
            secs(usage.wall_ms),
            a.metric.map(|m| m.to_string()).unwrap_or_default(),
            esc(&now),
            ph = esc(&a.phase_id),
            n = a.n,
            st = a.state,
        );
    }
    b.push_str("</table></div></div><h2>Audits</h2>");
    b.push_str(&audit_list(&v.run.id, &v.audits, token));
    if let Some(report) = p.stop_report {
        let _ = write!(
            b,
            "<h2>Stop report</h2><pre id=\"stop-report\">{}</pre>",
            esc(report)
        );
    }
    b
}

/// A run's whole page, with the few lines of script that follow its event log.
pub fn run(p: &RunPage<'_>) -> String {
    let id = &p.view.run.id;
    let token = p.token;
    let script = format!(
        "<script>
const live = document.getElementById('live');
let since = {seq}, busy = false, again = false;
async function refresh() {{
  if (busy) {{ again = true; return; }}
  busy = true;
  try {{
    const r = await fetch('/runs/{id}/live?token={token}');
    if (r.ok) live.innerHTML = await r.text();
  }} finally {{ busy = false; if (again) {{ again = false; refresh(); }} }}
}}
const events = new EventSource('/runs/{id}/events?token={token}&since=' + since);
events.onmessage = () => refresh();
</script>",
        seq = p.seq,
        id = esc(id),
    );
    page(
        &format!("run {id}"),
        token,
        &format!("<div id=\"live\">{}</div>", run_live(p)),
        &script,
    )
}

/// The buttons of a run: approve while it waits for a person, pause while it runs,
/// resume while it is stopped short.
fn actions(p: &RunPage<'_>) -> String {
    let v = p.view;
    let form = |what: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/runs/{}/{what}?token={}\" class=\"{what}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button id=\"{what}\">{label}</button></form>",
            esc(&v.run.id),
            p.token,
            p.csrf
        )
    };
    let mut b = String::from("<p id=\"actions\">");
    match v.run.state {
        RunState::AwaitingApproval => {
            if p.plan.settings.approval.value == Approval::Human {
                b.push_str(&form("approve", "Approve: move the release branch"));
            }
        }
        RunState::Active => b.push_str(&form("pause", "Pause")),
        RunState::Paused | RunState::Blocked | RunState::BudgetLimited => {
            b.push_str(&form("resume", "Resume"))
        }
        RunState::Complete | RunState::Cleared => {}
    }
    b.push_str("</p>");
    b
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// One bar: `used` against `limit`.
fn bar(name: &str, used: f64, limit: f64, shown: String) -> String {
    let pct = if limit > 0.0 {
        (used / limit * 100.0).min(100.0)
    } else {
        100.0
    };
    format!(
        "<tr class=\"budget\" data-budget=\"{name}\"><td>{name}</td><td><span class=\"bar{}\">\
         <span style=\"width:{pct:.0}%\"></span></span></td><td>{shown}</td></tr>",
        if used >= limit { " over" } else { "" },
    )
}

fn bars(scope: &str, budget: &Budget, used: &Usage, out: &mut String) {
    let mut rows = String::new();
    if let Some(t) = &budget.turns {
        let u = f64::from(used.turns);
        rows.push_str(&bar(
            "turns",
            u,
            f64::from(t.value),
            format!("{} / {}", used.turns, t.value),
        ));
    }
    if let Some(t) = &budget.tokens {
        let u = used.tokens_in + used.tokens_out;
        rows.push_str(&bar(
            "tokens",
            u as f64,
            t.value as f64,
            format!("{u} / {}", t.value),
        ));
    }
    if let Some(c) = &budget.cost_usd {
        rows.push_str(&bar(
            "cost",
            used.cost_usd,
            c.value,
            format!("${:.4} / ${:.2}", used.cost_usd, c.value),
        ));
    }
    if let Some(w) = &budget.wall {
        let limit = w.value.duration.as_secs_f64();
        rows.push_str(&bar(
            "time",
            used.wall_ms as f64 / 1000.0,
            limit,
            format!("{} / {}", secs(used.wall_ms), esc(&w.value.text)),
        ));
    }
    if !rows.is_empty() {
        let _ = write!(out, "<tr><th colspan=\"3\">{scope}</th></tr>{rows}");
    }
}

/// The run's budget against what its attempts used, and each attempt's against its own.
fn budgets(p: &RunPage<'_>) -> String {
    let v = p.view;
    let settings = &p.plan.settings;
    let mut total = Usage::default();
    let mut rows = String::new();
    for a in &v.attempts {
        let live = v
            .live
            .iter()
            .find(|l| l.phase_id == a.phase_id && l.n == a.n);
        let used = live.map_or(&a.usage, |l| &l.usage);
        total.add(used);
        bars(
            &format!("{} #{}", esc(&a.phase_id), a.n),
            &settings.budget,
            used,
            &mut rows,
        );
    }
    let mut out = String::new();
    bars("run", &settings.run_budget, &total, &mut out);
    out.push_str(&rows);
    if out.is_empty() {
        return format!(
            "<p id=\"budgets\">No limits set; used {} tokens, ${:.4}, {} turns.</p>",
            total.tokens_in + total.tokens_out,
            total.cost_usd,
            total.turns
        );
    }
    format!("<table id=\"budgets\">{out}</table>")
}

fn audit_list(run: &str, audits: &[AuditRow], token: &str) -> String {
    if audits.is_empty() {
        return "<p>No audits yet.</p>".into();
    }
    let mut b = String::from(
        "<table id=\"audits\"><tr><th>audit</th><th>of</th><th>recommendation</th><th>summary</th></tr>",
    );
    for (k, a) in audits.iter().enumerate() {
        let _ = write!(
            b,
            "<tr><td><a href=\"/runs/{}/audits/{k}?token={token}\">#{k}</a></td><td>{}</td>\
             <td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(run),
            match a.attempt {
                Some(n) => format!("{} #{n}", esc(&a.phase_id)),
                None => esc(&a.phase_id),
            },
            if a.recommendation.as_str() == "merge" {
                "pass"
            } else {
                "fail"
            },
            a.recommendation.as_str(),
            esc(&a.summary),
        );
    }
    b.push_str("</table>");
    b
}

/// An attempt's page: its diff against its base and the evidence of its audits.
pub fn attempt(
    run: &str,
    title: &str,
    diff: &str,
    audits: &[(usize, &AuditRow, Option<AuditReport>)],
    token: &str,
) -> String {
    let mut b = format!(
        "<p><a href=\"/runs/{r}?token={token}\">back to run {r}</a></p><h2>Diff</h2>\
         <pre class=\"diff\" id=\"diff\">",
        r = esc(run)
    );
    for line in diff.lines() {
        let class = if line.starts_with("+++") || line.starts_with("---") {
            ""
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else if line.starts_with("@@") {
            "hunk"
        } else {
            ""
        };
        let _ = writeln!(b, "<span class=\"{class}\">{}</span>", esc(line));
    }
    b.push_str("</pre>");
    for (k, row, report) in audits {
        let _ = write!(b, "<h2>Audit #{k}</h2>");
        b.push_str(&evidence(row, report.as_ref()));
    }
    page(title, token, &b, "")
}

/// An audit's evidence: its checks with their quoted output, violations, claims, each
/// check's canary and census.
pub fn evidence(row: &AuditRow, report: Option<&AuditReport>) -> String {
    let mut b = format!(
        "<div class=\"audit\"><p>recommendation <b class=\"{}\">{}</b>: {}</p>",
        if row.recommendation.as_str() == "merge" {
            "pass"
        } else {
            "fail"
        },
        row.recommendation.as_str(),
        esc(&row.summary)
    );
    let Some(r) = report else {
        let _ = write!(
            b,
            "<p>The report in {} cannot be read.</p></div>",
            esc(&row.report_dir)
        );
        return b;
    };
    let _ = write!(
        b,
        "<p>candidate <code>{}</code> on base <code>{}</code>, tree <code>{}</code></p>",
        esc(&r.candidate),
        esc(&r.base),
        esc(&r.tree)
    );
    b.push_str("<h3>Checks</h3>");
    for c in &r.checks {
        let _ = write!(
            b,
            "<div class=\"check {}\"><p><b class=\"{0}\">{}</b> <code>{}</code> (line {}, exit {}, {}){}</p>",
            if c.passed { "pass" } else { "fail" },
            if c.passed { "passed" } else { "failed" },
            esc(&c.command),
            c.line,
            c.record
                .exit_code
                .map(|x| x.to_string())
                .unwrap_or_else(|| "none".into()),
            secs(c.record.duration_ms),
            c.failure
                .as_deref()
                .map(|f| format!(": {}", esc(f)))
                .unwrap_or_default(),
        );
        if !c.record.stdout.is_empty() {
            let _ = write!(b, "<pre class=\"stdout\">{}</pre>", esc(&c.record.stdout));
        }
        if !c.record.stderr.is_empty() {
            let _ = write!(b, "<pre class=\"stderr\">{}</pre>", esc(&c.record.stderr));
        }
        if let Some(m) = &c.metric {
            let _ = write!(
                b,
                "<p>metric: {}</p>",
                esc(&serde_json::to_string(m).unwrap_or_default())
            );
        }
        if let Some(i) = &c.integrity {
            let _ = write!(
                b,
                "<p>canary and census:</p><pre class=\"integrity\">{}</pre>",
                esc(&serde_json::to_string_pretty(i).unwrap_or_default())
            );
        }
        b.push_str("</div>");
    }
    if !r.unverified_checks.is_empty() {
        b.push_str("<h3>Not verifiable by machine</h3><ul>");
        for c in &r.unverified_checks {
            let _ = write!(b, "<li>{}</li>", esc(c));
        }
        b.push_str("</ul>");
    }
    if !r.violations.is_empty() {
        b.push_str("<h3>Violations</h3><table class=\"violations\"><tr><th>kind</th><th>path</th><th>rule</th></tr>");
        for v in &r.violations {
            let kind = serde_json::to_value(v.kind).unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(kind.as_str().unwrap_or_default()),
                esc(&v.path),
                esc(&v.rule)
            );
        }
        b.push_str("</table>");
    }
    if !r.claims.is_empty() {
        b.push_str(
            "<h3>Claims</h3><table class=\"claims\"><tr><th>claim</th><th>status</th><th>evidence</th></tr>",
        );
        for c in &r.claims {
            let status = serde_json::to_value(c.status).unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                esc(&c.claim),
                esc(status.as_str().unwrap_or_default()),
                esc(&c.evidence)
            );
        }
        b.push_str("</table>");
    }
    if !r.changed_paths.is_empty() {
        let _ = write!(
            b,
            "<h3>Changed paths</h3><p>{}</p>",
            r.changed_paths
                .iter()
                .map(|p| format!("<code>{}</code>", esc(p)))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    b.push_str("</div>");
    b
}
