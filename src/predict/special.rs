//! The special functions the likelihoods need: ln Γ and the digamma ψ.
//!
//! `ln_gamma` is `libm`'s `lgamma` (the musl implementation, accurate to a
//! few ulps). Rust's own `f64::ln_gamma` is not stable yet. `digamma` is
//! ours: the recurrence ψ(x) = ψ(x + 1) − 1/x up to x ≥ 10, then the
//! asymptotic (Stirling) series, which at x ≥ 10 is exact to f64 precision.
//! Both are only defined here for x > 0, all the models ever ask for.

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b), for a, b > 0.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The digamma function ψ(x) = d/dx ln Γ(x), for x > 0 (NaN otherwise).
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return x;
    }
    let mut x = x;
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    // ψ(x) ~ ln x − 1/(2x) − Σ B₂ₖ / (2k x²ᵏ), k = 1..7.
    let inv2 = 1.0 / (x * x);
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0
                                    - inv2
                                        * (1.0 / 132.0
                                            - inv2 * (691.0 / 32760.0 - inv2 / 12.0))))));
    shift + x.ln() - 0.5 / x - series
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // reference values as mpmath printed them
mod tests {
    use super::*;

    /// Reference values from mpmath 1.3.0 (`mp.dps = 30`): `digamma(x)` and
    /// `loggamma(x)`, printed by `scripts/predict-reference-values.py`.
    const REFERENCE: [(f64, f64, f64); 8] = [
        (1e-8, -100000000.57721564845, 18.420680738180208905),
        (0.243, -4.351093864423210616, 1.3180435846996698495),
        (0.5, -1.9635100260214234794, 0.57236494292470008707),
        (1.0, -0.57721566490153286061, 0.0),
        (2.426, 0.66620791496879617878, 0.23400811688731612227),
        (7.5, 1.9467574842460867881, 7.5343642367587329552),
        (30.0, 3.3844381326855248766, 71.25703896716800901),
        (1000.0, 6.9072551956488120521, 5905.2204232091812118),
    ];

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(1e-300) || (got - want).abs() < 1e-15
    }

    #[test]
    fn digamma_matches_mpmath() {
        for (x, psi, _) in REFERENCE {
            assert!(
                close(digamma(x), psi, 1e-14),
                "ψ({x}) = {} ≠ {psi}",
                digamma(x)
            );
        }
    }

    #[test]
    fn ln_gamma_matches_mpmath() {
        for (x, _, lg) in REFERENCE {
            assert!(
                close(ln_gamma(x), lg, 1e-14),
                "lnΓ({x}) = {} ≠ {lg}",
                ln_gamma(x)
            );
        }
    }

    #[test]
    fn digamma_is_the_derivative_of_ln_gamma() {
        for x in [0.3, 1.7, 4.2, 12.5, 80.0] {
            let h = 1e-5 * x;
            let numeric = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!(close(digamma(x), numeric, 1e-8), "x = {x}");
        }
    }

    #[test]
    fn digamma_rejects_non_positive_arguments() {
        assert!(digamma(0.0).is_nan());
        assert!(digamma(-1.5).is_nan());
        assert!(digamma(f64::NAN).is_nan());
    }
}
