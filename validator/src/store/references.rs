//! Reference entries (`validator_reference_entries`, `validator_reference_forecasts`): the
//! benchmark agents and the meta-model's pools, and their forecasts.
//!
//! Owns the rows of reference entries and their forecasts, one per (event, entry), ever, like
//! miners' runs. A reference entry is not a miner: it holds no uid, so nothing that registers,
//! ranks or weights miners reads these tables. It must not run an agent, compute a pool or
//! score: the daemon records what its executor and `meta` answered, and scoring reads
//! [`Store::reference_window`] like the miners' window.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::BindOptionalF64;
use super::events::event_no;
use super::runs::{RunRecorded, window_events};
use super::{Store, StoreError, from_ms, outcome_from, to_ms};
use crate::executor::ExecutedRun;
use crate::scoring::ResolvedEvent;

/// The prefix reserved for the meta-model's pools; a benchmark's name may not start with it.
pub const META_PREFIX: &str = "meta:";

/// The longest name of a reference entry, in bytes.
pub const MAX_REFERENCE_NAME: usize = 64;

/// What a reference entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// A benchmark agent, run on every event in the sandbox like a miner's.
    Benchmark,
    /// One of the meta-model's pools of the miners' forecasts.
    MetaModel,
}

impl ReferenceKind {
    /// The word stored in the `kind` column.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Benchmark => "benchmark",
            Self::MetaModel => "meta_model",
        }
    }

    fn parse(word: &str) -> Result<Self, StoreError> {
        match word {
            "benchmark" => Ok(Self::Benchmark),
            "meta_model" => Ok(Self::MetaModel),
            other => Err(StoreError::Corrupt(format!(
                "unknown reference kind {other:?}"
            ))),
        }
    }
}

/// A reference entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceEntry {
    /// Its name: a benchmark's (`market-baseline`) or a pool's (`meta:linear`).
    pub name: String,
    /// Benchmark or meta-model.
    pub kind: ReferenceKind,
    /// A benchmark's component (content hash); `None` for a pool.
    pub component_hash: Option<String>,
}

/// A forecast to record for a reference entry on an event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReferenceForecast {
    /// The event.
    pub event_id: String,
    /// The entry's name.
    pub entry: String,
    /// What the benchmark's run reported, or the pool's forecast as an `ok` run of no
    /// duration; `None` for a pool over no forecast at all (status `no_forecasts`, scored with
    /// the imputed 0.5).
    pub executed: Option<ExecutedRun>,
    /// When it was made.
    pub finished_at: DateTime<Utc>,
}

/// A benchmark run owed: an open event created by now without the benchmark's forecast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBenchmarkRun {
    /// The event.
    pub event_id: String,
    /// The benchmark.
    pub name: String,
    /// Its component.
    pub component_hash: String,
}

/// The events whose pools are not recorded yet, with the miners' valid forecasts on each.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolInputs {
    /// Every miner's hotkey; a forecast names its miner by index in this list.
    pub hotkeys: Vec<String>,
    /// The events, oldest first.
    pub events: Vec<PoolInput>,
}

/// An event of [`PoolInputs`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolInput {
    /// The event.
    pub event_id: String,
    /// Each miner with a valid run on it: (index in [`PoolInputs::hotkeys`], clipped
    /// prediction).
    pub forecasts: Vec<(u32, f64)>,
}

/// The events stored at some moment: a pass over owed runs takes it before it looks for runs
/// owed, and pools only events within it, whose runs it has seen to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsSeen(i64);

/// A reference entry's forecast on an event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceForecast {
    /// The entry.
    pub entry: String,
    /// Benchmark or meta-model.
    pub kind: ReferenceKind,
    /// The status word (a run's, or `no_forecasts`).
    pub status: String,
    /// The raw prediction, for `ok`.
    pub prediction: Option<f64>,
    /// The scored value, for `ok`.
    pub clipped_prediction: Option<f64>,
    /// How long a benchmark's run took (0 for a pool).
    pub duration_ms: u64,
    /// What its gateway calls cost.
    pub cost_usd: f64,
    /// A benchmark run's captured output.
    pub logs: String,
}

/// The reference entries' forecasts on a window of resolved events.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceWindow {
    /// The entries, benchmarks first, each kind by name.
    pub entries: Vec<ReferenceEntry>,
    /// The events, oldest first in the scoring order, with one prediction slot per entry
    /// (indexed like `entries`): the clipped prediction, or `None` (imputed at scoring).
    pub events: Vec<ResolvedEvent>,
}

impl Store {
    /// Records benchmark `name` with its component `hash`: a new entry, or the component of an
    /// existing benchmark replaced (its forecasts so far stay).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidReference`] for an empty or over-long name, one with the pools'
    /// prefix, or the name of a pool; [`StoreError::Database`].
    pub async fn set_benchmark(&self, name: &str, hash: &str) -> Result<(), StoreError> {
        check_name(name, ReferenceKind::Benchmark)?;
        let mut transaction = self.begin_write().await?;
        let kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM validator_reference_entries WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *transaction)
                .await?;
        if kind.is_some_and(|kind| kind != ReferenceKind::Benchmark.as_str()) {
            return Err(invalid(name, "it names a meta-model pool"));
        }
        sqlx::query(
            "INSERT INTO validator_reference_entries (name, kind, component_hash) \
             VALUES ($1, 'benchmark', $2) \
             ON CONFLICT (name) DO UPDATE SET component_hash = excluded.component_hash",
        )
        .bind(name)
        .bind(hash)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Records the meta-model's pools `names` (each starting with [`META_PREFIX`]) if they are
    /// not yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidReference`] for a name without the prefix or over-long;
    /// [`StoreError::Database`].
    pub async fn ensure_meta_entries(&self, names: &[&str]) -> Result<(), StoreError> {
        for name in names {
            check_name(name, ReferenceKind::MetaModel)?;
        }
        let mut transaction = self.begin_write().await?;
        for name in names {
            sqlx::query(
                "INSERT INTO validator_reference_entries (name, kind) VALUES ($1, 'meta_model') \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Every reference entry: benchmarks first, each kind by name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn reference_entries(&self) -> Result<Vec<ReferenceEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, kind, component_hash FROM validator_reference_entries \
              ORDER BY kind = 'meta_model', name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReferenceEntry {
                    name: row.try_get("name")?,
                    kind: ReferenceKind::parse(row.try_get("kind")?)?,
                    component_hash: row.try_get("component_hash")?,
                })
            })
            .collect()
    }

    /// The benchmark runs owed at `as_of`: every benchmark without a forecast on an open event
    /// created by then whose cutoff is still ahead (the miners' rule, [`Store::missing_runs`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn missing_benchmark_runs(
        &self,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<MissingBenchmarkRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, b.name, b.component_hash \
               FROM validator_events e \
               JOIN validator_reference_entries b ON b.kind = 'benchmark' \
              WHERE e.status = 'open' AND e.created_at_ms <= $1 AND e.cutoff_ms > $1 \
                AND NOT EXISTS (SELECT 1 FROM validator_reference_forecasts f \
                                 WHERE f.event_no = e.event_no AND f.entry_no = b.entry_no) \
              ORDER BY e.created_at_ms, e.id, b.name",
        )
        .bind(to_ms(as_of))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MissingBenchmarkRun {
                    event_id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    component_hash: row.try_get("component_hash")?,
                })
            })
            .collect()
    }

    /// Records reference forecasts in one transaction, each once per (event, entry): a second
    /// forecast of an entry on an event is dropped ([`RunRecorded::AlreadyRecorded`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidRun`] when a run's prediction does not match its status or its
    /// cost is invalid (checked before anything is written); [`StoreError::UnknownEvent`],
    /// [`StoreError::InvalidReference`] for an unknown entry; [`StoreError::Database`].
    pub async fn record_reference_forecasts(
        &self,
        forecasts: &[NewReferenceForecast],
    ) -> Result<Vec<RunRecorded>, StoreError> {
        for forecast in forecasts {
            if let Some(executed) = &forecast.executed {
                executed.check().map_err(|problem| StoreError::InvalidRun {
                    event_id: forecast.event_id.clone(),
                    hotkey: forecast.entry.clone(),
                    problem,
                })?;
            }
        }
        let mut transaction = self.begin_write().await?;
        let mut entries: HashMap<String, i64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(forecasts.len());
        for forecast in forecasts {
            outcomes
                .push(insert_reference_forecast(&mut transaction, forecast, &mut entries).await?);
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    /// The events stored now, for [`events_to_pool`](Self::events_to_pool).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn events_seen(&self) -> Result<EventsSeen, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(event_no) FROM validator_events")
            .fetch_one(&self.reader)
            .await?;
        Ok(EventsSeen(last.unwrap_or(0)))
    }

    /// The events among `seen` created by `as_of` that have no forecast of pool `first_pool`
    /// yet (the pools of an event are recorded together), oldest first, each with the miners'
    /// valid forecasts on it. An event stored after `seen` waits: its runs may still be owed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn events_to_pool(
        &self,
        as_of: DateTime<Utc>,
        first_pool: &str,
        seen: EventsSeen,
    ) -> Result<PoolInputs, StoreError> {
        let mut connection = self.begin_read().await?;
        let miners = sqlx::query("SELECT miner_no, hotkey FROM validator_miners ORDER BY miner_no")
            .fetch_all(&mut *connection)
            .await?;
        let mut hotkeys = Vec::with_capacity(miners.len());
        let mut miner_index: HashMap<i64, u32> = HashMap::with_capacity(miners.len());
        for row in &miners {
            let index = u32::try_from(hotkeys.len())
                .map_err(|_| StoreError::Corrupt("too many miners".to_owned()))?;
            miner_index.insert(row.try_get("miner_no")?, index);
            hotkeys.push(row.try_get("hotkey")?);
        }
        // One row per event, its valid forecasts packed as "miner value,miner value,..." (as
        // `last_resolved_events` reads them): decoding 100 rows of text is many times faster
        // than 25,600 rows through sqlx. `%!.17g` reads back as the very same f64.
        let rows = sqlx::query(&self.sql(
            "SELECT e.id, \
                    (SELECT string_agg(r.miner_no || ' ' || printf('%!.17g', r.clipped_prediction), ',') \
                       FROM validator_runs r \
                      WHERE r.event_no = e.event_no AND r.clipped_prediction IS NOT NULL) \
               FROM validator_events e \
              WHERE e.created_at_ms <= $1 AND e.event_no <= $3 \
                AND NOT EXISTS (SELECT 1 FROM validator_run_queue q \
                                 WHERE q.event_no = e.event_no) \
                AND NOT EXISTS (SELECT 1 FROM validator_reference_forecasts f \
                                  JOIN validator_reference_entries p USING (entry_no) \
                                 WHERE f.event_no = e.event_no AND p.name = $2) \
              ORDER BY e.created_at_ms, e.id",
        ))
        .bind(to_ms(as_of))
        .bind(first_pool)
        .bind(seen.0)
        .fetch_all(&mut *connection)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let packed: Option<&str> = row.try_get(1)?;
            let mut forecasts = Vec::new();
            for pair in packed
                .unwrap_or_default()
                .split(',')
                .filter(|pair| !pair.is_empty())
            {
                let (miner, value) = pair
                    .split_once(' ')
                    .and_then(|(miner, value)| {
                        Some((miner.parse::<i64>().ok()?, value.parse::<f64>().ok()?))
                    })
                    .ok_or_else(|| StoreError::Corrupt(format!("packed forecast {pair:?}")))?;
                let miner = *miner_index.get(&miner).ok_or_else(|| {
                    StoreError::Corrupt(format!("a run of unknown miner {miner}"))
                })?;
                forecasts.push((miner, value));
            }
            events.push(PoolInput {
                event_id: row.try_get(0)?,
                forecasts,
            });
        }
        Ok(PoolInputs { hotkeys, events })
    }

    /// The reference entries' forecasts on the last `count` events resolved at or before
    /// `as_of` (the miners' scoring window, [`Store::last_resolved_events`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn reference_window(
        &self,
        count: usize,
        as_of: DateTime<Utc>,
    ) -> Result<ReferenceWindow, StoreError> {
        let entries = self.reference_entries().await?;
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let mut connection = self.begin_read().await?;
        let (mut events, event_index) =
            window_events(&mut connection, limit, as_of, entries.len()).await?;
        if events.is_empty() || entries.is_empty() {
            return Ok(ReferenceWindow { entries, events });
        }
        let entry_index: HashMap<&str, usize> = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| (entry.name.as_str(), index))
            .collect();
        let forecasts = sqlx::query(
            "SELECT f.event_no, p.name, f.clipped_prediction \
               FROM validator_reference_forecasts f \
               JOIN validator_reference_entries p USING (entry_no) \
              WHERE f.clipped_prediction IS NOT NULL \
                AND f.event_no IN (SELECT event_no FROM validator_events \
                                    WHERE status = 'resolved' AND resolved_at_ms <= $2 \
                                    ORDER BY resolved_at_ms DESC, id DESC LIMIT $1)",
        )
        .bind(limit)
        .bind(to_ms(as_of))
        .fetch_all(&mut *connection)
        .await?;
        for row in &forecasts {
            let event_no: i64 = row.try_get("event_no")?;
            let name: &str = row.try_get("name")?;
            if let (Some(&event), Some(&entry)) =
                (event_index.get(&event_no), entry_index.get(name))
            {
                events[event].predictions[entry] = row.try_get("clipped_prediction")?;
            }
        }
        Ok(ReferenceWindow { entries, events })
    }

    /// Each benchmark agent's scored forecasts on the events created at or after `from`: per
    /// benchmark (by name), its clipped forecast by event id (`None` where its run failed).
    /// What the daily live check takes as public signals beside the market.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn benchmark_forecasts_since(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Vec<(String, HashMap<String, Option<f64>>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.name, e.id, f.clipped_prediction \
               FROM validator_reference_entries p \
               JOIN validator_reference_forecasts f USING (entry_no) \
               JOIN validator_events e ON e.event_no = f.event_no \
              WHERE p.kind = 'benchmark' AND e.created_at_ms >= $1 \
              ORDER BY p.name",
        )
        .bind(to_ms(from))
        .fetch_all(&self.reader)
        .await?;
        let mut benchmarks: Vec<(String, HashMap<String, Option<f64>>)> = Vec::new();
        for row in &rows {
            let name: String = row.try_get("name")?;
            if benchmarks.last().is_none_or(|(last, _)| *last != name) {
                benchmarks.push((name, HashMap::new()));
            }
            if let Some((_, forecasts)) = benchmarks.last_mut() {
                forecasts.insert(row.try_get("id")?, row.try_get("clipped_prediction")?);
            }
        }
        Ok(benchmarks)
    }

    /// Every reference entry's forecast on `event_id`, benchmarks first, each kind by name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn reference_forecasts_of_event(
        &self,
        event_id: &str,
    ) -> Result<Vec<ReferenceForecast>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.name, p.kind, f.status, f.prediction, f.clipped_prediction, \
                    f.duration_ms, f.cost_usd, f.logs \
               FROM validator_reference_forecasts f \
               JOIN validator_reference_entries p USING (entry_no) \
               JOIN validator_events e USING (event_no) \
              WHERE e.id = $1 \
              ORDER BY p.kind = 'meta_model', p.name",
        )
        .bind(event_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let duration_ms: i64 = row.try_get("duration_ms")?;
                Ok(ReferenceForecast {
                    entry: row.try_get("name")?,
                    kind: ReferenceKind::parse(row.try_get("kind")?)?,
                    status: row.try_get("status")?,
                    prediction: row.try_get("prediction")?,
                    clipped_prediction: row.try_get("clipped_prediction")?,
                    duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                    cost_usd: row.try_get("cost_usd")?,
                    logs: row.try_get("logs")?,
                })
            })
            .collect()
    }

    /// Each resolved event's Brier score of reference entry `name`, in the scoring order
    /// (resolution instant, then id), the imputed 0.5 where it has no valid forecast: its
    /// history, for the rolling score the pages chart.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn reference_history(
        &self,
        name: &str,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.resolved_at_ms, e.outcome, f.clipped_prediction \
               FROM validator_events e \
               LEFT JOIN validator_reference_entries p ON p.name = $1 \
               LEFT JOIN validator_reference_forecasts f \
                      ON f.event_no = e.event_no AND f.entry_no = p.entry_no \
              WHERE e.status = 'resolved' \
              ORDER BY e.resolved_at_ms, e.id",
        )
        .bind(name)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let outcome = outcome_from(Some(row.try_get("outcome")?), &id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("event {id:?} has no outcome")))?;
                let brier = crate::scoring::Score::of(row.try_get("clipped_prediction")?, outcome);
                Ok((
                    from_ms(row.try_get("resolved_at_ms")?, "resolved_at_ms")?,
                    brier.brier,
                ))
            })
            .collect()
    }
}

/// Inserts one checked forecast inside `transaction`, once per (event, entry); `entries` caches
/// the entries' numbers by name.
pub(super) async fn insert_reference_forecast(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    forecast: &NewReferenceForecast,
    entries: &mut HashMap<String, i64>,
) -> Result<RunRecorded, StoreError> {
    let entry = match entries.get(forecast.entry.as_str()) {
        Some(&entry) => entry,
        None => {
            let entry: i64 = sqlx::query_scalar(
                "SELECT entry_no FROM validator_reference_entries WHERE name = $1",
            )
            .bind(&forecast.entry)
            .fetch_optional(&mut **transaction)
            .await?
            .ok_or_else(|| invalid(&forecast.entry, "no reference entry has this name"))?;
            entries.insert(forecast.entry.clone(), entry);
            entry
        }
    };
    let event = event_no(transaction, &forecast.event_id).await?;
    let executed = forecast.executed.as_ref();
    let inserted = sqlx::query(
        "INSERT INTO validator_reference_forecasts \
                 (event_no, entry_no, status, prediction, clipped_prediction, duration_ms, \
                  logs, cost_usd, finished_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (event_no, entry_no) DO NOTHING",
    )
    .bind(event)
    .bind(entry)
    .bind(executed.map_or(NO_FORECASTS, |run| run.status.as_str()))
    .bind_optional_f64(executed.and_then(|run| run.prediction))
    .bind_optional_f64(executed.and_then(ExecutedRun::clipped_prediction))
    .bind(executed.map_or(0, |run| i64::try_from(run.duration_ms).unwrap_or(i64::MAX)))
    .bind(executed.map_or("", |run| run.logs.as_str()))
    .bind(executed.map_or(0.0, |run| run.cost_usd))
    .bind(to_ms(forecast.finished_at))
    .execute(&mut **transaction)
    .await?;
    Ok(RunRecorded::of_insert(inserted.rows_affected()))
}

/// The status of a pool over no forecast.
const NO_FORECASTS: &str = "no_forecasts";

fn check_name(name: &str, kind: ReferenceKind) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_REFERENCE_NAME {
        return Err(invalid(
            name,
            &format!("a name has 1 to {MAX_REFERENCE_NAME} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(name, "a name has no control characters"));
    }
    match (kind, name.starts_with(META_PREFIX)) {
        (ReferenceKind::Benchmark, true) => Err(invalid(
            name,
            &format!("names starting with {META_PREFIX:?} are the meta-model's"),
        )),
        (ReferenceKind::MetaModel, false) => Err(invalid(
            name,
            &format!("a pool's name starts with {META_PREFIX:?}"),
        )),
        _ => Ok(()),
    }
}

fn invalid(name: &str, problem: &str) -> StoreError {
    StoreError::InvalidReference {
        name: name.to_owned(),
        problem: problem.to_owned(),
    }
}
