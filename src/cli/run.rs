//! `recall run`: the service in the foreground until SIGINT or SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::load;
use crate::base::clock::Clock;
use crate::service::daemon;

/// `recall run`, on the command line's clock.
pub(super) fn run(config_path: &Path, clock: Clock) -> Result<ExitCode> {
    let loaded = load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(daemon::run(loaded, clock))?;
    Ok(ExitCode::SUCCESS)
}
