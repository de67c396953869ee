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
//! # Books and journal
//!
//! Every cap decision is made in memory, on the ledger's books (`books.rs`):
//! committed amounts per run and service and per miner, day and service, and
//! the open reservations, all under one lock, so that `reserve` and `settle`
//! cost microseconds and never wait for the disk. What the books decide is
//! sent, in order, to the journal (`journal.rs`): one task that writes it to
//! the SQLite file, as many operations per transaction as have queued. The
//! file is what a restart reads the books back from.
//!
//! The file (schema: `migrations/sqlite/0001_gateway_ledger.sql` and
//! `0003_gateway_ledger_triggers.sql`, applied on open) is in WAL mode.
//! Every reservation is a row (kept after it is closed, for audits);
//! per-scope totals are kept by triggers on those rows
//! ([`Ledger::check_consistency`] verifies them against the rows, and the
//! books against them). Money is integer micro-dollars (1 USD = 1,000,000);
//! the API speaks `f64` USD and converts at the boundary: reservations and
//! their caps are rounded in the safe direction (amounts up, caps down),
//! settlements to the nearest micro-dollar.
//!
//! Because the books are the truth, **one ledger owns a file**: opening a
//! second one on it (here or in another process) fails with
//! [`LedgerError::InUse`] until the first is closed or gone.
//!
//! What stays in memory: every open reservation; the totals of every day
//! from yesterday on (older days are read from the file when asked for);
//! and the totals of every run that reserved in the last
//! [`MAX_TOKEN_LIFETIME_SECS`](sooth_protocol::MAX_TOKEN_LIFETIME_SECS). A run
//! idle for longer is forgotten: its token has expired, so it cannot
//! reserve again.
//!
//! # Crash safety
//!
//! The journal commits within a few milliseconds of a decision
//! (`synchronous = NORMAL`: a crash of the process loses nothing committed,
//! a power cut may lose the last transactions), and [`Ledger::close`] and
//! [`Ledger::flush`] wait for it. A crash of the process can lose the
//! decisions not yet committed: at most the last few milliseconds of
//! reservations and settlements. A lost settlement leaves its reservation
//! open in the file; it counts against the caps until
//! [`release_stale`](Ledger::release_stale) drops it, which the gateway does
//! at start for reservations older than any run. A lost reservation was
//! never counted; what its call cost is the bounded price of keeping the
//! disk off the request path. [`LedgerOptions::durable`] closes that window:
//! each operation then waits for its commit (with an fsync) before it
//! returns, at the cost of a disk write per call.
//!
//! If the journal cannot write (a full or read-only disk), it keeps trying,
//! and the ledger refuses new reservations ([`LedgerError::Unavailable`])
//! until it can: nothing is spent that could not be recorded.

mod books;
mod journal;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use books::{Books, Closed, Open, Refused, Scope, day_key, run_key};
use journal::{Command, Failure, Write};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};

use sooth_migrations::{OpenError, file_options, open_in_memory, open_writer_and_readers};

use crate::background::BackgroundTask;

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
    /// The database could not be opened or its schema brought up to date.
    #[error("cannot open the database of the spend ledger")]
    Open(#[from] OpenError),
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
    /// Another ledger (in this process or another) has the file open.
    #[error("the ledger {} is in use by another gateway", .0.display())]
    InUse(PathBuf),
    /// The ledger cannot write its file (full or read-only disk, ...) and
    /// refuses reservations until it can; or it was closed.
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
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
    /// Wait for every operation's commit before it returns, with
    /// `synchronous = FULL` (an fsync per commit: survives power loss),
    /// instead of journaling in the background with `NORMAL` (see the
    /// module docs, "Crash safety"). Default `false`.
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

/// The persistent spend ledger. Cheap to clone (the clones share the books
/// and the journal).
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    books: Mutex<Books>,
    journal: mpsc::UnboundedSender<Command>,
    /// Set while the journal cannot write; reservations are refused then.
    failure: Failure,
    /// The one connection the journal writes with (and lazy loads read).
    writer: SqlitePool,
    /// Queries. For an in-memory ledger, the writer pool itself.
    reader: SqlitePool,
    /// Whether `reserve` and the closings wait for their commit.
    wait_for_commit: bool,
    /// Days before this one were not loaded at open (`YYYY-MM-DD`).
    loaded_from_day: String,
    /// The exclusive lock on the file, released by `close` or the last drop.
    file_lock: Mutex<Option<std::fs::File>>,
    /// The background checkpoint task, stopped when the last clone goes.
    checkpointer: Option<BackgroundTask>,
}

/// How long a run's totals stay in memory after its last reservation: the
/// longest a run token may live ([`sooth_protocol::MAX_TOKEN_LIFETIME_SECS`]).
/// A run idle for longer cannot reserve again, so it is forgotten.
const RUN_MEMORY_MS: i64 = sooth_protocol::MAX_TOKEN_LIFETIME_SECS * 1000;

const LAST_ID_SQL: &str = "SELECT COALESCE(MAX(id), 0) FROM gateway_reservations";

const OPEN_ROWS_SQL: &str = "\
SELECT id, run_id, miner, service, day, reserved_micros, created_at_ms
  FROM gateway_reservations
 WHERE state = 'open'";

/// The totals of the runs that reserved since `$1`.
const RECENT_RUNS_SQL: &str = "\
SELECT t.run_id, t.service, t.reserved_micros, t.charged_micros
  FROM gateway_run_totals t
 WHERE t.run_id IN (SELECT DISTINCT run_id FROM gateway_reservations WHERE created_at_ms >= $1)";

/// The totals of the days from `$1` on (`YYYY-MM-DD` sorts as text).
const RECENT_DAYS_SQL: &str = "\
SELECT miner, day, service, reserved_micros, charged_micros
  FROM gateway_miner_day_totals
 WHERE day >= $1";

const DAY_SQL: &str = "\
SELECT reserved_micros, charged_micros
  FROM gateway_miner_day_totals
 WHERE miner = $1 AND day = $2 AND service = $3";

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
    ///
    /// # Errors
    ///
    /// As [`open_with`](Self::open_with).
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, &LedgerOptions::default()).await
    }

    /// Opens (creating if needed) the ledger file at `path`, brings its
    /// schema up to date and loads the books.
    ///
    /// # Errors
    ///
    /// [`LedgerError::InUse`] when another ledger holds the file,
    /// [`LedgerError::Database`] and [`LedgerError::Migrate`] when it cannot
    /// be opened or migrated.
    pub async fn open_with(path: &Path, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let file_lock = lock_file(path)?;
        let base = file_options(path, options.busy_timeout, options.durable);
        let manual_checkpoints = options.checkpoint_interval.is_some();
        let (writer, reader) = open_writer_and_readers(base, options.read_connections, |writer| {
            if manual_checkpoints {
                writer.pragma("wal_autocheckpoint", "0")
            } else {
                writer
            }
        })
        .await?;
        let checkpointer = options
            .checkpoint_interval
            .map(|every| spawn_checkpointer(reader.clone(), every));
        Self::start(
            writer,
            reader,
            options.durable,
            Some(file_lock),
            checkpointer,
        )
        .await
    }

    /// An empty ledger in memory (for tests and demos): one connection shared
    /// by writes and queries; gone when the last clone is dropped.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Database`] or [`LedgerError::Migrate`] (SQLite could
    /// not start).
    pub async fn in_memory() -> Result<Self, LedgerError> {
        let writer = open_in_memory(SqliteConnectOptions::new().foreign_keys(true)).await?;
        Self::start(writer.clone(), writer, false, None, None).await
    }

    async fn start(
        writer: SqlitePool,
        reader: SqlitePool,
        wait_for_commit: bool,
        file_lock: Option<std::fs::File>,
        checkpointer: Option<BackgroundTask>,
    ) -> Result<Self, LedgerError> {
        let now = now_ms();
        let loaded_from_day = utc_day(
            UNIX_EPOCH + Duration::from_millis(u64::try_from(now - 86_400_000).unwrap_or(0)),
        );
        let last_id: i64 = sqlx::query_scalar(LAST_ID_SQL).fetch_one(&writer).await?;
        let mut books = Books::new(last_id);
        for row in sqlx::query(OPEN_ROWS_SQL).fetch_all(&writer).await? {
            books.load_open(
                row.try_get("id")?,
                Open {
                    run_id: row.try_get("run_id")?,
                    miner: row.try_get("miner")?,
                    service: row.try_get("service")?,
                    day: row.try_get("day")?,
                    reserved: row.try_get("reserved_micros")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                },
            );
        }
        for row in sqlx::query(RECENT_RUNS_SQL)
            .bind(now - RUN_MEMORY_MS)
            .fetch_all(&writer)
            .await?
        {
            let key = run_key(&row.try_get::<String, _>(0)?, &row.try_get::<String, _>(1)?);
            books.load_run(key, scope_from(row.try_get(2)?, row.try_get(3)?, now));
        }
        for row in sqlx::query(RECENT_DAYS_SQL)
            .bind(&loaded_from_day)
            .fetch_all(&writer)
            .await?
        {
            let key = day_key(
                &row.try_get::<String, _>(0)?,
                &row.try_get::<String, _>(1)?,
                &row.try_get::<String, _>(2)?,
            );
            books.load_day(key, scope_from(row.try_get(3)?, row.try_get(4)?, now));
        }
        let failure = Failure::default();
        let journal = journal::spawn(writer.clone(), failure.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                books: Mutex::new(books),
                journal,
                failure,
                writer,
                reader,
                wait_for_commit,
                loaded_from_day,
                file_lock: Mutex::new(file_lock),
                checkpointer,
            }),
        })
    }

    /// Writes what is pending, then closes the connections and releases the
    /// file. Clones of this ledger stop working too.
    pub async fn close(&self) {
        if let Err(error) = self.flush().await {
            tracing::error!(%error, "ledger: closing with writes that could not be made");
        }
        if let Some(checkpointer) = &self.inner.checkpointer {
            checkpointer.0.abort();
        }
        self.inner.reader.close().await;
        self.inner.writer.close().await;
        drop(lock(&self.inner.file_lock).take());
    }

    /// Waits until everything decided so far is in the file.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] when the journal cannot write (it keeps
    /// trying).
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (done, wait) = oneshot::channel();
        self.inner
            .journal
            .send(Command::Flush(done))
            .map_err(|_| LedgerError::Unavailable("the ledger is closed".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(unavailable(reason)),
            Err(_) => Err(LedgerError::Unavailable("the ledger is closed".into())),
        }
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
    /// bad arguments; [`LedgerError::Unavailable`] while the file cannot be
    /// written; [`LedgerError::Database`] when a day's totals cannot be read.
    pub async fn reserve(&self, req: Reservation) -> Result<ReservationId, LedgerError> {
        let amount = usd_to_micros_up("amount_usd", req.amount_usd)?;
        let run_cap = usd_to_micros_down("run_cap_usd", req.run_cap_usd)?;
        let day_cap = usd_to_micros_down("day_cap_usd", req.day_cap_usd)?;
        check_key("run_id", &req.run_id)?;
        check_key("miner", &req.miner)?;
        check_key("service", &req.service)?;
        check_day(&req.day)?;
        if let Some(reason) = journal::failure_of(&self.inner.failure) {
            return Err(unavailable(reason));
        }
        self.load_day(&req.miner, &req.day, &req.service).await?;
        let now = now_ms();
        let open = Open {
            run_id: req.run_id,
            miner: req.miner,
            service: req.service,
            day: req.day,
            reserved: amount,
            created_at_ms: now,
        };
        let decided = {
            let mut books = lock(&self.inner.books);
            books.forget_idle_runs_now_and_then(now, RUN_MEMORY_MS);
            books.reserve(open.clone(), run_cap, day_cap)
        };
        let id = match decided {
            Ok(id) => id,
            Err(Refused {
                scope,
                cap,
                committed,
            }) => {
                tracing::debug!(
                    run_id = %open.run_id, service = %open.service, %scope,
                    cap_micros = cap, committed_micros = committed, requested_micros = amount,
                    "ledger: budget exceeded"
                );
                return Err(LedgerError::BudgetExceeded {
                    scope,
                    cap_usd: micros_to_usd(cap),
                    committed_usd: micros_to_usd(committed),
                    requested_usd: micros_to_usd(amount),
                });
            }
        };
        self.write(Write::Reserve { id, open }).await?;
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
    /// [`LedgerError::InvalidAmount`] for a negative or NaN cost.
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
        let closed = self
            .close_open(id, ReservationState::Settled, actual, estimated)
            .await?;
        if closed.overrun > 0 {
            tracing::warn!(
                %id, run_id = %closed.open.run_id, service = %closed.open.service,
                reserved_micros = closed.open.reserved, actual_micros = actual,
                "ledger: actual cost exceeded the reservation; charged the reservation"
            );
        }
        Ok(Charge {
            id,
            reserved_usd: micros_to_usd(closed.open.reserved),
            charged_usd: micros_to_usd(closed.charged),
            overrun_usd: micros_to_usd(closed.overrun),
            estimated,
            reserved_at_ms: closed.open.created_at_ms,
            settled_at_ms: closed.closed_at_ms,
            run_id: closed.open.run_id,
            miner: closed.open.miner,
            service: closed.open.service,
            day: closed.open.day,
        })
    }

    /// Drops an open reservation without charging anything (the upstream
    /// call failed and was not billed).
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownReservation`], [`LedgerError::AlreadyClosed`].
    pub async fn release(&self, id: ReservationId) -> Result<(), LedgerError> {
        self.close_open(id, ReservationState::Released, 0, false)
            .await
            .map(|_| ())
    }

    /// Drops, without charging, every reservation still open that was made
    /// at least `older_than_secs` seconds ago, marking them `stale`; returns
    /// how many, once they are in the file.
    ///
    /// Reservations are normally closed within a request's lifetime; open
    /// ones older than any run are leftovers of a crash (they count against
    /// the caps until then). The gateway calls this at start with the
    /// longest a run token may live.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`] when the file cannot be written.
    pub async fn release_stale(&self, older_than_secs: u64) -> Result<u64, LedgerError> {
        let now = now_ms();
        let age_ms = i64::try_from(older_than_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let closed: Vec<Closed> = {
            let mut books = lock(&self.inner.books);
            books
                .open_since_before(now.saturating_sub(age_ms))
                .into_iter()
                .filter_map(|id| books.close(id, ReservationState::Stale, 0, false, now))
                .collect()
        };
        let released = closed.len() as u64;
        for closed in closed {
            self.send(Write::Close(closed))?;
        }
        self.flush().await?;
        if released > 0 {
            tracing::warn!(
                released,
                older_than_secs,
                "ledger: released stale reservations"
            );
        }
        Ok(released)
    }

    /// What a run was charged on a service (settled charges only), in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`], [`LedgerError::Database`].
    pub async fn spent_usd(&self, run_id: &str, service: &str) -> Result<f64, LedgerError> {
        self.total(
            "SELECT charged_micros FROM gateway_run_totals WHERE run_id = $1 AND service = $2",
            &[run_id, service],
        )
        .await
    }

    /// What a run holds in open reservations on a service, in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`], [`LedgerError::Database`].
    pub async fn reserved_usd(&self, run_id: &str, service: &str) -> Result<f64, LedgerError> {
        self.total(
            "SELECT reserved_micros FROM gateway_run_totals WHERE run_id = $1 AND service = $2",
            &[run_id, service],
        )
        .await
    }

    /// What a miner was charged on a service during a UTC day (settled
    /// charges only), in USD.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`], [`LedgerError::Database`].
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
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`], [`LedgerError::Database`].
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
    ///
    /// # Errors
    ///
    /// [`LedgerError::Unavailable`], [`LedgerError::Database`].
    pub async fn charges_for_run(&self, run_id: &str) -> Result<Vec<Charge>, LedgerError> {
        self.flush().await?;
        let rows = sqlx::query(CHARGES_FOR_RUN_SQL)
            .bind(run_id)
            .fetch_all(&self.inner.reader)
            .await?;
        rows.iter().map(charge_from_row).collect()
    }

    /// Checks that the file's per-scope totals agree with the reservations
    /// they sum, and that the books in memory agree with the file.
    /// Reads the whole ledger: for startup and tests, not per request.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Inconsistent`] when they disagree,
    /// [`LedgerError::Unavailable`], [`LedgerError::Database`].
    pub async fn check_consistency(&self) -> Result<(), LedgerError> {
        self.flush().await?;
        let bad: i64 = sqlx::query_scalar(INCONSISTENT_TOTALS_SQL)
            .fetch_one(&self.inner.reader)
            .await?;
        if bad != 0 {
            return Err(LedgerError::Inconsistent(format!(
                "{bad} totals disagree with their reservations"
            )));
        }
        let in_file = |sql: &'static str| sqlx::query(sql).fetch_all(&self.inner.reader);
        let runs = in_file(
            "SELECT run_id || char(0) || service, reserved_micros, charged_micros
               FROM gateway_run_totals",
        )
        .await?;
        let days = in_file(
            "SELECT miner || char(0) || day || char(0) || service, reserved_micros, charged_micros
               FROM gateway_miner_day_totals",
        )
        .await?;
        let books = lock(&self.inner.books);
        let (book_runs, book_days) = books.scopes();
        for (rows, scopes) in [(runs, book_runs), (days, book_days)] {
            for row in rows {
                let key: String = row.try_get(0)?;
                let in_file = (row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?);
                if let Some(scope) = scopes.get(&key)
                    && (scope.reserved, scope.charged) != in_file
                {
                    return Err(LedgerError::Inconsistent(format!(
                        "the books in memory say {:?} for {:?}, the file {in_file:?}",
                        (scope.reserved, scope.charged),
                        key.replace('\0', "/")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Brings a day scope into memory if it was not loaded at open (a day
    /// before yesterday, or one not seen yet). Days stay in memory once
    /// there, so a day absent from memory has nothing unwritten.
    async fn load_day(&self, miner: &str, day: &str, service: &str) -> Result<(), LedgerError> {
        // Days from the one loaded at open on are all in memory already:
        // the common case costs a comparison, not a key.
        if day >= self.inner.loaded_from_day.as_str() {
            return Ok(());
        }
        let key = day_key(miner, day, service);
        if lock(&self.inner.books).has_day(&key) {
            return Ok(());
        }
        let row = sqlx::query(DAY_SQL)
            .bind(miner)
            .bind(day)
            .bind(service)
            .fetch_optional(&self.inner.writer)
            .await?;
        let scope = match row {
            Some(row) => scope_from(row.try_get(0)?, row.try_get(1)?, now_ms()),
            None => Scope::default(),
        };
        lock(&self.inner.books).load_day(key, scope);
        Ok(())
    }

    async fn close_open(
        &self,
        id: ReservationId,
        state: ReservationState,
        actual: i64,
        estimated: bool,
    ) -> Result<Closed, LedgerError> {
        let closed = lock(&self.inner.books).close(id.0, state, actual, estimated, now_ms());
        let Some(closed) = closed else {
            return Err(self.why_not_open(id).await);
        };
        self.write(Write::Close(closed.clone())).await?;
        Ok(closed)
    }

    /// Journals `write`, and waits for its commit if the ledger is durable.
    async fn write(&self, write: Write) -> Result<(), LedgerError> {
        self.send(write)?;
        if self.inner.wait_for_commit {
            self.flush().await?;
        }
        Ok(())
    }

    fn send(&self, write: Write) -> Result<(), LedgerError> {
        self.inner
            .journal
            .send(Command::Write(write))
            .map_err(|_| LedgerError::Unavailable("the ledger is closed".into()))
    }

    /// Why reservation `id` could not be closed: it does not exist, or it
    /// is closed already (every open reservation is in the books).
    async fn why_not_open(&self, id: ReservationId) -> LedgerError {
        if let Err(error) = self.flush().await {
            return error;
        }
        let state: Result<Option<String>, _> = sqlx::query_scalar(STATE_BY_ID_SQL)
            .bind(id.0)
            .fetch_optional(&self.inner.reader)
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

    async fn total(&self, sql: &'static str, args: &[&str]) -> Result<f64, LedgerError> {
        self.flush().await?;
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        let micros = query.fetch_optional(&self.inner.reader).await?;
        Ok(micros_to_usd(micros.unwrap_or(0)))
    }
}

fn scope_from(reserved: i64, charged: i64, now: i64) -> Scope {
    Scope {
        reserved,
        charged,
        touched_at_ms: now,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; the books change in single
    // steps that leave them whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unavailable(reason: String) -> LedgerError {
    if reason.contains("ledger inconsistent") {
        LedgerError::Inconsistent(reason)
    } else {
        LedgerError::Unavailable(reason)
    }
}

/// Takes the exclusive lock of the ledger file (a `.lock` file beside it):
/// the books in memory are the truth, so one ledger owns a file.
fn lock_file(path: &Path) -> Result<std::fs::File, LedgerError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".ledger-lock");
    let lock_path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|error| {
            LedgerError::Unavailable(format!("cannot open {}: {error}", lock_path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::InUse(path.to_owned())),
        Err(std::fs::TryLockError::Error(error)) => Err(LedgerError::Unavailable(format!(
            "cannot lock {}: {error}",
            lock_path.display()
        ))),
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
    if value.is_empty() || value.contains('\0') {
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
    use sqlx::sqlite::SqlitePoolOptions;

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

    /// `err` is a refusal by the cap of `scope`, with these amounts.
    fn assert_refused(
        err: LedgerError,
        scope: BudgetScope,
        cap: f64,
        committed: f64,
        requested: f64,
    ) {
        match err {
            LedgerError::BudgetExceeded {
                scope: refused_by,
                cap_usd,
                committed_usd,
                requested_usd,
            } => {
                assert_eq!(refused_by, scope);
                assert_usd(cap_usd, cap);
                assert_usd(committed_usd, committed);
                assert_usd(requested_usd, requested);
            }
            other => panic!("unexpected {other:?}"),
        }
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
        assert_refused(err, BudgetScope::Run, 1.0, 0.70, 0.31);
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
        assert_refused(err, BudgetScope::MinerDay, 1.5, 1.4, 0.2);
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

    /// The books in memory are the truth, so one ledger owns a file: a
    /// second one (in this process or another) is refused until the first
    /// closes.
    #[tokio::test]
    async fn a_second_ledger_on_one_file_is_refused() {
        let (dir, first) = file_ledger().await;
        let path = dir.path().join("ledger.sqlite");
        assert!(matches!(
            Ledger::open(&path).await.unwrap_err(),
            LedgerError::InUse(_)
        ));
        first
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        first.close().await;
        let second = Ledger::open(&path).await.unwrap();
        assert_usd(second.reserved_usd("r1", "chutes").await.unwrap(), 0.5);
    }

    #[tokio::test]
    async fn release_stale_drops_only_old_open_reservations() {
        let (dir, ledger) = file_ledger().await;
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
        ledger.close().await;
        let path = dir.path().join("ledger.sqlite");
        tamper(
            &path,
            &format!(
                "UPDATE gateway_reservations SET created_at_ms = created_at_ms - 7200000 WHERE id IN ({}, {})",
                old.get(),
                old_settled.get()
            ),
        )
        .await;
        let ledger = Ledger::open(&path).await.unwrap();
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
        let (dir, ledger) = file_ledger().await;
        let path = dir.path().join("ledger.sqlite");
        let id = ledger
            .reserve(req("r1", "m1", 0.5, 1.0, 10.0))
            .await
            .unwrap();
        ledger.check_consistency().await.unwrap();
        ledger.close().await;
        tamper(&path, "UPDATE gateway_run_totals SET reserved_micros = 1").await;
        let ledger = Ledger::open(&path).await.unwrap();
        assert!(matches!(
            ledger.check_consistency().await.unwrap_err(),
            LedgerError::Inconsistent(_)
        ));
        ledger.close().await;
        tamper(
            &path,
            "UPDATE gateway_run_totals SET reserved_micros = 500000",
        )
        .await;
        let ledger = Ledger::open(&path).await.unwrap();
        ledger.check_consistency().await.unwrap();
        ledger.close().await;
        // A missing total makes writing the closing fail and roll back
        // entirely; the ledger then refuses to reserve.
        tamper(&path, "DELETE FROM gateway_miner_day_totals").await;
        let ledger = Ledger::open(&path).await.unwrap();
        ledger.settle(id, 0.1, false).await.unwrap();
        assert!(matches!(
            ledger.flush().await.unwrap_err(),
            LedgerError::Inconsistent(_)
        ));
        assert!(matches!(
            ledger
                .reserve(req("r2", "m1", 0.1, 1.0, 10.0))
                .await
                .unwrap_err(),
            LedgerError::Inconsistent(_)
        ));
        let state: String = sqlx::query_scalar("SELECT state FROM gateway_reservations")
            .fetch_one(&ledger.inner.reader)
            .await
            .unwrap();
        assert_eq!(state, "open");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_ledger_has_written_each_reservation_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let options = LedgerOptions {
            durable: true,
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open_with(&path, &options).await.unwrap();
        let outsider = SqlitePoolOptions::new()
            .connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
        for i in 0..50 {
            let id = ledger
                .reserve(req(&format!("r{i}"), "m1", 0.01, 1.0, 10.0))
                .await
                .unwrap();
            let rows: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM gateway_reservations WHERE id = $1")
                    .bind(id.get())
                    .fetch_one(&outsider)
                    .await
                    .unwrap();
            assert_eq!(rows, 1, "reservation {id} is not in the file yet");
        }
    }

    /// Runs `sql` on the ledger file with a connection of its own, as a
    /// person editing the file (or a crash leaving it so) would.
    async fn tamper(path: &Path, sql: &str) {
        let pool = SqlitePoolOptions::new()
            .connect_with(SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
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
