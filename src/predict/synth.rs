//! Synthetic customer summaries drawn from known BG/NBD and Gamma-Gamma
//! parameters, deterministic per seed: for the benchmark and for tests that
//! check a fit recovers the truth.
//!
//! Each customer is simulated as the models tell it: an age T uniform over
//! the observation window; λ ~ Gamma(r, α) and p ~ Beta(a, b); exponential
//! gaps between purchases, each followed by dropout with probability p;
//! per-purchase values Gamma(p, ν) with ν ~ Gamma(q, v).

use fastrand::Rng;

use super::{BgNbd, GammaGamma, Summary};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    pub customers: usize,
    pub seed: u64,
    /// The purchase process, in days.
    pub purchases: BgNbd,
    /// The spend per purchase.
    pub spend: GammaGamma,
    /// Customers' ages are uniform in [1, this many days].
    pub max_age_days: f64,
    /// Round recency and age down to whole days, as a clinic's visit dates
    /// are. Many customers then share a summary, which the fit exploits.
    pub whole_days: bool,
}

impl Default for SyntheticConfig {
    /// A clinic-like base, in days: a new customer comes back about every
    /// 2½ months on average (r/α = 0.8/60 a day), and drops out after a visit
    /// with probability 1/6 on average (a/(a+b) = 0.8/4.8); a visit is worth
    /// 2,000 on average (p·v/(q−1) = 6·1,000/3).
    fn default() -> Self {
        SyntheticConfig {
            customers: 10_000,
            seed: 7,
            purchases: BgNbd {
                r: 0.8,
                alpha: 60.0,
                a: 0.8,
                b: 4.0,
            },
            spend: GammaGamma {
                p: 6.0,
                q: 4.0,
                v: 1_000.0,
            },
            max_age_days: 730.0,
            whole_days: true,
        }
    }
}

/// Draws `config.customers` summaries.
pub fn generate(config: &SyntheticConfig) -> Vec<Summary> {
    let mut rng = Rng::with_seed(config.seed);
    (0..config.customers)
        .map(|_| one_customer(&mut rng, config))
        .collect()
}

fn one_customer(rng: &mut Rng, config: &SyntheticConfig) -> Summary {
    let BgNbd { r, alpha, a, b } = config.purchases;
    let age = 1.0 + rng.f64() * (config.max_age_days - 1.0);
    let rate = gamma(rng, r) / alpha;
    let dropout = {
        let (g1, g2) = (gamma(rng, a), gamma(rng, b));
        g1 / (g1 + g2)
    };
    let mut time = 0.0;
    let mut frequency = 0u32;
    let mut recency = 0.0;
    loop {
        time += exponential(rng) / rate;
        if time > age {
            break;
        }
        frequency += 1;
        recency = time;
        if rng.f64() < dropout {
            break;
        }
    }
    let monetary = if frequency == 0 {
        0.0
    } else {
        // The sum of x Gamma(p, ν) values is Gamma(px, ν).
        let GammaGamma { p, q, v } = config.spend;
        let nu = gamma(rng, q) / v;
        let x = f64::from(frequency);
        gamma(rng, p * x) / nu / x
    };
    let (recency, age) = if config.whole_days {
        (recency.floor(), age.floor())
    } else {
        (recency, age)
    };
    Summary {
        frequency,
        recency,
        age,
        monetary,
    }
}

/// Exp(1), by inversion.
fn exponential(rng: &mut Rng) -> f64 {
    -(1.0 - rng.f64()).ln()
}

/// N(0, 1), by Box–Muller.
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.f64();
    let v = rng.f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Gamma(shape, 1), by Marsaglia & Tsang (2000); shapes below 1 via
/// Gamma(shape + 1) · U^(1/shape).
fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - rng.f64();
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = normal(rng);
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.f64();
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_is_deterministic_per_seed() {
        let config = SyntheticConfig {
            customers: 500,
            ..SyntheticConfig::default()
        };
        assert_eq!(generate(&config), generate(&config));
        let other = SyntheticConfig {
            seed: 8,
            ..config.clone()
        };
        assert_ne!(generate(&config), generate(&other));
    }

    #[test]
    fn generated_summaries_are_valid() {
        for whole_days in [true, false] {
            let config = SyntheticConfig {
                customers: 5_000,
                whole_days,
                ..SyntheticConfig::default()
            };
            for s in generate(&config) {
                assert_eq!(s.check(), Ok(()), "{s:?}");
                assert_eq!(s.frequency == 0, s.monetary == 0.0);
            }
        }
    }

    #[test]
    fn gamma_draws_have_the_right_mean_and_variance() {
        let mut rng = Rng::with_seed(1);
        for shape in [0.3, 1.0, 4.5] {
            let n = 200_000;
            let draws: Vec<f64> = (0..n).map(|_| gamma(&mut rng, shape)).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (mean - shape).abs() < 0.02 * shape.max(1.0),
                "{shape}: {mean}"
            );
            assert!(
                (var - shape).abs() < 0.05 * shape.max(1.0),
                "{shape}: {var}"
            );
        }
    }
}
