//! `recall bench`: a tick over a large synthetic clinic, measured.
//!
//! Not a test: it prints figures. It builds (or reuses) a database of N
//! customers with V visits (plus orders and follow-ups in proportion), then
//! measures, in one run: the time SQLite alone takes to read every customer's
//! facts, a full tick with the shipped rules (read + evaluate + write), and
//! the process's peak resident memory during the tick.

pub mod dispatch;
pub mod import;
pub mod model;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use fastrand::Rng;

use crate::base::clock::Timestamp;
use crate::base::model::{FollowupResult, Pool};
use crate::engine::{self, Engine, TickOptions};
use crate::store::Store;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// What to measure; without one, a tick.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// Number of customers.
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: usize,
    /// Number of visits, spread over the customers.
    #[arg(long, default_value_t = 5_000_000)]
    pub visits: usize,
    /// Folder for the benchmark database (reused when it already holds one
    /// of the same size).
    #[arg(long, default_value = "target/bench")]
    pub dir: PathBuf,
    /// Customers per batch.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Dispatch queued messages through a webhook sender to an HTTP server
    /// in this process (rate limits off); prints messages/s and peak memory.
    Dispatch(crate::bench::dispatch::DispatchArgs),
    /// Write a customers file and a visits file of N rows (about 50 bytes a
    /// row), import them as `recall import` does, and import the visits
    /// again; prints time, rows/s and peak memory of each.
    Import(crate::bench::import::ImportArgs),
    /// Fit the churn model (BG/NBD and Gamma-Gamma) to a synthetic customer
    /// base drawn from known parameters and score every customer; prints
    /// the time of each step and the recovered parameters.
    Model(ModelArgs),
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: usize,
    /// Keep fractional times (every summary distinct: the fit's worst
    /// case) instead of whole days as a clinic records visits.
    #[arg(long)]
    pub continuous: bool,
}

/// The fixed "now" of the benchmark, so reruns judge the same data.
fn bench_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default()
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.what {
        Some(BenchWhat::Dispatch(dispatch)) => return crate::bench::dispatch::run(dispatch),
        Some(BenchWhat::Import(import)) => return crate::bench::import::run(import),
        Some(BenchWhat::Model(model)) => {
            let mut config = crate::bench::model::BenchConfig::default();
            config.data.customers = model.customers;
            config.data.whole_days = !model.continuous;
            print!("{}", crate::bench::model::run(&config)?);
            return Ok(());
        }
        None => {}
    }
    let tz = chrono_tz::Asia::Shanghai;
    std::fs::create_dir_all(&args.dir)?;
    let db = args
        .dir
        .join(format!("bench-{}-{}.db", args.customers, args.visits));
    let config_dir = args.dir.join("clinic");
    let config_path = write_config(&config_dir, &db)?;
    let loaded = match crate::setup::Loaded::load(&config_path) {
        Ok((loaded, _)) => loaded,
        Err(report) => anyhow::bail!("bench config: {report}"),
    };

    let fresh = !db.exists();
    let mut store = Store::create(&db)?;
    let clinic_id = store.ensure_clinic("main", "bench", tz.name(), 0)?;
    if fresh {
        let started = Instant::now();
        let counts = generate(&mut store, clinic_id, args, bench_now())?;
        println!(
            "generated {} customers, {} visits, {} orders, {} follow-ups in {:.1} s",
            args.customers,
            counts.0,
            counts.1,
            counts.2,
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("reusing {}", db.display());
    }
    // Start every run from the generated state, so reruns measure the same tick.
    let backup = args.dir.join("pristine.db");
    if fresh {
        store.backup_to(&backup)?;
    } else if backup.exists() {
        drop(store);
        std::fs::copy(&backup, &db).context("restoring the pristine database")?;
        let _ = std::fs::remove_file(db.with_extension("db-wal"));
        store = Store::open(&db)?;
    }

    let at = bench_now();
    // The weekly refit of the churn model, from SQLite, as a tick after a
    // refit slot does it; the ticks then derive the churn facts with it.
    reset_peak_memory();
    let started = Instant::now();
    let fit = crate::churn::fit(
        &store,
        clinic_id,
        &loaded.config.clinic,
        &loaded.config.model,
        at.timestamp(),
        at.timestamp(),
    )?;
    println!(
        "churn model fit on {} customers' visits from SQLite in {:.2} s (fitting alone {:.2} s); peak memory {}",
        fit.customers,
        started.elapsed().as_secs_f64(),
        fit.notes.seconds,
        peak_memory_kib().map_or("n/a".to_string(), |kib| format!(
            "{:.0} MB",
            kib as f64 / 1024.0
        ))
    );

    // SQLite alone: read every customer's facts as the tick will (with the
    // treatment and churn-model columns), evaluate nothing.
    let started = Instant::now();
    let mut reader = store.reader()?.with_options(engine::scan_options(
        &loaded.config.clinic,
        true,
        at.timestamp(),
    ));
    reader.begin_snapshot()?;
    let (mut after, mut read) = (0, 0usize);
    loop {
        let batch = reader.scan_batch(clinic_id, at.timestamp(), after, args.batch)?;
        let Some(last) = batch.last else { break };
        after = last;
        read += batch.records.len();
    }
    reader.end_snapshot()?;
    let scan_only = started.elapsed();
    println!(
        "sqlite fact scan alone: {read} customers in {:.2} s",
        scan_only.as_secs_f64()
    );

    let engine = Engine::new(
        &loaded.config.clinic,
        clinic_id,
        &loaded.rules,
        &loaded.templates,
    );
    // The first tick after an import re-sorts a large share of customers;
    // the next morning's tick is what a clinic runs every day.
    for (label, at) in [
        ("first tick after import", at),
        ("next day's tick", at + chrono::Duration::days(1)),
    ] {
        reset_peak_memory();
        let cpu_before = cpu_seconds();
        let report = engine::tick(
            &mut store,
            &engine,
            TickOptions {
                batch_size: args.batch,
                ..TickOptions::at(at)
            },
        )?;
        let peak = peak_memory_kib().map_or("n/a".to_string(), |kib| {
            format!("{:.0} MB", kib as f64 / 1024.0)
        });
        let cpu = match (cpu_before, cpu_seconds()) {
            (Some(before), Some(after)) => format!("{:.2} s", after - before),
            _ => "n/a".to_string(),
        };
        println!(
            "{label}: {} customers, {} moves, {} messages in {:.2} s, CPU {cpu} \
             (reading {:.2} s on its own thread, evaluating {:.2} s, writing {:.2} s); peak memory {peak}",
            report.evaluated,
            report.moves,
            report.messages,
            report.total_time.as_secs_f64(),
            report.scan_time.as_secs_f64(),
            report.eval_time.as_secs_f64(),
            report.write_time.as_secs_f64()
        );
    }
    Ok(())
}

fn write_config(dir: &Path, db: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (path, text) in crate::setup::scaffold::FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, text)?;
    }
    let db = std::path::absolute(db)?;
    let config = crate::setup::scaffold::config("bench").replace(
        "database = \"data/recall.db\"",
        &format!("database = {:?}", db.display().to_string()),
    );
    let path = dir.join("recall.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Fills the store with synthetic customers spread over all pools. Returns
/// (visits, orders, follow-ups).
fn generate(
    store: &mut Store,
    clinic_id: i64,
    args: &BenchArgs,
    now: DateTime<Utc>,
) -> Result<(usize, usize, usize)> {
    let mut rng = Rng::with_seed(42);
    let now_s = now.timestamp();
    let day = 86_400;
    let per_customer = (args.visits as f64 / args.customers.max(1) as f64).max(1.0);
    let (mut visits, mut orders, mut followups) = (0usize, 0usize, 0usize);
    let chunk = 50_000;
    let mut index = 0;
    while index < args.customers {
        let mut ingest = store.ingest()?;
        for i in index..(index + chunk).min(args.customers) {
            let remaining_visits = args.visits.saturating_sub(visits);
            let remaining_customers = args.customers - i;
            let n = if remaining_customers == 1 {
                remaining_visits.max(1)
            } else {
                let max = (2.0 * per_customer) as usize;
                rng.usize(1..max.max(2))
                    .min(remaining_visits.saturating_sub(remaining_customers - 1))
                    .max(1)
            };
            let first: Timestamp = now_s - rng.i64(1..730) * day;
            let customer = crate::demo::person(&mut rng, i);
            let id = ingest.add_customer(clinic_id, &customer, first)?;
            let mut at = first;
            let mut last = first;
            for v in 0..n {
                ingest.add_visit(id, at, None)?;
                last = at;
                if v == 0 || rng.f64() < 0.3 {
                    ingest.add_order(
                        id,
                        at + 1_800,
                        rng.i64(500..30_000) * 100,
                        Some("水光针"),
                        Some("皮肤科"),
                    )?;
                    orders += 1;
                }
                if rng.f64() < 0.3 {
                    let result = if rng.f64() < 0.8 {
                        FollowupResult::Smooth
                    } else {
                        FollowupResult::NotSmooth
                    };
                    ingest.add_followup(id, at + day, Some("顾问"), result, None)?;
                    followups += 1;
                }
                let step = (now_s - at) / (n - v).max(1) as i64;
                at += rng.i64(1..step.max(2));
            }
            visits += n;
            // Spread customers over the pools by how long ago they last came.
            let since_last = (now_s - last) / day;
            let pool = match since_last {
                0..=29 => Pool::New,
                30..=119 => Pool::Customer,
                120..=199 => Pool::Warning,
                200..=399 => Pool::Maintenance,
                _ => Pool::Churned,
            };
            if pool != Pool::New {
                let entered = last.max(now_s - rng.i64(1..200) * day);
                ingest.place(id, pool, entered, "benchmark placement")?;
            }
        }
        ingest.commit()?;
        index += chunk;
    }
    Ok((visits, orders, followups))
}

/// User + system CPU time of this process so far, in seconds (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // The kernel counts in clock ticks, 100 per second on Linux.
    Some((utime + stime) / 100.0)
}

/// Resets the kernel's peak-RSS counter (VmHWM) for this process.
pub(crate) fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory of this process, in KiB (Linux).
pub(crate) fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
