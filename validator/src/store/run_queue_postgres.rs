//! The run queue's statements that PostgreSQL runs in one round trip each where SQLite takes
//! several (data-modifying `WITH` clauses): the claim, a miner's record, and the worker's
//! count with the notification. Each run through a worker waits for these, so each round trip
//! saved is paid back on every run. The SQLite forms stay in `run_queue.rs`.

use sqlx::Row;

use super::dialect::BindOptionalF64;
use super::run_queue::{ClaimRecorded, FinishedClaim};
use super::{RunRecorded, StoreError};

/// [`Store::claim_runs`] on PostgreSQL, as one statement: picks the oldest claimable runs
/// (none unless `$1` is a running worker), leases them to worker `$1` for `$2` ms, counts them
/// as claimed by it and, those whose lease ended under another worker, as expired for that
/// one, and returns them with their events, oldest first.
///
/// The claim commits without waiting for its WAL to reach the disk (a flush costs about as much
/// as the rest of a light run's hand-off). A claim lost with the server's last transactions
/// only puts its runs back in the queue: the worker's record is then refused (its attempt is
/// not the row's, or the row was claimed again), and the record, which does wait, flushes
/// every claim before it.
pub(super) const CLAIM_POSTGRES: &str = "\
WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', TRUE) AS setting),
picked AS (
    SELECT run_id, claimed_by AS previous
      FROM validator_run_queue
     WHERE (lease_until_ms IS NULL OR lease_until_ms < DB_NOW_MS)
       AND EXISTS (SELECT 1 FROM validator_workers
                    WHERE worker_id = $1 AND state = 'running')
       AND (SELECT setting FROM async_commit) = 'off'
     ORDER BY queued_at_ms, run_id
     LIMIT $3
       FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE validator_run_queue q
       SET claimed_by = $1, lease_until_ms = DB_NOW_MS + $2, attempts = q.attempts + 1
      FROM picked
     WHERE q.run_id = picked.run_id
 RETURNING q.run_id, q.attempts, q.component_hash, q.gateway_name, q.uid, q.event_no,
           q.miner_no, q.entry_no, q.queued_at_ms, picked.previous),
counted AS (
    UPDATE validator_workers w
       SET claimed = w.claimed + x.claimed, expired = w.expired + x.expired,
           seen_at_ms = DB_NOW_MS
      FROM (SELECT worker, SUM(claimed) AS claimed, SUM(expired) AS expired
              FROM (SELECT $1 AS worker, COUNT(*) AS claimed, 0 AS expired FROM claimed
                    UNION ALL
                    SELECT previous, 0, COUNT(*) FROM claimed
                     WHERE previous IS NOT NULL GROUP BY previous) AS parts
             GROUP BY worker
            HAVING SUM(claimed) + SUM(expired) > 0) AS x
     WHERE w.worker_id = x.worker)
SELECT c.run_id, c.attempts, c.component_hash, c.gateway_name, c.uid,
       m.hotkey AS miner_hotkey, p.name AS entry_name,
       e.id, e.kind, e.title, e.description, e.metadata, e.created_at_ms,
       e.cutoff_ms, e.status, e.outcome, e.resolved_at_ms
  FROM claimed c
  JOIN validator_events e ON e.event_no = c.event_no
  LEFT JOIN validator_miners m ON m.miner_no = c.miner_no
  LEFT JOIN validator_reference_entries p ON p.entry_no = c.entry_no
 ORDER BY c.queued_at_ms, c.run_id";

/// Records a miner's claimed run on PostgreSQL in one statement (see
/// [`RECORD_MINER_RUN_POSTGRES`]), through `executor`: a transaction holding a batch, or the
/// pool for a run alone (the statement is its own transaction then).
pub(super) async fn record_miner_run_at_once<'c, E>(
    executor: E,
    sql: &str,
    worker: &str,
    done: &FinishedClaim,
    hotkey: &str,
    channel: &str,
) -> Result<ClaimRecorded, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let run = &done.claim.run;
    let executed = &done.executed;
    let row = sqlx::query(sql)
        .bind(&run.run_id)
        .bind(worker)
        .bind(i64::from(done.claim.attempt))
        .bind(&run.component_hash)
        .bind(executed.status.as_str())
        .bind_optional_f64(executed.prediction)
        .bind_optional_f64(executed.clipped_prediction())
        // Checked: the duration fits.
        .bind(i64::try_from(executed.duration_ms).unwrap_or(i64::MAX))
        .bind(&executed.logs)
        .bind(executed.gateway_usage.to_string())
        .bind(executed.cost_usd)
        .bind(channel)
        .fetch_one(executor)
        .await?;
    let count = |name: &str| row.try_get::<i64, _>(name);
    if count("held")? == 0 {
        return Ok(ClaimRecorded::LeaseLost);
    }
    if count("versioned")? == 0 {
        return Err(StoreError::UnknownVersion {
            hotkey: hotkey.to_owned(),
            hash: run.component_hash.clone(),
        });
    }
    Ok(ClaimRecorded::Recorded(RunRecorded::of_insert(
        u64::try_from(count("inserted")?).unwrap_or(0),
    )))
}

/// A miner's claimed run recorded on PostgreSQL in one statement. If worker `$2` still holds
/// the run's lease with attempt `$3` and the miner has a version of hash `$4`: the queue row
/// is deleted, the run inserted (finished at the database's clock; not if it was there
/// already), the worker's completed count raised and the scheduler notified on channel
/// `$12`. Says whether the lease was held, the version found and the run inserted; when the
/// version is unknown nothing is written.
pub(super) const RECORD_MINER_RUN_POSTGRES: &str = "\
WITH held AS (
    SELECT run_id, event_no, miner_no
      FROM validator_run_queue
     WHERE run_id = $1 AND claimed_by = $2 AND attempts = $3 AND lease_until_ms >= DB_NOW_MS
       FOR UPDATE),
versioned AS (
    SELECT h.run_id, h.event_no, h.miner_no, v.version_no
      FROM held h
      JOIN validator_agent_versions v ON v.miner_no = h.miner_no AND v.hash = $4),
released AS (
    DELETE FROM validator_run_queue q
     USING versioned v
     WHERE q.run_id = v.run_id
 RETURNING q.run_id),
inserted AS (
    INSERT INTO validator_runs
           (event_no, miner_no, version_no, status, prediction, clipped_prediction,
            duration_ms, logs, gateway_usage, cost_usd, finished_at_ms)
    SELECT event_no, miner_no, version_no, $5, $6, $7, $8, $9, $10, $11, DB_NOW_MS
      FROM versioned
        ON CONFLICT (event_no, miner_no) DO NOTHING
 RETURNING 1),
counted AS (
    UPDATE validator_workers
       SET completed = completed + (SELECT COUNT(*) FROM inserted), seen_at_ms = DB_NOW_MS
     WHERE worker_id = $2 AND EXISTS (SELECT 1 FROM released))
SELECT (SELECT COUNT(*) FROM held) AS held,
       (SELECT COUNT(*) FROM versioned) AS versioned,
       (SELECT COUNT(*) FROM inserted) AS inserted,
       (SELECT COUNT(*) FROM released CROSS JOIN LATERAL pg_notify($12, '') AS n) AS notified";

/// The worker's completed count, and the notification that runs were recorded, in one
/// statement.
pub(super) const COUNT_AND_NOTIFY_POSTGRES: &str = "\
WITH counted AS (
    UPDATE validator_workers SET completed = completed + $2, seen_at_ms = DB_NOW_MS
     WHERE worker_id = $1
 RETURNING 1)
SELECT pg_notify($3, '') FROM (SELECT 1) AS always";
