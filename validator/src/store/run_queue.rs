//! The runs handed to runner workers (`validator_run_queue`), and the components they fetch
//! (`validator_components`).
//!
//! Owns the queue's rows from the scheduler's enqueue to a worker's record. A worker claims the
//! oldest claimable runs (queued, or leased until before now) under a lease by the database's
//! clock, so that hosts whose clocks disagree still agree on who holds what; on PostgreSQL the
//! claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so that workers claiming at once
//! never wait for each other nor take the same run. Each claim adds one to the run's
//! `attempts`: the fencing token. A worker's record deletes the queue row only if it still
//! holds the lease with the same attempt, and inserts the run in the same transaction; a worker
//! that lost its lease (it stalled, the database was unreachable, it died) records nothing, and
//! whoever claimed the run after it records it. With the primary key of `validator_runs`, a run
//! is recorded exactly once per (event, miner), whatever dies when.
//!
//! It must not decide what is owed (that is the scheduler's `missing_runs`) nor run anything.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::event_from_row;
use super::references::insert_reference_forecast;
use super::run_queue_postgres::{
    CLAIM_POSTGRES, COUNT_AND_NOTIFY_POSTGRES, RECORD_MINER_RUN_POSTGRES, record_miner_run_at_once,
};
use super::runs::insert_run;
use super::workers::add_to_worker_counts;
use super::{EventRecord, NewReferenceForecast, NewRun, RunRecorded, Store, StoreError};
use super::{from_ms, uid_from};
use crate::executor::ExecutedRun;

/// Whose run a queued run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOwner {
    /// A miner's: its version with the queued run's component hash.
    Miner {
        /// The miner.
        hotkey: String,
    },
    /// A benchmark agent's, under its reserved entry.
    Benchmark {
        /// The entry's name.
        entry: String,
    },
}

/// A run to hand to the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    /// The run's id (see `RunJob::run_id_for`).
    pub run_id: String,
    /// The event.
    pub event_id: String,
    /// Whose run it is.
    pub owner: RunOwner,
    /// The component that runs it (for a miner, the version's hash).
    pub component_hash: String,
    /// The name the gateway meters it under (the hotkey, or `benchmark:NAME`).
    pub gateway_name: String,
    /// The miner's uid (0 for a benchmark).
    pub uid: u16,
}

/// A run a worker claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    /// The run.
    pub run: QueuedRun,
    /// The event, as stored.
    pub event: EventRecord,
    /// This claim's attempt: the fencing token its record must match.
    pub attempt: u32,
}

/// A claimed run's outcome, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedClaim {
    /// The claim.
    pub claim: ClaimedRun,
    /// What came of the run.
    pub executed: ExecutedRun,
}

/// What became of a finished claim's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRecorded {
    /// The worker held the lease: the run is recorded (or was already, which the queue only
    /// lets happen to a run enqueued again after it was recorded).
    Recorded(RunRecorded),
    /// The worker no longer held the lease (it ended, or another worker claimed the run): the
    /// outcome was dropped and whoever holds the run records it.
    LeaseLost,
}

/// How many runs the queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting for a worker (never claimed, or whose lease ended).
    pub waiting: u64,
    /// Held by a worker whose lease runs.
    pub leased: u64,
}

/// Runs queued by one statement (7 parameters each: within SQLite's 32,766 and PostgreSQL's
/// 65,535).
pub const ENQUEUE_BATCH: usize = 500;

/// Keeps a component under its hash, written once (`$1` the hash, `$2` the bytes).
pub(super) const PUT_COMPONENT: &str = "INSERT INTO validator_components (hash, bytes, stored_at_ms) \
     VALUES ($1, $2, DB_NOW_MS) ON CONFLICT (hash) DO NOTHING";

/// The PostgreSQL notification channel that says runs were queued.
const RUNS_QUEUED: &str = "sooth_runs_queued";
/// The PostgreSQL notification channel that says queued runs were recorded.
const RUNS_RECORDED: &str = "sooth_runs_recorded";

/// Hears the run queue's notifications (PostgreSQL's `LISTEN`): runs queued, so that an idle
/// worker claims at once; or runs recorded, so that the scheduler waiting for them goes on at
/// once.
#[derive(Debug)]
pub struct QueueListener {
    listener: sqlx::postgres::PgListener,
}

impl QueueListener {
    /// Completes when the listened-for happened since the last call, or when the connection
    /// was lost and found again (it may have happened meanwhile).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when the connection cannot be found again.
    pub async fn heard(&mut self) -> Result<(), StoreError> {
        self.listener.try_recv().await?;
        Ok(())
    }
}

impl Store {
    /// A listener of runs queued, on PostgreSQL (`None` on SQLite, where one process does
    /// everything).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when the listening connection cannot be opened.
    pub async fn queue_listener(&self) -> Result<Option<QueueListener>, StoreError> {
        self.listener(RUNS_QUEUED).await
    }

    /// A listener of queued runs recorded, on PostgreSQL (`None` on SQLite).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when the listening connection cannot be opened.
    pub async fn records_listener(&self) -> Result<Option<QueueListener>, StoreError> {
        self.listener(RUNS_RECORDED).await
    }

    async fn listener(&self, channel: &str) -> Result<Option<QueueListener>, StoreError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(channel).await?;
        Ok(Some(QueueListener { listener }))
    }

    /// Hands `runs` to the workers, queued at the database's clock; a run already queued or
    /// already recorded is left as it is, and so is a run whose event, miner or entry is not on
    /// record (the scheduler queues what the store says is owed). Returns how many were queued.
    /// The runs go in by statements of [`ENQUEUE_BATCH`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn enqueue_runs(&self, runs: &[QueuedRun]) -> Result<usize, StoreError> {
        if self.engine == super::Engine::Postgres && runs.len() <= ENQUEUE_BATCH {
            // One statement, its own transaction: the insert and, if it queued anything, the
            // notification (delivered at its commit).
            let text = format!(
                "WITH inserted AS ({} RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM inserted) AS queued, \
                        (SELECT COUNT(*) FROM (SELECT 1 FROM inserted LIMIT 1) AS any_run \
                           CROSS JOIN LATERAL pg_notify(${}, '') AS n) AS notified",
                enqueue_sql(runs.len()),
                runs.len() * 7 + 1
            );
            let sql = self.sql(&text);
            let queued: i64 = bind_queued(sqlx::query(&sql), runs)
                .bind(RUNS_QUEUED)
                .fetch_one(&self.writer)
                .await?
                .try_get("queued")?;
            return Ok(usize::try_from(queued).unwrap_or(0));
        }
        let mut transaction = self.begin_queue().await?;
        let mut queued = 0;
        for batch in runs.chunks(ENQUEUE_BATCH) {
            let text = enqueue_sql(batch.len());
            let sql = self.sql(&text);
            let inserted = bind_queued(sqlx::query(&sql), batch)
                .execute(&mut *transaction)
                .await?;
            queued += usize::try_from(inserted.rows_affected()).unwrap_or(0);
        }
        if queued > 0 && self.engine == super::Engine::Postgres {
            // Delivered at the commit: idle workers claim at once instead of at their next poll.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(RUNS_QUEUED)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(queued)
    }

    /// Claims up to `max` of the oldest claimable runs for `worker` under a lease of `lease`
    /// from now by the database's clock. A worker that is not registered and running (see
    /// [`register_worker`](Self::register_worker)) claims nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn claim_runs(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        if self.engine == super::Engine::Postgres {
            if max == 0 {
                return Ok(Vec::new());
            }
            // One round trip instead of seven: the claim is what each run through a worker
            // waits for.
            let rows = sqlx::query(&self.sql(CLAIM_POSTGRES))
                .bind(worker)
                .bind(lease_ms)
                .bind(limit)
                .fetch_all(&self.writer)
                .await?;
            return rows.iter().map(claimed_from_row).collect();
        }
        let mut transaction = self.begin_queue().await?;
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM validator_workers WHERE worker_id = $1 AND state = 'running'",
        )
        .bind(worker)
        .fetch_optional(&mut *transaction)
        .await?;
        if running.is_none() || max == 0 {
            return Ok(Vec::new());
        }
        let picked = sqlx::query(&self.sql(
            "SELECT run_id, claimed_by FROM validator_run_queue \
              WHERE lease_until_ms IS NULL OR lease_until_ms < DB_NOW_MS \
              ORDER BY queued_at_ms, run_id \
              LIMIT $1 \
              FOR UPDATE SKIP LOCKED",
        ))
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let mut run_ids = Vec::with_capacity(picked.len());
        // Leases that ended under another worker, counted against it.
        let mut expired: HashMap<String, i64> = HashMap::new();
        for row in &picked {
            run_ids.push(row.try_get::<String, _>("run_id")?);
            if let Some(previous) = row.try_get::<Option<String>, _>("claimed_by")? {
                *expired.entry(previous).or_default() += 1;
            }
        }
        let list = placeholders(2, run_ids.len());
        let update = format!(
            "UPDATE validator_run_queue \
                SET claimed_by = $1, lease_until_ms = DB_NOW_MS + $2, attempts = attempts + 1 \
              WHERE run_id IN ({list})",
        );
        let update = self.sql(&update);
        let mut query = sqlx::query(&update).bind(worker).bind(lease_ms);
        for run_id in &run_ids {
            query = query.bind(run_id);
        }
        query.execute(&mut *transaction).await?;
        let select = format!(
            "SELECT q.run_id, q.attempts, q.component_hash, q.gateway_name, q.uid, \
                    m.hotkey AS miner_hotkey, p.name AS entry_name, \
                    e.id, e.kind, e.title, e.description, e.metadata, e.created_at_ms, \
                    e.cutoff_ms, e.status, e.outcome, e.resolved_at_ms \
               FROM validator_run_queue q \
               JOIN validator_events e ON e.event_no = q.event_no \
               LEFT JOIN validator_miners m ON m.miner_no = q.miner_no \
               LEFT JOIN validator_reference_entries p ON p.entry_no = q.entry_no \
              WHERE q.run_id IN ({}) \
              ORDER BY q.queued_at_ms, q.run_id",
            placeholders(0, run_ids.len())
        );
        let mut query = sqlx::query(&select);
        for run_id in &run_ids {
            query = query.bind(run_id);
        }
        let rows = query.fetch_all(&mut *transaction).await?;
        let claims = rows
            .iter()
            .map(claimed_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let claimed = i64::try_from(claims.len()).unwrap_or(i64::MAX);
        add_to_worker_counts(self, &mut transaction, worker, claimed, 0, 0).await?;
        for (previous, count) in &expired {
            add_to_worker_counts(self, &mut transaction, previous, 0, 0, *count).await?;
        }
        transaction.commit().await?;
        Ok(claims)
    }

    /// Extends by `lease` from now the leases `worker` still holds (not those that ended);
    /// returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn renew_leases(&self, worker: &str, lease: Duration) -> Result<u64, StoreError> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let renewed = sqlx::query(&self.sql(
            "UPDATE validator_run_queue SET lease_until_ms = DB_NOW_MS + $2 \
              WHERE claimed_by = $1 AND lease_until_ms >= DB_NOW_MS",
        ))
        .bind(worker)
        .bind(lease_ms)
        .execute(&self.writer)
        .await?;
        Ok(renewed.rows_affected())
    }

    /// Records the outcomes of claimed runs, each only if `worker` still holds its lease with
    /// the same attempt, in one transaction; the runs finish at the database's clock. Returns
    /// what became of each, in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidRun`] when an outcome does not hold together (checked before
    /// anything is written); [`StoreError::Database`] (nothing is recorded then: the worker
    /// keeps the outcomes and tries again while its leases run).
    pub async fn record_claimed(
        &self,
        worker: &str,
        finished: &[FinishedClaim],
    ) -> Result<Vec<ClaimRecorded>, StoreError> {
        for done in finished {
            done.executed
                .check()
                .map_err(|problem| StoreError::InvalidRun {
                    event_id: done.claim.event.event.id.clone(),
                    hotkey: done.claim.run.gateway_name.clone(),
                    problem,
                })?;
        }
        let record_miner_run = self.sql(RECORD_MINER_RUN_POSTGRES);
        if let ([done], super::Engine::Postgres) = (finished, self.engine)
            && let RunOwner::Miner { hotkey } = &done.claim.run.owner
        {
            // A run alone: its one statement is its own transaction.
            let outcome = record_miner_run_at_once(
                &self.writer,
                &record_miner_run,
                worker,
                done,
                hotkey,
                RUNS_RECORDED,
            )
            .await?;
            return Ok(vec![outcome]);
        }
        let mut transaction = self.begin_queue().await?;
        // Read once, when a run needs it: a miner's run on PostgreSQL takes the clock in its
        // own statement.
        let mut finished_at = None;
        let release = self.sql(
            "DELETE FROM validator_run_queue \
              WHERE run_id = $1 AND claimed_by = $2 AND attempts = $3 \
                AND lease_until_ms >= DB_NOW_MS",
        );
        let mut entries = HashMap::new();
        let mut outcomes = Vec::with_capacity(finished.len());
        let mut recorded = 0_i64;
        let mut notify = false;
        for done in finished {
            if let (super::Engine::Postgres, RunOwner::Miner { hotkey }) =
                (self.engine, &done.claim.run.owner)
            {
                // Counts the worker's record and notifies by itself.
                let outcome = record_miner_run_at_once(
                    &mut *transaction,
                    &record_miner_run,
                    worker,
                    done,
                    hotkey,
                    RUNS_RECORDED,
                )
                .await?;
                outcomes.push(outcome);
                continue;
            }
            let released = sqlx::query(&release)
                .bind(&done.claim.run.run_id)
                .bind(worker)
                .bind(i64::from(done.claim.attempt))
                .execute(&mut *transaction)
                .await?;
            if released.rows_affected() == 0 {
                outcomes.push(ClaimRecorded::LeaseLost);
                continue;
            }
            let finished_at = match finished_at {
                Some(at) => at,
                None => {
                    let now_ms: i64 = sqlx::query_scalar(&self.sql("SELECT DB_NOW_MS"))
                        .fetch_one(&mut *transaction)
                        .await?;
                    *finished_at.insert(from_ms(now_ms, "the database's clock")?)
                }
            };
            let outcome = record_one(&mut transaction, done, finished_at, &mut entries).await?;
            recorded += i64::from(outcome == RunRecorded::Inserted);
            notify = true;
            outcomes.push(ClaimRecorded::Recorded(outcome));
        }
        // A lost lease is counted as expired when another worker takes the run over.
        if self.engine == super::Engine::Postgres && notify {
            sqlx::query(&self.sql(COUNT_AND_NOTIFY_POSTGRES))
                .bind(worker)
                .bind(recorded)
                .bind(RUNS_RECORDED)
                .execute(&mut *transaction)
                .await?;
        } else {
            add_to_worker_counts(self, &mut transaction, worker, 0, recorded, 0).await?;
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    /// Gives a claim back to the queue at once (the worker cannot run it); its attempt stays
    /// counted. Returns whether the worker still held it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn release_claim(
        &self,
        worker: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<bool, StoreError> {
        let released = sqlx::query(
            "UPDATE validator_run_queue SET claimed_by = NULL, lease_until_ms = NULL \
              WHERE run_id = $1 AND claimed_by = $2 AND attempts = $3",
        )
        .bind(run_id)
        .bind(worker)
        .bind(i64::from(attempt))
        .execute(&self.writer)
        .await?;
        Ok(released.rows_affected() == 1)
    }

    /// How many runs wait for a worker and how many are leased.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT \
                COALESCE(SUM(CASE WHEN lease_until_ms IS NULL OR lease_until_ms < DB_NOW_MS \
                                  THEN 1 ELSE 0 END), 0) AS waiting, \
                COALESCE(SUM(CASE WHEN lease_until_ms >= DB_NOW_MS THEN 1 ELSE 0 END), 0) \
                    AS leased \
               FROM validator_run_queue",
        ))
        .fetch_one(&self.reader)
        .await?;
        let count = |name: &str| -> Result<u64, StoreError> {
            let value: i64 = row.try_get(name)?;
            u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{name} is {value}")))
        };
        Ok(QueueCounts {
            waiting: count("waiting")?,
            leased: count("leased")?,
        })
    }

    /// Whether no run is queued, waiting or leased: what a scheduler waiting for its workers
    /// asks after each record it hears of, cheaper than [`queue_counts`](Self::queue_counts).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn queue_is_empty(&self) -> Result<bool, StoreError> {
        let queued: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM validator_run_queue) THEN 1 ELSE 0 END",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(queued == 0)
    }

    /// Keeps a component where every worker can read it, under its content hash (written once;
    /// the caller has checked that `hash` is the bytes' hash).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn put_component(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        sqlx::query(&self.sql(PUT_COMPONENT))
            .bind(hash)
            .bind(bytes)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Whether a component with this hash is kept (see [`put_component`](Self::put_component)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn has_component(&self, hash: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM validator_components WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    /// The component kept under `hash`, if any (the caller checks its hash).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM validator_components WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.reader)
                .await?,
        )
    }
}

/// Records one claimed run's outcome inside `transaction`; `entries` caches the reference
/// entries' numbers by name across a batch.
async fn record_one(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    done: &FinishedClaim,
    finished_at: DateTime<Utc>,
    entries: &mut HashMap<String, i64>,
) -> Result<RunRecorded, StoreError> {
    let run = &done.claim.run;
    match &run.owner {
        RunOwner::Miner { hotkey } => {
            insert_run(
                transaction,
                &NewRun {
                    event_id: run.event_id.clone(),
                    hotkey: hotkey.clone(),
                    version_hash: run.component_hash.clone(),
                    executed: done.executed.clone(),
                    finished_at,
                },
            )
            .await
        }
        RunOwner::Benchmark { entry } => {
            insert_reference_forecast(
                transaction,
                &NewReferenceForecast {
                    event_id: run.event_id.clone(),
                    entry: entry.clone(),
                    executed: Some(done.executed.clone()),
                    finished_at,
                },
                entries,
            )
            .await
        }
    }
}

/// The statement that queues `count` runs (7 parameters each, see [`bind_queued`]): those
/// whose event is known, whose miner or benchmark entry is known, and that are not recorded
/// yet nor queued already.
fn enqueue_sql(count: usize) -> String {
    let values = (0..count)
        .map(|row| format!("({})", placeholders(row * 7, 7)))
        .collect::<Vec<_>>()
        .join(", ");
    // VALUES' columns are column1..column7 on both engines: run id, event id, hotkey (or
    // null), entry (or null), component, gateway name, uid.
    format!(
        "INSERT INTO validator_run_queue \
             (run_id, event_no, miner_no, entry_no, component_hash, gateway_name, uid, \
              queued_at_ms) \
         SELECT v.column1, e.event_no, m.miner_no, p.entry_no, v.column5, v.column6, \
                v.column7, DB_NOW_MS \
           FROM (VALUES {values}) AS v \
           JOIN validator_events e ON e.id = v.column2 \
           LEFT JOIN validator_miners m ON m.hotkey = v.column3 \
           LEFT JOIN validator_reference_entries p ON p.name = v.column4 \
          WHERE (m.miner_no IS NOT NULL OR p.entry_no IS NOT NULL) \
            AND NOT EXISTS (SELECT 1 FROM validator_runs r \
                             WHERE r.event_no = e.event_no AND r.miner_no = m.miner_no) \
            AND NOT EXISTS (SELECT 1 FROM validator_reference_forecasts f \
                             WHERE f.event_no = e.event_no AND f.entry_no = p.entry_no) \
         ON CONFLICT (run_id) DO NOTHING"
    )
}

/// Binds `runs` to [`enqueue_sql`]'s parameters.
fn bind_queued<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    runs: &'q [QueuedRun],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for run in runs {
        let (hotkey, entry) = match &run.owner {
            RunOwner::Miner { hotkey } => (Some(hotkey.as_str()), None),
            RunOwner::Benchmark { entry } => (None, Some(entry.as_str())),
        };
        query = query
            .bind(&run.run_id)
            .bind(&run.event_id)
            .bind(hotkey)
            .bind(entry)
            .bind(&run.component_hash)
            .bind(&run.gateway_name)
            .bind(i64::from(run.uid));
    }
    query
}

/// `$start+1, $start+2, ...`: `count` placeholders after the first `start`.
fn placeholders(start: usize, count: usize) -> String {
    (start + 1..=start + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn claimed_from_row(row: &AnyRow) -> Result<ClaimedRun, StoreError> {
    let event = event_from_row(row)?;
    let miner: Option<String> = row.try_get("miner_hotkey")?;
    let entry: Option<String> = row.try_get("entry_name")?;
    let owner = match (miner, entry) {
        (Some(hotkey), None) => RunOwner::Miner { hotkey },
        (None, Some(entry)) => RunOwner::Benchmark { entry },
        _ => {
            return Err(StoreError::Corrupt(
                "a queued run is neither a miner's nor a benchmark's".to_owned(),
            ));
        }
    };
    let attempts: i64 = row.try_get("attempts")?;
    Ok(ClaimedRun {
        run: QueuedRun {
            run_id: row.try_get("run_id")?,
            event_id: event.event.id.clone(),
            owner,
            component_hash: row.try_get("component_hash")?,
            gateway_name: row.try_get("gateway_name")?,
            uid: uid_from(row.try_get("uid")?)?,
        },
        event,
        attempt: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("a run claimed {attempts} times")))?,
    })
}
