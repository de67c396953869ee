//! Runs (`validator_runs`) and loading resolved events with their predictions for scoring.
//!
//! Owns the rows of runs: one per (event, miner), ever. It records what the runner reported
//! and serves `scoring` its input in the shape it expects. It must not score, impute
//! or decide which version runs (a missing run stays missing; scoring imputes 0.5).
//!
//! # Once per event and miner
//!
//! [`Store::record_run`] inserts a run only if none exists for its (event, miner): the primary
//! key guarantees it across crashes and restarts, and a second record is a no-op that says so
//! ([`RunRecorded::AlreadyRecorded`]) without changing the first. A daemon that dies after a
//! run finished but before it was recorded runs it again after the restart; runs are
//! deterministic (the sandbox's clock and random numbers are fixed by the event and the agent,
//! and the gateway answers identical requests from its cache), so the repeated run records the
//! same prediction. A daemon that dies after the commit finds the run and does not repeat it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::BindOptionalF64;
use super::events::event_no;
use super::miners::miner_no;
use super::{Store, StoreError, from_ms, outcome_from, to_ms};
use crate::executor::{ExecutedRun, RunStatus};
use crate::scoring::{Miner, ResolvedEvent};

/// A finished run to record: what the executor reported, and whose run it was.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The event.
    pub event_id: String,
    /// The miner.
    pub hotkey: String,
    /// The version that ran (one of the miner's).
    pub version_hash: String,
    /// What came of it (checked with [`ExecutedRun::check`] before anything is written); the
    /// store also records the clipped prediction that is scored.
    pub executed: ExecutedRun,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// What was recorded (instants at millisecond precision).
    pub run: NewRun,
    /// The scored value: the prediction clipped to [0.01, 0.99]; `None` without a prediction.
    pub clipped_prediction: Option<f64>,
}

/// What [`Store::record_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRecorded {
    /// The run is now recorded.
    Inserted,
    /// A run of this miner on this event was already recorded; it was kept unchanged and this
    /// one dropped.
    AlreadyRecorded,
}

impl RunRecorded {
    /// What an `INSERT ... ON CONFLICT DO NOTHING` of one row did, from the rows it affected.
    pub(super) fn of_insert(rows_affected: u64) -> Self {
        if rows_affected == 0 {
            Self::AlreadyRecorded
        } else {
            Self::Inserted
        }
    }
}

impl Store {
    /// Records a finished run, once per (event, miner): see the module docs.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidRun`] when the prediction does not match the status (an `ok` run
    /// without a finite prediction, a failed run with one), or the cost is negative or not
    /// finite (checked before anything is written); [`StoreError::UnknownEvent`],
    /// [`StoreError::UnknownMiner`], [`StoreError::UnknownVersion`] (the miner has no such
    /// version); [`StoreError::Database`].
    pub async fn record_run(&self, run: &NewRun) -> Result<RunRecorded, StoreError> {
        let mut outcomes = self.record_runs(std::slice::from_ref(run)).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("no run was recorded".to_owned()))
    }

    /// Records finished runs in one transaction, each once per (event, miner) as
    /// [`record_run`](Self::record_run) does; returns what happened to each, in order.
    ///
    /// # Errors
    ///
    /// As [`record_run`](Self::record_run), for the first run refused; then nothing is written.
    pub async fn record_runs(&self, runs: &[NewRun]) -> Result<Vec<RunRecorded>, StoreError> {
        for run in runs {
            run.executed
                .check()
                .map_err(|problem| StoreError::InvalidRun {
                    event_id: run.event_id.clone(),
                    hotkey: run.hotkey.clone(),
                    problem,
                })?;
        }
        let mut transaction = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(runs.len());
        for run in runs {
            outcomes.push(insert_run(&mut transaction, run).await?);
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    /// Every run recorded on `event_id`, by miner uid then hotkey.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn runs_of_event(&self, event_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id AS event_id, m.hotkey, v.hash, r.status, r.prediction, \
                    r.clipped_prediction, r.duration_ms, r.logs, r.gateway_usage, r.cost_usd, \
                    r.finished_at_ms \
               FROM validator_runs r \
               JOIN validator_events e USING (event_no) \
               JOIN validator_miners m ON m.miner_no = r.miner_no \
               JOIN validator_agent_versions v ON v.version_no = r.version_no \
              WHERE e.id = $1 \
              ORDER BY m.uid, m.hotkey",
        )
        .bind(event_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The last `count` events resolved at or before `as_of` in the scoring order (resolution
    /// instant, then id), oldest first, each with one prediction slot per entry of `miners` (indexed like it): the
    /// input of `scoring::leaderboard`. A slot is the run's clipped prediction, or
    /// `None` when the miner has no valid prediction on the event (no run, a failed run, not
    /// registered then); scoring imputes those.
    ///
    /// Reads two queries, both from indexes: the window of events newest first with a limit,
    /// and the (event, miner, clipped prediction) triples of those events' valid runs.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn last_resolved_events(
        &self,
        miners: &[Miner],
        count: usize,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<ResolvedEvent>, StoreError> {
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        // Read both queries in one read transaction, so that a resolution committed in between
        // cannot add predictions for an event missing from the window.
        let mut connection = self.begin_read().await?;

        let (mut events, event_index) =
            window_events(&mut connection, limit, as_of, miners.len()).await?;
        if events.is_empty() || miners.is_empty() {
            return Ok(events);
        }

        let miner_index = miner_indexes(&mut connection, miners).await?;
        // One row per event, its valid predictions packed as "miner value,miner value,...":
        // decoding 10,000 rows of text is several times faster than 2.5 M rows through sqlx.
        // `%!.17g` prints 17 significant digits, which read back as the very same f64.
        let sql = self.sql(
            "SELECT r.event_no, \
                    string_agg(r.miner_no || ' ' || printf('%!.17g', r.clipped_prediction), ',') \
               FROM validator_runs r \
              WHERE r.event_no IN (SELECT event_no FROM validator_events \
                                    WHERE status = 'resolved' AND resolved_at_ms <= $2 \
                                    ORDER BY resolved_at_ms DESC, id DESC LIMIT $1) \
                AND r.clipped_prediction IS NOT NULL \
              GROUP BY r.event_no",
        );
        let mut packed = sqlx::query(&sql)
            .bind(limit)
            .bind(to_ms(as_of))
            .fetch(&mut *connection);
        while let Some(row) = packed.try_next().await? {
            let event_no: i64 = row.try_get(0)?;
            let Some(&event) = event_index.get(&event_no) else {
                continue;
            };
            let predictions: &str = row.try_get(1)?;
            for pair in predictions.split(',') {
                let (miner_no, value) = pair
                    .split_once(' ')
                    .and_then(|(miner, value)| {
                        Some((miner.parse::<i64>().ok()?, value.parse::<f64>().ok()?))
                    })
                    .ok_or_else(|| StoreError::Corrupt(format!("packed prediction {pair:?}")))?;
                // A miner not in `miners` (deregistered, or left out by the caller) is skipped.
                if let Some(&miner) = miner_index.get(&miner_no) {
                    events[event].predictions[miner] = Some(value);
                }
            }
        }
        Ok(events)
    }
}

impl Store {
    /// The events of `ids` that are resolved at or before `as_of`, each with one prediction slot
    /// per entry of `miners` as [`last_resolved_events`](Self::last_resolved_events) gives
    /// them, in the scoring order; ids of unknown, open or later-resolved events are left out.
    /// What the daemon adds to the scoring window it keeps after each resolution batch.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn resolved_events(
        &self,
        miners: &[Miner],
        ids: &[String],
        as_of: DateTime<Utc>,
    ) -> Result<Vec<ResolvedEvent>, StoreError> {
        let mut connection = self.begin_read().await?;
        let miner_index = miner_indexes(&mut connection, miners).await?;
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(row) = sqlx::query(
                "SELECT event_no, created_at_ms, resolved_at_ms, outcome \
                   FROM validator_events \
                  WHERE id = $1 AND status = 'resolved' AND resolved_at_ms <= $2",
            )
            .bind(id)
            .bind(to_ms(as_of))
            .fetch_optional(&mut *connection)
            .await?
            else {
                continue;
            };
            let outcome = outcome_from(Some(row.try_get("outcome")?), id)?
                .ok_or_else(|| StoreError::Corrupt(format!("event {id:?} has no outcome")))?;
            let event_no: i64 = row.try_get("event_no")?;
            let mut event = ResolvedEvent {
                id: id.clone(),
                created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
                resolved_at: from_ms(row.try_get("resolved_at_ms")?, "resolved_at_ms")?,
                outcome,
                predictions: vec![None; miners.len()],
            };
            let runs = sqlx::query(
                "SELECT miner_no, clipped_prediction FROM validator_runs \
                  WHERE event_no = $1 AND clipped_prediction IS NOT NULL",
            )
            .bind(event_no)
            .fetch_all(&mut *connection)
            .await?;
            for run in &runs {
                let miner_no: i64 = run.try_get(0)?;
                if let Some(&index) = miner_index.get(&miner_no) {
                    event.predictions[index] = Some(run.try_get(1)?);
                }
            }
            events.push(event);
        }
        events.sort_by(|a, b| (a.resolved_at, &a.id).cmp(&(b.resolved_at, &b.id)));
        Ok(events)
    }
}

/// Inserts one checked run inside `transaction`.
pub(super) async fn insert_run(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    run: &NewRun,
) -> Result<RunRecorded, StoreError> {
    let executed = &run.executed;
    // Checked: the duration fits.
    let duration_ms = i64::try_from(executed.duration_ms).unwrap_or(i64::MAX);
    let event = event_no(transaction, &run.event_id).await?;
    let miner = miner_no(transaction, &run.hotkey).await?;
    let version: i64 = sqlx::query_scalar(
        "SELECT version_no FROM validator_agent_versions WHERE miner_no = $1 AND hash = $2",
    )
    .bind(miner)
    .bind(&run.version_hash)
    .fetch_optional(&mut **transaction)
    .await?
    .ok_or_else(|| StoreError::UnknownVersion {
        hotkey: run.hotkey.clone(),
        hash: run.version_hash.clone(),
    })?;
    let inserted = sqlx::query(
        "INSERT INTO validator_runs \
                 (event_no, miner_no, version_no, status, prediction, clipped_prediction, \
                  duration_ms, logs, gateway_usage, cost_usd, finished_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (event_no, miner_no) DO NOTHING",
    )
    .bind(event)
    .bind(miner)
    .bind(version)
    .bind(executed.status.as_str())
    .bind_optional_f64(executed.prediction)
    .bind_optional_f64(executed.clipped_prediction())
    .bind(duration_ms)
    .bind(&executed.logs)
    .bind(executed.gateway_usage.to_string())
    .bind(executed.cost_usd)
    .bind(to_ms(run.finished_at))
    .execute(&mut **transaction)
    .await?;
    Ok(RunRecorded::of_insert(inserted.rows_affected()))
}

/// Maps the internal key of each of `miners` to its index in the slice; unknown hotkeys are
/// left out (they have no runs).
/// The last `limit` events resolved at or before `as_of`, oldest first in the scoring order
/// (resolution instant, then id), each with `slots` empty prediction slots, and each one's
/// index by `event_no`. Read newest first from the resolution index, with the limit.
pub(super) async fn window_events(
    connection: &mut sqlx::AnyConnection,
    limit: i64,
    as_of: DateTime<Utc>,
    slots: usize,
) -> Result<(Vec<ResolvedEvent>, HashMap<i64, usize>), StoreError> {
    let rows = sqlx::query(
        "SELECT event_no, id, created_at_ms, resolved_at_ms, outcome \
           FROM validator_events \
          WHERE status = 'resolved' AND resolved_at_ms <= $2 \
          ORDER BY resolved_at_ms DESC, id DESC \
          LIMIT $1",
    )
    .bind(limit)
    .bind(to_ms(as_of))
    .fetch_all(&mut *connection)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    let mut event_index = HashMap::with_capacity(rows.len());
    for row in rows.iter().rev() {
        let id: String = row.try_get("id")?;
        let outcome = outcome_from(Some(row.try_get("outcome")?), &id)?
            .ok_or_else(|| StoreError::Corrupt(format!("event {id:?} has no outcome")))?;
        event_index.insert(row.try_get("event_no")?, events.len());
        events.push(ResolvedEvent {
            id,
            created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
            resolved_at: from_ms(row.try_get("resolved_at_ms")?, "resolved_at_ms")?,
            outcome,
            predictions: vec![None; slots],
        });
    }
    Ok((events, event_index))
}

pub(super) async fn miner_indexes(
    connection: &mut sqlx::AnyConnection,
    miners: &[Miner],
) -> Result<HashMap<i64, usize>, StoreError> {
    let by_hotkey: HashMap<&str, usize> = miners
        .iter()
        .enumerate()
        .map(|(index, miner)| (miner.hotkey.as_str(), index))
        .collect();
    let rows = sqlx::query("SELECT miner_no, hotkey FROM validator_miners")
        .fetch_all(&mut *connection)
        .await?;
    let mut indexes = HashMap::with_capacity(miners.len());
    for row in &rows {
        let hotkey: &str = row.try_get("hotkey")?;
        if let Some(&index) = by_hotkey.get(hotkey) {
            indexes.insert(row.try_get("miner_no")?, index);
        }
    }
    Ok(indexes)
}

pub(super) fn run_from_row(row: &AnyRow) -> Result<RunRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let usage: String = row.try_get("gateway_usage")?;
    let duration_ms: i64 = row.try_get("duration_ms")?;
    Ok(RunRecord {
        run: NewRun {
            event_id: row.try_get("event_id")?,
            hotkey: row.try_get("hotkey")?,
            version_hash: row.try_get("hash")?,
            executed: ExecutedRun {
                status: RunStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown run status {status:?}")))?,
                prediction: row.try_get("prediction")?,
                duration_ms: u64::try_from(duration_ms)
                    .map_err(|_| StoreError::Corrupt(format!("run duration {duration_ms} ms")))?,
                logs: row.try_get("logs")?,
                gateway_usage: serde_json::from_str(&usage).map_err(|source| {
                    StoreError::CorruptJson {
                        what: "a run's gateway usage".to_owned(),
                        source,
                    }
                })?,
                cost_usd: row.try_get("cost_usd")?,
            },
            finished_at: from_ms(row.try_get("finished_at_ms")?, "finished_at_ms")?,
        },
        clipped_prediction: row.try_get("clipped_prediction")?,
    })
}
