//! Read-only queries for the leaderboard's web pages (`crate::pages`): a miner's scored
//! history with the reference entries' scores on the same events, a miner's newest runs, and
//! the operator page's event counts and runs of a day.
//!
//! Owns nothing: every table here belongs to another file of the store, and this file only
//! reads them, through the read pool. Each query is answered from an index
//! (`migrations/sqlite/0009_validator_references.sql` adds the ones the pages need), and a
//! history of thousands of events is read packed into one text value, as
//! [`Store::last_resolved_events`] reads its predictions: decoding one row of text is many
//! times faster than decoding ten thousand rows through sqlx.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::miners::miner_no;
use super::queries::{MinerRun, miner_run_from_row};
use super::runs::run_from_row;
use super::{RunRecord, Store, StoreError, from_ms, from_optional_ms, outcome_from, to_ms};
use crate::scoring::{Outcome, Score};

/// A miner's scored history: its score on each resolved event it was scored on, and the
/// reference entries' scores on the same events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MinerHistory {
    /// The events, oldest first in the scoring order (resolution instant, then id).
    pub events: Vec<HistoryEvent>,
    /// The reference entries asked for, in the order asked, each with its Brier score on each
    /// of `events` (indexed like it).
    pub references: Vec<ReferenceScores>,
}

/// A miner's score on one resolved event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryEvent {
    /// When the event resolved.
    pub resolved_at: DateTime<Utc>,
    /// How it resolved.
    pub outcome: Outcome,
    /// The miner's Brier score on it, as recorded.
    pub brier: f64,
    /// Whether that score is of the imputed 0.5 (no run, or a run without a valid prediction).
    pub imputed: bool,
    /// The miner's scored (clipped) prediction; `None` when imputed.
    pub clipped_prediction: Option<f64>,
}

/// A reference entry's Brier scores on the events of a [`MinerHistory`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceScores {
    /// The entry's name.
    pub name: String,
    /// Its Brier score on each event, the imputed 0.5 scored where it has no valid forecast
    /// (as [`Store::reference_history`] scores it).
    pub briers: Vec<f64>,
}

/// The validator's events by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventCounts {
    /// Open events.
    pub open: u64,
    /// Resolved events.
    pub resolved: u64,
}

impl Store {
    /// `hotkey`'s scored history: its newest `limit` scores on resolved events (every event it
    /// was scored on, with or without a run), oldest first in the scoring order, and the Brier
    /// scores of the reference entries `references` on the same events. Read in one read
    /// transaction, so that the references' scores are of exactly these events.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`] if no miner ever had `hotkey`;
    /// [`StoreError::InvalidReference`] if no reference entry has one of `references`' names;
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn miner_history(
        &self,
        hotkey: &str,
        references: &[&str],
        limit: usize,
    ) -> Result<MinerHistory, StoreError> {
        let mut connection = self.begin_read().await?;
        let miner = miner_no(&mut connection, hotkey).await?;
        // The newest `limit` from the index by miner, then packed oldest first: the aggregate's
        // ORDER BY (SQLite 3.44) fixes the order of the packed values.
        let packed: Option<String> = sqlx::query_scalar(&self.sql(MINER_SCORES))
            .bind(miner)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_one(&mut *connection)
            .await?;
        // The miner's valid predictions come apart, from the index of its runs by finish that
        // holds them: joined per score, they would be 10,000 searches spread over the index of
        // every miner's runs.
        let predictions =
            packed_predictions(&mut connection, &self.sql(MINER_PREDICTIONS), miner).await?;
        let mut event_nos = Vec::new();
        let mut events = Vec::new();
        for item in packed.as_deref().unwrap_or_default().split(',') {
            if item.is_empty() {
                continue;
            }
            let (event_no, mut event) = history_event(item)?;
            // A valid prediction is what was scored; an imputed score has none to show.
            event.clipped_prediction = if event.imputed {
                None
            } else {
                predictions.get(&event_no).copied()
            };
            event_nos.push(event_no);
            events.push(event);
        }
        let mut scores = Vec::with_capacity(references.len());
        for name in references {
            let predictions =
                reference_predictions(&mut connection, &self.sql(REFERENCE_PREDICTIONS), name)
                    .await?;
            let briers = event_nos
                .iter()
                .zip(&events)
                .map(|(event_no, event)| {
                    Score::of(predictions.get(event_no).copied(), event.outcome).brier
                })
                .collect();
            scores.push(ReferenceScores {
                name: (*name).to_owned(),
                briers,
            });
        }
        // Only reads: ending the transaction either way leaves the file as it was.
        connection.commit().await?;
        Ok(MinerHistory {
            events,
            references: scores,
        })
    }

    /// `hotkey`'s newest `limit` runs, newest finish first (then newest event), each with its
    /// event's outcome and the miner's score on it when there are.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`] if no miner ever had `hotkey`; [`StoreError::Database`] or
    /// [`StoreError::Corrupt`].
    pub async fn miner_recent_runs(
        &self,
        hotkey: &str,
        limit: usize,
    ) -> Result<Vec<MinerRun>, StoreError> {
        let mut connection = self.begin_read().await?;
        let miner = miner_no(&mut connection, hotkey).await?;
        let rows = sqlx::query(RECENT_RUNS)
            .bind(miner)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *connection)
            .await?;
        connection.commit().await?;
        rows.iter().map(miner_run_from_row).collect()
    }

    /// How many events are open and how many resolved.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn event_counts(&self) -> Result<EventCounts, StoreError> {
        let mut connection = self.begin_read().await?;
        let open: i64 = sqlx::query_scalar(OPEN_EVENTS)
            .fetch_one(&mut *connection)
            .await?;
        let resolved: i64 = sqlx::query_scalar(RESOLVED_EVENTS)
            .fetch_one(&mut *connection)
            .await?;
        connection.commit().await?;
        let count = |n: i64| {
            u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("an event count of {n}")))
        };
        Ok(EventCounts {
            open: count(open)?,
            resolved: count(resolved)?,
        })
    }

    /// When the newest run finished; `None` without runs.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn newest_run_finish(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = sqlx::query_scalar(NEWEST_FINISH)
            .fetch_one(&self.reader)
            .await?;
        from_optional_ms(ms, "finished_at_ms")
    }

    /// Every run that finished after `after` and at or before `until`, oldest finish first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn runs_finished_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(RUNS_FINISHED)
            .bind(to_ms(after))
            .bind(to_ms(until))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(run_from_row).collect()
    }
}

/// A miner's newest scores, packed oldest first.
const MINER_SCORES: &str = "SELECT string_agg(packed, ',' ORDER BY resolved_at_ms, id) \
       FROM (SELECT e.resolved_at_ms, e.id, \
                    e.event_no || ' ' || e.resolved_at_ms || ' ' || e.outcome || ' ' || \
                    printf('%!.17g', s.brier) || ' ' || CAST(s.imputed AS INTEGER) AS packed \
               FROM validator_scores s \
               JOIN validator_events e ON e.event_no = s.event_no \
              WHERE s.miner_no = $1 AND e.status = 'resolved' \
              ORDER BY e.resolved_at_ms DESC, e.id DESC \
              LIMIT $2) AS newest";
/// A miner's valid predictions, packed.
const MINER_PREDICTIONS: &str = "SELECT string_agg(event_no || ' ' || \
                           printf('%!.17g', clipped_prediction), ',') \
       FROM validator_runs \
      WHERE miner_no = $1 AND clipped_prediction IS NOT NULL";
/// A reference entry's valid forecasts, packed.
const REFERENCE_PREDICTIONS: &str = "SELECT string_agg(event_no || ' ' || \
                           printf('%!.17g', clipped_prediction), ',') \
       FROM validator_reference_forecasts \
      WHERE entry_no = $1 AND clipped_prediction IS NOT NULL";
/// A miner's newest runs by finish.
const RECENT_RUNS: &str = "SELECT e.id AS event_id, e.outcome, m.hotkey, v.hash, r.status, \
            r.prediction, r.clipped_prediction, r.duration_ms, r.logs, r.gateway_usage, \
            r.cost_usd, r.finished_at_ms, s.brier, CAST(s.imputed AS INTEGER) AS imputed \
       FROM validator_runs r \
       JOIN validator_events e ON e.event_no = r.event_no \
       JOIN validator_miners m ON m.miner_no = r.miner_no \
       JOIN validator_agent_versions v ON v.version_no = r.version_no \
       LEFT JOIN validator_scores s \
              ON s.event_no = r.event_no AND s.miner_no = r.miner_no \
      WHERE r.miner_no = $1 \
      ORDER BY r.finished_at_ms DESC, e.created_at_ms DESC, e.id DESC \
      LIMIT $2";
/// The events by status, each from its partial index.
const OPEN_EVENTS: &str = "SELECT count(*) FROM validator_events WHERE status = 'open'";
const RESOLVED_EVENTS: &str = "SELECT count(*) FROM validator_events WHERE status = 'resolved'";
/// The newest finish, from one end of the index by finish.
const NEWEST_FINISH: &str = "SELECT max(finished_at_ms) FROM validator_runs";
/// The runs finished in an interval.
const RUNS_FINISHED: &str = "SELECT e.id AS event_id, m.hotkey, v.hash, r.status, r.prediction, \
            r.clipped_prediction, r.duration_ms, r.logs, r.gateway_usage, r.cost_usd, \
            r.finished_at_ms \
       FROM validator_runs r \
       JOIN validator_events e ON e.event_no = r.event_no \
       JOIN validator_miners m ON m.miner_no = r.miner_no \
       JOIN validator_agent_versions v ON v.version_no = r.version_no \
      WHERE r.finished_at_ms > $1 AND r.finished_at_ms <= $2 \
      ORDER BY r.finished_at_ms, e.id, m.hotkey";

/// One packed event of [`Store::miner_history`]: `event_no resolved_at_ms outcome brier
/// imputed`, its prediction not yet known.
fn history_event(item: &str) -> Result<(i64, HistoryEvent), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("packed score {item:?}"));
    let mut fields = item.split(' ');
    let mut next = || fields.next().ok_or_else(corrupt);
    let event_no: i64 = next()?.parse().map_err(|_| corrupt())?;
    let resolved_ms: i64 = next()?.parse().map_err(|_| corrupt())?;
    let outcome_value: i64 = next()?.parse().map_err(|_| corrupt())?;
    let brier: f64 = next()?.parse().map_err(|_| corrupt())?;
    let imputed = match next()? {
        "0" => false,
        "1" => true,
        _ => return Err(corrupt()),
    };
    if fields.next().is_some() {
        return Err(corrupt());
    }
    let outcome =
        outcome_from(Some(outcome_value), &format!("number {event_no}"))?.ok_or_else(corrupt)?;
    Ok((
        event_no,
        HistoryEvent {
            resolved_at: from_ms(resolved_ms, "resolved_at_ms")?,
            outcome,
            brier,
            imputed,
            clipped_prediction: None,
        },
    ))
}

/// Reference entry `name`'s valid (clipped) forecasts by event number.
async fn reference_predictions(
    connection: &mut AnyConnection,
    packed_sql: &str,
    name: &str,
) -> Result<HashMap<i64, f64>, StoreError> {
    let entry: i64 =
        sqlx::query_scalar("SELECT entry_no FROM validator_reference_entries WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| StoreError::InvalidReference {
                name: name.to_owned(),
                problem: "no reference entry has this name".to_owned(),
            })?;
    packed_predictions(connection, packed_sql, entry).await
}

/// The `event_no value` pairs that `sql` packs for `key`, by event number. `%!.17g` prints 17
/// significant digits, which read back as the very same f64.
async fn packed_predictions(
    connection: &mut AnyConnection,
    sql: &str,
    key: i64,
) -> Result<HashMap<i64, f64>, StoreError> {
    let packed: Option<String> = sqlx::query_scalar(sql)
        .bind(key)
        .fetch_one(&mut *connection)
        .await?;
    packed
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once(' ')
                .and_then(|(event, value)| Some((event.parse().ok()?, value.parse().ok()?)))
                .ok_or_else(|| StoreError::Corrupt(format!("packed prediction {pair:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The pages' reads go through indexes, without statistics (a store that was never
    /// analyzed): scanning the runs instead would cost the whole history (millions of runs) on
    /// every view.
    #[tokio::test]
    async fn the_pages_reads_are_answered_from_indexes() {
        let store = Store::in_memory().await.unwrap();
        for (sql, index) in [
            (MINER_SCORES, "COVERING INDEX validator_scores_by_miner"),
            (
                MINER_PREDICTIONS,
                "COVERING INDEX validator_runs_by_miner_finish",
            ),
            (
                REFERENCE_PREDICTIONS,
                "validator_reference_forecasts_by_entry",
            ),
            (RECENT_RUNS, "validator_runs_by_miner_finish"),
            (OPEN_EVENTS, "validator_events_open"),
            (RESOLVED_EVENTS, "validator_events_resolution"),
            (NEWEST_FINISH, "validator_runs_finished"),
            (RUNS_FINISHED, "validator_runs_finished"),
        ] {
            let plan = store.query_plan(sql).await;
            assert!(plan.contains(index), "{sql}\nplan:\n{plan}");
        }
    }

    #[test]
    fn packed_scores_read_back_or_are_refused() {
        let (event_no, event) = history_event("7 1000 1 0.0625 0").unwrap();
        assert_eq!(event_no, 7);
        assert_eq!(event.outcome, Outcome::Yes);
        assert_eq!(event.brier, 0.0625);
        assert!(!event.imputed);
        let (_, imputed) = history_event("8 1000 0 0.25 1").unwrap();
        assert!(imputed.imputed);
        for bad in [
            "",
            "7 1000 1 0.0625",
            "7 1000 2 0.1 0",
            "7 x 1 0.1 0",
            "7 1 1 0.1 0 0.5",
        ] {
            assert!(
                matches!(history_event(bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
