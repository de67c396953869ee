//! Read-only queries for the daemon's HTTP API: pages of events and of a miner's runs.
//!
//! Owns nothing: every table here belongs to another file of the store, and this file only
//! reads them, through the read pool. Pages are keyset-paginated: a page is asked for with the
//! id of the last event of the previous one (`before`), so that a page stays right while new
//! events are inserted, and reading a page costs the same however deep it is.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::events::event_from_row;
use super::miners::miner_no;
use super::runs::run_from_row;
use super::{
    EventRecord, EventScore, EventStatus, RunRecord, Store, StoreError, flag_from, outcome_from,
};
use crate::scoring::Outcome;

/// One run of a miner, with what its event became.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerRun {
    /// The run as recorded.
    pub run: RunRecord,
    /// The event's outcome, once resolved.
    pub outcome: Option<Outcome>,
    /// The miner's score on the event, once scored (resolved events only).
    pub score: Option<EventScore>,
}

impl Store {
    /// A page of events, newest creation first (then by id, descending): at most `limit`
    /// events, only those with `status` if given, and only those after event `before` in that
    /// order if given (pass the id of the last event of the previous page).
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownEvent`] if `before` is not an event's id; [`StoreError::Database`]
    /// or [`StoreError::Corrupt`].
    pub async fn events_page(
        &self,
        status: Option<EventStatus>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut connection = self.begin_read().await?;
        let position = match before {
            Some(event_id) => Some(event_position(&mut connection, event_id).await?),
            None => None,
        };
        let rows = sqlx::query(
            "SELECT id, kind, title, description, metadata, created_at_ms, cutoff_ms, status, \
                    outcome, resolved_at_ms \
               FROM validator_events \
              WHERE ($1 IS NULL OR status = $1) \
                AND ($2 IS NULL OR (created_at_ms, id) < ($2, $3)) \
              ORDER BY created_at_ms DESC, id DESC \
              LIMIT $4",
        )
        .bind(status.map(status_word))
        .bind(position.as_ref().map(|(created_at_ms, _)| *created_at_ms))
        .bind(position.as_ref().map(|(_, id)| id.as_str()))
        .bind(limit_from(limit))
        .fetch_all(&mut *connection)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// A page of `hotkey`'s runs, newest event first (by the event's creation, then id,
    /// descending): at most `limit` runs, only those on events after event `before` in that
    /// order if given (pass the event id of the last run of the previous page). Each run comes
    /// with its event's outcome and the miner's score on it, when there are.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`] if no miner ever had `hotkey`; [`StoreError::UnknownEvent`]
    /// if `before` is not an event's id; [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn miner_runs(
        &self,
        hotkey: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MinerRun>, StoreError> {
        let mut connection = self.begin_read().await?;
        let miner = miner_no(&mut connection, hotkey).await?;
        let position = match before {
            Some(event_id) => Some(event_position(&mut connection, event_id).await?),
            None => None,
        };
        let rows = sqlx::query(
            "SELECT e.id AS event_id, e.outcome, m.hotkey, v.hash, r.status, \
                    r.prediction, r.clipped_prediction, r.duration_ms, r.logs, r.gateway_usage, \
                    r.cost_usd, r.finished_at_ms, s.brier, CAST(s.imputed AS INTEGER) AS imputed \
               FROM validator_runs r \
               JOIN validator_events e USING (event_no) \
               JOIN validator_miners m ON m.miner_no = r.miner_no \
               JOIN validator_agent_versions v ON v.version_no = r.version_no \
               LEFT JOIN validator_scores s \
                      ON s.event_no = r.event_no AND s.miner_no = r.miner_no \
              WHERE r.miner_no = $1 \
                AND ($2 IS NULL OR (e.created_at_ms, e.id) < ($2, $3)) \
              ORDER BY e.created_at_ms DESC, e.id DESC \
              LIMIT $4",
        )
        .bind(miner)
        .bind(position.as_ref().map(|(created_at_ms, _)| *created_at_ms))
        .bind(position.as_ref().map(|(_, id)| id.as_str()))
        .bind(limit_from(limit))
        .fetch_all(&mut *connection)
        .await?;
        rows.iter().map(miner_run_from_row).collect()
    }
}

/// A miner's run with its outcome and score, from a row of a miner's runs: the run's columns
/// ([`run_from_row`]) and `outcome`, `brier`, `imputed` (the last two null before scoring).
pub(super) fn miner_run_from_row(row: &AnyRow) -> Result<MinerRun, StoreError> {
    let run = run_from_row(row)?;
    let brier: Option<f64> = row.try_get("brier")?;
    let imputed = row
        .try_get::<Option<i64>, _>("imputed")?
        .map(|value| flag_from(value, "imputed"))
        .transpose()?;
    let score = match (brier, imputed) {
        (Some(brier), Some(imputed)) => Some(EventScore {
            hotkey: run.run.hotkey.clone(),
            brier,
            imputed,
        }),
        (None, None) => None,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "score of miner {:?} on event {:?} is half missing",
                run.run.hotkey, run.run.event_id
            )));
        }
    };
    Ok(MinerRun {
        outcome: outcome_from(row.try_get("outcome")?, &run.run.event_id)?,
        score,
        run,
    })
}

/// Where event `event_id` sits in the newest-first order: its creation and its id.
async fn event_position(
    connection: &mut AnyConnection,
    event_id: &str,
) -> Result<(i64, String), StoreError> {
    let created_at_ms: i64 =
        sqlx::query_scalar("SELECT created_at_ms FROM validator_events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(&mut *connection)
            .await?
            .ok_or_else(|| StoreError::UnknownEvent {
                event_id: event_id.to_owned(),
            })?;
    Ok((created_at_ms, event_id.to_owned()))
}

/// A page size as SQLite takes it.
fn limit_from(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The word stored in the events' `status` column.
fn status_word(status: EventStatus) -> &'static str {
    match status {
        EventStatus::Open => "open",
        EventStatus::Resolved => "resolved",
    }
}
