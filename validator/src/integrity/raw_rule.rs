//! SPEC's rule on the raw predictions (mode `raw`): not original if the absolute Pearson
//! correlation exceeds `max_correlation`; otherwise the two-sample KS statistic `D` decides:
//! below `identical_ks` means identical (not original), at most `similar_ks` counts as
//! similar, and being similar to at least `max_similar` earlier versions means not original.
//!
//! Predictions are compared as scoring sees them (clipped to [0.01, 0.99]), over the events
//! both versions have a prediction for. The matched version is the first, in the order the
//! caller lists them (oldest first), that decides the verdict.

use super::ks::ks_statistic;
use super::pearson::pearson;
use super::signals::clip;
use super::{OriginalityConfig, OriginalityVerdict};

/// Runs the raw rule for a candidate whose predictions are already validated.
pub(crate) fn check<Id: Clone>(
    candidate: &[Option<f64>],
    earlier: &[(Id, Vec<Option<f64>>)],
    config: &OriginalityConfig,
) -> OriginalityVerdict<Id> {
    let mut strongest: Option<(usize, f64)> = None;
    let mut similar: Vec<(usize, f64)> = Vec::new();
    let mut compared = 0;
    for (index, (_, predictions)) in earlier.iter().enumerate() {
        let (x, y): (Vec<f64>, Vec<f64>) = candidate
            .iter()
            .zip(predictions)
            .filter_map(|(a, b)| Some((clip(usable(*a)?), clip(usable(*b)?))))
            .unzip();
        if x.len() < config.min_events {
            continue;
        }
        compared += 1;
        let correlation = pearson(&x, &y).map_or(0.0, f64::abs);
        if strongest.is_none_or(|(_, best)| correlation > best) {
            strongest = Some((index, correlation));
        }
        if correlation > config.max_correlation {
            return copy(
                earlier,
                index,
                correlation,
                config.max_correlation,
                format!(
                    "the absolute Pearson correlation of its predictions with the matched \
                     version's is {correlation:.3}, above {} (over {} events)",
                    config.max_correlation,
                    x.len()
                ),
            );
        }
        let Some(d) = ks_statistic(&x, &y) else {
            continue;
        };
        if d < config.identical_ks {
            return copy(
                earlier,
                index,
                d,
                config.identical_ks,
                format!(
                    "its predictions are distributed like the matched version's: KS D = {d:.4}, \
                     below {} (identical)",
                    config.identical_ks
                ),
            );
        }
        if d <= config.similar_ks {
            similar.push((index, d));
        }
    }
    if similar.len() >= config.max_similar {
        let (index, d) = similar[0];
        return copy(
            earlier,
            index,
            d,
            config.similar_ks,
            format!(
                "its predictions are distributed like those of {} earlier versions (KS D at \
                 most {}; the first has D = {d:.4}); the limit is {}",
                similar.len(),
                config.similar_ks,
                config.max_similar
            ),
        );
    }
    OriginalityVerdict::Original {
        strongest: strongest.map(|(index, r)| (earlier[index].0.clone(), r)),
        compared,
    }
}

fn usable(p: Option<f64>) -> Option<f64> {
    p.filter(|p| p.is_finite())
}

fn copy<Id: Clone>(
    earlier: &[(Id, Vec<Option<f64>>)],
    index: usize,
    statistic: f64,
    threshold: f64,
    detail: String,
) -> OriginalityVerdict<Id> {
    OriginalityVerdict::Copy {
        matched: earlier[index].0.clone(),
        statistic,
        threshold,
        detail,
    }
}
