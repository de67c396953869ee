//! Brier-101 scoring and winner-take-all weights.
//!
//! This module owns the competition's scoring rules (SPEC, "The competition's rules"):
//! turning raw predictions into scored ones (imputation and clipping), the Brier score per
//! event, the scoring window (the last 101 resolved events, ordered by resolution instant
//! then event id), each miner's mean over that window, the leaderboard order and the
//! winner-take-all weights.
//!
//! Everything here is pure: no clock, no storage. The daemon loads resolved events and the
//! current miners, calls [`leaderboard`], and persists the rows.
//!
//! Layout for speed: each [`ResolvedEvent`] carries one prediction slot per miner, indexed like
//! the `miners` slice. Rescoring is then one sort of the events plus a dense pass over at most
//! 101 prediction vectors; there is no per-event map or allocation.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Lowest prediction that is scored. SPEC: "every prediction is clipped to [0.01, 0.99]
/// before scoring".
pub const CLIP_LOW: f64 = 0.01;

/// Highest prediction that is scored (see [`CLIP_LOW`]).
pub const CLIP_HIGH: f64 = 0.99;

/// The prediction a miner is given when it has no valid one. SPEC, "failure": "timeout, trap,
/// invalid output, crash or no run at all: imputed prediction 0.5". It lies inside the clip
/// range, so clipping leaves it at 0.5 (Brier 0.25 whatever the outcome).
pub const IMPUTED_PREDICTION: f64 = 0.5;

/// How many resolved events a miner's score averages over. SPEC, "miner score": "mean Brier
/// over the last 101 resolved events".
pub const SCORING_WINDOW: usize = 101;

/// How an event resolved (SPEC, "score per event": "outcome 0 or 1"): the event model's
/// outcome, the one type for it in every part of the validator.
pub use crate::event::Outcome;

/// A registered miner, as scoring and registration see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Miner {
    /// Slot number; reused when a miner is deregistered and another takes its slot.
    pub uid: u16,
    /// The miner's key; unique among registered miners.
    pub hotkey: String,
    /// When the miner registered; earlier wins ties (SPEC, "weights").
    pub registered_at: DateTime<Utc>,
}

/// A resolved event with every current miner's prediction for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedEvent {
    /// The event's id; second key of the window order.
    pub id: String,
    /// When the event was created (its runs used the versions active then).
    pub created_at: DateTime<Utc>,
    /// When the event resolved; first key of the window order.
    pub resolved_at: DateTime<Utc>,
    /// How it resolved.
    pub outcome: Outcome,
    /// One entry per miner, indexed like the `miners` slice given to [`leaderboard`].
    /// `None` means no valid prediction (failure, timeout, no active version, not yet
    /// registered): it is imputed 0.5, never stored as a fake prediction.
    pub predictions: Vec<Option<f64>>,
}

/// A prediction ready to score: imputed if missing or invalid, clipped otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPrediction {
    /// The value the Brier score uses, within [`CLIP_LOW`, `CLIP_HIGH`].
    pub value: f64,
    /// Whether the value is the imputed 0.5 rather than the miner's own.
    pub imputed: bool,
}

/// One miner's score on one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The Brier score of its scored prediction (clipped, or the imputed 0.5).
    pub brier: f64,
    /// Whether the score is of the imputed 0.5.
    pub imputed: bool,
}

impl Score {
    /// The score of raw prediction `raw` on an event that resolved to `outcome`.
    #[must_use]
    pub fn of(raw: Option<f64>, outcome: Outcome) -> Self {
        let prediction = scored_prediction(raw);
        Self {
            brier: brier_score(prediction.value, outcome),
            imputed: prediction.imputed,
        }
    }
}

/// Every miner's score on one resolved event: what the scores history keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredEvent {
    /// The event.
    pub event_id: String,
    /// One score per miner, indexed like the event's predictions (so, like the `miners` slice).
    pub scores: Vec<Score>,
}

impl ScoredEvent {
    /// Scores every miner's prediction on `event`, after imputation and clipping.
    #[must_use]
    pub fn of(event: &ResolvedEvent) -> Self {
        Self {
            event_id: event.id.clone(),
            scores: event
                .predictions
                .iter()
                .map(|&raw| Score::of(raw, event.outcome))
                .collect(),
        }
    }
}

/// One miner's scores summed over a run of events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreTotal {
    /// The sum of its Brier scores.
    pub brier_sum: f64,
    /// How many of them were of the imputed 0.5.
    pub imputed: usize,
}

/// Every miner's [`ScoreTotal`] over `events`, indexed like their predictions (each event must
/// hold `miners` of them). The sums are accumulated in the order of `events`, so identical
/// predictions give bit-identical sums.
pub fn score_totals<'a>(
    miners: usize,
    events: impl IntoIterator<Item = &'a ResolvedEvent>,
) -> Vec<ScoreTotal> {
    let mut totals = vec![ScoreTotal::default(); miners];
    for event in events {
        for (total, &raw) in totals.iter_mut().zip(&event.predictions) {
            let score = Score::of(raw, event.outcome);
            total.brier_sum += score.brier;
            total.imputed += usize::from(score.imputed);
        }
    }
    totals
}

/// One leaderboard row per miner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardRow {
    /// 1-based position, unique: ties are already broken (see [`leaderboard`]).
    pub rank: usize,
    /// The miner.
    pub miner: Miner,
    /// Mean Brier over the scoring window; `None` only when no event has resolved yet.
    pub mean_brier: Option<f64>,
    /// Events in the window (the same for every miner: at most [`SCORING_WINDOW`]).
    pub events_counted: usize,
    /// Events of the window for which this miner was imputed 0.5.
    pub imputed_count: usize,
    /// Share of the weight: 1.0 for the winner, 0.0 for everyone else.
    pub weight: f64,
}

/// Why scoring input was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScoringError {
    /// An event's prediction vector does not have one entry per miner.
    #[error("event {event_id} has {found} predictions, expected one per miner ({expected})")]
    PredictionCountMismatch {
        /// The event.
        event_id: String,
        /// Number of miners.
        expected: usize,
        /// Number of predictions on the event.
        found: usize,
    },
    /// Two events share an id.
    #[error("event id {event_id} appears more than once")]
    DuplicateEvent {
        /// The repeated id.
        event_id: String,
    },
    /// An event resolved before it was created.
    #[error("event {event_id} resolved at {resolved_at} before its creation at {created_at}")]
    ResolvedBeforeCreated {
        /// The event.
        event_id: String,
        /// Its creation instant.
        created_at: DateTime<Utc>,
        /// Its resolution instant.
        resolved_at: DateTime<Utc>,
    },
    /// Two miners share a uid.
    #[error("miner uid {uid} appears more than once")]
    DuplicateUid {
        /// The repeated uid.
        uid: u16,
    },
    /// Two miners share a hotkey.
    #[error("miner hotkey {hotkey} appears more than once")]
    DuplicateHotkey {
        /// The repeated hotkey.
        hotkey: String,
    },
}

/// Turns a raw prediction into the value that is scored.
///
/// SPEC: a missing prediction, or an invalid one ("a NaN or infinite prediction is invalid"),
/// is imputed 0.5; a finite one is clipped to [0.01, 0.99] ("a finite one outside [0, 1] is
/// clipped", then "every prediction is clipped to [0.01, 0.99] before scoring": the two
/// clips compose into one).
#[must_use]
pub fn scored_prediction(raw: Option<f64>) -> ScoredPrediction {
    match raw {
        Some(value) if value.is_finite() => ScoredPrediction {
            value: value.clamp(CLIP_LOW, CLIP_HIGH),
            imputed: false,
        },
        // None, NaN and infinities all mean "no valid prediction".
        _ => ScoredPrediction {
            value: IMPUTED_PREDICTION,
            imputed: true,
        },
    }
}

/// The Brier score `(prediction - outcome)^2` of an already scored prediction; lower is better.
#[must_use]
pub fn brier_score(prediction: f64, outcome: Outcome) -> f64 {
    let error = prediction - outcome.as_f64();
    error * error
}

/// The scoring window: the last `size` events (the SPEC's [`SCORING_WINDOW`] unless the
/// validator's configuration changes it) in the order (resolution instant, event id), oldest
/// first. The input order does not matter.
///
/// The window is the same for every miner (SPEC: "events before its registration included"),
/// which is why it is chosen over all resolved events and not per miner.
///
/// # Errors
///
/// [`ScoringError::DuplicateEvent`] if two events share an id (the order would not be total)
/// and [`ScoringError::ResolvedBeforeCreated`] for an event that resolved before it existed.
pub fn scoring_window(
    events: &[ResolvedEvent],
    size: usize,
) -> Result<Vec<&ResolvedEvent>, ScoringError> {
    let mut seen_ids = HashSet::with_capacity(events.len());
    for event in events {
        if event.resolved_at < event.created_at {
            return Err(ScoringError::ResolvedBeforeCreated {
                event_id: event.id.clone(),
                created_at: event.created_at,
                resolved_at: event.resolved_at,
            });
        }
        if !seen_ids.insert(event.id.as_str()) {
            return Err(ScoringError::DuplicateEvent {
                event_id: event.id.clone(),
            });
        }
    }

    let mut ordered: Vec<&ResolvedEvent> = events.iter().collect();
    ordered.sort_unstable_by(|a, b| {
        a.resolved_at
            .cmp(&b.resolved_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let first_kept = ordered.len().saturating_sub(size);
    ordered.drain(..first_kept);
    Ok(ordered)
}

/// Scores every miner and returns the leaderboard, best first, with winner-take-all weights.
///
/// - Each miner's score is its mean Brier over the [`scoring_window`], with 0.5 imputed for
///   every event it has no valid prediction for, including events resolved before it
///   registered (SPEC, "miner score"). With fewer than 101 resolved events the window holds
///   all of them; SPEC sets no minimum number of events.
/// - Order: lower mean first; a miner without a mean (only possible before any event
///   resolved) comes last; ties go to the earlier registration (SPEC, "weights"), then to the
///   lower uid and the hotkey so that the order is always total. Ties are exact equality of
///   the means; identical predictions give bit-identical sums because every miner's sum is
///   accumulated in the same window order.
/// - Weights: see [`assign_winner_take_all`]; here every miner may earn weight.
///
/// No miners gives an empty leaderboard; SPEC defines no burn or owner fallback.
///
/// # Errors
///
/// Any [`ScoringError`]: duplicate uids or hotkeys, duplicate event
/// ids, an event resolved before its creation, or an event whose prediction vector does not
/// have exactly one entry per miner.
pub fn leaderboard(
    miners: &[Miner],
    events: &[ResolvedEvent],
) -> Result<Vec<LeaderboardRow>, ScoringError> {
    leaderboard_over(miners, events, SCORING_WINDOW)
}

/// As [`leaderboard`], over the last `window` resolved events instead of the SPEC's 101.
///
/// # Errors
///
/// As [`leaderboard`].
pub fn leaderboard_over(
    miners: &[Miner],
    events: &[ResolvedEvent],
    window: usize,
) -> Result<Vec<LeaderboardRow>, ScoringError> {
    check_unique_miners(miners)?;
    // Checked on every event, not only the window: a mismatch anywhere is a caller bug.
    if let Some(event) = events.iter().find(|e| e.predictions.len() != miners.len()) {
        return Err(ScoringError::PredictionCountMismatch {
            event_id: event.id.clone(),
            expected: miners.len(),
            found: event.predictions.len(),
        });
    }
    let window = scoring_window(events, window)?;

    let totals = score_totals(miners.len(), window.iter().copied());
    let events_counted = window.len();
    let mut rows: Vec<LeaderboardRow> = miners
        .iter()
        .zip(&totals)
        .map(|(miner, total)| LeaderboardRow {
            rank: 0,
            miner: miner.clone(),
            // usize -> f64 is exact for any window size (at most 101).
            mean_brier: (events_counted > 0).then(|| total.brier_sum / events_counted as f64),
            events_counted,
            imputed_count: total.imputed,
            weight: 0.0,
        })
        .collect();
    rows.sort_by(compare_standing);
    for (position, row) in rows.iter_mut().enumerate() {
        row.rank = position + 1;
    }
    assign_winner_take_all(&mut rows, |_| true);
    Ok(rows)
}

/// Gives weight 1.0 to the best-ranked miner that has a mean and `earns_weight`, and 0.0 to
/// everyone else. SPEC, "weights": "the miner with the lowest mean Brier gets all the weight".
///
/// `earns_weight` lets the daemon pass over a miner that must not be paid, e.g. one whose agent
/// was found not original on live events (SPEC, "Originality": it "stops earning weight");
/// the weight then goes to the next miner in rank order. If nobody qualifies (no miners, or no
/// event resolved yet) every weight is 0.0 and the caller should not set weights.
///
/// Rows are taken in `rank` order whatever their order in the slice.
pub fn assign_winner_take_all(rows: &mut [LeaderboardRow], earns_weight: impl Fn(&Miner) -> bool) {
    for row in rows.iter_mut() {
        row.weight = 0.0;
    }
    let winner = rows
        .iter_mut()
        .filter(|row| row.mean_brier.is_some() && earns_weight(&row.miner))
        .min_by_key(|row| row.rank);
    if let Some(winner) = winner {
        winner.weight = 1.0;
    }
}

/// Leaderboard order: lower mean first (no mean last), then earlier registration, lower uid,
/// hotkey.
fn compare_standing(a: &LeaderboardRow, b: &LeaderboardRow) -> Ordering {
    let by_mean = match (a.mean_brier, b.mean_brier) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_mean
        .then_with(|| a.miner.registered_at.cmp(&b.miner.registered_at))
        .then_with(|| a.miner.uid.cmp(&b.miner.uid))
        .then_with(|| a.miner.hotkey.cmp(&b.miner.hotkey))
}

fn check_unique_miners(miners: &[Miner]) -> Result<(), ScoringError> {
    let mut uids = HashSet::with_capacity(miners.len());
    let mut hotkeys = HashSet::with_capacity(miners.len());
    for miner in miners {
        if !uids.insert(miner.uid) {
            return Err(ScoringError::DuplicateUid { uid: miner.uid });
        }
        if !hotkeys.insert(miner.hotkey.as_str()) {
            return Err(ScoringError::DuplicateHotkey {
                hotkey: miner.hotkey.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
