//! `recall import`: customers, visits, orders or follow-ups from a CRM/HIS
//! CSV export, all or nothing, read as it is written (a file of a million
//! rows never sits in memory), with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{lang, load_config, open_store};
use crate::base::i18n::t;
use crate::import::{Kind, OpenError, Problems, Reader};
use crate::store::import::{ImportError, ImportOptions};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds.
    #[arg(value_enum, required_unless_present = "columns")]
    pub kind: Option<Kind>,
    /// The CSV file.
    #[arg(required_unless_present = "columns")]
    pub file: Option<PathBuf>,
    /// How the file is encoded; `auto` tries UTF-8, then GBK.
    #[arg(long, value_enum, default_value = "auto")]
    pub encoding: crate::import::Encoding,
    /// Print the accepted columns of every kind (markdown) and exit.
    #[arg(long)]
    pub columns: bool,
}

/// `recall import`, or with `--columns` the columns every kind accepts.
pub(super) fn run(config_path: &Path, args: &ImportArgs, now: DateTime<Utc>) -> Result<ExitCode> {
    match (args.columns, args.kind, &args.file) {
        (false, Some(kind), Some(file)) => import(config_path, kind, file, args.encoding, now),
        _ => {
            print!("{}", crate::import::columns_markdown());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `recall import`.
fn import(
    config_path: &Path,
    kind: Kind,
    file: &Path,
    encoding: crate::import::Encoding,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let name = file.display();
    let report_rows = |problems: &Problems| {
        for e in &problems.shown {
            eprintln!("{name}:{}: {}", e.line, e.message.render(lang()));
        }
        if problems.total > problems.shown.len() {
            let more = problems.total - problems.shown.len();
            eprintln!("{}", t!("import.more", count = more).render(lang()));
        }
        let summary = t!("import.problems", count = problems.total);
        eprintln!("{}", summary.render(lang()));
    };
    let reader = match Reader::open(file, encoding, kind, config.clinic.timezone, now) {
        Ok(reader) => reader.in_region(config.clinic.country),
        Err(OpenError::File(why)) => anyhow::bail!(why),
        Err(OpenError::Header(errors)) => {
            let mut problems = Problems::default();
            problems.extend(errors);
            report_rows(&problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    let (mut store, clinic_id) = open_store(&config, now)?;
    let progress = reader.progress();
    let bar = progress_bar(progress.total());
    let options = ImportOptions {
        now: now.timestamp(),
        consent_when_absent: config.consent_when_absent,
    };
    let imported = store.import_file(clinic_id, reader, &options, |rows| {
        if rows % 4096 == 0 {
            bar.set_position(progress.read());
            bar.set_message(format!("{rows} rows"));
        }
    });
    bar.finish_and_clear();
    match imported {
        Ok((report, credited)) => {
            let counts = report.counts;
            let imported = t!(
                "import.done",
                file = &name,
                rows = report.rows,
                kind = kind.name(),
                inserted = counts.inserted,
                updated = counts.updated,
                unchanged = counts.unchanged
            );
            println!("{}", imported.render(lang()));
            if report.consent_defaulted > 0 {
                let consent = if options.consent_when_absent {
                    t!("import.consent_yes")
                } else {
                    t!("import.consent_no")
                };
                let defaulted = t!(
                    "import.consent_defaulted",
                    count = report.consent_defaulted,
                    columns = report.consent_columns.join(", "),
                    consent
                );
                println!("{}", defaulted.render(lang()));
            }
            if credited > 0 {
                println!("{}", t!("import.credited", count = credited).render(lang()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Rows(problems)) => {
            report_rows(&problems);
            Ok(ExitCode::FAILURE)
        }
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}

/// A progress bar over the file's bytes on a terminal (stderr); hidden
/// otherwise, where the summary line says what was done.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
