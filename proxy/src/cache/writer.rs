//! The cache's writer: one task that stores answers in the SQLite file, many
//! per transaction, off the request path. Owns the queue of answers not yet
//! written and the SQL of those writes; decides nothing about what is
//! cached.
//!
//! A request that fetched an answer hands it to [`WriteQueue::enqueue`],
//! which never waits: the answer goes into the memory front and the
//! pending map at once (so the next lookup of its key is served from
//! memory whether or not it is written yet) and onto a bounded queue. When
//! the queue is full the write is dropped and counted: the answer is still
//! served from memory while it stays there, and is fetched again at worst.
//! A cache must never make a request wait for the disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{FrontEntry, KeyIndex, put_query};

/// The most answers written in one transaction.
const MAX_BATCH: usize = 512;

/// One answer to be written.
#[derive(Debug)]
pub(super) struct Write {
    pub(super) key: String,
    pub(super) service: String,
    pub(super) entry: Arc<FrontEntry>,
    pub(super) created_at_ms: i64,
}

/// What the writer's task is sent.
#[derive(Debug)]
enum Command {
    Write(Write),
    /// Answered once everything sent before it has been written (or has
    /// failed to be, which is logged).
    Flush(oneshot::Sender<()>),
}

/// Answers queued and not yet written, by key: lookups find them here even
/// when the memory front has already let them go.
pub(super) type Pending = Mutex<HashMap<String, Arc<FrontEntry>>>;

pub(super) fn lock(pending: &Pending) -> MutexGuard<'_, HashMap<String, Arc<FrontEntry>>> {
    // Every change under the lock is one insert or remove: a panic cannot
    // leave the map half-changed.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sending side of the writer: cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct WriteQueue {
    sender: mpsc::Sender<Command>,
    pending: Arc<Pending>,
    dropped: Counter,
}

impl WriteQueue {
    /// Starts the writer's task on `pool` (the cache's one writer
    /// connection) with room for `capacity` queued answers; a batch waits
    /// at most `linger` after its first answer for more; `index` learns of
    /// every key written. The task ends when every clone of the queue is
    /// dropped and what was queued is written.
    pub(super) fn spawn(
        pool: SqlitePool,
        index: Arc<KeyIndex>,
        capacity: usize,
        linger: Duration,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let pending = Arc::new(Pending::default());
        tokio::spawn(run(pool, index, receiver, pending.clone(), linger));
        Self {
            sender,
            pending,
            dropped: Counter::default(),
        }
    }

    /// Queues `write` without waiting; a full queue (or a writer that has
    /// stopped) drops it and counts it in [`dropped`](Self::dropped).
    pub(super) fn enqueue(&self, write: Write) {
        let (key, entry) = (write.key.clone(), write.entry.clone());
        lock(&self.pending).insert(key.clone(), entry.clone());
        if self.sender.try_send(Command::Write(write)).is_err() {
            forget(&self.pending, &key, &entry);
            self.dropped.inc();
            tracing::debug!(key, "cache: write queue full; answer kept in memory only");
        }
    }

    /// The queued answer for `key`, if any.
    pub(super) fn pending(&self, key: &str) -> Option<Arc<FrontEntry>> {
        lock(&self.pending).get(key).cloned()
    }

    /// Waits until everything queued before the call has been written (or
    /// failed to be); at once if the writer has stopped.
    pub(super) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Command::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// The counter of writes dropped because the queue was full.
    pub(super) fn dropped(&self) -> &Counter {
        &self.dropped
    }
}

/// Removes `key` from the pending map if it still holds `entry` (a later
/// answer for the key, queued since, stays).
fn forget(pending: &Pending, key: &str, entry: &Arc<FrontEntry>) {
    let mut map = lock(pending);
    if map.get(key).is_some_and(|held| Arc::ptr_eq(held, entry)) {
        map.remove(key);
    }
}

async fn run(
    pool: SqlitePool,
    index: Arc<KeyIndex>,
    mut receiver: mpsc::Receiver<Command>,
    pending: Arc<Pending>,
    linger: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Gather for a moment: one commit per batch instead of one per
        // answer is what keeps the disk's work off the request path's cores.
        let until = tokio::time::Instant::now() + linger;
        while batch.len() < MAX_BATCH && !batch.iter().any(|c| matches!(c, Command::Flush(_))) {
            match tokio::time::timeout_at(until, receiver.recv()).await {
                Ok(Some(command)) => batch.push(command),
                Ok(None) | Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for command in batch.drain(..) {
            match command {
                Command::Write(write) => writes.push(write),
                Command::Flush(done) => flushes.push(done),
            }
        }
        match commit(&pool, &writes).await {
            Ok(()) => {
                for write in &writes {
                    index.add(&write.key);
                }
            }
            // Not retried: a lost answer costs one more fetch, while a
            // writer stuck on a full disk must not hold answers without end.
            Err(error) => {
                if !pool.is_closed() {
                    tracing::warn!(%error, answers = writes.len(), "cache: storing answers failed");
                }
            }
        }
        for write in &writes {
            forget(&pending, &write.key, &write.entry);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn commit(pool: &SqlitePool, writes: &[Write]) -> Result<(), sqlx::Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for write in writes {
        put_query(
            &write.key,
            &write.service,
            &write.entry,
            write.created_at_ms,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
