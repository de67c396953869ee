//! The meta-model: per event, a pool of the miners' clipped forecasts.

use super::MetaError;

/// How the miners' forecasts on an event are pooled into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// The mean of the forecasts, each miner weighing the same.
    Linear,
    /// The logistic of the mean log-odds, each miner weighing the same: forecasts far from
    /// 0.5 pull harder than in the linear pool.
    LogOdds,
    /// The mean of the forecasts weighted by the miners' current weights.
    LinearWeighted,
    /// The logistic of the mean log-odds weighted by the miners' current weights.
    LogOddsWeighted,
}

impl Pool {
    /// Every pool, in the order they are shown.
    pub const ALL: [Self; 4] = [
        Self::Linear,
        Self::LogOdds,
        Self::LinearWeighted,
        Self::LogOddsWeighted,
    ];

    /// The pool the miners' contribution (MMC) is measured against: every miner weighing the
    /// same, so that the weight's winner is not its own meta-model.
    pub const CONTRIBUTION: Self = Self::Linear;

    /// Its name on the leaderboard and in downloads.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "meta:linear",
            Self::LogOdds => "meta:log-odds",
            Self::LinearWeighted => "meta:linear-weighted",
            Self::LogOddsWeighted => "meta:log-odds-weighted",
        }
    }

    /// Whether the miners' weights weigh their forecasts (otherwise each weighs the same).
    #[must_use]
    pub fn by_weight(self) -> bool {
        matches!(self, Self::LinearWeighted | Self::LogOddsWeighted)
    }

    /// The pool of `forecasts`, each `(probability, weight)`; the weight is ignored by the
    /// equally weighted pools. `None` when no forecast carries weight (no forecasts at all,
    /// or, weighted, none by a miner with weight).
    ///
    /// # Errors
    ///
    /// [`MetaError::NonFinite`] when a probability is not strictly between 0 and 1 (the
    /// forecasts pooled are clipped ones) or a weight is negative or not finite.
    pub fn of(self, forecasts: &[(f64, f64)]) -> Result<Option<f64>, MetaError> {
        let mut total_weight = 0.0;
        let mut sum = 0.0;
        for &(probability, weight) in forecasts {
            if !(probability > 0.0 && probability < 1.0) {
                return Err(MetaError::NonFinite("a forecast in (0, 1)"));
            }
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(MetaError::NonFinite("a miner's weight"));
            }
            let weight = if self.by_weight() { weight } else { 1.0 };
            if weight == 0.0 {
                continue;
            }
            let value = match self {
                Self::Linear | Self::LinearWeighted => probability,
                Self::LogOdds | Self::LogOddsWeighted => (probability / (1.0 - probability)).ln(),
            };
            total_weight += weight;
            sum += weight * value;
        }
        if total_weight <= 0.0 {
            return Ok(None);
        }
        let mean = sum / total_weight;
        Ok(Some(match self {
            Self::Linear | Self::LinearWeighted => mean,
            Self::LogOdds | Self::LogOddsWeighted => 1.0 / (1.0 + (-mean).exp()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed by hand (and with Python's math module):
    // logit(0.2) = -1.386294361, logit(0.9) = 2.197224577; their mean 0.405465108 is
    // logit(0.6), so the equal log-odds pool of 0.2 and 0.9 is 0.6 exactly.
    #[test]
    fn pools_match_reference_values() {
        let forecasts = [(0.2, 0.0), (0.9, 1.0)];
        let linear = Pool::Linear.of(&forecasts).unwrap().unwrap();
        assert!((linear - 0.55).abs() < 1e-12);
        let log_odds = Pool::LogOdds.of(&forecasts).unwrap().unwrap();
        assert!((log_odds - 0.6).abs() < 1e-12, "{log_odds}");
        // Only the miner with weight counts.
        assert_eq!(Pool::LinearWeighted.of(&forecasts).unwrap(), Some(0.9));
        let weighted = Pool::LogOddsWeighted.of(&forecasts).unwrap().unwrap();
        assert!((weighted - 0.9).abs() < 1e-12);
        // 0.25 * logit(0.2) + 0.75 * logit(0.9) = 1.301345 -> 0.786061 (Python).
        let mixed = Pool::LogOddsWeighted
            .of(&[(0.2, 1.0), (0.9, 3.0)])
            .unwrap()
            .unwrap();
        assert!((mixed - 0.786_061_23).abs() < 1e-8, "{mixed}");
    }

    #[test]
    fn no_weight_no_pool_and_bad_values_refused() {
        assert_eq!(Pool::Linear.of(&[]).unwrap(), None);
        assert_eq!(Pool::LinearWeighted.of(&[(0.3, 0.0)]).unwrap(), None);
        assert_eq!(Pool::Linear.of(&[(0.3, 0.0)]).unwrap(), Some(0.3));
        assert!(Pool::LogOdds.of(&[(1.0, 1.0)]).is_err());
        assert!(Pool::Linear.of(&[(f64::NAN, 1.0)]).is_err());
        assert!(Pool::LinearWeighted.of(&[(0.3, -1.0)]).is_err());
    }
}
