//! Hot reload: a running service picks up edited configuration, rules and
//! templates without a restart, and never runs a broken edit.
//!
//! [`Live`] holds what the service is running with. A reload (a file change
//! seen by [`watch`], SIGHUP, or `recall reload`) loads everything again,
//! exactly as `recall check` does: if anything has an error, the errors are
//! logged and the running rules keep running; if not, the new set replaces
//! the old from the next tick, and a summary of what changed is logged.
//! Changes that cannot be applied to a running service (the database, the
//! clinic's code) are refused the same way, with "restart to apply".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::daemon::Loaded;
use crate::diag::Report;
use crate::dispatch::Dispatcher;
use crate::rules::Rule;

/// What the service is running with; swapped whole on a successful reload.
pub struct Live {
    loaded: RwLock<Arc<Loaded>>,
    dispatcher: RwLock<Arc<Dispatcher>>,
}

/// A successful reload.
#[derive(Debug)]
pub struct Reloaded {
    /// What changed, one line each ("rule `x` changed", ...).
    pub changes: Vec<String>,
    /// The new schedule, when it changed.
    pub schedule: Option<Vec<String>>,
    pub warnings: Report,
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum Refused {
    /// The files have errors (the same ones `recall check` prints).
    Invalid(Report),
    /// A change only a restart can apply, or senders that cannot be built.
    Other(String),
}

impl Live {
    pub fn new(loaded: Loaded, dispatcher: Dispatcher) -> Live {
        Live {
            loaded: RwLock::new(Arc::new(loaded)),
            dispatcher: RwLock::new(Arc::new(dispatcher)),
        }
    }

    /// The configuration, rules and templates in force.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The dispatcher in force.
    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        self.dispatcher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the files again and, if they are valid, puts them in force.
    pub fn reload(&self, config_path: &Path) -> Result<Reloaded, Refused> {
        let (new, warnings) = Loaded::load(config_path).map_err(Refused::Invalid)?;
        let old = self.loaded();
        if new.config.database != old.config.database {
            return Err(Refused::Other(format!(
                "paths.database changed to {}: restart the service to apply it",
                new.config.database.display()
            )));
        }
        if new.config.clinic.code != old.config.clinic.code {
            return Err(Refused::Other(
                "clinic.code changed: restart the service to apply it".into(),
            ));
        }
        // Senders are rebuilt only when their settings change, so token
        // caches and rate-limit windows survive an edit to a rule.
        let sending = |l: &Loaded| {
            format!(
                "{:?}{:?}{:?}",
                l.config.senders, l.config.channels, l.config.dispatch
            )
        };
        let dispatcher = if sending(&new) != sending(&old) {
            Some(Dispatcher::build(&new.config).map_err(|e| Refused::Other(e.to_string()))?)
        } else {
            None
        };
        let mut changes = changes(&old, &new);
        if dispatcher.is_some() {
            changes.push("senders, channels or dispatch settings changed".into());
        }
        let schedule = (new.config.schedule.ticks != old.config.schedule.ticks).then(|| {
            changes.push(format!(
                "schedule is now {}",
                new.config.schedule.ticks.join(", ")
            ));
            new.config.schedule.ticks.clone()
        });
        if new.config.clinic.name != old.config.clinic.name
            || new.config.clinic.phone != old.config.clinic.phone
        {
            changes.push("clinic name or phone changed".into());
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        if let Some(dispatcher) = dispatcher {
            *self.dispatcher.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(dispatcher);
        }
        Ok(Reloaded {
            changes,
            schedule,
            warnings,
        })
    }
}

/// What differs between two loaded sets, in words.
pub fn changes(old: &Loaded, new: &Loaded) -> Vec<String> {
    let shape = |r: &Rule| {
        format!(
            "{:?}|{:?}|{}|{}|{:?}|{}|{}|{}|{:?}",
            r.from,
            r.to,
            r.priority,
            r.condition.source,
            r.cooldown_days,
            r.holdout,
            r.attribution_days,
            r.enabled,
            r.actions
        )
    };
    let before: BTreeMap<&str, String> = old
        .rules
        .rules
        .iter()
        .map(|r| (r.id.as_str(), shape(r)))
        .collect();
    let after: BTreeMap<&str, String> = new
        .rules
        .rules
        .iter()
        .map(|r| (r.id.as_str(), shape(r)))
        .collect();
    let mut changes = Vec::new();
    for (id, rule) in &after {
        match before.get(id) {
            None => changes.push(format!("rule `{id}` added")),
            Some(old) if old != rule => changes.push(format!("rule `{id}` changed")),
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        changes.push(format!("rule `{id}` removed"));
    }
    let (old_t, new_t) = (old.templates.sources(), new.templates.sources());
    for (key, text) in new_t {
        match old_t.get(key) {
            None => changes.push(format!("template {key} added")),
            Some(old) if old != text => changes.push(format!("template {key} changed")),
            Some(_) => {}
        }
    }
    for key in old_t.keys().filter(|k| !new_t.contains_key(*k)) {
        changes.push(format!("template {key} removed"));
    }
    changes
}

/// Watches `recall.toml`, the rules folder and the templates folder, and
/// sends on `changed` when something in them changes (editor swap files
/// and the database folder are ignored). The watch lasts as long as the
/// returned watcher.
pub fn watch(
    loaded: &Loaded,
    changed: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let config = &loaded.config;
    // Events carry absolute paths: compare with absolute ones.
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let config_file = absolute(&config.path);
    let folders = [absolute(&config.rules_dir), absolute(&config.templates_dir)];
    let relevant = folders.clone();
    let watched_file = config_file.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let matters = event.paths.iter().any(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let scratch = name.starts_with('.')
                || name.ends_with('~')
                || name.ends_with(".swp")
                || name.ends_with(".tmp");
            !scratch
                && (path.file_name() == watched_file.file_name()
                    && path.parent() == watched_file.parent()
                    || relevant.iter().any(|dir| path.starts_with(dir)))
        });
        if matters {
            let _ = changed.send("files changed");
        }
    })?;
    if let Some(dir) = config_file.parent() {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    for folder in &folders {
        watcher.watch(folder, RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}
