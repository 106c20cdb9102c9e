//! `recall reload`: asks the running service to load its files again (SIGHUP).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use super::{load_config, open_store};
use crate::base::i18n::t;
use crate::store::LockKind;

/// `recall reload`.
pub(super) fn run(config_path: &Path, now: DateTime<Utc>) -> Result<ExitCode> {
    // Check first, so the person who edited sees the errors right here.
    let ok = super::check::run(config_path, &Default::default()) == ExitCode::SUCCESS;
    let config = load_config(config_path)?;
    let lang = super::lang();
    let (store, _) = open_store(&config, now)?;
    if store.try_lock(LockKind::Dispatch)?.is_some() {
        let database = config.database.display();
        bail!(t!("reload.no_service", database).render(lang));
    }
    let Some(pid) = store.lock_holder(LockKind::Dispatch) else {
        bail!(t!("reload.no_pid").render(lang));
    };
    signal_reload(pid)?;
    let asked = if ok {
        t!("reload.asked", pid)
    } else {
        t!("reload.asked_with_errors", pid)
    };
    println!("{}", asked.render(lang));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(unix)]
fn signal_reload(pid: u32) -> Result<()> {
    let lang = super::lang();
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| anyhow::anyhow!(t!("reload.bad_pid", pid).render(lang)))?;
    // SAFETY: kill(2) with a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let error = std::io::Error::last_os_error();
        bail!(t!("reload.signal_failed", pid, error).render(lang));
    }
    Ok(())
}

#[cfg(not(unix))]
fn signal_reload(_pid: u32) -> Result<()> {
    bail!(t!("reload.not_unix").render(super::lang()))
}
