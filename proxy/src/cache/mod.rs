//! The response cache: identical requests are answered once.
//!
//! A request is identified by its [`cache_key`]: the SHA-256 of the service
//! name, the route and the request body in canonical JSON (object keys
//! sorted, no whitespace) without its volatile top-level fields
//! ([`VOLATILE_FIELDS`]: `user`, `stream_options`, `request_id`,
//! `metadata`). `seed` and everything else count: they change the answer.
//!
//! [`ResponseCache::get_or_fetch`] is what the gateway calls per request. By
//! the service's [`CacheMode`]:
//!
//! * [`On`](CacheMode::On): a stored answer that has not expired is served
//!   ([`CacheOutcome::Hit`]). Otherwise the first caller for the key becomes
//!   the **leader** and fetches from upstream ([`CacheOutcome::Miss`]) while
//!   concurrent callers for the same key wait for its answer
//!   ([`CacheOutcome::Collapsed`]): N identical concurrent requests make one
//!   upstream call. The leader's answer is stored for the TTL.
//! * [`ReadOnly`](CacheMode::ReadOnly): stored answers are served; misses are
//!   fetched by each caller, not stored and not collapsed.
//! * [`Off`](CacheMode::Off): every call fetches ([`CacheOutcome::Bypass`]);
//!   nothing is read or stored.
//!
//! Only successful (2xx) answers are stored, and only those are shared with
//! waiting callers: other statuses (429, 401, ...) may depend on who asked
//! (a miner's own API key, its rate limits) and are returned to the leader
//! alone. Neither [`Hit`](CacheOutcome::Hit) nor
//! [`Collapsed`](CacheOutcome::Collapsed) caused an upstream call: they cost
//! the miner nothing ([`CacheOutcome::called_upstream`]).
//!
//! # Failed and cancelled leaders
//!
//! Errors are not shared. When the leader's fetch fails (an `Err`, or a
//! non-2xx answer) or the leader's future is dropped (its run timed out),
//! the flight ends without an answer and every waiter starts over: it looks
//! the key up again and one of them becomes the new leader, the others wait
//! for it. A caller waits through at most [`MAX_FAILED_LEADERS`] such
//! flights; after that it fetches on its own (outcome `Miss`, a 2xx answer
//! is still stored), so that an upstream that keeps failing does not make
//! the waiters queue one failing fetch after another. A waiter's own future
//! may be dropped at any time; that affects nobody else.
//!
//! Collapsing works within one process ([`ResponseCache`] and its clones).
//! Several processes on one file share the stored answers, not the flights.
//!
//! # Storage
//!
//! A SQLite file (schema: `migrations/sqlite/0002_gateway_cache.sql`,
//! applied on open together with the other migrations of that folder, so a
//! file shared with the [ledger](crate::ledger) works too) in WAL mode,
//! `synchronous = NORMAL` (a power cut may lose the last answers stored,
//! which only costs a fetch). Like the ledger, writes go through a pool of
//! one connection and reads through a separate pool. Lookups ignore expired
//! rows; [`ResponseCache::purge_expired`] deletes them, in batches so that
//! the write lock is never held long, and a background task calls it
//! periodically ([`CacheOptions::purge_interval`]).
//!
//! In front of the file, the most recently used answers are also kept in
//! memory ([`CacheOptions::memory_bytes`]): a hit served from there costs no
//! database round trip, which is most of what a hit would cost otherwise.
//! Answers stored or read by this process enter it; it is not told about
//! answers another process stores in the same file (this one may still
//! serve the answer it has until that expires, which is as good).
//!
//! # Writes off the request path
//!
//! An answer fetched by [`get_or_fetch`](ResponseCache::get_or_fetch) is
//! not written while its request waits: it enters the memory front and a
//! bounded queue ([`CacheOptions::write_queue`]) at once, and a background
//! writer stores the queued answers in batches, one transaction each, like
//! the ledger's journal. Until written, a queued answer is served from
//! memory (even if the front has let it go). A full queue drops the write
//! and counts it ([`ResponseCache::dropped_writes`]); the request never
//! waits. [`ResponseCache::flush`] waits for what is queued, and
//! [`ResponseCache::close`] flushes before it closes. A crash loses the
//! answers of the last few milliseconds, which costs a fetch each.
//! [`put`](ResponseCache::put) still writes before it returns.
//!
//! A miss must not wait for the file either: an index of the keys the file
//! holds, in memory, lets a lookup skip reading the file for a key it
//! cannot hold. Answers another process stores in the same file are
//! found through the index once it catches up with them
//! ([`CacheOptions::key_index_refresh`]); [`get`](ResponseCache::get)
//! always reads the file.
//!
//! Errors of the database inside [`get_or_fetch`](ResponseCache::get_or_fetch)
//! never fail a request: a failed lookup counts as a miss, a failed store is
//! logged, and the answer is returned either way.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use sooth_migrations::{
    DatabaseError, OpenError, file_options, open_in_memory, open_writer_and_readers,
};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use crate::background::BackgroundTask;
use crate::error_chain::Chain;

/// Requests being fetched, collapsed by key.
mod flight;
/// Which keys the file holds, in memory.
mod index;
/// The cache key.
mod key;
/// The answers kept in memory.
mod memory;
/// The cache's modes and outcomes.
mod mode;
/// How to open a cache file.
mod options;
/// The file's statements and the purge of expired rows.
mod store;
/// The background writer of fetched answers.
mod writer;

use flight::{Flights, Role};
use index::KeyIndex;
pub use key::{VOLATILE_FIELDS, cache_key, canonical_body};
use memory::{FrontEntry, MemoryFront, memory_front};
pub use mode::{CacheMode, CacheOutcome};
pub use options::CacheOptions;
use store::{
    GET_SQL_WITH_EXPIRY, LIVE_ENTRIES_SQL, purge, put_query, response_from_row, spawn_purger,
};
use writer::{Write, WriteQueue};

/// How many failed or cancelled leaders a caller waits through before it
/// fetches on its own (see the module docs).
pub const MAX_FAILED_LEADERS: u32 = 2;

/// Errors of the cache's database.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The database could not be opened or its schema brought up to date.
    #[error("cannot open the database of the response cache")]
    Open(#[from] OpenError),
    /// The database failed (I/O, lock wait beyond `busy_timeout`, a corrupt
    /// row, ...).
    #[error("the response cache's database failed")]
    Database(#[source] DatabaseError),
}

impl From<sqlx::Error> for CacheError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

/// An upstream answer as the cache stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body, as received.
    pub body: Vec<u8>,
    /// The `Content-Type` header (empty if there was none).
    pub content_type: String,
}

impl CachedResponse {
    /// Whether the status is 2xx (only such answers are stored and shared).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The persistent response cache with request collapsing. Cheap to clone
/// (the clones share the pools and the in-flight requests).
#[derive(Debug, Clone)]
pub struct ResponseCache {
    /// Exactly one connection: all writes queue here.
    writer: SqlitePool,
    /// Lookups. For an in-memory cache, the writer pool itself.
    reader: SqlitePool,
    /// The requests being fetched, by key.
    flights: Arc<Flights>,
    /// The background purge task, stopped when the last clone goes.
    purger: Option<Arc<BackgroundTask>>,
    /// The key index's catch-up task, stopped when the last clone goes.
    index_refresher: Option<Arc<BackgroundTask>>,
    /// Which keys the file holds.
    index: Arc<KeyIndex>,
    /// Recent answers in memory, in front of `reader`.
    front: Arc<MemoryFront>,
    /// Fetched answers on their way to `writer`.
    writes: WriteQueue,
}

impl ResponseCache {
    /// Opens (creating if needed) the cache file at `path` with default
    /// options and brings its schema up to date. Starts the background
    /// writer (and purge) tasks, so it must be called within a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, CacheError> {
        Self::open_with(path, &CacheOptions::default()).await
    }

    /// Opens (creating if needed) the cache file at `path` and brings its
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be opened or migrated.
    pub async fn open_with(path: &Path, options: &CacheOptions) -> Result<Self, CacheError> {
        let base = file_options(path, options.busy_timeout, false);
        let (writer, reader) =
            open_writer_and_readers(base, options.read_connections, |writer| writer).await?;
        Self::start(writer, reader, options).await
    }

    /// An empty cache in memory (for tests and demos): one connection shared
    /// by writes and lookups, no purge task; gone when the last clone is
    /// dropped.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the database cannot be created.
    pub async fn in_memory() -> Result<Self, CacheError> {
        let writer = open_in_memory(SqliteConnectOptions::new()).await?;
        let options = CacheOptions {
            purge_interval: None,
            key_index_refresh: None,
            ..CacheOptions::default()
        };
        Self::start(writer.clone(), writer, &options).await
    }

    /// The cache on its connections: loads the key index and starts the
    /// background tasks `options` asks for.
    async fn start(
        writer: SqlitePool,
        reader: SqlitePool,
        options: &CacheOptions,
    ) -> Result<Self, CacheError> {
        let index = Arc::new(KeyIndex::new(options.key_index_entries));
        index.catch_up(&reader).await?;
        let purger = options
            .purge_interval
            .map(|every| Arc::new(spawn_purger(writer.clone(), index.clone(), every)));
        let index_refresher = options
            .key_index_refresh
            .map(|every| Arc::new(index::spawn_catch_up(reader.clone(), index.clone(), every)));
        let writes = WriteQueue::spawn(
            writer.clone(),
            index.clone(),
            options.write_queue,
            options.write_linger,
        );
        Ok(Self {
            writer,
            reader,
            flights: Arc::default(),
            purger,
            index_refresher,
            index,
            front: memory_front(options.memory_bytes),
            writes,
        })
    }

    /// Writes what is queued, then closes the connections (waiting for
    /// running operations). Clones of this cache stop storing and always
    /// miss.
    pub async fn close(&self) {
        self.flush().await;
        for task in [&self.purger, &self.index_refresher].into_iter().flatten() {
            task.0.abort();
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Waits until every answer queued before the call is written to the
    /// file (or has failed to be, which is logged).
    pub async fn flush(&self) {
        self.writes.flush().await;
    }

    /// How many fetched answers were not written because the write queue
    /// was full (they were served from memory while they stayed there).
    pub fn dropped_writes(&self) -> u64 {
        self.writes.dropped().get()
    }

    /// The counter behind [`dropped_writes`](Self::dropped_writes), for a
    /// metrics registry (clones count together).
    pub fn dropped_writes_counter(&self) -> Counter {
        self.writes.dropped().clone()
    }

    /// The stored answer for `key` if it has not expired at `now_ms` (Unix
    /// milliseconds, see [`unix_now_ms`]), from memory (an answer still
    /// queued for the writer included) or else from the file.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be read.
    pub async fn get(&self, key: &str, now_ms: i64) -> Result<Option<CachedResponse>, CacheError> {
        if let Some(hit) = self.get_in_memory(key, now_ms) {
            return Ok(Some(hit));
        }
        self.get_from_file(key, now_ms).await
    }

    /// The stored answer for `key` at `now_ms` read from the file (and
    /// kept in memory).
    async fn get_from_file(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<CachedResponse>, CacheError> {
        let row = sqlx::query(GET_SQL_WITH_EXPIRY)
            .bind(key)
            .bind(now_ms)
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let response = response_from_row(&row)?;
        let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
        self.front.insert(
            key.to_owned(),
            Arc::new(FrontEntry {
                response: response.clone(),
                expires_at_ms,
            }),
        );
        Ok(Some(response))
    }

    /// The answer for `key` at `now_ms` from the memory front or the write
    /// queue, without touching the file.
    fn get_in_memory(&self, key: &str, now_ms: i64) -> Option<CachedResponse> {
        if let Some(entry) = self.front.get(key) {
            if entry.expires_at_ms > now_ms {
                return Some(entry.response.clone());
            }
            self.front.remove(key);
        }
        self.writes
            .pending(key)
            .filter(|entry| entry.expires_at_ms > now_ms)
            .map(|entry| entry.response.clone())
    }

    /// Stores `response` under `key` for `ttl` from now, replacing what was
    /// stored, and waits for the write. Returns whether it was stored: only
    /// 2xx answers with a TTL of at least a millisecond are.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be written.
    pub async fn put(
        &self,
        key: &str,
        service: &str,
        response: &CachedResponse,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.put_at(key, service, response, ttl, unix_now_ms())
            .await
    }

    /// [`put`](Self::put) as of `now_ms` (Unix milliseconds).
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be written.
    pub async fn put_at(
        &self,
        key: &str,
        service: &str,
        response: &CachedResponse,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, CacheError> {
        let Some(entry) = self.remember(key, response, ttl, now_ms) else {
            return Ok(false);
        };
        put_query(key, service, &entry, now_ms)
            .execute(&self.writer)
            .await?;
        self.index.add(key);
        Ok(true)
    }

    /// Deletes the rows expired at `now_ms` (Unix milliseconds); returns how
    /// many. Works in batches of a thousand rows, each its own short write.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be written.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<u64, CacheError> {
        self.front.retain(|_, entry| entry.expires_at_ms > now_ms);
        purge(&self.writer, &self.index, now_ms).await
    }

    /// How many stored answers have not expired at `now_ms` (in the file:
    /// answers still queued are not counted).
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the file cannot be read.
    pub async fn live_entries(&self, now_ms: i64) -> Result<u64, CacheError> {
        let n: i64 = sqlx::query_scalar(LIVE_ENTRIES_SQL)
            .bind(now_ms)
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many keys are being fetched right now (leaders that have not
    /// finished).
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Answers the request identified by `key` (see [`cache_key`]) for
    /// `service`, from the cache or by calling `fetch`, as `mode` says (see
    /// the module docs); returns the answer and how it was obtained.
    ///
    /// A 2xx answer fetched in mode `On` is stored for `ttl`: in memory at
    /// once, in the file by the background writer (see the module docs).
    /// `fetch` is called at most once, and not at all for a
    /// [`Hit`](CacheOutcome::Hit) or [`Collapsed`](CacheOutcome::Collapsed)
    /// outcome.
    ///
    /// # Errors
    ///
    /// `fetch`'s error, returned as is, to this caller only. Database
    /// errors do not fail the call (they are logged; a failed lookup counts
    /// as a miss).
    pub async fn get_or_fetch<F, Fut, E>(
        &self,
        key: &str,
        service: &str,
        mode: CacheMode,
        ttl: Duration,
        fetch: F,
    ) -> Result<(CachedResponse, CacheOutcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedResponse, E>>,
    {
        match mode {
            CacheMode::Off => return Ok((fetch().await?, CacheOutcome::Bypass)),
            CacheMode::ReadOnly => {
                if let Some(hit) = self.lookup(key).await {
                    return Ok((hit, CacheOutcome::Hit));
                }
                return Ok((fetch().await?, CacheOutcome::Miss));
            }
            CacheMode::On => {}
        }
        let mut failed_leaders = 0;
        loop {
            if let Some(hit) = self.lookup(key).await {
                return Ok((hit, CacheOutcome::Hit));
            }
            match self.flights.join(key, failed_leaders < MAX_FAILED_LEADERS) {
                Role::Wait(mut done) => {
                    if let Ok(answer) = done.wait_for(Option::is_some).await
                        && let Some(response) = answer.as_deref()
                    {
                        return Ok((response.clone(), CacheOutcome::Collapsed));
                    }
                    // The leader failed or was dropped: start over.
                    failed_leaders += 1;
                    tracing::debug!(key, failed_leaders, "cache: leader gave up, retrying");
                }
                Role::Lead(leader) => {
                    // A leader that finished between our lookup and joining
                    // has put its answer in memory before it let go of the
                    // flight: memory is the only place to look again.
                    if let Some(hit) = self.get_in_memory(key, unix_now_ms()) {
                        leader.publish(&hit);
                        return Ok((hit, CacheOutcome::Hit));
                    }
                    // On `Err` (or if this future is dropped) `leader` drops
                    // without an answer and the waiters start over.
                    let response = fetch().await?;
                    if response.is_success() {
                        // Waiters go on now; the answer is in memory before
                        // the flight ends.
                        leader.publish(&response);
                        self.store(key, service, &response, ttl);
                    }
                    drop(leader);
                    return Ok((response, CacheOutcome::Miss));
                }
                Role::Alone => {
                    let response = fetch().await?;
                    self.store(key, service, &response, ttl);
                    return Ok((response, CacheOutcome::Miss));
                }
            }
        }
    }

    /// [`get`](Self::get) now, without reading the file for a key the
    /// index says it cannot hold; errors are logged and taken as a miss.
    async fn lookup(&self, key: &str) -> Option<CachedResponse> {
        let now_ms = unix_now_ms();
        if let Some(hit) = self.get_in_memory(key, now_ms) {
            return Some(hit);
        }
        if !self.index.may_hold(key) {
            return None;
        }
        match self.get_from_file(key, now_ms).await {
            Ok(hit) => hit,
            Err(error) => {
                tracing::warn!(error = %Chain(&error), key, "cache: lookup failed; treating as a miss");
                None
            }
        }
    }

    /// Puts `response` in the memory front for `ttl` from `now_ms` and
    /// returns its entry, if it is to be stored at all: only 2xx answers
    /// with a TTL of at least a millisecond are.
    fn remember(
        &self,
        key: &str,
        response: &CachedResponse,
        ttl: Duration,
        now_ms: i64,
    ) -> Option<Arc<FrontEntry>> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if !response.is_success() || ttl_ms == 0 {
            return None;
        }
        let entry = Arc::new(FrontEntry {
            response: response.clone(),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        });
        self.front.insert(key.to_owned(), entry.clone());
        Some(entry)
    }

    /// Puts a 2xx answer in memory and queues it for the writer; never
    /// waits (see the module docs).
    fn store(&self, key: &str, service: &str, response: &CachedResponse, ttl: Duration) {
        let now_ms = unix_now_ms();
        let Some(entry) = self.remember(key, response, ttl, now_ms) else {
            return;
        };
        self.writes.enqueue(Write {
            key: key.to_owned(),
            service: service.to_owned(),
            entry,
            created_at_ms: now_ms,
        });
    }
}

/// The current time in Unix milliseconds (what [`ResponseCache::get`] and
/// [`ResponseCache::purge_expired`] are usually given).
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
