//! The sandbox's start cost per turn: `true` run through the process door confined (a
//! bubblewrap sandbox with Landlock inside) and unconfined. Target: under 10 ms added,
//! median.
//!
//! Prints both medians with their ratio, and `sandbox_confined_ms=`,
//! `sandbox_unconfined_ms=` and `sandbox_added_ms=` for `bench/run.sh`.
//! `GOALPOST_BENCH_ITERS` sets the number of timed runs (default 50).

use std::time::{Duration, Instant};

use goalpost_shared::confine::{self, Confinement};
use goalpost_shared::process::{self, Command};

const TARGET_MS: f64 = 10.0;
const WARM_UP: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations = std::env::var("GOALPOST_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50usize);
    if let Err(err) = confine::probe() {
        eprintln!("sandbox bench: cannot confine here: {err}");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir()?;
    let writable = dir.path().canonicalize()?;
    let plain = Command::new("true", &writable).env("PATH", "/usr/bin:/bin");
    let confined = plain
        .clone()
        .confine(Some(Confinement::new([writable.clone()])));

    let unconfined_ms = median_ms(&plain, iterations)?;
    let confined_ms = median_ms(&confined, iterations)?;
    let added = confined_ms - unconfined_ms;
    println!("sandbox start cost per turn (`true`, median of {iterations} runs):");
    println!("  unconfined {unconfined_ms:8.3} ms");
    println!("  confined   {confined_ms:8.3} ms");
    println!(
        "  ratio      {:8.3}  added {added:.3} ms (target under {TARGET_MS} ms: {})",
        confined_ms / unconfined_ms,
        if added < TARGET_MS { "met" } else { "MISSED" }
    );
    println!("sandbox_confined_ms={confined_ms:.3}");
    println!("sandbox_unconfined_ms={unconfined_ms:.3}");
    println!("sandbox_added_ms={added:.3}");
    Ok(())
}

fn median_ms(cmd: &Command, iterations: usize) -> Result<f64, process::ProcessError> {
    let mut times = Vec::new();
    for run in 0..WARM_UP + iterations.max(1) {
        let started = Instant::now();
        let outcome = process::run(cmd, None)?;
        assert!(outcome.success(), "`true` failed: {outcome:?}");
        if run >= WARM_UP {
            times.push(started.elapsed());
        }
    }
    times.sort();
    Ok(times
        .get(times.len() / 2)
        .map_or(0.0, |median: &Duration| median.as_secs_f64() * 1000.0))
}
