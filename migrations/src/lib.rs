//! The schema of every sooth table and how a process opens the SQLite file that holds them.
//!
//! This crate owns the SQL migrations (`sqlite/`, applied by the gateway and the validator
//! alike, since sqlx's migrator checks every migration a file has seen; `postgres/`, their
//! untested twins for the scale-out) and the one way a process opens a SQLite file of them:
//! WAL, exactly one writer connection (so a process never contends with itself for the write
//! lock), a pool of readers, the schema brought up to date at open. It must not hold queries:
//! each table's owner (the gateway's ledger, cache and linked keys; the validator's store)
//! writes its own.

use std::path::Path;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Every SQLite migration, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./sqlite");

/// The connection settings of the database file at `path`: a write waits up to
/// `busy_timeout` for another process's write lock, every commit is fsynced when `durable`
/// (`synchronous = FULL`: commits survive power loss) and otherwise only survives a crash of
/// the process (`NORMAL`), and foreign keys are enforced.
#[must_use]
pub fn file_options(path: &Path, busy_timeout: Duration, durable: bool) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(busy_timeout)
        .foreign_keys(true)
        .synchronous(if durable {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
}

/// The pool that serialises a process's writes: one connection, kept for the life of its
/// owner (an in-memory database lives in it).
#[must_use]
pub fn single_connection_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .min_connections(1)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        // The connection is a local file that stays open; pinging it before each use doubled
        // the cost of every write.
        .test_before_acquire(false)
        // Waiting for the writer is queueing behind other writes, each well under a
        // millisecond; a long wait means something is badly wrong.
        .acquire_timeout(Duration::from_secs(60))
}

/// Opens a database file: a writer pool of one connection (creating the file, switching it to
/// WAL, adjusted by `writer`) with the schema brought up to date, and a pool of
/// `read_connections` readers on `base`.
///
/// # Errors
///
/// [`OpenError`] when the file cannot be opened or migrated.
pub async fn open_writer_and_readers(
    base: SqliteConnectOptions,
    read_connections: u32,
    writer: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
) -> Result<(SqlitePool, SqlitePool), OpenError> {
    // WAL is a property of the file, set once by the writer; readers must not try to switch it
    // (that needs an exclusive lock).
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

/// One connection to a database in memory with the schema applied: the writer and reader of
/// tests and demos, gone when its pool is dropped.
///
/// # Errors
///
/// [`OpenError`] if SQLite cannot start.
pub async fn open_in_memory(options: SqliteConnectOptions) -> Result<SqlitePool, OpenError> {
    let pool = single_connection_pool()
        .connect_with(options.in_memory(true))
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be opened.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The schema cannot be brought up to date.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Row;

    use super::*;

    #[tokio::test]
    async fn a_file_opens_in_wal_with_every_table_and_opens_again_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sooth.sqlite");
        let base = SqliteConnectOptions::new().filename(&path);
        let (writer, readers) = open_writer_and_readers(base.clone(), 2, |w| w)
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&readers)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let tables: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
             ORDER BY name",
        )
        .fetch_all(&readers)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
        for table in [
            "gateway_cache",
            "validator_events",
            "validator_runs",
            "validator_source_state",
            "validator_weights_history",
        ] {
            assert!(
                tables.iter().any(|name| name == table),
                "{table} in {tables:?}"
            );
        }
        writer.close().await;
        readers.close().await;
        let (writer, _) = open_writer_and_readers(base, 1, |w| w).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&writer)
            .await
            .unwrap();
        assert_eq!(applied, i64::try_from(MIGRATOR.iter().count()).unwrap());
    }
}
