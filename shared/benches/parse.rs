//! How long parsing and validating a large goal file takes: a generated plan of 500
//! phases, each depending on one to three earlier ones. Target: under 50 ms.
//!
//! Prints min / median / p95 and `parse_ms=<median>` for `bench/run.sh`.
//! `GOALPOST_BENCH_ITERS` sets the number of timed runs (default 50).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

const PHASES: usize = 500;
const TARGET_MS: f64 = 50.0;
const WARM_UP: usize = 5;

fn main() {
    let text = generate(PHASES);
    let path = Path::new("bench-500-phases.md");

    // A benchmark of a parse that fails would time the wrong thing.
    match goalpost_shared::goal::parse(path, &text) {
        Ok(plan) => assert_eq!(plan.phases.len(), PHASES, "phases parsed"),
        Err(diagnostics) => panic!("the generated goal file does not parse:\n{diagnostics}"),
    }

    let iterations = std::env::var("GOALPOST_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(50);
    for _ in 0..WARM_UP {
        let _ = black_box(goalpost_shared::goal::parse(path, black_box(&text)));
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let result = goalpost_shared::goal::parse(path, black_box(&text));
            let elapsed = start.elapsed();
            black_box(result).ok();
            elapsed
        })
        .collect();
    samples.sort();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let min = ms(samples[0]);
    let median = ms(samples[samples.len() / 2]);
    let p95 = ms(samples[((samples.len() * 95).div_ceil(100)).saturating_sub(1)]);
    println!(
        "parse + validate, {PHASES} phases, {} KiB, {iterations} runs",
        text.len() / 1024
    );
    println!("  min    {min:8.3} ms");
    println!("  median {median:8.3} ms");
    println!("  p95    {p95:8.3} ms");
    println!(
        "  median / target ({TARGET_MS} ms) = {:.3}{}",
        median / TARGET_MS,
        if median < TARGET_MS {
            ""
        } else {
            "  ** over target **"
        }
    );
    println!("parse_ms={median:.3}");
}

/// A goal file with front matter (two agents), the six contract sections, and `phases`
/// phases; phase i > 0 depends on one to three earlier phases, chosen by a fixed-seed
/// generator so every run parses the same text.
fn generate(phases: usize) -> String {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut s = String::from(
        r#"+++
release = "main"
max_parallel = 4

[budget]
turns = 12
wall = "30m"

[agents.codex]
adapter = "codex"
args = ["--model", "gpt-5.5"]

[agents.claude]
adapter = "claude"
args = ["--model", "sonnet"]

[roles]
implementer = "codex"
reviewer = "claude"
+++

# Goal: A large generated plan

## Outcome
Every module of the generated crate exists and its tests pass.

## Verification surface
- `cargo test --workspace` passes
- `./bench/run.sh` reports `parse_ms` at most 50
- The code reads well.

## Constraints
- No new dependencies.

## Boundaries
- Allowed paths: src/**, tests/**
- Forbidden paths: .github/**
- Protected paths: tests/golden/**

## Iteration policy
Run the verification surface after every change.

## Blocked stop condition
Stop after 3 consecutive iterations with no improvement.

## Phases
"#,
    );
    for i in 0..phases {
        let id = format!("m{i:04}");
        // Writing to a String cannot fail.
        let _ = writeln!(s, "\n### {id}: Module number {i}");
        if i > 0 {
            let want = 1 + rng.below(3) as usize;
            let mut deps: Vec<usize> = Vec::new();
            while deps.len() < want.min(i) {
                let d = rng.below(i as u64) as usize;
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            deps.sort_unstable();
            let names: Vec<String> = deps.iter().map(|d| format!("m{d:04}")).collect();
            let _ = writeln!(s, "Depends on: {}", names.join(", "));
        }
        let _ = writeln!(s, "Outcome: module {id} implements its part of the crate.");
        let _ = writeln!(s, "Verification: `cargo test {id}`");
        let _ = writeln!(s, "Allowed paths: src/{id}/**, tests/{id}.rs");
    }
    s
}

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
