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
  goalpost demo                        # a 4-phase run on a sample repository
  goalpost plan check goal.md          # validate a goal file and summarise it
  goalpost run goal.md                 # run it on the repository in the current directory
  goalpost status                      # where the last run stands

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

    /// Work on the repository containing DIR instead of the current directory
    // The id is not `dir`: a global argument shares its id with every subcommand's
    // arguments, and `demo --dir` would then always get this one's value.
    #[arg(
        short = 'C',
        id = "repository_dir",
        value_name = "DIR",
        global = true,
        default_value = "."
    )]
    pub dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a goal file and show its phases
    #[command(subcommand)]
    Plan(PlanCommand),

    /// Run a plan: every phase on its own worktree, audited, merged through the gate
    #[command(long_about = "\
Run a plan on a repository: validate the goal file and the repository (a clean working \
tree, an existing release branch, every agent's executable), then schedule the phase \
DAG with at most `max_parallel` attempts at once. Each attempt works in its own git \
worktree outside your working tree; a separate auditor process re-creates the evidence \
from a fresh checkout; the gate merges only audited commits onto the run's integration \
ref. After the last phase the whole-goal checks run on the integration tip and the \
release branch moves to it by compare-and-swap (never forced).

Exit codes: 0 complete, 1 internal error, 2 bad input (nothing changed), 3 blocked, \
4 budget limited, 5 waiting for approval.

Example:
  goalpost run goal.md
  goalpost -C ../service run goal.md")]
    Run(RunArgs),

    /// Show where the last run (or a named one) stands
    Status(StatusArgs),

    /// Print the report of the last run (or a named one)
    Report(ReportArgs),

    /// Audit any commit pair against a plan's contract, as a run would
    #[command(long_about = "\
Run the auditor on a commit pair: it checks out CANDIDATE in a fresh worktree, judges \
every path changed since BASE against the boundaries, re-runs the machine checks with \
the protected paths as they are at BASE, and recommends merge, revise or abandon.

Exit codes: 0 merge, 3 revise or abandon, 2 bad input.

Example:
  goalpost audit --plan goal.md --phase parser --base main --candidate feature")]
    Audit(AuditArgs),

    /// Move the release branch of a run that waits for human approval
    Approve(ApproveArgs),

    /// Ask the running run to stop after its running turns (or at once with --now)
    #[command(long_about = "\
Ask the run that holds this repository to pause. By default it stops at the next safe \
boundary: the running agent turns finish and are harvested, nothing new starts. With \
--now the running turns are ended at once (their process groups, grandchildren \
included) and what they wrote is harvested. Ctrl-C during `goalpost run` does the \
same: once for a pause, twice for --now. A paused run stays paused until `resume`.")]
    Pause(PauseArgs),

    /// Go on with a paused, interrupted, blocked or budget-limited run
    #[command(long_about = "\
Go on with a run from where its state and refs say it stands: merged phases stay merged, \
attempts go on from their refs, and a crash at any point converges to the result an \
uninterrupted run would have had. A budget-limited run can be continued with a raised \
budget.

Example:
  goalpost resume
  goalpost resume --budget tokens=+200000 --budget turns=+10")]
    Resume(ResumeArgs),

    /// Remove a run's worktrees once their work is on refs (--purge: refs and records too)
    Clear(ClearArgs),

    /// Remove worktrees no live run needs, never one holding work that is on no ref
    Gc,

    /// Run a 4-phase plan with scripted agents on a sample repository
    #[command(long_about = "\
Create a sample repository and a 4-phase plan in a new directory, and run it with \
scripted agents standing in for models: two phases run in parallel, one implementer \
edits a forbidden path and is sent back by the audit, another claims the tests pass \
after rewriting the protected test script, and the audit, which runs the tests as they \
were, refutes the claim. Prints the outcome of each phase and where the reports are.")]
    Demo(DemoArgs),

    /// List the agents of a goal file: executable found, version, command line
    #[command(long_about = "\
List the agents a goal file configures (without FILE: the built-in adapters codex, \
claude, gemini, opencode and aider), whether each one's executable is found, its version \
(`--version`), and the command line goalpost runs for an implementer's first turn. With \
FILE, exits with 2 when an executable is missing, saying how to install it.

Example:
  goalpost agents goal.md
  goalpost agents --json")]
    Agents(AgentsArgs),

    /// Serve a local web page of this repository's runs, live while they go on
    #[command(long_about = "\
Serve a web dashboard of this repository's runs on 127.0.0.1 (a free port unless \
--listen says which) and print its URL, which carries a random token: every request \
without it gets 401. The page shows each run's phase DAG, phases and attempts (agent, \
state, iterations, tokens, cost, time, metric, winner and why), each attempt's diff, \
each audit's evidence, the stop report and the budgets, and follows a running run \
without a reload. Its buttons run the commands a user has: approve (for `approval = \
\"human\"`), pause, and resume, which starts `goalpost resume` as a process of its own \
(its output in the run's resume.log) that goes on after the dashboard stops.

Example:
  goalpost dashboard
  goalpost dashboard --listen 127.0.0.1:8080")]
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// The goal file whose agents to list
    pub file: Option<PathBuf>,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// End the running turns at once instead of after them
    #[arg(long)]
    pub now: bool,

    /// Return only once the run has stopped
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run (default: the most recent)
    #[arg(long)]
    pub run: Option<String>,

    /// Raise a budget: KIND=+N adds N, KIND=N sets it (repeatable); KIND is turns, wall
    /// (seconds), tokens, tokens_in, tokens_out, tokens_cached, cost_usd, tool_calls or
    /// iterations
    #[arg(long = "budget", value_name = "KIND=+N")]
    pub budgets: Vec<String>,

    /// Run agents and checks without Landlock, with all of your rights: only where the
    /// kernel cannot confine them and you trust every agent of the plan
    #[arg(long)]
    pub unconfined: bool,

    /// How to show the run's progress (see `goalpost run --help`)
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The run (default: the most recent)
    #[arg(long)]
    pub run: Option<String>,

    /// Also delete the run's refs and records
    #[arg(long)]
    pub purge: bool,

    /// Do not ask before --purge deletes
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the demo (default: a new directory in the system temp dir)
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The goal file (Markdown)
    pub file: PathBuf,

    /// Run agents and checks without Landlock, with all of your rights: only where the
    /// kernel cannot confine them and you trust every agent of the plan
    #[arg(long)]
    pub unconfined: bool,

    /// How to show the run's progress: `plain` lines; `tty`, the same lines with the run's
    /// live block below them, redrawn in place (phases, attempts, audits, the gate,
    /// budgets); every event as a JSON line on stdout (`json`, for CI and scripts; the
    /// other lines go to stderr); or `auto`: `tty` when stdout is a terminal and CI is not
    /// set, else `plain`
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// `tty` on a terminal (unless `CI=true`), `plain` otherwise
    Auto,
    /// One line per event a person follows
    Plain,
    /// The plain lines, with the run's live block below them redrawn in place
    Tty,
    /// Every event as one JSON object a line (the shape is in the state crate's docs)
    Json,
}

impl From<ProgressArg> for goalpost_orchestrator::reporter::Progress {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => Self::auto(),
            ProgressArg::Plain => Self::Plain,
            ProgressArg::Tty => Self::Tty,
            ProgressArg::Json => Self::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run (default: the most recent)
    #[arg(long)]
    pub run: Option<String>,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,

    /// Then follow the run from another terminal: every event as it is recorded (one line
    /// each, or with --json the JSON lines of `run --progress json`), until the run ends
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,

    /// Allow --listen on an address other than loopback (anyone who can reach it and has
    /// the URL's token can approve, pause and resume)
    #[arg(long)]
    pub allow_remote: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run (default: the most recent)
    #[arg(long)]
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run (default: the most recent)
    #[arg(long)]
    pub run: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown
    Md,
    /// JSON
    Json,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The goal file whose contract applies
    #[arg(long)]
    pub plan: PathBuf,

    /// The phase whose contract applies (default: the plan's own)
    #[arg(long)]
    pub phase: Option<String>,

    /// The commit the work started from
    #[arg(long)]
    pub base: String,

    /// The commit to audit
    #[arg(long)]
    pub candidate: String,

    /// Claims to check (repeatable)
    #[arg(long = "claim")]
    pub claims: Vec<String>,

    /// Print the report as JSON instead of Markdown
    #[arg(long)]
    pub json: bool,
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

    /// A subcommand's argument with the id of a global one gets the global's value, so
    /// no subcommand, at any depth, may reuse a global argument's id.
    #[test]
    fn no_subcommand_argument_shares_an_id_with_a_global_one() {
        fn walk(cmd: &clap::Command, globals: &[String], path: &str, clashes: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                for arg in sub.get_arguments() {
                    if globals.iter().any(|g| g == arg.get_id().as_str()) {
                        clashes.push(format!("{here}: {}", arg.get_id()));
                    }
                }
                walk(sub, globals, &here, clashes);
            }
        }
        let cli = Cli::command();
        let globals: Vec<String> = cli
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(globals.len() >= 2, "{globals:?}");
        let mut clashes = Vec::new();
        walk(&cli, &globals, "goalpost", &mut clashes);
        assert!(clashes.is_empty(), "{clashes:?}");
    }

    #[test]
    fn demo_and_the_repository_dir_are_separate_options() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                dir,
                command: Command::Demo(demo),
                ..
            }) => (dir, demo.dir),
            other => panic!("{args:?} parsed as {other:?}"),
        };
        assert_eq!(parse(&["goalpost", "demo"]), (PathBuf::from("."), None));
        assert_eq!(
            parse(&["goalpost", "demo", "--dir", "d"]),
            (PathBuf::from("."), Some(PathBuf::from("d")))
        );
        assert_eq!(
            parse(&["goalpost", "-C", "repo", "demo"]),
            (PathBuf::from("repo"), None)
        );
        assert_eq!(
            parse(&["goalpost", "-C", "repo", "demo", "--dir", "d"]),
            (PathBuf::from("repo"), Some(PathBuf::from("d")))
        );
    }
}
