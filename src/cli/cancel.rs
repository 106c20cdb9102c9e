//! `recall cancel`: queued messages taken out of the queue by hand, with who
//! and why in the outreach log. Nothing a provider already has is touched.

use std::path::Path;
use std::process::ExitCode;

use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{Rows, lang, load_config, open_store};
use crate::base::clock;
use crate::base::i18n::t;
use crate::base::model::Channel;
use crate::store::outbox::CancelFilter;

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Only messages of this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only messages on this channel (sms, phone, wechat, email).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only this customer's messages (the clinic's customer id).
    #[arg(long)]
    pub customer: Option<String>,
    /// Only messages of this template.
    #[arg(long)]
    pub template: Option<String>,
    /// Every queued message (when no other filter is given).
    #[arg(long)]
    pub all: bool,
    /// Why, for the log (default: the filters given).
    #[arg(long)]
    pub reason: Option<String>,
    /// Show what would be cancelled; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How many of the messages to list.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}

/// `recall cancel`.
pub(super) fn run(config_path: &Path, args: &CancelArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let lang = lang();
    let tz = config.clinic.timezone;
    let filter = CancelFilter {
        rule: args.rule.clone(),
        channel: args
            .channel
            .as_deref()
            .map(|c| c.parse::<Channel>())
            .transpose()?,
        customer: args.customer.clone(),
        template: args.template.clone(),
    };
    if filter == CancelFilter::default() && !args.all {
        anyhow::bail!(t!("cancel.no_filter").render(lang));
    }
    let given: Vec<String> = [
        ("--rule", &args.rule),
        ("--channel", &args.channel),
        ("--customer", &args.customer),
        ("--template", &args.template),
    ]
    .into_iter()
    .filter_map(|(flag, value)| value.as_ref().map(|v| format!("{flag} {v}")))
    .collect();
    let why = args.reason.clone().unwrap_or_else(|| {
        if given.is_empty() {
            "--all".to_string()
        } else {
            given.join(" ")
        }
    });
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "?".to_string());
    let note = t!("cancel.note", user, why).render(lang);
    let (mut store, clinic_id) = open_store(&config, now)?;
    let cancelled =
        store.cancel_queued(clinic_id, &filter, &note, args.dry_run, now.timestamp())?;
    let mut out = std::io::stdout().lock();
    if !cancelled.rows.is_empty() && args.show > 0 {
        let mut rows = Rows::headed(
            lang,
            &[
                t!("column.id"),
                t!("column.customer"),
                t!("column.rule"),
                t!("column.channel"),
                t!("column.template"),
                t!("column.due"),
            ],
        );
        for row in cancelled.rows.iter().take(args.show) {
            rows.push(vec![
                row.id.to_string(),
                crate::base::output::escape(&row.customer).into_owned(),
                row.rule_id.clone(),
                row.channel.clone(),
                row.template.clone(),
                clock::format_local(row.due_at, tz),
            ]);
        }
        rows.write_table(&mut out, None)?;
    }
    let count = cancelled.rows.len();
    let summary = if args.dry_run {
        t!("cancel.would", count)
    } else {
        t!("cancel.done", count)
    };
    writeln!(out, "{}", summary.render(lang))?;
    if cancelled.handed_over > 0 {
        let left = t!("cancel.handed_over", count = cancelled.handed_over);
        writeln!(out, "{}", left.render(lang))?;
    }
    Ok(ExitCode::SUCCESS)
}
