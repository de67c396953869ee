//! Replaying history through the daemon on a simulated clock.
//!
//! This module owns the replay: agents registered before the first event (uploaded just before
//! the midnight that starts its day, so that they are active from then on), then every event
//! created at its instant and every resolution applied at its own, in time order, with a
//! [`Daemon::step`] after each, exactly as the live daemon would take them. The same store may be
//! replayed into again after a crash: what is recorded is accepted again and not repeated, so
//! the scores and weights come out as an uninterrupted replay's.
//!
//! It also owns the backtest's report ([`BacktestReport`]): the final leaderboard (the
//! competition's rule, the last 101 events) beside each agent's mean Brier over every resolved
//! event. It must not run agents or parse sources itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::activation::midnight_at_or_before;
use crate::causes::with_causes;
use crate::clock::{Clock, ClockError, SimulatedClock};
use crate::daemon::DaemonSettings;
use crate::daemon::{Daemon, DaemonError};
use crate::event::{Event, Resolution};
use crate::sandbox::{AdmitError, RunTokens, SandboxExecutor};
use crate::scoring::score_totals;
use crate::store::{NewUpload, Store, StoreError, UploadedBy, Verification, VersionStatus};
use crate::verification::{ProbeSet, VerificationSettings, Verifier};
use crate::weights::NoWeightSetter;

/// Why a backtest stopped.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The daemon failed (the store, scoring, registration).
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The events would move the clock backwards (the store already holds a later replay).
    #[error(transparent)]
    Clock(#[from] ClockError),
    /// There is nothing to replay.
    #[error("the events file holds no events")]
    NoEvents,
    /// An agent was refused.
    #[error("agent {hotkey} was refused")]
    Agent {
        /// The name it was entered under.
        hotkey: String,
        /// Why.
        source: AdmitError,
    },
    /// The verification queue could not be worked (the store failed).
    #[error("cannot verify agent {hotkey}")]
    Queue {
        /// The name it was entered under.
        hotkey: String,
        /// Why.
        source: StoreError,
    },
    /// The data directory cannot be used.
    #[error("cannot use the data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The file of the validator's store in a data directory.
pub const STORE_FILE: &str = "validator.sqlite";

/// A daemon on a simulated clock with agents in the sandbox, its store and components in one
/// data directory: what `sooth backtest` and `sooth demo` run.
#[derive(Debug)]
pub struct Simulation {
    /// The daemon.
    pub daemon: Daemon,
    /// Its clock.
    pub clock: SimulatedClock,
    /// Its executor.
    pub executor: Arc<SandboxExecutor>,
}

impl Simulation {
    /// Opens (or creates) the store in `data_dir` and a daemon on it whose clock starts at
    /// `start`, running agents with `runner`, gateway calls to `gateway` with tokens from
    /// `tokens`.
    ///
    /// # Errors
    ///
    /// [`BacktestError::DataDir`] when the directory cannot be created,
    /// [`BacktestError::Daemon`] when the store cannot be opened or a setting is invalid.
    pub async fn open(
        data_dir: &Path,
        start: DateTime<Utc>,
        runner: sooth_runner::Runner,
        gateway: Arc<dyn sooth_runner::Gateway>,
        tokens: Option<Arc<dyn RunTokens>>,
        settings: DaemonSettings,
    ) -> Result<Self, BacktestError> {
        std::fs::create_dir_all(data_dir).map_err(|source| BacktestError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let store = Store::open(&data_dir.join(STORE_FILE))
            .await
            .map_err(DaemonError::from)?;
        Self::on_store(store, data_dir, start, runner, gateway, tokens, settings)
    }

    /// As [`open`](Self::open), on `store` (a PostgreSQL store, say) instead of the SQLite file
    /// in `data_dir`, which keeps only the components.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn on_store(
        store: Store,
        data_dir: &Path,
        start: DateTime<Utc>,
        runner: sooth_runner::Runner,
        gateway: Arc<dyn sooth_runner::Gateway>,
        tokens: Option<Arc<dyn RunTokens>>,
        settings: DaemonSettings,
    ) -> Result<Self, BacktestError> {
        let data_dir_error = |source| BacktestError::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        let executor = Arc::new(
            SandboxExecutor::new(runner, data_dir.join("agents"), gateway, tokens)
                .map_err(data_dir_error)?,
        );
        let clock = SimulatedClock::new(start);
        let daemon = Daemon::new(
            store,
            Arc::new(clock.clone()),
            executor.clone(),
            Arc::new(NoWeightSetter),
            settings,
        )?;
        Ok(Self {
            daemon,
            clock,
            executor,
        })
    }

    /// The same simulation with runner workers (`sooth runner`) running its agents: the daemon
    /// hands every run to them through the store, which must be PostgreSQL, and waits until
    /// they have recorded it. The workers must run the sandbox of `sandbox_version`
    /// (`Runner::sandbox_version`).
    ///
    /// # Errors
    ///
    /// [`BacktestError::Daemon`] when the store cannot record the scheduler's sandbox.
    pub async fn with_workers(self, sandbox_version: &str) -> Result<Self, BacktestError> {
        self.daemon
            .store()
            .set_scheduler_sandbox(sandbox_version)
            .await
            .map_err(DaemonError::from)?;
        let components = self.executor.components().clone();
        Ok(Self {
            daemon: self.daemon.with_workers(components),
            ..self
        })
    }

    /// Verifies the component `bytes` and enters it as miner `hotkey` at the clock's instant:
    /// registered (unless a previous replay into the same store did it) with the component as
    /// its verified version. Returns the component's hash.
    ///
    /// # Errors
    ///
    /// [`BacktestError::Agent`] when the component does not load,
    /// [`BacktestError::Daemon`] when the registration is refused.
    pub async fn enter(&self, hotkey: &str, bytes: &[u8]) -> Result<String, BacktestError> {
        let hash = self
            .executor
            .admit(bytes)
            .await
            .map_err(|source| BacktestError::Agent {
                hotkey: hotkey.to_owned(),
                source,
            })?;
        enter_agent(&self.daemon, hotkey, &hash).await?;
        Ok(hash)
    }

    /// Loads the component `bytes` and records it as benchmark agent `name`: from the clock's
    /// instant it runs on every event under a reserved entry that holds no slot and is never
    /// weighted, scored beside the miners. Returns the component's hash.
    ///
    /// # Errors
    ///
    /// [`BacktestError::Agent`] when the component does not load,
    /// [`BacktestError::Daemon`] when the name is refused or the store fails.
    pub async fn add_benchmark(&self, name: &str, bytes: &[u8]) -> Result<String, BacktestError> {
        let hash = self
            .executor
            .admit(bytes)
            .await
            .map_err(|source| BacktestError::Agent {
                hotkey: format!("benchmark:{name}"),
                source,
            })?;
        self.daemon.set_benchmark(name, &hash).await?;
        Ok(hash)
    }

    /// Enters the component `bytes` as miner `hotkey` through the verification queue, as a live
    /// validator verifies an upload: the duplicate check, compiling, runs on `probe`, and the
    /// originality check against the agents entered before it. A verified version activates
    /// at the next midnight as [`enter`](Self::enter)'s does; a rejected one is not entered.
    /// Entering the same bytes again (a resumed backtest) gives the verdict on record.
    ///
    /// # Errors
    ///
    /// [`BacktestError::Agent`] when the bytes cannot be kept, [`BacktestError::Daemon`] when
    /// the registration is refused, [`BacktestError::Queue`] when the store fails.
    pub async fn enter_checked(
        &self,
        hotkey: &str,
        bytes: &[u8],
        probe: &ProbeSet,
    ) -> Result<Verification, BacktestError> {
        let hash = sooth_runner::content_hash(bytes);
        let queue = |source| BacktestError::Queue {
            hotkey: hotkey.to_owned(),
            source,
        };
        let store = self.daemon.store();
        let on_record = |versions: Vec<crate::store::UploadRecord>| {
            versions
                .into_iter()
                .find(|version| version.hash == hash && version.status != VersionStatus::Pending)
                .map(|version| match version.status {
                    VersionStatus::Refused => Verification::Rejected {
                        reason: version.reason.unwrap_or_default(),
                        matched_version: version.matched_version,
                    },
                    _ => Verification::Verified,
                })
        };
        let registered = store
            .miner(hotkey)
            .await
            .map_err(DaemonError::from)?
            .is_some_and(|miner| miner.deregistered_at.is_none());
        if registered && let Some(known) = on_record(store.uploads_of(hotkey).await.map_err(queue)?)
        {
            return Ok(known);
        }
        if !registered {
            self.daemon.register_miner(hotkey).await?;
        }
        self.executor
            .components()
            .save(bytes)
            .map_err(|source| BacktestError::Agent {
                hotkey: hotkey.to_owned(),
                source: AdmitError::File(source),
            })?;
        let upload = NewUpload {
            hotkey: hotkey.to_owned(),
            hash: hash.clone(),
            size_bytes: bytes.len() as u64,
            uploaded_by: UploadedBy::Operator,
            at: self.clock.now(),
            min_interval: TimeDelta::zero(),
        };
        match store.enqueue_upload(&upload).await {
            Ok(_) | Err(StoreError::DuplicateVersion { .. }) => {}
            Err(error) => return Err(queue(error)),
        }
        let verifier = Verifier::new(
            store.clone(),
            Arc::clone(&self.executor),
            Arc::new(self.clock.clone()),
            probe.clone(),
            VerificationSettings {
                concurrency: self.daemon.settings().max_concurrent_runs,
                ..VerificationSettings::default()
            },
        );
        while verifier.verify_next().await.map_err(queue)?.is_some() {}
        let verdict = on_record(store.uploads_of(hotkey).await.map_err(queue)?);
        verdict.ok_or_else(|| {
            queue(StoreError::Corrupt(format!(
                "the version {hash} of {hotkey} was left without a verdict"
            )))
        })
    }

    /// Replays `events` and `resolutions`, moving the simulated clock to each instant in turn:
    /// at each, the events created then are ingested and run, then that instant's resolutions
    /// are ingested and scored.
    ///
    /// # Errors
    ///
    /// [`BacktestError`] when the store fails or the clock would go backwards; a refused event
    /// or resolution is not an error (see [`Replay::refused`]).
    pub async fn replay(
        &self,
        events: Vec<Event>,
        resolutions: Vec<Resolution>,
        on_progress: impl FnMut(Progress),
    ) -> Result<Replay, BacktestError> {
        replay(&self.daemon, &self.clock, events, resolutions, on_progress).await
    }

    /// The report at the clock's instant.
    ///
    /// # Errors
    ///
    /// As [`BacktestReport::at`].
    pub async fn report(&self) -> Result<BacktestReport, BacktestError> {
        BacktestReport::at(&self.daemon, self.clock.now()).await
    }
}

/// What the replay has done so far, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Instants replayed.
    pub done: usize,
    /// Instants to replay.
    pub total: usize,
    /// The instant just replayed.
    pub at: DateTime<Utc>,
    /// Runs executed so far.
    pub runs: usize,
}

/// Events and resolutions to replay, and what was refused on the way.
#[derive(Debug, Default)]
pub struct Replay {
    /// Events or resolutions the daemon refused (a conflicting duplicate, a resolution of an
    /// unknown event...), each with why; the replay goes on without them.
    pub refused: Vec<String>,
    /// Runs executed.
    pub runs: usize,
}

/// The instant a backtest starts at: one second before the midnight that starts the day of
/// the earliest event, so that versions uploaded then are active for every event.
///
/// # Errors
///
/// [`BacktestError::NoEvents`] when `events` is empty.
pub fn start_instant(events: &[Event]) -> Result<DateTime<Utc>, BacktestError> {
    let first = events
        .iter()
        .map(|event| event.created_at)
        .min()
        .ok_or(BacktestError::NoEvents)?;
    Ok(midnight_at_or_before(first) - TimeDelta::seconds(1))
}

/// Registers `hotkey` with the verified version `hash` at the daemon's current instant, unless
/// a previous replay into the same store already did.
///
/// # Errors
///
/// [`BacktestError::Daemon`] when the registration or the version is refused.
pub(crate) async fn enter_agent(
    daemon: &Daemon,
    hotkey: &str,
    hash: &str,
) -> Result<(), BacktestError> {
    let registered = daemon
        .store()
        .miner(hotkey)
        .await
        .map_err(DaemonError::from)?
        .is_some_and(|miner| miner.deregistered_at.is_none());
    if !registered {
        daemon.register_miner(hotkey).await?;
    }
    match daemon.add_verified_version(hotkey, hash).await {
        Ok(()) | Err(DaemonError::Store(StoreError::DuplicateVersion { .. })) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Replays `events` and `resolutions` through `daemon`, moving `clock` (the daemon's) to each
/// instant in turn: at each, the events created then are ingested and run, then the
/// resolutions of that instant are ingested and scored.
///
/// # Errors
///
/// [`BacktestError`] when the store fails or the clock would go backwards; a refused event or
/// resolution is not an error (see [`Replay::refused`]).
pub(crate) async fn replay(
    daemon: &Daemon,
    clock: &SimulatedClock,
    events: Vec<Event>,
    resolutions: Vec<Resolution>,
    mut on_progress: impl FnMut(Progress),
) -> Result<Replay, BacktestError> {
    let mut timeline: BTreeMap<DateTime<Utc>, (Vec<Event>, Vec<Resolution>)> = BTreeMap::new();
    for event in events {
        timeline.entry(event.created_at).or_default().0.push(event);
    }
    for resolution in resolutions {
        timeline
            .entry(resolution.resolved_at)
            .or_default()
            .1
            .push(resolution);
    }
    let total = timeline.len();
    let mut replay = Replay::default();
    for (done, (at, (events, resolutions))) in timeline.into_iter().enumerate() {
        if at > clock.now() {
            clock.advance_to(at)?;
        }
        for event in &events {
            if let Err(error) = daemon.ingest_event(event).await {
                refuse(&mut replay, error)?;
            }
        }
        replay.runs += daemon.step().await?.runs;
        if !resolutions.is_empty() {
            for resolution in &resolutions {
                if let Err(error) = daemon.ingest_resolution(resolution).await {
                    refuse(&mut replay, error)?;
                }
            }
            replay.runs += daemon.step().await?.runs;
        }
        on_progress(Progress {
            done: done + 1,
            total,
            at,
            runs: replay.runs,
        });
    }
    Ok(replay)
}

/// Notes a refused event or resolution; store failures (not the input's fault) stop the replay.
fn refuse(replay: &mut Replay, error: DaemonError) -> Result<(), BacktestError> {
    if matches!(error, DaemonError::Store(StoreError::Database(_))) {
        return Err(BacktestError::Daemon(error));
    }
    tracing::warn!(error = &error as &dyn std::error::Error, "skipped");
    replay.refused.push(with_causes(&error));
    Ok(())
}

/// One agent's line of a backtest report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestRow {
    /// Leaderboard rank at the end (1 is best).
    pub rank: usize,
    /// The miner the agent ran as.
    pub hotkey: String,
    /// Its uid.
    pub uid: u16,
    /// Mean Brier over the last 101 resolved events: the competition's score.
    pub mean_brier_101: Option<f64>,
    /// Events in that window.
    pub events_counted: usize,
    /// Of which imputed 0.5.
    pub imputed_count: usize,
    /// Its weight at the end.
    pub weight: f64,
    /// Mean Brier over every resolved event, imputation and clipping as in scoring.
    pub mean_brier_all: Option<f64>,
    /// Resolved events in that mean.
    pub events_all: usize,
    /// Of which imputed 0.5.
    pub imputed_all: usize,
}

/// The result of a backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    /// When the replay ended (the last instant replayed).
    pub ended_at: DateTime<Utc>,
    /// One row per agent, by rank.
    pub rows: Vec<BacktestRow>,
}

impl BacktestReport {
    /// The report of `daemon` at `at`: the leaderboard then and every agent's mean over all
    /// events resolved by then.
    ///
    /// # Errors
    ///
    /// [`BacktestError::Daemon`] when the store fails.
    pub async fn at(daemon: &Daemon, at: DateTime<Utc>) -> Result<Self, BacktestError> {
        let standings = daemon.standings(at).await?;
        let miners: Vec<_> = standings.iter().map(|row| row.miner.clone()).collect();
        let every = daemon
            .store()
            .last_resolved_events(&miners, usize::MAX, at)
            .await
            .map_err(DaemonError::from)?;
        let totals = score_totals(miners.len(), &every);
        let count = every.len();
        let rows = standings
            .iter()
            .enumerate()
            .map(|(index, row)| BacktestRow {
                rank: row.rank,
                hotkey: row.miner.hotkey.clone(),
                uid: row.miner.uid,
                mean_brier_101: row.mean_brier,
                events_counted: row.events_counted,
                imputed_count: row.imputed_count,
                weight: row.weight,
                // usize -> f64 is exact below 2^53 events.
                mean_brier_all: (count > 0).then(|| totals[index].brier_sum / count as f64),
                events_all: count,
                imputed_all: totals[index].imputed,
            })
            .collect();
        Ok(Self { ended_at: at, rows })
    }

    /// The report as a plain-text table.
    #[must_use]
    pub fn table(&self) -> String {
        let mut text = format!(
            "{:>4}  {:<24} {:>4}  {:>10} {:>6} {:>7}  {:>10} {:>6} {:>7}  {:>6}\n",
            "rank",
            "miner",
            "uid",
            "brier-101",
            "events",
            "imputed",
            "brier-all",
            "events",
            "imputed",
            "weight"
        );
        let mean = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
        for row in &self.rows {
            text.push_str(&format!(
                "{:>4}  {:<24} {:>4}  {:>10} {:>6} {:>7}  {:>10} {:>6} {:>7}  {:>6.3}\n",
                row.rank,
                row.hotkey,
                row.uid,
                mean(row.mean_brier_101),
                row.events_counted,
                row.imputed_count,
                mean(row.mean_brier_all),
                row.events_all,
                row.imputed_all,
                row.weight
            ));
        }
        text
    }

    /// The report as CSV, one header line then one line per agent.
    ///
    /// # Errors
    ///
    /// A [`csv::Error`] only if writing to memory fails.
    pub fn csv(&self) -> Result<String, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        for row in &self.rows {
            writer.serialize(row)?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|error| csv::Error::from(error.into_error()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
