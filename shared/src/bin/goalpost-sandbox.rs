//! The entry point bwrap execs inside a confined child's sandbox: it applies the Landlock
//! ruleset goalpost passed down, then execs the program (see
//! `goalpost_shared::process::sandbox`). Not for running by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    let err = goalpost_shared::process::sandbox::enter(std::env::args_os().skip(1));
    eprintln!("goalpost-sandbox: {err}");
    // 127 as a shell says "command not found"; 126 for a program that could not run.
    match err {
        goalpost_shared::process::sandbox::EnterError::Usage => ExitCode::from(2),
        goalpost_shared::process::sandbox::EnterError::Restrict(_) => ExitCode::from(126),
        goalpost_shared::process::sandbox::EnterError::Exec { .. } => ExitCode::from(127),
    }
}
