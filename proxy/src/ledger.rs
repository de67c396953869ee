//! The spend ledger: budgets that cannot be overspent.
//!
//! Before the gateway forwards a request upstream it [`reserve`](Ledger::reserve)s
//! the request's worst-case cost. The reservation only succeeds if it fits
//! under both caps that apply to it:
//!
//! * the **run cap**: what this run may spend on this service, and
//! * the **miner-day cap**: what this miner may spend on this service during
//!   one UTC day (the caller passes the cap that applies, e.g. a higher one
//!   when the miner linked their own API key).
//!
//! "Fits" means `committed + amount <= cap`, where *committed* is the sum of
//! the settled charges and the still-open reservations in that scope. After
//! the answer the reservation is [`settle`](Ledger::settle)d to the real cost
//! (never more than was reserved: an excess is only recorded as an overrun,
//! so the caps hold) or [`release`](Ledger::release)d with no charge when the
//! upstream failed without billing.
//!
//! # Storage
//!
//! A SQLite file (schema: `migrations/sqlite/0001_gateway_ledger.sql` and
//! `0003_gateway_ledger_triggers.sql`, applied on open) in WAL mode, so a
//! restart forgets nothing. Every reservation is a row (kept after it is
//! closed, for audits); per-scope totals (open and charged, per run and
//! service, per miner, day and service) are kept by triggers on those rows,
//! so that a cap check reads two rows instead of summing a miner's whole day
//! ([`Ledger::check_consistency`] verifies them against the rows). Money is
//! stored as integer micro-dollars (1 USD = 1,000,000); the API speaks `f64`
//! USD and converts at the boundary: reservations and their caps are rounded
//! in the safe direction (amounts up, caps down), settlements to the nearest
//! micro-dollar.
//!
//! # Concurrency
//!
//! The check-and-insert of [`reserve`](Ledger::reserve) must be atomic, or two
//! requests could both see room for one. It is a single statement
//! (`INSERT ... SELECT ... WHERE <fits under both caps>`), and a SQLite
//! statement runs under the database's write lock from its first write to
//! its commit, triggers included; closing is likewise one `UPDATE`. (A
//! refusal is decided again inside a `BEGIN IMMEDIATE` transaction, so that
//! the error reports the cap and the amounts that refused it.)
//!
//! * Inside one process, every write goes through a pool of exactly **one**
//!   connection: writers queue for it (fairly, in arrival order) instead of
//!   spinning on `SQLITE_BUSY`. Reads (the query methods) use a separate pool
//!   and see the last committed state (WAL snapshots) without blocking writers.
//! * Across processes (or [`Ledger`]s on one file) the same holds: a
//!   statement that writes takes the write lock before its first read (as
//!   `BEGIN IMMEDIATE` does), so the totals it checks cannot change before
//!   it commits; other writers wait up to `busy_timeout`.
//!
//! One statement per operation keeps each write to one round trip to the
//! connection's thread (about 40 µs on the 2-core machine, against 250 µs
//! for the five-statement transactions this replaced). WAL checkpoints,
//! which need an fsync, run in a background task
//! ([`LedgerOptions::checkpoint_interval`]) rather than inside a request's
//! commit.
//!
//! # Crash safety
//!
//! A reservation is durable once [`reserve`](Ledger::reserve) returns. If the
//! process dies between reserving and settling, the reservation stays open
//! and keeps counting against the caps. **The validator calls
//! [`release_stale`](Ledger::release_stale) at startup** (with an age longer
//! than any run can last) to drop such leftovers without charging them; they
//! are marked `stale`, not deleted, so they remain visible for audits. The
//! same holds for a `reserve` future dropped after its commit (the caller
//! never learns the id).
//!
//! With the default options the file uses `synchronous = NORMAL`: a crash of
//! the process loses nothing, a power cut may lose the last transactions.
//! [`LedgerOptions::durable`] selects `synchronous = FULL` (an fsync per
//! commit) when that matters more than latency.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::database::{BackgroundTask, MIGRATOR, single_connection_pool};

/// Micro-dollars per US dollar.
const MICROS_PER_USD: f64 = 1_000_000.0;

/// The largest amount or cap accepted, in USD (far below where micro-dollars
/// would overflow an `i64`).
pub const MAX_USD: f64 = 1e9;

/// How close (in micro-dollars) a converted amount must be to a whole number
/// of micro-dollars to be taken as that number rather than rounded. Absorbs
/// binary floating-point noise: `0.000123 * 1e6` is `123.00000000000001`,
/// which must reserve 123 micro-dollars, not 124, and a cap of `1.001 * 1e6`
/// (`1000999.9999999999`) is 1,001,000, not 1,000,999.
const ROUNDING_SLACK_MICROS: f64 = 1e-3;

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The reservation does not fit under a cap; nothing was reserved.
    #[error(
        "budget exceeded ({scope} cap): cap {cap_usd} USD, committed {committed_usd} USD, \
         requested {requested_usd} USD"
    )]
    BudgetExceeded {
        /// Which cap refused it (the run cap is checked first).
        scope: BudgetScope,
        /// The cap, in USD.
        cap_usd: f64,
        /// What was already committed in that scope (settled plus reserved), in USD.
        committed_usd: f64,
        /// The amount asked for (after rounding up to whole micro-dollars), in USD.
        requested_usd: f64,
    },
    /// No reservation has this id.
    #[error("unknown reservation {0}")]
    UnknownReservation(ReservationId),
    /// The reservation was already settled, released or dropped as stale.
    #[error("reservation {id} is already closed ({state})")]
    AlreadyClosed {
        /// The reservation.
        id: ReservationId,
        /// How it was closed.
        state: ReservationState,
    },
    /// An amount or cap that is negative, not finite, or absurdly large.
    #[error("invalid {field}: {value}")]
    InvalidAmount {
        /// Which argument.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// An empty key (run id, miner, service) or a day not of the form `YYYY-MM-DD`.
    #[error("invalid {field}: {value:?}")]
    InvalidField {
        /// Which argument.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// The stored totals disagree with the reservations (a bug, or the file
    /// was edited by hand); nothing was changed.
    #[error("ledger inconsistent: {0}")]
    Inconsistent(String),
    /// The database failed (I/O, lock wait beyond `busy_timeout`, ...).
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Which cap a refused reservation ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// The cap of one run on one service.
    Run,
    /// The cap of one miner on one service for one UTC day.
    MinerDay,
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Run => "run",
            Self::MinerDay => "miner-day",
        })
    }
}

/// The life cycle of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Reserved, counts against the caps with its full amount.
    Open,
    /// Charged its actual cost (at most the reserved amount).
    Settled,
    /// Dropped with no charge by [`Ledger::release`].
    Released,
    /// Dropped with no charge by [`Ledger::release_stale`].
    Stale,
}

impl ReservationState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Settled => "settled",
            Self::Released => "released",
            Self::Stale => "stale",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "settled" => Self::Settled,
            "released" => Self::Released,
            "stale" => Self::Stale,
            _ => return None,
        })
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a reservation, unique within a ledger and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(i64);

impl ReservationId {
    /// The id from its stored number.
    pub fn new(id: i64) -> Self {
        Self(id)
    }

    /// The stored number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A request to reserve the worst-case cost of one upstream call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The run the call is made for.
    pub run_id: String,
    /// The miner (hotkey) the run belongs to.
    pub miner: String,
    /// The service called (a configured service name, e.g. `chutes`).
    pub service: String,
    /// The UTC day the spend counts against, `YYYY-MM-DD` (see [`utc_day`]).
    pub day: String,
    /// The worst-case cost, in USD (rounded up to whole micro-dollars).
    pub amount_usd: f64,
    /// The cap of this run on this service, in USD.
    pub run_cap_usd: f64,
    /// The cap of this miner on this service for `day`, in USD (the one that
    /// applies: operator's key or the miner's linked key).
    pub day_cap_usd: f64,
}

/// A settled reservation: what a call was charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// The reservation.
    pub id: ReservationId,
    /// The run.
    pub run_id: String,
    /// The miner.
    pub miner: String,
    /// The service.
    pub service: String,
    /// The UTC day it counts against.
    pub day: String,
    /// What was reserved, in USD.
    pub reserved_usd: f64,
    /// What was charged, in USD (at most `reserved_usd`).
    pub charged_usd: f64,
    /// By how much the actual cost exceeded the reservation, in USD (not
    /// charged; a sign that the worst-case estimate was wrong).
    pub overrun_usd: f64,
    /// Whether the cost was estimated (e.g. the upstream reported no usage)
    /// rather than reported.
    pub estimated: bool,
    /// When the reservation was made, Unix milliseconds.
    pub reserved_at_ms: i64,
    /// When it was settled, Unix milliseconds.
    pub settled_at_ms: i64,
}

/// How to open a ledger file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOptions {
    /// How long a writer waits for another process's write lock before
    /// failing with [`LedgerError::Database`]. Default 5 s.
    pub busy_timeout: Duration,
    /// `synchronous = FULL` (an fsync per commit: survives power loss) instead
    /// of `NORMAL` (survives process crashes). Default `false`.
    pub durable: bool,
    /// Connections for the read-only queries. Default 4.
    pub read_connections: u32,
    /// Checkpoint the write-ahead log from a background task at this
    /// interval, instead of letting SQLite do it inside whichever write
    /// crosses 1,000 pages (which then takes milliseconds: an fsync of the
    /// database file). Default 1 s; `None` keeps SQLite's automatic
    /// checkpoints and spawns no task.
    pub checkpoint_interval: Option<Duration>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            durable: false,
            read_connections: 4,
            checkpoint_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// The persistent spend ledger. Cheap to clone (the clones share the pools).
#[derive(Debug, Clone)]
pub struct Ledger {
    /// Exactly one connection: all writes queue here (see the module docs).
    writer: SqlitePool,
    /// Queries. For an in-memory ledger, the writer pool itself.
    reader: SqlitePool,
    /// The background checkpoint task, stopped when the last clone goes.
    checkpointer: Option<Arc<BackgroundTask>>,
}

/// Committed (open + settled) micro-dollars of both cap scopes, one statement.
const COMMITTED_SQL: &str = "\
SELECT
  COALESCE((SELECT reserved_micros + charged_micros FROM gateway_run_totals
             WHERE run_id = $1 AND service = $3), 0),
  COALESCE((SELECT reserved_micros + charged_micros FROM gateway_miner_day_totals
             WHERE miner = $2 AND day = $4 AND service = $3), 0)";

/// The whole of `reserve`: the row is inserted only if it fits under both
/// caps ($7: run cap, $8: day cap); the trigger of migration 0003 adds it to
/// the totals. One statement, so the check and the insert are atomic.
const RESERVE_SQL: &str = "\
INSERT INTO gateway_reservations
  (run_id, miner, service, day, state, reserved_micros, created_at_ms)
SELECT $1, $2, $3, $4, 'open', $5, $6
 WHERE COALESCE((SELECT reserved_micros + charged_micros FROM gateway_run_totals
                  WHERE run_id = $1 AND service = $3), 0) + $5 <= $7
   AND COALESCE((SELECT reserved_micros + charged_micros FROM gateway_miner_day_totals
                  WHERE miner = $2 AND day = $4 AND service = $3), 0) + $5 <= $8
RETURNING id";

/// Settles an open reservation to `$2` micro-dollars, charging at most the
/// reservation; the trigger moves the amounts between the totals.
const SETTLE_SQL: &str = "\
UPDATE gateway_reservations
   SET state = 'settled', charged_micros = MIN($2, reserved_micros),
       overrun_micros = MAX($2 - reserved_micros, 0), estimated = $3, closed_at_ms = $4
 WHERE id = $1 AND state = 'open'
RETURNING run_id, miner, service, day, reserved_micros, charged_micros, overrun_micros,
          created_at_ms";

/// Drops an open reservation (`$2`: `released` or `stale`) without a charge.
const DROP_SQL: &str = "\
UPDATE gateway_reservations
   SET state = $2, closed_at_ms = $3
 WHERE id = $1 AND state = 'open'";

/// Drops every open reservation made at or before `$1` as `stale`.
const DROP_STALE_SQL: &str = "\
UPDATE gateway_reservations
   SET state = 'stale', closed_at_ms = $2
 WHERE state = 'open' AND created_at_ms <= $1";

const STATE_BY_ID_SQL: &str = "SELECT state FROM gateway_reservations WHERE id = $1";

const CHARGES_FOR_RUN_SQL: &str = "\
SELECT id, run_id, miner, service, day, reserved_micros, charged_micros,
       overrun_micros, estimated, created_at_ms, closed_at_ms
  FROM gateway_reservations
 WHERE run_id = $1 AND state = 'settled'
 ORDER BY id";

/// Totals that disagree with the reservations they sum (should be none).
const INCONSISTENT_TOTALS_SQL: &str = "\
SELECT
  (SELECT COUNT(*) FROM gateway_run_totals t
    WHERE t.reserved_micros <> (SELECT COALESCE(SUM(r.reserved_micros), 0)
                                  FROM gateway_reservations r
                                 WHERE r.run_id = t.run_id AND r.service = t.service
                                   AND r.state = 'open')
       OR t.charged_micros <> (SELECT COALESCE(SUM(r.charged_micros), 0)
                                 FROM gateway_reservations r
                                WHERE r.run_id = t.run_id AND r.service = t.service
                                  AND r.state = 'settled'))
+ (SELECT COUNT(*) FROM gateway_miner_day_totals t
    WHERE t.reserved_micros <> (SELECT COALESCE(SUM(r.reserved_micros), 0)
                                  FROM gateway_reservations r
                                 WHERE r.miner = t.miner AND r.day = t.day
                                   AND r.service = t.service AND r.state = 'open')
       OR t.charged_micros <> (SELECT COALESCE(SUM(r.charged_micros), 0)
                                 FROM gateway_reservations r
                                WHERE r.miner = t.miner AND r.day = t.day
                                  AND r.service = t.service AND r.state = 'settled'))
+ (SELECT COUNT(*) FROM gateway_reservations r
    WHERE r.state IN ('open', 'settled')
      AND (NOT EXISTS (SELECT 1 FROM gateway_run_totals t
                        WHERE t.run_id = r.run_id AND t.service = r.service)
           OR NOT EXISTS (SELECT 1 FROM gateway_miner_day_totals t
                           WHERE t.miner = r.miner AND t.day = r.day
                             AND t.service = r.service)))";

impl Ledger {
    /// Opens (creating if needed) the ledger file at `path` with default
    /// options and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, &LedgerOptions::default()).await
    }

    /// Opens (creating if needed) the ledger file at `path` and brings its
    /// schema up to date.
    pub async fn open_with(path: &Path, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .synchronous(if options.durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            });
        // WAL is a property of the file, set once by the writer; readers must
        // not try to switch it (that needs an exclusive lock).
        let mut writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        if options.checkpoint_interval.is_some() {
            writer_options = writer_options.pragma("wal_autocheckpoint", "0");
        }
        let writer = single_connection_pool()
            .connect_with(writer_options)
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .connect_with(base)
            .await?;
        let checkpointer = options
            .checkpoint_interval
            .map(|every| Arc::new(spawn_checkpointer(reader.clone(), every)));
        Ok(Self {
            writer,
            reader,
            checkpointer,
        })
    }

    /// An empty ledger in memory (for tests and demos): one connection shared
    /// by writes and queries; gone when the last clone is dropped.
    pub async fn in_memory() -> Result<Self, LedgerError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let writer = single_connection_pool().connect_with(options).await?;
        MIGRATOR.run(&writer).await?;
        Ok(Self {
            reader: writer.clone(),
            writer,
            checkpointer: None,
        })
    }

    /// Closes the connections (waiting for running operations). Clones of
    /// this ledger stop working too.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.0.abort();
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Reserves `req.amount_usd` if it fits under both caps, atomically.
    ///
    /// # Errors
    ///
    /// [`LedgerError::BudgetExceeded`] (nothing reserved) when the committed
    /// amount of the run on the service plus this amount would exceed
    /// `run_cap_usd`, or the committed amount of the miner on the service
    /// that day plus this amount would exceed `day_cap_usd`;
    /// [`LedgerError::InvalidAmount`] and [`LedgerError::InvalidField`] for
    /// bad arguments; [`LedgerError::Database`] when the file fails.
    pub async fn reserve(&self, req: Reservation) -> Result<ReservationId, LedgerError> {
        let amount = usd_to_micros_up("amount_usd", req.amount_usd)?;
        let run_cap = usd_to_micros_down("run_cap_usd", req.run_cap_usd)?;
        let day_cap = usd_to_micros_down("day_cap_usd", req.day_cap_usd)?;
        check_key("run_id", &req.run_id)?;
        check_key("miner", &req.miner)?;
        check_key("service", &req.service)?;
        check_day(&req.day)?;
        let now = now_ms();
        let reserve = || {
            sqlx::query_scalar::<_, i64>(RESERVE_SQL)
                .bind(&req.run_id)
                .bind(&req.miner)
                .bind(&req.service)
                .bind(&req.day)
                .bind(amount)
                .bind(now)
                .bind(run_cap)
                .bind(day_cap)
        };
        // The common case is one statement. A refusal is decided again in a
        // transaction that holds the write lock while it reads the totals,
        // so that the error names the cap and amounts that refused it.
        let id = match reserve().fetch_optional(&self.writer).await? {
            Some(id) => id,
            None => {
                let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
                let row = sqlx::query(COMMITTED_SQL)
                    .bind(&req.run_id)
                    .bind(&req.miner)
                    .bind(&req.service)
                    .bind(&req.day)
                    .fetch_one(&mut *tx)
                    .await?;
                let run_committed: i64 = row.try_get(0)?;
                let day_committed: i64 = row.try_get(1)?;
                let refusal = if run_committed.saturating_add(amount) > run_cap {
                    Some((BudgetScope::Run, run_cap, run_committed))
                } else if day_committed.saturating_add(amount) > day_cap {
                    Some((BudgetScope::MinerDay, day_cap, day_committed))
                } else {
                    None
                };
                if let Some((scope, cap, committed)) = refusal {
                    tx.rollback().await?;
                    tracing::debug!(
                        run_id = %req.run_id, service = %req.service, %scope,
                        cap_micros = cap, committed_micros = committed,
                        requested_micros = amount, "ledger: budget exceeded"
                    );
                    return Err(LedgerError::BudgetExceeded {
                        scope,
                        cap_usd: micros_to_usd(cap),
                        committed_usd: micros_to_usd(committed),
                        requested_usd: micros_to_usd(amount),
                    });
                }
                // Room was freed since the first attempt.
                let id = reserve().fetch_one(&mut *tx).await?;
                tx.commit().await?;
                id
            }
        };
        tracing::trace!(
            id, run_id = %req.run_id, service = %req.service, amount_micros = amount,
            "ledger: reserved"
        );
        Ok(ReservationId(id))
    }

    /// Turns an open reservation into a charge of `actual_usd` (rounded to
    /// the nearest micro-dollar), releasing the rest of the reservation.
    ///
    /// If `actual_usd` exceeds the reservation, the reservation amount is
    /// charged and the excess recorded as `overrun_usd` (the caps hold).
    /// `estimated` marks a cost that was estimated rather than reported by
    /// the upstream.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownReservation`], [`LedgerError::AlreadyClosed`],
    /// [`LedgerError::InvalidAmount`] for a negative or NaN cost,
    /// [`LedgerError::Inconsistent`] when the reservation's totals are
    /// missing (nothing changes), [`LedgerError::Database`].
    pub async fn settle(
        &self,
        id: ReservationId,
        actual_usd: f64,
        estimated: bool,
    ) -> Result<Charge, LedgerError> {
        if actual_usd.is_nan() || actual_usd < 0.0 {
            return Err(LedgerError::InvalidAmount {
                field: "actual_usd",
                value: actual_usd,
            });
        }
        // Saturating conversion: an absurd cost is still at most i64::MAX.
        let actual = (actual_usd * MICROS_PER_USD).round() as i64;
        let now = now_ms();
        let row = sqlx::query(SETTLE_SQL)
            .bind(id.0)
            .bind(actual)
            .bind(estimated)
            .bind(now)
            .fetch_optional(&self.writer)
            .await
            .map_err(inconsistent_from_trigger)?;
        let Some(row) = row else {
            return Err(self.why_not_open(id).await);
        };
        let charge = Charge {
            id,
            run_id: row.try_get("run_id")?,
            miner: row.try_get("miner")?,
            service: row.try_get("service")?,
            day: row.try_get("day")?,
            reserved_usd: micros_to_usd(row.try_get("reserved_micros")?),
            charged_usd: micros_to_usd(row.try_get("charged_micros")?),
            overrun_usd: micros_to_usd(row.try_get("overrun_micros")?),
            estimated,
            reserved_at_ms: row.try_get("created_at_ms")?,
            settled_at_ms: now,
        };
        if charge.overrun_usd > 0.0 {
            tracing::warn!(
                %id, run_id = %charge.run_id, service = %charge.service,
                reserved_usd = charge.reserved_usd, actual_usd,
                "ledger: actual cost exceeded the reservation; charged the reservation"
            );
        }
        Ok(charge)
    }

    /// Drops an open reservation without charging anything (the upstream
    /// call failed and was not billed).
    ///
    /// # Errors
    ///
    /// As [`settle`](Self::settle).
    pub async fn release(&self, id: ReservationId) -> Result<(), LedgerError> {
        let dropped = sqlx::query(DROP_SQL)
            .bind(id.0)
            .bind(ReservationState::Released.as_str())
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map_err(inconsistent_from_trigger)?;
        if dropped.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.why_not_open(id).await)
        }
    }

    /// Drops, without charging, every reservation still open that was made
    /// at least `older_than_secs` seconds ago, marking them `stale`; returns
    /// how many.
    ///
    /// Reservations are normally closed within a request's lifetime; open
    /// ones older than any run are leftovers of a crash. **The validator
    /// calls this at startup**, with an age longer than the longest run (so
    /// that another process's live reservations on a shared file survive).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Inconsistent`] when a total is missing (nothing
    /// changes), [`LedgerError::Database`].
    pub async fn release_stale(&self, older_than_secs: u64) -> Result<u64, LedgerError> {
        let now = now_ms();
        let age_ms = i64::try_from(older_than_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let released = sqlx::query(DROP_STALE_SQL)
            .bind(now.saturating_sub(age_ms))
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(inconsistent_from_trigger)?
            .rows_affected();
        if released > 0 {
            tracing::warn!(
                released,
                older_than_secs,
                "ledger: released stale reservations"
            );
        }
        Ok(released)
    }

    /// Why reservation `id` could not be closed: it does not exist, or it
    /// is closed already.
    async fn why_not_open(&self, id: ReservationId) -> LedgerError {
        let state: Result<Option<String>, _> = sqlx::query_scalar(STATE_BY_ID_SQL)
            .bind(id.0)
            .fetch_optional(&self.writer)
            .await;
        match state {
            Ok(None) => LedgerError::UnknownReservation(id),
            Ok(Some(state)) => match parse_state(&state) {
                Ok(state) => LedgerError::AlreadyClosed { id, state },
                Err(error) => error,
            },
            Err(error) => LedgerError::Database(error),
        }
    }

    /// What a run was charged on a service (settled charges only), in USD.
    pub async fn spent_usd(&self, run_id: &str, service: &str) -> Result<f64, LedgerError> {
        self.total(
            "SELECT charged_micros FROM gateway_run_totals WHERE run_id = $1 AND service = $2",
            &[run_id, service],
        )
        .await
    }

    /// What a run holds in open reservations on a service, in USD.
    pub async fn reserved_usd(&self, run_id: &str, service: &str) -> Result<f64, LedgerError> {
        self.total(
            "SELECT reserved_micros FROM gateway_run_totals WHERE run_id = $1 AND service = $2",
            &[run_id, service],
        )
        .await
    }

    /// What a miner was charged on a service during a UTC day (settled
    /// charges only), in USD.
    pub async fn spent_by_miner_day(
        &self,
        miner: &str,
        day: &str,
        service: &str,
    ) -> Result<f64, LedgerError> {
        self.total(
            "SELECT charged_micros FROM gateway_miner_day_totals
              WHERE miner = $1 AND day = $2 AND service = $3",
            &[miner, day, service],
        )
        .await
    }

    /// What a miner holds in open reservations on a service for a UTC day, in USD.
    pub async fn reserved_by_miner_day(
        &self,
        miner: &str,
        day: &str,
        service: &str,
    ) -> Result<f64, LedgerError> {
        self.total(
            "SELECT reserved_micros FROM gateway_miner_day_totals
              WHERE miner = $1 AND day = $2 AND service = $3",
            &[miner, day, service],
        )
        .await
    }

    /// The settled charges of a run, all services, oldest first.
    pub async fn charges_for_run(&self, run_id: &str) -> Result<Vec<Charge>, LedgerError> {
        let rows = sqlx::query(CHARGES_FOR_RUN_SQL)
            .bind(run_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(charge_from_row).collect()
    }

    /// Checks that the per-scope totals (which the cap checks read) agree
    /// with the reservations they sum; [`LedgerError::Inconsistent`] if not.
    /// Reads the whole ledger: for startup and tests, not per request.
    pub async fn check_consistency(&self) -> Result<(), LedgerError> {
        let bad: i64 = sqlx::query_scalar(INCONSISTENT_TOTALS_SQL)
            .fetch_one(&self.reader)
            .await?;
        if bad == 0 {
            Ok(())
        } else {
            Err(LedgerError::Inconsistent(format!(
                "{bad} totals disagree with their reservations"
            )))
        }
    }

    async fn total(&self, sql: &'static str, args: &[&str]) -> Result<f64, LedgerError> {
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        let micros = query.fetch_optional(&self.reader).await?;
        Ok(micros_to_usd(micros.unwrap_or(0)))
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` every `every` on a reader
/// connection. A passive checkpoint copies committed pages from the WAL into
/// the database file without blocking the writer (or readers), so its fsync
/// stays off the request path; the writer has `wal_autocheckpoint = 0`.
fn spawn_checkpointer(pool: SqlitePool, every: Duration) -> BackgroundTask {
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(%error, "ledger: WAL checkpoint failed");
            }
        }
    });
    BackgroundTask(task.abort_handle())
}

/// The trigger of migration 0003 aborts a close whose totals are missing;
/// that is an inconsistency of the file, not a database failure.
fn inconsistent_from_trigger(error: sqlx::Error) -> LedgerError {
    match &error {
        sqlx::Error::Database(db) if db.message().contains("ledger inconsistent") => {
            LedgerError::Inconsistent(db.message().to_owned())
        }
        _ => LedgerError::Database(error),
    }
}

fn parse_state(s: &str) -> Result<ReservationState, LedgerError> {
    ReservationState::parse(s).ok_or_else(|| {
        LedgerError::Database(sqlx::Error::Decode(
            format!("unknown reservation state {s:?}").into(),
        ))
    })
}

fn charge_from_row(row: &SqliteRow) -> Result<Charge, LedgerError> {
    Ok(Charge {
        id: ReservationId(row.try_get("id")?),
        run_id: row.try_get("run_id")?,
        miner: row.try_get("miner")?,
        service: row.try_get("service")?,
        day: row.try_get("day")?,
        reserved_usd: micros_to_usd(row.try_get("reserved_micros")?),
        charged_usd: micros_to_usd(row.try_get("charged_micros")?),
        overrun_usd: micros_to_usd(row.try_get("overrun_micros")?),
        estimated: row.try_get("estimated")?,
        reserved_at_ms: row.try_get("created_at_ms")?,
        settled_at_ms: row.try_get("closed_at_ms")?,
    })
}

/// Validates an amount or cap in USD and returns it in micro-dollars.
fn checked_micros(field: &'static str, usd: f64) -> Result<f64, LedgerError> {
    if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
        return Err(LedgerError::InvalidAmount { field, value: usd });
    }
    Ok(usd * MICROS_PER_USD)
}

/// USD to micro-dollars, rounding up (amounts to reserve).
fn usd_to_micros_up(field: &'static str, usd: f64) -> Result<i64, LedgerError> {
    let m = checked_micros(field, usd)?;
    let whole = m.round();
    Ok(if (m - whole).abs() <= ROUNDING_SLACK_MICROS {
        whole as i64
    } else {
        m.ceil() as i64
    })
}

/// USD to micro-dollars, rounding down (caps).
fn usd_to_micros_down(field: &'static str, usd: f64) -> Result<i64, LedgerError> {
    let m = checked_micros(field, usd)?;
    let whole = m.round();
    Ok(if (m - whole).abs() <= ROUNDING_SLACK_MICROS {
        whole as i64
    } else {
        m.floor() as i64
    })
}

fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD
}

fn check_key(field: &'static str, value: &str) -> Result<(), LedgerError> {
    if value.is_empty() {
        return Err(LedgerError::InvalidField {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Accepts `YYYY-MM-DD` with a month 01-12 and a day 01-31 (so that every
/// caller names a day the same way and the per-day caps are not split).
fn check_day(day: &str) -> Result<(), LedgerError> {
    let b = day.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let number =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && (1..=12).contains(&number(5..7))
        && (1..=31).contains(&number(8..10));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidField {
            field: "day",
            value: day.to_owned(),
        })
    }
}

/// The UTC day of `t` as `YYYY-MM-DD`, the form [`Reservation::day`] takes.
/// Times before 1970 count as 1970-01-01.
pub fn utc_day(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's UTC day as `YYYY-MM-DD`.
pub fn utc_today() -> String {
    utc_day(SystemTime::now())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: &str = "2026-03-01";

    fn req(run: &str, miner: &str, amount: f64, run_cap: f64, day_cap: f64) -> Reservation {
        Reservation {
            run_id: run.to_owned(),
            miner: miner.to_owned(),
            service: "chutes".to_owned(),
            day: DAY.to_owned(),
            amount_usd: amount,
            run_cap_usd: run_cap,
            day_cap_usd: day_cap,
        }
    }

    async fn file_ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite"))
            .await
            .expect("open");
        (dir, ledger)
    }

    fn assert_usd(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "expected {expected} USD, got {actual} USD"
        );
    }

    #[tokio::test]
    async fn reserve_within_cap() {
        let ledger = Ledger::in_memory().await.unwrap();
        let a = ledger
            .reserve(req("r1", "m1", 0.40, 1.0, 10.0))
            .await
            .unwrap();
        let b = ledger
            .reserve(req("r1", "m1", 0.60, 1.0, 10.0))
            .await
            .unwrap();
        assert_ne!(a, b);
        assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 1.0);
        assert_usd(
            ledger
                .reserved_by_miner_day("m1", DAY, "chutes")
                .await
                .unwrap(),
            1.0,
        );
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.0);
        // Other services have their own caps.
        let mut other = req("r1", "m1", 1.0, 1.0, 10.0);
        other.service = "desearch".to_owned();
        ledger.reserve(other).await.unwrap();
        assert_usd(ledger.reserved_usd("r1", "desearch").await.unwrap(), 1.0);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn refuses_beyond_run_cap() {
        let ledger = Ledger::in_memory().await.unwrap();
        ledger
            .reserve(req("r1", "m1", 0.70, 1.0, 10.0))
            .await
            .unwrap();
        let err = ledger
            .reserve(req("r1", "m1", 0.31, 1.0, 10.0))
            .await
            .unwrap_err();
        match err {
            LedgerError::BudgetExceeded {
                scope,
                cap_usd,
                committed_usd,
                requested_usd,
            } => {
                assert_eq!(scope, BudgetScope::Run);
                assert_usd(cap_usd, 1.0);
                assert_usd(committed_usd, 0.70);
                assert_usd(requested_usd, 0.31);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Nothing was reserved by the refusal; exactly the rest still fits.
        assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.70);
        ledger
            .reserve(req("r1", "m1", 0.30, 1.0, 10.0))
            .await
            .unwrap();
        // Another run of the same miner is not affected by r1's cap.
        ledger
            .reserve(req("r2", "m1", 1.0, 1.0, 10.0))
            .await
            .unwrap();
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn refuses_beyond_miner_day_cap() {
        let ledger = Ledger::in_memory().await.unwrap();
        ledger
            .reserve(req("r1", "m1", 0.80, 1.0, 1.5))
            .await
            .unwrap();
        ledger
            .reserve(req("r2", "m1", 0.60, 1.0, 1.5))
            .await
            .unwrap();
        let err = ledger
            .reserve(req("r3", "m1", 0.20, 1.0, 1.5))
            .await
            .unwrap_err();
        match err {
            LedgerError::BudgetExceeded {
                scope,
                cap_usd,
                committed_usd,
                requested_usd,
            } => {
                assert_eq!(scope, BudgetScope::MinerDay);
                assert_usd(cap_usd, 1.5);
                assert_usd(committed_usd, 1.4);
                assert_usd(requested_usd, 0.2);
            }
            other => panic!("unexpected {other:?}"),
        }
        // A higher day cap (linked key) lets it through.
        ledger
            .reserve(req("r3", "m1", 0.20, 1.0, 5.0))
            .await
            .unwrap();
        // Another miner, another day: separate budgets.
        ledger
            .reserve(req("r4", "m2", 1.0, 1.0, 1.5))
            .await
            .unwrap();
        let mut tomorrow = req("r5", "m1", 1.0, 1.0, 1.5);
        tomorrow.day = "2026-03-02".to_owned();
        ledger.reserve(tomorrow).await.unwrap();
        assert_usd(
            ledger
                .reserved_by_miner_day("m1", DAY, "chutes")
                .await
                .unwrap(),
            1.6,
        );
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn settle_lower_releases_the_rest() {
        let ledger = Ledger::in_memory().await.unwrap();
        let id = ledger
            .reserve(req("r1", "m1", 1.0, 1.0, 10.0))
            .await
            .unwrap();
        let charge = ledger.settle(id, 0.25, false).await.unwrap();
        assert_eq!(charge.id, id);
        assert_usd(charge.reserved_usd, 1.0);
        assert_usd(charge.charged_usd, 0.25);
        assert_usd(charge.overrun_usd, 0.0);
        assert!(!charge.estimated);
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.25);
        assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.0);
        assert_usd(
            ledger
                .spent_by_miner_day("m1", DAY, "chutes")
                .await
                .unwrap(),
            0.25,
        );
        // The released 0.75 is available again, and not a micro-dollar more.
        let more = ledger
            .reserve(req("r1", "m1", 0.75, 1.0, 10.0))
            .await
            .unwrap();
        assert!(
            ledger
                .reserve(req("r1", "m1", 0.000001, 1.0, 10.0))
                .await
                .is_err()
        );
        ledger.settle(more, 0.5, true).await.unwrap();
        let charges = ledger.charges_for_run("r1").await.unwrap();
        assert_eq!(charges.len(), 2);
        assert_eq!(charges[0], charge);
        assert_usd(charges[1].charged_usd, 0.5);
        assert!(charges[1].estimated);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn settle_higher_charges_only_the_reservation() {
        let ledger = Ledger::in_memory().await.unwrap();
        let id = ledger
            .reserve(req("r1", "m1", 0.30, 1.0, 10.0))
            .await
            .unwrap();
        let charge = ledger.settle(id, 0.45, false).await.unwrap();
        assert_usd(charge.charged_usd, 0.30);
        assert_usd(charge.overrun_usd, 0.15);
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.30);
        let stored = ledger.charges_for_run("r1").await.unwrap();
        assert_eq!(stored, vec![charge]);
        // An absurd cost is still capped at the reservation.
        let id = ledger
            .reserve(req("r1", "m1", 0.70, 1.0, 10.0))
            .await
            .unwrap();
        let charge = ledger.settle(id, 1e300, true).await.unwrap();
        assert_usd(charge.charged_usd, 0.70);
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 1.0);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn release_charges_nothing() {
        let ledger = Ledger::in_memory().await.unwrap();
        let id = ledger
            .reserve(req("r1", "m1", 1.0, 1.0, 10.0))
            .await
            .unwrap();
        ledger.release(id).await.unwrap();
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.0);
        assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.0);
        assert!(ledger.charges_for_run("r1").await.unwrap().is_empty());
        ledger
            .reserve(req("r1", "m1", 1.0, 1.0, 10.0))
            .await
            .unwrap();
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn closing_twice_or_unknown_is_an_error() {
        let ledger = Ledger::in_memory().await.unwrap();
        let id = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        ledger.settle(id, 0.1, false).await.unwrap();
        for err in [
            ledger.settle(id, 0.1, false).await.unwrap_err(),
            ledger.release(id).await.unwrap_err(),
        ] {
            assert!(
                matches!(err, LedgerError::AlreadyClosed { id: i, state: ReservationState::Settled } if i == id),
                "{err:?}"
            );
        }
        let id = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        ledger.release(id).await.unwrap();
        assert!(matches!(
            ledger.settle(id, 0.1, false).await.unwrap_err(),
            LedgerError::AlreadyClosed {
                state: ReservationState::Released,
                ..
            }
        ));
        assert!(matches!(
            ledger.release(id).await.unwrap_err(),
            LedgerError::AlreadyClosed {
                state: ReservationState::Released,
                ..
            }
        ));
        let unknown = ReservationId::new(9_999);
        assert!(matches!(
            ledger.settle(unknown, 0.1, false).await.unwrap_err(),
            LedgerError::UnknownReservation(i) if i == unknown
        ));
        assert!(matches!(
            ledger.release(unknown).await.unwrap_err(),
            LedgerError::UnknownReservation(_)
        ));
        // The failed closes changed nothing.
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.1);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn rejects_bad_input() {
        let ledger = Ledger::in_memory().await.unwrap();
        for amount in [-0.01, f64::NAN, f64::INFINITY, 2e9] {
            assert!(matches!(
                ledger
                    .reserve(req("r1", "m1", amount, 1.0, 1.0))
                    .await
                    .unwrap_err(),
                LedgerError::InvalidAmount {
                    field: "amount_usd",
                    ..
                }
            ));
        }
        assert!(matches!(
            ledger
                .reserve(req("r1", "m1", 0.1, -1.0, 1.0))
                .await
                .unwrap_err(),
            LedgerError::InvalidAmount {
                field: "run_cap_usd",
                ..
            }
        ));
        assert!(matches!(
            ledger
                .reserve(req("r1", "m1", 0.1, 1.0, f64::NAN))
                .await
                .unwrap_err(),
            LedgerError::InvalidAmount {
                field: "day_cap_usd",
                ..
            }
        ));
        for day in [
            "2026-3-01",
            "2026/03/01",
            "2026-13-01",
            "2026-03-00",
            "20260301",
            "",
        ] {
            let mut r = req("r1", "m1", 0.1, 1.0, 1.0);
            r.day = day.to_owned();
            assert!(matches!(
                ledger.reserve(r).await.unwrap_err(),
                LedgerError::InvalidField { field: "day", .. }
            ));
        }
        assert!(matches!(
            ledger
                .reserve(req("", "m1", 0.1, 1.0, 1.0))
                .await
                .unwrap_err(),
            LedgerError::InvalidField {
                field: "run_id",
                ..
            }
        ));
        let id = ledger
            .reserve(req("r1", "m1", 0.1, 1.0, 1.0))
            .await
            .unwrap();
        for actual in [-1.0, f64::NAN] {
            assert!(matches!(
                ledger.settle(id, actual, false).await.unwrap_err(),
                LedgerError::InvalidAmount {
                    field: "actual_usd",
                    ..
                }
            ));
        }
        // Still open after the refused settlements.
        ledger.settle(id, 0.05, false).await.unwrap();
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn money_is_exact_micro_dollars() {
        // Float noise does not round a whole micro-dollar amount up ...
        assert_eq!(usd_to_micros_up("a", 0.000_123).unwrap(), 123);
        assert_eq!(usd_to_micros_up("a", 0.01).unwrap(), 10_000);
        assert_eq!(usd_to_micros_up("a", 0.1 + 0.2).unwrap(), 300_000);
        assert_eq!(usd_to_micros_down("a", 1.001).unwrap(), 1_001_000);
        // ... but fractions of a micro-dollar round in the safe direction.
        assert_eq!(usd_to_micros_up("a", 0.000_000_1).unwrap(), 1);
        assert_eq!(usd_to_micros_up("a", 0.000_001_5).unwrap(), 2);
        assert_eq!(usd_to_micros_down("a", 0.000_001_5).unwrap(), 1);
        let ledger = Ledger::in_memory().await.unwrap();
        // Ten times 0.1 fits exactly into 1.0 (0.1 + ... + 0.1 != 1.0 in f64).
        for _ in 0..10 {
            ledger
                .reserve(req("r1", "m1", 0.1, 1.0, 1.0))
                .await
                .unwrap();
        }
        assert!(
            ledger
                .reserve(req("r1", "m1", 0.000_000_1, 1.0, 1.0))
                .await
                .is_err()
        );
        // Settlements round to the nearest micro-dollar.
        let id = ledger
            .reserve(req("r2", "m2", 0.1, 1.0, 1.0))
            .await
            .unwrap();
        let charge = ledger.settle(id, 0.000_001_4, false).await.unwrap();
        assert_usd(charge.charged_usd, 0.000_001);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let (settled, open) = {
            let ledger = Ledger::open(&path).await.unwrap();
            let settled = ledger
                .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
                .await
                .unwrap();
            ledger.settle(settled, 0.2, true).await.unwrap();
            let open = ledger
                .reserve(req("r1", "m1", 0.3, 1.0, 10.0))
                .await
                .unwrap();
            ledger.close().await;
            (settled, open)
        };
        let ledger = Ledger::open(&path).await.unwrap();
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.2);
        assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.3);
        assert_usd(
            ledger
                .spent_by_miner_day("m1", DAY, "chutes")
                .await
                .unwrap(),
            0.2,
        );
        let charges = ledger.charges_for_run("r1").await.unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(charges[0].id, settled);
        assert!(charges[0].estimated);
        // The caps still see what happened before the restart.
        assert!(matches!(
            ledger
                .reserve(req("r1", "m1", 0.51, 1.0, 10.0))
                .await
                .unwrap_err(),
            LedgerError::BudgetExceeded {
                scope: BudgetScope::Run,
                ..
            }
        ));
        assert!(matches!(
            ledger.settle(settled, 0.1, false).await.unwrap_err(),
            LedgerError::AlreadyClosed { .. }
        ));
        ledger.settle(open, 0.3, false).await.unwrap();
        let next = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        assert!(next > open, "ids are not reused");
        ledger.check_consistency().await.unwrap();
    }

    /// Fires `n` concurrent reservations of `amount` and returns the ids of
    /// those that succeeded; any error other than a budget refusal fails.
    async fn reserve_concurrently(
        ledgers: &[Ledger],
        n: usize,
        make: impl Fn(usize) -> Reservation,
    ) -> Vec<ReservationId> {
        let start = Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let ledger = ledgers[i % ledgers.len()].clone();
            let start = start.clone();
            let r = make(i);
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                ledger.reserve(r).await
            }));
        }
        let mut ok = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(id) => ok.push(id),
                Err(LedgerError::BudgetExceeded { .. }) => {}
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        ok
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_exceed_run_cap() {
        let (_dir, ledger) = file_ledger().await;
        let ok = reserve_concurrently(std::slice::from_ref(&ledger), 1_000, |i| {
            req("r1", &format!("m{}", i % 7), 0.01, 1.00, 100.0)
        })
        .await;
        assert_eq!(ok.len(), 100);
        let reserved = ledger.reserved_usd("r1", "chutes").await.unwrap();
        assert!(reserved <= 1.00);
        assert_usd(reserved, 1.00);
        // Settling them all at the full amount charges exactly the cap.
        for id in &ok {
            ledger.settle(*id, 0.01, false).await.unwrap();
        }
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 1.00);
        assert_eq!(ledger.charges_for_run("r1").await.unwrap().len(), 100);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_exceed_miner_day_cap() {
        let (_dir, ledger) = file_ledger().await;
        let ok = reserve_concurrently(std::slice::from_ref(&ledger), 1_000, |i| {
            req(&format!("r{}", i % 50), "m1", 0.01, 1.00, 1.00)
        })
        .await;
        assert_eq!(ok.len(), 100);
        let reserved = ledger
            .reserved_by_miner_day("m1", DAY, "chutes")
            .await
            .unwrap();
        assert!(reserved <= 1.00);
        assert_usd(reserved, 1.00);
        ledger.check_consistency().await.unwrap();
    }

    /// Two handles on one file (as two processes would have): the write
    /// lock each reserving statement takes before reading keeps the cap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_handles_on_one_file_never_exceed_cap() {
        let (dir, first) = file_ledger().await;
        let second = Ledger::open(&dir.path().join("ledger.sqlite"))
            .await
            .unwrap();
        let ok = reserve_concurrently(&[first.clone(), second], 1_000, |i| {
            req(&format!("r{}", i % 3), "m1", 0.01, 1.00, 1.00)
        })
        .await;
        assert_eq!(ok.len(), 100);
        assert_usd(
            first
                .reserved_by_miner_day("m1", DAY, "chutes")
                .await
                .unwrap(),
            1.00,
        );
        first.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn release_stale_drops_only_old_open_reservations() {
        let (_dir, ledger) = file_ledger().await;
        let old = ledger
            .reserve(req("r1", "m1", 0.4, 1.0, 10.0))
            .await
            .unwrap();
        let old_settled = ledger
            .reserve(req("r1", "m1", 0.1, 1.0, 10.0))
            .await
            .unwrap();
        ledger.settle(old_settled, 0.1, false).await.unwrap();
        // Age them by two hours, as if left over from before a crash.
        sqlx::query(
            "UPDATE gateway_reservations SET created_at_ms = created_at_ms - 7200000 WHERE id IN ($1, $2)",
        )
        .bind(old.get())
        .bind(old_settled.get())
        .execute(&ledger.writer)
        .await
        .unwrap();
        let fresh = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        assert_eq!(ledger.release_stale(3 * 3600).await.unwrap(), 0);
        assert_eq!(ledger.release_stale(3600).await.unwrap(), 1);
        assert_eq!(ledger.release_stale(3600).await.unwrap(), 0);
        // The stale one charged nothing and its room is free again.
        assert_usd(ledger.spent_usd("r1", "chutes").await.unwrap(), 0.1);
        assert_usd(ledger.reserved_usd("r1", "chutes").await.unwrap(), 0.5);
        assert!(matches!(
            ledger.settle(old, 0.4, false).await.unwrap_err(),
            LedgerError::AlreadyClosed {
                state: ReservationState::Stale,
                ..
            }
        ));
        ledger.settle(fresh, 0.5, false).await.unwrap();
        ledger
            .reserve(req("r1", "m1", 0.4, 1.0, 10.0))
            .await
            .unwrap();
        // Age 0: everything open now is stale.
        assert_eq!(ledger.release_stale(0).await.unwrap(), 1);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn check_consistency_detects_tampered_totals() {
        let ledger = Ledger::in_memory().await.unwrap();
        let id = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        ledger.check_consistency().await.unwrap();
        sqlx::query("UPDATE gateway_run_totals SET reserved_micros = 1")
            .execute(&ledger.writer)
            .await
            .unwrap();
        assert!(matches!(
            ledger.check_consistency().await.unwrap_err(),
            LedgerError::Inconsistent(_)
        ));
        sqlx::query("UPDATE gateway_run_totals SET reserved_micros = 500000")
            .execute(&ledger.writer)
            .await
            .unwrap();
        ledger.check_consistency().await.unwrap();
        // A missing total makes closing fail, and roll back entirely.
        sqlx::query("DELETE FROM gateway_miner_day_totals")
            .execute(&ledger.writer)
            .await
            .unwrap();
        assert!(matches!(
            ledger.settle(id, 0.1, false).await.unwrap_err(),
            LedgerError::Inconsistent(_)
        ));
        let state: String = sqlx::query_scalar("SELECT state FROM gateway_reservations")
            .fetch_one(&ledger.reader)
            .await
            .unwrap();
        assert_eq!(state, "open");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_checkpoints_copy_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let options = LedgerOptions {
            checkpoint_interval: Some(Duration::from_millis(10)),
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open_with(&path, &options).await.unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = size();
        for i in 0..300 {
            ledger
                .reserve(req(
                    &format!("run-{i:04}-{}", "x".repeat(40)),
                    "m1",
                    0.01,
                    1.0,
                    10.0,
                ))
                .await
                .unwrap();
        }
        // The writer never checkpoints itself (wal_autocheckpoint = 0): only
        // the background task can have grown the database file.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            size() > before,
            "database file did not grow: {before} bytes"
        );
        ledger.check_consistency().await.unwrap();
        ledger.close().await;
    }

    #[test]
    fn utc_days() {
        let at = |secs: u64| utc_day(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_709_164_800), "2024-02-29");
        assert_eq!(at(1_709_164_800 - 1), "2024-02-28");
        assert_eq!(at(1_709_251_200), "2024-03-01");
        assert!(check_day(&utc_today()).is_ok());
        assert_eq!(utc_day(UNIX_EPOCH - Duration::from_secs(10)), "1970-01-01");
    }
}
