//! `recall onboard`: the customers an import brought placed in the pools
//! their history implies, by the rules replayed silently over it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{Rows, lang, load, open_store, parse_at};
use crate::base::clock;
use crate::base::i18n::t;
use crate::engine::onboard::{self, Onboarding};

#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// Days of history to replay (default: the longest window any rule
    /// counts, at least 30).
    #[arg(long)]
    pub days: Option<i64>,
    /// The onboarding time (clinic time); default now.
    #[arg(long)]
    pub at: Option<String>,
}

/// `recall onboard`.
pub(super) fn run(config_path: &Path, args: &OnboardArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let loaded = load(config_path)?;
    let config = &loaded.config;
    let tz = config.clinic.timezone;
    let at = parse_at(args.at.as_deref(), config, now)?;
    let days = match args.days {
        Some(days) if days < 1 => anyhow::bail!(t!("onboard.bad_days", days).render(lang())),
        Some(days) => days,
        None => onboard::default_days(&loaded.rules),
    };
    let (mut store, clinic_id) = open_store(config, now)?;
    let workdir = tempfile::tempdir()?;
    let report = onboard::onboard(
        &mut store,
        &Onboarding {
            config,
            clinic_id,
            rules: &loaded.rules,
            templates: &loaded.templates,
            at,
            days,
            workdir: workdir.path(),
        },
    )?;
    let lang = lang();
    if report.customers == 0 {
        println!("{}", t!("onboard.nobody").render(lang));
        return Ok(ExitCode::SUCCESS);
    }
    let done = t!(
        "onboard.done",
        customers = report.customers,
        days,
        from = clock::format_local(report.from, tz),
        ticks = report.ticks,
        moves = report.moves,
        silenced = report.silenced
    );
    println!("{}", done.render(lang));
    let mut rows = Rows::headed(lang, &[t!("onboard.pool"), t!("onboard.customers")]);
    for (pool, count) in &report.pools {
        rows.push(vec![pool.name().render(lang), count.to_string()]);
    }
    rows.write_table(&mut std::io::stdout().lock(), None)?;
    Ok(ExitCode::SUCCESS)
}
