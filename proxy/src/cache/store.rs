//! The file's statements: lookups, stores and the purge of expired rows.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::index::KeyIndex;
use super::memory::FrontEntry;
use super::{CacheError, CachedResponse, unix_now_ms};
use crate::background::{BackgroundTask, FirstRun, spawn_periodic};

/// Expired rows deleted per statement by [`ResponseCache::purge_expired`].
const PURGE_BATCH: i64 = 1_000;

pub(super) const GET_SQL_WITH_EXPIRY: &str = "\
SELECT status, body, content_type, expires_at_ms
  FROM gateway_cache
 WHERE key = $1 AND expires_at_ms > $2";

// Upsert (`ON CONFLICT ... DO UPDATE`, with `excluded`): SQLite >= 3.24 and
// PostgreSQL alike.
const PUT_SQL: &str = "\
INSERT INTO gateway_cache
  (key, service, status, body, content_type, created_at_ms, expires_at_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (key) DO UPDATE
   SET service = excluded.service, status = excluded.status, body = excluded.body,
       content_type = excluded.content_type, created_at_ms = excluded.created_at_ms,
       expires_at_ms = excluded.expires_at_ms";

/// The statement that stores `entry` under `key`, made at `created_at_ms`:
/// the same row whether [`ResponseCache::put`] writes it or the background
/// writer does.
pub(super) fn put_query<'q>(
    key: &'q str,
    service: &'q str,
    entry: &'q FrontEntry,
    created_at_ms: i64,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let response = &entry.response;
    sqlx::query(PUT_SQL)
        .bind(key)
        .bind(service)
        .bind(i64::from(response.status))
        .bind(response.body.as_slice())
        .bind(response.content_type.as_str())
        .bind(created_at_ms)
        .bind(entry.expires_at_ms)
}

// `RETURNING` (SQLite >= 3.35 and PostgreSQL): the key index forgets the
// deleted keys.
const PURGE_SQL: &str = "\
DELETE FROM gateway_cache
 WHERE key IN (SELECT key FROM gateway_cache
                WHERE expires_at_ms <= $1
                ORDER BY expires_at_ms
                LIMIT $2)
RETURNING key";

pub(super) const LIVE_ENTRIES_SQL: &str =
    "SELECT COUNT(*) FROM gateway_cache WHERE expires_at_ms > $1";

pub(super) fn response_from_row(row: &SqliteRow) -> Result<CachedResponse, CacheError> {
    let status: i64 = row.try_get("status")?;
    let status = u16::try_from(status).map_err(|_| {
        CacheError::from(sqlx::Error::Decode(
            format!("cached status {status} is not an HTTP status").into(),
        ))
    })?;
    Ok(CachedResponse {
        status,
        body: row.try_get("body")?,
        content_type: row.try_get("content_type")?,
    })
}

pub(super) async fn purge(
    pool: &SqlitePool,
    index: &KeyIndex,
    now_ms: i64,
) -> Result<u64, CacheError> {
    let mut purged = 0;
    loop {
        let deleted: Vec<String> = sqlx::query_scalar(PURGE_SQL)
            .bind(now_ms)
            .bind(PURGE_BATCH)
            .fetch_all(pool)
            .await?;
        for key in &deleted {
            index.remove(key);
        }
        let deleted = u64::try_from(deleted.len()).unwrap_or(u64::MAX);
        purged += deleted;
        if deleted < PURGE_BATCH.unsigned_abs() {
            return Ok(purged);
        }
    }
}

/// Purges expired rows every `every` (the first time right away).
pub(super) fn spawn_purger(
    pool: SqlitePool,
    index: Arc<KeyIndex>,
    every: Duration,
) -> BackgroundTask {
    let writer = pool.clone();
    spawn_periodic(
        pool,
        every,
        FirstRun::Now,
        "cache: purging expired answers failed",
        move || {
            let (pool, index) = (writer.clone(), index.clone());
            async move {
                let purged = purge(&pool, &index, unix_now_ms()).await?;
                if purged > 0 {
                    tracing::debug!(purged, "cache: purged expired answers");
                }
                Ok::<_, CacheError>(())
            }
        },
    )
}
