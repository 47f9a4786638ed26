//! goalpost-auditor (placeholder until its issue lands).
fn main() {}
