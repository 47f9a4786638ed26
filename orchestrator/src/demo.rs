//! `goalpost demo`: a real run on a sample repository, with scripted agents standing in
//! for models, that shows the parallel phases, a forbidden edit sent back by the audit, a
//! false claim refuted by the audit, and the release branch moving at the end.

use std::path::PathBuf;

use goalpost_shared::exit::ExitCode;
use goalpost_state::{RunView, Store};

use crate::attempt::sibling_binary;
use crate::reporter::Progress;
use crate::run_cmd::{self, RunError, Workspace};

/// Creates the demo under `dir` (default: a new directory in the system temp dir, kept
/// so its reports can be read afterwards) and runs it.
pub fn demo(dir: Option<PathBuf>) -> Result<ExitCode, RunError> {
    let agent = sibling_binary("scripted-agent", "GOALPOST_SCRIPTED_AGENT");
    if !agent.is_file() {
        return Err(RunError::bad(
            format!("the demo's scripted agent is not at {}", agent.display()),
            "build every binary first: `cargo build` in goalpost's source tree",
        ));
    }
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("goalpost-demo-{}", run_cmd::new_run_id())),
    };
    // The goal file names the agent's script by this path, and agents run in their own
    // worktrees: a relative path would not lead them back here.
    let dir = std::path::absolute(&dir).map_err(|e| {
        RunError::bad(
            format!("cannot resolve {}: {e}", dir.display()),
            "name a directory by an absolute path",
        )
    })?;
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(RunError::bad(
            format!("{} exists and is not empty", dir.display()),
            "name a new or empty directory",
        ));
    }
    let demo = goalpost_fixtures::demo::create(&dir, &agent).map_err(|e| {
        RunError::bad(
            format!("cannot create the demo in {}: {e:#}", dir.display()),
            "name a writable directory",
        )
    })?;
    println!("demo repository: {}", demo.repo.display());
    println!("goal file:       {}", demo.plan.display());
    println!();
    let code = run_cmd::run(&demo.plan, &demo.repo, false, Progress::Plain)?;
    println!();
    let ws = Workspace::open(&demo.repo)?;
    let store = Store::open_existing(&ws.layout.store())?;
    if let Some(view) = store
        .as_ref()
        .map(|s| RunView::load(s, None))
        .transpose()?
        .flatten()
    {
        println!("outcome of each phase:");
        for p in &view.phases {
            let audits: Vec<&str> = view
                .audits
                .iter()
                .filter(|a| a.phase_id == p.phase_id)
                .map(|a| a.recommendation.as_str())
                .collect();
            println!(
                "  {:<6} {:<8} audits: {}",
                p.phase_id,
                p.state,
                audits.join(" -> ")
            );
        }
        println!();
        println!(
            "audit reports:   {}",
            ws.layout.run_dir(&view.run.id).join("audits").display()
        );
    }
    println!(
        "see it all with: goalpost -C {} report",
        demo.repo.display()
    );
    Ok(code)
}
