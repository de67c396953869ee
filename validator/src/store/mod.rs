//! The validator's storage: sqlx on SQLite (the embedded default) or PostgreSQL (the
//! scale-out), through sqlx's `any` driver, one SQL text per query (`dialect` rewrites the
//! few places where the engines differ).
//!
//! This module owns the validator's tables (`validator_*`, schema in
//! `migrations/sqlite/0005_validator.sql`, `0006_validator_sources.sql`,
//! `0007_validator_uploads.sql` and `0008_validator_linked_keys.sql`): miners, agent versions,
//! events, runs, scores, the weights history and miners' sealed service keys. It must not touch the gateway's tables (`gateway_*`) that live in the same
//! file, nor decide any rule: which version is active, what a score is and who wins are
//! `activation` and `scoring`; the store records their answers and serves
//! their inputs.
//!
//! # File and connections
//!
//! One SQLite file in the data directory (`validator.sqlite`), in WAL mode. The migrations are
//! the gateway's too (the whole `migrations/sqlite` folder, since sqlx's migrator checks every
//! applied migration), so the gateway may share the file; the in-process gateway of `sooth
//! validator run` keeps its own file in its own data directory. Migrations are applied at open. Writes go through a pool of exactly one
//! connection, so this process never contends with itself for the write lock; reads use a
//! separate pool and see the last committed state without waiting for writers. Every write
//! transaction starts with `BEGIN IMMEDIATE`, so that when another process (the gateway) holds
//! the write lock the store waits up to `busy_timeout` instead of failing half-way through.
//!
//! On PostgreSQL ([`Store::connect`]), one pool serves reads and writes; every write
//! transaction takes an advisory lock keyed by the schema first, so that writes are serialised
//! across processes as SQLite's write lock serialises them; reads that must see one state run
//! in `REPEATABLE READ`. The run queue of the runner workers ([`run_queue`], [`workers`]) does
//! without that lock: its rows are claimed with `FOR UPDATE SKIP LOCKED` and fenced by their
//! attempt.
//!
//! # Instants
//!
//! Instants are stored as Unix milliseconds (UTC) in `*_ms` integer columns. Sub-millisecond
//! parts are truncated on the way in, so what is read back is the instant at millisecond
//! precision (an identical resolution compares equal at that precision too).
//!
//! # Crash safety
//!
//! Every write that changes more than one row is one transaction; a failed one leaves nothing
//! behind. Input is validated before anything is written. `synchronous = NORMAL` by default:
//! a crash of the process loses nothing committed, a power cut may lose the last commits
//! ([`StoreOptions::durable`] makes every commit survive power loss too).
//!
//! The operations are split by table family: [`miners`] (registration), [`versions`] (agent
//! versions and activation), [`uploads`] (uploads entering the verification queue, and what
//! the upload API reads), [`verification`] (the queue's claims, leases and verdicts, and probe
//! runs), [`events`] (events and resolution), [`runs`] (runs and loading
//! resolved events for scoring), [`scores`] (scores and weights history) and [`miner_keys`]
//! (miners' linked service keys, sealed by the caller); `queries` holds
//! the read-only pages the HTTP API serves ([`Store::events_page`], [`Store::miner_runs`]), and
//! `sources` where each event source has read up to ([`Store::source_state`]).

mod dialect;
pub mod downloads;
pub mod events;
pub mod metrics_queries;
pub mod miner_keys;
pub mod miners;
pub mod page_queries;
mod queries;
pub mod references;
pub mod run_queue;
/// The run queue's one-round-trip statements on PostgreSQL.
mod run_queue_postgres;
pub mod runs;
pub mod scores;
mod sources;
pub mod uploads;
pub mod verification;
pub mod versions;
pub mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
pub use sooth_migrations::Engine;
use sooth_migrations::{
    DatabaseError, OpenError, open_postgres, open_sqlite_file, open_sqlite_in_memory, redacted_url,
};
use sqlx::{AnyPool, Executor};
use thiserror::Error;

use dialect::BindOptionalF64;

use crate::event::{EventError, Outcome};
use crate::executor::RunError;

pub use downloads::{DayForecastRow, DayForecasts, ResolvedRow};
pub use events::{EventRecord, EventStatus, MissingRun, ResolutionRecorded};
pub use miner_keys::{DroppedKey, NewSealedKey, SealedKey};
pub use miners::MinerRecord;
pub use page_queries::{EventCounts, HistoryEvent, MinerHistory, ReferenceScores};
pub use queries::MinerRun;
pub use references::{
    EventsSeen, META_PREFIX, MissingBenchmarkRun, NewReferenceForecast, PoolInput, PoolInputs,
    ReferenceEntry, ReferenceForecast, ReferenceKind, ReferenceWindow,
};
pub use run_queue::{
    ClaimRecorded, ClaimedRun, FinishedClaim, QueueCounts, QueueListener, QueuedRun, RunOwner,
};
pub use runs::{NewRun, RunRecord, RunRecorded};
pub use scores::{Consistency, EventScore, WeightRow};
pub use uploads::{
    IntegrityCheck, MAX_VERDICTS_SHOWN, NewUpload, QueueState, UploadRecord, UploadedBy,
    VerdictRecord, VerdictScope,
};
pub use verification::{
    ActiveVersion, AttemptFailed, EarlierProbe, LiveRun, NewVerdict, ProbeRun, Verification,
    VerificationClaim,
};
pub use versions::{VersionRecord, VersionStatus};
pub use workers::{WorkerRecord, WorkerRegistration, WorkerState};

/// Why a store operation failed. Nothing was written when one is returned.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database file could not be opened or created (missing or read-only directory, full
    /// disk, not a database...).
    #[error("cannot open the validator database {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        problem: OpenProblem,
    },
    /// The PostgreSQL server could not be reached, refused the login, or the URL is not one.
    #[error("cannot connect to the validator database at {url}")]
    Connect {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What went wrong.
        #[source]
        source: DatabaseError,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the validator database {}", path.display())]
    Migrate {
        /// The database file (`:memory:` for an in-memory store).
        path: PathBuf,
        /// The migrator's error.
        source: sooth_migrations::DatabaseError,
    },
    /// An event with this id exists already.
    #[error("event {event_id:?} already exists")]
    DuplicateEvent {
        /// The repeated id.
        event_id: String,
    },
    /// An event was refused before anything was written: a missing or invalid field.
    #[error("event {event_id:?} is invalid")]
    InvalidEvent {
        /// The event's id as given (possibly empty).
        event_id: String,
        /// What is wrong.
        #[source]
        problem: EventError,
    },
    /// No event has this id.
    #[error("unknown event {event_id:?}")]
    UnknownEvent {
        /// The id asked for.
        event_id: String,
    },
    /// An outcome other than 0 or 1.
    #[error("event {event_id:?}: outcome must be 0 or 1, got {value}")]
    InvalidOutcome {
        /// The event.
        event_id: String,
        /// The value given.
        value: u8,
    },
    /// A resolution that cannot be right whatever came before (resolved before creation).
    #[error("event {event_id:?}: invalid resolution")]
    InvalidResolution {
        /// The event.
        event_id: String,
        /// What is wrong.
        #[source]
        problem: EventError,
    },
    /// The event was already resolved differently; the first resolution stands.
    #[error(
        "event {event_id:?} was already resolved to {recorded_outcome} at {recorded_at}; \
         refusing {new_outcome} at {new_at}"
    )]
    ConflictingResolution {
        /// The event.
        event_id: String,
        /// The outcome on record (0 or 1).
        recorded_outcome: u8,
        /// The resolution instant on record.
        recorded_at: DateTime<Utc>,
        /// The refused outcome.
        new_outcome: u8,
        /// The refused instant.
        new_at: DateTime<Utc>,
    },
    /// A miner was refused before anything was written (an empty hotkey).
    #[error("miner {hotkey:?} is invalid: {problem}")]
    InvalidMiner {
        /// The hotkey as given.
        hotkey: String,
        /// What is wrong.
        problem: String,
    },
    /// A reference entry (benchmark or pool) was refused, or none has this name.
    #[error("reference entry {name:?}: {problem}")]
    InvalidReference {
        /// The name as given.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// No miner has this hotkey.
    #[error("unknown miner {hotkey:?}")]
    UnknownMiner {
        /// The hotkey asked for.
        hotkey: String,
    },
    /// The hotkey is registered already.
    #[error("miner {hotkey:?} is already registered as uid {uid}")]
    AlreadyRegistered {
        /// The hotkey.
        hotkey: String,
        /// The uid it holds.
        uid: u16,
    },
    /// The uid is held by another registered miner.
    #[error("uid {uid} is held by registered miner {holder:?}")]
    UidTaken {
        /// The uid asked for.
        uid: u16,
        /// Who holds it.
        holder: String,
    },
    /// The miner is known but not registered now.
    #[error("miner {hotkey:?} is not registered (deregistered at {deregistered_at})")]
    NotRegistered {
        /// The hotkey.
        hotkey: String,
        /// When it was deregistered.
        deregistered_at: DateTime<Utc>,
    },
    /// An instant that contradicts what is on record (e.g. a deregistration before the
    /// registration).
    #[error("{0}")]
    InvalidInstant(String),
    /// The miner has no version with this hash.
    #[error("miner {hotkey:?} has no agent version {hash:?}")]
    UnknownVersion {
        /// The miner.
        hotkey: String,
        /// The hash asked for.
        hash: String,
    },
    /// The miner already uploaded a version with this hash.
    #[error("miner {hotkey:?} already has agent version {hash:?}")]
    DuplicateVersion {
        /// The miner.
        hotkey: String,
        /// The repeated hash.
        hash: String,
    },
    /// A miner's upload came before its upload rate allows another.
    #[error(
        "miner {hotkey:?} uploaded at {last_upload_at}; its next upload is allowed at \
         {next_allowed_at}"
    )]
    UploadTooSoon {
        /// The miner.
        hotkey: String,
        /// Its last upload.
        last_upload_at: DateTime<Utc>,
        /// When the next one is allowed.
        next_allowed_at: DateTime<Utc>,
    },
    /// A version was refused before anything was written.
    #[error("agent version {hash:?} of miner {hotkey:?} is invalid: {problem}")]
    InvalidVersion {
        /// The miner.
        hotkey: String,
        /// The hash.
        hash: String,
        /// What is wrong.
        problem: String,
    },
    /// A run was refused before anything was written.
    #[error("run of miner {hotkey:?} on event {event_id:?} is invalid")]
    InvalidRun {
        /// The event.
        event_id: String,
        /// The miner.
        hotkey: String,
        /// What is wrong.
        #[source]
        problem: RunError,
    },
    /// A runner worker was turned away: no scheduler has started on the database, or its
    /// sandbox differs from the scheduler's.
    #[error("worker {worker_id:?} was refused: {reason}")]
    WorkerRefused {
        /// The worker.
        worker_id: String,
        /// Why.
        reason: String,
    },
    /// No scheduler has started on the database yet: a worker waits for one.
    #[error("no scheduler has started on this database yet")]
    NoScheduler,
    /// Scores or weights were refused before anything was written.
    #[error("invalid scores: {0}")]
    InvalidScores(String),
    /// The file holds something the store never writes (edited by hand, or a newer schema).
    #[error("the validator database holds invalid data: {0}")]
    Corrupt(String),
    /// A JSON column holds something that does not read back (edited by hand, or a newer
    /// schema).
    #[error("the validator database holds invalid JSON in {what}")]
    CorruptJson {
        /// Which value.
        what: String,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// The database failed (I/O, full disk, lock wait beyond `busy_timeout`...).
    #[error("validator database error")]
    Database(#[from] DatabaseError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Why a database file could not be opened.
#[derive(Debug, Error)]
pub enum OpenProblem {
    /// Its directory does not exist.
    #[error("its directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
    /// Its directory cannot be written (SQLite creates its `-wal` and `-shm` files there).
    #[error("its directory {} is not writable", directory.display())]
    ReadOnlyDirectory {
        /// The directory.
        directory: PathBuf,
        /// What writing a probe file into it said.
        source: std::io::Error,
    },
    /// SQLite could not open it.
    #[error(transparent)]
    Database(DatabaseError),
}

/// How to open a store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a write waits for another process's write lock (the gateway shares the file)
    /// before failing with [`StoreError::Database`]. Default 5 s.
    pub busy_timeout: Duration,
    /// `synchronous = FULL` (an fsync per commit: commits survive power loss) instead of
    /// `NORMAL` (commits survive a crash of the process). Default `false`.
    pub durable: bool,
    /// Connections for reads (SQLite), or for everything (PostgreSQL). Default 4.
    pub read_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            durable: false,
            read_connections: 4,
        }
    }
}

/// The validator's storage. Cheap to clone: clones share the connections.
#[derive(Debug, Clone)]
pub struct Store {
    /// SQLite: exactly one connection, through which every write transaction of this process
    /// goes. PostgreSQL: the one pool.
    writer: AnyPool,
    /// Reads. For an in-memory store, the writer pool itself (the database lives in that one
    /// connection); for PostgreSQL, the one pool.
    reader: AnyPool,
    engine: Engine,
    /// The PostgreSQL URL, for the listeners of the run queue's notifications.
    url: Option<Arc<str>>,
}

/// Takes the PostgreSQL advisory lock every write transaction of the store takes: store writes
/// are serialised across processes as SQLite's write lock serialises them, so every
/// read-then-write in a transaction sees what it acts on. The key is the schema's, so that
/// stores in other schemas of the same database do not wait for each other.
const TAKE_WRITE_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('sooth.validator.' || current_schema(), 0))";

impl Store {
    /// Opens (creating if needed) the database file at `path` with default options and brings
    /// its schema up to date.
    ///
    /// # Errors
    ///
    /// As [`open_with`](Self::open_with).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default()).await
    }

    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`], naming the file, when its directory does not exist or is not
    /// writable (SQLite needs to create its `-wal` and `-shm` files beside it), or SQLite cannot
    /// open it; [`StoreError::Migrate`] when the schema cannot be applied (for instance a file
    /// written by a newer sooth).
    pub async fn open_with(path: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        check_directory_writable(path)?;
        let (writer, reader) = open_sqlite_file(
            path,
            options.busy_timeout,
            options.durable,
            options.read_connections,
        )
        .await
        .map_err(|error| open_failed(path, error))?;
        Ok(Self {
            writer,
            reader,
            engine: Engine::Sqlite,
            url: None,
        })
    }

    /// Opens the store a database URL names: `postgres://user:password@host/database` (the
    /// scale-out engine; the schema is brought up to date) or `sqlite://PATH` (as
    /// [`open_with`](Self::open_with)). A PostgreSQL store has `options.read_connections`
    /// connections (at least 2), and waits up to `options.busy_timeout` for one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Connect`], naming the URL without its password, when the URL names no
    /// engine or the server cannot be reached or refuses the login; [`StoreError::Migrate`]
    /// when the schema cannot be brought up to date; as [`open_with`](Self::open_with) for a
    /// SQLite URL.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect_failed = |source: DatabaseError| StoreError::Connect {
            url: redacted_url(url),
            source,
        };
        match Engine::of_url(url) {
            Some(Engine::Sqlite) => {
                let path = url
                    .split_once(':')
                    .map(|(_, rest)| rest.trim_start_matches("//"))
                    .unwrap_or_default();
                Self::open_with(Path::new(path), options).await
            }
            Some(Engine::Postgres) => {
                let pool =
                    open_postgres(url, options.read_connections.max(2), options.busy_timeout)
                        .await
                        .map_err(|error| match error {
                            OpenError::Database(source) => connect_failed(source),
                            OpenError::Migrate(source) => StoreError::Migrate {
                                path: PathBuf::from(redacted_url(url)),
                                source,
                            },
                        })?;
                Ok(Self {
                    reader: pool.clone(),
                    writer: pool,
                    engine: Engine::Postgres,
                    url: Some(url.into()),
                })
            }
            None => Err(connect_failed(DatabaseError::from(
                sqlx::Error::Configuration(
                    "a database URL starts with postgres:// or sqlite://".into(),
                ),
            ))),
        }
    }

    /// The engine this store runs on.
    #[must_use]
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// An empty store in memory (tests, demos): one connection for reads and writes, gone when
    /// the last clone is dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] or [`StoreError::Migrate`] if SQLite cannot start.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let writer = open_sqlite_in_memory()
            .await
            .map_err(|error| open_failed(&path, error))?;
        Ok(Self {
            reader: writer.clone(),
            writer,
            engine: Engine::Sqlite,
            url: None,
        })
    }

    /// Closes the connections (waiting for queries in flight). Clones stop working too.
    /// Dropping the store without closing is safe: everything returned as committed is.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction that holds the write lock from its first statement (see the
    /// module docs). Dropping it without `commit` rolls everything back.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.engine {
            Engine::Sqlite => Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?),
            Engine::Postgres => {
                let mut transaction = self.writer.begin().await?;
                transaction.execute(sqlx::query(TAKE_WRITE_LOCK)).await?;
                Ok(transaction)
            }
        }
    }

    /// Starts a transaction of the run queue: on SQLite a write transaction like any other; on
    /// PostgreSQL one without the store's write lock, so that workers claiming and recording at
    /// once do not queue behind each other or the scheduler (row locks and the queue's fencing
    /// keep them apart).
    async fn begin_queue(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.engine {
            Engine::Sqlite => self.begin_write().await,
            Engine::Postgres => Ok(self.writer.begin().await?),
        }
    }

    /// Starts a read transaction: its queries see one state of the database, whatever commits
    /// meanwhile (SQLite's deferred transaction; PostgreSQL's repeatable read).
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.engine {
            Engine::Sqlite => Ok(self.reader.begin().await?),
            Engine::Postgres => Ok(self
                .reader
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?),
        }
    }
}

#[cfg(test)]
impl Store {
    /// The plan SQLite chooses for `sql`, one detail per line: what the tests of the reads that
    /// must stay on their indexes look at.
    #[allow(clippy::unwrap_used)]
    pub(crate) async fn query_plan(&self, sql: &str) -> String {
        use sqlx::Row;
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&self.reader)
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.try_get::<String, _>("detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The store's error for a database at `path` that sooth-migrations could not open.
fn open_failed(path: &Path, error: OpenError) -> StoreError {
    match error {
        OpenError::Database(source) => StoreError::Open {
            path: path.to_owned(),
            problem: OpenProblem::Database(source),
        },
        OpenError::Migrate(source) => StoreError::Migrate {
            path: path.to_owned(),
            source,
        },
    }
}

/// Refuses, with an error naming the file, a database whose directory is missing or not
/// writable. SQLite would otherwise fail later with "unable to open database file" and no
/// path, or open the file and fail on the first write when it cannot create its WAL.
fn check_directory_writable(path: &Path) -> Result<(), StoreError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let refuse = |problem| StoreError::Open {
        path: path.to_owned(),
        problem,
    };
    if !directory.is_dir() {
        return Err(refuse(OpenProblem::NoDirectory(directory)));
    }
    // Asking for permission bits would be wrong for root, ACLs and read-only mounts; trying a
    // write is the only true test. The probe name is unique to this process and removed at once.
    let file_name = path
        .file_name()
        .map_or_else(|| "database".into(), |name| name.to_string_lossy());
    let probe = directory.join(format!(".{file_name}.probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(file) => {
            drop(file);
            // Failing to remove the probe is harmless (a stray empty file), not a reason to
            // refuse a writable directory.
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // A probe left by an earlier process with our pid: the directory took it, so it is
        // writable.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(refuse(OpenProblem::ReadOnlyDirectory { directory, source })),
    }
}

/// An instant as stored: Unix milliseconds, truncated.
fn to_ms(instant: DateTime<Utc>) -> i64 {
    instant.timestamp_millis()
}

/// An instant as read back; `what` names the column for the error.
fn from_ms(ms: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} {ms} is not a valid instant")))
}

/// An optional instant as read back.
fn from_optional_ms(ms: Option<i64>, what: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(|ms| from_ms(ms, what)).transpose()
}

/// An instant at the precision the store keeps, to compare what was given with what is on
/// record.
fn truncate_to_ms(instant: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(instant.timestamp_millis()).unwrap_or(instant)
}

/// An outcome column as read back (`None` while the event is open).
fn outcome_from(value: Option<i64>, event_id: &str) -> Result<Option<Outcome>, StoreError> {
    value
        .map(|value| {
            u8::try_from(value)
                .ok()
                .and_then(|value| Outcome::try_from(value).ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("event {event_id:?} has outcome {value}"))
                })
        })
        .transpose()
}

/// A flag (0 or 1, on both engines) as read back; `what` names the column for the error.
fn flag_from(value: i64, what: &str) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(StoreError::Corrupt(format!(
            "{what} is {value}, not 0 or 1"
        ))),
    }
}

/// A uid as read back.
fn uid_from(value: i64) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("uid {value} is out of range")))
}

#[cfg(test)]
mod tests;
