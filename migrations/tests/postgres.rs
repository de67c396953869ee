//! The PostgreSQL twins of the migrations: they apply to a real server, give the same tables
//! and columns as the SQLite migrations, and keep the same rules.
//!
//! Needs a PostgreSQL server: `SOOTH_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test` (what the development and CI machines run). The
//! test makes a database of its own and drops it at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};

fn server_url() -> String {
    std::env::var("SOOTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Table to column names.
type Schema = BTreeMap<String, BTreeSet<String>>;

async fn sqlite_schema() -> Schema {
    let pool = sooth_migrations::open_in_memory(SqliteConnectOptions::new())
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
           AND name NOT LIKE 'sqlite%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for table in tables {
        let columns = sqlx::query(&format!("PRAGMA table_info({table})"))
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("name"))
            .collect();
        schema.insert(table, columns);
    }
    schema
}

async fn postgres_schema(pool: &PgPool) -> Schema {
    let rows = sqlx::query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name \
           FROM information_schema.columns \
          WHERE table_schema = 'public' AND table_name NOT LIKE '\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for row in rows {
        schema
            .entry(row.get("table_name"))
            .or_default()
            .insert(row.get("column_name"));
    }
    schema
}

#[tokio::test]
async fn the_postgres_twins_apply_and_match_the_sqlite_schema_and_rules() {
    let server: PgConnectOptions = server_url().parse().expect("SOOTH_TEST_POSTGRES_URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server.clone())
        .await
        .unwrap_or_else(|error| {
            panic!(
                "no PostgreSQL at {}: {error} (set SOOTH_TEST_POSTGRES_URL)",
                server.to_url_lossy()
            )
        });
    let database = format!("sooth_migrations_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server.clone().database(&database))
        .await
        .unwrap();

    sooth_migrations::POSTGRES_MIGRATOR
        .run(&pool)
        .await
        .expect("the twins apply");
    assert_eq!(postgres_schema(&pool).await, sqlite_schema().await);
    // Applying again changes nothing.
    sooth_migrations::POSTGRES_MIGRATOR
        .run(&pool)
        .await
        .unwrap();

    // Some of the rules the store relies on.
    sqlx::raw_sql(
        "INSERT INTO validator_miners (uid, hotkey, registered_at_ms) VALUES (0, 'm', 0);
         INSERT INTO validator_agent_versions (miner_no, hash, uploaded_at_ms, verified_at_ms, status)
              VALUES (1, 'h', 0, 0, 'verified');
         INSERT INTO validator_events (id, kind, title, description, created_at_ms, cutoff_ms)
              VALUES ('e', 'binary', 'T', '', 0, 10);
         INSERT INTO validator_runs (event_no, miner_no, version_no, status, prediction,
                                     clipped_prediction, duration_ms, finished_at_ms)
              VALUES (1, 1, 1, 'ok', 1.7, 0.99, 3, 5);
         INSERT INTO validator_miner_keys (miner_no, service, nonce, ciphertext, linked_at_ms,
                                           version_no)
              VALUES (1, 'chat', decode(repeat('00', 24), 'hex'),
                      decode(repeat('00', 40), 'hex'), 0, 1);",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (refused, why) in [
        (
            "INSERT INTO validator_runs (event_no, miner_no, version_no, status, duration_ms, \
             finished_at_ms) VALUES (1, 1, 1, 'trap', 1, 6)",
            "a second run of the same miner on the same event",
        ),
        (
            "INSERT INTO validator_events (id, kind, title, description, created_at_ms, cutoff_ms) \
             VALUES ('f', 'binary', 'T', '', 10, 10)",
            "a cutoff not after the creation",
        ),
        (
            "UPDATE validator_events SET status = 'resolved', outcome = 2, resolved_at_ms = 20",
            "an outcome other than 0 or 1",
        ),
        (
            "UPDATE validator_events SET status = 'resolved'",
            "a resolved status without an outcome",
        ),
        (
            "INSERT INTO validator_miners (uid, hotkey, registered_at_ms) VALUES (0, 'n', 0)",
            "a uid held by two registered miners",
        ),
        (
            "INSERT INTO validator_source_state (source, state, updated_at_ms) \
             VALUES ('s', 'not json', 0)",
            "a source state that is not JSON",
        ),
        (
            "INSERT INTO validator_miner_keys (miner_no, service, nonce, ciphertext, \
             linked_at_ms) VALUES (1, 'search', decode(repeat('00', 12), 'hex'), \
             decode(repeat('00', 40), 'hex'), 0)",
            "a sealed key whose nonce is not 24 bytes",
        ),
        (
            "UPDATE validator_miner_keys SET dropped_at_ms = 1",
            "a dropped key that keeps its sealed bytes",
        ),
    ] {
        assert!(
            sqlx::query(refused).execute(&pool).await.is_err(),
            "accepted {why}"
        );
    }

    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {database}"))
        .execute(&admin)
        .await
        .unwrap();
}
