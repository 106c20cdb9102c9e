//! Predictive churn: how likely a customer is to come back, how often, and
//! what they are worth, from nothing but their purchase history summary.
//!
//! Two "buy till you die" models, fitted by maximum likelihood over all of a
//! clinic's customers and then applied to each one:
//!
//! - [`BgNbd`] (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy
//!   Way"): while alive, a customer buys at a Poisson rate λ ~ Gamma(r, α);
//!   after each purchase they drop out with probability p ~ Beta(a, b). From a
//!   customer's frequency x, recency tₓ and age T it gives P(alive), the
//!   expected purchases in the next t periods, and P0, the chance of no
//!   purchase in the next t periods — our churn risk.
//! - [`GammaGamma`] (Fader, Hardie & Lee 2005, "RFM and CLV"; Hardie's note
//!   "The Gamma-Gamma Model of Monetary Value", 2013): spend per visit,
//!   shrinking each customer's observed mean toward the population's.
//!
//! Together they give the discounted customer lifetime value.
//!
//! How to use it (`recall bench model` does the same at scale):
//!
//! ```
//! use recall::predict::synth::{self, SyntheticConfig};
//! use recall::predict::{self, FitOptions, RiskBand, ScoreConfig, Summary, TimeUnit};
//!
//! // One summary per customer, times in days. This one came back 3 times,
//! // last 200 days after the first visit, has been a customer for 300
//! // days, and spent 1,800 per repeat visit on average.
//! let regular = Summary::new(3, 200.0, 300.0).with_monetary(1_800.0);
//! // A clinic's worth of them (synthetic here; the store builds real ones).
//! let customers = synth::generate(&SyntheticConfig {
//!     customers: 5_000,
//!     ..SyntheticConfig::default()
//! });
//!
//! // Fit once per clinic; keep `fitted.model` (it is serialisable).
//! let fitted = predict::fit(&customers, TimeUnit::Days, &FitOptions::default())?;
//! let config = ScoreConfig::default(); // 90-day windows, 12-month CLV at 1 %/month
//! let score = predict::score(&fitted.model, &regular, &config)?;
//! println!(
//!     "risk {} ({}), P(alive) {:.2}, visits in 90 days {:.2}, CLV {:.0}",
//!     score.risk_score,
//!     score.band.as_str(),
//!     score.p_alive,
//!     score.expected_visits,
//!     score.clv.unwrap_or(0.0),
//! );
//!
//! // Or everyone at once, in order, on all cores.
//! let scores = predict::score_all(&fitted.model, &customers, &config)?;
//! let high = scores.iter().filter(|s| s.band == RiskBand::High).count();
//! assert!(high > 0 && high < scores.len());
//! # Ok::<(), predict::PredictError>(())
//! ```
//!
//! How the rest of `recall` uses it ([`crate::churn`] does the wiring):
//!
//! - **Summaries**: one per customer with at least one visit, in days.
//!   Merge visits on the same clinic day first (the papers merge same-day
//!   orders). x = visit days after the first; tₓ = last visit − first visit
//!   (0 when x = 0); T = the tick's time − first visit; `monetary` = the mean
//!   amount of the repeat visits (0 without). [`Summary::from_purchases`]
//!   does this from (day, amount) pairs. Customers who never visited have
//!   no summary and no score.
//! - **Fitting**: [`fit`] over all of a clinic's summaries at one instant,
//!   on the refit schedule; `FittedModel::model` (serde) is stored and used
//!   by every tick until the next fit.
//! - **Scoring**: the churn facts call [`BgNbd`]'s methods and [`score()`]
//!   per customer at each tick; `recall model show` uses [`score_all`].
//! - **Evaluation**: fit and score on summaries cut at a past instant, mark
//!   who did not come back in the churn window after it, and compare with
//!   [`auc`] and [`band_stats`] (`tests/cdnow_reference.rs` does this).
//! - [`bench::run`] is the entry point for `recall bench model`.
//!
//! **Invariant: this module is pure.** No SQLite, no clock, no I/O, no
//! logging: functions of summaries and parameters only, so the store, the
//! rule facts and the CLI can call them anywhere and tests can pin them down.
//! (The one exception is [`bench`](mod@bench), which measures elapsed time for
//! `recall bench` and never influences a result.) Time is in whatever unit
//! the caller builds the summaries in; [`TimeUnit`] only converts the
//! day-based windows of a [`ScoreConfig`] into it.

pub mod bgnbd;
pub mod evaluate;
mod fit;
pub mod gamma_gamma;
pub mod hyp2f1;
pub mod score;
pub mod special;
pub mod synth;

use serde::{Deserialize, Serialize};

pub use bgnbd::{BgNbd, BgNbdFit};
pub use evaluate::{BandStats, auc, band_stats};
pub use fit::FitOptions;
pub use gamma_gamma::{GammaGamma, GammaGammaFit};
pub use hyp2f1::Hyp2F1Error;
pub use score::{
    FittedModel, Model, RiskBand, RiskBands, Score, ScoreConfig, fit, score, score_all,
};

/// One customer's purchase history, summarised (the "RFM" summary).
///
/// Times are in one unit the caller chooses (days, weeks) and must use for
/// every customer of a fit. The first purchase is time 0 and is not counted:
/// the models are about *repeat* purchases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// x: the number of repeat purchases (all purchases but the first).
    pub frequency: u32,
    /// tₓ: the time of the last purchase, counted from the first. 0 when
    /// there was no repeat purchase.
    pub recency: f64,
    /// T: the time from the first purchase to the end of observation ("now").
    pub age: f64,
    /// The mean value of the repeat purchases (0 when there was none). Only
    /// the spend model reads it.
    pub monetary: f64,
}

impl Summary {
    pub fn new(frequency: u32, recency: f64, age: f64) -> Self {
        Summary {
            frequency,
            recency,
            age,
            monetary: 0.0,
        }
    }

    pub fn with_monetary(self, monetary: f64) -> Self {
        Summary { monetary, ..self }
    }

    /// Summarises purchases given as (time, value), in any order: only those
    /// at or before `end` count. Purchases at the same time count as separate
    /// purchases, so merge them first if they were one visit (the papers
    /// merge CDNOW's same-day orders). `None` when nothing was bought by `end`.
    pub fn from_purchases(purchases: &[(f64, f64)], end: f64) -> Option<Summary> {
        let mut seen: Vec<(f64, f64)> = purchases
            .iter()
            .copied()
            .filter(|&(time, _)| time <= end)
            .collect();
        seen.sort_by(|x, y| x.0.total_cmp(&y.0));
        let (&(first, _), repeats) = seen.split_first()?;
        let frequency = u32::try_from(repeats.len()).unwrap_or(u32::MAX);
        let recency = repeats.last().map_or(0.0, |&(time, _)| time - first);
        let monetary = if repeats.is_empty() {
            0.0
        } else {
            repeats.iter().map(|&(_, value)| value).sum::<f64>() / repeats.len() as f64
        };
        Some(Summary {
            frequency,
            recency,
            age: end - first,
            monetary,
        })
    }

    /// Whether the summary is one the models accept.
    pub fn check(&self) -> Result<(), SummaryProblem> {
        if !(self.recency.is_finite() && self.age.is_finite() && self.monetary.is_finite()) {
            return Err(SummaryProblem::NotFinite);
        }
        if self.recency < 0.0 || self.recency > self.age {
            return Err(SummaryProblem::RecencyOutsideAge {
                recency: self.recency,
                age: self.age,
            });
        }
        if self.frequency == 0 && self.recency != 0.0 {
            return Err(SummaryProblem::RecencyWithoutRepeat {
                recency: self.recency,
            });
        }
        if self.monetary < 0.0 {
            return Err(SummaryProblem::NegativeMonetary {
                monetary: self.monetary,
            });
        }
        Ok(())
    }
}

/// What is wrong with a [`Summary`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SummaryProblem {
    #[error("recency, age and monetary value must be finite numbers")]
    NotFinite,
    #[error("recency {recency} must lie between 0 and the age {age}")]
    RecencyOutsideAge { recency: f64, age: f64 },
    #[error("recency {recency} given for a customer without repeat purchases (must be 0)")]
    RecencyWithoutRepeat { recency: f64 },
    #[error("monetary value {monetary} is negative")]
    NegativeMonetary { monetary: f64 },
}

/// Everything that can go wrong in this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    #[error("customer #{index}: {problem}")]
    InvalidSummary {
        /// The position of the summary in the slice given.
        index: usize,
        problem: SummaryProblem,
    },
    #[error("no customers to fit")]
    NoCustomers,
    #[error(
        "the spend model needs customers with a repeat purchase and a positive mean spend; there are none"
    )]
    NoRepeatSpend,
    #[error("{model} fit did not converge: {reason}")]
    FitFailed { model: &'static str, reason: String },
    #[error("{model} parameters are invalid: {reason}")]
    InvalidParameters { model: &'static str, reason: String },
    #[error("invalid score configuration: {0}")]
    InvalidConfig(String),
    #[error("the population mean spend is undefined when the Gamma-Gamma q ≤ 1 (q = {q})")]
    UndefinedMeanSpend { q: f64 },
    #[error("{scores} scores but {outcomes} outcomes")]
    LengthMismatch { scores: usize, outcomes: usize },
    #[error(transparent)]
    Hyp2F1(#[from] Hyp2F1Error),
}

/// The unit the summaries' times are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Days,
    Weeks,
}

impl TimeUnit {
    /// How many days one unit is.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Days => 1.0,
            TimeUnit::Weeks => 7.0,
        }
    }

    /// A number of days in this unit.
    pub fn from_days(self, days: f64) -> f64 {
        days / self.days()
    }

    /// One average calendar month (365.25 / 12 days) in this unit.
    pub fn month(self) -> f64 {
        self.from_days(365.25 / 12.0)
    }
}

/// Checks every summary, naming the first bad one.
fn check_all(summaries: &[Summary]) -> Result<(), PredictError> {
    for (index, summary) in summaries.iter().enumerate() {
        summary
            .check()
            .map_err(|problem| PredictError::InvalidSummary { index, problem })?;
    }
    Ok(())
}

/// Threads to split large batches over (as the tick engine does).
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
}

/// Runs `f` over `items` split into one chunk per worker, in scoped threads,
/// and returns the chunks' results in order. Small inputs (under
/// `min_chunk` items per worker) stay on the calling thread.
fn par_chunks<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let workers = workers().min(items.len() / min_chunk.max(1)).max(1);
    if workers == 1 {
        return vec![f(items)];
    }
    let chunk = items.len().div_ceil(workers);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || f(part)))
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_purchases_counts_repeats_after_the_first() {
        let purchases = [(10.0, 50.0), (3.0, 20.0), (7.0, 30.0), (40.0, 99.0)];
        let summary = Summary::from_purchases(&purchases, 30.0).unwrap();
        assert_eq!(summary.frequency, 2);
        assert_eq!(summary.recency, 7.0);
        assert_eq!(summary.age, 27.0);
        assert_eq!(summary.monetary, 40.0);
        assert_eq!(Summary::from_purchases(&purchases, 1.0), None);
        let once = Summary::from_purchases(&[(5.0, 10.0)], 9.0).unwrap();
        assert_eq!(once, Summary::new(0, 0.0, 4.0));
    }

    #[test]
    fn check_rejects_impossible_summaries() {
        assert_eq!(Summary::new(2, 5.0, 10.0).check(), Ok(()));
        assert!(matches!(
            Summary::new(2, 11.0, 10.0).check(),
            Err(SummaryProblem::RecencyOutsideAge { .. })
        ));
        assert!(matches!(
            Summary::new(0, 1.0, 10.0).check(),
            Err(SummaryProblem::RecencyWithoutRepeat { .. })
        ));
        assert_eq!(
            Summary::new(1, f64::NAN, 10.0).check(),
            Err(SummaryProblem::NotFinite)
        );
        assert!(matches!(
            Summary::new(1, 1.0, 10.0).with_monetary(-1.0).check(),
            Err(SummaryProblem::NegativeMonetary { .. })
        ));
    }

    #[test]
    fn par_chunks_keeps_order_and_covers_everything() {
        let items: Vec<u64> = (0..100_000).collect();
        let sums = par_chunks(&items, 1_000, |part| part.iter().sum::<u64>());
        assert_eq!(sums.iter().sum::<u64>(), items.iter().sum::<u64>());
        let firsts = par_chunks(&items, 1_000, |part| part[0]);
        assert!(firsts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn time_units_convert_days() {
        assert_eq!(TimeUnit::Weeks.from_days(14.0), 2.0);
        assert_eq!(TimeUnit::Days.from_days(90.0), 90.0);
        assert!((TimeUnit::Weeks.month() - 4.348_214).abs() < 1e-6);
    }
}
