//! Concordance (SPEC, "Integrity checks"): does a version predict on the probe events as it
//! does on live events?
//!
//! Probe and live events together are clustered by their features with k-means
//! ([`super::kmeans`], `k = 5`, fixed seed). The features, each standardized (z-score over
//! all the events; a constant feature drops out):
//!
//! - the market probability, with absence encoded by a separate 0/1 feature and the
//!   probability itself set to 0.5 (so events without a market group together instead of
//!   posing as 50 % markets);
//! - days to the cutoff;
//! - the kind, one-hot (one 0/1 feature per kind present, in sorted order): kinds have no
//!   order;
//! - the text length, as `ln(1 + characters)`.
//!
//! In each cluster holding both probe and live events, the two-sample KS statistic `D_c`
//! compares the version's probe predictions with its live predictions, and its p-value `p_c`
//! comes from the Kolmogorov distribution for the two sizes (with Stephens' small-sample
//! correction, [`super::ks_p_value`]). The clusters' evidence is combined by Fisher's method:
//! `X = -2 sum ln p_c` is chi-squared with `2 C` degrees of freedom for `C` clusters when the
//! version behaves alike on both sides, and the version is **flagged when `X` exceeds that
//! distribution's upper quantile at the configured significance** (0.001): it behaves
//! differently when it is checked than when it is paid.
//!
//! Why not SPEC's literal "mean statistic above the critical value": the probe set and the
//! live window differ in make-up, so clusters are unbalanced (on the shared questions, 93
//! probe and 75 live events in one cluster, 16 and 3 in another). A cluster of 16 and 3 has a
//! critical value above 1, which no `D` can reach, and averaging it in hid an agent that
//! answered the opposite of the market on probe events (`D = 0.85` against a critical value of
//! 0.30 in the large cluster; `tests/concordance.rs`). Fisher's method weighs each cluster by
//! the evidence it can carry. The mean `D` and each cluster's critical value
//! (`c(alpha) sqrt((n + m) / (n m))`, `c(alpha) = sqrt(-ln(alpha / 2) / 2)`) are still
//! reported.
//!
//! A failed run counts as the 0.5 that scoring imputes (an agent that fails on purpose on
//! probe events behaves differently), and predictions are clipped to [0.01, 0.99] as scoring
//! clips them.

use serde::{Deserialize, Serialize};

use super::IntegrityError;
use super::kmeans::kmeans;
use super::ks::{ks_critical_value, ks_p_value, ks_statistic};
use super::normal::{chi_squared_upper_quantile, chi_squared_upper_tail};
use super::signals::clip;

/// What the clustering knows about an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFeatures {
    /// The market probability, where the event has one.
    pub market_probability: Option<f64>,
    /// Days from the event's creation to its cutoff.
    pub days_to_cutoff: f64,
    /// The event's kind (category or source).
    pub kind: String,
    /// Characters of the event's title and description.
    pub text_length: usize,
}

/// Settings of the concordance check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcordanceConfig {
    /// Clusters (SPEC: 5).
    pub clusters: usize,
    /// The k-means seed (SPEC: fixed).
    pub seed: u64,
    /// Significance of the KS critical values (SPEC default 0.001).
    pub significance: f64,
    /// k-means++ seedings tried; the tightest clustering is kept.
    pub restarts: usize,
    /// Lloyd iterations at most per seeding.
    pub max_iterations: usize,
}

impl Default for ConcordanceConfig {
    fn default() -> Self {
        Self {
            clusters: 5,
            seed: 0x5007_4C0E,
            significance: 0.001,
            restarts: 4,
            max_iterations: 100,
        }
    }
}

impl ConcordanceConfig {
    /// Checks every value's range.
    ///
    /// # Errors
    ///
    /// [`IntegrityError::InvalidConfig`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), IntegrityError> {
        if self.clusters == 0 {
            return Err(IntegrityError::InvalidConfig(
                "clusters must be at least 1".into(),
            ));
        }
        if !(self.significance > 0.0 && self.significance < 1.0) {
            return Err(IntegrityError::InvalidConfig(
                "significance must be in (0, 1)".into(),
            ));
        }
        Ok(())
    }
}

/// One cluster's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConcordance {
    /// Probe events in the cluster.
    pub probe_events: usize,
    /// Live events in the cluster.
    pub live_events: usize,
    /// KS statistic between the probe and live predictions (`None` unless both are present).
    pub statistic: Option<f64>,
    /// Its critical value at the configured significance (`None` unless both are present).
    pub critical_value: Option<f64>,
    /// Its p-value (`None` unless both are present).
    pub p_value: Option<f64>,
}

/// The outcome of a concordance check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcordanceVerdict {
    /// Whether the version behaves differently on probe and live events:
    /// `combined_statistic > critical_value`.
    pub flagged: bool,
    /// Mean KS statistic `D` over the clusters holding both kinds of events (0 when none
    /// does): SPEC's figure, reported.
    pub mean_statistic: f64,
    /// Fisher's `X = -2 sum ln p_c` over those clusters.
    pub combined_statistic: f64,
    /// The chi-squared upper quantile that `X` must exceed (0 when no cluster compares).
    pub critical_value: f64,
    /// The combined p-value (1 when no cluster compares).
    pub p_value: f64,
    /// Per cluster figures, in the clustering's order.
    pub clusters: Vec<ClusterConcordance>,
    /// A sentence for the miner.
    pub detail: String,
}

/// Checks whether a version's predictions on `probe` events (with their features) are
/// distributed as its predictions on `live` events, cluster by cluster.
///
/// # Errors
///
/// [`IntegrityError::InvalidConfig`] for a configuration out of range,
/// [`IntegrityError::Empty`] when there are no probe or no live events.
pub fn check_concordance(
    probe: &[(EventFeatures, Option<f64>)],
    live: &[(EventFeatures, Option<f64>)],
    config: &ConcordanceConfig,
) -> Result<ConcordanceVerdict, IntegrityError> {
    config.validate()?;
    if probe.is_empty() || live.is_empty() {
        return Err(IntegrityError::Empty(format!(
            "{} probe and {} live events",
            probe.len(),
            live.len()
        )));
    }
    let all: Vec<&(EventFeatures, Option<f64>)> = probe.iter().chain(live).collect();
    let points = feature_matrix(all.iter().map(|(f, _)| f));
    let clustering = kmeans(
        &points,
        config.clusters,
        config.seed,
        config.restarts,
        config.max_iterations,
    );
    let k = clustering.centroids.len();
    let mut probe_values = vec![Vec::new(); k];
    let mut live_values = vec![Vec::new(); k];
    for (index, ((_, prediction), &label)) in all.iter().zip(&clustering.labels).enumerate() {
        let value = clip(
            prediction
                .filter(|p| p.is_finite())
                .unwrap_or(crate::scoring::IMPUTED_PREDICTION),
        );
        if index < probe.len() {
            probe_values[label].push(value);
        } else {
            live_values[label].push(value);
        }
    }
    let mut clusters = Vec::with_capacity(k);
    let (mut sum_d, mut log_p, mut compared) = (0.0, 0.0, 0_u32);
    for (p, l) in probe_values.iter().zip(&live_values) {
        let statistic = ks_statistic(p, l);
        let p_value = statistic.and_then(|d| ks_p_value(d, p.len(), l.len()));
        if let (Some(d), Some((_, ln))) = (statistic, p_value) {
            sum_d += d;
            log_p += ln;
            compared += 1;
        }
        clusters.push(ClusterConcordance {
            probe_events: p.len(),
            live_events: l.len(),
            statistic,
            critical_value: ks_critical_value(p.len(), l.len(), config.significance),
            p_value: p_value.map(|(p, _)| p),
        });
    }
    if compared == 0 {
        return Ok(ConcordanceVerdict {
            flagged: false,
            mean_statistic: 0.0,
            combined_statistic: 0.0,
            critical_value: 0.0,
            p_value: 1.0,
            clusters,
            detail: "no cluster holds both probe and live events: nothing to compare".to_owned(),
        });
    }
    let mean_statistic = sum_d / f64::from(compared);
    let combined_statistic = -2.0 * log_p;
    let degrees = 2 * compared;
    let critical_value = chi_squared_upper_quantile(config.significance, degrees);
    let p_value = chi_squared_upper_tail(combined_statistic, degrees);
    let flagged = combined_statistic > critical_value;
    let detail = if flagged {
        format!(
            "its predictions on probe events are distributed unlike those on similar live \
             events: combined p-value {p_value:.1e} over {compared} clusters of events, below \
             the significance {} (mean KS statistic {mean_statistic:.3})",
            config.significance
        )
    } else {
        format!(
            "its probe and live predictions agree: combined p-value {p_value:.3} over \
             {compared} clusters of events (mean KS statistic {mean_statistic:.3})"
        )
    };
    Ok(ConcordanceVerdict {
        flagged,
        mean_statistic,
        combined_statistic,
        critical_value,
        p_value,
        clusters,
        detail,
    })
}

/// The standardized feature rows of the events.
fn feature_matrix<'a>(features: impl Iterator<Item = &'a EventFeatures>) -> Vec<Vec<f64>> {
    let features: Vec<&EventFeatures> = features.collect();
    let mut kinds: Vec<&str> = features.iter().map(|f| f.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut rows: Vec<Vec<f64>> = features
        .iter()
        .map(|f| {
            let market = f.market_probability.filter(|p| p.is_finite());
            let mut row = vec![
                market.map_or(0.5, |p| p.clamp(0.0, 1.0)),
                f64::from(market.is_none()),
                if f.days_to_cutoff.is_finite() {
                    f.days_to_cutoff
                } else {
                    0.0
                },
                (1.0 + f.text_length as f64).ln(),
            ];
            row.extend(kinds.iter().map(|k| f64::from(*k == f.kind)));
            row
        })
        .collect();
    standardize(&mut rows);
    rows
}

/// Z-scores each column; a column without spread becomes 0.
fn standardize(rows: &mut [Vec<f64>]) {
    let Some(dim) = rows.first().map(Vec::len) else {
        return;
    };
    let n = rows.len() as f64;
    for j in 0..dim {
        let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        for r in rows.iter_mut() {
            r[j] = if sd > 1e-12 { (r[j] - mean) / sd } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> EventFeatures {
        EventFeatures {
            market_probability: (!i.is_multiple_of(4)).then(|| (i % 10) as f64 / 10.0),
            days_to_cutoff: (i % 3) as f64 + 1.0,
            kind: if i.is_multiple_of(2) {
                "binary"
            } else {
                "sports"
            }
            .to_owned(),
            text_length: 100 + 37 * (i % 5),
        }
    }

    #[test]
    fn the_same_behaviour_passes_and_another_answer_on_probe_is_flagged() {
        let forecast = |i: usize| Some(0.05 + 0.9 * ((i * 7919) % 101) as f64 / 101.0);
        let probe: Vec<_> = (0..120).map(|i| (event(i), forecast(i))).collect();
        let live: Vec<_> = (1000..1100).map(|i| (event(i), forecast(i))).collect();
        let config = ConcordanceConfig::default();
        let honest = check_concordance(&probe, &live, &config).unwrap();
        assert!(!honest.flagged, "{honest:?}");
        let constant: Vec<_> = probe.iter().map(|(f, _)| (f.clone(), Some(0.5))).collect();
        let dishonest = check_concordance(&constant, &live, &config).unwrap();
        assert!(dishonest.flagged, "{dishonest:?}");
        assert!(dishonest.combined_statistic > dishonest.critical_value);
        assert!(dishonest.p_value < 0.001);
    }

    #[test]
    fn empty_sides_and_bad_settings_are_errors() {
        let one = vec![(event(1), Some(0.3))];
        let config = ConcordanceConfig::default();
        assert!(matches!(
            check_concordance(&[], &one, &config),
            Err(IntegrityError::Empty(_))
        ));
        let bad = ConcordanceConfig {
            significance: 1.5,
            ..config
        };
        assert!(matches!(
            check_concordance(&one, &one, &bad),
            Err(IntegrityError::InvalidConfig(_))
        ));
    }

    #[test]
    fn features_are_standardized_and_kinds_one_hot() {
        let rows = feature_matrix([event(0), event(1), event(2), event(3)].iter());
        assert_eq!(rows.len(), 4);
        // market, absent, days, text, binary, sports
        assert_eq!(rows[0].len(), 6);
        for j in 0..6 {
            let mean: f64 = rows.iter().map(|r| r[j]).sum::<f64>() / 4.0;
            assert!(mean.abs() < 1e-12);
        }
        assert!(rows[0][4] > 0.0 && rows[1][4] < 0.0);
    }
}
