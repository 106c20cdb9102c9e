//! The prediction benchmark: generate a synthetic customer base from known
//! parameters, fit both models, score every customer, and time each step.
//! `recall bench model` calls [`run`].
//!
//! This is the module's one user of a timer (`Instant`, for the figures it
//! reports); the results never depend on it.

use std::fmt;
use std::time::{Duration, Instant};

use crate::predict::score::{self, FittedModel, RiskBand, ScoreConfig};
use crate::predict::synth::{self, SyntheticConfig};
use crate::predict::{FitOptions, PredictError, TimeUnit};

/// What to benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// The synthetic base (its size, seed, truth, and whether times are
    /// whole days).
    pub data: SyntheticConfig,
    pub fit: FitOptions,
    pub score: ScoreConfig,
}

impl Default for BenchConfig {
    /// A million customers in whole days, default fit and score settings.
    fn default() -> Self {
        BenchConfig {
            data: SyntheticConfig {
                customers: 1_000_000,
                ..SyntheticConfig::default()
            },
            fit: FitOptions::default(),
            score: ScoreConfig::default(),
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub fitted: FittedModel,
    pub generate: Duration,
    pub fit: Duration,
    pub score: Duration,
    /// Customers per band, low to high.
    pub band_counts: [usize; 3],
    pub mean_churn_risk: f64,
    pub mean_clv: Option<f64>,
}

impl BenchReport {
    /// Fit and score: what the < 30 s budget for a million customers covers.
    pub fn fit_and_score(&self) -> Duration {
        self.fit + self.score
    }
}

/// Runs the benchmark.
pub fn run(config: &BenchConfig) -> Result<BenchReport, PredictError> {
    let started = Instant::now();
    let data = synth::generate(&config.data);
    let generate = started.elapsed();

    let started = Instant::now();
    let fitted = score::fit(&data, TimeUnit::Days, &config.fit)?;
    let fit = started.elapsed();

    let started = Instant::now();
    let scores = score::score_all(&fitted.model, &data, &config.score)?;
    let score = started.elapsed();

    let mut band_counts = [0; 3];
    for s in &scores {
        band_counts[s.band as usize] += 1;
    }
    let n = scores.len().max(1) as f64;
    let mean_churn_risk = scores.iter().map(|s| s.churn_risk).sum::<f64>() / n;
    let clvs: Vec<f64> = scores.iter().filter_map(|s| s.clv).collect();
    let mean_clv = (!clvs.is_empty()).then(|| clvs.iter().sum::<f64>() / clvs.len() as f64);
    Ok(BenchReport {
        config: config.clone(),
        fitted,
        generate,
        fit,
        score,
        band_counts,
        mean_churn_risk,
        mean_clv,
    })
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = &self.config.data;
        let purchases = &self.fitted.purchases;
        let truth = data.purchases;
        let fitted = purchases.model;
        writeln!(
            f,
            "customers       {} ({} distinct summaries, {})",
            data.customers,
            purchases.distinct,
            if data.whole_days {
                "whole days"
            } else {
                "continuous time"
            }
        )?;
        writeln!(f, "generate        {:>8.2} s", self.generate.as_secs_f64())?;
        writeln!(
            f,
            "fit             {:>8.2} s   BG/NBD {} iterations, {} evaluations ({})",
            self.fit.as_secs_f64(),
            purchases.iterations,
            purchases.evaluations,
            purchases.method
        )?;
        writeln!(
            f,
            "score           {:>8.2} s   churn risk, P(alive), visits, spend, {}-month CLV",
            self.score.as_secs_f64(),
            self.config.score.clv_months
        )?;
        writeln!(
            f,
            "fit + score     {:>8.2} s",
            self.fit_and_score().as_secs_f64()
        )?;
        writeln!(
            f,
            "BG/NBD          r {:.4} (true {}), alpha {:.3} ({}), a {:.4} ({}), b {:.4} ({})",
            fitted.r, truth.r, fitted.alpha, truth.alpha, fitted.a, truth.a, fitted.b, truth.b
        )?;
        match &self.fitted.spend {
            Some(spend) => writeln!(
                f,
                "Gamma-Gamma     p {:.4} (true {}), q {:.4} ({}), v {:.1} ({}), {} customers",
                spend.model.p,
                data.spend.p,
                spend.model.q,
                data.spend.q,
                spend.model.v,
                data.spend.v,
                spend.customers
            )?,
            None => writeln!(f, "Gamma-Gamma     not fitted")?,
        }
        let [low, medium, high] = self.band_counts;
        writeln!(
            f,
            "bands           {}: {low}, {}: {medium}, {}: {high}; mean churn risk {:.3}, mean CLV {}",
            RiskBand::Low.as_str(),
            RiskBand::Medium.as_str(),
            RiskBand::High.as_str(),
            self.mean_churn_risk,
            self.mean_clv
                .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_every_customer() {
        let config = BenchConfig {
            data: SyntheticConfig {
                customers: 20_000,
                ..SyntheticConfig::default()
            },
            ..BenchConfig::default()
        };
        let report = run(&config).unwrap();
        assert_eq!(report.band_counts.iter().sum::<usize>(), 20_000);
        assert!(report.mean_clv.is_some());
        let text = report.to_string();
        assert!(text.contains("fit + score"), "{text}");
    }
}
