//! The ledger's journal: one task that writes what the books decided to the
//! database, in order, many operations per transaction, through a
//! [`Sink`]: the SQLite file's (here, which owns the SQL of those writes)
//! or a shared ledger's (`shared/journal.rs`). Decides nothing.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use sooth_migrations::DatabaseError;

use super::LedgerError;
use super::books::{Closed, Open, Surplus};

/// One decision of the books, to be written.
#[derive(Debug)]
pub(super) enum Write {
    /// A new reservation, made by generation `generation` of the books;
    /// `recorded`, when given, is told once it is committed or failed to be.
    Reserve {
        id: i64,
        open: Open,
        generation: u64,
        recorded: Option<oneshot::Sender<Result<(), Failed>>>,
    },
    Close(Closed),
    /// A shared ledger hands back what a slice held beyond its use.
    GiveBack(Surplus),
    /// A shared ledger renews its lease (every batch does; this makes a
    /// batch when there is nothing else to write).
    Heartbeat,
}

/// Where the journal writes.
pub(super) trait Sink: Send + 'static {
    /// Whether a failed batch drops the reservations whose callers wait
    /// for their record (telling them) rather than trying them again: a
    /// shared ledger refuses a reservation that had to be recorded before
    /// its call and could not be. A transaction that failed wrote none of
    /// them. The others' calls are made already: they are tried again.
    const DROPS_FAILED_RESERVATIONS: bool;

    /// Writes `writes` in one transaction.
    fn commit(&mut self, writes: &[Write]) -> impl Future<Output = Result<(), Failed>> + Send;

    /// Whether the database was closed (the journal then stops trying).
    fn is_closed(&self) -> bool;
}

/// What the journal's task is sent.
#[derive(Debug)]
pub(super) enum Command {
    Write(Write),
    /// Answered once everything sent before it is committed (or has failed
    /// to be, with the reason).
    Flush(oneshot::Sender<Result<(), Failed>>),
}

/// The most operations written in one transaction.
const MAX_BATCH: usize = 1024;

/// How long the journal lets operations gather after the first of a batch
/// before it writes them. Every commit wakes the database connection's
/// thread and the disk; at a thousand calls a second, one commit per few
/// milliseconds instead of two per call keeps that work off the cores the
/// requests need. It is also the longest a decision waits to be written.
pub(super) const LINGER: Duration = Duration::from_millis(4);

/// How long the journal waits before trying a failed batch again; doubled
/// on each failure up to `MAX_RETRY_WAIT`. The gateway refuses calls until a
/// batch is written, so the longest wait is also how long it may stay closed
/// after its disk or database is back: a failed try costs little.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(50);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

const INSERT_SQL: &str = "\
INSERT INTO gateway_reservations
  (id, run_id, miner, service, day, state, reserved_micros, created_at_ms)
VALUES ($1, $2, $3, $4, $5, 'open', $6, $7)";

const CLOSE_SQL: &str = "\
UPDATE gateway_reservations
   SET state = $2, charged_micros = $3, overrun_micros = $4, estimated = $5, closed_at_ms = $6
 WHERE id = $1 AND state = 'open'";

/// Why the journal could not commit a batch; told to everyone who waits
/// for it, so it is shared rather than owned.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum Failed {
    /// The database refused the batch.
    #[error(transparent)]
    Database(Arc<DatabaseError>),
    /// The file disagrees with the books (someone else wrote it): a
    /// reservation the books hold open is not, or a trigger found a total
    /// missing. Says what disagrees.
    #[error("{0}")]
    Inconsistent(String),
    /// A shared ledger's lease ran out and its slices were taken back: it
    /// may record nothing more as the instance it was.
    #[error("the gateway's lease on the shared ledger ran out")]
    LeaseLost,
}

/// How the ledger's triggers begin the message of a write they refuse
/// because the file's totals disagree with its reservations.
const TRIGGER_INCONSISTENT: &str = "ledger inconsistent: ";

impl From<sqlx::Error> for Failed {
    fn from(error: sqlx::Error) -> Self {
        let refused_by_trigger = error
            .as_database_error()
            .and_then(|refusal| refusal.message().strip_prefix(TRIGGER_INCONSISTENT))
            .map(str::to_owned);
        match refused_by_trigger {
            Some(what) => Self::Inconsistent(what),
            None => Self::Database(Arc::new(error.into())),
        }
    }
}

impl From<Failed> for LedgerError {
    fn from(failed: Failed) -> Self {
        match failed {
            Failed::Database(error) => Self::Unavailable(error),
            Failed::Inconsistent(what) => Self::Inconsistent(what),
            Failed::LeaseLost => Self::LeaseLost,
        }
    }
}

/// The journal's failure, shared with the ledger: while a batch cannot be
/// committed, the ledger refuses new reservations.
pub(super) type Failure = Arc<Mutex<Option<Failed>>>;

pub(super) fn failure_of(failure: &Failure) -> Option<Failed> {
    failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn set_failure(failure: &Failure, value: Option<Failed>) {
    *failure.lock().unwrap_or_else(PoisonError::into_inner) = value;
}

/// Starts the journal's task writing to `sink`, letting operations gather
/// for `linger` after the first of a batch. It ends when every sender is
/// dropped and all that was sent is written.
pub(super) fn spawn<S: Sink>(
    mut sink: S,
    failure: Failure,
    linger: Duration,
) -> mpsc::UnboundedSender<Command> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Command>();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let flush_waiting = batch.iter().any(|c| {
                matches!(
                    c,
                    Command::Flush(_)
                        | Command::Write(Write::Reserve {
                            recorded: Some(_),
                            ..
                        })
                )
            });
            if !flush_waiting && batch.len() < MAX_BATCH && !linger.is_zero() {
                tokio::time::sleep(linger).await;
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
            }
            let mut writes = Vec::with_capacity(batch.len());
            let mut flushes = Vec::new();
            for command in batch.drain(..) {
                match command {
                    Command::Write(write) => writes.push(write),
                    Command::Flush(done) => flushes.push(done),
                }
            }
            let mut wait = FIRST_RETRY_WAIT;
            loop {
                match sink.commit(&writes).await {
                    Ok(()) => {
                        set_failure(&failure, None);
                        tell_recorded(&mut writes);
                        for done in flushes.drain(..) {
                            let _ = done.send(Ok(()));
                        }
                        break;
                    }
                    Err(error) => {
                        tracing::error!(%error, operations = writes.len(),
                            "ledger: cannot write the journal; refusing reservations until it can");
                        set_failure(&failure, Some(error.clone()));
                        // Whoever waits learns of the failure now; the batch
                        // is kept and tried again.
                        for done in flushes.drain(..) {
                            let _ = done.send(Err(error.clone()));
                        }
                        if S::DROPS_FAILED_RESERVATIONS {
                            writes.retain_mut(|write| match write {
                                Write::Reserve {
                                    recorded: recorded @ Some(_),
                                    ..
                                } => {
                                    if let Some(recorded) = recorded.take() {
                                        let _ = recorded.send(Err(error.clone()));
                                    }
                                    false
                                }
                                _ => true,
                            });
                        }
                        if sink.is_closed() {
                            return;
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_RETRY_WAIT);
                    }
                }
            }
        }
    });
    sender
}

/// Tells every reservation's waiter in `writes` that it is recorded.
fn tell_recorded(writes: &mut [Write]) {
    for write in writes {
        if let Write::Reserve { recorded, .. } = write
            && let Some(recorded) = recorded.take()
        {
            let _ = recorded.send(Ok(()));
        }
    }
}

/// The SQLite file's journal: the ledger's one writer connection.
pub(super) struct FileSink(pub SqlitePool);

impl Sink for FileSink {
    const DROPS_FAILED_RESERVATIONS: bool = false;

    async fn commit(&mut self, writes: &[Write]) -> Result<(), Failed> {
        commit(&self.0, writes).await
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

async fn commit(pool: &SqlitePool, writes: &[Write]) -> Result<(), Failed> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for write in writes {
        match write {
            Write::Reserve { id, open, .. } => {
                sqlx::query(INSERT_SQL)
                    .bind(id)
                    .bind(&open.run_id)
                    .bind(&open.miner)
                    .bind(&open.service)
                    .bind(&open.day)
                    .bind(open.reserved)
                    .bind(open.created_at_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            Write::Close(closed) => {
                let done = sqlx::query(CLOSE_SQL)
                    .bind(closed.id)
                    .bind(closed.state.as_str())
                    .bind(closed.charged)
                    .bind(closed.overrun)
                    .bind(closed.estimated)
                    .bind(closed.closed_at_ms)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    // The file says this reservation is not open, the books
                    // say it was: someone else wrote the file.
                    return Err(Failed::Inconsistent(format!(
                        "reservation {} is not open in the file",
                        closed.id
                    )));
                }
            }
            // A file's ledger holds no slices and no lease.
            Write::GiveBack(_) | Write::Heartbeat => {}
        }
    }
    Ok(tx.commit().await?)
}
