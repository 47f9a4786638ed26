//! `goalpost status` and `goalpost report`: the text and Markdown of what a run did, from
//! its [`RunView`].

use std::fmt::Write as _;

use goalpost_state::RunView;

/// The short view: one line per phase, one per attempt.
pub fn status_text(view: &RunView) -> String {
    let mut out = String::new();
    let r = &view.run;
    let _ = writeln!(out, "run {}  {}", r.id, r.state);
    let _ = writeln!(
        out,
        "release {} (started at {})",
        r.release_branch,
        short(&r.release_start)
    );
    if let Some(c) = &r.release_commit {
        let _ = writeln!(out, "release moved to {}", short(c));
    }
    if let Some(b) = &r.blocker {
        let _ = writeln!(out, "stopped: {b}");
    }
    let _ = writeln!(out);
    for p in &view.phases {
        let merged = p
            .merged_commit
            .as_deref()
            .map(|c| format!(" at {}", short(c)))
            .unwrap_or_default();
        let _ = writeln!(out, "{:<20} {}{}", p.phase_id, p.state, merged);
        if let Some(why) = &p.why {
            let _ = writeln!(out, "{:<20}   {}", "", why);
        }
    }
    let _ = writeln!(out);
    out.push_str(&attempt_table(view));
    if let Some(line) = audit_agent_line(view) {
        let _ = writeln!(out, "{line}");
    }
    if !view.live.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "at work now:");
        for l in &view.live {
            let turn = if l.turn_running { "running" } else { "done" };
            let checks = l
                .checks
                .map(|(p, f)| format!("; checks: {p} passed, {f} failed"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} #{}  iteration {}, {} turn {turn}; used {} tokens, ${:.4}, {} turns{checks}",
                l.phase_id,
                l.n,
                l.iteration,
                l.role.as_str(),
                l.usage.tokens_in + l.usage.tokens_out,
                l.usage.cost_usd,
                l.usage.turns,
            );
        }
    }
    out
}

/// What the run's auditor agents spent, when one ran.
fn audit_agent_line(view: &RunView) -> Option<String> {
    let ran = view
        .audits
        .iter()
        .filter(|a| a.agent_usage.is_some())
        .count();
    if ran == 0 {
        return None;
    }
    let u = view.audit_usage();
    Some(format!(
        "auditor agent: {ran} audit{}, {} tokens, ${:.4}",
        if ran == 1 { "" } else { "s" },
        u.tokens_in + u.tokens_out,
        u.cost_usd
    ))
}

/// The side-by-side attempt table.
pub fn attempt_table(view: &RunView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>3} {:<12} {:<10} {:<8} {:>9} {:>5} {:>9} {:>9} {:>8}  winner",
        "phase", "#", "agent", "state", "audit", "metric", "iter", "tokens", "cost", "time",
    );
    for a in &view.attempts {
        let audit = view
            .audits
            .iter()
            .rev()
            .find(|x| x.phase_id == a.phase_id && x.attempt == Some(a.n))
            .map(|x| x.recommendation.as_str())
            .unwrap_or("-");
        let winner = view
            .phases
            .iter()
            .find(|p| p.phase_id == a.phase_id && p.winner == Some(a.n))
            .map(|p| format!("yes: {}", p.why.as_deref().unwrap_or("")))
            .unwrap_or_default();
        let metric = a
            .metric
            .map(|m| format!("{m}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<16} {:>3} {:<12} {:<10} {:<8} {:>9} {:>5} {:>9} {:>9} {:>7.1}s  {}",
            a.phase_id,
            a.n,
            a.agent,
            a.state,
            audit,
            metric,
            a.iterations,
            a.usage.tokens_in + a.usage.tokens_out,
            format!("${:.4}", a.usage.cost_usd),
            a.usage.wall_ms as f64 / 1000.0,
            winner
        );
    }
    out
}

/// The full report in Markdown.
pub fn markdown(view: &RunView) -> String {
    let r = &view.run;
    let mut out = String::new();
    let _ = writeln!(out, "# goalpost run {}\n", r.id);
    let _ = writeln!(out, "- plan: `{}`", r.plan_path);
    let _ = writeln!(out, "- state: **{}**", r.state);
    let _ = writeln!(
        out,
        "- release branch: `{}` started at `{}`",
        r.release_branch,
        short(&r.release_start)
    );
    if let Some(c) = &r.release_commit {
        let _ = writeln!(out, "- release moved to `{}`", short(c));
    }
    if let Some(b) = &r.blocker {
        let _ = writeln!(out, "- stopped because: {b}");
    }
    let _ = writeln!(out, "\n## Phases\n");
    let _ = writeln!(
        out,
        "| phase | state | merged | why |\n| --- | --- | --- | --- |"
    );
    for p in &view.phases {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            p.phase_id,
            p.state,
            p.merged_commit.as_deref().map(short).unwrap_or("-"),
            p.why
                .as_deref()
                .unwrap_or("")
                .replace('|', "\\|")
                .replace('\n', " ")
        );
    }
    let _ = writeln!(out, "\n## Attempts\n\n```text\n{}```", attempt_table(view));
    if let Some(line) = audit_agent_line(view) {
        let _ = writeln!(out, "\n{line}");
    }
    let _ = writeln!(out, "\n## Audits\n");
    for a in &view.audits {
        let _ = writeln!(
            out,
            "- {} attempt {}: **{}** — {} (`{}`..`{}`), report: `{}/audit.md`",
            a.phase_id,
            a.attempt
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            a.recommendation.as_str(),
            a.summary,
            short(&a.base),
            short(&a.candidate),
            a.report_dir
        );
    }
    out
}

pub fn short(oid: &str) -> &str {
    &oid[..oid.len().min(10)]
}
