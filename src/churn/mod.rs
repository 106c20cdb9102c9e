//! The clinic's churn model: fitted on its own visits and orders, recorded
//! with the data it saw, and read by ticks for the churn facts.
//!
//! [`crate::predict`] is the mathematics and stays pure; this module joins
//! it to the store and the configuration:
//!
//! - [`summary_of`]: one customer's history as the models see it. A
//!   "purchase" is a clinic day with a visit (the papers merge same-day
//!   orders; a consultation and a treatment on one day are one visit); the
//!   spend of a repeat visit is the orders of the days after the first.
//! - [`fit`]: fit both models on every customer's summary at a cut and
//!   record the fit (`model_fits`), with its data range and how it went.
//! - [`load`]: the fit a tick at a given time uses, with the clinic's
//!   scoring settings. A tick derives each customer's churn facts from the
//!   customer's history *at the tick* and this fit, so the facts are never
//!   stale, and the tick records the fit's id: every decision can be traced
//!   to the parameters behind it.
//! - [`refit_due`]: whether a scheduled refit slot passed since the last fit.
//! - [`overview`] (`recall model show`) and [`evaluate`] (`recall model
//!   evaluate`): the score distribution now, and how well the score ranked
//!   who came back on a calibration/holdout split of the clinic's history.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::base::clock::{self, Timestamp};
use crate::base::diag::Lang;
use crate::base::i18n::{Text, lang, t};
use crate::config::{Clinic, ModelSettings};
use crate::predict::{
    self, BandStats, BgNbdFit, FitOptions, GammaGammaFit, Model, PredictError, RiskBand,
    ScoreConfig, Summary, TimeUnit,
};
use crate::store::models::{ModelFitRow, NewModelFit, SummaryRow};
use crate::store::record::CustomerRecord;
use crate::store::{Store, StoreError};

/// The fit a tick uses, with the clinic's scoring settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnModel {
    pub fit_id: i64,
    pub as_of: Timestamp,
    pub model: Model,
    pub scoring: ScoreConfig,
}

/// Errors of fitting, loading and evaluating.
#[derive(Debug, thiserror::Error)]
pub enum ChurnError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the churn model could not be fitted: {0}")]
    Predict(#[from] PredictError),
    #[error("fit #{id} in the database cannot be read: {why}")]
    Corrupt { id: i64, why: String },
    #[error(
        "{customers} customers had visited by {at}; the model needs at least {needed} (`[model] min_customers`)"
    )]
    TooFew {
        customers: usize,
        needed: usize,
        at: String,
    },
}

use crate::base::clock::utc_offset;

/// One customer's summary in days at clinic day `today`: x = visit days
/// after the first, tₓ = last visit day − first, T = today − first,
/// monetary = mean spend (yuan) of the repeat visit days. `None` without a
/// visit.
pub fn summary_of(
    first_at: Timestamp,
    last_at: Timestamp,
    visit_days: i64,
    repeat_spend_cents: i64,
    today: i64,
    tz: Tz,
) -> Summary {
    let first = clock::local_day(first_at, tz);
    let age = (today - first).max(0) as f64;
    let frequency = u32::try_from(visit_days.max(1) - 1).unwrap_or(u32::MAX);
    let recency = if frequency == 0 {
        0.0
    } else {
        ((clock::local_day(last_at, tz) - first) as f64).clamp(0.0, age)
    };
    let monetary = if frequency == 0 {
        0.0
    } else {
        repeat_spend_cents.max(0) as f64 / 100.0 / f64::from(frequency)
    };
    Summary {
        frequency,
        recency,
        age,
        monetary,
    }
}

/// A tick's customer record as a summary (see [`summary_of`]).
pub fn summary(record: &CustomerRecord, today: i64, tz: Tz) -> Option<Summary> {
    let (first, last) = (record.visits.first_at?, record.visits.last_at?);
    let days = if record.repeat.visit_days > 0 {
        record.repeat.visit_days
    } else {
        record.visits.count
    };
    Some(summary_of(
        first,
        last,
        days,
        record.repeat.repeat_spend_cents,
        today,
        tz,
    ))
}

fn summaries(rows: &[SummaryRow], at: Timestamp, tz: Tz) -> Vec<Summary> {
    let today = clock::local_day(at, tz);
    rows.iter()
        .map(|r| {
            summary_of(
                r.first_at,
                r.last_at,
                r.visit_days,
                r.repeat_spend_cents,
                today,
                tz,
            )
        })
        .collect()
}

/// How a fit went, as recorded next to its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitNotes {
    pub purchases: BgNbdFit,
    pub spend: Option<GammaGammaFit>,
    /// Why there is no spend model, when there is none.
    pub spend_error: Option<String>,
    /// How long fitting took (not counting reading the history).
    pub seconds: f64,
}

/// A recorded fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub id: i64,
    /// The data cut.
    pub as_of: Timestamp,
    /// The earliest first visit among the customers fitted.
    pub data_from: Timestamp,
    pub customers: i64,
    pub repeaters: i64,
    pub model: Model,
    pub notes: FitNotes,
    pub created_at: Timestamp,
}

impl Fit {
    fn from_row(row: ModelFitRow) -> Result<Fit, ChurnError> {
        let corrupt = |e: serde_json::Error| ChurnError::Corrupt {
            id: row.id,
            why: e.to_string(),
        };
        Ok(Fit {
            id: row.id,
            as_of: row.as_of,
            data_from: row.data_from,
            customers: row.customers,
            repeaters: row.repeaters,
            model: serde_json::from_str(&row.model).map_err(corrupt)?,
            notes: serde_json::from_str(&row.fit).map_err(corrupt)?,
            created_at: row.created_at,
        })
    }
}

/// Fits the churn model on every customer's history at `at` and records
/// it. `now` is the wall-clock time of the fit.
pub fn fit(
    store: &Store,
    clinic_id: i64,
    clinic: &Clinic,
    settings: &ModelSettings,
    at: Timestamp,
    now: Timestamp,
) -> Result<Fit, ChurnError> {
    let tz = clinic.timezone;
    let rows = store.model_summaries(clinic_id, at, utc_offset(at, tz))?;
    if rows.len() < settings.min_customers {
        return Err(ChurnError::TooFew {
            customers: rows.len(),
            needed: settings.min_customers,
            at: clock::format_local(at, tz),
        });
    }
    let data = summaries(&rows, at, tz);
    let started = Instant::now();
    let fitted = predict::fit(&data, TimeUnit::Days, &FitOptions::default())?;
    let notes = FitNotes {
        purchases: fitted.purchases,
        spend: fitted.spend,
        spend_error: fitted.spend_error.map(|e| e.to_string()),
        seconds: started.elapsed().as_secs_f64(),
    };
    let model_json = serde_json::to_string(&fitted.model).unwrap_or_default();
    let notes_json = serde_json::to_string(&notes).unwrap_or_default();
    let data_from = rows.iter().map(|r| r.first_at).min().unwrap_or(at);
    let repeaters = data.iter().filter(|s| s.frequency > 0).count() as i64;
    let id = store.save_model_fit(&NewModelFit {
        clinic_id,
        as_of: at,
        data_from,
        customers: rows.len() as i64,
        repeaters,
        model: &model_json,
        fit: &notes_json,
        created_at: now,
    })?;
    Ok(Fit {
        id,
        as_of: at,
        data_from,
        customers: rows.len() as i64,
        repeaters,
        model: fitted.model,
        notes,
        created_at: now,
    })
}

/// Records a model given rather than fitted (rule tests give their own
/// parameters), in effect from `as_of`.
pub fn record_given(
    store: &Store,
    clinic_id: i64,
    model: &Model,
    as_of: Timestamp,
) -> Result<i64, ChurnError> {
    let notes = FitNotes {
        purchases: BgNbdFit {
            model: model.purchases,
            log_likelihood: 0.0,
            customers: 0,
            distinct: 0,
            iterations: 0,
            evaluations: 0,
            method: "given".to_string(),
        },
        spend: None,
        spend_error: None,
        seconds: 0.0,
    };
    Ok(store.save_model_fit(&NewModelFit {
        clinic_id,
        as_of,
        data_from: as_of,
        customers: 0,
        repeaters: 0,
        model: &serde_json::to_string(model).unwrap_or_default(),
        fit: &serde_json::to_string(&notes).unwrap_or_default(),
        created_at: 0,
    })?)
}

/// The latest fit whose data cut is at or before `at`.
pub fn latest(store: &Store, clinic_id: i64, at: Timestamp) -> Result<Option<Fit>, ChurnError> {
    store
        .model_fit_for(clinic_id, at)?
        .map(Fit::from_row)
        .transpose()
}

/// The model a tick at `at` uses, if any fit precedes it.
pub fn load(
    store: &Store,
    clinic_id: i64,
    at: Timestamp,
    scoring: &ScoreConfig,
) -> Result<Option<Arc<ChurnModel>>, ChurnError> {
    Ok(latest(store, clinic_id, at)?.map(|fit| {
        Arc::new(ChurnModel {
            fit_id: fit.id,
            as_of: fit.as_of,
            model: fit.model,
            scoring: scoring.clone(),
        })
    }))
}

/// Whether a refit is due at `now`: there is no fit yet, or a slot of the
/// refit schedule has passed since the last fit's cut.
pub fn refit_due(
    store: &Store,
    clinic_id: i64,
    settings: &ModelSettings,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<bool, ChurnError> {
    let Some(last) = store.model_fit_for(clinic_id, now.timestamp())? else {
        return Ok(true);
    };
    Ok(crate::config::previous_slot(&settings.refit, tz, now)
        .is_some_and(|slot| slot.timestamp() > last.as_of))
}

/// What [`refit_if_due`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Refit {
    NotDue,
    Fitted(Box<Fit>),
    /// Too few customers for a model yet: the churn facts stay null.
    TooFew {
        customers: usize,
        needed: usize,
    },
}

/// Before a tick at `at`: refits the model on the history up to `at` when
/// a slot of `[model] refit` has passed since the last fit (or there is
/// none), so the tick uses it. Ticks, `recall tick`, simulations and the
/// demo all refit this way, on the same schedule.
pub fn refit_if_due(
    store: &Store,
    clinic_id: i64,
    clinic: &Clinic,
    settings: &ModelSettings,
    at: DateTime<Utc>,
    now: Timestamp,
) -> Result<Refit, ChurnError> {
    if !refit_due(store, clinic_id, settings, clinic.timezone, at)? {
        return Ok(Refit::NotDue);
    }
    match fit(store, clinic_id, clinic, settings, at.timestamp(), now) {
        Ok(fit) => Ok(Refit::Fitted(Box::new(fit))),
        Err(ChurnError::TooFew {
            customers, needed, ..
        }) => Ok(Refit::TooFew { customers, needed }),
        Err(e) => Err(e),
    }
}

impl Refit {
    /// Logs what happened (nothing when no refit was due).
    pub fn log(&self) {
        match self {
            Refit::NotDue => {}
            Refit::Fitted(fit) => tracing::info!(
                fit = fit.id,
                customers = fit.customers,
                r = fit.model.purchases.r,
                alpha = fit.model.purchases.alpha,
                a = fit.model.purchases.a,
                b = fit.model.purchases.b,
                spend_model = fit.model.spend.is_some(),
                seconds = fit.notes.seconds,
                "{}",
                t!("churn.log.refitted").render(lang())
            ),
            Refit::TooFew { customers, needed } => tracing::info!(
                customers,
                needed,
                "{}",
                t!("churn.log.too_few").render(lang())
            ),
        }
    }
}

/// The score distribution of the clinic's customers now.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub fit: Fit,
    pub at: Timestamp,
    pub scoring: ScoreConfig,
    /// Customers with a visit, scored.
    pub scored: usize,
    /// Customers per churn score decile: 0–9, 10–19, …, 90–100.
    pub histogram: [usize; 10],
    /// Customers per band, low to high.
    pub bands: [usize; 3],
    pub mean_risk: f64,
    pub mean_p_alive: f64,
    /// Visits expected over the visit window, all customers together.
    pub expected_visits: f64,
    /// Predicted lifetime value, all customers together (yuan).
    pub total_clv: Option<f64>,
}

/// Scores every customer at `at` with the latest fit.
pub fn overview(
    store: &Store,
    clinic_id: i64,
    clinic: &Clinic,
    at: Timestamp,
) -> Result<Option<Overview>, ChurnError> {
    let Some(fit) = latest(store, clinic_id, at)? else {
        return Ok(None);
    };
    let tz = clinic.timezone;
    let rows = store.model_summaries(clinic_id, at, utc_offset(at, tz))?;
    let data = summaries(&rows, at, tz);
    let scores = predict::score_all(&fit.model, &data, &clinic.scoring)?;
    let mut histogram = [0; 10];
    let mut bands = [0; 3];
    for s in &scores {
        histogram[usize::from(s.risk_score / 10).min(9)] += 1;
        bands[band_index(s.band)] += 1;
    }
    let n = scores.len().max(1) as f64;
    let total_clv = fit
        .model
        .spend
        .map(|_| scores.iter().filter_map(|s| s.clv).sum());
    Ok(Some(Overview {
        at,
        scoring: clinic.scoring.clone(),
        scored: scores.len(),
        histogram,
        bands,
        mean_risk: scores.iter().map(|s| s.churn_risk).sum::<f64>() / n,
        mean_p_alive: scores.iter().map(|s| s.p_alive).sum::<f64>() / n,
        expected_visits: scores.iter().map(|s| s.expected_visits).sum(),
        total_clv,
        fit,
    }))
}

fn band_index(band: RiskBand) -> usize {
    match band {
        RiskBand::Low => 0,
        RiskBand::Medium => 1,
        RiskBand::High => 2,
    }
}

/// How the churn score did on the clinic's own history.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Fitted on history up to here...
    pub cut: Timestamp,
    /// ...and judged on who visited between the cut and here.
    pub end: Timestamp,
    pub holdout_days: i64,
    pub model: Model,
    pub log_likelihood: f64,
    pub customers: usize,
    /// Customers with no visit in the holdout.
    pub churned: usize,
    /// Area under the ROC curve of the churn score (0.5 is chance).
    pub auc: Option<f64>,
    pub bands: [BandStats; 3],
    /// Mean predicted churn risk per band, to compare with its churn rate.
    pub band_mean_risk: [Option<f64>; 3],
    /// Visit days the model expected in the holdout, all customers together.
    pub predicted_visits: f64,
    /// Visit days there were.
    pub actual_visits: i64,
}

/// Fits on the history up to `end − holdout_days`, scores every customer
/// who had visited by then with a churn window of `holdout_days`, and
/// compares with who came back by `end`. Nothing is recorded.
pub fn evaluate(
    store: &Store,
    clinic_id: i64,
    clinic: &Clinic,
    settings: &ModelSettings,
    end: Timestamp,
    holdout_days: i64,
) -> Result<Evaluation, ChurnError> {
    let tz = clinic.timezone;
    let cut = end - holdout_days * 86_400;
    let offset = utc_offset(cut, tz);
    let rows = store.model_summaries(clinic_id, cut, offset)?;
    if rows.len() < settings.min_customers {
        return Err(ChurnError::TooFew {
            customers: rows.len(),
            needed: settings.min_customers,
            at: clock::format_local(cut, tz),
        });
    }
    let data = summaries(&rows, cut, tz);
    let fitted = predict::fit(&data, TimeUnit::Days, &FitOptions::default())?;
    let scoring = ScoreConfig {
        churn_window_days: holdout_days as f64,
        visit_window_days: holdout_days as f64,
        ..clinic.scoring.clone()
    };
    let scores = predict::score_all(&fitted.model, &data, &scoring)?;
    // Visit days in the holdout, per customer (both lists in id order).
    let visits = store.visit_days_between(clinic_id, cut, end, offset)?;
    let mut next = visits.iter().peekable();
    let actual: Vec<i64> = rows
        .iter()
        .map(|r| {
            while next.peek().is_some_and(|(id, _)| *id < r.customer_id) {
                next.next();
            }
            match next.peek() {
                Some((id, days)) if *id == r.customer_id => *days,
                _ => 0,
            }
        })
        .collect();
    let churned: Vec<bool> = actual.iter().map(|&days| days == 0).collect();
    let risks: Vec<f64> = scores.iter().map(|s| s.churn_risk).collect();
    let bands: Vec<RiskBand> = scores.iter().map(|s| s.band).collect();
    let mut risk_sums = [(0.0, 0usize); 3];
    for s in &scores {
        let slot = &mut risk_sums[band_index(s.band)];
        slot.0 += s.churn_risk;
        slot.1 += 1;
    }
    Ok(Evaluation {
        cut,
        end,
        holdout_days,
        log_likelihood: fitted.purchases.log_likelihood,
        customers: rows.len(),
        churned: churned.iter().filter(|&&c| c).count(),
        auc: predict::auc(&risks, &churned)?,
        bands: predict::band_stats(&bands, &churned)?,
        band_mean_risk: risk_sums.map(|(sum, n)| (n > 0).then(|| sum / n as f64)),
        predicted_visits: scores.iter().map(|s| s.expected_visits).sum(),
        actual_visits: actual.iter().sum(),
        model: fitted.model,
    })
}

fn band_name(band: RiskBand) -> Text {
    match band {
        RiskBand::Low => t!("churn.band.low"),
        RiskBand::Medium => t!("churn.band.medium"),
        RiskBand::High => t!("churn.band.high"),
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_string(), |x| format!("{:.1}%", x * 100.0))
}

fn table(rows: crate::base::output::Rows) -> String {
    rows.table(None)
}

/// The parameters of a model, one line each, with what they mean.
fn parameters(lang: Lang, model: &Model, log_likelihood: f64) -> String {
    let p = &model.purchases;
    let mut out = t!(
        "churn.parameters.bgnbd",
        r = format!("{:.4}", p.r),
        alpha = format!("{:.4}", p.alpha),
        a = format!("{:.4}", p.a),
        b = format!("{:.4}", p.b),
        log_likelihood = format!("{log_likelihood:.1}")
    )
    .render(lang);
    out.push_str(
        &t!(
            "churn.parameters.meaning",
            days = format!("{:.0}", p.alpha / p.r),
            leave = format!("{:.0}", 100.0 * p.a / (p.a + p.b))
        )
        .render(lang),
    );
    match &model.spend {
        Some(g) => {
            out.push_str(&format!(
                "  Gamma-Gamma  p = {:.4}  q = {:.4}  v = {:.4}",
                g.p, g.q, g.v
            ));
            if let Ok(mean) = g.population_mean_spend() {
                let mean = format!("{mean:.0}");
                out.push_str(&t!("churn.parameters.mean_spend", mean).render(lang));
            }
            out.push('\n');
        }
        None => out.push_str(&t!("churn.parameters.no_spend_model").render(lang)),
    }
    out
}

impl Overview {
    /// For people: the fit, its data, the score histogram and the bands.
    pub fn render(&self, lang: Lang, tz: Tz) -> String {
        let fit = &self.fit;
        let mut out = t!(
            "churn.overview.fit",
            id = fit.id,
            created = clock::format_local(fit.created_at, tz),
            customers = fit.customers,
            from = clock::format_local(fit.data_from, tz),
            to = clock::format_local(fit.as_of, tz),
            repeaters = fit.repeaters,
            seconds = format!("{:.1}", fit.notes.seconds)
        )
        .render(lang);
        out.push_str(&parameters(
            lang,
            &fit.model,
            fit.notes.purchases.log_likelihood,
        ));
        if let Some(why) = &fit.notes.spend_error {
            out.push_str(&format!("  ({why})\n"));
        }
        out.push_str(
            &t!(
                "churn.overview.scores",
                customers = self.scored,
                at = clock::format_local(self.at, tz),
                days = self.scoring.churn_window_days
            )
            .render(lang),
        );
        let widest = self.histogram.iter().copied().max().unwrap_or(0).max(1);
        for (i, count) in self.histogram.iter().enumerate() {
            let bar = "█".repeat((count * 40).div_ceil(widest));
            let upper = if i == 9 { 100 } else { i * 10 + 9 };
            out.push_str(&format!(
                "  {:>3}–{:<3} {:>8}  {bar}\n",
                i * 10,
                upper,
                count
            ));
        }
        out.push('\n');
        out.push_str(&table(self.bands_table(lang)));
        out.push_str(
            &t!(
                "churn.overview.means",
                risk = format!("{:.1}", self.mean_risk * 100.0),
                alive = format!("{:.1}", self.mean_p_alive * 100.0),
                visits = format!("{:.0}", self.expected_visits),
                days = self.scoring.visit_window_days
            )
            .render(lang),
        );
        if let Some(clv) = self.total_clv {
            let clv = format!("{clv:.0}");
            let months = self.scoring.clv_months;
            out.push_str(&t!("churn.overview.clv", months, clv).render(lang));
        }
        out.push('\n');
        out
    }

    /// Customers per band, with the band's range of churn scores.
    fn bands_table(&self, lang: Lang) -> crate::base::output::Rows {
        let bands = &self.scoring.bands;
        let mut rows = crate::base::output::Rows::headed(
            lang,
            &[
                t!("churn.table.band"),
                t!("churn.table.churn_score"),
                t!("churn.table.customers"),
                t!("churn.table.share"),
            ],
        );
        let ranges = [
            format!("0–{}", bands.medium_from.saturating_sub(1)),
            format!(
                "{}–{}",
                bands.medium_from,
                bands.high_from.saturating_sub(1)
            ),
            format!("{}–100", bands.high_from),
        ];
        for (i, band) in RiskBand::ALL.iter().enumerate() {
            rows.push(vec![
                band_name(*band).render(lang),
                ranges[i].clone(),
                self.bands[i].to_string(),
                percent(Some(self.bands[i] as f64 / self.scored.max(1) as f64)),
            ]);
        }
        rows
    }
}

impl Evaluation {
    /// For people: the split, the fit, AUC, and per band how often it was
    /// right and how many churners it caught.
    pub fn render(&self, lang: Lang, tz: Tz) -> String {
        let mut out = t!(
            "churn.evaluation.split",
            cut = clock::format_local(self.cut, tz),
            days = self.holdout_days,
            end = clock::format_local(self.end, tz)
        )
        .render(lang);
        out.push_str(&parameters(lang, &self.model, self.log_likelihood));
        out.push_str(
            &t!(
                "churn.evaluation.churned",
                customers = self.customers,
                churned = self.churned,
                share = percent(Some(self.churned as f64 / self.customers.max(1) as f64)),
                days = self.holdout_days
            )
            .render(lang),
        );
        let verdict = match self.auc {
            None => t!("churn.evaluation.auc_none"),
            Some(auc) if auc >= 0.8 => t!("churn.evaluation.auc_good"),
            Some(auc) if auc >= 0.7 => t!("churn.evaluation.auc_useful"),
            Some(auc) if auc >= 0.6 => t!("churn.evaluation.auc_weak"),
            Some(_) => t!("churn.evaluation.auc_poor"),
        };
        out.push_str(&format!(
            "AUC {}  — {}\n",
            self.auc
                .map_or_else(|| "—".to_string(), |a| format!("{a:.3}")),
            verdict.render(lang)
        ));
        out.push_str(
            &t!(
                "churn.evaluation.visits",
                predicted = format!("{:.0}", self.predicted_visits),
                actual = self.actual_visits,
                relative = relative(self.predicted_visits, self.actual_visits)
            )
            .render(lang),
        );
        out.push_str(&table(self.bands_table(lang)));
        out.push_str(&t!("churn.evaluation.reading").render(lang));
        out
    }

    /// Per band: how many, how often the score was right, whom it caught.
    fn bands_table(&self, lang: Lang) -> crate::base::output::Rows {
        let mut rows = crate::base::output::Rows::headed(
            lang,
            &[
                t!("churn.table.band"),
                t!("churn.table.customers"),
                t!("churn.table.predicted_churn"),
                t!("churn.table.precision"),
                t!("churn.table.recall"),
                t!("churn.table.precision_at_or_above"),
                t!("churn.table.recall_at_or_above"),
            ],
        );
        for (i, stats) in self.bands.iter().enumerate() {
            rows.push(vec![
                band_name(stats.band).render(lang),
                stats.customers.to_string(),
                percent(self.band_mean_risk[i]),
                percent(stats.precision),
                percent(stats.recall),
                percent(stats.precision_at_or_above),
                percent(stats.recall_at_or_above),
            ]);
        }
        rows
    }
}

fn relative(predicted: f64, actual: i64) -> String {
    if actual == 0 {
        return "—".to_string();
    }
    format!("{:+.1}%", (predicted / actual as f64 - 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TZ: Tz = chrono_tz::Asia::Shanghai;

    fn at(text: &str) -> Timestamp {
        clock::parse_time(text, TZ, chrono::DateTime::UNIX_EPOCH)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn summaries_are_in_clinic_days_with_repeat_spend_per_repeat_day() {
        let today = clock::local_day(at("2026-04-10 09:00"), TZ);
        let s = summary_of(
            at("2026-01-01 23:30"),
            at("2026-03-02 10:00"),
            3,
            600_000,
            today,
            TZ,
        );
        assert_eq!(s.frequency, 2);
        assert_eq!(s.recency, 60.0);
        assert_eq!(s.age, 99.0);
        assert_eq!(s.monetary, 3_000.0);
        let single = summary_of(
            at("2026-04-01 10:00"),
            at("2026-04-01 15:00"),
            1,
            0,
            today,
            TZ,
        );
        assert_eq!(
            (single.frequency, single.recency, single.age),
            (0, 0.0, 9.0)
        );
        assert!(single.check().is_ok());
    }

    #[test]
    fn the_offset_follows_the_zone() {
        assert_eq!(utc_offset(at("2026-04-10 09:00"), TZ), 8 * 3600);
        let ny = chrono_tz::America::New_York;
        let summer = clock::parse_time("2026-07-01 12:00", ny, chrono::DateTime::UNIX_EPOCH)
            .unwrap()
            .timestamp();
        let winter = clock::parse_time("2026-01-01 12:00", ny, chrono::DateTime::UNIX_EPOCH)
            .unwrap()
            .timestamp();
        assert_eq!(utc_offset(summer, ny), -4 * 3600);
        assert_eq!(utc_offset(winter, ny), -5 * 3600);
    }
}
