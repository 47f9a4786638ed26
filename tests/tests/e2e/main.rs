//! goalpost's end-to-end tests, one module per area, in one test binary: each file of its
//! own would link goalpost's whole dependency tree again. The modules run the real
//! binaries, built by `cargo build --workspace` beforehand.

mod approve;
mod auditor_agent;
mod best_of_n;
mod catch_rate;
mod confinement;
mod dashboard;
mod durable;
mod held_out;
mod integrity;
mod lifecycle;
mod objects;
mod plan_cli;
mod pool_cache;
mod progress;
mod real_agents;
mod run_e2e;
mod setup;
mod views;
