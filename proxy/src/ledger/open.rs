//! Opening a ledger: the exclusive lock on its file, the connections, the
//! books loaded back from the file, the journal and the checkpoint task.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use sooth_migrations::{file_options, open_in_memory, open_writer_and_readers};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::books::{Books, Open, day_key, run_key};
use super::journal::{self, Failure, FileSink, LINGER};
use super::{
    FileStore, Inner, Ledger, LedgerError, LedgerOptions, RUN_MEMORY_MS, Store, now_ms, scope_from,
    utc_day,
};
use crate::background::{BackgroundTask, FirstRun, spawn_periodic};

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
    /// [`LedgerError::Open`] when it cannot be opened or migrated,
    /// [`LedgerError::Database`] when the books cannot be read from it.
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
    /// [`LedgerError::Open`] or [`LedgerError::Database`] (SQLite could not
    /// start).
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
        let journal = journal::spawn(FileSink(writer.clone()), failure.clone(), LINGER);
        Ok(Self {
            inner: Arc::new(Inner {
                books: Arc::new(Mutex::new(books)),
                journal,
                failure,
                wait_for_commit,
                store: Store::File(FileStore {
                    writer,
                    reader,
                    loaded_from_day,
                    file_lock: Mutex::new(file_lock),
                    checkpointer,
                }),
            }),
        })
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
        .open(&lock_path);
    let file = match file {
        Ok(file) => file,
        Err(source) => {
            return Err(LedgerError::Lock {
                path: lock_path,
                source,
            });
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::InUse(path.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(LedgerError::Lock {
            path: lock_path,
            source,
        }),
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` every `every` on a reader
/// connection. A passive checkpoint copies committed pages from the WAL into
/// the database file without blocking the writer (or readers), so its fsync
/// stays off the request path; the writer has `wal_autocheckpoint = 0`.
fn spawn_checkpointer(pool: SqlitePool, every: Duration) -> BackgroundTask {
    let reader = pool.clone();
    spawn_periodic(
        pool,
        every,
        FirstRun::Now,
        "ledger: WAL checkpoint failed",
        move || {
            let pool = reader.clone();
            async move {
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                    .map(drop)
            }
        },
    )
}
