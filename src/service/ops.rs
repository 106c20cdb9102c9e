//! Operations on a clinic's database beyond ticks and dispatch: backups,
//! retention pruning, a customer's data export and erasure, and the health
//! settings of the service. The CLI's `backup`, `prune` and `forget` and
//! the daemon call these.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::sync::watch;

use crate::base::clock::{Clock, Timestamp};
use crate::base::i18n::t;
use crate::config::Config;
use crate::senders::SenderConfig;
use crate::service::say;
use crate::store::Store;
use crate::store::privacy::{Forgotten, Pruned};

/// What `/healthz` holds the service to, on the service's clock (the
/// service starts at its now).
pub fn health(config: &Arc<Config>, clock: Clock) -> crate::service::observe::Health {
    crate::service::observe::Health {
        // Three missed passes, and never less than two minutes (a dispatch
        // pass may wait on a slow provider).
        dispatch_within: (config.schedule.dispatch_every * 3).max(Duration::from_secs(120)),
        // A tick of a large clinic takes minutes; an hour late is a problem.
        tick_grace: Duration::from_secs(3600),
        config: config.clone(),
        started: clock.now().timestamp(),
        clock,
    }
}

/// Copies the database to `target` with SQLite's online backup (consistent
/// while the service runs), through a temporary file renamed into place,
/// readable by its owner only. Refuses to overwrite without `force`.
pub fn backup(store: &Store, target: &Path, force: bool) -> Result<u64> {
    if target.exists() && !force {
        bail!(say(t!("ops.backup.exists", path = target.display())));
    }
    let name = target
        .file_name()
        .with_context(|| say(t!("ops.backup.not_a_file_name", path = target.display())))?;
    let partial = target.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let _ = std::fs::remove_file(&partial);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&partial)
            .with_context(|| say(t!("ops.backup.creating", path = partial.display())))?;
    }
    if let Err(e) = store.backup_to(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| say(t!("ops.backup.backing_up")));
    }
    std::fs::rename(&partial, target)
        .with_context(|| say(t!("ops.backup.moving", path = target.display())))?;
    set_private(target)?;
    Ok(std::fs::metadata(target)?.len())
}

#[cfg(unix)]
fn set_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| say(t!("ops.backup.private", path = path.display())))
}

#[cfg(not(unix))]
fn set_private(_: &Path) -> Result<()> {
    Ok(())
}

/// Deletes finished messages older than the retention, as of `now`.
pub fn prune(config: &Config, store: &mut Store, now: Timestamp) -> Result<Option<Pruned>> {
    let Some(keep) = config.retention else {
        return Ok(None);
    };
    let before = now - keep.as_secs() as i64;
    let pruned = store.prune_messages(before)?;
    if pruned.messages > 0 {
        // The deleted rows' old page versions must not linger in the log.
        checkpoint(store)?;
    }
    Ok(Some(pruned))
}

/// Empties the write-ahead log into the database after erasing data
/// (secure_delete zeroes what was erased in the database file itself).
fn checkpoint(store: &Store) -> Result<()> {
    if !store.checkpoint()? {
        tracing::warn!("{}", say(t!("ops.checkpoint_deferred")));
    }
    Ok(())
}

/// The service's daily retention pass: at start, then every 24 hours, as of
/// the service clock's now.
pub async fn prune_daily(
    config: Arc<Config>,
    keep: Duration,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let config = config.clone();
        let pass = tokio::task::spawn_blocking(move || -> Result<Option<Pruned>> {
            let mut store = Store::open(&config.database)?;
            prune(&config, &mut store, clock.now().timestamp())
        })
        .await;
        match pass {
            Ok(Ok(Some(pruned))) if pruned.messages > 0 => tracing::info!(
                messages = pruned.messages,
                outcomes = pruned.outcomes,
                call_tasks = pruned.call_tasks,
                keep = %humantime::format_duration(keep),
                "{}",
                say(t!("ops.pruned"))
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{}", say(t!("ops.prune_failed")))
            }
            Err(e) => tracing::error!(error = %e, "{}", say(t!("ops.prune_panicked"))),
        }
    }
}

/// Erases a customer's personal data in the database and in the `log`
/// senders' files, as of `now`. `None` if the clinic has no such customer.
pub fn forget(
    config: &Config,
    store: &mut Store,
    clinic_id: i64,
    external_id: &str,
    now: Timestamp,
) -> Result<Option<(Forgotten, usize)>> {
    let Some(forgotten) = store.forget_customer(clinic_id, external_id, now)? else {
        return Ok(None);
    };
    checkpoint(store)?;
    let mut lines = 0;
    for file in log_files(config) {
        lines += scrub_log_file(&file, external_id)
            .with_context(|| say(t!("ops.forget.file", path = file.display())))?;
    }
    Ok(Some((forgotten, lines)))
}

/// The JSON-lines files of `log` senders: they hold message content.
fn log_files(config: &Config) -> Vec<PathBuf> {
    let base = config
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    config
        .senders
        .iter()
        .filter_map(
            |(name, entry)| match SenderConfig::parse(&config.path, name, entry) {
                Ok(SenderConfig::Log(log)) => log.file.as_ref().map(|f| base.join(f)),
                _ => None,
            },
        )
        .filter(|f| f.exists())
        .collect()
}

/// Removes the lines of one customer from a log sender's file, in place
/// (the running service keeps appending to the same file). Returns how
/// many lines were removed.
fn scrub_log_file(path: &Path, external_id: &str) -> Result<usize> {
    let text = std::fs::read_to_string(path)?;
    let mut kept = String::with_capacity(text.len());
    let mut removed = 0;
    for line in text.lines() {
        let customer = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v.get("customer")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            });
        if customer.as_deref() == Some(external_id) {
            removed += 1;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if removed > 0 {
        std::fs::write(path, kept)?;
    }
    Ok(removed)
}
