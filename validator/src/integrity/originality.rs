//! The originality check's entry point and verdict.

use serde::{Deserialize, Serialize};

use super::signals::{Design, aligned};
use super::{IntegrityError, OriginalityConfig, OriginalityMode, PublicSignals};
use super::{beyond_public, raw_rule};

/// The outcome of an originality check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum OriginalityVerdict<Id> {
    /// Not a copy of any earlier version compared.
    Original {
        /// The earlier version it agrees with most and the statistic (`beyond_public`: the
        /// significance `z`; `raw`: the absolute Pearson correlation); `None` when no earlier
        /// version could be compared.
        strongest: Option<(Id, f64)>,
        /// How many earlier versions were compared (public-signal-only versions and those
        /// sharing too few events are not).
        compared: usize,
    },
    /// Its predictions are explained by the public signals alone (`beyond_public` only): it
    /// takes nothing from another miner that the market and the benchmarks do not already
    /// give everyone, so it is compared with no one and is not a copy.
    PublicSignalOnly {
        /// Root mean square of its residual beyond the public signals, in probability.
        residual_rms: f64,
        /// The configured `public_tolerance` it fell below.
        tolerance: f64,
    },
    /// A copy of an earlier version: not activated (or, on live events, stops earning
    /// weight).
    Copy {
        /// The earlier version it matched.
        matched: Id,
        /// The statistic that decided (`beyond_public`: `z`; `raw`: `|r|` or the KS `D`).
        statistic: f64,
        /// The limit the statistic crossed.
        threshold: f64,
        /// A sentence for the miner.
        detail: String,
    },
    /// Too few of its runs gave a prediction to judge it.
    TooFewPredictions {
        /// Events with a prediction.
        predictions: usize,
        /// The configured `min_events`.
        required: usize,
    },
}

impl<Id> OriginalityVerdict<Id> {
    /// Whether the verdict is [`OriginalityVerdict::Copy`].
    #[must_use]
    pub fn is_copy(&self) -> bool {
        matches!(self, Self::Copy { .. })
    }

    /// The earlier version matched, for a copy.
    #[must_use]
    pub fn matched(&self) -> Option<&Id> {
        match self {
            Self::Copy { matched, .. } => Some(matched),
            _ => None,
        }
    }
}

/// Checks whether `candidate` copies one of `earlier`: the other miners' versions uploaded
/// before it, oldest first (the caller filters; the first uploader keeps its place). All
/// vectors are aligned with `signals`' events; `None` is a failed run.
///
/// A failed run (or a non-finite prediction) leaves the event out of the comparisons of that
/// version: scoring imputes 0.5 for it, but an imputed value says nothing about what the
/// agent would have predicted, and counting it would let a copier dilute the agreement by
/// failing on purpose. Predictions are clipped to [0.01, 0.99] as scoring clips them.
///
/// Without outcomes, two agents that both forecast well agree partly because both are right:
/// on the labelled set (`tests/originality.rs`) this flags honest agents with good private
/// signals as copies of one another (50 of 560 such pairs on the probe set). Where the events
/// have resolved (the probe set, a live window of resolved events), use
/// [`check_originality_resolved`].
///
/// # Errors
///
/// [`IntegrityError::InvalidConfig`] for a configuration out of range,
/// [`IntegrityError::LengthMismatch`] for a vector not aligned with the signals.
pub fn check_originality<Id: Clone>(
    candidate: &[Option<f64>],
    earlier: &[(Id, Vec<Option<f64>>)],
    signals: &PublicSignals,
    config: &OriginalityConfig,
) -> Result<OriginalityVerdict<Id>, IntegrityError> {
    check_originality_resolved(candidate, earlier, signals, &[], config)
}

/// [`check_originality`] over events with known outcomes (`outcomes` aligned with
/// `signals`, `None` for an event not resolved; empty when none is). The outcome is not a
/// signal an agent could have had, but two agents that both forecast well agree because
/// both are right, not because one copied the other: explaining it away with the public
/// signals keeps the best honest agents apart.
///
/// # Errors
///
/// [`IntegrityError::InvalidConfig`] for a configuration out of range,
/// [`IntegrityError::LengthMismatch`] for a vector not aligned with the signals.
pub fn check_originality_resolved<Id: Clone>(
    candidate: &[Option<f64>],
    earlier: &[(Id, Vec<Option<f64>>)],
    signals: &PublicSignals,
    outcomes: &[Option<bool>],
    config: &OriginalityConfig,
) -> Result<OriginalityVerdict<Id>, IntegrityError> {
    config.validate()?;
    signals.validate()?;
    let events = signals.len();
    if !outcomes.is_empty() {
        aligned("the outcomes", events, outcomes.len())?;
    }
    aligned("the candidate's predictions", events, candidate.len())?;
    for (index, (_, predictions)) in earlier.iter().enumerate() {
        aligned(
            &format!("earlier version {index}'s predictions"),
            events,
            predictions.len(),
        )?;
    }
    let predictions = candidate
        .iter()
        .filter(|p| p.is_some_and(f64::is_finite))
        .count();
    if predictions < config.min_events {
        return Ok(OriginalityVerdict::TooFewPredictions {
            predictions,
            required: config.min_events,
        });
    }
    Ok(match config.mode {
        OriginalityMode::Raw => raw_rule::check(candidate, earlier, config),
        OriginalityMode::BeyondPublic => {
            beyond_public::check(candidate, earlier, &Design::new(signals, outcomes), config)
        }
    })
}
