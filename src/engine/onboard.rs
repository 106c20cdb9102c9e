//! `recall onboard`: places the customers an import brought, with their
//! history, in the pools that history implies, and messages nobody.
//!
//! The rules are replayed day by day (every scheduled tick, and one at the
//! onboarding time itself) over the last `days` on a simulation copy, as
//! `recall simulate` does; then, for each customer who waits for
//! onboarding, what the replay did is written on the live database: their
//! moves (reason "onboarding: ..."), and the messages fired in the pool
//! they end in, as `cancelled`, which no dispatcher claims, so a rule that
//! fires once per stay (or every N days) does not fire again about the
//! past. Customers already live are replayed too (the rules see the whole
//! clinic) but nothing of theirs is written. Holds the tick lock: no tick
//! judges the waiting customers meanwhile.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};

use super::simulate::{replay, slots};
use super::{Engine, EngineError};
use crate::base::clock::Timestamp;
use crate::base::model::Pool;
use crate::config::Config;
use crate::rules::RuleSet;
use crate::store::simulate::COPY_SUFFIX;
use crate::store::{LockKind, Store};
use crate::templates::TemplateSet;

/// The least history onboarding replays, whatever the rules count.
pub const MIN_DAYS: i64 = 30;

/// How many days onboarding replays unless told: the longest window any
/// rule counts ([`RuleSet::longest_window_days`]), at least [`MIN_DAYS`].
pub fn default_days(rules: &RuleSet) -> i64 {
    rules.longest_window_days().max(MIN_DAYS)
}

/// What to onboard, and where the copy goes.
pub struct Onboarding<'a> {
    pub config: &'a Config,
    pub clinic_id: i64,
    pub rules: &'a RuleSet,
    pub templates: &'a TemplateSet,
    /// The onboarding time: the history up to it is replayed.
    pub at: DateTime<Utc>,
    /// Days of history to replay.
    pub days: i64,
    /// Where the copy goes (a temporary folder).
    pub workdir: &'a Path,
}

/// What onboarding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnboardReport {
    /// Where the replay began.
    pub from: Timestamp,
    /// Replayed ticks.
    pub ticks: usize,
    /// Customers placed.
    pub customers: usize,
    /// Moves recorded.
    pub moves: usize,
    /// Messages the replay fired, recorded as cancelled.
    pub silenced: usize,
    /// Where the placed customers are now.
    pub pools: BTreeMap<Pool, usize>,
}

/// Onboards every customer who waits for it.
pub fn onboard(live: &mut Store, o: &Onboarding<'_>) -> Result<OnboardReport> {
    let _lock = live.try_lock(LockKind::Tick)?.ok_or(EngineError::Busy)?;
    let from = o.at - chrono::Duration::days(o.days.max(1));
    let mut report = OnboardReport {
        from: from.timestamp(),
        ..OnboardReport::default()
    };
    let waiting = live.waiting_for_onboarding(o.clinic_id)?;
    if waiting.is_empty() {
        return Ok(report);
    }
    let copy_path = o.workdir.join(format!("onboard{COPY_SUFFIX}"));
    let mut copy = live
        .simulation_copy(&copy_path)
        .context("copying the database")?;
    copy.rewind_copy(from.timestamp())
        .context("rewinding the copy")?;
    let engine = Engine::new(&o.config.clinic, o.clinic_id, o.rules, o.templates)
        .with_fallbacks(o.config.fallbacks());
    // Every scheduled tick of the period, and one at the onboarding time:
    // everything up to it is history.
    let mut at = slots(o.config, from, o.at);
    at.push(o.at);
    replay(&mut copy, o.config, &engine, &at, |_| report.ticks += 1)?;
    let replayed = copy.replayed(&waiting, from.timestamp())?;
    drop(copy);
    let _ = std::fs::remove_file(&copy_path);
    let done = live.record_onboarding(&replayed, o.at.timestamp())?;
    report.customers = done.customers;
    report.moves = done.moves;
    report.silenced = done.messages;
    for customer in &replayed {
        *report.pools.entry(customer.pool).or_default() += 1;
    }
    Ok(report)
}
