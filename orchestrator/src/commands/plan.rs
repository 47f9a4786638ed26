//! `goalpost plan check` and `goalpost plan graph`: validate a goal file, summarise it on
//! one screen, and show its phase graph.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use goalpost_orchestrator::run_cmd;
use goalpost_shared::contract::{Check, CheckKind, Contract, Spanned};
use goalpost_shared::dag::PhaseDag;
use goalpost_shared::exit::ExitCode;
use goalpost_shared::git::Repo;
use goalpost_shared::goal;
use goalpost_shared::plan::{AgentDef, Budget, HeldOutFeedback, Phase, Plan, Selection};
use serde_json::json;

use crate::cli::{CheckArgs, GraphArgs, GraphFormat, PlanCommand};
use crate::error::Error;

pub fn run(cmd: PlanCommand) -> Result<ExitCode, Error> {
    match cmd {
        PlanCommand::Check(args) => check(&args),
        PlanCommand::Graph(args) => graph(&args),
    }
}

fn check(args: &CheckArgs) -> Result<ExitCode, Error> {
    tracing::info!(file = %args.file.display(), "checking goal file");
    let result = goal::load(&args.file);
    if args.json {
        let value = match &result {
            Ok(plan) => json!({
                "ok": true,
                "file": args.file,
                "order": PhaseDag::new(plan).topo_order(),
                "missing_agents": missing_agents(plan, &args.file),
                "plan": plan,
            }),
            Err(d) => json!({ "ok": false, "file": args.file, "errors": d.0 }),
        };
        print(&format!("{value:#}\n"))?;
        return match result {
            Ok(_) => Ok(ExitCode::Complete),
            Err(_) => Err(Error::Reported(ExitCode::BadInput)),
        };
    }
    let plan = result.map_err(Error::InvalidPlan)?;
    print(&summary(&plan))?;
    // The goal file is valid; an agent whose CLI is not installed here is said, not failed:
    // `goalpost run` refuses to start without it.
    for missing in missing_agents(&plan, &args.file) {
        eprintln!("warning: {missing}");
    }
    Ok(ExitCode::Complete)
}

/// The plan's agents whose executable is not found, looked up like `goalpost run` does
/// from the repository holding the goal file (or its folder).
fn missing_agents(plan: &Plan, file: &Path) -> Vec<String> {
    let folder = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let workdir = Repo::discover(folder)
        .ok()
        .and_then(|r| r.workdir().map(Path::to_path_buf))
        .unwrap_or_else(|| folder.to_path_buf());
    match run_cmd::missing_agents(plan, file, &workdir) {
        Ok(missing) => missing.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn graph(args: &GraphArgs) -> Result<ExitCode, Error> {
    let plan = goal::load(&args.file).map_err(Error::InvalidPlan)?;
    let dag = PhaseDag::new(&plan);
    let out = match args.format {
        GraphFormat::Text => dag.to_text(),
        GraphFormat::Dot => dag.to_dot(),
        GraphFormat::Json => format!("{:#}\n", dag.to_json()),
    };
    print(&out)?;
    Ok(ExitCode::Complete)
}

fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The one-screen summary `plan check` prints.
pub fn summary(plan: &Plan) -> String {
    let mut o = String::new();
    let s = &plan.settings;
    let title = plan
        .title
        .as_ref()
        .map_or("(untitled goal)", |t| t.value.as_str());
    // Writing to a String cannot fail.
    let _ = writeln!(o, "{title}");
    let _ = writeln!(o, "  file          {}", plan.path.display());
    let release = s
        .release
        .as_ref()
        .map_or("(the branch checked out when the run starts)", |r| {
            r.value.as_str()
        });
    let _ = writeln!(o, "  release       {release}");
    let _ = writeln!(o, "  max_parallel  {}", s.max_parallel.value);
    let approval = match s.approval.value {
        goalpost_shared::plan::Approval::Auto => "auto",
        goalpost_shared::plan::Approval::Human => "human",
    };
    let _ = writeln!(o, "  approval      {approval}");
    let _ = writeln!(o, "  budget        {} (per attempt)", budget(&s.budget));
    let _ = writeln!(o, "  run budget    {}", budget(&s.run_budget));
    if !s.setup.commands.is_empty() {
        let commands: Vec<String> = s
            .setup
            .commands
            .iter()
            .map(|c| format!("`{}`", c.value))
            .collect();
        let _ = writeln!(
            o,
            "  setup         {} (within {}s)",
            commands.join(", "),
            s.setup.timeout_secs
        );
    }
    if let Some(dir) = &s.held_out.dir {
        let feedback = match s.held_out.feedback.value {
            HeldOutFeedback::Hidden => "the implementer told their numbers only",
            HeldOutFeedback::Full => "the implementer shown their output",
        };
        let _ = writeln!(
            o,
            "  held out      files in {}, placed at {} for the audit; {feedback}",
            dir.value,
            s.held_out.into_path()
        );
    }
    if s.agents.is_empty() {
        let _ = writeln!(o, "  agents        none defined");
    } else {
        let _ = writeln!(o, "  agents");
        let width = s.agents.keys().map(String::len).max().unwrap_or(0);
        for (name, a) in &s.agents {
            let _ = writeln!(o, "    {name:width$}  {}", agent(a));
        }
    }
    let role =
        |r: &Option<Spanned<String>>| r.as_ref().map_or("-", |r| r.value.as_str()).to_string();
    let _ = writeln!(
        o,
        "  roles         implementer {}, reviewer {}, auditor {}",
        role(&s.roles.implementer),
        role(&s.roles.reviewer),
        role(&s.roles.auditor)
    );
    contract(&mut o, &plan.contract, "  ");

    let dag = PhaseDag::new(plan);
    let _ = writeln!(o);
    if plan.implicit_phase {
        let _ = writeln!(o, "phases: 1 (implicit: the whole goal is one phase)");
    } else {
        let _ = writeln!(
            o,
            "phases: {} (critical path {}; order {})",
            plan.phases.len(),
            dag.critical_path_len(),
            dag.topo_order().join(", ")
        );
    }
    for p in &plan.phases {
        phase(&mut o, plan, p);
    }
    o
}

fn phase(o: &mut String, plan: &Plan, p: &Phase) {
    let title = if p.title.is_empty() {
        String::new()
    } else {
        format!(": {}", p.title)
    };
    let _ = writeln!(o, "  {}{title}", p.id.value);
    if !p.depends_on.is_empty() {
        let deps: Vec<&str> = p.depends_on.iter().map(|d| d.value.as_str()).collect();
        let _ = writeln!(o, "    depends on  {}", deps.join(", "));
    }
    let agents = if p.attempt_agents.is_empty() {
        plan.settings
            .implementer()
            .map_or("the implementer".to_string(), str::to_string)
    } else {
        let names: Vec<&str> = p.attempt_agents.iter().map(|a| a.value.as_str()).collect();
        names.join(", ")
    };
    let select = match &p.select.value {
        Selection::First => "first".to_string(),
        Selection::Best { metric } => format!("best {metric}"),
        Selection::Review => "review".to_string(),
    };
    let _ = writeln!(
        o,
        "    attempts    {} ({agents}), select {select}",
        p.attempts.value
    );
    let c = &p.contract;
    if c.outcome != plan.contract.outcome
        && let Some(out) = &c.outcome
    {
        let _ = writeln!(o, "    outcome     {}", one_line(&out.value));
    }
    if c.boundaries.allowed != plan.contract.boundaries.allowed {
        let _ = writeln!(o, "    allowed     {}", globs(&c.boundaries.allowed));
    }
    let checks: Vec<String> = c.verification.iter().map(check_line).collect();
    let _ = writeln!(o, "    checks      {}", checks.join("; "));
    if c.held_out != plan.contract.held_out {
        let held: Vec<String> = c.held_out.iter().map(check_line).collect();
        let _ = writeln!(o, "    held out    {}", held.join("; "));
    }
}

fn contract(o: &mut String, c: &Contract, indent: &str) {
    if let Some(out) = &c.outcome {
        let _ = writeln!(o, "{indent}outcome       {}", one_line(&out.value));
    }
    if c.verification.is_empty() {
        let _ = writeln!(o, "{indent}checks        none at the plan level");
    } else {
        let _ = writeln!(o, "{indent}checks");
        for ch in &c.verification {
            let _ = writeln!(o, "{indent}  - {}", check_line(ch));
        }
    }
    if !c.held_out.is_empty() {
        let _ = writeln!(o, "{indent}held-out checks (the auditor's alone)");
        for ch in &c.held_out {
            let _ = writeln!(o, "{indent}  - {}", check_line(ch));
        }
    }
    let b = &c.boundaries;
    let allowed = if b.allowed.is_empty() {
        "everything not forbidden".to_string()
    } else {
        globs(&b.allowed)
    };
    let _ = writeln!(o, "{indent}allowed       {allowed}");
    if !b.forbidden.is_empty() {
        let _ = writeln!(o, "{indent}forbidden     {}", globs(&b.forbidden));
    }
    if !b.protected.is_empty() {
        let _ = writeln!(o, "{indent}protected     {}", globs(&b.protected));
    }
    if !c.constraints.is_empty() {
        let _ = writeln!(o, "{indent}constraints   {}", c.constraints.len());
    }
    if let Some(stop) = &c.blocked {
        let limit = stop
            .no_progress_limit
            .map_or("no no-progress limit".to_string(), |n| {
                format!("blocked after {n} iterations without progress")
            });
        let _ = writeln!(o, "{indent}stop          {limit}");
    }
}

fn check_line(c: &Check) -> String {
    match &c.kind {
        CheckKind::Machine { .. } => c.text.value.clone(),
        CheckKind::Human => format!("{} (human)", c.text.value),
    }
}

fn globs(g: &[Spanned<String>]) -> String {
    let v: Vec<&str> = g.iter().map(|g| g.value.as_str()).collect();
    v.join(", ")
}

fn budget(b: &Budget) -> String {
    let mut parts = vec![];
    let mut add = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    };
    add("turns", b.turns.as_ref().map(|v| v.value.to_string()));
    add(
        "iterations",
        b.iterations.as_ref().map(|v| v.value.to_string()),
    );
    add("wall", b.wall.as_ref().map(|v| v.value.text.clone()));
    add("tokens", b.tokens.as_ref().map(|v| v.value.to_string()));
    add(
        "tokens_in",
        b.tokens_in.as_ref().map(|v| v.value.to_string()),
    );
    add(
        "tokens_out",
        b.tokens_out.as_ref().map(|v| v.value.to_string()),
    );
    add(
        "tokens_cached",
        b.tokens_cached.as_ref().map(|v| v.value.to_string()),
    );
    add("cost_usd", b.cost_usd.as_ref().map(|v| v.value.to_string()));
    add(
        "tool_calls",
        b.tool_calls.as_ref().map(|v| v.value.to_string()),
    );
    if parts.is_empty() {
        "no limits".to_string()
    } else {
        parts.join(", ")
    }
}

fn agent(a: &AgentDef) -> String {
    let mut s = format!("adapter {}", a.adapter.value.as_str());
    if !a.command.is_empty() {
        let _ = write!(s, ", command {}", a.command.join(" "));
    }
    if !a.args.is_empty() {
        let _ = write!(s, ", args {}", a.args.join(" "));
    }
    if let Some(m) = &a.model {
        let _ = write!(s, ", model {m}");
    }
    if !a.env.is_empty() {
        let keys: Vec<&str> = a.env.keys().map(String::as_str).collect();
        let _ = write!(s, ", env {}", keys.join(" "));
    }
    s
}

/// The first line of `text`, cut to fit one screen line.
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let more = text.lines().nth(1).is_some();
    let cut: String = first.chars().take(96).collect();
    if cut.len() < first.len() || more {
        format!("{cut} …")
    } else {
        cut
    }
}
