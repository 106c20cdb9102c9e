//! `recall backup`: an online copy of the database, readable by its owner only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{load_config, open_store};
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the copy goes.
    pub file: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub(super) fn run(config_path: &Path, args: &BackupArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (store, _) = open_store(&config, now)?;
    let bytes = crate::service::ops::backup(&store, &args.file, args.force)?;
    let backed_up = t!(
        "backup.done",
        database = config.database.display(),
        file = args.file.display(),
        megabytes = format!("{:.1}", bytes as f64 / 1_048_576.0)
    );
    println!("{}", backed_up.render(super::lang()));
    Ok(ExitCode::SUCCESS)
}
