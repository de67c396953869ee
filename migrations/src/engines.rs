//! Opening a database through sqlx's `any` driver, so that one SQL text serves both engines: a
//! SQLite file (the embedded default, with the settings of [`file_options`](crate::file_options))
//! or a PostgreSQL server (the scale-out engine, `postgres://` URLs).
//!
//! The `any` driver connects from URLs only, so SQLite's per-connection settings (busy timeout,
//! foreign keys, synchronous) are applied by a statement after each connection opens.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};

use crate::{MIGRATOR, OpenError, POSTGRES_MIGRATOR};

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// A SQLite file (or memory).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Engine {
    /// The engine a database URL names: `sqlite:` or `postgres:`/`postgresql:`.
    #[must_use]
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// `url` with its password (if any) replaced by `***`: what errors and logs may show.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    // scheme://user:password@host...: the password sits between the first ':' after "//" and
    // the last '@' before the path.
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (credentials, host) = authority.split_at(at);
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{host}{tail}"),
        None => url.to_owned(),
    }
}

/// The SQL run on every SQLite connection as it opens.
fn sqlite_settings(busy_timeout: Duration, durable: bool) -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {};",
        busy_timeout.as_millis(),
        if durable { "FULL" } else { "NORMAL" }
    )
}

fn any_options(options: &SqliteConnectOptions) -> Result<AnyConnectOptions, OpenError> {
    Ok(AnyConnectOptions::from_url(&options.to_url_lossy())?)
}

/// Opens the SQLite file at `path` through the `any` driver: a writer pool of one connection
/// (creating the file, switching it to WAL) with the schema brought up to date, and a pool of
/// `read_connections` readers. The same settings as [`open_writer_and_readers`](crate::open_writer_and_readers)
/// on [`file_options`](crate::file_options).
///
/// # Errors
///
/// [`OpenError`] when the file cannot be opened or migrated.
pub async fn open_sqlite_file(
    path: &Path,
    busy_timeout: Duration,
    durable: bool,
    read_connections: u32,
) -> Result<(AnyPool, AnyPool), OpenError> {
    sqlx::any::install_default_drivers();
    let settings = sqlite_settings(busy_timeout, durable);
    let base = SqliteConnectOptions::new().filename(path);
    let writer_settings = format!("{settings} PRAGMA journal_mode = WAL;");
    let writer = crate::single_connection::<sqlx::Any>()
        .after_connect(move |connection, _| {
            let writer_settings = writer_settings.clone();
            Box::pin(async move {
                connection.execute(writer_settings.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(any_options(&base.clone().create_if_missing(true))?)
        .await?;
    MIGRATOR.run(&writer).await?;
    let readers = AnyPoolOptions::new()
        .max_connections(read_connections.max(1))
        .after_connect(move |connection, _| {
            let settings = settings.clone();
            Box::pin(async move {
                connection.execute(settings.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(any_options(&base)?)
        .await?;
    Ok((writer, readers))
}

/// One connection to a SQLite database in memory with the schema applied, through the `any`
/// driver: the writer and reader of tests and demos, gone when its pool is dropped.
///
/// # Errors
///
/// [`OpenError`] if SQLite cannot start.
pub async fn open_sqlite_in_memory() -> Result<AnyPool, OpenError> {
    sqlx::any::install_default_drivers();
    let pool = crate::single_connection::<sqlx::Any>()
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection.execute("PRAGMA foreign_keys = ON;").await?;
                Ok(())
            })
        })
        .connect_with("sqlite::memory:".parse::<AnyConnectOptions>()?)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Connects to the PostgreSQL server at `url` with a pool of up to `connections` and brings the
/// schema up to date (the `postgres/` twins). Each connection's `TimeZone` is UTC, and
/// `acquire_timeout` bounds how long a caller waits for a connection (or for the server when it
/// is down).
///
/// # Errors
///
/// [`OpenError`] when the server cannot be reached, refuses the login, or the schema cannot be
/// brought up to date.
pub async fn open_postgres(
    url: &str,
    connections: u32,
    acquire_timeout: Duration,
) -> Result<AnyPool, OpenError> {
    sqlx::any::install_default_drivers();
    // One connection first: when the server is down or refuses the login, this says why at
    // once, where the pool would retry until its timeout and only say that it timed out.
    let probe = tokio::time::timeout(acquire_timeout, AnyConnection::connect(url))
        .await
        .map_err(|_| OpenError::Database(sqlx::Error::PoolTimedOut.into()))??;
    probe.close().await?;
    let pool = AnyPoolOptions::new()
        .max_connections(connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect(url)
        .await?;
    POSTGRES_MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Opens a PostgreSQL database with the native driver, for code that is PostgreSQL-only (the
/// gateways' shared ledger): `connections` connections, each with `synchronous_commit = off`
/// when `asynchronous_commits` (a commit then returns before the server flushes it to disk: it
/// survives the client's crash, not the server's own last fraction of a second), and the schema
/// brought up to date. One connection is made first, so that a server that is down or refuses
/// the login says why at once.
///
/// # Errors
///
/// [`OpenError`] when the URL is not PostgreSQL's, the server cannot be reached within
/// `acquire_timeout`, or the schema cannot be migrated.
pub async fn open_postgres_native(
    url: &str,
    connections: u32,
    acquire_timeout: Duration,
    asynchronous_commits: bool,
) -> Result<sqlx::PgPool, OpenError> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let mut options: PgConnectOptions = url.parse()?;
    if asynchronous_commits {
        options = options.options([("synchronous_commit", "off")]);
    }
    let probe = tokio::time::timeout(acquire_timeout, options.connect())
        .await
        .map_err(|_| OpenError::Database(sqlx::Error::PoolTimedOut.into()))??;
    probe.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await?;
    POSTGRES_MIGRATOR.run(&pool).await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_a_redacted_url() {
        assert_eq!(
            redacted_url("postgres://sooth:s3cret@db.example:5432/sooth?sslmode=require"),
            "postgres://sooth:***@db.example:5432/sooth?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://sooth@db.example/sooth"),
            "postgres://sooth@db.example/sooth"
        );
        assert_eq!(
            redacted_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redacted_url("sqlite://data/v.sqlite"),
            "sqlite://data/v.sqlite"
        );
    }

    #[test]
    fn the_engine_is_read_from_the_scheme() {
        assert_eq!(Engine::of_url("postgres://h/db"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("PostgreSQL://h/db"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("sqlite://v.sqlite"), Some(Engine::Sqlite));
        assert_eq!(Engine::of_url("mysql://h/db"), None);
        assert_eq!(Engine::of_url("v.sqlite"), None);
    }
}
