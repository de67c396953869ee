//! What everyone can see about the compared events, and the design matrix built from it: the
//! public signals that an agent's predictions are explained by before two agents are
//! compared.

use super::IntegrityError;

/// What everyone can see per event, aligned by index with the prediction vectors: the market
/// probability and the benchmark agents' published predictions.
///
/// Where the events have resolved, their outcomes go beside these (see
/// [`super::check_originality_resolved`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublicSignals {
    /// The market probability per event (`None` where the event has none).
    pub market: Vec<Option<f64>>,
    /// One vector per benchmark agent (SPEC, "Benchmark agents"), each aligned with
    /// `market`: that agent's prediction per event, `None` where its run failed.
    pub benchmarks: Vec<Vec<Option<f64>>>,
}

impl PublicSignals {
    /// How many events the signals describe.
    #[must_use]
    pub fn len(&self) -> usize {
        self.market.len()
    }

    /// Whether there is no event at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.market.is_empty()
    }

    /// Checks that every vector is aligned with `market`.
    ///
    /// # Errors
    ///
    /// [`IntegrityError::LengthMismatch`] naming the first vector of another length.
    pub fn validate(&self) -> Result<(), IntegrityError> {
        let expected = self.len();
        for (j, benchmark) in self.benchmarks.iter().enumerate() {
            aligned(&format!("benchmark {j}"), expected, benchmark.len())?;
        }
        Ok(())
    }
}

/// Checks that a vector called `what` has `expected` entries.
pub(crate) fn aligned(what: &str, expected: usize, actual: usize) -> Result<(), IntegrityError> {
    if expected == actual {
        Ok(())
    } else {
        Err(IntegrityError::LengthMismatch {
            what: what.to_owned(),
            expected,
            actual,
        })
    }
}

/// Knots, in log-odds of the market, of the natural cubic spline that lets the explained
/// part bend (extremizing, shrinking, calibration curves).
const KNOTS: [f64; 5] = [-6.9, -3.5, 0.0, 3.5, 6.9];
/// Market probabilities are kept this far from 0 and 1 before taking log-odds.
const MARKET_CLIP: f64 = 0.001;

/// The design built from [`PublicSignals`]: the regressors, the weight of each event and
/// each event's outcome class.
#[derive(Debug, Clone)]
pub(crate) struct Design {
    /// Regressor columns, each one value per event.
    pub(crate) columns: Vec<Vec<f64>>,
    /// `p (1 - p)` of the public consensus `p` per event (market, else the benchmarks' mean,
    /// else 0.5; kept within the scoring clip): how much room an event leaves for agreement
    /// that can be told from noise.
    pub(crate) weight: Vec<f64>,
    /// 0 for no, 1 for yes, 2 for an unknown outcome.
    pub(crate) outcome_class: Vec<u8>,
}

impl Design {
    /// The design of `signals` and `outcomes` (validated and aligned, or `outcomes` empty
    /// when none is known).
    pub(crate) fn new(signals: &PublicSignals, outcomes: &[Option<bool>]) -> Self {
        let n = signals.len();
        let market: Vec<Option<f64>> = signals.market.iter().map(|m| finite_unit(*m)).collect();
        let mut columns = vec![vec![1.0; n]];

        let absent = |v: &Option<f64>| if v.is_some() { 0.0 } else { 1.0 };
        let level: Vec<Option<f64>> = market
            .iter()
            .map(|m| m.map(|m| m.clamp(MARKET_CLIP, 1.0 - MARKET_CLIP)))
            .collect();
        let log_odds: Vec<f64> = level.iter().map(|m| m.map_or(0.0, logit)).collect();
        columns.push(level.iter().map(|m| m.unwrap_or(0.0)).collect());
        columns.push(market.iter().map(absent).collect());
        columns.push(log_odds.clone());
        columns.extend(natural_spline(&log_odds, &KNOTS).into_iter().map(|mut c| {
            for (value, m) in c.iter_mut().zip(&level) {
                if m.is_none() {
                    *value = 0.0;
                }
            }
            c
        }));

        let benchmarks: Vec<Vec<Option<f64>>> = signals
            .benchmarks
            .iter()
            .map(|b| b.iter().map(|p| finite_unit(*p).map(clip)).collect())
            .collect();
        for benchmark in &benchmarks {
            columns.push(benchmark.iter().map(|p| p.unwrap_or(0.0)).collect());
            columns.push(benchmark.iter().map(|p| p.map_or(0.0, logit)).collect());
            columns.push(benchmark.iter().map(absent).collect());
        }

        let consensus: Vec<f64> = (0..n)
            .map(|i| {
                market[i]
                    .or_else(|| mean(benchmarks.iter().filter_map(|b| b[i])))
                    .unwrap_or(0.5)
            })
            .collect();
        let outcome_class: Vec<u8> = (0..n)
            .map(|i| match outcomes.get(i).copied().flatten() {
                Some(false) => 0,
                Some(true) => 1,
                None => 2,
            })
            .collect();
        if outcome_class.iter().any(|&c| c != 2) {
            let yes: Vec<f64> = outcome_class.iter().map(|&c| f64::from(c == 1)).collect();
            let spread: Vec<f64> = (0..n)
                .map(|i| {
                    let p = level[i]
                        .unwrap_or_else(|| consensus[i].clamp(MARKET_CLIP, 1.0 - MARKET_CLIP));
                    yes[i] * p * (1.0 - p)
                })
                .collect();
            columns.push(yes);
            columns.push(spread);
            columns.push(outcome_class.iter().map(|&c| f64::from(c == 2)).collect());
        }

        let weight = consensus
            .iter()
            .map(|&p| {
                let p = clip(p);
                p * (1.0 - p)
            })
            .collect();
        Self {
            columns,
            weight,
            outcome_class,
        }
    }
}

/// A prediction as scoring sees it: clipped to [0.01, 0.99] (SPEC, "clip").
pub(crate) fn clip(p: f64) -> f64 {
    p.clamp(crate::scoring::CLIP_LOW, crate::scoring::CLIP_HIGH)
}

/// A probability kept if finite, clipped to [0, 1].
fn finite_unit(p: Option<f64>) -> Option<f64> {
    p.filter(|p| p.is_finite()).map(|p| p.clamp(0.0, 1.0))
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0_u32), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / f64::from(count))
}

/// Log-odds of a probability strictly inside (0, 1).
pub(crate) fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// The logistic function, inverse of [`logit`].
pub(crate) fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The natural cubic spline basis of `x` with `knots` (Hastie, Tibshirani and Friedman,
/// "The Elements of Statistical Learning", eq. 5.4-5.5), without its constant and linear
/// terms: `knots.len() - 2` columns.
fn natural_spline(x: &[f64], knots: &[f64]) -> Vec<Vec<f64>> {
    let k = knots.len();
    let last = knots[k - 1];
    let d = |j: usize, v: f64| {
        ((v - knots[j]).max(0.0).powi(3) - (v - last).max(0.0).powi(3)) / (last - knots[j])
    };
    (0..k.saturating_sub(2))
        .map(|j| x.iter().map(|&v| d(j, v) - d(k - 2, v)).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_signals_are_refused() {
        let signals = PublicSignals {
            market: vec![Some(0.5); 3],
            benchmarks: vec![vec![Some(0.5); 2]],
        };
        assert!(matches!(
            signals.validate(),
            Err(IntegrityError::LengthMismatch {
                expected: 3,
                actual: 2,
                ..
            })
        ));
    }

    #[test]
    fn the_spline_matches_the_textbook_basis() {
        // Computed with numpy from ESL eq. 5.5 for knots [-6.9, -3.5, 0, 3.5, 6.9] at x = 1.2:
        // d_k(x) = ((x - k_k)+^3 - (x - k_K)+^3) / (k_K - k_k), N_{k+2} = d_k - d_{K-1}.
        let columns = natural_spline(&[1.2], &KNOTS);
        let expected = [
            38.510_217_391_304_34,
            9.982_980_769_230_77,
            0.250_434_782_608_695_6,
        ];
        assert_eq!(columns.len(), 3);
        for (c, e) in columns.iter().zip(expected) {
            assert!((c[0] - e).abs() < 1e-9, "{} vs {e}", c[0]);
        }
    }

    #[test]
    fn absent_markets_fall_back_on_the_benchmarks_for_the_weight() {
        let signals = PublicSignals {
            market: vec![None, Some(0.2)],
            benchmarks: vec![vec![Some(0.3), None], vec![Some(0.5), Some(0.9)]],
        };
        let design = Design::new(&signals, &[]);
        assert!((design.weight[0] - 0.4 * 0.6).abs() < 1e-12);
        assert!((design.weight[1] - 0.2 * 0.8).abs() < 1e-12);
        assert_eq!(design.outcome_class, vec![2, 2]);
    }
}
