//! `recall export`: everything recall holds about one customer, as JSON (a
//! data subject's access request).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{load_config, open_store};
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The clinic's customer id.
    #[arg(long)]
    pub customer: String,
}

pub(super) fn run(config_path: &Path, args: &ExportArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (store, clinic_id) = open_store(&config, now)?;
    let customer = &args.customer;
    let Some(export) = store.export_customer(clinic_id, customer)? else {
        bail!(t!("export.none", customer).render(super::lang()));
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &export)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
