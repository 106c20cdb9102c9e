//! `recall outcome`: what a message achieved, as staff learnt it another way.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{load_config, open_store, parse_at};
use crate::base::i18n::{IntoArg, t};
use crate::base::model::{Channel, OutreachStatus};

#[derive(Debug, Args)]
pub struct OutcomeArgs {
    /// The message id (the `id` column of `recall log`).
    pub message: i64,
    /// `responded` or `booked`.
    #[arg(long)]
    pub kind: String,
    /// When it happened (clinic time); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Who records it, kept with the outcome.
    #[arg(long, default_value = "staff")]
    pub by: String,
}

/// `recall outcome`.
pub(super) fn run(config_path: &Path, args: &OutcomeArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let (message, kind, by) = (args.message, args.kind.as_str(), &args.by);
    const KINDS: [&str; 2] = ["responded", "booked"];
    let lang = super::lang();
    if !KINDS.contains(&kind) {
        let unknown = match crate::base::diag::nearest(kind, KINDS) {
            Some(near) => t!("outcome.unknown_near", kind, near),
            None => t!("outcome.unknown", kind),
        };
        bail!(unknown.render(lang));
    }
    let config = load_config(config_path)?;
    let at = parse_at(args.at.as_deref(), &config, now)?;
    let (store, _) = open_store(&config, now)?;
    let Some(entry) = store.message(message)? else {
        bail!(t!("outcome.no_message", message).render(lang));
    };
    if entry.sent_at.is_none() {
        let status = match entry.status.parse::<OutreachStatus>() {
            Ok(status) => status.name().into_arg(),
            Err(_) => entry.status.into_arg(),
        };
        bail!(t!("outcome.never_sent", message, status).render(lang));
    }
    let recorded = store.record_outcome(
        message,
        kind,
        at.timestamp(),
        0,
        &format!("staff:{by}"),
        &format!("staff:{kind}"),
    )?;
    let said = if recorded {
        t!(
            "outcome.recorded",
            message,
            rule = &entry.rule_id,
            channel = match entry.channel.parse::<Channel>() {
                Ok(channel) => channel.name().into_arg(),
                Err(_) => entry.channel.as_str().into_arg(),
            },
            customer = &entry.customer,
            kind
        )
    } else {
        t!("outcome.already", message, kind)
    };
    println!("{}", said.render(lang));
    Ok(ExitCode::SUCCESS)
}
