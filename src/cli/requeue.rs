//! `recall requeue`: failed messages back in the queue with a fresh retry budget.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{load_config, open_store};
use crate::base::clock;
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// Only messages on this channel (sms, phone, wechat, email).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only messages that failed at or after this time (clinic time).
    #[arg(long)]
    pub since: Option<String>,
}

pub(super) fn run(config_path: &Path, args: &RequeueArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (mut store, _) = open_store(&config, now)?;
    let channel = args
        .channel
        .as_deref()
        .map(|c| c.parse::<crate::base::model::Channel>())
        .transpose()?;
    let since = args
        .since
        .as_deref()
        .map(|s| clock::parse_time(s, config.clinic.timezone, now).map(|t| t.timestamp()))
        .transpose()?;
    let count = store.requeue_failed(channel, since, now.timestamp())?;
    println!("{}", t!("requeue.done", count).render(super::lang()));
    Ok(ExitCode::SUCCESS)
}
