//! Which keys the cache's file holds, kept in memory so that a miss costs no
//! read of the file.
//!
//! Most lookups that reach the file are misses (a hit is usually in the
//! memory front), and a read through the database's worker thread costs
//! about as much as the rest of the gateway's work on a request. The index
//! answers "the file cannot hold this key" from memory; only a key it may
//! hold is read.
//!
//! It is loaded when the file is opened, told of every row this process
//! writes, and catches up with rows other processes added (by rowid, which
//! grows with each new row) from a background task. Keys of purged rows
//! leave it. It may forget a key the file holds (a row another process
//! wrote and this one has not caught up with, or a purge racing a write of
//! the same key): that costs one fetch, never a wrong answer. Past
//! [`CacheOptions::key_index_entries`](super::CacheOptions::key_index_entries)
//! keys it gives up and every miss reads the file again, so its memory is
//! bounded whatever agents ask.

use std::collections::HashSet;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;

use crate::background::{BackgroundTask, FirstRun, spawn_periodic};

/// Rows read per statement while catching up.
const CATCH_UP_BATCH: i64 = 10_000;

const CATCH_UP_SQL: &str = "\
SELECT rowid, key FROM gateway_cache WHERE rowid > $1 ORDER BY rowid LIMIT $2";

/// The keys of the cache's file, as 64-bit hashes.
#[derive(Debug)]
pub(super) struct KeyIndex {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug)]
struct Inner {
    keys: HashSet<u64>,
    /// False once the index gave up (too many keys): then every key may be
    /// in the file.
    complete: bool,
    /// The highest rowid read from the file.
    last_rowid: i64,
}

/// A key's hash. A collision only makes a miss read the file.
fn hashed(key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl KeyIndex {
    /// An index of an empty file, holding at most `capacity` keys.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                keys: HashSet::new(),
                complete: true,
                last_rowid: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock leaves the state consistent: a panic
        // cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the file may hold `key` (false only when it surely does not).
    pub(super) fn may_hold(&self, key: &str) -> bool {
        let inner = self.lock();
        !inner.complete || inner.keys.contains(&hashed(key))
    }

    /// The file holds `key` now.
    pub(super) fn add(&self, key: &str) {
        let mut inner = self.lock();
        self.add_locked(&mut inner, hashed(key));
    }

    fn add_locked(&self, inner: &mut Inner, hash: u64) {
        if !inner.complete {
            return;
        }
        if inner.keys.len() >= self.capacity && !inner.keys.contains(&hash) {
            inner.complete = false;
            inner.keys = HashSet::new();
            tracing::warn!(
                capacity = self.capacity,
                "cache: more answers on file than the key index holds; misses read the file from now on"
            );
            return;
        }
        inner.keys.insert(hash);
    }

    /// The file no longer holds `key`.
    pub(super) fn remove(&self, key: &str) {
        self.lock().keys.remove(&hashed(key));
    }

    /// Reads the rows added to the file since the last call (all of them
    /// the first time).
    pub(super) async fn catch_up(&self, pool: &SqlitePool) -> Result<(), sqlx::Error> {
        loop {
            let after = {
                let inner = self.lock();
                if !inner.complete {
                    return Ok(());
                }
                inner.last_rowid
            };
            let rows = sqlx::query(CATCH_UP_SQL)
                .bind(after)
                .bind(CATCH_UP_BATCH)
                .fetch_all(pool)
                .await?;
            let mut inner = self.lock();
            for row in &rows {
                let rowid: i64 = row.try_get(0)?;
                let key: &str = row.try_get(1)?;
                self.add_locked(&mut inner, hashed(key));
                inner.last_rowid = inner.last_rowid.max(rowid);
            }
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }
}

/// Catches `index` up with `pool`'s file every `every` (the index was
/// loaded at open, so the first time after one period).
pub(super) fn spawn_catch_up(
    pool: SqlitePool,
    index: std::sync::Arc<KeyIndex>,
    every: Duration,
) -> BackgroundTask {
    let reader = pool.clone();
    spawn_periodic(
        pool,
        every,
        FirstRun::AfterOnePeriod,
        "cache: reading new keys from the file failed",
        move || {
            let (pool, index) = (reader.clone(), index.clone());
            async move { index.catch_up(&pool).await }
        },
    )
}
