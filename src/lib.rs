//! `recall` keeps medical-aesthetics clinics from losing their customers.
//!
//! It reads customer state from SQLite, evaluates rule files that move each
//! customer between five pools, queues outreach for them and dispatches it
//! through pluggable senders, recording every move and every message.
//! `ARCHITECTURE.md` at the top of the repository is the map of this crate.
//!
//! The modules stack in layers, declared here from the bottom up. A module
//! imports only from its own layer or the layers below it, and nothing
//! imports in a circle; `tests/layers.rs` reads `src/` and holds it to that.

// Layer 0: leaves. The vocabulary, time, language and diagnostics, output
// formats, masking, counters; and the churn model's pure mathematics.
pub mod base;
pub mod predict;

// Layer 1: what the clinic writes: `recall.toml`, and CSV exports.
pub mod config;
pub mod import;

// Layer 2: the database. The only place with SQL.
pub mod store;

// Layer 3: judging customers: facts, the churn model, rules, templates;
// and reading results back (the report), synthetic clinics (the demo).
pub mod churn;
pub mod demo;
pub mod facts;
pub mod report;
pub mod rules;
pub mod templates;

// Layer 4: the two engines: the tick (and its replays) and dispatch (with
// the `Sender` trait every sender implements).
pub mod dispatch;
pub mod engine;

// Layer 5: the senders, one per provider, and the kit they share.
pub mod senders;

// Layer 6: everything loaded together, the service, the rule tests.
pub mod ruletest;
pub mod service;
pub mod setup;

// Layer 7: the command line and the benchmarks.
pub mod bench;
pub mod cli;

#[cfg(test)]
pub mod testing;
