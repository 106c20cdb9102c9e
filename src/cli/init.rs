//! `recall init`: a new clinic folder (recall.toml, rules, templates, the
//! database), with synthetic customers and their history under `--demo`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{ensure_clinic, lang, load, wall_clock};
use crate::base::i18n::t;
use crate::base::perm;
use crate::engine::{self, Engine, TickOptions};
use crate::setup::{Loaded, scaffold};
use crate::store::Store;
use crate::store::shared::SharedStore;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to create (it may exist but must not hold a recall.toml).
    pub dir: PathBuf,
    /// Add synthetic customers with months of history and outreach.
    #[arg(long)]
    pub demo: bool,
    /// Number of synthetic customers for --demo.
    #[arg(long, default_value_t = 3000)]
    pub customers: usize,
    /// The clinic's name.
    #[arg(long, default_value = "示例医美诊所")]
    pub name: String,
    /// Seed for the synthetic data.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

/// `recall init` at the wall clock's now (the tests' way in).
pub fn init(args: &InitArgs) -> Result<()> {
    run(args, wall_clock().now())
}

/// `recall init`: `now` is when the clinic is created and where the demo's
/// history ends.
pub(super) fn run(args: &InitArgs, now: DateTime<Utc>) -> Result<()> {
    let lang = lang();
    let config_path = args.dir.join("recall.toml");
    if config_path.exists() {
        bail!(t!("init.exists", path = config_path.display()).render(lang));
    }
    // Modes set here, not left to the umask: the service reloads these
    // files, so whoever could write them would write to customers.
    perm::create_dir(&args.dir, perm::FOLDER)
        .with_context(|| t!("init.creating", path = args.dir.display()).render(lang))?;
    for (path, text) in scaffold::FILES {
        let target = args.dir.join(path);
        if target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            perm::create_dir(parent, perm::FOLDER)
                .with_context(|| t!("init.creating", path = parent.display()).render(lang))?;
        }
        perm::write_new(&target, text, perm::FILE)
            .with_context(|| t!("init.writing", path = target.display()).render(lang))?;
    }
    perm::write_new(&config_path, &scaffold::config(&args.name), perm::FILE)
        .with_context(|| t!("init.writing", path = config_path.display()).render(lang))?;
    let loaded = load(&config_path)?;
    let config = &loaded.config;
    let store = Store::create(&config.database)?;
    let clinic_id = ensure_clinic(&store, config, now)?;
    println!(
        "{}",
        t!("init.created", dir = args.dir.display()).render(lang)
    );
    if args.demo {
        populate_demo(store, &loaded, clinic_id, args, now)?;
    }
    println!("{}", t!("init.next", dir = args.dir.display()).render(lang));
    Ok(())
}

/// Fills a new database with synthetic customers and replays the shipped
/// rules over their last 120 days.
fn populate_demo(
    mut store: Store,
    loaded: &Loaded,
    clinic_id: i64,
    args: &InitArgs,
    now: DateTime<Utc>,
) -> Result<()> {
    const HISTORY_DAYS: i64 = 540;
    const REPLAY_DAYS: i64 = 120;
    let tz = loaded.config.clinic.timezone;
    let mut ingest = store.ingest()?;
    crate::demo::populate(
        &mut ingest,
        clinic_id,
        args.customers,
        HISTORY_DAYS,
        now,
        tz,
        args.seed,
    )?;
    ingest.commit()?;
    let lang = lang();
    let added = t!(
        "init.demo.added",
        customers = args.customers,
        days = HISTORY_DAYS
    );
    println!("{}", added.render(lang));
    println!(
        "{}",
        t!("init.demo.replaying", days = REPLAY_DAYS).render(lang)
    );
    let dispatcher = crate::senders::dispatcher(&loaded.config)?;
    let store: SharedStore = Arc::new(std::sync::Mutex::new(store));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let engine = Engine::new(
        &loaded.config.clinic,
        clinic_id,
        &loaded.rules,
        &loaded.templates,
    )
    .with_fallbacks(loaded.config.fallbacks());
    let (mut moves, mut messages) = (0, 0);
    for day in crate::demo::replay_days(now, tz, REPLAY_DAYS) {
        let report = {
            let mut guard = store
                .lock()
                .map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
            if let Err(e) = crate::churn::refit_if_due(
                &guard,
                clinic_id,
                &loaded.config.clinic,
                &loaded.config.model,
                day,
                day.timestamp(),
            ) {
                tracing::warn!(error = %e, "churn model refit failed; the last fit stays in use");
            }
            engine::tick(&mut guard, &engine, TickOptions::at(day))?
        };
        moves += report.moves;
        messages += report.messages;
        let pass =
            runtime.block_on(dispatcher.pass(&store, crate::demo::dispatch_clock(day), &|| false));
        pass.sent?;
        pass.polled?;
    }
    println!("{}", t!("init.demo.replayed", moves, messages).render(lang));
    Ok(())
}
