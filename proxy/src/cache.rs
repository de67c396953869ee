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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};

use prometheus_client::metrics::counter::Counter;
use sooth_migrations::{OpenError, file_options, open_in_memory, open_writer_and_readers};

use crate::background::BackgroundTask;
use tokio::sync::watch;

/// Which keys the file holds, in memory.
mod index;
/// The background writer of fetched answers.
mod writer;
use index::KeyIndex;
use writer::{Write, WriteQueue};

/// Top-level body fields left out of the cache key: they identify the caller
/// or the transport, not the question (`user`, `stream_options`,
/// `request_id`, `metadata`).
pub const VOLATILE_FIELDS: [&str; 4] = ["user", "stream_options", "request_id", "metadata"];

/// How many failed or cancelled leaders a caller waits through before it
/// fetches on its own (see the module docs).
pub const MAX_FAILED_LEADERS: u32 = 2;

/// Prefix of the hashed key material (changing the key scheme changes it).
const KEY_DOMAIN: &[u8] = b"sooth-gateway-cache-v1\n";

/// Expired rows deleted per statement by [`ResponseCache::purge_expired`].
const PURGE_BATCH: i64 = 1_000;

/// Errors of the cache's database.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The database could not be opened or its schema brought up to date.
    #[error("cannot open the database of the response cache")]
    Open(#[from] OpenError),
    /// The database failed (I/O, lock wait beyond `busy_timeout`, a corrupt
    /// row, ...).
    #[error("cache database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("cache migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whether and how a service's answers are cached (configured per service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Serve stored answers, store new ones, collapse concurrent identical
    /// requests.
    #[default]
    On,
    /// Always fetch; never read or store.
    Off,
    /// Serve stored answers; fetch misses without storing or collapsing.
    ReadOnly,
}

impl CacheMode {
    /// The configuration spelling: `on`, `off`, `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`ResponseCache::get_or_fetch`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// From the store; no upstream call.
    Hit,
    /// Fetched by this caller (and stored if the mode and status allow).
    Miss,
    /// Waited for another caller's fetch of the same key and got its answer;
    /// no upstream call of its own.
    Collapsed,
    /// Fetched with the cache off.
    Bypass,
}

impl CacheOutcome {
    /// Whether this caller's `fetch` ran, i.e. whether the call is billed
    /// ([`Miss`](Self::Miss), [`Bypass`](Self::Bypass)); hits and collapsed
    /// calls cost nothing.
    pub fn called_upstream(self) -> bool {
        matches!(self, Self::Miss | Self::Bypass)
    }

    /// Lower-case name for headers, logs and metrics: `hit`, `miss`,
    /// `collapsed`, `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
        }
    }
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// The cache key of a request: lower-case hex SHA-256 over the service
/// name, the route and [`canonical_body`]`(body)`.
///
/// The hashed bytes are `"sooth-gateway-cache-v1\n"`, then the service and
/// the route each as an 8-byte big-endian length and its UTF-8 bytes, then
/// the canonical body (so no choice of names can make two requests collide).
pub fn cache_key(service: &str, route: &str, body: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(KEY_DOMAIN);
    for part in [service, route] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    write_canonical(&mut hasher, body, true);
    hex::encode(hasher.finalize())
}

/// The body as the cache key sees it: canonical JSON (object keys sorted by
/// their UTF-8 bytes at every level, no whitespace, strings escaped as
/// `serde_json` does, numbers as `serde_json` prints them) with the
/// [`VOLATILE_FIELDS`] of a top-level object left out.
///
/// Nesting depth is bounded by the JSON parser (`serde_json` refuses more
/// than 128 levels), so the recursion is too.
pub fn canonical_body(body: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, body, true);
    out
}

/// Where canonical JSON goes: a string, or straight into the hash.
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, s: &str) {
        self.update(s.as_bytes());
    }
}

fn write_canonical(out: &mut impl Sink, value: &Value, top: bool) {
    match value {
        Value::Null => out.put("null"),
        Value::Bool(b) => out.put(if *b { "true" } else { "false" }),
        Value::Number(n) => out.put(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.put("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_canonical(out, item, false);
            }
            out.put("]");
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(k, _)| !(top && VOLATILE_FIELDS.contains(&k.as_str())))
                .collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.put("{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_string(out, k);
                out.put(":");
                write_canonical(out, v, false);
            }
            out.put("}");
        }
    }
}

/// A JSON string literal, escaped exactly as `serde_json` does.
fn write_string(out: &mut impl Sink, s: &str) {
    out.put("\"");
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0c}' => "\\f",
            c if c < ' ' => {
                out.put(&s[start..i]);
                out.put(&format!("\\u{:04x}", u32::from(c)));
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put(&s[start..i]);
        out.put(escaped);
        start = i + 1;
    }
    out.put(&s[start..]);
    out.put("\"");
}

/// How to open a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long a writer waits for another process's write lock before
    /// failing. Default 5 s.
    pub busy_timeout: Duration,
    /// Connections for lookups. Default 4.
    pub read_connections: u32,
    /// Delete expired rows from a background task at this interval (and
    /// once at open). Default 10 minutes; `None` spawns no task.
    pub purge_interval: Option<Duration>,
    /// Bytes of answers also kept in memory, least recently used out first
    /// (default 64 MiB). Hits are served from there without touching the
    /// file; the file stays the store that survives a restart.
    pub memory_bytes: u64,
    /// Fetched answers waiting for the background writer, at most (default
    /// 4,096; at least 1). A write that finds the queue full is dropped
    /// and counted, never waited for; the queued answers' bodies are what
    /// this bounds in memory.
    pub write_queue: usize,
    /// How long the writer lets answers gather after the first of a batch
    /// before it writes them (default 5 ms): one commit per batch instead
    /// of one per answer.
    pub write_linger: Duration,
    /// Keys of the file indexed in memory, at most (default 2 Mi, about
    /// 40 MiB at most). With more answers on file, misses read the file.
    pub key_index_entries: usize,
    /// How often the key index reads the keys other processes added to the
    /// file (default 2 s); `None` spawns no task (this process alone
    /// writes the file).
    pub key_index_refresh: Option<Duration>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            purge_interval: Some(Duration::from_secs(600)),
            memory_bytes: 64 << 20,
            write_queue: 4096,
            write_linger: Duration::from_millis(5),
            key_index_entries: 2 << 20,
            key_index_refresh: Some(Duration::from_secs(2)),
        }
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

/// Answers kept in memory, weighed by their size in bytes.
type MemoryFront = quick_cache::sync::Cache<String, Arc<FrontEntry>, FrontWeight>;

/// An answer in memory and when it expires (Unix milliseconds).
#[derive(Debug)]
struct FrontEntry {
    response: CachedResponse,
    expires_at_ms: i64,
}

/// Weighs an answer in memory by its bytes, plus a little for the entry.
#[derive(Debug, Clone, Copy)]
struct FrontWeight;

impl quick_cache::Weighter<String, Arc<FrontEntry>> for FrontWeight {
    fn weight(&self, key: &String, entry: &Arc<FrontEntry>) -> u64 {
        (key.len() + entry.response.body.len() + entry.response.content_type.len() + 64) as u64
    }
}

fn memory_front(bytes: u64) -> Arc<MemoryFront> {
    // quick_cache sizes its tables from an estimate of the entry count;
    // answers of a few KiB are typical.
    let estimated_entries = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(16);
    Arc::new(MemoryFront::with_weighter(
        estimated_entries,
        bytes,
        FrontWeight,
    ))
}

const GET_SQL_WITH_EXPIRY: &str = "\
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
fn put_query<'q>(
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

const LIVE_ENTRIES_SQL: &str = "SELECT COUNT(*) FROM gateway_cache WHERE expires_at_ms > $1";

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

    /// An empty cache in memory (for tests and demos): one connection shared
    /// by writes and lookups, no purge task; gone when the last clone is
    /// dropped.
    ///
    /// # Errors
    ///
    /// [`CacheError`] when the database cannot be created.
    pub async fn in_memory() -> Result<Self, CacheError> {
        let writer = open_in_memory(SqliteConnectOptions::new()).await?;
        let options = CacheOptions::default();
        let index = Arc::new(KeyIndex::new(options.key_index_entries));
        let writes = WriteQueue::spawn(
            writer.clone(),
            index.clone(),
            options.write_queue,
            options.write_linger,
        );
        Ok(Self {
            reader: writer.clone(),
            writer,
            flights: Arc::default(),
            purger: None,
            index_refresher: None,
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
        self.flights.lock().len()
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
                tracing::warn!(%error, key, "cache: lookup failed; treating as a miss");
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

/// The answer a flight publishes: `None` until the leader has a 2xx answer.
type Answer = Option<Arc<CachedResponse>>;

/// The keys being fetched. A flight is registered by its leader and removed
/// when the leader finishes or is dropped ([`Leader`]'s `Drop`).
#[derive(Debug, Default)]
struct Flights {
    map: Mutex<HashMap<String, Flight>>,
    next_id: AtomicU64,
}

/// One key being fetched.
#[derive(Debug)]
struct Flight {
    /// Tells the leader's registration apart from a later one of the key.
    id: u64,
    /// Becomes `Some` when the leader publishes; closed (sender dropped)
    /// when the leader goes without an answer.
    done: watch::Receiver<Answer>,
}

/// What a caller of `get_or_fetch` does for a key not in the store.
enum Role<'a> {
    /// Fetch, and publish the answer to the waiters.
    Lead(Leader<'a>),
    /// Wait for the leader's answer.
    Wait(watch::Receiver<Answer>),
    /// Fetch without waiting or leading (waited through too many failures).
    Alone,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Flight>> {
        // No code panics while holding the lock; if one did, the map is
        // still consistent (every change is a single insert or remove).
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the flight for `key` (if `may_wait`) or starts one.
    fn join<'a>(&'a self, key: &'a str, may_wait: bool) -> Role<'a> {
        let mut map = self.lock();
        if let Some(flight) = map.get(key) {
            return if may_wait {
                Role::Wait(flight.done.clone())
            } else {
                Role::Alone
            };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), Flight { id, done: rx });
        Role::Lead(Leader {
            flights: self,
            key,
            id,
            done: tx,
        })
    }
}

/// A registered flight, owned by its leader. Dropping it unregisters the
/// flight and closes its channel: waiters that got no answer start over.
struct Leader<'a> {
    flights: &'a Flights,
    key: &'a str,
    id: u64,
    done: watch::Sender<Answer>,
}

impl Leader<'_> {
    /// Hands `response` to the waiters (present and future, until dropped).
    fn publish(&self, response: &CachedResponse) {
        self.done.send_replace(Some(Arc::new(response.clone())));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        if map.get(self.key).is_some_and(|flight| flight.id == self.id) {
            map.remove(self.key);
        }
        // `self.done` drops after this, closing the channel.
    }
}

fn response_from_row(row: &SqliteRow) -> Result<CachedResponse, CacheError> {
    let status: i64 = row.try_get("status")?;
    let status = u16::try_from(status).map_err(|_| {
        CacheError::Database(sqlx::Error::Decode(
            format!("cached status {status} is not an HTTP status").into(),
        ))
    })?;
    Ok(CachedResponse {
        status,
        body: row.try_get("body")?,
        content_type: row.try_get("content_type")?,
    })
}

async fn purge(pool: &SqlitePool, index: &KeyIndex, now_ms: i64) -> Result<u64, CacheError> {
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
fn spawn_purger(pool: SqlitePool, index: Arc<KeyIndex>, every: Duration) -> BackgroundTask {
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            match purge(&pool, &index, unix_now_ms()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "cache: purged expired answers"),
                Err(error) => {
                    if pool.is_closed() {
                        break;
                    }
                    tracing::warn!(%error, "cache: purging expired answers failed");
                }
            }
        }
    });
    BackgroundTask(task.abort_handle())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    const TTL: Duration = Duration::from_secs(60);

    fn ok(body: &str) -> CachedResponse {
        CachedResponse {
            status: 200,
            body: body.as_bytes().to_vec(),
            content_type: "application/json".to_owned(),
        }
    }

    fn status(code: u16) -> CachedResponse {
        CachedResponse {
            status: code,
            ..ok("{\"error\":\"nope\"}")
        }
    }

    async fn file_cache() -> (tempfile::TempDir, ResponseCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::open(&dir.path().join("cache.sqlite"))
            .await
            .unwrap();
        (dir, cache)
    }

    /// A fetch that counts its calls, sleeps, then answers `response`.
    fn counted(
        calls: &Arc<AtomicUsize>,
        sleep: Duration,
        response: Result<CachedResponse, String>,
    ) -> impl FnOnce() -> std::pin::Pin<
        Box<dyn Future<Output = Result<CachedResponse, String>> + Send>,
    > + Send
    + 'static {
        let calls = Arc::clone(calls);
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(sleep).await;
                response
            })
        }
    }

    fn tally(outcomes: &[CacheOutcome], which: CacheOutcome) -> usize {
        outcomes.iter().filter(|o| **o == which).count()
    }

    #[test]
    fn key_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(
            r#"{"model":"org/M","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            "{ \"max_tokens\" : 10,\n \"messages\" : [ { \"content\" : \"hi\", \"role\" : \"user\" } ],\n \"model\" : \"org/M\" }",
        )
        .unwrap();
        assert_eq!(
            cache_key("chutes", "chat", &a),
            cache_key("chutes", "chat", &b)
        );
        assert_eq!(
            canonical_body(&b),
            r#"{"max_tokens":10,"messages":[{"content":"hi","role":"user"}],"model":"org/M"}"#
        );
        let key = cache_key("chutes", "chat", &a);
        assert_eq!(key.len(), 64);
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Array order is content, not layout.
        let c = json!({"model": "org/M", "messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]});
        let d = json!({"model": "org/M", "messages": [{"role": "user", "content": "again"}, {"role": "user", "content": "hi"}]});
        assert_ne!(
            cache_key("chutes", "chat", &c),
            cache_key("chutes", "chat", &d)
        );
    }

    #[test]
    fn key_ignores_volatile_fields_at_top_level_only() {
        let base = json!({"model": "org/M", "prompt": "p"});
        let noisy = json!({
            "model": "org/M", "prompt": "p",
            "user": "miner-7", "stream_options": {"include_usage": true},
            "request_id": "abc", "metadata": {"run": 1}
        });
        assert_eq!(
            cache_key("s", "chat", &base),
            cache_key("s", "chat", &noisy)
        );
        assert_eq!(canonical_body(&noisy), r#"{"model":"org/M","prompt":"p"}"#);
        // Nested fields of the same names are content.
        let nested = json!({"model": "org/M", "prompt": "p", "tools": [{"user": "x"}]});
        let nested2 = json!({"model": "org/M", "prompt": "p", "tools": [{"user": "y"}]});
        assert_ne!(
            cache_key("s", "chat", &nested),
            cache_key("s", "chat", &nested2)
        );
    }

    #[test]
    fn key_depends_on_seed_service_route_and_values() {
        let body = json!({"model": "org/M", "prompt": "p", "seed": 1});
        let key = cache_key("chutes", "chat", &body);
        let mut seeded = body.clone();
        seeded["seed"] = json!(2);
        assert_ne!(key, cache_key("chutes", "chat", &seeded));
        let mut unseeded = body.clone();
        unseeded.as_object_mut().unwrap().remove("seed");
        assert_ne!(key, cache_key("chutes", "chat", &unseeded));
        assert_ne!(key, cache_key("other", "chat", &body));
        assert_ne!(key, cache_key("chutes", "search", &body));
        // Lengths are framed: moving a character between service and route
        // changes the key.
        assert_ne!(cache_key("ab", "c", &body), cache_key("a", "bc", &body));
        assert_ne!(
            key,
            cache_key(
                "chutes",
                "chat",
                &json!({"model": "org/M", "prompt": "p", "seed": "1"})
            )
        );
    }

    #[test]
    fn canonical_body_matches_serde_json_escaping_and_numbers() {
        let value = json!({
            "z": "quote \" backslash \\ nl \n cr \r tab \t bs \u{08} ff \u{0c} nul \u{0} us \u{1f} del \u{7f} é ✓ 😀",
            "a": [1, -2, 3.5, 1e300, 0.1, null, true, false, {"y": [], "x": {}}],
            "m": {"b": 1, "a": 2, "": 3},
        });
        let canonical = canonical_body(&value);
        // serde_json (without `preserve_order`) sorts object keys and
        // prints compactly: the same text.
        let sorted: std::collections::BTreeMap<String, Value> =
            serde_json::from_value(value.clone()).unwrap();
        let mut expected = String::from("{");
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                expected.push(',');
            }
            expected.push_str(&serde_json::to_string(k).unwrap());
            expected.push(':');
            expected.push_str(&sorted_json(v));
        }
        expected.push('}');
        assert_eq!(canonical, expected);
        // And it parses back to the same value.
        assert_eq!(serde_json::from_str::<Value>(&canonical).unwrap(), value);
        // Scalars at top level.
        assert_eq!(canonical_body(&json!("a\"b")), r#""a\"b""#);
        assert_eq!(canonical_body(&json!(null)), "null");
    }

    /// Compact JSON with sorted keys, independent of `preserve_order`.
    fn sorted_json(v: &Value) -> String {
        match v {
            Value::Object(map) => {
                let sorted: std::collections::BTreeMap<&String, String> =
                    map.iter().map(|(k, v)| (k, sorted_json(v))).collect();
                let inner: Vec<String> = sorted
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(sorted_json).collect();
                format!("[{}]", inner.join(","))
            }
            other => serde_json::to_string(other).unwrap(),
        }
    }

    #[test]
    fn modes_and_outcomes_serialise_in_kebab_case() {
        assert_eq!(
            serde_json::to_string(&CacheMode::ReadOnly).unwrap(),
            "\"read-only\""
        );
        for mode in [CacheMode::On, CacheMode::Off, CacheMode::ReadOnly] {
            let text = format!("\"{mode}\"");
            assert_eq!(serde_json::from_str::<CacheMode>(&text).unwrap(), mode);
        }
        assert!(serde_json::from_str::<CacheMode>("\"readonly\"").is_err());
        assert_eq!(CacheMode::default(), CacheMode::On);
        assert_eq!(
            serde_json::to_string(&CacheOutcome::Collapsed).unwrap(),
            "\"collapsed\""
        );
        assert!(CacheOutcome::Miss.called_upstream());
        assert!(CacheOutcome::Bypass.called_upstream());
        assert!(!CacheOutcome::Hit.called_upstream());
        assert!(!CacheOutcome::Collapsed.called_upstream());
    }

    #[tokio::test]
    async fn put_then_get() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let now = unix_now_ms();
        assert_eq!(cache.get("k", now).await.unwrap(), None);
        let answer = CachedResponse {
            status: 201,
            body: vec![0, 159, 146, 150, 255],
            content_type: "application/octet-stream".to_owned(),
        };
        assert!(cache.put("k", "chutes", &answer, TTL).await.unwrap());
        assert_eq!(cache.get("k", now).await.unwrap(), Some(answer));
        // Storing again replaces.
        assert!(cache.put("k", "chutes", &ok("new"), TTL).await.unwrap());
        assert_eq!(cache.get("k", now).await.unwrap(), Some(ok("new")));
        assert_eq!(cache.get("other", now).await.unwrap(), None);
        assert_eq!(cache.live_entries(now).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let t0 = 1_000_000;
        assert!(
            cache
                .put_at("k", "s", &ok("a"), Duration::from_secs(10), t0)
                .await
                .unwrap()
        );
        assert!(cache.get("k", t0).await.unwrap().is_some());
        assert!(cache.get("k", t0 + 9_999).await.unwrap().is_some());
        assert_eq!(cache.get("k", t0 + 10_000).await.unwrap(), None);
        assert_eq!(cache.get("k", t0 + 20_000).await.unwrap(), None);
        // A zero TTL stores nothing.
        assert!(
            !cache
                .put_at("z", "s", &ok("a"), Duration::ZERO, t0)
                .await
                .unwrap()
        );
        assert_eq!(cache.get("z", t0).await.unwrap(), None);
        // Through get_or_fetch: an expired answer is fetched again.
        let calls = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_millis(50);
        let fetch = || counted(&calls, Duration::ZERO, Ok(ok("x")));
        let (_, first) = cache
            .get_or_fetch("e", "s", CacheMode::On, ttl, fetch())
            .await
            .unwrap();
        let (_, second) = cache
            .get_or_fetch("e", "s", CacheMode::On, ttl, fetch())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (_, third) = cache
            .get_or_fetch("e", "s", CacheMode::On, ttl, fetch())
            .await
            .unwrap();
        assert_eq!(
            (first, second, third),
            (CacheOutcome::Miss, CacheOutcome::Hit, CacheOutcome::Miss)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_successful_answers_are_stored() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let now = unix_now_ms();
        for code in [100, 199, 300, 304, 400, 404, 429, 500, 503] {
            assert!(
                !cache.put("k", "s", &status(code), TTL).await.unwrap(),
                "{code}"
            );
        }
        assert_eq!(cache.get("k", now).await.unwrap(), None);
        for code in [200, 204, 299] {
            assert!(
                cache
                    .put(&format!("k{code}"), "s", &status(code), TTL)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(cache.live_entries(now).await.unwrap(), 3);
        // Through get_or_fetch: a 503 is returned, not stored, and fetched again.
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let (answer, outcome) = cache
                .get_or_fetch(
                    "u",
                    "s",
                    CacheMode::On,
                    TTL,
                    counted(&calls, Duration::ZERO, Ok(status(503))),
                )
                .await
                .unwrap();
            assert_eq!((answer.status, outcome), (503, CacheOutcome::Miss));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.get("u", now).await.unwrap(), None);
        assert_eq!(cache.in_flight(), 0);
    }

    #[tokio::test]
    async fn read_only_serves_hits_but_does_not_store() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (answer, outcome) = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::ReadOnly,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("a"))),
            )
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok("a"), CacheOutcome::Miss));
        assert_eq!(cache.get("k", unix_now_ms()).await.unwrap(), None);
        cache.put("k", "s", &ok("stored"), TTL).await.unwrap();
        let (answer, outcome) = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::ReadOnly,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("b"))),
            )
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok("stored"), CacheOutcome::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn read_only_does_not_collapse() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (cache, fetch) = (
                cache.clone(),
                counted(&calls, Duration::from_millis(50), Ok(ok("a"))),
            );
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", "s", CacheMode::ReadOnly, TTL, fetch)
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().1, CacheOutcome::Miss);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        assert_eq!(cache.live_entries(unix_now_ms()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn off_always_fetches_and_never_reads_or_stores() {
        let cache = ResponseCache::in_memory().await.unwrap();
        cache.put("k", "s", &ok("stored"), TTL).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        for body in ["a", "b"] {
            let (answer, outcome) = cache
                .get_or_fetch(
                    "k",
                    "s",
                    CacheMode::Off,
                    TTL,
                    counted(&calls, Duration::ZERO, Ok(ok(body))),
                )
                .await
                .unwrap();
            assert_eq!((answer, outcome), (ok(body), CacheOutcome::Bypass));
        }
        let (answer, _) = cache
            .get_or_fetch(
                "new",
                "s",
                CacheMode::Off,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("c"))),
            )
            .await
            .unwrap();
        assert_eq!(answer, ok("c"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let now = unix_now_ms();
        assert_eq!(cache.get("k", now).await.unwrap(), Some(ok("stored")));
        assert_eq!(cache.get("new", now).await.unwrap(), None);
    }

    #[tokio::test]
    async fn fetch_errors_are_returned_and_not_stored() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let error = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Err("boom".to_owned())),
            )
            .await
            .unwrap_err();
        assert_eq!(error, "boom");
        assert_eq!(cache.in_flight(), 0);
        let (answer, outcome) = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("a"))),
            )
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok("a"), CacheOutcome::Miss));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_identical_requests_make_one_upstream_call() {
        let (_dir, cache) = file_cache().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, fetch) = (
                cache.clone(),
                counted(&calls, Duration::from_millis(50), Ok(ok("answer"))),
            );
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", "chutes", CacheMode::On, TTL, fetch)
                    .await
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            let (answer, outcome) = task.await.unwrap().unwrap();
            assert_eq!(answer, ok("answer"));
            outcomes.push(outcome);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(tally(&outcomes, CacheOutcome::Miss), 1);
        assert_eq!(tally(&outcomes, CacheOutcome::Collapsed), 99);
        assert_eq!(cache.in_flight(), 0);
        // Afterwards: a hit, still one call.
        let (_, outcome) = cache
            .get_or_fetch(
                "k",
                "chutes",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("other"))),
            )
            .await
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn different_keys_are_not_collapsed() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (cache, fetch) = (
                cache.clone(),
                counted(&calls, Duration::from_millis(20), Ok(ok("a"))),
            );
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&format!("k{}", i % 4), "s", CacheMode::On, TTL, fetch)
                    .await
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap().1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(tally(&outcomes, CacheOutcome::Miss), 4);
    }

    /// Starts a leader for "k" whose fetch is `fetch`, and returns once its
    /// flight is registered.
    async fn start_leader(
        cache: &ResponseCache,
        fetch: impl FnOnce() -> std::pin::Pin<
            Box<dyn Future<Output = Result<CachedResponse, String>> + Send>,
        > + Send
        + 'static,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<
        Result<Result<(CachedResponse, CacheOutcome), String>, tokio::time::error::Elapsed>,
    > {
        let leader = {
            let cache = cache.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    timeout,
                    cache.get_or_fetch("k", "s", CacheMode::On, TTL, fetch),
                )
                .await
            })
        };
        while cache.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        leader
    }

    async fn spawn_waiters(
        cache: &ResponseCache,
        calls: &Arc<AtomicUsize>,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<Result<(CachedResponse, CacheOutcome), String>>> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (cache, fetch) = (
                cache.clone(),
                counted(calls, Duration::from_millis(50), Ok(ok("good"))),
            );
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", "s", CacheMode::On, TTL, fetch)
                    .await
            }));
        }
        tasks
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_recover_from_a_failed_leader() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let leader = start_leader(
            &cache,
            counted(
                &calls,
                Duration::from_millis(50),
                Err("upstream down".to_owned()),
            ),
            Duration::from_secs(10),
        )
        .await;
        let waiters = spawn_waiters(&cache, &calls, 20).await;
        assert_eq!(leader.await.unwrap().unwrap().unwrap_err(), "upstream down");
        let mut outcomes = Vec::new();
        for task in waiters {
            let (answer, outcome) = task.await.unwrap().unwrap();
            assert_eq!(answer, ok("good"));
            outcomes.push(outcome);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(tally(&outcomes, CacheOutcome::Miss), 1);
        assert_eq!(tally(&outcomes, CacheOutcome::Collapsed), 19);
        assert_eq!(cache.in_flight(), 0);
        assert_eq!(
            cache.get("k", unix_now_ms()).await.unwrap(),
            Some(ok("good"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_do_not_share_a_non_2xx_answer() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let leader = start_leader(
            &cache,
            counted(&calls, Duration::from_millis(50), Ok(status(429))),
            Duration::from_secs(10),
        )
        .await;
        let waiters = spawn_waiters(&cache, &calls, 10).await;
        let (answer, outcome) = leader.await.unwrap().unwrap().unwrap();
        assert_eq!((answer.status, outcome), (429, CacheOutcome::Miss));
        for task in waiters {
            assert_eq!(task.await.unwrap().unwrap().0, ok("good"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_complete_when_the_leader_is_cancelled() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        // The leader's fetch would take 10 s; its caller gives up after 100 ms.
        let leader = start_leader(
            &cache,
            counted(&calls, Duration::from_secs(10), Ok(ok("late"))),
            Duration::from_millis(100),
        )
        .await;
        let waiters = spawn_waiters(&cache, &calls, 20).await;
        let done = tokio::time::timeout(Duration::from_secs(5), async {
            assert!(leader.await.unwrap().is_err(), "the leader should time out");
            let mut outcomes = Vec::new();
            for task in waiters {
                let (answer, outcome) = task.await.unwrap().unwrap();
                assert_eq!(answer, ok("good"));
                outcomes.push(outcome);
            }
            outcomes
        })
        .await
        .expect("waiters hang after the leader was cancelled");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(tally(&done, CacheOutcome::Miss), 1);
        assert_eq!(tally(&done, CacheOutcome::Collapsed), 19);
        assert_eq!(cache.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_stop_waiting_after_repeated_failures() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (cache, fetch) = (
                cache.clone(),
                counted(&calls, Duration::from_millis(30), Err("down".to_owned())),
            );
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", "s", CacheMode::On, TTL, fetch)
                    .await
            }));
        }
        let started = std::time::Instant::now();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap_err(), "down");
        }
        // Every caller fetched once, and no caller queued behind more than
        // MAX_FAILED_LEADERS failed fetches (plus its own).
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        assert!(
            started.elapsed() < Duration::from_millis(30 * 6),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(cache.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_waiter_does_not_disturb_the_flight() {
        let cache = ResponseCache::in_memory().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let leader = start_leader(
            &cache,
            counted(&calls, Duration::from_millis(100), Ok(ok("a"))),
            Duration::from_secs(10),
        )
        .await;
        let impatient = tokio::time::timeout(
            Duration::from_millis(10),
            cache.get_or_fetch(
                "k",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("b"))),
            ),
        )
        .await;
        assert!(impatient.is_err());
        assert_eq!(cache.in_flight(), 1);
        let (answer, outcome) = leader.await.unwrap().unwrap().unwrap();
        assert_eq!((answer, outcome), (ok("a"), CacheOutcome::Miss));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn get_or_fetch_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cache = rt.block_on(ResponseCache::in_memory()).unwrap();
        let future = cache.get_or_fetch("k", "s", CacheMode::On, TTL, || async {
            Ok::<_, String>(ok("a"))
        });
        assert_send(&future);
    }

    #[tokio::test]
    async fn answers_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let cache = ResponseCache::open(&path).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let key = cache_key("chutes", "chat", &json!({"model": "org/M", "prompt": "p"}));
        let (_, outcome) = cache
            .get_or_fetch(
                &key,
                "chutes",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("kept"))),
            )
            .await
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Miss);
        cache.close().await;
        drop(cache);

        let reopened = ResponseCache::open(&path).await.unwrap();
        let (answer, outcome) = reopened
            .get_or_fetch(
                &key,
                "chutes",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("new"))),
            )
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok("kept"), CacheOutcome::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The same folder's other migrations were applied too (one database
        // can hold the ledger and the cache).
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'gateway_%' ORDER BY name",
        )
        .fetch_all(&reopened.reader)
        .await
        .unwrap();
        assert!(tables.contains(&"gateway_cache".to_owned()), "{tables:?}");
    }

    /// One database file for the ledger and the cache (as the gateway's
    /// `gateway.sqlite`), opened one after the other.
    #[tokio::test]
    async fn shares_a_file_with_the_ledger() {
        use crate::ledger::{Ledger, Reservation, utc_today};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.sqlite");
        let ledger = Ledger::open(&path).await.unwrap();
        let cache = ResponseCache::open(&path).await.unwrap();
        cache.put("k", "s", &ok("a"), TTL).await.unwrap();
        let id = ledger
            .reserve(Reservation {
                run_id: "r1".to_owned(),
                miner: "m1".to_owned(),
                service: "s".to_owned(),
                day: utc_today(),
                amount_usd: 0.5,
                run_cap_usd: 1.0,
                day_cap_usd: 1.0,
            })
            .await
            .unwrap();
        ledger.settle(id, 0.25, false).await.unwrap();
        assert_eq!(cache.get("k", unix_now_ms()).await.unwrap(), Some(ok("a")));
        cache.close().await;
        ledger.close().await;
        // Reopened in the other order: nothing left to migrate.
        let cache = ResponseCache::open(&path).await.unwrap();
        let ledger = Ledger::open(&path).await.unwrap();
        assert_eq!(cache.get("k", unix_now_ms()).await.unwrap(), Some(ok("a")));
        assert_eq!(ledger.spent_usd("r1", "s").await.unwrap(), 0.25);
        ledger.check_consistency().await.unwrap();
    }

    #[tokio::test]
    async fn two_handles_on_one_file_share_answers() {
        let (dir, first) = file_cache().await;
        let second = ResponseCache::open(&dir.path().join("cache.sqlite"))
            .await
            .unwrap();
        first.put("k", "s", &ok("shared"), TTL).await.unwrap();
        assert_eq!(
            second.get("k", unix_now_ms()).await.unwrap(),
            Some(ok("shared"))
        );
    }

    #[tokio::test]
    async fn purge_expired_deletes_only_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            purge_interval: None,
            ..CacheOptions::default()
        };
        let cache = ResponseCache::open_with(&dir.path().join("cache.sqlite"), &options)
            .await
            .unwrap();
        let t0 = 5_000_000;
        for i in 0..2_500 {
            let ttl = Duration::from_secs(if i % 5 == 0 { 100 } else { 10 });
            cache
                .put_at(&format!("k{i}"), "s", &ok("a"), ttl, t0)
                .await
                .unwrap();
        }
        assert_eq!(cache.purge_expired(t0 + 9_999).await.unwrap(), 0);
        assert_eq!(cache.live_entries(t0).await.unwrap(), 2_500);
        // 2,000 rows expired: more than one batch.
        assert_eq!(cache.purge_expired(t0 + 10_000).await.unwrap(), 2_000);
        assert_eq!(cache.purge_expired(t0 + 10_000).await.unwrap(), 0);
        assert_eq!(cache.live_entries(t0).await.unwrap(), 500);
        assert!(cache.get("k0", t0 + 50_000).await.unwrap().is_some());
        assert_eq!(cache.get("k1", t0).await.unwrap(), None);
        assert_eq!(cache.purge_expired(t0 + 100_000).await.unwrap(), 500);
        assert_eq!(cache.live_entries(0).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_task_purges_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            purge_interval: Some(Duration::from_millis(20)),
            ..CacheOptions::default()
        };
        let cache = ResponseCache::open_with(&dir.path().join("cache.sqlite"), &options)
            .await
            .unwrap();
        cache
            .put("short", "s", &ok("a"), Duration::from_millis(30))
            .await
            .unwrap();
        cache.put("long", "s", &ok("b"), TTL).await.unwrap();
        let all = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM gateway_cache")
                .fetch_one(&cache.reader)
                .await
                .unwrap()
        };
        assert_eq!(all().await, 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(all().await, 1);
        cache.close().await;
    }

    /// A file cache with `options`, and a connection that can take the
    /// file's write lock from the cache's writer.
    async fn blockable_cache(
        options: &CacheOptions,
    ) -> (tempfile::TempDir, ResponseCache, sqlx::SqliteConnection) {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let cache = ResponseCache::open_with(&path, options).await.unwrap();
        let blocker = sqlx::SqliteConnection::connect_with(&file_options(
            &path,
            Duration::from_secs(5),
            false,
        ))
        .await
        .unwrap();
        (dir, cache, blocker)
    }

    async fn rows(cache: &ResponseCache) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM gateway_cache")
            .fetch_one(&cache.reader)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fetched_answer_is_served_from_memory_while_its_write_is_queued() {
        // A front too small to hold any answer: only the queue can serve it.
        let options = CacheOptions {
            memory_bytes: 1,
            ..CacheOptions::default()
        };
        let (_dir, cache, mut blocker) = blockable_cache(&options).await;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut blocker)
            .await
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (_, first) = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("queued"))),
            )
            .await
            .unwrap();
        let (answer, second) = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("again"))),
            )
            .await
            .unwrap();
        assert_eq!((first, second), (CacheOutcome::Miss, CacheOutcome::Hit));
        assert_eq!(answer, ok("queued"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Not in the file yet: the writer waits for the lock.
        assert_eq!(rows(&cache).await, 0);
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        cache.flush().await;
        assert_eq!(rows(&cache).await, 1);
        // Written, it is still found (now in the file).
        assert_eq!(
            cache.get("k", unix_now_ms()).await.unwrap(),
            Some(ok("queued"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_write_queue_drops_writes_instead_of_waiting() {
        let options = CacheOptions {
            write_queue: 2,
            write_linger: Duration::ZERO,
            ..CacheOptions::default()
        };
        let (_dir, cache, mut blocker) = blockable_cache(&options).await;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut blocker)
            .await
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let answers = 20;
        // The writer is stuck on the lock for up to 5 s; no request waits
        // for it.
        tokio::time::timeout(Duration::from_secs(2), async {
            for i in 0..answers {
                let (_, outcome) = cache
                    .get_or_fetch(
                        &format!("k{i}"),
                        "s",
                        CacheMode::On,
                        TTL,
                        counted(&calls, Duration::ZERO, Ok(ok("a"))),
                    )
                    .await
                    .unwrap();
                assert_eq!(outcome, CacheOutcome::Miss);
            }
        })
        .await
        .expect("a request waited for the writer");
        let dropped = cache.dropped_writes();
        // At most the writer's batch and the queue's two were taken.
        assert!(
            (1..=answers).contains(&dropped) && dropped >= answers - 4,
            "{dropped}"
        );
        // Every answer is still served, from memory.
        for i in 0..answers {
            assert!(
                cache
                    .get(&format!("k{i}"), unix_now_ms())
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        cache.flush().await;
        assert_eq!(
            rows(&cache).await,
            i64::try_from(answers - dropped).unwrap()
        );
        assert_eq!(cache.dropped_writes_counter().get(), dropped);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_writes_the_queued_answers_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        // Without the flush, the batch would wait a minute.
        let options = CacheOptions {
            write_linger: Duration::from_secs(60),
            ..CacheOptions::default()
        };
        let cache = ResponseCache::open_with(&path, &options).await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        for key in ["a", "b", "c"] {
            cache
                .get_or_fetch(
                    key,
                    "s",
                    CacheMode::On,
                    TTL,
                    counted(&calls, Duration::ZERO, Ok(ok(key))),
                )
                .await
                .unwrap();
        }
        let started = std::time::Instant::now();
        cache.close().await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let reopened = ResponseCache::open(&path).await.unwrap();
        for key in ["a", "b", "c"] {
            assert_eq!(
                reopened.get(key, unix_now_ms()).await.unwrap(),
                Some(ok(key))
            );
        }
    }

    /// A fetch that must not run: the answer is expected from the cache.
    fn not_called()
    -> impl FnOnce()
        -> std::pin::Pin<Box<dyn Future<Output = Result<CachedResponse, String>> + Send>>
    + Send
    + 'static {
        || Box::pin(async { Err("fetched, but the answer was in the file".to_owned()) })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_another_handle_stores_are_served_once_the_index_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let options = CacheOptions {
            key_index_refresh: Some(Duration::from_millis(20)),
            ..CacheOptions::default()
        };
        let first = ResponseCache::open_with(&path, &options).await.unwrap();
        first.put("on-file", "s", &ok("old"), TTL).await.unwrap();
        // Opened after: its index is loaded with what the file holds.
        let second = ResponseCache::open_with(&path, &options).await.unwrap();
        let (answer, outcome) = second
            .get_or_fetch("on-file", "s", CacheMode::On, TTL, not_called())
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok("old"), CacheOutcome::Hit));
        // Stored by the first after the second opened: found after a
        // catch-up.
        let calls = Arc::new(AtomicUsize::new(0));
        first
            .get_or_fetch(
                "new",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok("new"))),
            )
            .await
            .unwrap();
        first.flush().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (answer, outcome) = second
            .get_or_fetch("new", "s", CacheMode::On, TTL, not_called())
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok("new"), CacheOutcome::Hit));
        // A purged key leaves the index, and a key stored again is found.
        first
            .put_at("short", "s", &ok("a"), Duration::from_secs(1), 1_000)
            .await
            .unwrap();
        assert_eq!(first.purge_expired(unix_now_ms()).await.unwrap(), 1);
        assert!(!first.index.may_hold("short"));
        first.put("short", "s", &ok("b"), TTL).await.unwrap();
        first.front.clear();
        let (answer, _) = first
            .get_or_fetch("short", "s", CacheMode::On, TTL, not_called())
            .await
            .unwrap();
        assert_eq!(answer, ok("b"));
    }

    #[tokio::test]
    async fn past_its_capacity_the_index_lets_every_miss_read_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let options = CacheOptions {
            key_index_entries: 2,
            key_index_refresh: None,
            ..CacheOptions::default()
        };
        let writer = ResponseCache::open_with(&path, &options).await.unwrap();
        for key in ["a", "b", "c"] {
            writer.put(key, "s", &ok(key), TTL).await.unwrap();
        }
        let reader = ResponseCache::open_with(&path, &options).await.unwrap();
        assert!(reader.index.may_hold("never stored"));
        for key in ["a", "b", "c"] {
            let (answer, outcome) = reader
                .get_or_fetch(key, "s", CacheMode::On, TTL, not_called())
                .await
                .unwrap();
            assert_eq!((answer, outcome), (ok(key), CacheOutcome::Hit));
        }
    }
}
