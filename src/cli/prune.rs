//! `recall prune`: finished messages older than `[retention] messages` deleted.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{load_config, open_store, parse_at};
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Prune as of this time (clinic time); default now.
    #[arg(long)]
    pub at: Option<String>,
}

pub(super) fn run(config_path: &Path, args: &PruneArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (mut store, _) = open_store(&config, now)?;
    let at = parse_at(args.at.as_deref(), &config, now)?;
    let pruned = match crate::service::ops::prune(&config, &mut store, at.timestamp())? {
        None => t!("prune.no_retention", path = config.path.display()),
        Some(p) => t!(
            "prune.done",
            messages = p.messages,
            outcomes = p.outcomes,
            call_tasks = p.call_tasks
        ),
    };
    println!("{}", pruned.render(super::lang()));
    Ok(ExitCode::SUCCESS)
}
