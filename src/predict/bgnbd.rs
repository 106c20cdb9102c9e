//! The BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005,
//! "Counting Your Customers the Easy Way: An Alternative to the Pareto/NBD
//! Model", Marketing Science 24(2), 275–284; cited below as FHL).
//!
//! While alive a customer buys at a Poisson rate λ, λ ~ Gamma(r, α) across
//! customers; right after each purchase they drop out for good with
//! probability p, p ~ Beta(a, b). A customer's history is summarised by
//! (x, tₓ, T) — see [`Summary`] — and every quantity here is a closed form in
//! it and the four parameters.
//!
//! The fit maximises the log-likelihood (FHL Eq. 6/7, split into A₁..A₄ as
//! in FHL Sec. 7) over (ln r, ln α, ln a, ln b) with the analytic gradient.
//! Customers with identical (x, tₓ, T) are evaluated once with a weight, and
//! the sum over the rest is split across threads.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::fit::{self, FitOptions, Objective, Sum};
use super::hyp2f1::hyp2f1_scaled;
use super::special::{digamma, ln_gamma};
use super::{PredictError, Summary, check_all, par_chunks};

/// BG/NBD parameters, in the time unit of the summaries they were fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    /// Shape of the Gamma distribution of purchase rates λ.
    pub r: f64,
    /// Rate (inverse scale) of the Gamma distribution of λ, in time units:
    /// the mean purchase rate of a new customer is r / α.
    pub alpha: f64,
    /// First shape of the Beta distribution of dropout probabilities p.
    pub a: f64,
    /// Second shape of the Beta distribution of p: the mean dropout
    /// probability after a purchase is a / (a + b).
    pub b: f64,
}

/// A fitted [`BgNbd`] and how the fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgNbdFit {
    pub model: BgNbd,
    /// The maximised log-likelihood, summed over all customers.
    pub log_likelihood: f64,
    /// Customers in the fit.
    pub customers: usize,
    /// Distinct (x, tₓ, T) summaries among them: the likelihood's real size.
    pub distinct: usize,
    pub iterations: u64,
    /// Likelihood evaluations (each a pass over the distinct summaries).
    pub evaluations: u64,
    /// The optimiser that converged.
    pub method: String,
}

impl BgNbd {
    /// All four parameters must be finite and positive.
    pub fn check(&self) -> Result<(), PredictError> {
        let all = [
            ("r", self.r),
            ("alpha", self.alpha),
            ("a", self.a),
            ("b", self.b),
        ];
        match all.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            Some((name, value)) => Err(PredictError::InvalidParameters {
                model: "BG/NBD",
                reason: format!("{name} = {value} must be a positive number"),
            }),
            None => Ok(()),
        }
    }

    /// ln L(r, α, a, b | x, tₓ, T): FHL Eq. 6, computed as
    /// ln A₁ + ln A₂ + ln(A₃ + δₓ₍>₀₎ A₄) (FHL Sec. 7) with a log-sum-exp.
    pub fn log_likelihood(&self, s: &Summary) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(s.frequency);
        let ln_a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let ln_a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let ln_a3 = -(r + x) * (alpha + s.age).ln();
        if s.frequency == 0 {
            return ln_a1 + ln_a2 + ln_a3;
        }
        let ln_a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + s.recency).ln();
        ln_a1 + ln_a2 + log_add_exp(ln_a3, ln_a4)
    }

    /// The log-likelihood summed over customers.
    pub fn total_log_likelihood(&self, data: &[Summary]) -> f64 {
        data.iter().map(|s| self.log_likelihood(s)).sum()
    }

    /// P(alive at T | x, tₓ, T): the "alive" term of the likelihood over the
    /// whole (FHL Appendix Eq. A2 mixed over λ and p; Fader, Hardie & Lee
    /// 2008, "Computing P(alive) Using the BG/NBD Model"):
    /// 1 / (1 + δₓ₍>₀₎ · a/(b + x − 1) · ((α + T)/(α + tₓ))^(r+x)).
    /// Always 1 without a repeat purchase: under the BG/NBD nobody drops out
    /// before buying again.
    pub fn p_alive(&self, s: &Summary) -> f64 {
        if s.frequency == 0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(s.frequency);
        let ln_odds_dead = a.ln() - (b + x - 1.0).ln()
            + (r + x) * ((alpha + s.age).ln() - (alpha + s.recency).ln());
        1.0 / (1.0 + ln_odds_dead.exp())
    }

    /// P0: the probability of no purchase in the next `t` time units, given
    /// the history (x, tₓ, T).
    ///
    /// A customer dead at T never buys again. One alive at T can only drop
    /// out right after a purchase, so buying nothing in (T, T + t] is exactly
    /// "the next purchase comes after t": e^(−λt). Given the history and being
    /// alive, λ ~ Gamma(r + x, α + T) (the alive term of the likelihood is
    /// λ^x e^(−λT) times the prior), so E[e^(−λt)] = ((α+T)/(α+T+t))^(r+x), a
    /// negative-binomial zero term. Hence
    /// P0 = 1 − P(alive) + P(alive) · ((α + T)/(α + T + t))^(r+x).
    /// For a new customer (x = T = 0) it is FHL Eq. 8 at x = 0, (α/(α+t))^r;
    /// the unit tests also check it against the posterior integrated
    /// numerically.
    pub fn p_no_purchase(&self, s: &Summary, t: f64) -> f64 {
        if t.is_nan() || t <= 0.0 {
            return 1.0;
        }
        let alive = self.p_alive(s);
        let ln_quiet = -(self.r + f64::from(s.frequency)) * (t / (self.alpha + s.age)).ln_1p();
        (1.0 - alive) + alive * ln_quiet.exp()
    }

    /// E[Y(t) | x, tₓ, T]: the expected number of purchases in the next `t`
    /// time units (FHL Eq. 10), i.e. P(alive) times
    /// (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))].
    ///
    /// At a = 1 the formula is 0/0 with a finite limit; within 1e−7 of it
    /// this returns the mean of the values at a = 1 ± 1e−6.
    pub fn expected_purchases(&self, s: &Summary, t: f64) -> Result<f64, PredictError> {
        if t.is_nan() || t < 0.0 {
            return Err(PredictError::InvalidConfig(format!(
                "a forecast horizon must be a non-negative number, not {t}"
            )));
        }
        if t == 0.0 {
            return Ok(0.0);
        }
        let x = f64::from(s.frequency);
        let numerator = |a: f64| conditional_numerator(self.r, self.alpha, a, self.b, x, s.age, t);
        let numerator = if (self.a - 1.0).abs() < 1e-7 {
            0.5 * (numerator(1.0 - 1e-6)? + numerator(1.0 + 1e-6)?)
        } else {
            numerator(self.a)?
        };
        Ok(numerator * self.p_alive(s))
    }

    /// E[X(t)]: the expected repeat purchases in a new customer's first `t`
    /// time units (FHL Eq. 9) — Eq. 10 with no history.
    pub fn expected_purchases_new(&self, t: f64) -> Result<f64, PredictError> {
        self.expected_purchases(&Summary::new(0, 0.0, 0.0), t)
    }

    /// Σₖ₌₁..months (E[Y(k·m)] − E[Y((k−1)·m)]) / (1 + d)ᵏ with m = `month`
    /// time units: the purchases expected in each coming month, discounted
    /// at the monthly rate d. Times the expected spend per purchase this is
    /// the discounted-cash-flow CLV `lifetimes` computes.
    pub fn discounted_purchases(
        &self,
        s: &Summary,
        months: u32,
        month: f64,
        monthly_discount_rate: f64,
    ) -> Result<f64, PredictError> {
        let mut before = 0.0;
        let mut total = 0.0;
        let mut discount = 1.0;
        for k in 1..=months {
            let by_then = self.expected_purchases(s, f64::from(k) * month)?;
            discount /= 1.0 + monthly_discount_rate;
            total += (by_then - before) * discount;
            before = by_then;
        }
        Ok(total)
    }
}

/// (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)],
/// z = t/(α+T+t): the alive customer's expectation (FHL Eq. 10's numerator).
/// The power is applied in log space to the scaled ₂F₁, which for frequent
/// buyers is astronomically large while the product is below one.
fn conditional_numerator(
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
    x: f64,
    age: f64,
    t: f64,
) -> Result<f64, PredictError> {
    let z = t / (alpha + age + t);
    let ln_power = -(r + x) * (t / (alpha + age)).ln_1p();
    let f = hyp2f1_scaled(r + x, b + x, a + b + x - 1.0, z)?;
    Ok((a + b + x - 1.0) / (a - 1.0) * (1.0 - f.times_exp(ln_power)))
}

/// ln(eᵘ + eᵛ) without overflow.
fn log_add_exp(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u > v { (u, v) } else { (v, u) };
    hi + (lo - hi).exp().ln_1p()
}

/// Fits the BG/NBD to `data` by maximum likelihood.
pub fn fit(data: &[Summary], options: &FitOptions) -> Result<BgNbdFit, PredictError> {
    check_all(data)?;
    if data.is_empty() {
        return Err(PredictError::NoCustomers);
    }
    if data.iter().all(|s| s.frequency == 0) {
        return Err(PredictError::FitFailed {
            model: "BG/NBD",
            reason: "no customer made a repeat purchase, so there is no rate to estimate".into(),
        });
    }
    let grouped = Grouped::new(data);
    // Start at r = 1 with α matching the observed repeat rate r/α = Σx/ΣT,
    // and a = b = 1 (dropout probabilities uniform): scale-free, so the same
    // start serves summaries in days or in weeks.
    let (sum_x, sum_t) = grouped.rows.iter().fold((0.0, 0.0), |(sx, st), row| {
        (sx + row.weight * row.x, st + row.weight * row.age)
    });
    let alpha0 = (sum_t / sum_x).clamp(1e-6, 1e9);
    let start = [
        0.0,
        if alpha0.is_finite() { alpha0.ln() } else { 0.0 },
        0.0,
        0.0,
    ];
    let optimum =
        fit::minimize(&grouped, &start, grouped.total_weight, options).map_err(|reason| {
            PredictError::FitFailed {
                model: "BG/NBD",
                reason,
            }
        })?;
    let model = BgNbd {
        r: optimum.u[0].exp(),
        alpha: optimum.u[1].exp(),
        a: optimum.u[2].exp(),
        b: optimum.u[3].exp(),
    };
    model.check()?;
    Ok(BgNbdFit {
        model,
        log_likelihood: -optimum.cost * grouped.total_weight,
        customers: data.len(),
        distinct: grouped.rows.len(),
        iterations: optimum.iterations,
        evaluations: optimum.evaluations,
        method: optimum.method.to_string(),
    })
}

/// One distinct (x, tₓ, T) and how many customers share it.
#[derive(Debug, Clone, Copy)]
struct Row {
    x: f64,
    recency: f64,
    age: f64,
    weight: f64,
    /// Index of x in [`Grouped::frequencies`].
    x_index: u32,
}

/// The data as the likelihood needs it: distinct summaries with weights,
/// and the distinct frequencies with their total weights (the terms that
/// depend on x alone are summed once per frequency).
struct Grouped {
    rows: Vec<Row>,
    frequencies: Vec<(f64, f64)>,
    total_weight: f64,
}

impl Grouped {
    fn new(data: &[Summary]) -> Self {
        // In first-seen order, so the sums (and the fit, to the last bit) do
        // not depend on hashing.
        let mut seen: HashMap<(u32, u64, u64), usize> = HashMap::with_capacity(data.len() / 4);
        let mut frequency_index: HashMap<u32, usize> = HashMap::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut frequencies: Vec<(f64, f64)> = Vec::new();
        for s in data {
            // `+ 0.0` folds −0.0 into 0.0 so they group together.
            let key = (
                s.frequency,
                (s.recency + 0.0).to_bits(),
                (s.age + 0.0).to_bits(),
            );
            let x_index = *frequency_index.entry(s.frequency).or_insert_with(|| {
                frequencies.push((f64::from(s.frequency), 0.0));
                frequencies.len() - 1
            });
            frequencies[x_index].1 += 1.0;
            let row = *seen.entry(key).or_insert_with(|| {
                rows.push(Row {
                    x: f64::from(s.frequency),
                    recency: s.recency,
                    age: s.age,
                    weight: 0.0,
                    x_index: x_index as u32,
                });
                rows.len() - 1
            });
            rows[row].weight += 1.0;
        }
        Grouped {
            rows,
            frequencies,
            total_weight: data.len() as f64,
        }
    }
}

/// Per frequency: ln(b + x − 1) and 1/(b + x − 1) (unused at x = 0).
#[derive(Clone, Copy)]
struct PerFrequency {
    ln_b_x1: f64,
    inv_b_x1: f64,
}

impl Objective for Grouped {
    /// The mean negative log-likelihood over u = (ln r, ln α, ln a, ln b),
    /// and its gradient. With w₄ = A₄/(A₃ + A₄), the share of the likelihood
    /// in which the customer dropped out after tₓ, and w₃ = 1 − w₄:
    /// ∂/∂r = ψ(r+x) − ψ(r) + ln α − w₃ ln(α+T) − w₄ ln(α+tₓ),
    /// ∂/∂α = r/α − (r+x) (w₃/(α+T) + w₄/(α+tₓ)),
    /// ∂/∂a = ψ(a+b) − ψ(a+b+x) + w₄/a,
    /// ∂/∂b = ψ(a+b) + ψ(b+x) − ψ(b) − ψ(a+b+x) − w₄/(b+x−1).
    fn evaluate(&self, u: &[f64], gradient: &mut [f64]) -> f64 {
        let (r, alpha, a, b) = (u[0].exp(), u[1].exp(), u[2].exp(), u[3].exp());
        let (ln_alpha, ln_a) = (u[1], u[2]);
        let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
        let (psi_r, psi_b, psi_ab) = (digamma(r), digamma(b), digamma(a + b));

        let mut ll = 0.0;
        let mut g = [0.0_f64; 4];
        let mut per_frequency = Vec::with_capacity(self.frequencies.len());
        for &(x, weight) in &self.frequencies {
            ll += weight
                * (ln_gamma(r + x) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + x)
                    - lg_b
                    - ln_gamma(a + b + x));
            let psi_abx = digamma(a + b + x);
            g[0] += weight * (digamma(r + x) - psi_r + ln_alpha);
            g[1] += weight * r / alpha;
            g[2] += weight * (psi_ab - psi_abx);
            g[3] += weight * (psi_ab + digamma(b + x) - psi_b - psi_abx);
            per_frequency.push(if x > 0.0 {
                PerFrequency {
                    ln_b_x1: (b + x - 1.0).ln(),
                    inv_b_x1: 1.0 / (b + x - 1.0),
                }
            } else {
                PerFrequency {
                    ln_b_x1: 0.0,
                    inv_b_x1: 0.0,
                }
            });
        }

        let per_frequency = &per_frequency;
        let parts = par_chunks(&self.rows, 50_000, |rows| {
            // [ln L, ∂r, ∂α, Σ w·w₄, Σ w·w₄/(b+x−1)]
            let mut acc = [Sum::default(); 5];
            for row in rows {
                let ra = r + row.x;
                let at = alpha + row.age;
                let ln_at = at.ln();
                let ln_a3 = -ra * ln_at;
                if row.x == 0.0 {
                    acc[0].add(row.weight * ln_a3);
                    acc[1].add(-row.weight * ln_at);
                    acc[2].add(-row.weight * ra / at);
                    continue;
                }
                let pf = per_frequency[row.x_index as usize];
                let atx = alpha + row.recency;
                let ln_atx = atx.ln();
                let ln_a4 = ln_a - pf.ln_b_x1 - ra * ln_atx;
                let diff = ln_a4 - ln_a3;
                let (ln_sum, w4) = if diff > 0.0 {
                    let e = (-diff).exp();
                    (ln_a4 + e.ln_1p(), 1.0 / (1.0 + e))
                } else {
                    let e = diff.exp();
                    (ln_a3 + e.ln_1p(), e / (1.0 + e))
                };
                let w3 = 1.0 - w4;
                acc[0].add(row.weight * ln_sum);
                acc[1].add(-row.weight * (w3 * ln_at + w4 * ln_atx));
                acc[2].add(-row.weight * ra * (w3 / at + w4 / atx));
                acc[3].add(row.weight * w4);
                acc[4].add(row.weight * w4 * pf.inv_b_x1);
            }
            acc.map(Sum::get)
        });
        for acc in parts {
            ll += acc[0];
            g[0] += acc[1];
            g[1] += acc[2];
            g[2] += acc[3] / a;
            g[3] -= acc[4];
        }
        // To the mean negative log-likelihood over log-parameters.
        let scale = -1.0 / self.total_weight;
        for (k, theta) in [r, alpha, a, b].into_iter().enumerate() {
            gradient[k] = scale * theta * g[k];
        }
        scale * ll
    }
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // reference values as mpmath printed them
mod tests {
    use super::*;
    use crate::predict::synth::{self, SyntheticConfig};

    #[test]
    fn everyone_dropping_out_alike_is_fitted_at_the_boundary() {
        // Every customer leaves after a visit with probability 5 %: the
        // Beta(a, b) of dropout probabilities is a point mass, reached only
        // as a, b → ∞ with a/(a+b) = 0.05. The likelihood has no interior
        // optimum; the fit must still converge on the rate and the dropout
        // share (along the ridge a and b themselves are arbitrary).
        let data = synth::generate(&SyntheticConfig {
            customers: 3_000,
            purchases: BgNbd {
                r: 0.8,
                alpha: 60.0,
                a: 5e6,
                b: 9.5e7,
            },
            whole_days: true,
            max_age_days: 540.0,
            ..SyntheticConfig::default()
        });
        let fit = fit(&data, &FitOptions::default()).unwrap();
        let BgNbd { r, alpha, a, b } = fit.model;
        assert!((a / (a + b) - 0.05).abs() < 0.01, "{:?}", fit.model);
        assert!(
            ((r / alpha) / (0.8 / 60.0) - 1.0).abs() < 0.1,
            "{:?}",
            fit.model
        );
    }

    /// FHL's CDNOW estimates (Sec. 7 / Fig. 1 of the paper).
    const PAPER: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn assert_rel(got: f64, want: f64, rel: f64) {
        let err = ((got - want) / want).abs();
        assert!(
            err <= rel,
            "got {got}, want {want} (relative error {err:e})"
        );
    }

    /// The three CDNOW customers FHL's spreadsheet shows, with reference
    /// values computed in mpmath 1.3.0 from FHL Eq. 6 and A2
    /// (`scripts/predict-reference-values.py`).
    #[test]
    fn log_likelihood_and_p_alive_match_the_paper_formulas() {
        let c1 = Summary::new(2, 30.43, 38.86);
        let c3 = Summary::new(0, 0.0, 38.86);
        let c6 = Summary::new(7, 29.43, 38.86);
        assert_rel(PAPER.log_likelihood(&c1), -9.4586063070662712, 1e-13);
        assert_rel(PAPER.log_likelihood(&c3), -0.55471327643815845, 1e-13);
        assert_rel(PAPER.log_likelihood(&c6), -21.863276271463518, 1e-13);
        assert_rel(PAPER.p_alive(&c1), 0.72657857008067291, 1e-13);
        assert_rel(PAPER.p_alive(&c6), 0.64175634594610725, 1e-13);
        assert_eq!(PAPER.p_alive(&c3), 1.0);
    }

    /// FHL's worked example: x = 2, tₓ = 30.43, T = 38.86 expects 1.226
    /// purchases in the next 39 weeks; mpmath gives 1.2260281747671444 (the
    /// other values too are from `scripts/predict-reference-values.py`).
    #[test]
    fn expected_purchases_match_eq_10() {
        let c1 = Summary::new(2, 30.43, 38.86);
        assert_rel(
            PAPER.expected_purchases(&c1, 39.0).unwrap(),
            1.2260281747671444,
            1e-12,
        );
        let c6 = Summary::new(7, 29.43, 38.86);
        assert_rel(
            PAPER.expected_purchases(&c6, 39.0).unwrap(),
            3.3370532748514165,
            1e-12,
        );
        assert_rel(
            PAPER.expected_purchases_new(39.0).unwrap(),
            1.1967231933208168,
            1e-12,
        );
        assert_rel(
            PAPER.expected_purchases_new(1e-3).unwrap(),
            5.5050197502677483e-5,
            1e-8,
        );
        assert_eq!(PAPER.expected_purchases(&c1, 0.0), Ok(0.0));
        assert!(PAPER.expected_purchases(&c1, -1.0).is_err());
    }

    /// P0 against the posterior integrated numerically over (λ, p) with
    /// mpmath `quad` (`scripts/predict-reference-values.py`):
    /// E[1{dead} + 1{alive}·e^(−λt) | history].
    #[test]
    fn p_no_purchase_matches_the_integrated_posterior() {
        let cases = [
            (Summary::new(2, 30.43, 38.86), 39.0, 0.445372862082996),
            (Summary::new(7, 29.43, 38.86), 13.0, 0.453981429530497),
            (Summary::new(1, 5.0, 20.0), 4.0, 0.916911189204031),
        ];
        for (s, t, want) in cases {
            assert_rel(PAPER.p_no_purchase(&s, t), want, 1e-12);
        }
        // No history: FHL Eq. 8 at x = 0.
        let new = Summary::new(0, 0.0, 0.0);
        assert_rel(
            PAPER.p_no_purchase(&new, 39.0),
            (4.414f64 / 43.414).powf(0.243),
            1e-14,
        );
    }

    /// Two independent formulas must agree on the first instant: for small t
    /// P(a purchase) ≈ E[purchases] ≈ P(alive)·(r+x)/(α+T)·t.
    #[test]
    fn p_no_purchase_and_expected_purchases_agree_for_short_horizons() {
        for s in [
            Summary::new(2, 30.43, 38.86),
            Summary::new(0, 0.0, 10.0),
            Summary::new(12, 20.0, 38.0),
        ] {
            let t = 1e-4;
            let buy = 1.0 - PAPER.p_no_purchase(&s, t);
            let expected = PAPER.expected_purchases(&s, t).unwrap();
            let rate =
                PAPER.p_alive(&s) * (PAPER.r + f64::from(s.frequency)) / (PAPER.alpha + s.age);
            assert_rel(buy, rate * t, 1e-3);
            assert_rel(expected, rate * t, 1e-3);
        }
    }

    #[test]
    fn expected_purchases_handle_a_equal_to_one_and_heavy_buyers() {
        let s = Summary::new(3, 20.0, 30.0);
        let near = |a: f64| BgNbd { a, ..PAPER }.expected_purchases(&s, 39.0).unwrap();
        let at_one = near(1.0);
        assert!(at_one.is_finite());
        assert_rel(at_one, 0.5 * (near(1.0 - 1e-4) + near(1.0 + 1e-4)), 1e-6);
        // 500 repeat purchases: the ₂F₁ alone is 4.4e139, the answer modest
        // (mpmath at 40 digits). Silent for the last 0.86 weeks, such a
        // buyer is most likely gone; still buying at 38.85, they are not.
        let gone = Summary::new(500, 38.0, 38.86);
        let e = PAPER.expected_purchases(&gone, 39.0).unwrap();
        assert_rel(e, 9.2200275883628618, 1e-10);
        let active = Summary::new(500, 38.85, 38.86);
        let e = PAPER.expected_purchases(&active, 39.0).unwrap();
        assert_rel(e, 343.43798113201637, 1e-10);
    }

    #[test]
    fn discounted_purchases_sum_the_monthly_increments() {
        let s = Summary::new(2, 30.43, 38.86);
        let month = 4.345;
        let undiscounted = PAPER.discounted_purchases(&s, 12, month, 0.0).unwrap();
        assert_rel(
            undiscounted,
            PAPER.expected_purchases(&s, 12.0 * month).unwrap(),
            1e-12,
        );
        let discounted = PAPER.discounted_purchases(&s, 12, month, 0.01).unwrap();
        assert!(discounted < undiscounted && discounted > undiscounted / 1.01f64.powi(12));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let data = synth::generate(&SyntheticConfig {
            customers: 2_000,
            ..SyntheticConfig::default()
        });
        let grouped = Grouped::new(&data);
        let u = [(-0.3f64), 3.5, (-0.2), 1.1];
        let mut g = [0.0; 4];
        grouped.evaluate(&u, &mut g);
        for k in 0..4 {
            let h = 1e-6;
            let (mut up, mut down) = (u, u);
            up[k] += h;
            down[k] -= h;
            let mut scratch = [0.0; 4];
            let numeric = (grouped.evaluate(&up, &mut scratch)
                - grouped.evaluate(&down, &mut scratch))
                / (2.0 * h);
            assert!(
                (numeric - g[k]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "∂/∂u{k}: analytic {} vs numeric {numeric}",
                g[k]
            );
        }
    }

    #[test]
    fn grouped_likelihood_equals_the_plain_sum() {
        let mut data = synth::generate(&SyntheticConfig {
            customers: 3_000,
            ..SyntheticConfig::default()
        });
        data.extend_from_within(..1_000);
        let grouped = Grouped::new(&data);
        assert!(grouped.rows.len() < data.len());
        let model = BgNbd {
            r: 0.7,
            alpha: 40.0,
            a: 0.9,
            b: 3.0,
        };
        let u = [model.r.ln(), model.alpha.ln(), model.a.ln(), model.b.ln()];
        let mean_nll = grouped.evaluate(&u, &mut [0.0; 4]);
        assert_rel(
            -mean_nll * data.len() as f64,
            model.total_log_likelihood(&data),
            1e-12,
        );
    }

    #[test]
    fn fit_recovers_the_parameters_it_was_simulated_from() {
        let config = SyntheticConfig {
            customers: 40_000,
            ..SyntheticConfig::default()
        };
        let data = synth::generate(&config);
        let fitted = fit(&data, &FitOptions::default()).unwrap();
        let truth = config.purchases;
        let m = fitted.model;
        // 40k customers pin r and α to a few percent; a and b are looser.
        assert_rel(m.r, truth.r, 0.08);
        assert_rel(m.alpha, truth.alpha, 0.10);
        assert_rel(m.a / (m.a + m.b), truth.a / (truth.a + truth.b), 0.15);
        // The fit is a maximum: the truth is no more likely.
        assert!(fitted.log_likelihood >= truth.total_log_likelihood(&data));
        assert_rel(fitted.log_likelihood, m.total_log_likelihood(&data), 1e-10);
    }

    #[test]
    fn fit_rejects_data_it_cannot_use() {
        assert_eq!(
            fit(&[], &FitOptions::default()),
            Err(PredictError::NoCustomers)
        );
        assert!(matches!(
            fit(&[Summary::new(0, 0.0, 5.0)], &FitOptions::default()),
            Err(PredictError::FitFailed { .. })
        ));
        assert!(matches!(
            fit(&[Summary::new(1, 9.0, 5.0)], &FitOptions::default()),
            Err(PredictError::InvalidSummary { index: 0, .. })
        ));
    }
}
