//! Maximum likelihood: minimise a model's mean negative log-likelihood over
//! its log-parameters (so every parameter stays positive) with `argmin`.
//!
//! L-BFGS with a Moré–Thuente line search and the analytic gradient does the
//! work; it needs ~30–60 evaluations, which matters when one evaluation is a
//! pass over a million customers. Should it fail (a line search that finds
//! no descent, a non-finite likelihood on the way), Nelder–Mead, which needs
//! no gradient and tolerates infinities, restarts from the same point, and
//! L-BFGS then polishes its answer. The objective is evaluated once per
//! point for both cost and gradient: argmin asks for them separately, so the
//! last evaluation is cached.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::quasinewton::LBFGS;

/// How hard the fits try.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Iterations allowed to each optimiser run.
    pub max_iterations: u64,
    /// L-BFGS stops when the gradient of the mean negative log-likelihood
    /// (per customer, over log-parameters) is this small.
    pub gradient_tolerance: f64,
    /// A fit is accepted when that gradient is below this, or below
    /// 0.01/√n for n customers if that is larger. The likelihood is only
    /// known to ~1e−15 relative and ridges (a and b running off together)
    /// stall the optimiser above `gradient_tolerance`; a gradient g leaves
    /// each log-parameter ~g/curvature from the optimum, while its standard
    /// error is ~1/√(n·curvature): 0.01/√n keeps the optimisation error near
    /// 1 % of the statistical one.
    pub accept_gradient: f64,
    /// Fit the spend model only when at least this many customers have a
    /// repeat purchase with a positive mean spend; fewer cannot pin it down.
    pub min_spend_customers: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            max_iterations: 1_000,
            gradient_tolerance: 1e-8,
            accept_gradient: 1e-5,
            min_spend_customers: 20,
        }
    }
}

/// A model's mean negative log-likelihood over its log-parameters.
pub(crate) trait Objective: Sync {
    /// The cost at `u`, and its gradient into `gradient`. Non-finite costs
    /// are allowed (the optimiser steps back from them).
    fn evaluate(&self, u: &[f64], gradient: &mut [f64]) -> f64;
}

/// Where the optimiser ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Optimum {
    /// The log-parameters.
    pub u: Vec<f64>,
    /// The mean negative log-likelihood there.
    pub cost: f64,
    pub iterations: u64,
    pub evaluations: u64,
    /// "L-BFGS", or "Nelder-Mead + L-BFGS" when the fallback was needed.
    pub method: String,
}

/// Minimises `objective` (a mean over `customers`) from `start`.
pub(crate) fn minimize(
    objective: &impl Objective,
    start: &[f64],
    customers: f64,
    options: &FitOptions,
) -> Result<Optimum, String> {
    let options = &FitOptions {
        accept_gradient: options
            .accept_gradient
            .max(0.01 / customers.max(1.0).sqrt()),
        ..options.clone()
    };
    let problem = Cached::new(objective);
    let first = lbfgs(&problem, start.to_vec(), options);
    if let Ok((u, cost, iterations)) = &first
        && converged(&problem, u, options)
    {
        return Ok(Optimum {
            u: u.clone(),
            cost: *cost,
            iterations: *iterations,
            evaluations: problem.evaluations(),
            method: "L-BFGS".to_string(),
        });
    }
    // The fallback: derivative-free from the start, then polish.
    let (u, _, nm_iterations) = nelder_mead(&problem, start, options)?;
    let (u, cost, iterations) = lbfgs(&problem, u, options)?;
    if converged(&problem, &u, options) {
        return Ok(Optimum {
            u,
            cost,
            iterations: nm_iterations + iterations,
            evaluations: problem.evaluations(),
            method: "Nelder-Mead + L-BFGS".to_string(),
        });
    }
    let mut gradient = vec![0.0; u.len()];
    problem.objective.evaluate(&u, &mut gradient);
    Err(format!(
        "gradient norm {:e} after {} iterations (first attempt: {})",
        norm(&gradient),
        nm_iterations + iterations,
        match first {
            Ok(_) => "stopped short".to_string(),
            Err(e) => e,
        }
    ))
}

fn lbfgs<O: Objective>(
    problem: &Cached<'_, O>,
    start: Vec<f64>,
    options: &FitOptions,
) -> Result<(Vec<f64>, f64, u64), String> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(options.gradient_tolerance)
        // Near the optimum the cost changes by less than its rounding noise;
        // stop there rather than let the line search chase the noise.
        .and_then(|s| s.with_tolerance_cost(1e-14))
        .map_err(|e| e.to_string())?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(start).max_iters(options.max_iterations))
        .run()
        .map_err(|e| e.to_string())?;
    let state = result.state();
    let u = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| "L-BFGS returned no parameters".to_string())?;
    Ok((u, state.get_best_cost(), state.get_iter()))
}

fn nelder_mead<O: Objective>(
    problem: &Cached<'_, O>,
    start: &[f64],
    options: &FitOptions,
) -> Result<(Vec<f64>, f64, u64), String> {
    let mut simplex = vec![start.to_vec()];
    for k in 0..start.len() {
        let mut vertex = start.to_vec();
        vertex[k] += 0.5;
        simplex.push(vertex);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-12)
        .map_err(|e| e.to_string())?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.max_iters(options.max_iterations * 4))
        .run()
        .map_err(|e| e.to_string())?;
    let state = result.state();
    let u = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| "Nelder-Mead returned no parameters".to_string())?;
    Ok((u, state.get_best_cost(), state.get_iter()))
}

/// Converged: a finite cost and a small gradient. L-BFGS can also stop on
/// the iteration limit or a stalled line search, which this catches.
fn converged<O: Objective>(problem: &Cached<'_, O>, u: &[f64], options: &FitOptions) -> bool {
    let mut gradient = vec![0.0; u.len()];
    let cost = problem.objective.evaluate(u, &mut gradient);
    cost.is_finite() && norm(&gradient) <= options.accept_gradient
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// A compensated (Neumaier) running sum: a million terms add up to within
/// a few ulps instead of ~1e−13 relative, which keeps the line search's
/// comparisons of nearby costs meaningful.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn get(self) -> f64 {
        self.sum + self.compensation
    }
}

/// Where the objective was evaluated, the cost and the gradient there.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// The objective as argmin sees it: cost and gradient from one evaluation.
struct Cached<'o, O> {
    objective: &'o O,
    last: Mutex<Option<Evaluation>>,
    count: AtomicU64,
}

impl<'o, O: Objective> Cached<'o, O> {
    fn new(objective: &'o O) -> Self {
        Cached {
            objective,
            last: Mutex::new(None),
            count: AtomicU64::new(0),
        }
    }

    fn evaluations(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn get(&self, u: &[f64]) -> (f64, Vec<f64>) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some((at, cost, gradient)) = last.as_ref()
            && at.as_slice() == u
        {
            return (*cost, gradient.clone());
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut gradient = vec![0.0; u.len()];
        let cost = self.objective.evaluate(u, &mut gradient);
        // NaN would poison the optimisers' comparisons: treat it as "too far".
        let cost = if cost.is_nan() { f64::INFINITY } else { cost };
        *last = Some((u.to_vec(), cost, gradient.clone()));
        (cost, gradient)
    }
}

impl<O: Objective> CostFunction for &Cached<'_, O> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, u: &Self::Param) -> Result<f64, ArgminError> {
        Ok(self.get(u).0)
    }
}

impl<O: Objective> Gradient for &Cached<'_, O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, u: &Self::Param) -> Result<Vec<f64>, ArgminError> {
        let (cost, gradient) = self.get(u);
        if !cost.is_finite() || gradient.iter().any(|g| !g.is_finite()) {
            return Err(ArgminError::msg("non-finite likelihood"));
        }
        Ok(gradient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock's banana in two dimensions, minimum 0 at (1, 1).
    struct Banana;

    impl Objective for Banana {
        fn evaluate(&self, u: &[f64], gradient: &mut [f64]) -> f64 {
            let (x, y) = (u[0], u[1]);
            gradient[0] = -2.0 * (1.0 - x) - 400.0 * x * (y - x * x);
            gradient[1] = 200.0 * (y - x * x);
            (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
        }
    }

    #[test]
    fn sum_compensates_rounding() {
        let mut sum = Sum::default();
        let mut naive = 0.0;
        for _ in 0..1_000_000 {
            sum.add(0.1);
            naive += 0.1;
        }
        assert_eq!(sum.get(), 100_000.0);
        assert_ne!(naive, 100_000.0);
        let mut sum = Sum::default();
        for x in [1e100, 1.0, -1e100] {
            sum.add(x);
        }
        assert_eq!(sum.get(), 1.0);
    }

    #[test]
    fn minimize_finds_the_banana_minimum() {
        let optimum = minimize(&Banana, &[-1.2, 1.0], 1e12, &FitOptions::default()).unwrap();
        assert!((optimum.u[0] - 1.0).abs() < 1e-6, "{optimum:?}");
        assert!((optimum.u[1] - 1.0).abs() < 1e-6, "{optimum:?}");
        assert!(optimum.cost < 1e-12);
    }

    /// Infinite (not merely large) outside a disc: L-BFGS's line search
    /// trips on it from a far start, and the fallback must still get there.
    struct Walled;

    impl Objective for Walled {
        fn evaluate(&self, u: &[f64], gradient: &mut [f64]) -> f64 {
            let (x, y) = (u[0] - 0.3, u[1] + 0.2);
            if u[0] * u[0] + u[1] * u[1] > 4.0 {
                return f64::INFINITY;
            }
            gradient[0] = 2.0 * x;
            gradient[1] = 2.0 * y;
            x * x + y * y
        }
    }

    #[test]
    fn minimize_survives_infinite_costs() {
        let optimum = minimize(&Walled, &[1.9, 0.0], 1e12, &FitOptions::default()).unwrap();
        assert!((optimum.u[0] - 0.3).abs() < 1e-6, "{optimum:?}");
        assert!((optimum.u[1] + 0.2).abs() < 1e-6, "{optimum:?}");
    }
}
