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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::{self, Timestamp};
use crate::config::Clinic;
use crate::facts::{CustomerRecord, Facts};
use crate::model::Gender;
use crate::rules::RuleSet;
use crate::rules::eval::Evaluator;
use crate::store::scan::Reader;
use crate::store::ticks::{Move, NewMessage, TickBatch, TickRow, TickStart};
use crate::store::{Store, StoreError};
use crate::templates::{ClinicVars, CustomerVars, MessageContext, RuleVars, TemplateSet};

/// What a tick needs besides the store.
pub struct Engine<'a> {
    pub clinic: &'a Clinic,
    pub clinic_id: i64,
    pub rules: &'a RuleSet,
    pub templates: &'a TemplateSet,
}

/// How to run a tick.
#[derive(Debug, Clone, Copy)]
pub struct TickOptions<'a> {
    pub at: DateTime<Utc>,
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
    #[error("the fact reader stopped unexpectedly")]
    ReaderLost,
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
    let mut finished_first = Vec::new();
    let tick = loop {
        match store.begin_tick(at, Utc::now().timestamp(), |t| clock::format_local(t, tz))? {
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
        let done = store.finish_tick(tick.id, Utc::now().timestamp())?;
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
    let mut reader = store.reader()?;
    reader.begin_snapshot()?;
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let stop_reader = AtomicBool::new(false);
    let stop_reader = &stop_reader;
    std::thread::scope(|scope| {
        let (sender, batches) =
            mpsc::sync_channel::<Result<(Vec<CustomerRecord>, Duration), StoreError>>(1);
        let clinic_id = engine.clinic_id;
        let batch_size = options.batch_size.max(1);
        scope.spawn(move || {
            read_batches(
                reader,
                clinic_id,
                at,
                cursor,
                batch_size,
                sender,
                stop_reader,
            )
        });

        let mut stopped = false;
        for batch in batches {
            let (records, scan_time) = batch?;
            report.scan_time += scan_time;
            let started = Instant::now();
            let decided = decide_batch(engine, &records, at, workers);
            report.eval_time += started.elapsed();
            let batch = absorb(decided, &records, report, options.samples, engine.rules);
            if let Some(tick) = tick {
                let started = Instant::now();
                store.commit_batch(tick, &batch)?;
                report.write_time += started.elapsed();
            }
            if options.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                stopped = true;
                stop_reader.store(true, Ordering::SeqCst);
                break;
            }
        }
        Ok(stopped)
    })
}

/// The reader thread: batches of customer records, in id order.
fn read_batches(
    mut reader: Reader,
    clinic_id: i64,
    at: Timestamp,
    mut cursor: i64,
    batch_size: usize,
    sender: mpsc::SyncSender<Result<(Vec<CustomerRecord>, Duration), StoreError>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let batch = reader.scan_batch(clinic_id, at, cursor, batch_size);
        let elapsed = started.elapsed();
        match batch {
            Ok(records) if records.is_empty() => break,
            Ok(records) => {
                cursor = records.last().map_or(cursor, |r| r.customer.id);
                if sender.send(Ok((records, elapsed))).is_err() {
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
    facts: Facts,
    messages: Vec<NewMessage>,
}

/// The outcome of judging one customer: a decision if a rule fired, and the
/// conditions that could not be evaluated.
struct Judged {
    decided: Option<Decided>,
    errors: Vec<(usize, String)>,
}

/// Evaluates a batch on `workers` threads; results in record order.
fn decide_batch(
    engine: &Engine<'_>,
    records: &[CustomerRecord],
    at: Timestamp,
    workers: usize,
) -> Vec<Judged> {
    let chunk = records.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let evaluator = Evaluator::new(engine.rules);
                    part.iter()
                        .map(|record| decide(engine, &evaluator, record, at))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn decide(
    engine: &Engine<'_>,
    evaluator: &Evaluator<'_>,
    record: &CustomerRecord,
    at: Timestamp,
) -> Judged {
    let tz: Tz = engine.clinic.timezone;
    let facts = Facts::derive(record, at, tz);
    let evaluation = evaluator.evaluate(&facts, &record.fired_in_pool, at, tz);
    let Some(index) = evaluation.fired else {
        return Judged {
            decided: None,
            errors: evaluation.errors,
        };
    };
    let rule = &engine.rules.rules[index];
    let customer = &record.customer;
    let pool_after = rule.to.unwrap_or(facts.pool);
    let gender: Option<Gender> = facts.gender;
    let context = MessageContext {
        facts: &facts,
        customer: CustomerVars::new(&customer.name, &customer.external_id, gender),
        clinic: ClinicVars {
            name: &engine.clinic.name,
            phone: engine.clinic.phone.as_deref().unwrap_or(""),
        },
        rule: RuleVars {
            id: &rule.id,
            description: &rule.description,
        },
    };
    let messages = rule
        .actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let rendered = engine.templates.render(action.channel, &action.template, &context);
            let (subject, content, html, failure) = match rendered {
                Ok(r) => (r.subject, r.body, r.html, None),
                Err(e) => {
                    tracing::warn!(rule = %rule.id, template = %action.template, error = %e, "template failed");
                    (None, String::new(), None, Some(e.to_string()))
                }
            };
            NewMessage {
                customer_id: customer.id,
                rule_id: rule.id.clone(),
                action_index: i as i64,
                pool: pool_after,
                channel: action.channel,
                template: action.template.clone(),
                subject,
                content,
                html,
                due_at: at + action.delay.as_secs() as i64,
                failure,
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
    }
}

/// Turns decisions into the batch to commit and adds them to the report.
fn absorb(
    judged: Vec<Judged>,
    records: &[CustomerRecord],
    report: &mut TickReport,
    samples: usize,
    rules: &RuleSet,
) -> TickBatch {
    let mut batch = TickBatch {
        cursor: records.last().map_or(0, |r| r.customer.id),
        evaluated: records.len() as i64,
        ..TickBatch::default()
    };
    report.evaluated += batch.evaluated;
    for (record, judged) in records.iter().zip(judged) {
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
    batch
}

/// "days_since_last_visit >= 90 [days_since_last_visit=95]": the condition
/// and the values of the facts it read.
pub fn explain(rule: &crate::rules::Rule, facts: &Facts) -> String {
    let values = serde_json::to_value(facts).unwrap_or_default();
    let shown: Vec<String> = rule
        .condition
        .facts
        .iter()
        .map(|name| format!("{name}={}", values.get(*name).cloned().unwrap_or_default()))
        .collect();
    if shown.is_empty() {
        rule.condition.source.clone()
    } else {
        format!("{} [{}]", rule.condition.source.trim(), shown.join(", "))
    }
}
