//! `recall bench import`: importing a large CRM/HIS export, measured.
//!
//! Not a test: it prints figures. It writes a customers file and a visits
//! file of the requested sizes (deterministic, about 50 bytes a visit, as a
//! HIS exports them), imports both through the code `recall import` runs
//! (the streaming reader, the one-transaction upsert, attribution), then
//! imports the visits again (every row found and unchanged), and prints
//! each step's time, rows per second and the process's peak resident
//! memory: a peak that does not grow with `--rows` means the file is never
//! held in memory.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::bench::{peak_memory_kib, reset_peak_memory};
use crate::import::{Encoding, Kind, OpenError, Reader};
use crate::store::Store;
use crate::store::import::{ImportError, ImportOptions};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Rows of the visits file.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Customers the visits are spread over (the customers file's rows).
    #[arg(long, default_value_t = 100_000)]
    pub customers: usize,
    /// Folder for the benchmark clinic and its files (emptied first).
    #[arg(long, default_value = "target/bench-import")]
    pub dir: PathBuf,
}

fn bench_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default()
}

pub fn run(args: &ImportArgs) -> Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let config_path = args.dir.join("recall.toml");
    std::fs::write(&config_path, "[clinic]\nname = \"bench\"\n")?;
    let config = crate::config::load(&config_path)
        .map_err(|report| anyhow::anyhow!("bench config: {report}"))?;

    let started = Instant::now();
    let customers = args.dir.join("customers.csv");
    let visits = args.dir.join("visits.csv");
    write_customers(&customers, args.customers)?;
    write_visits(&visits, args.rows, args.customers.max(1))?;
    println!(
        "wrote {} customers ({:.1} MB) and {} visits ({:.1} MB) in {:.1} s",
        args.customers,
        megabytes(&customers),
        args.rows,
        megabytes(&visits),
        started.elapsed().as_secs_f64()
    );

    let mut store = Store::create(&config.database)?;
    let now = bench_now();
    let clinic_id = store.ensure_clinic(
        &config.clinic.code,
        &config.clinic.name,
        config.clinic.timezone.name(),
        now.timestamp(),
    )?;
    let options = ImportOptions {
        now: now.timestamp(),
        consent_when_absent: config.consent_when_absent,
    };
    let tz = config.clinic.timezone;
    for (what, kind, file) in [
        ("customers", Kind::Customers, &customers),
        ("visits", Kind::Visits, &visits),
        ("the same visits again", Kind::Visits, &visits),
    ] {
        reset_peak_memory();
        let started = Instant::now();
        let reader = match Reader::open(file, Encoding::Auto, kind, tz, now) {
            Ok(reader) => reader,
            Err(OpenError::File(why)) => anyhow::bail!(why),
            Err(OpenError::Header(errors)) => anyhow::bail!("{}", errors[0]),
        };
        let (report, _) = match store.import_file(clinic_id, reader, &options, |_| {}) {
            Ok(done) => done,
            Err(ImportError::Rows(problems)) => anyhow::bail!("{}", problems.shown[0]),
            Err(ImportError::Store(e)) => return Err(e.into()),
        };
        let took = started.elapsed().as_secs_f64();
        let counts = report.counts;
        println!(
            "imported {what}: {} rows in {took:.2} s, {:.0} rows/s ({} new, {} updated, {} unchanged); peak memory {}",
            report.rows,
            report.rows as f64 / took,
            counts.inserted,
            counts.updated,
            counts.unchanged,
            peak_memory_kib().map_or("n/a".to_string(), |kib| format!(
                "{:.0} MB",
                kib as f64 / 1024.0
            ))
        );
    }
    Ok(())
}

fn megabytes(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}

const CITIES: &[&str] = &["上海", "杭州", "南京", "苏州", "北京", "深圳"];
const DEPARTMENTS: &[&str] = &["皮肤科", "注射科", "激光科", "口腔科"];
const NOTES: &[&str] = &["", "复诊", "首次到院", "术后复查"];

/// `customers` customers, as a CRM exports them.
fn write_customers(path: &Path, customers: usize) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "客户编号,姓名,手机号码,性别,城市,短信同意")?;
    for i in 0..customers {
        writeln!(
            out,
            "C{i:07},客户{i},139{:08},{},{},{}",
            i,
            if rng.u8(0..10) < 8 { "女" } else { "男" },
            CITIES[rng.usize(0..CITIES.len())],
            if rng.u8(0..10) < 9 { "是" } else { "否" },
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `rows` visits over `customers` customers, in time order (as a HIS
/// exports its visit log), about 50 bytes each.
fn write_visits(path: &Path, rows: usize, customers: usize) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(12);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "到院编号,客户编号,到院时间,科室,备注")?;
    let start = bench_now().timestamp() - 3 * 365 * 86_400;
    let step = (3 * 365 * 86_400 / rows.max(1) as i64).max(1);
    for i in 0..rows {
        let at = DateTime::from_timestamp(start + i as i64 * step, 0).unwrap_or_default();
        writeln!(
            out,
            "V{i:08},C{:07},{},{},{}",
            rng.usize(0..customers),
            at.format("%Y-%m-%d %H:%M"),
            DEPARTMENTS[rng.usize(0..DEPARTMENTS.len())],
            NOTES[rng.usize(0..NOTES.len())],
        )?;
    }
    out.flush()?;
    Ok(())
}
