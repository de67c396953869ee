//! Scores per event and the weights history (`validator_scores`,
//! `validator_weights_history`).
//!
//! Owns what scoring produced: every miner's Brier score on each resolved event, and every
//! weights computation (rank, mean Brier, weight per miner). It writes both in one transaction
//! so that a crash never leaves scores without the weights computed from them. It computes
//! nothing: the scores and standings come computed by `scoring`. It must not touch
//! events, runs or miners.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::BindOptionalF64;
use super::events::event_no;
use super::runs::miner_indexes;
use super::{Store, StoreError, flag_from, from_ms, to_ms, uid_from};
use crate::scoring::{LeaderboardRow, Miner, ScoredEvent};

/// One miner's score on one event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventScore {
    /// The miner.
    pub hotkey: String,
    /// Its Brier score on the event, after clipping or imputation.
    pub brier: f64,
    /// Whether the score is of the imputed 0.5.
    pub imputed: bool,
}

/// One miner's line of a weights computation.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightRow {
    /// When the weights were computed.
    pub computed_at: DateTime<Utc>,
    /// The miner.
    pub hotkey: String,
    /// Its uid now (the uid it held last, if it has since been deregistered).
    pub uid: u16,
    /// Its rank then (1 is best).
    pub rank: usize,
    /// Its weight then.
    pub weight: f64,
    /// Its mean Brier then; `None` before any event resolved.
    pub mean_brier: Option<f64>,
    /// Events in the window then.
    pub events_counted: usize,
    /// Of which imputed.
    pub imputed_count: usize,
}

impl Store {
    /// Records, in one transaction, the scores of `scored_events` (each miner's score as
    /// [`ScoredEvent::of`] computes it, indexed like `miners`) and the weights computation
    /// `standings` at `computed_at`. Scores written
    /// before for the same (event, miner) are replaced (rescoring the same data gives the same
    /// rows), and so is a computation recorded before at the same instant: after a restart the
    /// daemon may recompute the same batch.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidScores`] for an event whose score count is not the number of
    /// miners, or a standings row with a rank of 0, a weight outside [0, 1] or a mean that is
    /// not finite (checked before anything is written); [`StoreError::UnknownEvent`] /
    /// [`StoreError::UnknownMiner`] for an event or miner the store does not know;
    /// [`StoreError::Database`]. Nothing is written on error.
    pub async fn record_scores_and_weights(
        &self,
        miners: &[Miner],
        scored_events: &[ScoredEvent],
        standings: &[LeaderboardRow],
        computed_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        validate_scores(miners, scored_events, standings)?;
        let mut transaction = self.begin_write().await?;
        let miner_index = miner_indexes(&mut transaction, miners).await?;
        let mut miner_numbers = vec![None; miners.len()];
        for (&number, &index) in &miner_index {
            miner_numbers[index] = Some(number);
        }
        let miner_number = |index: usize| {
            miner_numbers[index].ok_or_else(|| StoreError::UnknownMiner {
                hotkey: miners[index].hotkey.clone(),
            })
        };

        for event in scored_events {
            let event_no = event_no(&mut transaction, &event.event_id).await?;
            for (index, score) in event.scores.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO validator_scores (event_no, miner_no, brier, imputed) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (event_no, miner_no) \
                     DO UPDATE SET brier = excluded.brier, imputed = excluded.imputed",
                )
                .bind(event_no)
                .bind(miner_number(index)?)
                .bind(score.brier)
                .bind(i64::from(score.imputed))
                .execute(&mut *transaction)
                .await?;
            }
        }

        // A recomputation at the same instant replaces that instant's rows entirely.
        sqlx::query("DELETE FROM validator_weights_history WHERE computed_at_ms = $1")
            .bind(to_ms(computed_at))
            .execute(&mut *transaction)
            .await?;
        for row in standings {
            let miner_no: i64 =
                sqlx::query_scalar("SELECT miner_no FROM validator_miners WHERE hotkey = $1")
                    .bind(&row.miner.hotkey)
                    .fetch_optional(&mut *transaction)
                    .await?
                    .ok_or_else(|| StoreError::UnknownMiner {
                        hotkey: row.miner.hotkey.clone(),
                    })?;
            sqlx::query(
                "INSERT INTO validator_weights_history \
                     (computed_at_ms, miner_no, rank, weight, mean_brier, events_counted, \
                      imputed_count) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(to_ms(computed_at))
            .bind(miner_no)
            .bind(count_to_i64(row.rank)?)
            .bind(row.weight)
            .bind_optional_f64(row.mean_brier)
            .bind(count_to_i64(row.events_counted)?)
            .bind(count_to_i64(row.imputed_count)?)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Every recorded score on `event_id`, by miner uid then hotkey.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn event_scores(&self, event_id: &str) -> Result<Vec<EventScore>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.hotkey, s.brier, CAST(s.imputed AS INTEGER) AS imputed \
               FROM validator_scores s \
               JOIN validator_events e USING (event_no) \
               JOIN validator_miners m ON m.miner_no = s.miner_no \
              WHERE e.id = $1 \
              ORDER BY m.uid, m.hotkey",
        )
        .bind(event_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventScore {
                    hotkey: row.try_get("hotkey")?,
                    brier: row.try_get("brier")?,
                    imputed: flag_from(row.try_get("imputed")?, "imputed")?,
                })
            })
            .collect()
    }

    /// How many weights computations are in the history.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn weights_history_len(&self) -> Result<usize, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT computed_at_ms) FROM validator_weights_history",
        )
        .fetch_one(&self.reader)
        .await?;
        usize::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("weights history count {count}")))
    }

    /// The most recent weights computation, by rank; empty if none was recorded.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn latest_weights(&self) -> Result<Vec<WeightRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.computed_at_ms, m.hotkey, m.uid, w.rank, w.weight, w.mean_brier, \
                    w.events_counted, w.imputed_count \
               FROM validator_weights_history w \
               JOIN validator_miners m USING (miner_no) \
              WHERE w.computed_at_ms = (SELECT MAX(computed_at_ms) FROM validator_weights_history) \
              ORDER BY w.rank",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WeightRow {
                    computed_at: from_ms(row.try_get("computed_at_ms")?, "computed_at_ms")?,
                    hotkey: row.try_get("hotkey")?,
                    uid: uid_from(row.try_get("uid")?)?,
                    rank: count_from_i64(row.try_get("rank")?)?,
                    weight: row.try_get("weight")?,
                    mean_brier: row.try_get("mean_brier")?,
                    events_counted: count_from_i64(row.try_get("events_counted")?)?,
                    imputed_count: count_from_i64(row.try_get("imputed_count")?)?,
                })
            })
            .collect()
    }
}

fn validate_scores(
    miners: &[Miner],
    scored_events: &[ScoredEvent],
    standings: &[LeaderboardRow],
) -> Result<(), StoreError> {
    if let Some(event) = scored_events
        .iter()
        .find(|event| event.scores.len() != miners.len())
    {
        return Err(StoreError::InvalidScores(format!(
            "event {:?} has {} scores for {} miners",
            event.event_id,
            event.scores.len(),
            miners.len()
        )));
    }
    for row in standings {
        let problem = if row.rank == 0 {
            Some("rank 0 (ranks start at 1)".to_owned())
        } else if !(0.0..=1.0).contains(&row.weight) {
            Some(format!("weight {}", row.weight))
        } else if row.mean_brier.is_some_and(|mean| !mean.is_finite()) {
            Some(format!("mean Brier {:?}", row.mean_brier))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(StoreError::InvalidScores(format!(
                "miner {:?}: {problem}",
                row.miner.hotkey
            )));
        }
    }
    Ok(())
}

fn count_to_i64(count: usize) -> Result<i64, StoreError> {
    i64::try_from(count).map_err(|_| StoreError::InvalidScores(format!("count {count} too large")))
}

fn count_from_i64(value: i64) -> Result<usize, StoreError> {
    usize::try_from(value).map_err(|_| StoreError::Corrupt(format!("count {value} is negative")))
}

/// How often a miner's day beat always saying 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Consistency {
    /// Days on which some of its scored events resolved.
    pub days: u32,
    /// Of which days its mean Brier was below 0.25.
    pub days_beating_half: u32,
}

impl Consistency {
    /// The share of its days that beat 0.25; `None` before any.
    #[must_use]
    pub fn share(&self) -> Option<f64> {
        (self.days > 0).then(|| f64::from(self.days_beating_half) / f64::from(self.days))
    }
}

impl Store {
    /// Every scored miner's consistency (SPEC: "the share of days on which the miner's mean
    /// Brier beat 0.25"), days being UTC days of resolution, from the daily sums the store
    /// keeps as scores are written.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn consistency(
        &self,
    ) -> Result<std::collections::HashMap<String, Consistency>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.hotkey, count(*) AS days, \
                    sum(CASE WHEN d.brier_sum < 0.25 * d.events THEN 1 ELSE 0 END) AS beating \
               FROM validator_daily_scores d JOIN validator_miners m USING (miner_no) \
              GROUP BY m.hotkey",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let days: i64 = row.try_get("days")?;
                let beating: i64 = row.try_get("beating")?;
                Ok((
                    row.try_get("hotkey")?,
                    Consistency {
                        days: u32::try_from(days).unwrap_or(u32::MAX),
                        days_beating_half: u32::try_from(beating).unwrap_or(u32::MAX),
                    },
                ))
            })
            .collect()
    }
}
