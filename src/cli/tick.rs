//! `recall tick`: the rules evaluated once, customers moved and messages queued.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Args;

use super::{Rows, lang, load, open_store, parse_at};
use crate::base::clock::{self, Clock};
use crate::base::i18n::{Lang, t};
use crate::base::model::{Channel, Pool};
use crate::base::output::escape;
use crate::engine::{self, Engine, TickEnd, TickOptions, TickReport};

#[derive(Debug, Args)]
pub struct TickArgs {
    /// The time to evaluate at (clinic time, e.g. "2026-03-01 09:00"); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Show what would happen without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// How many example decisions to print.
    #[arg(long, default_value_t = 10)]
    pub show: usize,
    /// Customers judged and committed per transaction.
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: usize,
}

/// `recall tick` at `now` (or `--at`), its start and finish stamped by `clock`.
pub(super) fn run(
    config_path: &Path,
    args: &TickArgs,
    now: DateTime<Utc>,
    clock: Clock,
) -> Result<ExitCode> {
    let dry_run = args.dry_run;
    let loaded = load(config_path)?;
    let config = &loaded.config;
    let tz = config.clinic.timezone;
    let at = parse_at(args.at.as_deref(), config, now)?;
    let (mut store, clinic_id) = open_store(config, now)?;
    let engine = Engine::new(&config.clinic, clinic_id, &loaded.rules, &loaded.templates)
        .with_fallbacks(config.fallbacks());
    let options = TickOptions {
        dry_run,
        samples: args.show,
        batch_size: args.batch_size,
        clock,
        ..TickOptions::at(at)
    };
    let mut out = std::io::stdout().lock();
    if !dry_run {
        // As the service does: a refit slot passed since the last fit means
        // a fit before the tick.
        let refit = crate::churn::refit_if_due(
            &store,
            clinic_id,
            &config.clinic,
            &config.model,
            at,
            now.timestamp(),
        )?;
        if let crate::churn::Refit::Fitted(fit) = &refit {
            let refitted = t!("tick.refitted", id = fit.id, customers = fit.customers);
            writeln!(out, "{}", refitted.render(lang()))?;
        }
    }
    let report = engine::tick(&mut store, &engine, options)?;
    if !dry_run {
        store.attribute()?;
    }
    write_report(&mut out, &report, dry_run, tz, lang())
}

/// What the tick did: how it ended, its counts, the counts per rule and
/// examples. A tick that stopped half-way fails.
fn write_report(
    out: &mut impl Write,
    report: &TickReport,
    dry_run: bool,
    tz: Tz,
    lang: Lang,
) -> Result<ExitCode> {
    for earlier in &report.finished_first {
        let at = clock::format_local(earlier.at, tz);
        writeln!(out, "{}", t!("tick.finished_first", at).render(lang))?;
    }
    let when = clock::format_local(report.at, tz);
    match report.end {
        TickEnd::AlreadyDone => {
            let done = t!(
                "tick.already_done",
                at = &when,
                moves = report.moves,
                messages = report.messages
            );
            writeln!(out, "{}", done.render(lang))?;
            return Ok(ExitCode::SUCCESS);
        }
        TickEnd::Stopped => {
            writeln!(out, "{}", t!("tick.stopped", at = &when).render(lang))?;
            return Ok(ExitCode::FAILURE);
        }
        TickEnd::DryRun => writeln!(out, "{}", t!("tick.dry_run", at = &when).render(lang))?,
        TickEnd::Done => {}
    }
    if let Some(after) = report.resumed_after {
        writeln!(out, "{}", t!("tick.resumed", after).render(lang))?;
    }
    let summary = t!(
        "tick.summary",
        at = &when,
        tz,
        evaluated = report.evaluated,
        moves = report.moves,
        messages = report.messages,
        verb = if dry_run {
            t!("tick.would_queue")
        } else {
            t!("tick.queued")
        },
        errors = report.errors
    );
    writeln!(out, "{}", summary.render(lang))?;
    if report.waiting > 0 {
        let waiting = t!("onboard.waiting", count = report.waiting);
        writeln!(out, "{}", waiting.render(lang))?;
    }
    write_by_rule(out, report, lang)?;
    write_samples(out, report, lang)?;
    Ok(ExitCode::SUCCESS)
}

/// Per rule: how often it fired, what it did, and why its condition failed.
fn write_by_rule(out: &mut impl Write, report: &TickReport, lang: Lang) -> Result<()> {
    if !report.by_rule.is_empty() {
        let mut rows = Rows::headed(
            lang,
            &[
                t!("tick.rule"),
                t!("tick.fired"),
                t!("tick.moves"),
                t!("tick.messages"),
                t!("tick.errors"),
            ],
        );
        for (rule, count) in &report.by_rule {
            rows.push(vec![
                rule.clone(),
                count.fired.to_string(),
                count.moves.to_string(),
                count.messages.to_string(),
                count.errors.to_string(),
            ]);
        }
        rows.write_table(out, None)?;
        for (rule, count) in report.by_rule.iter().filter(|(_, c)| c.errors > 0) {
            let failed = t!(
                "tick.rule_failed",
                rule,
                count = count.errors,
                example = escape(count.first_error.as_deref().unwrap_or(""))
            );
            writeln!(out, "{}", failed.render(lang))?;
        }
    }
    Ok(())
}

/// The example decisions (`--show`).
fn write_samples(out: &mut impl Write, report: &TickReport, lang: Lang) -> Result<()> {
    if !report.samples.is_empty() {
        writeln!(out, "{}", t!("tick.examples").render(lang))?;
        // Pools and channels by their names in `lang` (ids this version
        // does not know as they are).
        let pool = |p: &str| {
            p.parse::<Pool>()
                .map_or_else(|_| p.to_string(), |p| p.name().render(lang))
        };
        let channel = |c: &String| {
            c.parse::<Channel>()
                .map_or_else(|_| c.clone(), |c| c.name().render(lang))
        };
        for s in &report.samples {
            let to =
                s.to.as_deref()
                    .map(|t| format!(" → {}", pool(t)))
                    .unwrap_or_default();
            let channels = if s.channels.is_empty() {
                String::new()
            } else {
                let channels: Vec<String> = s.channels.iter().map(channel).collect();
                t!("tick.sample_send", channels = channels.join("+")).render(lang)
            };
            // Names and fact values are customer data: escaped for the terminal.
            writeln!(
                out,
                "  {} [{}{to}] {}{channels}: {}",
                escape(&s.customer),
                pool(&s.from),
                s.rule_id,
                escape(&s.reason)
            )?;
        }
    }
    Ok(())
}
