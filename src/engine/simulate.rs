//! `recall simulate`: what a set of rules would have done over a past
//! period, on a copy of the clinic's history, sending nothing.
//!
//! The copy is rewound to the start of the period (moves and messages from
//! then on are forgotten; visits, orders and follow-ups stay), then the
//! rules are ticked at every scheduled slot up to the end. Queued messages
//! count as delivered when due, so contact facts move on as they would;
//! dispatch policy (caps, quiet hours, consent) is not applied, so message
//! counts are what the rules would queue. Two rule folders can be compared,
//! so a change can be judged before it goes live.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};

use crate::base::model::Channel;
use crate::config::{self, Config};
use crate::engine::{self, Engine, TickOptions};
use crate::rules::RuleSet;
use crate::store::Store;
use crate::store::simulate::COPY_SUFFIX;
use crate::templates::TemplateSet;

/// What one rule set did over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ticks: usize,
    /// Rule → (times fired, moves, messages).
    pub rules: BTreeMap<String, (i64, i64, i64)>,
    /// Channel → (messages queued, held out in control groups).
    pub channels: BTreeMap<Channel, (i64, i64)>,
    /// Channel → estimated cost in thousandths of a yuan.
    pub cost_milli: BTreeMap<Channel, i64>,
}

impl Outcome {
    pub fn total_cost_milli(&self) -> i64 {
        self.cost_milli.values().sum()
    }
}

/// The instants of every scheduled tick in `[from, to)`, in order.
pub fn slots(config: &Config, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let tz = config.clinic.timezone;
    let mut all = Vec::new();
    for cron in &config.schedule.ticks {
        let Ok((_, parsed)) = config::parse_cron(cron) else {
            continue;
        };
        let Ok(first) = parsed.find_next_occurrence(&from.with_timezone(&tz), true) else {
            continue;
        };
        for slot in parsed.iter_from(first, croner::Direction::Forward) {
            let slot = slot.with_timezone(&Utc);
            if slot >= to || all.len() > 20_000 {
                break;
            }
            all.push(slot);
        }
    }
    all.sort();
    all.dedup();
    all
}

/// A period to replay, over copies of one clinic's database.
pub struct Replay<'a> {
    pub config: &'a Config,
    pub live: &'a Store,
    pub clinic_id: i64,
    pub templates: &'a TemplateSet,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Where the copies go (a temporary folder).
    pub workdir: &'a Path,
}

impl Replay<'_> {
    /// Replays `rules` on a fresh copy named after `label`.
    pub fn run(&self, rules: &RuleSet, label: &str) -> Result<Outcome> {
        let Replay {
            config,
            live,
            clinic_id,
            templates,
            from,
            to,
            workdir,
        } = *self;
        let copy_path = workdir.join(format!("{label}{COPY_SUFFIX}"));
        let mut copy = live
            .simulation_copy(&copy_path)
            .context("copying the database")?;
        copy.rewind_copy(from.timestamp())
            .context("rewinding the copy")?;
        let engine = Engine::new(&config.clinic, clinic_id, rules, templates)
            .with_fallbacks(config.fallbacks());
        let mut outcome = Outcome::default();
        replay(
            &mut copy,
            config,
            &engine,
            &slots(config, from, to),
            |report| {
                outcome.ticks += 1;
                for (rule, count) in report.by_rule {
                    let entry = outcome.rules.entry(rule).or_default();
                    entry.0 += count.fired;
                    entry.1 += count.moves;
                    entry.2 += count.messages;
                }
            },
        )?;
        for (channel, status, n) in copy.messages_since(from.timestamp())? {
            let entry = outcome.channels.entry(channel).or_default();
            if status == "held_out" {
                entry.1 += n;
            } else {
                entry.0 += n;
                let cost = config.channels.get(&channel).map_or(0, |p| p.cost_milli);
                *outcome.cost_milli.entry(channel).or_default() += n * cost;
            }
        }
        drop(copy);
        let _ = std::fs::remove_file(&copy_path);
        Ok(outcome)
    }
}

/// Ticks a simulation copy at each of `slots` (in order), as the service
/// would have: the churn model refitted on its schedule on the history as
/// it was then, and every queued message taken as delivered when due, so
/// contact facts move on. `each` gets every tick's report.
pub(crate) fn replay(
    copy: &mut Store,
    config: &Config,
    engine: &Engine<'_>,
    slots: &[DateTime<Utc>],
    mut each: impl FnMut(engine::TickReport),
) -> Result<()> {
    for &slot in slots {
        if let Err(e) = crate::churn::refit_if_due(
            copy,
            engine.clinic_id,
            &config.clinic,
            &config.model,
            slot,
            slot.timestamp(),
        ) {
            tracing::warn!(error = %e, "churn model refit failed; the last fit stays in use");
        }
        let report = engine::tick(copy, engine, TickOptions::at(slot))?;
        copy.deliver_queued_copy()?;
        each(report);
    }
    Ok(())
}
