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

use crate::clock::{self, Timestamp};
use crate::config::{Clinic, ModelSettings};
use crate::diag::Lang;
use crate::facts::CustomerRecord;
use crate::predict::{
    self, BandStats, BgNbdFit, FitOptions, GammaGammaFit, Model, PredictError, RiskBand,
    ScoreConfig, Summary, TimeUnit,
};
use crate::store::models::{ModelFitRow, NewModelFit, SummaryRow};
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

use crate::clock::utc_offset;

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
                "churn model refitted; ticks use it from now on"
            ),
            Refit::TooFew { customers, needed } => tracing::info!(
                customers,
                needed,
                "too few customers for a churn model yet; churn facts stay null"
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

fn t(lang: Lang, en: &'static str, zh: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

fn band_name(lang: Lang, band: RiskBand) -> &'static str {
    match band {
        RiskBand::Low => t(lang, "low", "低"),
        RiskBand::Medium => t(lang, "medium", "中"),
        RiskBand::High => t(lang, "high", "高"),
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_string(), |x| format!("{:.1}%", x * 100.0))
}

fn table(rows: crate::cli::Rows) -> String {
    let mut buffer = Vec::new();
    let _ = rows.write(crate::cli::Format::Table, &mut buffer, None);
    String::from_utf8_lossy(&buffer).into_owned()
}

/// The parameters of a model, one line each, with what they mean.
fn parameters(lang: Lang, model: &Model, log_likelihood: f64) -> String {
    let p = &model.purchases;
    let mut out = format!(
        "  BG/NBD  r = {:.4}  α = {:.4}  a = {:.4}  b = {:.4}  ({} {:.1})\n",
        p.r,
        p.alpha,
        p.a,
        p.b,
        t(lang, "log-likelihood", "对数似然"),
        log_likelihood
    );
    out.push_str(&match lang {
        Lang::En => format!(
            "          a new customer comes back every {:.0} days on average while active; \
             after each visit {:.0}% leave for good\n",
            p.alpha / p.r,
            100.0 * p.a / (p.a + p.b)
        ),
        Lang::Zh => format!(
            "          活跃期间平均每 {:.0} 天到院一次；每次到院后约 {:.0}% 的顾客永久流失\n",
            p.alpha / p.r,
            100.0 * p.a / (p.a + p.b)
        ),
    });
    match &model.spend {
        Some(g) => {
            out.push_str(&format!(
                "  Gamma-Gamma  p = {:.4}  q = {:.4}  v = {:.4}",
                g.p, g.q, g.v
            ));
            if let Ok(mean) = g.population_mean_spend() {
                out.push_str(&format!(
                    "  ({} {:.0} {})",
                    t(lang, "mean spend per repeat visit", "复购每次平均消费"),
                    mean,
                    t(lang, "yuan", "元")
                ));
            }
            out.push('\n');
        }
        None => out.push_str(t(
            lang,
            "  no spend model (too few repeat purchases): predicted_clv is null\n",
            "  无消费模型（复购太少）：predicted_clv 为 null\n",
        )),
    }
    out
}

impl Overview {
    /// For people: the fit, its data, the score histogram and the bands.
    pub fn render(&self, lang: Lang, tz: Tz) -> String {
        let fit = &self.fit;
        let mut out = String::new();
        out.push_str(&match lang {
            Lang::En => format!(
                "Churn model #{}, fitted {} on {} customers' visits from {} to {} ({} came back at least once), in {:.1} s\n",
                fit.id,
                clock::format_local(fit.created_at, tz),
                fit.customers,
                clock::format_local(fit.data_from, tz),
                clock::format_local(fit.as_of, tz),
                fit.repeaters,
                fit.notes.seconds
            ),
            Lang::Zh => format!(
                "流失模型 #{}：{} 拟合，使用 {} 位顾客自 {} 至 {} 的到院记录（其中 {} 位至少复诊一次），耗时 {:.1} 秒\n",
                fit.id,
                clock::format_local(fit.created_at, tz),
                fit.customers,
                clock::format_local(fit.data_from, tz),
                clock::format_local(fit.as_of, tz),
                fit.repeaters,
                fit.notes.seconds
            ),
        });
        out.push_str(&parameters(
            lang,
            &fit.model,
            fit.notes.purchases.log_likelihood,
        ));
        if let Some(why) = &fit.notes.spend_error {
            out.push_str(&format!("  ({why})\n"));
        }
        out.push_str(&match lang {
            Lang::En => format!(
                "\nChurn score of {} customers at {} (chance of no visit in the next {} days, in %):\n",
                self.scored,
                clock::format_local(self.at, tz),
                self.scoring.churn_window_days
            ),
            Lang::Zh => format!(
                "\n{} 位顾客在 {} 的流失分（未来 {} 天内不到院的概率，%）：\n",
                self.scored,
                clock::format_local(self.at, tz),
                self.scoring.churn_window_days
            ),
        });
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
        let bands = &self.scoring.bands;
        let mut rows = crate::cli::Rows::new(&[
            t(lang, "band", "风险等级"),
            t(lang, "churn_score", "流失分"),
            t(lang, "customers", "顾客数"),
            t(lang, "share", "占比"),
        ]);
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
                band_name(lang, *band).to_string(),
                ranges[i].clone(),
                self.bands[i].to_string(),
                percent(Some(self.bands[i] as f64 / self.scored.max(1) as f64)),
            ]);
        }
        out.push('\n');
        out.push_str(&table(rows));
        out.push_str(&match lang {
            Lang::En => format!(
                "\nMean churn risk {:.1}%, mean P(alive) {:.1}%; {:.0} visits expected in the next {} days",
                self.mean_risk * 100.0,
                self.mean_p_alive * 100.0,
                self.expected_visits,
                self.scoring.visit_window_days
            ),
            Lang::Zh => format!(
                "\n平均流失风险 {:.1}%，平均存活概率 {:.1}%；预计未来 {} 天共到院 {:.0} 次",
                self.mean_risk * 100.0,
                self.mean_p_alive * 100.0,
                self.scoring.visit_window_days,
                self.expected_visits
            ),
        });
        if let Some(clv) = self.total_clv {
            out.push_str(&match lang {
                Lang::En => format!(
                    "; predicted value over {} months {:.0} yuan",
                    self.scoring.clv_months, clv
                ),
                Lang::Zh => format!(
                    "；未来 {} 个月预测价值 {:.0} 元",
                    self.scoring.clv_months, clv
                ),
            });
        }
        out.push('\n');
        out
    }
}

impl Evaluation {
    /// For people: the split, the fit, AUC, and per band how often it was
    /// right and how many churners it caught.
    pub fn render(&self, lang: Lang, tz: Tz) -> String {
        let mut out = String::new();
        out.push_str(&match lang {
            Lang::En => format!(
                "Churn model check: fitted on the history up to {}, judged on who visited in the {} days to {}.\n",
                clock::format_local(self.cut, tz),
                self.holdout_days,
                clock::format_local(self.end, tz)
            ),
            Lang::Zh => format!(
                "流失模型检验：用截至 {} 的历史拟合，再看之后 {} 天（至 {}）谁来了。\n",
                clock::format_local(self.cut, tz),
                self.holdout_days,
                clock::format_local(self.end, tz)
            ),
        });
        out.push_str(&parameters(lang, &self.model, self.log_likelihood));
        out.push_str(&match lang {
            Lang::En => format!(
                "\n{} customers had visited by the cut; {} ({}) did not visit in the {} days after it.\n",
                self.customers,
                self.churned,
                percent(Some(self.churned as f64 / self.customers.max(1) as f64)),
                self.holdout_days
            ),
            Lang::Zh => format!(
                "\n截至拟合时点共有 {} 位到过院的顾客；其中 {} 位（{}）在之后 {} 天内没有到院。\n",
                self.customers,
                self.churned,
                percent(Some(self.churned as f64 / self.customers.max(1) as f64)),
                self.holdout_days
            ),
        });
        let verdict = match self.auc {
            None => t(
                lang,
                "cannot be judged: everyone churned or everyone came back",
                "无法判断：所有人都流失了，或所有人都回来了",
            ),
            Some(auc) if auc >= 0.8 => t(
                lang,
                "good: the score ranks churners well",
                "好：流失分能很好地区分会流失的顾客",
            ),
            Some(auc) if auc >= 0.7 => t(
                lang,
                "useful: the score ranks churners clearly better than chance",
                "可用：流失分明显优于随机",
            ),
            Some(auc) if auc >= 0.6 => t(
                lang,
                "weak: use it only together with other conditions",
                "偏弱：请与其他条件一起使用",
            ),
            Some(_) => t(
                lang,
                "poor: do not let rules rely on it",
                "差：不要让规则依赖它",
            ),
        };
        out.push_str(&format!(
            "AUC {}  — {verdict}\n",
            self.auc
                .map_or_else(|| "—".to_string(), |a| format!("{a:.3}"))
        ));
        out.push_str(&match lang {
            Lang::En => format!(
                "Visit days in the holdout: {:.0} predicted, {} actual ({}).\n\n",
                self.predicted_visits,
                self.actual_visits,
                relative(self.predicted_visits, self.actual_visits)
            ),
            Lang::Zh => format!(
                "检验期到院天数：预测 {:.0}，实际 {}（{}）。\n\n",
                self.predicted_visits,
                self.actual_visits,
                relative(self.predicted_visits, self.actual_visits)
            ),
        });
        let mut rows = crate::cli::Rows::new(&[
            t(lang, "band", "风险等级"),
            t(lang, "customers", "顾客数"),
            t(lang, "predicted churn", "预测流失率"),
            t(lang, "actual churn (precision)", "实际流失率（精确率）"),
            t(lang, "share of churners (recall)", "占全部流失者（召回率）"),
            t(lang, "precision, this band or higher", "本级及以上精确率"),
            t(lang, "recall, this band or higher", "本级及以上召回率"),
        ]);
        for (i, stats) in self.bands.iter().enumerate() {
            rows.push(vec![
                band_name(lang, stats.band).to_string(),
                stats.customers.to_string(),
                percent(self.band_mean_risk[i]),
                percent(stats.precision),
                percent(stats.recall),
                percent(stats.precision_at_or_above),
                percent(stats.recall_at_or_above),
            ]);
        }
        out.push_str(&table(rows));
        out.push_str(t(
            lang,
            "\nA rule on `churn_band == \"high\"` reaches the customers of the high row: precision is how many of them would really have stayed away, recall how many of all who stayed away it reaches.\n",
            "\n规则写 `churn_band == \"high\"` 时会触达“高”这一行的顾客：精确率是其中真的没有再来的比例，召回率是所有没再来的顾客中被触达的比例。\n",
        ));
        out
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
        clock::parse_time(text, TZ).unwrap().timestamp()
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
        let summer = clock::parse_time("2026-07-01 12:00", ny)
            .unwrap()
            .timestamp();
        let winter = clock::parse_time("2026-01-01 12:00", ny)
            .unwrap()
            .timestamp();
        assert_eq!(utc_offset(summer, ny), -4 * 3600);
        assert_eq!(utc_offset(winter, ny), -5 * 3600);
    }
}
