//! The originality check's configuration (the `[integrity.originality]` table of a
//! validator's configuration, once wired).

use serde::{Deserialize, Serialize};

use super::IntegrityError;

/// Which rule decides whether an agent copies another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginalityMode {
    /// Agreement beyond what the public signals explain, judged by its significance (the
    /// default; see the module documentation of [`super`]).
    #[default]
    BeyondPublic,
    /// SPEC's rule on the raw predictions: Pearson correlation, then the KS statistic.
    Raw,
}

/// Thresholds of the originality check. Every field has a default, so an empty table is the
/// default configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginalityConfig {
    /// Which rule decides.
    pub mode: OriginalityMode,
    /// `beyond_public`: the chance of flagging an honest agent in one check, over all the
    /// versions it is compared with (family-wise error rate); default 1e-6.
    pub family_wise_error: f64,
    /// `beyond_public`: how many comparisons one check is corrected for (Bonferroni); default
    /// 256, the number of miner slots. With the defaults the statistic must reach
    /// `z = 5.77`.
    pub family_size: usize,
    /// `beyond_public`: a version whose residual beyond the public signals has a root mean
    /// square below this (in probability) is public-signal only; default 0.005.
    pub public_tolerance: f64,
    /// Fewer events with a prediction of both versions than this: the pair is not judged;
    /// default 30.
    pub min_events: usize,
    /// `beyond_public`: how many neighbours on either side set a residual's local mean and
    /// spread; default 6.
    pub local_window: usize,
    /// `raw`: an absolute Pearson correlation above this means not original; default 0.95.
    pub max_correlation: f64,
    /// `raw`: a KS statistic below this means identical (not original); default 0.005.
    pub identical_ks: f64,
    /// `raw`: a KS statistic at most this means similar; default 0.03.
    pub similar_ks: f64,
    /// `raw`: similar to at least this many earlier versions means not original; default 1.
    pub max_similar: usize,
}

impl Default for OriginalityConfig {
    fn default() -> Self {
        Self {
            mode: OriginalityMode::BeyondPublic,
            family_wise_error: 1e-6,
            family_size: 256,
            public_tolerance: 0.005,
            min_events: 30,
            local_window: 6,
            max_correlation: 0.95,
            identical_ks: 0.005,
            similar_ks: 0.03,
            max_similar: 1,
        }
    }
}

impl OriginalityConfig {
    /// The statistic a `beyond_public` comparison must reach to call a copy: the standard
    /// normal's upper `family_wise_error / family_size` quantile.
    #[must_use]
    pub fn threshold(&self) -> f64 {
        super::normal::upper_quantile(self.family_wise_error / self.family_size.max(1) as f64)
    }

    /// Checks every value's range.
    ///
    /// # Errors
    ///
    /// [`IntegrityError::InvalidConfig`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), IntegrityError> {
        let bad = |what: &str| Err(IntegrityError::InvalidConfig(what.to_owned()));
        if !(self.family_wise_error > 0.0 && self.family_wise_error < 1.0) {
            return bad("family_wise_error must be in (0, 1)");
        }
        if self.family_size == 0 {
            return bad("family_size must be at least 1");
        }
        if !(self.public_tolerance >= 0.0 && self.public_tolerance.is_finite()) {
            return bad("public_tolerance must be a finite number >= 0");
        }
        if self.min_events < 8 {
            return bad("min_events must be at least 8");
        }
        if self.local_window == 0 {
            return bad("local_window must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.max_correlation) {
            return bad("max_correlation must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.identical_ks) || !(0.0..=1.0).contains(&self.similar_ks) {
            return bad("identical_ks and similar_ks must be in [0, 1]");
        }
        if self.max_similar == 0 {
            return bad("max_similar must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_the_default_and_unknown_keys_are_refused() {
        let config: OriginalityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, OriginalityConfig::default());
        let raw: OriginalityConfig = serde_json::from_str(r#"{"mode": "raw"}"#).unwrap();
        assert_eq!(raw.mode, OriginalityMode::Raw);
        assert!(serde_json::from_str::<OriginalityConfig>(r#"{"max_corr": 0.9}"#).is_err());
        assert!((config.threshold() - 5.772_454_595_669_131_5).abs() < 1e-6);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let config = OriginalityConfig {
            family_wise_error: 0.0,
            ..OriginalityConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(IntegrityError::InvalidConfig(_))
        ));
        assert!(OriginalityConfig::default().validate().is_ok());
    }
}
