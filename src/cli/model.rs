//! `recall model fit|show|evaluate`: the churn model behind `churn_risk`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{lang, load_config, open_store, parse_at};
use crate::base::i18n::t;
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

pub fn run(config_path: &Path, command: ModelCommand, now: DateTime<Utc>) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let (store, clinic_id) = open_store(&config, now)?;
    let clinic = &config.clinic;
    let tz = clinic.timezone;
    let lang = lang();
    match command {
        ModelCommand::Fit { at } => {
            let at = parse_at(at.as_deref(), &config, now)?.timestamp();
            let fit = churn::fit(
                &store,
                clinic_id,
                clinic,
                &config.model,
                at,
                now.timestamp(),
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
            let at = parse_at(at.as_deref(), &config, now)?.timestamp();
            match churn::overview(&store, clinic_id, clinic, at)? {
                Some(overview) => print!("{}", overview.render(lang, tz)),
                None => {
                    eprintln!("{}", t!("model.none_yet").render(lang));
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        ModelCommand::Evaluate { at, holdout_days } => {
            let end = parse_at(at.as_deref(), &config, now)?.timestamp();
            let holdout = holdout_days.unwrap_or(clinic.scoring.churn_window_days as i64);
            if !(7..=730).contains(&holdout) {
                anyhow::bail!(t!("model.holdout_days").render(lang));
            }
            let evaluation =
                churn::evaluate(&store, clinic_id, clinic, &config.model, end, holdout)?;
            print!("{}", evaluation.render(lang, tz));
        }
    }
    Ok(ExitCode::SUCCESS)
}
