//! The schema of every sooth table and how a process opens the database that holds them.
//!
//! This crate owns the SQL migrations (`sqlite/`, applied by the gateway and the validator
//! alike, since sqlx's migrator checks every migration a file has seen; `postgres/`, their
//! twins for the scale-out) and the one way a process opens a SQLite file of them:
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

/// Every PostgreSQL migration (the twins of the SQLite ones), embedded at build time.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./postgres");

mod engines;

pub use engines::{
    Engine, open_postgres, open_postgres_native, open_sqlite_file, open_sqlite_in_memory,
    redacted_url,
};

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
    single_connection()
}

fn single_connection<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
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
    #[error("cannot open the database")]
    Database(#[source] DatabaseError),
    /// The schema cannot be brought up to date.
    #[error("cannot bring the database's schema up to date")]
    Migrate(#[source] DatabaseError),
}

impl From<sqlx::Error> for OpenError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

impl From<sqlx::migrate::MigrateError> for OpenError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error.into())
    }
}

/// A database failure as the one cause at the end of an error's chain.
///
/// sqlx's errors print their own source inside their message (`error returned from database:
/// (code: 13) database or disk is full`, then the same text again as the source), so an error
/// line that walks the chain would say it twice. This wrapper shows sqlx's message and ends the
/// chain there. Every table's owner wraps its sqlx errors in it.
#[derive(Debug)]
pub struct DatabaseError(DatabaseCause);

#[derive(Debug)]
enum DatabaseCause {
    Query(sqlx::Error),
    Migrate(sqlx::migrate::MigrateError),
}

impl DatabaseError {
    /// The sqlx error of a failed query or connection, to tell kinds of failure apart (a
    /// constraint, a busy database); `None` for a failed migration.
    #[must_use]
    pub fn as_sqlx(&self) -> Option<&sqlx::Error> {
        match &self.0 {
            DatabaseCause::Query(error) => Some(error),
            DatabaseCause::Migrate(_) => None,
        }
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            DatabaseCause::Query(error) => error.fmt(f),
            DatabaseCause::Migrate(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for DatabaseError {}

impl From<sqlx::Error> for DatabaseError {
    fn from(error: sqlx::Error) -> Self {
        Self(DatabaseCause::Query(error))
    }
}

impl From<sqlx::migrate::MigrateError> for DatabaseError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self(DatabaseCause::Migrate(error))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Row;

    use super::*;

    #[tokio::test]
    async fn a_database_failure_is_one_cause_said_once() {
        use std::error::Error as _;

        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: SQLite cannot open it.
        let path = dir.path().join("sooth.sqlite");
        std::fs::create_dir(&path).unwrap();
        let base = SqliteConnectOptions::new().filename(&path);
        let error = open_writer_and_readers(base, 1, |w| w).await.unwrap_err();
        assert_eq!(error.to_string(), "cannot open the database");
        let cause = error.source().unwrap();
        assert!(!cause.to_string().is_empty());
        assert!(cause.source().is_none(), "{cause}");
    }

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
