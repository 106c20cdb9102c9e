//! The tick: one evaluation pass over every customer at one time.
//!
//! Data flow: the store's [`Reader`] reads customers in batches from one
//! snapshot (on its own thread, so reading overlaps evaluation) → each batch
//! is split across worker threads that derive [`Facts`], pick the rule that
//! fires and render its messages → the batch's moves, messages and cursor are
//! committed in one transaction. A tick stopped between batches (shutdown,
//! crash) resumes after its cursor; a tick re-run at the same time is a no-op.
//!
//! The engine decides nothing itself: rules decide (purely), the store writes.
//!
//! A customer an import added waits for onboarding ([`onboard`]) and is
//! not judged, unless their whole history is new (begins within
//! [`NEW_CUSTOMER_DAYS`] of the tick): then the tick judges them like any
//! customer, and from then on they no longer wait. A tick never messages a
//! customer about the history an import brought.

pub mod onboard;
pub mod simulate;
pub mod story;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::base::clock::{self, Clock, Timestamp};
use crate::base::content::Content;
use crate::base::metrics::Metrics;
use crate::base::model::Channel;
use crate::config::Clinic;
use crate::facts::{FactContext, Facts};
use crate::rules::eval::{Evaluator, cooling_down};
use crate::rules::{Assign, RuleSet, Stale};
use crate::store::outbox::Fallback;
use crate::store::record::CustomerRecord;
use crate::store::scan::{Batch, Reader, ScanOptions};
use crate::store::ticks::{Move, NewMessage, TickBatch, TickRow, TickStart};
use crate::store::{LockKind, Store, StoreError};
use crate::templates::{ClinicVars, CustomerVars, MessageContext, RuleVars, TemplateSet};

/// A customer an import added whose history (first record, visit, order or
/// follow-up) begins within this many days before a tick is genuinely new:
/// the tick judges them without onboarding.
pub const NEW_CUSTOMER_DAYS: i64 = 7;

/// What a tick needs besides the store.
pub struct Engine<'a> {
    pub clinic: &'a Clinic,
    pub clinic_id: i64,
    pub rules: &'a RuleSet,
    pub templates: &'a TemplateSet,
    /// `clinic.*` for templates, built once.
    clinic_vars: Arc<ClinicVars>,
    /// Channel → its fallback channel, for rendering fallbacks at tick time.
    fallbacks: BTreeMap<Channel, Channel>,
}

impl<'a> Engine<'a> {
    pub fn new(
        clinic: &'a Clinic,
        clinic_id: i64,
        rules: &'a RuleSet,
        templates: &'a TemplateSet,
    ) -> Self {
        Engine {
            clinic,
            clinic_id,
            rules,
            templates,
            clinic_vars: Arc::new(ClinicVars {
                name: clinic.name.clone(),
                phone: clinic.phone.clone().unwrap_or_default(),
            }),
            fallbacks: BTreeMap::new(),
        }
    }

    /// Also render each message for its channel's fallback (when a template
    /// of the same name exists there), so dispatch can switch channels.
    pub fn with_fallbacks(mut self, fallbacks: BTreeMap<Channel, Channel>) -> Self {
        self.fallbacks = fallbacks;
        self
    }
}

/// How to run a tick.
#[derive(Debug, Clone, Copy)]
pub struct TickOptions<'a> {
    /// The tick's time: every customer is judged as of this instant.
    pub at: DateTime<Utc>,
    /// What stamps the tick's start and finish in the `ticks` table (for
    /// the record; nothing is decided by them): the system clock for a tick
    /// that runs now (the service, `recall tick`), the tick's own time by
    /// default (replays, rule tests, benchmarks).
    pub clock: Clock,
    /// Evaluate and report, write nothing.
    pub dry_run: bool,
    /// Customers per batch (and per transaction).
    pub batch_size: usize,
    /// Checked between batches: when set, the tick stops and can be resumed.
    pub stop: Option<&'a AtomicBool>,
    /// How many example decisions to keep in the report.
    pub samples: usize,
}

impl<'a> TickOptions<'a> {
    pub fn at(at: DateTime<Utc>) -> Self {
        TickOptions {
            at,
            clock: Clock::Fixed(at),
            dry_run: false,
            batch_size: 5_000,
            stop: None,
            samples: 0,
        }
    }
}

/// How a tick ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickEnd {
    /// Every customer was judged and the results committed.
    Done,
    /// A tick at this time had already finished; nothing was done.
    AlreadyDone,
    /// A dry run: nothing was written.
    DryRun,
    /// Stopped between batches; the next tick at this time resumes it.
    Stopped,
}

/// Per-rule counts of a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleCount {
    pub fired: i64,
    pub moves: i64,
    pub messages: i64,
    /// Customers kept in the rule's control group (moved, not sent to).
    pub held_out: i64,
    pub errors: i64,
    pub first_error: Option<String>,
}

/// One decision, for showing what a tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub customer: String,
    pub rule_id: String,
    pub from: String,
    pub to: Option<String>,
    pub channels: Vec<String>,
    pub reason: String,
}

/// What a tick did.
#[derive(Debug, Clone)]
pub struct TickReport {
    pub at: Timestamp,
    pub tick_id: Option<i64>,
    pub end: TickEnd,
    /// The cursor an interrupted tick resumed from.
    pub resumed_after: Option<i64>,
    pub evaluated: i64,
    pub moves: i64,
    pub messages: i64,
    pub errors: i64,
    /// Customers not judged because they wait for onboarding (`recall
    /// onboard`): an import brought them with a history this tick must not
    /// message them about.
    pub waiting: i64,
    pub by_rule: BTreeMap<String, RuleCount>,
    pub samples: Vec<Sample>,
    /// Time spent reading facts from SQLite (on the reader thread).
    pub scan_time: Duration,
    /// Time spent deriving facts, evaluating rules and rendering.
    pub eval_time: Duration,
    /// Time spent committing results.
    pub write_time: Duration,
    pub total_time: Duration,
    /// Ticks that were interrupted earlier and finished first.
    pub finished_first: Vec<TickReport>,
}

impl TickReport {
    /// Counts this tick (and any interrupted one it finished first) in the
    /// process's metrics; `finished` is when it ended. Ticks that stopped,
    /// were already done or were dry runs count only their moves.
    pub fn count_in(&self, metrics: &Metrics, finished: Timestamp) {
        for earlier in &self.finished_first {
            earlier.count_in(metrics, finished);
        }
        let moves = self
            .by_rule
            .iter()
            .map(|(rule, count)| (rule.as_str(), count.moves.max(0) as u64));
        if self.end == TickEnd::Done {
            metrics.tick_done(self.at, finished, self.total_time, moves);
        } else {
            metrics.tick_moves(moves);
        }
    }

    fn new(at: Timestamp, end: TickEnd) -> Self {
        TickReport {
            at,
            tick_id: None,
            end,
            resumed_after: None,
            evaluated: 0,
            moves: 0,
            messages: 0,
            errors: 0,
            waiting: 0,
            by_rule: BTreeMap::new(),
            samples: Vec::new(),
            scan_time: Duration::ZERO,
            eval_time: Duration::ZERO,
            write_time: Duration::ZERO,
            total_time: Duration::ZERO,
            finished_first: Vec::new(),
        }
    }
}

/// Errors that stop a tick.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start a tick thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "another process is running a tick on this database (the service?); try again when it is done"
    )]
    Busy,
    #[error(transparent)]
    Churn(#[from] crate::churn::ChurnError),
}

/// Runs a tick. Finishes an earlier interrupted tick first if there is one.
pub fn tick(
    store: &mut Store,
    engine: &Engine<'_>,
    options: TickOptions<'_>,
) -> Result<TickReport, EngineError> {
    let started = Instant::now();
    let at = options.at.timestamp();
    let tz = engine.clinic.timezone;
    if options.dry_run {
        let mut report = TickReport::new(at, TickEnd::DryRun);
        run_batches(store, engine, &options, None, 0, &mut report)?;
        report.total_time = started.elapsed();
        return Ok(report);
    }
    let _lock = store.try_lock(LockKind::Tick)?.ok_or(EngineError::Busy)?;
    let mut finished_first = Vec::new();
    let tick = loop {
        let started_at = options.clock.now().timestamp();
        match store.begin_tick(at, started_at, |t| clock::format_local(t, tz))? {
            TickStart::New(tick) => break tick,
            TickStart::Resume(tick) => break tick,
            TickStart::AlreadyDone(tick) => {
                let mut report = TickReport::new(at, TickEnd::AlreadyDone);
                report.tick_id = Some(tick.id);
                report.evaluated = tick.evaluated;
                report.moves = tick.moves;
                report.messages = tick.messages;
                return Ok(report);
            }
            TickStart::Unfinished(earlier) => {
                tracing::info!(tick = earlier.id, at = %clock::format_local(earlier.at, tz),
                    "finishing an interrupted tick first");
                let options = TickOptions {
                    at: DateTime::from_timestamp(earlier.at, 0).unwrap_or(options.at),
                    ..options
                };
                let report = tick_inner(store, engine, &options, earlier, started)?;
                let stopped = report.end == TickEnd::Stopped;
                finished_first.push(report);
                if stopped {
                    let mut report = TickReport::new(at, TickEnd::Stopped);
                    report.finished_first = finished_first;
                    return Ok(report);
                }
            }
        }
    };
    let mut report = tick_inner(store, engine, &options, tick, started)?;
    report.finished_first = finished_first;
    Ok(report)
}

fn tick_inner(
    store: &mut Store,
    engine: &Engine<'_>,
    options: &TickOptions<'_>,
    tick: TickRow,
    started: Instant,
) -> Result<TickReport, EngineError> {
    let mut report = TickReport::new(tick.at, TickEnd::Done);
    report.tick_id = Some(tick.id);
    if tick.cursor > 0 {
        report.resumed_after = Some(tick.cursor);
    }
    let stopped = run_batches(
        store,
        engine,
        options,
        Some(&tick),
        tick.cursor,
        &mut report,
    )?;
    if stopped {
        report.end = TickEnd::Stopped;
    } else {
        let done = store.finish_tick(tick.id, options.clock.now().timestamp())?;
        report.evaluated = done.evaluated;
        report.moves = done.moves;
        report.messages = done.messages;
        report.errors = done.errors;
    }
    report.total_time = started.elapsed();
    Ok(report)
}

/// Reads, evaluates and (unless dry) commits batches until the customers run
/// out or `stop` is set. Returns whether it stopped early.
fn run_batches(
    store: &mut Store,
    engine: &Engine<'_>,
    options: &TickOptions<'_>,
    tick: Option<&TickRow>,
    cursor: i64,
    report: &mut TickReport,
) -> Result<bool, EngineError> {
    let at = report.at;
    let clinic = engine.clinic;
    // The churn model is read once per tick; the tick records which fit it was.
    let model = crate::churn::load(store, engine.clinic_id, at, &clinic.scoring)?;
    if let (Some(model), Some(tick)) = (&model, tick) {
        store.set_tick_model(tick.id, model.fit_id)?;
    }
    let context = FactContext {
        tz: clinic.timezone,
        cycles: &clinic.cycles,
        model: model.as_ref(),
    };
    let mut reader = store
        .reader()?
        .with_options(scan_options(clinic, model.is_some(), at));
    reader.begin_snapshot()?;
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let stop_reader = AtomicBool::new(false);
    let stop_reader = &stop_reader;
    let clinic_id = engine.clinic_id;
    let batch_size = options.batch_size.max(1);
    std::thread::scope(|scope| {
        let (to_main, batches) = mpsc::sync_channel::<ReadBatch>(1);
        spawn_named(scope, "recall-reader", move || {
            read_batches(
                reader,
                clinic_id,
                at,
                cursor,
                batch_size,
                to_main,
                stop_reader,
            )
        })?;
        // The writer commits batch N while batch N+1 is evaluated. Batches
        // reach it in order, so the cursor only ever moves forward.
        let (to_writer, commits) = mpsc::sync_channel::<TickBatch>(1);
        let writer = match tick {
            Some(tick) => Some(spawn_named(scope, "recall-writer", move || {
                let mut spent = Duration::ZERO;
                for batch in commits {
                    let started = Instant::now();
                    store.commit_batch(tick, &batch)?;
                    spent += started.elapsed();
                }
                Ok::<_, StoreError>(spent)
            })?),
            None => None,
        };

        let mut outcome = Ok(false);
        for batch in batches {
            let (Batch { records, last }, scan_time) = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    outcome = Err(e.into());
                    break;
                }
            };
            report.scan_time += scan_time;
            let started = Instant::now();
            let judged = decide_batch(engine, &context, &records, at, workers);
            report.eval_time += started.elapsed();
            let cursor = last.unwrap_or(cursor);
            let batch = absorb(
                judged,
                &records,
                cursor,
                report,
                options.samples,
                engine.rules,
            );
            // A failed send means the writer stopped on an error; it is
            // collected when the writer is joined.
            if writer.is_some() && to_writer.send(batch).is_err() {
                break;
            }
            if options.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                outcome = Ok(true);
                break;
            }
        }
        stop_reader.store(true, Ordering::SeqCst);
        drop(to_writer);
        if let Some(writer) = writer {
            match writer.join() {
                Ok(Ok(spent)) => report.write_time += spent,
                Ok(Err(e)) => return Err(e.into()),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        outcome
    })
}

/// What a tick's scan reads beyond the basic facts: treatment cycles when
/// the clinic has any, visit days and repeat spend when a churn model is in use.
pub fn scan_options(clinic: &Clinic, with_model: bool, at: Timestamp) -> ScanOptions {
    ScanOptions {
        treatments: !clinic.cycles.is_empty(),
        repeat_offset: with_model.then(|| crate::base::clock::utc_offset(at, clinic.timezone)),
    }
}

/// A batch of customers and the time it took to read.
type ReadBatch = Result<(Batch, Duration), StoreError>;

fn spawn_named<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>, EngineError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn_scoped(scope, f)
        .map_err(EngineError::Thread)
}

/// The reader thread: batches of customer records, in id order.
fn read_batches(
    mut reader: Reader,
    clinic_id: i64,
    at: Timestamp,
    mut cursor: i64,
    batch_size: usize,
    sender: mpsc::SyncSender<ReadBatch>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let batch = reader.scan_batch(clinic_id, at, cursor, batch_size);
        let elapsed = started.elapsed();
        match batch {
            Ok(Batch { last: None, .. }) => break,
            Ok(batch) => {
                cursor = batch.last.unwrap_or(cursor);
                if sender.send(Ok((batch, elapsed))).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = sender.send(Err(e));
                break;
            }
        }
    }
    let _ = reader.end_snapshot();
}

/// What was decided for one customer.
struct Decided {
    rule: usize,
    facts: Arc<Facts>,
    messages: Vec<NewMessage>,
}

/// The outcome of judging one customer: a decision if a rule fired, and the
/// conditions that could not be evaluated.
struct Judged {
    decided: Option<Decided>,
    errors: Vec<(usize, String)>,
    /// Not judged: the customer waits for onboarding.
    waiting: bool,
}

/// Evaluates a batch on `workers` threads; results in record order.
fn decide_batch(
    engine: &Engine<'_>,
    context: &FactContext<'_>,
    records: &[CustomerRecord],
    at: Timestamp,
    workers: usize,
) -> Vec<Judged> {
    let judge = |part: &[CustomerRecord]| {
        let evaluator = Evaluator::new(engine.rules);
        part.iter()
            .map(|record| decide(engine, context, &evaluator, record, at))
            .collect::<Vec<_>>()
    };
    if workers <= 1 || records.len() < 2 * workers {
        return judge(records);
    }
    let parts: Vec<&[CustomerRecord]> = records.chunks(records.len().div_ceil(workers)).collect();
    std::thread::scope(|scope| {
        let judge = &judge;
        // This thread judges the first part; helpers judge the others.
        let helpers: Vec<_> = parts[1..]
            .iter()
            .map(|part| spawn_named(scope, "recall-eval", move || judge(part)))
            .collect();
        let mut judged = judge(parts[0]);
        for (part, helper) in parts[1..].iter().zip(helpers) {
            match helper {
                Ok(helper) => judged.extend(
                    helper
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                ),
                // No thread to be had: judge the part here.
                Err(_) => judged.extend(judge(part)),
            }
        }
        judged
    })
}

fn decide(
    engine: &Engine<'_>,
    context: &FactContext<'_>,
    evaluator: &Evaluator<'_>,
    record: &CustomerRecord,
    at: Timestamp,
) -> Judged {
    let tz: Tz = context.tz;
    if waits_for_onboarding(record, at) {
        return Judged {
            decided: None,
            errors: Vec::new(),
            waiting: true,
        };
    }
    let facts = Facts::derive_in(record, at, context);
    let evaluation = evaluator.evaluate(&facts, &record.fired_in_pool, &record.last_fired, at, tz);
    let Some(index) = evaluation.fired else {
        return Judged {
            decided: None,
            errors: evaluation.errors,
            waiting: false,
        };
    };
    let rule = &engine.rules.rules[index];
    let customer = &record.customer;
    let pool_after = rule.to.unwrap_or(facts.pool);
    let facts = Arc::new(facts);
    let context = MessageContext {
        facts: facts.clone(),
        customer: Arc::new(CustomerVars::new(
            &customer.name,
            &customer.external_id,
            facts.gender,
        )),
        clinic: engine.clinic_vars.clone(),
        rule: Arc::new(RuleVars {
            id: rule.id.clone(),
            description: rule.description.clone(),
        }),
    };
    let held_out = rule.holds_out(&customer.external_id);
    // A moving rule still in its cooldown for this customer moves them and
    // sends nothing (a rule that only sends does not fire at all then).
    let actions: &[crate::rules::Action] = if cooling_down(rule, &record.last_fired, at, tz) {
        &[]
    } else {
        &rule.actions
    };
    let messages = actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let rendered = engine.templates.render(action.channel, &action.template, &context);
            let (content, failure) = match rendered {
                Ok(content) => (content, None),
                Err(e) => {
                    tracing::warn!(rule = %rule.id, template = %action.template, error = %e, "template failed");
                    (Content::default(), Some(e.to_string()))
                }
            };
            let fallback = engine
                .fallbacks
                .get(&action.channel)
                .filter(|channel| engine.templates.has(**channel, &action.template))
                .and_then(|channel| {
                    let content = engine.templates.render(*channel, &action.template, &context).ok()?;
                    serde_json::to_string(&Fallback {
                        channel: *channel,
                        content,
                    })
                    .ok()
                });
            NewMessage {
                customer_id: customer.id,
                rule_id: rule.id.clone(),
                action_index: i as i64,
                pool: pool_after,
                channel: action.channel,
                template: action.template.clone(),
                content,
                fallback,
                due_at: at + action.delay.as_secs() as i64,
                failure,
                held_out,
                attribution_days: rule.attribution_days,
                expires_at: action
                    .expires_after
                    .map(|after| at + (action.delay + after).as_secs() as i64),
                assign_to: match action.assign {
                    Assign::Advisor => facts.advisor.clone(),
                    Assign::RoundRobin => None,
                },
                cancel_if_stale: action.stale == Stale::Cancel,
            }
        })
        .collect();
    Judged {
        decided: Some(Decided {
            rule: index,
            facts,
            messages,
        }),
        errors: evaluation.errors,
        waiting: false,
    }
}

/// Whether an imported customer's history is older than a tick may act on:
/// they wait for `recall onboard`.
fn waits_for_onboarding(record: &CustomerRecord, at: Timestamp) -> bool {
    record
        .customer
        .history_from
        .is_some_and(|from| from < at - NEW_CUSTOMER_DAYS * 86_400)
}

/// Turns decisions into the batch to commit and adds them to the report.
fn absorb(
    judged: Vec<Judged>,
    records: &[CustomerRecord],
    cursor: i64,
    report: &mut TickReport,
    samples: usize,
    rules: &RuleSet,
) -> TickBatch {
    let mut batch = TickBatch {
        cursor,
        evaluated: records.len() as i64,
        ..TickBatch::default()
    };
    for (record, judged) in records.iter().zip(judged) {
        if judged.waiting {
            batch.evaluated -= 1;
            report.waiting += 1;
            continue;
        }
        if record.customer.history_from.is_some() {
            batch.judged_first.push(record.customer.id);
        }
        for (index, why) in judged.errors {
            let count = report
                .by_rule
                .entry(rules.rules[index].id.clone())
                .or_default();
            count.errors += 1;
            count.first_error.get_or_insert(why);
            batch.errors += 1;
            report.errors += 1;
        }
        let Some(decision) = judged.decided else {
            continue;
        };
        let rule = &rules.rules[decision.rule];
        let count = report.by_rule.entry(rule.id.clone()).or_default();
        count.fired += 1;
        if decision.messages.iter().any(|m| m.held_out) {
            count.held_out += 1;
        }
        count.messages += decision.messages.len() as i64;
        report.messages += decision.messages.len() as i64;
        let reason = explain(rule, &decision.facts);
        if let Some(to) = rule.to {
            count.moves += 1;
            report.moves += 1;
            batch.moves.push(Move {
                customer_id: record.customer.id,
                from: decision.facts.pool,
                to,
                rule_id: rule.id.clone(),
                reason: reason.clone(),
            });
        }
        if report.samples.len() < samples {
            report.samples.push(Sample {
                customer: record.customer.external_id.clone(),
                rule_id: rule.id.clone(),
                from: decision.facts.pool.to_string(),
                to: rule.to.map(|p| p.to_string()),
                channels: decision
                    .messages
                    .iter()
                    .map(|m| m.channel.to_string())
                    .collect(),
                reason,
            });
        }
        batch.messages.extend(decision.messages);
    }
    report.evaluated += batch.evaluated;
    batch
}

/// "days_since_last_visit >= 90 [days_since_last_visit=95]": the condition
/// and the values of the facts it read; with the churn model's fit when it
/// read a churn fact ("churn_risk=0.87, model #3").
pub fn explain(rule: &crate::rules::Rule, facts: &Facts) -> String {
    let source = rule.condition.source.trim();
    if rule.condition.facts.is_empty() {
        return source.to_string();
    }
    let mut shown: Vec<String> = rule
        .condition
        .facts
        .iter()
        .filter_map(|name| facts.get(name).map(|value| format!("{name}={value}")))
        .collect();
    let read_model = rule
        .condition
        .facts
        .iter()
        .any(|name| crate::facts::lookup(name).is_some_and(|f| f.from_model));
    if read_model && let Some(fit) = facts.outlook.fit_id() {
        shown.push(format!("model #{fit}"));
    }
    format!("{source} [{}]", shown.join(", "))
}
