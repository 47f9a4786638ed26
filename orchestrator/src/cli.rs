//! The command line: every subcommand and its options, as clap derive types. Each
//! subcommand is carried out by its own module; `main` only dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const LONG_ABOUT: &str = "\
goalpost runs a phased plan of coding work with AI coding agents on isolated git \
worktrees, and merges only work that an independent audit has verified against a \
contract fixed before the work started.

The plan is a goal file: Markdown with the contract's sections (Outcome, Verification \
surface, Constraints, Boundaries, Iteration policy, Blocked stop condition), optional \
`+++` TOML front matter for agents, budgets and the release branch, and optional \
`## Phases`.

Example:
  goalpost plan check goal.md          # validate a goal file and summarise it
  goalpost plan graph goal.md --format dot | dot -Tsvg > plan.svg

Exit codes: 0 complete, 1 internal error, 2 bad input, 3 blocked, 4 budget limited, \
5 paused.";

/// The `goalpost` command.
#[derive(Debug, Parser)]
#[command(
    name = "goalpost",
    version,
    about = "Run a phased plan of coding work with AI agents; merge only audited work",
    long_about = LONG_ABOUT,
    propagate_version = true
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); `GOALPOST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a goal file and show its phases
    #[command(subcommand)]
    Plan(PlanCommand),
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a goal file and print a one-screen summary of it
    #[command(long_about = "\
Validate a goal file and print a one-screen summary: title, release branch, parallelism, \
budgets, agents and roles, the plan's checks, and each phase with its dependencies, \
attempts, selection policy and checks.

Every problem found is printed to stderr as `FILE:LINE:COL: what is wrong; what was \
expected`, and the exit code is 2.

Example:
  goalpost plan check goal.md
  goalpost plan check goal.md --json | jq '.plan.phases[].id.value'")]
    Check(CheckArgs),

    /// Print the phase dependency graph
    #[command(long_about = "\
Print the phase dependency graph of a goal file: as text (one phase per line in the \
order phases can run, `<-` its dependencies), as Graphviz DOT, or as JSON (phases, \
order, critical path length, levels of phases that can run in parallel).

Example:
  goalpost plan graph goal.md
  goalpost plan graph goal.md --format dot | dot -Tsvg > plan.svg")]
    Graph(GraphArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The goal file (Markdown)
    pub file: PathBuf,

    /// Print the parsed plan (or the errors) as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The goal file (Markdown)
    pub file: PathBuf,

    /// Output format
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// One phase per line, in run order, with `<-` and its dependencies
    Text,
    /// Graphviz DOT
    Dot,
    /// JSON: phases, order, critical path, levels
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
