//! What the ledger, the cache and the linked keys share about their SQLite
//! database: the embedded migrations (one folder, one file), the
//! single-connection writer pool, and the guard of their background
//! maintenance tasks.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePoolOptions;

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
