//! The default originality rule: agreement of two versions beyond the public signals, as a
//! significance.
//!
//! For a pair, over the events both have a prediction for, the weighted correlation `r` of
//! their standardized residuals ([`super::residuals`]) is taken, each event weighted by
//! `p (1 - p)` of the public consensus (near-certain events leave no room for agreement that
//! could be told from a copier's noise). Its Fisher transform times the square root of the
//! degrees of freedom left, `z = atanh(r) sqrt(n_eff - 3 - k n_eff / n)` (`n_eff` the weights'
//! effective size, `k` the public regressors, `n` the events), is a standard normal for two
//! independent agents and grows like `sqrt(n)` for a copy.

use super::pearson::{effective_size, fisher_z, weighted_pearson};
use super::residuals::{Profile, Residualizer};
use super::signals::Design;
use super::{OriginalityConfig, OriginalityVerdict};

/// Two predictions closer than this are the same prediction.
const SAME: f64 = 1e-12;

/// One pair's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PairStatistic {
    /// The significance `z`.
    pub(crate) z: f64,
    /// Events compared.
    pub(crate) events: usize,
    /// Whether the two versions predicted the same on every compared event.
    pub(crate) identical: bool,
}

/// Runs the rule for a candidate whose predictions and signals are already validated.
pub(crate) fn check<Id: Clone>(
    candidate: &[Option<f64>],
    earlier: &[(Id, Vec<Option<f64>>)],
    design: &Design,
    config: &OriginalityConfig,
) -> OriginalityVerdict<Id> {
    let mut residualizer = Residualizer::new(design, config.local_window);
    let own = residualizer.profile(candidate);
    if own.residual_rms < config.public_tolerance {
        return OriginalityVerdict::PublicSignalOnly {
            residual_rms: own.residual_rms,
            tolerance: config.public_tolerance,
        };
    }
    let threshold = config.threshold();
    let mut strongest: Option<(usize, PairStatistic)> = None;
    let mut compared = 0;
    for (index, (_, predictions)) in earlier.iter().enumerate() {
        let other = residualizer.profile(predictions);
        if other.count < config.min_events || other.residual_rms < config.public_tolerance {
            continue;
        }
        let Some(statistic) = compare(&own, &other, design, config.min_events) else {
            continue;
        };
        compared += 1;
        if strongest.is_none_or(|(_, best)| statistic.z > best.z) {
            strongest = Some((index, statistic));
        }
    }
    match strongest {
        Some((index, statistic)) if statistic.z >= threshold => OriginalityVerdict::Copy {
            matched: earlier[index].0.clone(),
            statistic: statistic.z,
            threshold,
            detail: describe(&statistic, threshold),
        },
        _ => OriginalityVerdict::Original {
            strongest: strongest.map(|(index, s)| (earlier[index].0.clone(), s.z)),
            compared,
        },
    }
}

/// The statistic of one pair of profiles over the events both have; `None` when they share
/// fewer than `min_events` events.
pub(crate) fn compare(
    a: &Profile,
    b: &Profile,
    design: &Design,
    min_events: usize,
) -> Option<PairStatistic> {
    let n = a.valid.len();
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    let mut w = Vec::with_capacity(n);
    let mut identical = true;
    for i in 0..n {
        if a.valid[i] && b.valid[i] {
            x.push(a.standardized[i]);
            y.push(b.standardized[i]);
            w.push(design.weight[i]);
            identical &= (a.clipped[i] - b.clipped[i]).abs() <= SAME;
        }
    }
    let events = x.len();
    if events < min_events {
        return None;
    }
    let r = weighted_pearson(&x, &y, &w).unwrap_or(0.0);
    let n_eff = effective_size(&w);
    let k = a.rank.max(b.rank) as f64;
    let dof = (n_eff - 3.0 - k * n_eff / events as f64).max(1.0);
    Some(PairStatistic {
        z: fisher_z(r) * dof.sqrt(),
        events,
        identical,
    })
}

fn describe(statistic: &PairStatistic, threshold: f64) -> String {
    if statistic.identical {
        format!(
            "its predictions are identical to the matched version's on all {} events compared",
            statistic.events
        )
    } else {
        format!(
            "its predictions agree with the matched version's beyond what the market, the \
             benchmark agents and the outcomes explain: significance z = {:.1} over {} events \
             (the limit is {threshold:.2}; two independent agents stay near 0)",
            statistic.z, statistic.events
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::PublicSignals;
    use crate::integrity::signals::{logistic, logit};

    /// splitmix64 of (i, s) as a number in [0, 1): the same in any language.
    fn u(i: u64, s: u64) -> f64 {
        let mut z = i
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(s.wrapping_mul(0xBF58_476D_1CE4_E5B9))
            .wrapping_add(1);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1_u64 << 53) as f64
    }

    #[test]
    fn the_statistic_matches_an_independent_numpy_computation() {
        // The same inputs through an independent numpy implementation of the rule (least
        // squares by numpy.linalg.lstsq, weighted correlation by numpy.cov with aweights,
        // local standardization by numpy.lexsort windows) give: residual RMS of A 0.026759193,
        // B 0.028783659, C 0.037082645, the market 6e-15; z(A, B) = 11.6508148558401 and
        // z(A, C) = 0.1174893461222736 (A fails on event 7, B on event 13).
        let n = 60;
        let m: Vec<f64> = (0..n).map(|i| logistic(6.0 * (u(i, 1) - 0.5))).collect();
        let o: Vec<bool> = (0..n).map(|i| u(i, 2) < m[i as usize]).collect();
        let llm: Vec<f64> = (0..n).map(|i| 0.01 + 0.98 * u(i, 3)).collect();
        let a: Vec<f64> = (0..n)
            .map(|i| {
                let k = i as usize;
                let yes = if o[k] { 0.5 } else { -0.5 };
                logistic(logit(m[k]) + 1.5 * yes + 1.2 * (u(i, 4) - 0.5))
            })
            .collect();
        let b: Vec<f64> = (0..n)
            .map(|i| a[i as usize] + 0.02 * (u(i, 5) - 0.5))
            .collect();
        let c: Vec<f64> = (0..n)
            .map(|i| logistic(logit(m[i as usize]) + (u(i, 6) - 0.5)))
            .collect();
        let signals = PublicSignals {
            market: m.iter().map(|v| Some(*v)).collect(),
            benchmarks: vec![
                m.iter().map(|v| Some(*v)).collect(),
                llm.iter().map(|v| Some(*v)).collect(),
            ],
        };
        let outcomes: Vec<Option<bool>> = o.iter().map(|v| Some(*v)).collect();
        let design = Design::new(&signals, &outcomes);
        let mut residualizer = Residualizer::new(&design, 6);
        let mut with_gap = |values: &[f64], gap: usize| {
            let predictions: Vec<Option<f64>> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i != gap).then_some(*v))
                .collect();
            residualizer.profile(&predictions)
        };
        let pa = with_gap(&a, 7);
        let pb = with_gap(&b, 13);
        let pc = with_gap(&c, usize::MAX);
        let pm = with_gap(&m, usize::MAX);
        assert!((pa.residual_rms - 0.026_759_193_083_479_55).abs() < 1e-9);
        assert!((pb.residual_rms - 0.028_783_659_353_765_63).abs() < 1e-9);
        assert!((pc.residual_rms - 0.037_082_645_473_973_32).abs() < 1e-9);
        assert!(pm.residual_rms < 1e-9);
        assert_eq!(pa.rank, 10);
        let ab = compare(&pa, &pb, &design, 30).unwrap();
        assert_eq!(ab.events, 58);
        assert!(!ab.identical);
        assert!((ab.z - 11.650_814_855_840_1).abs() < 1e-6, "{ab:?}");
        let ac = compare(&pa, &pc, &design, 30).unwrap();
        assert!((ac.z - 0.117_489_346_122_273_6).abs() < 1e-6, "{ac:?}");
        assert_eq!(compare(&pa, &pc, &design, 60), None);
    }
}
