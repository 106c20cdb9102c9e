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

use crate::base::diag::Report;
use crate::base::i18n::{Text, list, t};
use crate::dispatch::Dispatcher;
use crate::rules::Rule;
use crate::setup::Loaded;

/// What the service is running with; swapped whole on a successful reload.
pub struct Live {
    loaded: RwLock<Arc<Loaded>>,
    dispatcher: RwLock<Arc<Dispatcher>>,
}

/// A successful reload.
#[derive(Debug)]
pub struct Reloaded {
    /// What changed, one line each ("rule `x` changed: when", ...).
    pub changes: Vec<Text>,
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
    Other(Text),
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
            let database = new.config.database.display();
            return Err(Refused::Other(t!("service.reload.database", database)));
        }
        if new.config.clinic.code != old.config.clinic.code {
            return Err(Refused::Other(t!("service.reload.clinic_code")));
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
            Some(
                crate::senders::dispatcher(&new.config)
                    .map_err(|e| Refused::Other(t!("service.reload.senders_failed", error = e)))?,
            )
        } else {
            None
        };
        let mut changes = changes(&old, &new);
        if dispatcher.is_some() {
            changes.push(t!("service.reload.changed.sending"));
        }
        let schedule = (new.config.schedule.ticks != old.config.schedule.ticks).then(|| {
            let ticks = new.config.schedule.ticks.join(", ");
            changes.push(t!("service.reload.changed.schedule", ticks));
            new.config.schedule.ticks.clone()
        });
        if new.config.clinic.name != old.config.clinic.name
            || new.config.clinic.phone != old.config.clinic.phone
        {
            changes.push(t!("service.reload.changed.clinic"));
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

/// A rule's settings as named fields, for saying which of them changed.
fn fields(r: &Rule) -> Vec<(&'static str, String)> {
    let actions: Vec<String> = r
        .actions
        .iter()
        .map(|a| format!("{}/{} +{:?} {:?}", a.channel, a.template, a.delay, a.stale))
        .collect();
    vec![
        ("description", r.description.clone()),
        ("from", format!("{:?}", r.from)),
        ("to", format!("{:?}", r.to)),
        ("priority", r.priority.to_string()),
        ("when", r.condition.source.clone()),
        ("cooldown", format!("{:?}", r.cooldown_days)),
        ("holdout", r.holdout.to_string()),
        ("attribution_days", r.attribution_days.to_string()),
        ("enabled", r.enabled.to_string()),
        ("actions", actions.join(", ")),
    ]
}

/// What differs between two loaded sets, in words: rules (and which of
/// their settings), templates, treatment cycles and the churn model's
/// settings.
pub fn changes(old: &Loaded, new: &Loaded) -> Vec<Text> {
    let before: BTreeMap<&str, &Rule> =
        old.rules.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let after: BTreeMap<&str, &Rule> = new.rules.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut changes = Vec::new();
    for (id, rule) in &after {
        match before.get(id) {
            None => changes.push(t!("service.reload.changed.rule_added", id)),
            Some(old) => {
                let which: Vec<&str> = fields(old)
                    .into_iter()
                    .zip(fields(rule))
                    .filter(|(a, b)| a.1 != b.1)
                    .map(|(a, _)| a.0)
                    .collect();
                if !which.is_empty() {
                    let fields = list(which, t!("sep.list"));
                    changes.push(t!("service.reload.changed.rule", id, fields));
                }
            }
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        changes.push(t!("service.reload.changed.rule_removed", id));
    }
    let (old_t, new_t) = (old.templates.sources(), new.templates.sources());
    for (key, text) in new_t {
        match old_t.get(key) {
            None => changes.push(t!("service.reload.changed.template_added", key)),
            Some(old) if old != text => {
                changes.push(t!("service.reload.changed.template", key));
            }
            Some(_) => {}
        }
    }
    for key in old_t.keys().filter(|k| !new_t.contains_key(*k)) {
        changes.push(t!("service.reload.changed.template_removed", key));
    }
    let (old_c, new_c) = (&old.config.clinic.cycles.0, &new.config.clinic.cycles.0);
    for (name, days) in new_c {
        match old_c.get(name) {
            None => changes.push(t!("service.reload.changed.cycle_added", name, days)),
            Some(was) if was != days => {
                changes.push(t!("service.reload.changed.cycle", name, was, days));
            }
            Some(_) => {}
        }
    }
    for name in old_c.keys().filter(|k| !new_c.contains_key(*k)) {
        changes.push(t!("service.reload.changed.cycle_removed", name));
    }
    let mut model = Vec::new();
    let (old_m, new_m) = (&old.config.model, &new.config.model);
    if old_m.refit != new_m.refit {
        model.push(format!("refit {:?} → {:?}", old_m.refit, new_m.refit));
    }
    if old_m.min_customers != new_m.min_customers {
        model.push(format!(
            "min_customers {} → {}",
            old_m.min_customers, new_m.min_customers
        ));
    }
    let as_map = |c: &crate::predict::score::ScoreConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old_s, new_s) = (
        as_map(&old.config.clinic.scoring),
        as_map(&new.config.clinic.scoring),
    );
    for (key, value) in &new_s {
        if old_s.get(key) != Some(value) {
            let was = old_s
                .get(key)
                .map_or_else(|| "-".to_string(), |v| v.to_string());
            model.push(format!("{key} {was} → {value}"));
        }
    }
    if !model.is_empty() {
        let settings = list(model, t!("sep.comma"));
        changes.push(t!("service.reload.changed.model", settings));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(path: &Path, from: &str, to: &str) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    }

    /// A clinic folder as `recall init` makes it.
    fn clinic() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        crate::cli::init(&crate::cli::InitArgs {
            dir: dir.path().to_path_buf(),
            demo: false,
            customers: 0,
            name: "测试诊所".into(),
            seed: 1,
        })
        .unwrap();
        dir
    }

    #[test]
    fn changes_name_cycles_model_settings_and_rule_descriptions() {
        let dir = clinic();
        let config = dir.path().join("recall.toml");
        let load = || Loaded::load(&config).map(|(l, _)| l).unwrap();
        let old = load();
        assert_eq!(changes(&old, &load()), [], "nothing changed");

        edit(&config, "\"水光针\" = 30", "\"水光针\" = 45");
        edit(&config, "churn_window_days = 90", "churn_window_days = 120");
        edit(&config, "refit = \"0 3 * * 1\"", "refit = \"0 4 * * 1\"");
        let rules = dir.path().join("rules/01-new.toml");
        let text = std::fs::read_to_string(&rules).unwrap();
        let description = text
            .lines()
            .find(|l| l.starts_with("description = "))
            .unwrap()
            .to_string();
        edit(&rules, &description, "description = \"改过的说明\"");
        let found: Vec<String> = changes(&old, &load())
            .into_iter()
            .map(|c| c.render(crate::base::i18n::Lang::En))
            .collect();
        assert!(
            found.contains(&"rule `new_to_customer` changed: description".to_string()),
            "{found:#?}"
        );
        assert!(
            found.contains(&"[cycles] `水光针`: 30 → 45 days".to_string()),
            "{found:#?}"
        );
        let model = found
            .iter()
            .find(|c| c.starts_with("[model] changed: "))
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert!(model.contains("refit"), "{model}");
        assert!(model.contains("churn_window_days 90"), "{model}");
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_reload_refuses_rules_others_can_write_and_keeps_the_running_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = clinic();
        let config = dir.path().join("recall.toml");
        let (loaded, _) = Loaded::load(&config).unwrap();
        let dispatcher = crate::senders::dispatcher(&loaded.config).unwrap();
        let live = Live::new(loaded, dispatcher);
        let running = live.loaded();
        let rules = dir.path().join("rules/01-new.toml");
        edit(&rules, "priority = 100", "priority = 101");
        std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o666)).unwrap();
        let Err(Refused::Invalid(report)) = live.reload(&config) else {
            panic!("a rule file anyone can write was loaded");
        };
        let lines = report.to_lines().join("\n");
        assert!(
            lines.contains(&format!("chmod go-w {}", rules.display())),
            "{lines}"
        );
        assert!(
            Arc::ptr_eq(&running, &live.loaded()),
            "the running rules stay"
        );
        std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(live.reload(&config).is_ok(), "after the chmod it loads");
    }
}
