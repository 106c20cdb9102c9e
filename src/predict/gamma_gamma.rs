//! The Gamma-Gamma model of spend per purchase (Fader, Hardie & Lee 2005,
//! "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis", JMR
//! 42(4), 415–430; Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary
//! Value", brucehardie.com note 025 — cited below as "the note").
//!
//! Each purchase's value is Gamma(p, ν) for a customer-specific ν, and
//! ν ~ Gamma(q, v) across customers (the note's γ is our `v`, as in
//! `lifetimes`). A customer's mean repeat spend m̄ over x purchases then has
//! the density of the note's Eq. 1a, which the fit maximises over the
//! customers with x > 0; [`GammaGamma::expected_spend`] is the note's Eq. 5,
//! a weighted average of the customer's own mean and the population's. The
//! model assumes spend does not depend on purchase frequency: check that the
//! two are only weakly correlated before trusting it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::fit::{self, FitOptions, Objective, Sum};
use super::special::{digamma, ln_gamma};
use super::{PredictError, Summary, check_all, par_chunks};

/// Gamma-Gamma parameters, in the currency of the monetary values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    /// Shape of each purchase's value distribution.
    pub p: f64,
    /// Shape of the Gamma distribution of the customers' ν.
    pub q: f64,
    /// Rate of the Gamma distribution of ν (the note's γ), in currency.
    pub v: f64,
}

/// A fitted [`GammaGamma`] and how the fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaFit {
    pub model: GammaGamma,
    /// The maximised log-likelihood, summed over the customers used.
    pub log_likelihood: f64,
    /// Customers used: those with a repeat purchase and a positive mean spend.
    pub customers: usize,
    /// Customers with repeat purchases left out because their mean spend was
    /// 0 (free visits): the model has no density there.
    pub skipped_zero_spend: usize,
    pub iterations: u64,
    pub evaluations: u64,
    pub method: String,
}

impl GammaGamma {
    /// All three parameters must be finite and positive.
    pub fn check(&self) -> Result<(), PredictError> {
        let all = [("p", self.p), ("q", self.q), ("v", self.v)];
        match all.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            Some((name, value)) => Err(PredictError::InvalidParameters {
                model: "Gamma-Gamma",
                reason: format!("{name} = {value} must be a positive number"),
            }),
            None => Ok(()),
        }
    }

    /// ln f(m̄ | p, q, v; x) for a customer with x ≥ 1 repeat purchases of
    /// mean value m̄ > 0 (the note's Eq. 1a):
    /// ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln v + (px−1) ln m̄ + px ln x − (px+q) ln(v + x m̄).
    pub fn log_likelihood(&self, frequency: u32, monetary: f64) -> f64 {
        let GammaGamma { p, q, v } = *self;
        let x = f64::from(frequency);
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * v.ln()
            + (p * x - 1.0) * monetary.ln()
            + p * x * x.ln()
            - (p * x + q) * (v + x * monetary).ln()
    }

    /// The mean spend per purchase across customers, p·v/(q − 1); undefined
    /// (an error) when q ≤ 1.
    pub fn population_mean_spend(&self) -> Result<f64, PredictError> {
        if self.q <= 1.0 {
            return Err(PredictError::UndefinedMeanSpend { q: self.q });
        }
        Ok(self.p * self.v / (self.q - 1.0))
    }

    /// E[M | p, q, v, m̄, x]: the spend to expect per future purchase from a
    /// customer with `frequency` repeat purchases of mean `monetary` (the
    /// note's Eq. 5): p(v + x m̄)/(px + q − 1), i.e. the population mean
    /// weighted by (q−1)/(px+q−1) plus the customer's own mean weighted by
    /// px/(px+q−1). Without repeat purchases it is the population mean.
    pub fn expected_spend(&self, frequency: u32, monetary: f64) -> Result<f64, PredictError> {
        if frequency == 0 {
            return self.population_mean_spend();
        }
        let x = f64::from(frequency);
        let denominator = self.p * x + self.q - 1.0;
        if denominator <= 0.0 {
            return Err(PredictError::UndefinedMeanSpend { q: self.q });
        }
        Ok(self.p * (self.v + x * monetary) / denominator)
    }
}

/// Fits the Gamma-Gamma to the customers of `data` with a repeat purchase
/// and a positive mean spend, by maximum likelihood.
pub fn fit(data: &[Summary], options: &FitOptions) -> Result<GammaGammaFit, PredictError> {
    check_all(data)?;
    let buyers: Vec<&Summary> = data.iter().filter(|s| s.frequency > 0).collect();
    let used: Vec<&Summary> = buyers
        .iter()
        .copied()
        .filter(|s| s.monetary > 0.0)
        .collect();
    if used.is_empty() {
        return Err(PredictError::NoRepeatSpend);
    }
    let spend = Spend::new(&used);
    // Start at p = 1, q = 2, with v making the population mean p·v/(q−1)
    // the observed mean spend.
    let mean = used.iter().map(|s| s.monetary).sum::<f64>() / used.len() as f64;
    let start = [0.0, 2f64.ln(), mean.ln()];
    let optimum = fit::minimize(&spend, &start, used.len() as f64, options).map_err(|reason| {
        PredictError::FitFailed {
            model: "Gamma-Gamma",
            reason,
        }
    })?;
    let model = GammaGamma {
        p: optimum.u[0].exp(),
        q: optimum.u[1].exp(),
        v: optimum.u[2].exp(),
    };
    model.check()?;
    Ok(GammaGammaFit {
        model,
        log_likelihood: -optimum.cost * used.len() as f64,
        customers: used.len(),
        skipped_zero_spend: buyers.len() - used.len(),
        iterations: optimum.iterations,
        evaluations: optimum.evaluations,
        method: optimum.method.to_string(),
    })
}

/// One customer as the likelihood needs them.
#[derive(Debug, Clone, Copy)]
struct Row {
    monetary: f64,
    ln_monetary: f64,
    x_index: u32,
}

struct Spend {
    rows: Vec<Row>,
    /// Distinct frequencies: (x, ln x, customers with it).
    frequencies: Vec<(f64, f64, f64)>,
}

impl Spend {
    fn new(data: &[&Summary]) -> Self {
        let mut index: HashMap<u32, usize> = HashMap::new();
        let mut frequencies: Vec<(f64, f64, f64)> = Vec::new();
        let rows = data
            .iter()
            .map(|s| {
                let x = f64::from(s.frequency);
                let x_index = *index.entry(s.frequency).or_insert_with(|| {
                    frequencies.push((x, x.ln(), 0.0));
                    frequencies.len() - 1
                });
                frequencies[x_index].2 += 1.0;
                Row {
                    monetary: s.monetary,
                    ln_monetary: s.monetary.ln(),
                    x_index: x_index as u32,
                }
            })
            .collect();
        Spend { rows, frequencies }
    }
}

impl Objective for Spend {
    /// The mean negative log-likelihood over u = (ln p, ln q, ln v), and its
    /// gradient:
    /// ∂/∂p = x (ψ(px+q) − ψ(px) + ln m̄ + ln x − ln(v + x m̄)),
    /// ∂/∂q = ψ(px+q) − ψ(q) + ln v − ln(v + x m̄),
    /// ∂/∂v = q/v − (px+q)/(v + x m̄).
    fn evaluate(&self, u: &[f64], gradient: &mut [f64]) -> f64 {
        let (p, q, v) = (u[0].exp(), u[1].exp(), u[2].exp());
        let ln_v = u[2];
        let (lg_q, psi_q) = (ln_gamma(q), digamma(q));
        let mut ll = 0.0;
        let mut g = [0.0_f64; 3];
        // ψ(px+q) per frequency, for the rows.
        let mut psi_pxq = Vec::with_capacity(self.frequencies.len());
        for &(x, _, n) in &self.frequencies {
            let psi = digamma(p * x + q);
            ll += n * (ln_gamma(p * x + q) - ln_gamma(p * x) - lg_q + q * ln_v);
            g[0] += n * x * (psi - digamma(p * x));
            g[1] += n * (psi - psi_q + ln_v);
            g[2] += n * q / v;
            psi_pxq.push(psi);
        }
        let frequencies = &self.frequencies;
        let parts = par_chunks(&self.rows, 50_000, |rows| {
            let mut acc = [Sum::default(); 4];
            for row in rows {
                let (x, ln_x, _) = frequencies[row.x_index as usize];
                let total = v + x * row.monetary;
                let ln_total = total.ln();
                acc[0].add((p * x - 1.0) * row.ln_monetary + p * x * ln_x - (p * x + q) * ln_total);
                acc[1].add(x * (row.ln_monetary + ln_x - ln_total));
                acc[2].add(-ln_total);
                acc[3].add(-(p * x + q) / total);
            }
            acc.map(Sum::get)
        });
        for acc in parts {
            ll += acc[0];
            g[0] += acc[1];
            g[1] += acc[2];
            g[2] += acc[3];
        }
        let scale = -1.0 / self.rows.len() as f64;
        for (k, theta) in [p, q, v].into_iter().enumerate() {
            gradient[k] = scale * theta * g[k];
        }
        scale * ll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::synth::{self, SyntheticConfig};

    fn assert_rel(got: f64, want: f64, rel: f64) {
        let err = ((got - want) / want).abs();
        assert!(
            err <= rel,
            "got {got}, want {want} (relative error {err:e})"
        );
    }

    /// Hardie's CDNOW estimates (the note, and `lifetimes`' docs).
    const NOTE: GammaGamma = GammaGamma {
        p: 6.25,
        q: 3.74,
        v: 15.44,
    };

    #[test]
    fn log_likelihood_is_a_density_in_the_mean_spend() {
        // ∫ f(m̄) dm̄ = 1 for any x (trapezoid on a log grid, m̄ ∈ [e⁻⁸, e⁸]).
        for x in [1, 3, 10] {
            let (lo, hi, n) = (-8.0_f64, 8.0_f64, 40_000);
            let h = (hi - lo) / f64::from(n);
            let total: f64 = (0..=n)
                .map(|i| {
                    let ln_m = lo + h * f64::from(i);
                    let m = ln_m.exp();
                    let weight = if i == 0 || i == n { 0.5 } else { 1.0 };
                    weight * (NOTE.log_likelihood(x, m) + ln_m).exp() * h
                })
                .sum();
            assert_rel(total, 1.0, 1e-6);
        }
    }

    #[test]
    fn expected_spend_shrinks_towards_the_population_mean() {
        let population = NOTE.population_mean_spend().unwrap();
        assert_rel(population, 6.25 * 15.44 / 2.74, 1e-14);
        assert_eq!(NOTE.expected_spend(0, 0.0).unwrap(), population);
        // `lifetimes` docs: customer 1 of CDNOW (x = 2, m̄ = 22.35) at its
        // fitted p, q, v = 6.25, 3.74, 15.45 expects 24.658619 per purchase.
        let at_lifetimes_fit = GammaGamma { v: 15.45, ..NOTE };
        assert_rel(
            at_lifetimes_fit.expected_spend(2, 22.35).unwrap(),
            24.658619,
            1e-3,
        );
        // More purchases, more weight on the customer's own mean.
        let own = 80.0;
        let few = NOTE.expected_spend(1, own).unwrap();
        let many = NOTE.expected_spend(50, own).unwrap();
        assert!(population < few && few < many && many < own);
        let undefined = GammaGamma { q: 0.9, ..NOTE };
        assert!(matches!(
            undefined.population_mean_spend(),
            Err(PredictError::UndefinedMeanSpend { .. })
        ));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let data = synth::generate(&SyntheticConfig {
            customers: 3_000,
            ..SyntheticConfig::default()
        });
        let used: Vec<&Summary> = data.iter().filter(|s| s.frequency > 0).collect();
        let spend = Spend::new(&used);
        let u = [1.2f64, 0.9, 6.0];
        let mut g = [0.0; 3];
        spend.evaluate(&u, &mut g);
        for k in 0..3 {
            let h = 1e-6;
            let (mut up, mut down) = (u, u);
            up[k] += h;
            down[k] -= h;
            let mut scratch = [0.0; 3];
            let numeric = (spend.evaluate(&up, &mut scratch) - spend.evaluate(&down, &mut scratch))
                / (2.0 * h);
            assert!(
                (numeric - g[k]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "∂/∂u{k}: analytic {} vs numeric {numeric}",
                g[k]
            );
        }
    }

    #[test]
    fn fit_recovers_the_parameters_it_was_simulated_from() {
        let config = SyntheticConfig {
            customers: 60_000,
            ..SyntheticConfig::default()
        };
        let data = synth::generate(&config);
        let fitted = fit(&data, &FitOptions::default()).unwrap();
        let truth = config.spend;
        assert_rel(fitted.model.p, truth.p, 0.1);
        // q and v trade off; their population mean is well determined.
        assert_rel(
            fitted.model.population_mean_spend().unwrap(),
            truth.population_mean_spend().unwrap(),
            0.05,
        );
        assert_eq!(
            fitted.customers,
            data.iter().filter(|s| s.frequency > 0).count()
        );
    }

    #[test]
    fn fit_skips_free_visits_and_needs_some_spend() {
        let data = [
            Summary::new(2, 5.0, 9.0).with_monetary(0.0),
            Summary::new(0, 0.0, 9.0),
        ];
        assert_eq!(
            fit(&data, &FitOptions::default()),
            Err(PredictError::NoRepeatSpend)
        );
    }
}
