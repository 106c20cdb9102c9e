//! Operations commands: `backup`, `prune`, `requeue`, `export`, `forget`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::Utc;
use clap::Subcommand;

use super::{load_config, open_store, parse_at};

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Copy the database to FILE with SQLite's online backup (safe while the
    /// service runs); the copy is readable by its owner only.
    Backup {
        /// Where the copy goes.
        file: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Delete finished messages older than `[retention] messages` (the
    /// service does this daily); pool moves are kept.
    Prune {
        /// Prune as of this time (clinic time); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Put `failed` messages back in the queue, due now, with a fresh retry
    /// budget: after a provider outage that outlasted `[dispatch]
    /// give_up_after`. The running service sends them at its next round.
    Requeue {
        /// Only messages on this channel (sms, phone, wechat, email).
        #[arg(long)]
        channel: Option<String>,
        /// Only messages that failed at or after this time (clinic time).
        #[arg(long)]
        since: Option<String>,
    },
    /// Print everything recall holds about one customer as JSON (a data
    /// subject's access request). Personal data: handle with care.
    Export {
        /// The clinic's customer id.
        #[arg(long)]
        customer: String,
    },
    /// Erase one customer's personal data (a deletion request), keeping only
    /// anonymised rows so the report's counts do not change. Cannot be undone.
    Forget {
        /// The clinic's customer id.
        #[arg(long)]
        customer: String,
    },
}

pub fn run(config_path: &Path, command: OpsCommand) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (mut store, clinic_id) = open_store(&config)?;
    match command {
        OpsCommand::Backup { file, force } => {
            let bytes = crate::ops::backup(&store, &file, force)?;
            println!(
                "backed up {} to {} ({:.1} MB, mode 0600)",
                config.database.display(),
                file.display(),
                bytes as f64 / 1_048_576.0
            );
        }
        OpsCommand::Prune { at } => {
            let at = parse_at(at.as_deref(), &config)?;
            match crate::ops::prune(&config, &mut store, at.timestamp())? {
                None => println!(
                    "no [retention] in {}: messages are kept for ever",
                    config.path.display()
                ),
                Some(p) => println!(
                    "pruned {} finished messages, {} outcomes, {} call tasks",
                    p.messages, p.outcomes, p.call_tasks
                ),
            }
        }
        OpsCommand::Requeue { channel, since } => {
            let channel = channel
                .map(|c| c.parse::<crate::model::Channel>())
                .transpose()?;
            let since = since
                .map(|s| parse_at(Some(&s), &config).map(|t| t.timestamp()))
                .transpose()?;
            let now = Utc::now().timestamp();
            let count = store.requeue_failed(channel, since, now)?;
            println!("requeued {count} failed messages; they are due now");
        }
        OpsCommand::Export { customer } => {
            let Some(export) = store.export_customer(clinic_id, &customer)? else {
                bail!("no customer `{customer}` in this clinic");
            };
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &export)?;
            writeln!(out)?;
        }
        OpsCommand::Forget { customer } => {
            match crate::ops::forget(&config, &mut store, clinic_id, &customer)? {
                None => println!(
                    "no customer `{customer}` in this clinic: nothing to forget (already forgotten?)"
                ),
                Some((f, lines)) => println!(
                    "forgot customer `{customer}` (now forgotten-{}) at {}: personal data erased from \
                     {} visits, {} orders, {} follow-ups, {} moves, {} messages, {} call tasks \
                     and {lines} outbox file lines; anonymised rows kept for the statistics",
                    f.customer_id,
                    Utc::now().to_rfc3339(),
                    f.visits,
                    f.orders,
                    f.followups,
                    f.moves,
                    f.messages,
                    f.call_tasks
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
