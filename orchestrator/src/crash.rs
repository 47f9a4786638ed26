//! Crash points for the crash-recovery tests: numbered places in the run where killing
//! the orchestrator must lose nothing. With `GOALPOST_CRASH_AT=N` set, the N-th point
//! reached (counting from 1) writes its name to the file named by
//! `GOALPOST_CRASH_MARKER` and then waits to be killed; the test kills the process with
//! SIGKILL and runs `goalpost resume`. Without the variable a point costs one atomic add.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static REACHED: AtomicU32 = AtomicU32::new(0);

fn target() -> Option<u32> {
    static TARGET: OnceLock<Option<u32>> = OnceLock::new();
    *TARGET.get_or_init(|| std::env::var("GOALPOST_CRASH_AT").ok()?.parse().ok())
}

/// Marks a place where a crash must be survivable.
pub fn point(name: &str) {
    let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    if target() != Some(n) {
        return;
    }
    if let Some(marker) = std::env::var_os("GOALPOST_CRASH_MARKER") {
        let _ = std::fs::write(marker, format!("{n} {name}\n"));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
