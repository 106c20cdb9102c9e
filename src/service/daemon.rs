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
//! the next slot; a slot that comes due meanwhile is covered by the retry,
//! not run a second after it), and a failed dispatch round gives its
//! messages back.
//!
//! SIGINT or SIGTERM: the scheduler stops, a running tick stops after its
//! current batch (it resumes at the next start), the dispatcher finishes the
//! message in flight and hands the rest of its batch back to the queue.
//! SIGHUP, `recall reload` or an edit of the files: a reload (see
//! [`crate::service::reload`]); a broken edit changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::base::clock::{self, Clock};
use crate::base::i18n::{Text, lang, t};
use crate::config;
use crate::engine::{self, Engine, TickEnd, TickOptions, TickReport};
use crate::service::reload::{self, Live, Refused};
use crate::service::say;
use crate::store::shared::SharedStore;

use crate::setup::Loaded;
use crate::store::{LockKind, ProcessLock, Store, StoreError};

/// Runs until SIGINT or SIGTERM; reloads on SIGHUP and when the files change.
/// `clock` is the service's one clock: every "now" of its ticks, dispatch
/// passes, schedule, health checks and pruning is read from it.
pub async fn run(loaded: Loaded, clock: Clock) -> Result<()> {
    let mut signals = Signals::install()?;
    let config_path = loaded.config.path.clone();
    let config = Arc::new(loaded.config.clone());
    let tz = config.clinic.timezone;
    let Some(opened) = open(&mut signals, &config, clock).await? else {
        tracing::info!("{}", say(t!("service.stopped_before_starting")));
        return Ok(());
    };
    let Opened {
        store: tick_store,
        clinic_id,
        dispatch_store,
        dispatch_lock,
    } = opened;
    let dispatcher = crate::senders::dispatcher(&config)?;
    let routed = dispatcher.channels();
    tracing::info!(
        clinic = %config.clinic.name,
        database = %config.database.display(),
        rules = loaded.rules.rules.len(),
        templates = loaded.templates.len(),
        channels = ?routed.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "{}",
        say(t!("service.running"))
    );
    let live = Arc::new(Live::new(loaded, dispatcher));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stopping = Arc::new(AtomicBool::new(false));
    let (trigger_tx, trigger_rx) = mpsc::channel::<&'static str>(1);
    let ticked = Arc::new(Notify::new());

    if !queue_catch_up(&mut signals, &tick_store, &config, clock, &trigger_tx).await? {
        tracing::info!("{}", say(t!("service.stopped_before_starting")));
        return Ok(());
    }

    let mut scheduler = JobScheduler::new()
        .await
        .with_context(|| say(t!("service.starting_scheduler")))?;
    let mut jobs = schedule(&scheduler, &config.schedule.ticks, tz, &trigger_tx, clock).await?;
    scheduler
        .start()
        .await
        .with_context(|| say(t!("service.starting_scheduler")))?;

    let tick_task = tokio::spawn(tick_worker(
        TickContext {
            live: live.clone(),
            clinic_id,
            stopping: stopping.clone(),
            ticked: ticked.clone(),
            clock,
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
        clock,
        shutdown_rx.clone(),
    ));

    // Operations: the health check and metrics, and retention pruning.
    let observe = match config.metrics {
        Some(listen) => Some(
            crate::service::observe::start(
                listen,
                config.database.clone(),
                crate::service::ops::health(&config, clock),
                shutdown_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let prune_task = config.retention.map(|keep| {
        tokio::spawn(crate::service::ops::prune_daily(
            config.clone(),
            keep,
            clock,
            shutdown_rx.clone(),
        ))
    });

    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel::<&'static str>();
    let _watcher = match reload::watch(&live.loaded(), reload_tx.clone()) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, "{}", say(t!("service.cannot_watch")));
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
                let scheduled = Scheduled { scheduler: &scheduler, jobs: &mut jobs, trigger: &trigger_tx, clock };
                apply_reload(&live, &config_path, cause, scheduled).await?;
            }
        }
    }
    tracing::info!("{}", say(t!("service.shutting_down")));
    stopping.store(true, Ordering::SeqCst);
    let _ = shutdown_tx.send(true);
    let _ = scheduler.shutdown().await;
    drop(trigger_tx);
    let (ticks, dispatch) = tokio::join!(tick_task, dispatch_task);
    for task in [observe, prune_task].into_iter().flatten() {
        let _ = task.await;
    }
    ticks.with_context(|| say(t!("service.tick_worker")))??;
    dispatch.with_context(|| say(t!("service.dispatcher")))??;
    drop(dispatch_lock);
    tracing::info!("{}", say(t!("service.stopped")));
    Ok(())
}

/// The stores the service runs on: one for ticks, one for the dispatcher,
/// which holds the database's dispatch lock.
struct Opened {
    store: Store,
    clinic_id: i64,
    dispatch_store: SharedStore,
    dispatch_lock: ProcessLock,
}

/// Opens the database twice and takes the dispatch lock. Another process
/// holding the database past the busy timeout makes the service wait and
/// try again, not exit; `None` if it was stopped while waiting.
async fn open(
    signals: &mut Signals,
    config: &config::Config,
    clock: Clock,
) -> Result<Option<Opened>> {
    let tz = config.clinic.timezone;
    let Some((store, clinic_id)) = until_free(signals, t!("service.opening_database"), || {
        let store = Store::open(&config.database)?;
        let clinic_id = store.ensure_clinic(
            &config.clinic.code,
            &config.clinic.name,
            tz.name(),
            clock.now().timestamp(),
        )?;
        Ok((store, clinic_id))
    })
    .await?
    else {
        return Ok(None);
    };
    // One dispatcher per database: a second service on the same database
    // would requeue the first one's messages in flight.
    let Some(dispatch_store) = until_free(signals, t!("service.opening_database"), || {
        Store::open(&config.database)
    })
    .await?
    else {
        return Ok(None);
    };
    let mut dispatch_lock = dispatch_store
        .try_lock(LockKind::Dispatch)?
        .ok_or_else(|| {
            let database = config.database.display();
            anyhow::anyhow!(say(t!("service.already_running", database)))
        })?;
    // `recall reload` finds the service by this.
    if let Err(e) = dispatch_lock.record_pid() {
        tracing::warn!(error = %e, "{}", say(t!("service.pid_not_recorded")));
    }
    Ok(Some(Opened {
        store,
        clinic_id,
        dispatch_store: Arc::new(std::sync::Mutex::new(dispatch_store)),
        dispatch_lock,
    }))
}

/// Catch-up: a missed slot, or an interrupted tick, means a tick now.
/// `false` if the service was stopped while waiting for the database.
async fn queue_catch_up(
    signals: &mut Signals,
    store: &Store,
    config: &config::Config,
    clock: Clock,
    trigger: &mpsc::Sender<&'static str>,
) -> Result<bool> {
    let Some((last, unfinished)) = until_free(signals, t!("service.reading_last_tick"), || {
        Ok((store.last_tick()?, store.unfinished_tick()?))
    })
    .await?
    else {
        return Ok(false);
    };
    // `/metrics` knows the last finished tick from the start, as `/healthz` does.
    if let Some(tick) = last.as_ref().filter(|t| t.done)
        && let Some(finished) = tick.finished_at
    {
        let took = Duration::from_secs(finished.saturating_sub(tick.started_at).max(0) as u64);
        crate::base::metrics::global().seed_last_tick(tick.at, finished, took);
    }
    let slot = config
        .schedule
        .latest_slot(config.clinic.timezone, clock.now());
    if let Some(reason) = catch_up_reason(last.as_ref().map(|t| t.at), unfinished.is_some(), slot) {
        let reason = say(reason);
        tracing::info!(
            reason = reason.as_str(),
            "{}",
            say(t!("service.catch_up.tick"))
        );
        let _ = trigger.try_send("catch-up");
    }
    Ok(true)
}

/// The scheduler's jobs, which a reload that changes `[schedule]` replaces.
struct Scheduled<'a> {
    scheduler: &'a JobScheduler,
    jobs: &'a mut Vec<uuid::Uuid>,
    trigger: &'a mpsc::Sender<&'static str>,
    clock: Clock,
}

/// Reloads config, rules and templates; a broken edit changes nothing and
/// is logged as `recall check` would print it.
async fn apply_reload(
    live: &Live,
    config_path: &std::path::Path,
    cause: &str,
    scheduled: Scheduled<'_>,
) -> Result<()> {
    match live.reload(config_path) {
        Ok(reloaded) => {
            if reloaded.warnings.warnings() > 0 {
                tracing::warn!("{}", reloaded.warnings.render_in(lang(), false).trim_end());
            }
            if let Some(ticks) = &reloaded.schedule {
                for job in scheduled.jobs.drain(..) {
                    let _ = scheduled.scheduler.remove(&job).await;
                }
                let tz = live.loaded().config.clinic.timezone;
                *scheduled.jobs = schedule(
                    scheduled.scheduler,
                    ticks,
                    tz,
                    scheduled.trigger,
                    scheduled.clock,
                )
                .await?;
            }
            log_reloaded(cause, reloaded.changes);
            probe_paused(live, scheduled.clock).await;
        }
        Err(Refused::Invalid(report)) => {
            // The same text `recall check` prints: place, the line with a
            // caret, hints, in the chosen language.
            tracing::error!("\n{}", report.render_in(lang(), false).trim_end());
            tracing::error!(
                cause,
                errors = report.errors(),
                "{}",
                say(t!("service.reload.invalid"))
            );
        }
        Err(Refused::Other(why)) => {
            let why = say(why);
            tracing::error!(cause, %why, "{}", say(t!("service.reload.not_applied")));
        }
    }
    Ok(())
}

/// After a reload (new secrets in the environment file, a fixed account):
/// every paused sender probes at the next dispatch instead of waiting.
async fn probe_paused(live: &Live, clock: Clock) {
    let database = live.loaded().config.database.clone();
    let now = clock.now().timestamp();
    let probed = tokio::task::spawn_blocking(move || {
        crate::store::Store::open(&database).and_then(|s| s.probe_paused_now(now))
    })
    .await;
    match probed {
        Ok(Ok(0)) => {}
        Ok(Ok(senders)) => tracing::info!(senders, "{}", say(t!("service.reload.probing"))),
        Ok(Err(e)) => tracing::warn!(error = %e, "{}", say(t!("service.reload.probe_failed"))),
        Err(e) => tracing::warn!(error = %e, "{}", say(t!("service.reload.probe_failed"))),
    }
}

/// What a successful reload changed, or that it changed nothing.
fn log_reloaded(cause: &str, changes: Vec<Text>) {
    if changes.is_empty() {
        tracing::info!(cause, "{}", say(t!("service.reload.nothing_changed")));
    } else {
        let lang = lang();
        let changes: Vec<String> = changes.iter().map(|c| c.render(lang)).collect();
        let changes = changes.join(&t!("sep.semicolon").render(lang));
        tracing::info!(cause, changes = %changes, "{}", say(t!("service.reload.applied")));
    }
}

/// Runs a store step at start-up until it succeeds: while another process
/// holds the database past the busy timeout, waits (1 s, doubling, at most
/// a minute apart) and tries again, logging each wait. `None` if SIGINT or
/// SIGTERM came while waiting; other errors end the start.
async fn until_free<T>(
    signals: &mut Signals,
    what: Text,
    mut step: impl FnMut() -> Result<T, StoreError>,
) -> Result<Option<T>> {
    let what = say(what);
    let mut wait = Duration::from_secs(1);
    let mut tries = 0u32;
    loop {
        match step() {
            Ok(value) => {
                if tries > 0 {
                    tracing::info!(
                        what = what.as_str(),
                        tries,
                        "{}",
                        say(t!("service.database_free"))
                    );
                }
                return Ok(Some(value));
            }
            Err(e) if e.is_busy() => {
                tries += 1;
                tracing::warn!(what = what.as_str(), tries, retry_in = ?wait, error = %e,
                    "{}", say(t!("service.database_busy")));
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
/// (The scheduler crate fires its jobs by its own reading of the system
/// clock; `clock` says when the next one is, for the log.)
async fn schedule(
    scheduler: &JobScheduler,
    ticks: &[String],
    tz: chrono_tz::Tz,
    trigger: &mpsc::Sender<&'static str>,
    clock: Clock,
) -> Result<Vec<uuid::Uuid>> {
    let mut jobs = Vec::new();
    for cron in ticks {
        let trigger = trigger.clone();
        let job = Job::new_async_tz(cron.as_str(), tz, move |_, _| {
            let trigger = trigger.clone();
            Box::pin(async move {
                if trigger.try_send("schedule").is_err() {
                    tracing::info!("{}", say(t!("service.tick_waiting")));
                }
            })
        })
        .with_context(|| say(t!("service.scheduling", cron)))?;
        jobs.push(
            scheduler
                .add(job)
                .await
                .with_context(|| say(t!("service.adding_tick")))?,
        );
        if let Some(next) = next_slot(cron, tz, clock.now()) {
            tracing::info!(schedule = %cron, next = %clock::format_local(next.timestamp(), tz), "{}", say(t!("service.next_tick")));
        }
    }
    Ok(jobs)
}

/// Why a tick should run at start, if it should.
pub fn catch_up_reason(
    last_tick: Option<i64>,
    unfinished: bool,
    latest_slot: Option<DateTime<Utc>>,
) -> Option<Text> {
    if unfinished {
        return Some(t!("service.catch_up.interrupted"));
    }
    match (last_tick, latest_slot) {
        (None, _) => Some(t!("service.catch_up.no_tick")),
        (Some(last), Some(slot)) if last < slot.timestamp() => {
            Some(t!("service.catch_up.missed_slot"))
        }
        _ => None,
    }
}

/// The next slot of one schedule after `now`.
pub fn next_slot(cron: &str, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (_, parsed) = config::parse_cron(cron).ok()?;
    parsed
        .find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// After a failed tick (database locked for minutes, disk full): when to
/// try again, with backoff.
#[derive(Debug, Default)]
struct Retry {
    /// When to try again, and the wait after that; `None` after a success.
    next: Option<(tokio::time::Instant, Duration)>,
}

impl Retry {
    /// When the retry is due, if a tick failed.
    fn due(&self) -> Option<tokio::time::Instant> {
        self.next.map(|(at, _)| at)
    }

    /// A tick failed at `now`: schedules the retry and returns its wait.
    fn failed(&mut self, now: tokio::time::Instant) -> Duration {
        let wait = self.next.map_or(FIRST_TICK_RETRY, |(_, wait)| wait);
        self.next = Some((now + wait, (wait * 2).min(MAX_TICK_RETRY)));
        wait
    }

    /// A tick succeeded. If it followed a failure, it covers the triggers
    /// that queued while the database was held: a slot that came due while
    /// the retry waited for the lock would otherwise run a second tick a
    /// second later, judging every customer twice. Returns how many it took
    /// off the queue. After a tick that did not fail, a queued trigger
    /// still runs (a tick that overran the next slot).
    fn succeeded(&mut self, triggers: &mut mpsc::Receiver<&'static str>) -> usize {
        if self.next.take().is_none() {
            return 0;
        }
        std::iter::from_fn(|| triggers.try_recv().ok()).count()
    }
}

struct TickContext {
    /// Read at every tick, so a reload applies from the next one.
    live: Arc<Live>,
    clinic_id: i64,
    stopping: Arc<AtomicBool>,
    ticked: Arc<Notify>,
    /// The service's clock: a tick runs at its now.
    clock: Clock,
}

async fn tick_worker(
    ctx: TickContext,
    mut store: Store,
    mut triggers: mpsc::Receiver<&'static str>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let ctx = Arc::new(ctx);
    let mut retry = Retry::default();
    // Customers waiting for onboarding are mentioned once per run.
    let mut told_waiting = false;
    loop {
        let retry_at = retry.due();
        let cause = tokio::select! {
            cause = triggers.recv() => match cause { Some(c) => c, None => return Ok(()) },
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)),
                if retry_at.is_some() => "retry after a failed tick",
            _ = shutdown.changed() => return Ok(()),
        };
        if ctx.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let at = ctx.clock.now();
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
                clock: job.clock,
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
                job.clock.now().timestamp(),
            ) {
                Ok(refit) => refit.log(),
                Err(e) => tracing::error!(error = %e, "{}", say(t!("service.refit_failed"))),
            }
            let result = engine::tick(&mut store, &engine, options);
            // Credit visits and orders that arrived since the last tick.
            if let Err(e) = store.attribute() {
                tracing::error!(error = %e, "{}", say(t!("service.attribution_failed")));
            }
            (store, result)
        })
        .await
        .with_context(|| say(t!("service.tick_panicked")))?;
        store = returned;
        match result {
            Ok(report) => {
                let covered = retry.succeeded(&mut triggers);
                if covered > 0 {
                    tracing::info!(covered, "{}", say(t!("service.tick_coalesced")));
                }
                report.count_in(crate::base::metrics::global(), ctx.clock.now().timestamp());
                log_tick(&report, cause, tz);
                if report.waiting > 0 && !told_waiting {
                    told_waiting = true;
                    tracing::warn!(
                        waiting = report.waiting,
                        "{}",
                        say(t!("onboard.waiting", count = report.waiting))
                    );
                }
                ctx.ticked.notify_one();
            }
            // A failed tick (database locked for minutes, disk full) is
            // tried again with backoff, resuming from its cursor, rather
            // than at the next scheduled slot (a day later by default).
            Err(e) => {
                crate::base::metrics::global().tick_failed();
                let wait = retry.failed(tokio::time::Instant::now());
                tracing::error!(error = %e, cause, retry_in = ?wait, "{}", say(t!("service.tick_failed")));
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
            tracing::info!(%at, cause, "{}", say(t!("service.tick.already_done")))
        }
        TickEnd::Stopped => tracing::info!(%at, cause, evaluated = report.evaluated,
            "{}", say(t!("service.tick.stopped"))),
        TickEnd::Done | TickEnd::DryRun => {
            tracing::info!(%at, cause, evaluated = report.evaluated, moves = report.moves,
                messages = report.messages, errors = report.errors,
                took_ms = report.total_time.as_millis() as u64, "{}", say(t!("service.tick.done")));
            for (rule, count) in &report.by_rule {
                if count.errors > 0 {
                    tracing::warn!(
                        rule,
                        errors = count.errors,
                        first_error = count.first_error.as_deref().unwrap_or(""),
                        "{}",
                        say(t!("service.tick.rule_errors"))
                    );
                }
                if count.fired > 0 {
                    tracing::info!(
                        rule,
                        fired = count.fired,
                        moves = count.moves,
                        messages = count.messages,
                        "{}",
                        say(t!("service.tick.rule_fired"))
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
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // Before the first round: messages a dispatcher that died left in
    // `sending` go back to the queue; a locked database is waited out.
    let mut wait = Duration::from_secs(1);
    loop {
        let now = clock.now().timestamp();
        match crate::store::shared::blocking(&store, move |s| s.requeue_interrupted(now)).await {
            Ok(requeued) => {
                if requeued > 0 {
                    tracing::warn!(requeued, "{}", say(t!("service.dispatch.requeued")));
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait,
                    "{}", say(t!("service.dispatch.requeue_waits")));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
    let mut last = live.dispatcher();
    loop {
        let every = live
            .loaded()
            .config
            .schedule
            .dispatch_every
            .max(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = ticked.notified() => {},
            _ = shutdown.changed() => return Ok(()),
        }
        let stop = || stopping.load(Ordering::SeqCst);
        if stop() {
            return Ok(());
        }
        // Taken after the wait, so a reload during it (quiet hours, caps,
        // senders) applies to this round, not the next; and what the old
        // quiet hours and caps held back is judged again by the new ones.
        let dispatcher = live.dispatcher();
        if !Arc::ptr_eq(&last, &dispatcher) {
            last = dispatcher.clone();
            let now = clock.now().timestamp();
            match crate::store::shared::blocking(&store, move |s| s.release_held(now)).await {
                Ok(0) => {}
                Ok(released) => {
                    tracing::info!(released, "{}", say(t!("service.dispatch.released")))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{}", say(t!("service.dispatch.release_failed")))
                }
            }
        }
        let pass = dispatcher.pass(&store, clock, &stop).await;
        crate::base::metrics::global().dispatch_pass(clock.now().timestamp(), pass.sent.is_ok());
        match pass.sent {
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
                "{}",
                say(t!("service.dispatch.dispatched"))
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "{}", say(t!("service.dispatch.round_failed"))),
        }
        match pass.polled {
            Ok(report) if report.polled > 0 => tracing::info!(
                polled = report.polled,
                sent = report.sent,
                failed = report.failed,
                opted_out = report.opted_out,
                pending = report.pending,
                "{}",
                say(t!("service.dispatch.polled"))
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "{}", say(t!("service.dispatch.poll_failed")))
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
                interrupt: signal(SignalKind::interrupt())
                    .with_context(|| say(t!("service.listening", signal = "SIGINT")))?,
                terminate: signal(SignalKind::terminate())
                    .with_context(|| say(t!("service.listening", signal = "SIGTERM")))?,
                hangup: signal(SignalKind::hangup())
                    .with_context(|| say(t!("service.listening", signal = "SIGHUP")))?,
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

    fn at(text: &str) -> DateTime<Utc> {
        clock::parse_time(
            text,
            chrono_tz::Asia::Shanghai,
            chrono::DateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn a_slot_that_comes_due_while_a_failed_tick_is_retried_runs_no_second_tick() {
        let (tx, mut triggers) = mpsc::channel(1);
        let now = tokio::time::Instant::now();
        let mut retry = Retry::default();
        // A tick that did not fail leaves a queued trigger to run.
        tx.try_send("schedule").unwrap();
        assert_eq!(retry.succeeded(&mut triggers), 0);
        assert_eq!(triggers.try_recv(), Ok("schedule"));
        // The database is held: the tick fails, then its retry fails too.
        assert_eq!(retry.failed(now), FIRST_TICK_RETRY);
        assert_eq!(retry.due(), Some(now + FIRST_TICK_RETRY));
        assert_eq!(retry.failed(now), FIRST_TICK_RETRY * 2);
        // The next slot comes due while the retry waits for the lock; the
        // lock is released and the retry succeeds: it covers the slot.
        tx.try_send("schedule").unwrap();
        assert_eq!(retry.succeeded(&mut triggers), 1);
        assert!(triggers.try_recv().is_err(), "no second tick");
        assert_eq!(retry.due(), None);
        // Backoff starts over after a success, and stops growing.
        assert_eq!(retry.failed(now), FIRST_TICK_RETRY);
        let waits: Vec<Duration> = (0..20).map(|_| retry.failed(now)).collect();
        assert_eq!(waits.last(), Some(&MAX_TICK_RETRY));
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
