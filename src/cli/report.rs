//! `recall report`: pools, moves, retention, cost and uplift over a period,
//! as tables, CSV (one file per section), JSON or an Excel workbook.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use clap::Args;

use super::{Format, OutputArgs, load_config, open_store, parse_at, write};
use crate::base::clock;
use crate::base::i18n::t;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Start of the period (clinic time); default 30 days before `--to`.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the period (exclusive); default now.
    #[arg(long)]
    pub to: Option<String>,
    /// How the recall numbers are grouped.
    #[arg(long, value_enum, default_value = "rule")]
    pub by: crate::report::By,
    /// Only this section: pools, moves, customers, recall, funnel or uplift.
    #[arg(long)]
    pub section: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The file to write, as --output FILE does (`recall report --format xlsx 统计表.xlsx`).
    #[arg(value_name = "FILE", conflicts_with = "output")]
    pub file: Option<PathBuf>,
}

/// `recall report`.
pub(super) fn run(
    config_path: &Path,
    args: &ReportArgs,
    lang: crate::base::diag::Lang,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tz = config.clinic.timezone;
    let to = parse_at(args.to.as_deref(), &config, now)?;
    let from = match args.from.as_deref() {
        Some(text) => clock::parse_time(text, tz, now)?,
        None => to - chrono::Duration::days(30),
    };
    if from >= to {
        bail!(t!("cli.from_before_to").render(super::lang()));
    }
    let (mut store, _) = open_store(&config, now)?;
    // Credit returns that arrived since the last tick before counting them.
    store.attribute()?;
    let report = crate::report::build(&store, from, to, args.by, tz)?;
    let book = super::only_section(
        report.book(lang, tz),
        args.section.as_deref(),
        |section, known| t!("report.unknown_section", section, known),
    )?;
    let mut output = args.output.output(Format::Table, lang);
    if let Some(file) = &args.file {
        output.path = Some(file.clone());
        if args.output.format.is_none() {
            output.format = Format::from_path(file).unwrap_or(output.format);
        }
    }
    write(&output, &book)?;
    Ok(ExitCode::SUCCESS)
}
