//! What the ledger, the cache and the linked keys share about their SQLite
//! database: the embedded migrations (one folder, one file), the
//! single-connection writer pool, and the guard of their background
//! maintenance tasks.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// The gateway's schema migrations (ledger, cache and linked keys),
/// embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The pool that serialises writes: one connection, kept for the life of its
/// owner (an in-memory database lives in it).
pub(crate) fn single_connection_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .min_connections(1)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        // The connection is a local file that stays open; pinging it before
        // each use doubled the cost of every write.
        .test_before_acquire(false)
        // Waiting for the writer is queueing behind other writes, each well
        // under a millisecond; a long wait means something is badly wrong.
        .acquire_timeout(Duration::from_secs(60))
}

/// Aborts a background maintenance task when dropped (its owner keeps it in
/// an `Arc`, so the task stops when the last clone goes).
#[derive(Debug)]
pub(crate) struct BackgroundTask(pub(crate) tokio::task::AbortHandle);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens a database file the way the ledger and the cache use it: a writer
/// pool of one connection (creating the file, switching it to WAL, adjusted
/// by `writer`) with the schema brought up to date, and a pool of
/// `read_connections` readers on `base`.
///
/// # Errors
///
/// When the file cannot be opened or migrated.
pub(crate) async fn open_writer_and_readers(
    base: SqliteConnectOptions,
    read_connections: u32,
    writer: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
) -> Result<(SqlitePool, SqlitePool), OpenError> {
    // WAL is a property of the file, set once by the writer; readers must
    // not try to switch it (that needs an exclusive lock).
    let writer_options = writer(
        base.clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal),
    );
    let writer = single_connection_pool()
        .connect_with(writer_options)
        .await?;
    MIGRATOR.run(&writer).await?;
    let readers = SqlitePoolOptions::new()
        .max_connections(read_connections.max(1))
        .connect_with(base)
        .await?;
    Ok((writer, readers))
}

/// Why [`open_writer_and_readers`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The file cannot be opened.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The schema cannot be brought up to date.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
