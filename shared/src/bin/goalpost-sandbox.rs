//! The entry point bwrap execs inside a confined child's sandbox: it runs the program as
//! its child, restricted to the Landlock ruleset goalpost passed down, passes its output
//! on until it exits and ends with its status (see `goalpost_shared::process::sandbox`).
//! Not for running by hand.

use std::process::ExitCode;

use goalpost_shared::process::sandbox::{self, EnterError};

fn main() -> ExitCode {
    match sandbox::enter(std::env::args_os().skip(1)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("goalpost-sandbox: {err}");
            // 127 as a shell says "command not found"; 126 for a program that could not run.
            ExitCode::from(match err {
                EnterError::Usage => 2,
                EnterError::Restrict(_) | EnterError::Follow(_) => 126,
                EnterError::Exec { .. } => 127,
            })
        }
    }
}
