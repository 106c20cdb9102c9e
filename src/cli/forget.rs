//! `recall forget`: one customer's personal data erased (a deletion request),
//! anonymised rows kept for the statistics.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{load_config, open_store};
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The clinic's customer id.
    #[arg(long)]
    pub customer: String,
}

pub(super) fn run(config_path: &Path, args: &ForgetArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (mut store, clinic_id) = open_store(&config, now)?;
    let customer = &args.customer;
    let forgot = match crate::service::ops::forget(
        &config,
        &mut store,
        clinic_id,
        customer,
        now.timestamp(),
    )? {
        None => t!("forget.none", customer),
        Some((f, lines)) => t!(
            "forget.done",
            customer,
            id = f.customer_id,
            at = now.to_rfc3339(),
            visits = f.visits,
            orders = f.orders,
            followups = f.followups,
            moves = f.moves,
            messages = f.messages,
            call_tasks = f.call_tasks,
            lines
        ),
    };
    println!("{}", forgot.render(super::lang()));
    Ok(ExitCode::SUCCESS)
}
