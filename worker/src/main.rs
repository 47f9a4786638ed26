//! goalpost-worker (placeholder until its issue lands).
fn main() {}
