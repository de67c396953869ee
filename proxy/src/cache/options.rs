//! How to open a cache file.

use std::time::Duration;

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
