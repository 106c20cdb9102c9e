//! `recall model fit|show|evaluate`: the churn model behind `churn_risk`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::Subcommand;

use super::{lang, load_config, open_store, parse_at};
use crate::churn;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Fit the churn model on the clinic's history now (the service refits
    /// on `[model] refit`, weekly by default), record it and show it.
    Fit {
        /// Fit on the history up to this time (clinic time); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// The current fit: its parameters and data, and the churn score of
    /// every customer as a histogram and per band.
    Show {
        /// Score as of this time; default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Judge the model on the clinic's own history: fit on everything up to
    /// HOLDOUT days ago, then compare the churn score with who came back
    /// since (AUC, precision and recall per band). Records nothing.
    Evaluate {
        /// The end of the holdout; default now.
        #[arg(long)]
        at: Option<String>,
        /// Days of holdout; default `[model] churn_window_days`.
        #[arg(long)]
        holdout_days: Option<i64>,
    },
}

pub fn run(config_path: &Path, command: ModelCommand) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (store, clinic_id) = open_store(&config)?;
    let clinic = &config.clinic;
    let tz = clinic.timezone;
    let lang = lang();
    match command {
        ModelCommand::Fit { at } => {
            let at = parse_at(at.as_deref(), &config)?.timestamp();
            let fit = churn::fit(
                &store,
                clinic_id,
                clinic,
                &config.model,
                at,
                Utc::now().timestamp(),
            )?;
            tracing::info!(
                fit = fit.id,
                customers = fit.customers,
                "churn model fitted"
            );
            if let Some(overview) = churn::overview(&store, clinic_id, clinic, at)? {
                print!("{}", overview.render(lang, tz));
            }
        }
        ModelCommand::Show { at } => {
            let at = parse_at(at.as_deref(), &config)?.timestamp();
            match churn::overview(&store, clinic_id, clinic, at)? {
                Some(overview) => print!("{}", overview.render(lang, tz)),
                None => {
                    eprintln!(
                        "{}",
                        match lang {
                            crate::diag::Lang::En =>
                                "no churn model yet: run `recall model fit` (the service fits one at start and then on `[model] refit`); until then the churn facts are null",
                            crate::diag::Lang::Zh =>
                                "还没有流失模型：请运行 `recall model fit`（服务启动时及按 `[model] refit` 定时会自动拟合）；在此之前流失相关事实为 null",
                        }
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        ModelCommand::Evaluate { at, holdout_days } => {
            let end = parse_at(at.as_deref(), &config)?.timestamp();
            let holdout = holdout_days.unwrap_or(clinic.scoring.churn_window_days as i64);
            if !(7..=730).contains(&holdout) {
                anyhow::bail!("--holdout-days must be from 7 to 730");
            }
            let evaluation =
                churn::evaluate(&store, clinic_id, clinic, &config.model, end, holdout)?;
            print!("{}", evaluation.render(lang, tz));
        }
    }
    Ok(ExitCode::SUCCESS)
}
