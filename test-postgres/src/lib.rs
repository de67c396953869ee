//! Tests' PostgreSQL: each test gets a schema of its own on one server, so that tests run in
//! parallel against one database without seeing each other's rows, and the schema is dropped
//! when the test ends.
//!
//! The server is `SOOTH_TEST_POSTGRES_URL`, by default `postgres://postgres@127.0.0.1:5432/test`
//! (what the development and CI machines run; `.ci/run` starts it). This crate owns nothing
//! but test fixtures; it must not be a dependency of anything but tests and benchmarks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};

/// The server tests use: `SOOTH_TEST_POSTGRES_URL`, or the machine's own.
#[must_use]
pub fn server_url() -> String {
    std::env::var("SOOTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own on the test server, dropped (with everything in it) when this is
/// dropped. [`url`](Self::url) connects with it as the `search_path`, so that everything a
/// connection creates or reads unqualified lives in it.
#[derive(Debug)]
pub struct TestSchema {
    name: String,
    url: String,
}

impl TestSchema {
    /// Creates a fresh schema on [`server_url`].
    ///
    /// # Panics
    ///
    /// When the server cannot be reached, naming it: a test that needs PostgreSQL fails rather
    /// than passing without it.
    pub async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!(
            "sooth_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let server = server_url();
        let mut connection = connect(&server).await;
        connection
            .execute(format!("CREATE SCHEMA {name}").as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot create schema {name}: {error}"));
        let _ = connection.close().await;
        let separator = if server.contains('?') { '&' } else { '?' };
        // The application name marks the test's connections, so that the drop can end those a
        // test left behind (a transaction rolled back lazily would hold locks on the schema).
        let url =
            format!("{server}{separator}options=-c%20search_path%3D{name}&application_name={name}");
        Self { name, url }
    }

    /// The URL of the test server with this schema as the search path.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which must not block on itself: the schema is
        // dropped from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = connect(&server_url()).await;
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                      WHERE application_name = $1",
                )
                .bind(&name)
                .execute(&mut connection)
                .await;
                let _ = connection
                    .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                    .await;
                let _ = connection.close().await;
            });
            Some(())
        });
        let _ = dropped.join();
    }
}

async fn connect(server: &str) -> PgConnection {
    let options: PgConnectOptions = server
        .parse()
        .unwrap_or_else(|error| panic!("SOOTH_TEST_POSTGRES_URL {server:?}: {error}"));
    options.connect().await.unwrap_or_else(|error| {
        panic!("no PostgreSQL at {server}: {error} (start it, or set SOOTH_TEST_POSTGRES_URL)")
    })
}
