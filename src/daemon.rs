//! `recall run`: the long-running service.
//!
//! Three tasks share one shutdown signal:
//! - the **scheduler** (tokio-cron-scheduler) turns each cron expression of
//!   `[schedule] ticks` into a trigger on a channel of capacity one;
//! - the **tick worker** takes triggers one at a time and runs the tick on
//!   the blocking pool, so ticks never overlap; at start it runs a catch-up
//!   tick when the last tick is older than the schedule's most recent slot,
//!   and finishes an interrupted tick;
//! - the **dispatcher** drains due messages every `dispatch_every`, and
//!   right after each tick.
//!
//! A database another process holds past the busy timeout is waited out:
//! start-up steps and the dispatcher's requeue before its first round try
//! again with backoff, a failed tick is retried with backoff (not left for
//! the next slot), and a failed dispatch round gives its messages back.
//!
//! SIGINT or SIGTERM: the scheduler stops, a running tick stops after its
//! current batch (it resumes at the next start), the dispatcher finishes the
//! message in flight and hands the rest of its batch back to the queue.
//! SIGHUP, `recall reload` or an edit of the files: a reload (see
//! [`crate::reload`]); a broken edit changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::clock::{self, Clock};
use crate::config::{self, Config};
use crate::dispatch::{Dispatcher, SharedStore};
use crate::engine::{self, Engine, TickEnd, TickOptions, TickReport};
use crate::reload::{self, Live, Refused};
use crate::rules::RuleSet;
use crate::store::{LockKind, Store, StoreError};
use crate::templates::TemplateSet;

/// Everything loaded and checked before the service starts.
pub struct Loaded {
    pub config: Config,
    pub rules: Arc<RuleSet>,
    pub templates: Arc<TemplateSet>,
}

impl Loaded {
    /// Reads `recall.toml`, then the templates, then the rules (which are
    /// checked against the templates and the configured channels). Returns
    /// everything with its warnings, or every error found.
    pub fn load(config_path: &std::path::Path) -> crate::diag::Checked<Loaded> {
        let config = config::load(config_path)?;
        let mut report = crate::diag::Report::default();
        let templates = match crate::templates::load(&config.templates_dir) {
            Ok((templates, warnings)) => {
                report.extend(warnings);
                Some(templates)
            }
            Err(errors) => {
                report.extend(errors);
                None
            }
        };
        let rules = match crate::rules::load(&config.rules_dir, templates.as_ref()) {
            Ok((rules, warnings)) => {
                report.extend(warnings);
                Some(rules)
            }
            Err(errors) => {
                report.extend(errors);
                None
            }
        };
        match (templates, rules) {
            (Some(templates), Some(rules)) if !report.has_errors() => {
                for rule in rules.rules.iter().filter(|r| r.enabled) {
                    for action in &rule.actions {
                        if !config.channels.contains_key(&action.channel) {
                            report.push(
                                crate::diag::Diagnostic::warning(
                                    &rule.origin.file,
                                    Some(action.span.clone()),
                                    format!(
                                        "rule `{}` sends on {}, which has no sender: its messages will wait in the queue",
                                        rule.id, action.channel
                                    ),
                                )
                                .zh(format!(
                                    "规则 `{}` 通过 {} 渠道发送，但该渠道没有配置发送方：消息会一直留在队列里",
                                    rule.id, action.channel
                                ))
                                .hint2(
                                    format!(
                                        "add [channels.{}] with a sender to {}",
                                        action.channel,
                                        config.path.display()
                                    ),
                                    format!(
                                        "请在 {} 中添加带发送方的 [channels.{}]",
                                        config.path.display(),
                                        action.channel
                                    ),
                                ),
                            );
                        }
                        let fallback = config
                            .channels
                            .get(&action.channel)
                            .and_then(|p| p.fallback);
                        if let Some(fallback) = fallback
                            && !templates.has(fallback, &action.template)
                        {
                            let template = &action.template;
                            report.push(
                                crate::diag::Diagnostic::warning(
                                    &rule.origin.file,
                                    Some(action.span.clone()),
                                    format!(
                                        "rule `{}` sends {template} on {}, which falls back to {fallback}, but there is no templates/{fallback}/{template}.txt: its messages cannot fall back",
                                        rule.id, action.channel
                                    ),
                                )
                                .zh(format!(
                                    "规则 `{}` 通过 {} 发送 {template}，该渠道的备用渠道是 {fallback}，但没有 templates/{fallback}/{template}.txt：消息无法改用备用渠道",
                                    rule.id, action.channel
                                ))
                                .hint2(
                                    format!("write templates/{fallback}/{template}.txt"),
                                    format!("请编写 templates/{fallback}/{template}.txt"),
                                ),
                            );
                        }
                    }
                }
                Ok((
                    Loaded {
                        config,
                        rules: Arc::new(rules),
                        templates: Arc::new(templates),
                    },
                    report,
                ))
            }
            _ => Err(report),
        }
    }
}

/// Runs until SIGINT or SIGTERM; reloads on SIGHUP and when the files change.
pub async fn run(loaded: Loaded) -> Result<()> {
    let mut signals = Signals::install()?;
    let config_path = loaded.config.path.clone();
    let config = Arc::new(loaded.config.clone());
    let tz = config.clinic.timezone;
    // Another process holding the database past the busy timeout makes the
    // service wait and try again, not exit.
    let Some((store, clinic_id)) = until_free(&mut signals, "opening the database", || {
        let store = Store::open(&config.database)?;
        let clinic_id = store.ensure_clinic(
            &config.clinic.code,
            &config.clinic.name,
            tz.name(),
            Utc::now().timestamp(),
        )?;
        Ok((store, clinic_id))
    })
    .await?
    else {
        tracing::info!("stopped before starting");
        return Ok(());
    };
    // One dispatcher per database: a second service on the same database
    // would requeue the first one's messages in flight.
    let Some(dispatch_store) = until_free(&mut signals, "opening the database", || {
        Store::open(&config.database)
    })
    .await?
    else {
        tracing::info!("stopped before starting");
        return Ok(());
    };
    let mut dispatch_lock = dispatch_store
        .try_lock(LockKind::Dispatch)?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "another recall service is already running on {}; stop it first",
                config.database.display()
            )
        })?;
    // `recall reload` finds the service by this.
    if let Err(e) = dispatch_lock.record_pid() {
        tracing::warn!(error = %e, "could not record the service's process id; `recall reload` will not find it");
    }
    let dispatch_store: SharedStore = Arc::new(std::sync::Mutex::new(dispatch_store));
    let dispatcher = Dispatcher::build(&config)?;
    let routed = dispatcher.channels();
    tracing::info!(
        clinic = %config.clinic.name,
        database = %config.database.display(),
        rules = loaded.rules.rules.len(),
        templates = loaded.templates.len(),
        channels = ?routed.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "recall is running"
    );
    let live = Arc::new(Live::new(loaded, dispatcher));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stopping = Arc::new(AtomicBool::new(false));
    let (trigger_tx, trigger_rx) = mpsc::channel::<&'static str>(1);
    let ticked = Arc::new(Notify::new());

    // Catch-up: a missed slot, or an interrupted tick, means a tick now.
    let Some((last, unfinished)) = until_free(&mut signals, "reading the last tick", || {
        Ok((store.last_tick()?, store.unfinished_tick()?))
    })
    .await?
    else {
        tracing::info!("stopped before starting");
        return Ok(());
    };
    let slot = latest_slot(&config, Utc::now());
    if let Some(reason) = catch_up_reason(last.as_ref().map(|t| t.at), unfinished.is_some(), slot) {
        tracing::info!(reason, "catch-up tick");
        let _ = trigger_tx.try_send("catch-up");
    }
    let tick_store = store;

    let mut scheduler = JobScheduler::new()
        .await
        .context("starting the scheduler")?;
    let mut jobs = schedule(&scheduler, &config.schedule.ticks, tz, &trigger_tx).await?;
    scheduler.start().await.context("starting the scheduler")?;

    let tick_task = tokio::spawn(tick_worker(
        TickContext {
            live: live.clone(),
            clinic_id,
            stopping: stopping.clone(),
            ticked: ticked.clone(),
        },
        tick_store,
        trigger_rx,
        shutdown_rx.clone(),
    ));
    let dispatch_task = tokio::spawn(dispatch_loop(
        live.clone(),
        dispatch_store,
        stopping.clone(),
        ticked,
        shutdown_rx.clone(),
    ));

    // Operations: the health check and metrics, and retention pruning.
    let observe = match config.metrics {
        Some(listen) => Some(
            crate::observe::start(
                listen,
                config.database.clone(),
                crate::ops::health(&config, Utc::now().timestamp()),
                shutdown_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let prune_task = config.retention.map(|keep| {
        tokio::spawn(crate::ops::prune_daily(
            config.clone(),
            keep,
            shutdown_rx.clone(),
        ))
    });

    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel::<&'static str>();
    let _watcher = match reload::watch(&live.loaded(), reload_tx.clone()) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration, rules and templates; reload with SIGHUP or `recall reload`");
            None
        }
    };
    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => break,
                Signal::Reload => { let _ = reload_tx.send("SIGHUP"); }
            },
            Some(cause) = reload_rx.recv() => {
                // Editors write in several steps: let them finish.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while reload_rx.try_recv().is_ok() {}
                match live.reload(&config_path) {
                    Ok(reloaded) => {
                        let lang = crate::cli::lang();
                        if reloaded.warnings.warnings() > 0 {
                            tracing::warn!("{}", reloaded.warnings.render_in(lang, false).trim_end());
                        }
                        if let Some(ticks) = &reloaded.schedule {
                            for job in jobs.drain(..) {
                                let _ = scheduler.remove(&job).await;
                            }
                            jobs = schedule(&scheduler, ticks, live.loaded().config.clinic.timezone, &trigger_tx).await?;
                        }
                        let changes: Vec<&str> =
                            reloaded.changes.iter().map(|c| c.text(lang)).collect();
                        match (changes.is_empty(), lang) {
                            (true, crate::diag::Lang::En) => tracing::info!(cause, "reloaded: nothing changed"),
                            (true, crate::diag::Lang::Zh) => tracing::info!(cause, "已重新加载：没有任何改动"),
                            (false, crate::diag::Lang::En) => tracing::info!(cause, changes = %changes.join("; "), "reloaded: the new rules apply from the next tick"),
                            (false, crate::diag::Lang::Zh) => tracing::info!(cause, changes = %changes.join("；"), "已重新加载：新规则从下一次评估起生效"),
                        }
                    }
                    Err(Refused::Invalid(report)) => {
                        // The same text `recall check` prints: place, the
                        // line with a caret, hints, in the chosen language.
                        let lang = crate::cli::lang();
                        tracing::error!("\n{}", report.render_in(lang, false).trim_end());
                        match lang {
                            crate::diag::Lang::En => tracing::error!(cause, errors = report.errors(),
                                "the edit has errors; the rules that were running keep running (`recall check` shows the same errors)"),
                            crate::diag::Lang::Zh => tracing::error!(cause, errors = report.errors(),
                                "改动有错误：正在运行的规则继续运行（`recall check` 显示同样的错误）"),
                        }
                    }
                    Err(Refused::Other(why)) => {
                        tracing::error!(cause, %why, "the change was not applied; the running configuration stays");
                    }
                }
            }
        }
    }
    tracing::info!("shutting down: finishing the current step");
    stopping.store(true, Ordering::SeqCst);
    let _ = shutdown_tx.send(true);
    let _ = scheduler.shutdown().await;
    drop(trigger_tx);
    let (ticks, dispatch) = tokio::join!(tick_task, dispatch_task);
    for task in [observe, prune_task].into_iter().flatten() {
        let _ = task.await;
    }
    ticks.context("tick worker")??;
    dispatch.context("dispatcher")??;
    drop(dispatch_lock);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Runs a store step at start-up until it succeeds: while another process
/// holds the database past the busy timeout, waits (1 s, doubling, at most
/// a minute apart) and tries again, logging each wait. `None` if SIGINT or
/// SIGTERM came while waiting; other errors end the start.
async fn until_free<T>(
    signals: &mut Signals,
    what: &'static str,
    mut step: impl FnMut() -> Result<T, StoreError>,
) -> Result<Option<T>> {
    let mut wait = Duration::from_secs(1);
    let mut tries = 0u32;
    loop {
        match step() {
            Ok(value) => {
                if tries > 0 {
                    tracing::info!(what, tries, "the database is free again; going on");
                }
                return Ok(Some(value));
            }
            Err(e) if e.is_busy() => {
                tries += 1;
                tracing::warn!(what, tries, retry_in = ?wait, error = %e,
                    "another process holds the database; waiting, then trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    signal = signals.next() => if let Signal::Stop = signal {
                        return Ok(None);
                    },
                }
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The longest wait between tries of a store step at start-up and before
/// the dispatcher's first round.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// A failed tick is tried again after this, doubling up to
/// [`MAX_TICK_RETRY`], instead of waiting for the next scheduled slot.
const FIRST_TICK_RETRY: Duration = Duration::from_secs(5);
const MAX_TICK_RETRY: Duration = Duration::from_secs(30 * 60);

/// Adds a scheduler job per cron expression; each sends a tick trigger.
async fn schedule(
    scheduler: &JobScheduler,
    ticks: &[String],
    tz: chrono_tz::Tz,
    trigger: &mpsc::Sender<&'static str>,
) -> Result<Vec<uuid::Uuid>> {
    let mut jobs = Vec::new();
    for cron in ticks {
        let trigger = trigger.clone();
        let job = Job::new_async_tz(cron.as_str(), tz, move |_, _| {
            let trigger = trigger.clone();
            Box::pin(async move {
                if trigger.try_send("schedule").is_err() {
                    tracing::info!("a tick is already waiting; this slot is covered by it");
                }
            })
        })
        .with_context(|| format!("scheduling `{cron}`"))?;
        jobs.push(
            scheduler
                .add(job)
                .await
                .context("adding a scheduled tick")?,
        );
        if let Some(next) = next_slot(cron, tz, Utc::now()) {
            tracing::info!(schedule = %cron, next = %clock::format_local(next.timestamp(), tz), "next scheduled tick");
        }
    }
    Ok(jobs)
}

/// Why a tick should run at start, if it should.
pub fn catch_up_reason(
    last_tick: Option<i64>,
    unfinished: bool,
    latest_slot: Option<DateTime<Utc>>,
) -> Option<&'static str> {
    if unfinished {
        return Some("an interrupted tick is waiting to be finished");
    }
    match (last_tick, latest_slot) {
        (None, _) => Some("no tick has run yet"),
        (Some(last), Some(slot)) if last < slot.timestamp() => {
            Some("the last tick is older than the most recent scheduled slot")
        }
        _ => None,
    }
}

/// The most recent scheduled slot at or before `now`, over all schedules.
pub fn latest_slot(config: &Config, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tz = config.clinic.timezone;
    config
        .schedule
        .ticks
        .iter()
        .filter_map(|cron| config::previous_slot(cron, tz, now))
        .max()
}

/// The next slot of one schedule after `now`.
pub fn next_slot(cron: &str, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (_, parsed) = config::parse_cron(cron).ok()?;
    parsed
        .find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

struct TickContext {
    /// Read at every tick, so a reload applies from the next one.
    live: Arc<Live>,
    clinic_id: i64,
    stopping: Arc<AtomicBool>,
    ticked: Arc<Notify>,
}

async fn tick_worker(
    ctx: TickContext,
    mut store: Store,
    mut triggers: mpsc::Receiver<&'static str>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let ctx = Arc::new(ctx);
    // After a failed tick: when to try again, and the wait after that.
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    loop {
        let retry_at = retry.map(|(at, _)| at);
        let cause = tokio::select! {
            cause = triggers.recv() => match cause { Some(c) => c, None => return Ok(()) },
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)),
                if retry_at.is_some() => "retry after a failed tick",
            _ = shutdown.changed() => return Ok(()),
        };
        if ctx.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let at = Utc::now();
        let job = ctx.clone();
        let loaded = ctx.live.loaded();
        let tz = loaded.config.clinic.timezone;
        let (returned, result) = tokio::task::spawn_blocking(move || {
            let engine = Engine::new(
                &loaded.config.clinic,
                job.clinic_id,
                &loaded.rules,
                &loaded.templates,
            )
            .with_fallbacks(loaded.config.fallbacks());
            let options = TickOptions {
                stop: Some(&job.stopping),
                ..TickOptions::at(at)
            };
            // A scheduled refit of the churn model runs before the tick
            // that follows its slot; a failed fit keeps the last one in use.
            match crate::churn::refit_if_due(
                &store,
                job.clinic_id,
                &loaded.config.clinic,
                &loaded.config.model,
                at,
                Utc::now().timestamp(),
            ) {
                Ok(refit) => refit.log(),
                Err(e) => tracing::error!(error = %e, "churn model refit failed; the last fit stays in use"),
            }
            let result = engine::tick(&mut store, &engine, options);
            // Credit visits and orders that arrived since the last tick.
            if let Err(e) = store.attribute() {
                tracing::error!(error = %e, "attribution failed; it catches up at the next tick");
            }
            (store, result)
        })
        .await
        .context("tick task panicked")?;
        store = returned;
        match result {
            Ok(report) => {
                retry = None;
                crate::metrics::global().tick_report(&report);
                log_tick(&report, cause, tz);
                ctx.ticked.notify_one();
            }
            // A failed tick (database locked for minutes, disk full) is
            // tried again with backoff, resuming from its cursor, rather
            // than at the next scheduled slot (a day later by default).
            Err(e) => {
                crate::metrics::global().tick_failed();
                let wait = retry.map_or(FIRST_TICK_RETRY, |(_, wait)| wait);
                retry = Some((
                    tokio::time::Instant::now() + wait,
                    (wait * 2).min(MAX_TICK_RETRY),
                ));
                tracing::error!(error = %e, cause, retry_in = ?wait, "tick failed; trying again");
            }
        }
    }
}

/// Logs a tick's summary and its per-rule counts.
pub fn log_tick(report: &TickReport, cause: &str, tz: chrono_tz::Tz) {
    for earlier in &report.finished_first {
        log_tick(earlier, "interrupted earlier", tz);
    }
    let at = clock::format_local(report.at, tz);
    match report.end {
        TickEnd::AlreadyDone => {
            tracing::info!(%at, cause, "a tick at this time already ran; nothing to do")
        }
        TickEnd::Stopped => tracing::info!(%at, cause, evaluated = report.evaluated,
            "tick stopped between batches; it resumes at the next start"),
        TickEnd::Done | TickEnd::DryRun => {
            tracing::info!(%at, cause, evaluated = report.evaluated, moves = report.moves,
                messages = report.messages, errors = report.errors,
                took_ms = report.total_time.as_millis() as u64, "tick done");
            for (rule, count) in &report.by_rule {
                if count.errors > 0 {
                    tracing::warn!(
                        rule,
                        errors = count.errors,
                        first_error = count.first_error.as_deref().unwrap_or(""),
                        "condition could not be evaluated for some customers"
                    );
                }
                if count.fired > 0 {
                    tracing::info!(
                        rule,
                        fired = count.fired,
                        moves = count.moves,
                        messages = count.messages,
                        "rule fired"
                    );
                }
            }
        }
    }
}

async fn dispatch_loop(
    live: Arc<Live>,
    store: SharedStore,
    stopping: Arc<AtomicBool>,
    ticked: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // Before the first round: messages a dispatcher that died left in
    // `sending` go back to the queue; a locked database is waited out.
    let mut wait = Duration::from_secs(1);
    loop {
        let now = Utc::now().timestamp();
        match crate::dispatch::blocking(&store, move |s| s.requeue_interrupted(now)).await {
            Ok(requeued) => {
                if requeued > 0 {
                    tracing::warn!(
                        requeued,
                        "messages interrupted while sending were put back in the queue"
                    );
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait,
                    "cannot requeue messages left in sending yet; dispatching waits");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
    loop {
        // Read every round, so a reload's new settings apply at once.
        let loaded = live.loaded();
        let every = loaded
            .config
            .schedule
            .dispatch_every
            .max(Duration::from_secs(1));
        let poll_every = loaded.config.dispatch.poll_every;
        let dispatcher = live.dispatcher();
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = ticked.notified() => {},
            _ = shutdown.changed() => return Ok(()),
        }
        let stop = || stopping.load(Ordering::SeqCst);
        if stop() {
            return Ok(());
        }
        let drained = dispatcher.drain(&store, Clock::System, &stop).await;
        crate::metrics::global().dispatch_pass(Utc::now().timestamp(), drained.is_ok());
        match drained {
            Ok(report) if report.claimed > 0 => tracing::info!(
                sent = report.sent,
                awaiting = report.awaiting,
                deferred = report.deferred,
                retried = report.retried,
                failed = report.failed,
                suppressed = report.suppressed,
                opted_out = report.opted_out,
                fell_back = report.fell_back,
                released = report.released,
                "dispatched"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "dispatch round failed; will try again"),
        }
        match dispatcher
            .poll_awaiting(&store, Clock::System, poll_every, &stop)
            .await
        {
            Ok(report) if report.polled > 0 => tracing::info!(
                polled = report.polled,
                sent = report.sent,
                failed = report.failed,
                opted_out = report.opted_out,
                pending = report.pending,
                "asked about messages awaiting staff"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "polling awaiting messages failed; will try again")
            }
        }
    }
}

/// SIGINT and SIGTERM, listened for from the moment the service starts, so
/// a signal that arrives during start-up still means a clean stop.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

/// What a signal asks of the service.
enum Signal {
    Stop,
    Reload,
}

impl Signals {
    fn install() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                hangup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Signal::Stop,
                _ = self.terminate.recv() => Signal::Stop,
                _ = self.hangup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(ticks: &[&str]) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recall.toml");
        let list: Vec<String> = ticks.iter().map(|t| format!("\"{t}\"")).collect();
        std::fs::write(
            &path,
            format!(
                "[clinic]\nname = \"x\"\n[schedule]\nticks = [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        config::load(&path).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        clock::parse_time(text, chrono_tz::Asia::Shanghai).unwrap()
    }

    #[test]
    fn latest_slot_is_in_clinic_time() {
        let config = config_with(&["0 9 * * *"]);
        assert_eq!(
            latest_slot(&config, at("2026-05-02 08:00")),
            Some(at("2026-05-01 09:00"))
        );
        assert_eq!(
            latest_slot(&config, at("2026-05-02 10:00")),
            Some(at("2026-05-02 09:00"))
        );
    }

    #[test]
    fn latest_slot_takes_the_newest_of_several_schedules() {
        let config = config_with(&["0 9 * * *", "0 15 * * *"]);
        assert_eq!(
            latest_slot(&config, at("2026-05-02 16:00")),
            Some(at("2026-05-02 15:00"))
        );
    }

    #[test]
    fn catch_up_runs_when_a_slot_was_missed_or_a_tick_was_interrupted() {
        let slot = Some(at("2026-05-02 09:00"));
        let before = at("2026-05-01 09:00").timestamp();
        let after = at("2026-05-02 09:00").timestamp();
        assert!(catch_up_reason(None, false, slot).is_some());
        assert!(catch_up_reason(Some(before), false, slot).is_some());
        assert_eq!(catch_up_reason(Some(after), false, slot), None);
        assert!(catch_up_reason(Some(after), true, slot).is_some());
    }
}
