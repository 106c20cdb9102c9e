//! `recall` keeps medical-aesthetics clinics from losing their customers.
//!
//! It reads customer state from SQLite, evaluates rule files that move each
//! customer between five pools, queues outreach for them and dispatches it
//! through pluggable senders, recording every move and every message.
//! `ARCHITECTURE.md` at the top of the repository is the map of this crate.

pub mod bench;
pub mod bench_dispatch;
pub mod churn;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diag;
pub mod dispatch;
pub mod engine;
pub mod facts;
pub mod import;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod ops;
pub mod predict;
pub mod reload;
pub mod report;
pub mod rules;
pub mod ruletest;
pub mod senders;
pub mod simulate;
pub mod store;
pub mod templates;
#[cfg(test)]
pub mod testing;
