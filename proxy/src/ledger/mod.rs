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
//!
//! # Shared ledgers
//!
//! Several gateways share one ledger in PostgreSQL
//! ([`Ledger::open_shared`]); how they keep the caps between them is told
//! in `shared/mod.rs`. Their books are the same, limited to the slices of
//! each cap that the database granted them.

/// Evaluates `$query`, an expression over `$pool`, with `$pool` the
/// ledger's reader: a file's reader pool or a shared ledger's PostgreSQL
/// pool. The query is written once and typed for each driver.
macro_rules! on_reader {
    ($store:expr, |$pool:ident| $query:expr) => {
        match $store {
            Store::File(file) => {
                let $pool = &file.reader;
                $query
            }
            Store::Shared(shared) => {
                let $pool = shared.pool();
                $query
            }
        }
    };
}

/// What the ledger reports and checks.
mod audit;
/// The books in memory, where every cap decision is made.
mod books;
/// UTC days.
mod day;
/// The ledger's errors.
mod error;
/// The journal that writes the books' decisions to the file.
mod journal;
/// Money in micro-dollars.
mod money;
/// Opening a ledger on its file.
mod open;
/// Gateways sharing one ledger in PostgreSQL.
mod shared;
/// Reservations, charges, states and options.
mod types;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::background::BackgroundTask;
use crate::error_chain::Chain;
use books::{Books, Closed, Decline, Open, Refused, Reserved, Scope, day_key};
use day::check_day;
pub use day::{utc_day, utc_today};
pub use error::LedgerError;
use journal::{Command, Failure, Write};
pub use money::MAX_USD;
use money::{MICROS_PER_USD, micros_to_usd, usd_to_micros_down, usd_to_micros_up};
pub use shared::SharedLedgerOptions;
pub use types::{BudgetScope, Charge, LedgerOptions, Reservation, ReservationId, ReservationState};

/// The persistent spend ledger. Cheap to clone (the clones share the books
/// and the journal).
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Shared with a shared ledger's journal, which resets them when the
    /// gateway's lease was lost.
    books: Arc<Mutex<Books>>,
    journal: mpsc::UnboundedSender<Command>,
    /// Set while the journal cannot write; reservations are refused then.
    failure: Failure,
    /// Whether `reserve` and the closings wait for their commit.
    wait_for_commit: bool,
    store: Store,
}

/// Where the ledger's books are kept.
#[derive(Debug)]
enum Store {
    /// A SQLite file of its own.
    File(FileStore),
    /// PostgreSQL, shared with other gateways.
    Shared(shared::SharedStore),
}

#[derive(Debug)]
struct FileStore {
    /// The one connection the journal writes with (and lazy loads read).
    writer: SqlitePool,
    /// Queries. For an in-memory ledger, the writer pool itself.
    reader: SqlitePool,
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

const DAY_SQL: &str = "\
SELECT reserved_micros, charged_micros
  FROM gateway_miner_day_totals
 WHERE miner = $1 AND day = $2 AND service = $3";

const STATE_BY_ID_SQL: &str = "SELECT state FROM gateway_reservations WHERE id = $1";

impl Ledger {
    /// Writes what is pending, then closes the connections and releases the
    /// file. Clones of this ledger stop working too.
    pub async fn close(&self) {
        if let Err(error) = self.flush().await {
            tracing::error!(error = %Chain(&error), "ledger: closing with writes that could not be made");
        }
        match &self.inner.store {
            Store::File(file) => {
                if let Some(checkpointer) = &file.checkpointer {
                    checkpointer.0.abort();
                }
                file.reader.close().await;
                file.writer.close().await;
                drop(lock(&file.file_lock).take());
            }
            Store::Shared(shared) => shared.close(&self.inner.books).await,
        }
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
            .map_err(|_| LedgerError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failed)) => Err(failed.into()),
            Err(_) => Err(LedgerError::Closed),
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
        if let Some(failed) = journal::failure_of(&self.inner.failure) {
            return Err(failed.into());
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
        let mut grants = 0;
        let reserved = loop {
            let decided = {
                let mut books = lock(&self.inner.books);
                books.forget_idle_runs_now_and_then(now, RUN_MEMORY_MS);
                books.reserve(open.clone(), run_cap, day_cap)
            };
            match decided {
                Ok(reserved) => break reserved,
                Err(Decline::Refused(refused)) => return Err(budget_exceeded(&open, refused)),
                Err(Decline::Short(shortfall)) => {
                    let Store::Shared(shared) = &self.inner.store else {
                        return Err(LedgerError::Inconsistent(
                            "a file's books declined for want of a slice".into(),
                        ));
                    };
                    // Each grant covers the shortfall it saw; others may
                    // spend it first, but only so many times in a row.
                    grants += 1;
                    if grants > shared::MAX_GRANTS_PER_RESERVATION {
                        return Err(LedgerError::Contended);
                    }
                    shared
                        .grow(&self.inner, &open, shortfall, run_cap, day_cap)
                        .await?;
                }
            }
        };
        if reserved.record_first {
            return self.record_before_use(reserved, open).await;
        }
        self.write(Write::Reserve {
            id: reserved.id,
            open,
            generation: reserved.generation,
            recorded: None,
        })
        .await?;
        Ok(ReservationId(reserved.id))
    }

    /// Waits until reservation `id` is in the shared ledger: beyond a
    /// slice's margin, what a gateway that dies gives up must include every
    /// call it made. One that cannot be recorded is taken back from the
    /// books and refused.
    async fn record_before_use(
        &self,
        reserved: Reserved,
        open: Open,
    ) -> Result<ReservationId, LedgerError> {
        let (recorded, wait) = oneshot::channel();
        self.send(Write::Reserve {
            id: reserved.id,
            open: open.clone(),
            generation: reserved.generation,
            recorded: Some(recorded),
        })?;
        let outcome = match wait.await {
            Ok(Ok(())) => return Ok(ReservationId(reserved.id)),
            Ok(Err(failed)) => failed.into(),
            Err(_) => LedgerError::Closed,
        };
        let mut books = lock(&self.inner.books);
        books.recorded(&open, reserved.generation);
        books.close(reserved.id, ReservationState::Released, 0, false, now_ms());
        Err(outcome)
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

    /// Brings a day scope into memory if it was not loaded at open (a day
    /// before yesterday, or one not seen yet). Days stay in memory once
    /// there, so a day absent from memory has nothing unwritten.
    async fn load_day(&self, miner: &str, day: &str, service: &str) -> Result<(), LedgerError> {
        // A shared ledger's books hold only what this gateway committed.
        let Store::File(file) = &self.inner.store else {
            return Ok(());
        };
        // Days from the one loaded at open on are all in memory already:
        // the common case costs a comparison, not a key.
        if day >= file.loaded_from_day.as_str() {
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
            .fetch_optional(&file.writer)
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
            .map_err(|_| LedgerError::Closed)
    }

    /// Why reservation `id` could not be closed: it does not exist, or it
    /// is closed already (every open reservation is in the books).
    async fn why_not_open(&self, id: ReservationId) -> LedgerError {
        if let Err(error) = self.flush().await {
            return error;
        }
        let state: Result<Option<String>, _> = on_reader!(&self.inner.store, |pool| {
            sqlx::query_scalar(STATE_BY_ID_SQL)
                .bind(id.0)
                .fetch_optional(pool)
                .await
        });
        match state {
            Ok(None) => LedgerError::UnknownReservation(id),
            Ok(Some(state)) => match parse_state(&state) {
                Ok(state) => LedgerError::AlreadyClosed { id, state },
                Err(error) => error,
            },
            Err(error) => LedgerError::from(error),
        }
    }
}

fn scope_from(reserved: i64, charged: i64, now: i64) -> Scope {
    Scope {
        reserved,
        charged,
        touched_at_ms: now,
        ..Scope::default()
    }
}

fn budget_exceeded(open: &Open, refused: Refused) -> LedgerError {
    let Refused {
        scope,
        cap,
        committed,
    } = refused;
    tracing::debug!(
        run_id = %open.run_id, service = %open.service, %scope,
        cap_micros = cap, committed_micros = committed, requested_micros = open.reserved,
        "ledger: budget exceeded"
    );
    LedgerError::BudgetExceeded {
        scope,
        cap_usd: micros_to_usd(cap),
        committed_usd: micros_to_usd(committed),
        requested_usd: micros_to_usd(open.reserved),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; the books change in single
    // steps that leave them whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parse_state(s: &str) -> Result<ReservationState, LedgerError> {
    ReservationState::parse(s).ok_or_else(|| {
        LedgerError::from(sqlx::Error::Decode(
            format!("unknown reservation state {s:?}").into(),
        ))
    })
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
