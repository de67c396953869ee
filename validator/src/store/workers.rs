//! Runner workers (`validator_workers`) and the scheduler's sandbox and verification plan
//! (`validator_scheduler`).
//!
//! Owns who may claim runs: a worker registers with its sandbox's version, and is turned away
//! unless it matches the scheduler's (a run must mean the same on every host). It keeps each
//! worker's counts (claimed, completed, leases that expired) for `/metrics` and `sooth
//! validator status`. It must not claim or record runs (that is `run_queue`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, from_ms};
use chrono::{DateTime, Utc};

/// A worker as it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRegistration {
    /// Its id, unique among the workers of a validator (a host name and a process id, say).
    pub worker_id: String,
    /// The host it runs on.
    pub host: String,
    /// Its sandbox's version (`sooth_runner::Runner::sandbox_version`).
    pub sandbox_version: String,
    /// How many runs it runs at once.
    pub concurrency: u32,
}

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Claiming and running.
    Running,
    /// Finishing what it holds, claiming nothing more.
    Draining,
    /// Exited.
    Stopped,
    /// Turned away: its sandbox differs from the scheduler's.
    Refused,
}

impl WorkerState {
    /// The word stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Stopped => "stopped",
            Self::Refused => "refused",
        }
    }

    fn parse(word: &str) -> Result<Self, StoreError> {
        Ok(match word {
            "running" => Self::Running,
            "draining" => Self::Draining,
            "stopped" => Self::Stopped,
            "refused" => Self::Refused,
            other => return Err(StoreError::Corrupt(format!("worker state {other:?}"))),
        })
    }
}

/// A worker as stored, with the leases it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// As it registered.
    pub registration: WorkerRegistration,
    /// What it is doing.
    pub state: WorkerState,
    /// When it (last) registered, by the database's clock.
    pub started_at: DateTime<Utc>,
    /// When it last claimed, recorded or renewed its leases, by the database's clock.
    pub seen_at: DateTime<Utc>,
    /// Runs it claimed, ever.
    pub claimed: u64,
    /// Runs it recorded, ever.
    pub completed: u64,
    /// Its leases that ended before it recorded (another worker took the run over, or its
    /// record came too late).
    pub expired: u64,
    /// Runs it holds under a lease that runs now.
    pub leased: u64,
    /// Why it was refused, if it was.
    pub detail: String,
}

impl Store {
    /// Records the sandbox version the scheduler runs: workers must match it to claim runs.
    /// The scheduler publishes no verification plan: it verifies in its own process.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn set_scheduler_sandbox(&self, sandbox_version: &str) -> Result<(), StoreError> {
        self.set_scheduler(sandbox_version, None).await
    }

    /// Records the sandbox version the scheduler runs (workers must match it to claim runs)
    /// and, when its workers verify versions too, its verification plan (the JSON of
    /// `verification::VerificationPlan`), together.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn set_scheduler(
        &self,
        sandbox_version: &str,
        verification_plan: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "INSERT INTO validator_scheduler (singleton, sandbox_version, seen_at_ms, \
                                              verification_plan) \
             VALUES (1, $1, DB_NOW_MS, $2) \
             ON CONFLICT (singleton) DO UPDATE \
                SET sandbox_version = excluded.sandbox_version, seen_at_ms = excluded.seen_at_ms, \
                    verification_plan = excluded.verification_plan",
        ))
        .bind(sandbox_version)
        .bind(verification_plan)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The database's clock now: what hosts whose clocks disagree measure leases by.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`] for an instant out of range.
    pub async fn database_now(&self) -> Result<DateTime<Utc>, StoreError> {
        let now: i64 = sqlx::query_scalar(&self.sql("SELECT DB_NOW_MS"))
            .fetch_one(&self.reader)
            .await?;
        from_ms(now, "the database's clock")
    }

    /// The verification plan the scheduler published, if it did (see
    /// [`set_scheduler`](Self::set_scheduler)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn verification_plan(&self) -> Result<Option<String>, StoreError> {
        let plan: Option<Option<String>> =
            sqlx::query_scalar("SELECT verification_plan FROM validator_scheduler")
                .fetch_optional(&self.reader)
                .await?;
        Ok(plan.flatten())
    }

    /// Registers a worker (again, after a restart: its counts are kept) as running, if its
    /// sandbox is the scheduler's.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoScheduler`] when no scheduler has started on this database yet (nothing
    /// is recorded: the worker may wait for one); [`StoreError::WorkerRefused`] when the
    /// scheduler's sandbox differs (the worker is recorded as refused, with the reason);
    /// [`StoreError::Database`].
    pub async fn register_worker(&self, worker: &WorkerRegistration) -> Result<(), StoreError> {
        let mut transaction = self.begin_queue().await?;
        let scheduler: Option<String> =
            sqlx::query_scalar("SELECT sandbox_version FROM validator_scheduler")
                .fetch_optional(&mut *transaction)
                .await?;
        let refusal = match &scheduler {
            None => return Err(StoreError::NoScheduler),
            Some(version) if *version != worker.sandbox_version => Some(format!(
                "the scheduler runs sandbox {version:?}, this worker {:?}; run the same sooth \
                 release on every host",
                worker.sandbox_version
            )),
            Some(_) => None,
        };
        let state = if refusal.is_some() {
            WorkerState::Refused
        } else {
            WorkerState::Running
        };
        sqlx::query(&self.sql(
            "INSERT INTO validator_workers \
                 (worker_id, host, sandbox_version, concurrency, state, started_at_ms, \
                  seen_at_ms, detail) \
             VALUES ($1, $2, $3, $4, $5, DB_NOW_MS, DB_NOW_MS, $6) \
             ON CONFLICT (worker_id) DO UPDATE \
                SET host = excluded.host, sandbox_version = excluded.sandbox_version, \
                    concurrency = excluded.concurrency, state = excluded.state, \
                    started_at_ms = excluded.started_at_ms, seen_at_ms = excluded.seen_at_ms, \
                    detail = excluded.detail",
        ))
        .bind(&worker.worker_id)
        .bind(&worker.host)
        .bind(&worker.sandbox_version)
        .bind(i64::from(worker.concurrency))
        .bind(state.as_str())
        .bind(refusal.as_deref().unwrap_or_default())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        match refusal {
            Some(reason) => Err(StoreError::WorkerRefused {
                worker_id: worker.worker_id.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Sets a registered worker's state. A stopped worker's unfinished claims go back to the
    /// queue at once (their attempts stay counted, so a late record of its still fails).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn set_worker_state(
        &self,
        worker_id: &str,
        state: WorkerState,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin_queue().await?;
        sqlx::query(&self.sql(
            "UPDATE validator_workers SET state = $2, seen_at_ms = DB_NOW_MS WHERE worker_id = $1",
        ))
        .bind(worker_id)
        .bind(state.as_str())
        .execute(&mut *transaction)
        .await?;
        if state == WorkerState::Stopped {
            sqlx::query(
                "UPDATE validator_run_queue SET claimed_by = NULL, lease_until_ms = NULL \
                  WHERE claimed_by = $1",
            )
            .bind(worker_id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Every worker that ever registered, by id, with the leases each holds now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT w.worker_id, w.host, w.sandbox_version, w.concurrency, w.state, \
                    w.started_at_ms, w.seen_at_ms, w.claimed, w.completed, w.expired, w.detail, \
                    (SELECT COUNT(*) FROM validator_run_queue q \
                      WHERE q.claimed_by = w.worker_id AND q.lease_until_ms >= DB_NOW_MS) \
                        AS leased \
               FROM validator_workers w \
              ORDER BY w.worker_id",
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(worker_from_row).collect()
    }
}

/// Adds to a worker's counts inside `transaction`, and marks it seen.
pub(super) async fn add_to_worker_counts(
    store: &Store,
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    worker_id: &str,
    claimed: i64,
    completed: i64,
    expired: i64,
) -> Result<(), StoreError> {
    sqlx::query(&store.sql(
        "UPDATE validator_workers \
            SET claimed = claimed + $2, completed = completed + $3, expired = expired + $4, \
                seen_at_ms = DB_NOW_MS \
          WHERE worker_id = $1",
    ))
    .bind(worker_id)
    .bind(claimed)
    .bind(completed)
    .bind(expired)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

fn count(row: &AnyRow, name: &str) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(name)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("worker {name} is {value}")))
}

fn worker_from_row(row: &AnyRow) -> Result<WorkerRecord, StoreError> {
    let concurrency: i64 = row.try_get("concurrency")?;
    Ok(WorkerRecord {
        registration: WorkerRegistration {
            worker_id: row.try_get("worker_id")?,
            host: row.try_get("host")?,
            sandbox_version: row.try_get("sandbox_version")?,
            concurrency: u32::try_from(concurrency)
                .map_err(|_| StoreError::Corrupt(format!("worker concurrency {concurrency}")))?,
        },
        state: WorkerState::parse(&row.try_get::<String, _>("state")?)?,
        started_at: from_ms(row.try_get("started_at_ms")?, "started_at_ms")?,
        seen_at: from_ms(row.try_get("seen_at_ms")?, "seen_at_ms")?,
        claimed: count(row, "claimed")?,
        completed: count(row, "completed")?,
        expired: count(row, "expired")?,
        leased: count(row, "leased")?,
        detail: row.try_get("detail")?,
    })
}
