//! What an agent's predictions say beyond the public signals: each vector's residual after
//! the public fit, standardized by its local spread.
//!
//! Two fits explain a vector by the public signals: a linear one in probability (how linear
//! pools and shrinkage are built) and a linear one in log-odds, weighted by the consensus's
//! `(p (1 - p))^2` (how extremizing, log-odds pools and private signals added in log-odds are
//! built), mapped back to probability. The better of the two (smaller residual sum of
//! squares) gives the residual, in probability units, where a copier's added noise lives.
//!
//! Residual spread differs from event to event (an agent's log-odds signal moves a 50 % event
//! far more than a 2 % one) and two honest agents' spreads rise and fall together, which would
//! inflate any correlation between them. Each residual is therefore centred and scaled by the
//! mean and spread of its neighbours: the `window` events on either side in the order of the
//! vector's own fitted value, among events of the same outcome.

use std::collections::HashMap;

use super::linalg::OrthoBasis;
use super::signals::{Design, clip, logistic, logit};

/// Explains prediction vectors by the public signals; keeps the factorizations of each set of
/// events it has met.
#[derive(Debug)]
pub(crate) struct Residualizer<'d> {
    design: &'d Design,
    window: usize,
    /// The fits over every event (most vectors have a prediction for every event).
    full: Option<Fits>,
    /// The fits over other sets of events, for vectors missing too many.
    fits: HashMap<Vec<bool>, Fits>,
}

/// The two public fits over one set of events.
#[derive(Debug)]
struct Fits {
    probability: OrthoBasis,
    log_odds: OrthoBasis,
}

/// One vector as the comparison sees it.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// Whether the vector has a prediction for each event.
    pub(crate) valid: Vec<bool>,
    /// The prediction clipped as scoring clips it (0 where absent).
    pub(crate) clipped: Vec<f64>,
    /// The standardized residual (0 where absent).
    pub(crate) standardized: Vec<f64>,
    /// Root mean square of the residual in probability units over the valid events.
    pub(crate) residual_rms: f64,
    /// How many events have a prediction.
    pub(crate) count: usize,
    /// How many independent public regressors the fit used.
    pub(crate) rank: usize,
}

impl<'d> Residualizer<'d> {
    /// A residualizer for `design`, standardizing over `window` neighbours on either side.
    pub(crate) fn new(design: &'d Design, window: usize) -> Self {
        Self {
            design,
            window,
            full: None,
            fits: HashMap::new(),
        }
    }

    /// The profile of `predictions` (aligned with the design's events; non-finite values
    /// count as absent).
    pub(crate) fn profile(&mut self, predictions: &[Option<f64>]) -> Profile {
        let n = predictions.len();
        let valid: Vec<bool> = predictions
            .iter()
            .map(|p| p.is_some_and(f64::is_finite))
            .collect();
        let clipped: Vec<f64> = predictions
            .iter()
            .map(|p| p.filter(|p| p.is_finite()).map_or(0.0, clip))
            .collect();
        let rows: Vec<usize> = (0..n).filter(|&i| valid[i]).collect();
        let count = rows.len();
        let mut standardized = vec![0.0; n];
        if count == 0 {
            return Profile {
                valid,
                clipped,
                standardized,
                residual_rms: 0.0,
                count,
                rank: 0,
            };
        }
        let design = self.design;
        let log_y: Vec<f64> = rows.iter().map(|&i| logit(clipped[i])).collect();
        let scale: Vec<f64> = rows.iter().map(|&i| design.weight[i]).collect();
        let (linear, weighted, rank) = self.fit(&clipped, &log_y, &rows, &valid);

        let y: Vec<f64> = rows.iter().map(|&i| clipped[i]).collect();
        let curved: Vec<f64> = (0..count)
            .map(|j| y[j] - clip(logistic(log_y[j] - weighted[j] / scale[j])))
            .collect();
        let residual = if sum_squares(&linear) <= sum_squares(&curved) {
            linear
        } else {
            curved
        };
        let residual_rms = (sum_squares(&residual) / count as f64).sqrt();

        let fitted: Vec<f64> = y.iter().zip(&residual).map(|(y, r)| y - r).collect();
        let classes: Vec<u8> = rows.iter().map(|&i| design.outcome_class[i]).collect();
        for (j, z) in local_standardize(&residual, &fitted, &classes, self.window)
            .into_iter()
            .enumerate()
        {
            standardized[rows[j]] = z;
        }
        Profile {
            valid,
            clipped,
            standardized,
            residual_rms,
            count,
            rank,
        }
    }

    /// The residuals, over `rows`, of the linear fit of `clipped` and of the weighted fit of
    /// `log_y` (itself over `rows`, and returned weighted), with the fits' rank. Rows missing
    /// from a vector are dropped from the fits of all events by a low-rank correction; when
    /// that cannot be done (too many missing, or the design loses rank without them), the
    /// remaining rows are factorized anew, once per set of rows.
    fn fit(
        &mut self,
        clipped: &[f64],
        log_y: &[f64],
        rows: &[usize],
        valid: &[bool],
    ) -> (Vec<f64>, Vec<f64>, usize) {
        /// Beyond this many missing events a new factorization is cheaper.
        const MAX_CORRECTED: usize = 24;
        let design = self.design;
        let n = valid.len();
        let missing: Vec<usize> = (0..n).filter(|&i| !valid[i]).collect();
        if missing.len() <= MAX_CORRECTED {
            let full = self
                .full
                .get_or_insert_with(|| Fits::new(design, &vec![true; n]));
            let mut linear = clipped.to_vec();
            let mut weighted = vec![0.0; n];
            for (&i, l) in rows.iter().zip(log_y) {
                weighted[i] = l * design.weight[i];
            }
            if full.probability.project_out_without(&mut linear, &missing)
                && full.log_odds.project_out_without(&mut weighted, &missing)
            {
                let rank = full.probability.rank();
                let pick = |v: &[f64]| rows.iter().map(|&i| v[i]).collect::<Vec<f64>>();
                return (pick(&linear), pick(&weighted), rank);
            }
        }
        let fits = self
            .fits
            .entry(valid.to_vec())
            .or_insert_with(|| Fits::new(design, valid));
        let mut linear: Vec<f64> = rows.iter().map(|&i| clipped[i]).collect();
        fits.probability.project_out(&mut linear);
        let mut weighted: Vec<f64> = rows
            .iter()
            .zip(log_y)
            .map(|(&i, l)| l * design.weight[i])
            .collect();
        fits.log_odds.project_out(&mut weighted);
        (linear, weighted, fits.probability.rank())
    }
}

impl Fits {
    fn new(design: &Design, valid: &[bool]) -> Self {
        let rows: Vec<usize> = (0..valid.len()).filter(|&i| valid[i]).collect();
        let columns: Vec<Vec<f64>> = design
            .columns
            .iter()
            .map(|c| rows.iter().map(|&i| c[i]).collect())
            .collect();
        let scale: Vec<f64> = rows.iter().map(|&i| design.weight[i]).collect();
        Self {
            probability: OrthoBasis::new(&columns, rows.len(), None),
            log_odds: OrthoBasis::new(&columns, rows.len(), Some(&scale)),
        }
    }
}

fn sum_squares(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

/// Each residual minus the mean of its neighbours, divided by their standard deviation: the
/// neighbours are the `window` entries on either side in the order of (`class`, `fitted`),
/// within the same class. A spread below a thousandth of the mean spread is raised to it, so
/// that a stretch of identical residuals does not divide by zero.
fn local_standardize(residual: &[f64], fitted: &[f64], class: &[u8], window: usize) -> Vec<f64> {
    let n = residual.len();
    // Sort by (class, fitted, index): fitted as its IEEE total-order key.
    let mut keyed: Vec<(u8, i64, usize)> = (0..n)
        .map(|i| {
            let bits = fitted[i].to_bits() as i64;
            (class[i], bits ^ (((bits >> 63) as u64) >> 1) as i64, i)
        })
        .collect();
    keyed.sort_unstable();
    let order: Vec<usize> = keyed.into_iter().map(|(_, _, i)| i).collect();
    // Prefix sums over the sorted residuals.
    let mut sum = vec![0.0; n + 1];
    let mut sum2 = vec![0.0; n + 1];
    for (k, &i) in order.iter().enumerate() {
        sum[k + 1] = sum[k] + residual[i];
        sum2[k + 1] = sum2[k] + residual[i] * residual[i];
    }
    let mut mean = vec![0.0; n];
    let mut var = vec![0.0; n];
    let mut start = 0;
    while start < n {
        let group = class[order[start]];
        let mut end = start;
        while end < n && class[order[end]] == group {
            end += 1;
        }
        for k in start..end {
            let lo = k.saturating_sub(window).max(start);
            let hi = (k + window + 1).min(end);
            let m = (hi - lo) as f64;
            let mu = (sum[hi] - sum[lo]) / m;
            mean[k] = mu;
            var[k] = ((sum2[hi] - sum2[lo]) / m - mu * mu).max(0.0);
        }
        start = end;
    }
    let floor = 1e-3 * var.iter().sum::<f64>() / n as f64 + 1e-12;
    let mut out = vec![0.0; n];
    for (k, &i) in order.iter().enumerate() {
        out[i] = (residual[i] - mean[k]) / var[k].max(floor).sqrt();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_standardization_matches_a_direct_computation() {
        let residual = [0.3, -0.1, 0.2, 0.05, -0.4, 0.1, 0.0];
        let fitted = [0.5, 0.1, 0.3, 0.2, 0.9, 0.4, 0.6];
        let class = [0, 0, 1, 0, 0, 1, 0];
        let out = local_standardize(&residual, &fitted, &class, 1);
        // Class 0 sorted by fitted: indices 1 (0.1), 3 (0.2), 0 (0.5), 6 (0.6), 4 (0.9).
        // Index 0 sits between 3 and 6: window residuals [0.05, 0.3, 0.0].
        let w = [0.05, 0.3, 0.0];
        let mu = w.iter().sum::<f64>() / 3.0;
        let var = w.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / 3.0;
        assert!((out[0] - (0.3 - mu) / var.sqrt()).abs() < 1e-12);
        // Class 1 has two events, each window holding both.
        let mu = 0.15;
        let sd = 0.05;
        assert!((out[2] - (0.2 - mu) / sd).abs() < 1e-9);
        assert!((out[5] - (0.1 - mu) / sd).abs() < 1e-9);
    }
}
