//! The daemon: turns events and agents into runs, scores and weights, one step at a time.
//!
//! This module owns the order in which the rules are applied. A [`Daemon`] takes events and
//! resolutions as they arrive ([`Daemon::ingest_event`], [`Daemon::ingest_resolution`]),
//! registrations and verified agent versions, and on each [`Daemon::step`] does, at its clock's
//! "now":
//!
//! 1. **activation**: records, per miner, the version active since the last midnight
//!    (`activation`);
//! 2. **runs**: every run still owed (a registered miner without a run on an open event
//!    created by now, [`Store::missing_runs`], by the version active at the event's creation,
//!    `activation::active_version`) goes to the [`RunExecutor`], at most
//!    `max_concurrent_runs` at a time, and each outcome is recorded as it finishes;
//!    The benchmark agents' runs owed (reference entries, [`Store::missing_benchmark_runs`])
//!    go to the same executor beside them, and once every owed run is recorded, the
//!    meta-model's pools ([`Pool`](crate::meta::Pool), in `pooling`) of each event created by
//!    now are recorded ([`Store::events_to_pool`]), weighted equally and by the current
//!    weights;
//! 3. **scoring**: if resolutions arrived since the last step, the Brier scores of the newly
//!    resolved events and the leaderboard over the last 101 events resolved by now are recorded
//!    in one transaction, then published through the [`WeightSetter`].
//!
//! Everything it decides is in the store before it is acted on, so a daemon that dies at any
//! point and is started again on the same store carries on: known events and resolutions are
//! accepted again without change, recorded runs are not repeated, and a step at the same
//! instant writes the same scores and weights. Live operation ([`crate::service`]) and
//! backtests ([`crate::backtest`]) drive the same daemon; only the clock differs.
//!
//! It must not parse sources, run agents itself or serve HTTP.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use thiserror::Error;
use tokio::sync::Mutex;

use crate::activation::{AgentVersion, activation_timeline, active_version, midnight_at_or_before};
use crate::clock::Clock;
use crate::components::Components;
use crate::event::{Event, Resolution};
use crate::executor::{RunExecutor, RunJob};
use crate::metrics::ValidatorMetrics;
use crate::registration::{
    RegistrationDecision, RegistrationError, RegistrationRules, decide_registration,
};
use crate::scoring::{LeaderboardRow, SCORING_WINDOW, ScoringError, leaderboard_over};
use crate::store::{
    EventRecord, NewReferenceForecast, NewRun, ResolutionRecorded, RunRecorded, Store, StoreError,
};
use crate::weights::WeightSetter;

mod pooling;
mod rescoring;
mod workers;

use workers::WorkerHandoff;

use rescoring::ScoringWindow;

/// How many finished runs are recorded in one transaction at most.
const RECORD_BATCH: usize = 64;

/// The daemon's tunable rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Runs executing at once.
    pub max_concurrent_runs: usize,
    /// Slots and immunity.
    pub registration: RegistrationRules,
    /// Resolved events a miner's score is the mean over (SPEC: 101).
    pub scoring_window: usize,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 8,
            registration: RegistrationRules::default(),
            scoring_window: SCORING_WINDOW,
        }
    }
}

/// Why the daemon could not do what it was asked.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The store refused the write or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scoring input was inconsistent (a bug, or a store edited by hand).
    #[error("scoring failed")]
    Scoring(#[from] ScoringError),
    /// The registration was refused.
    #[error("registration refused")]
    Registration(#[from] RegistrationError),
    /// An event id already names a different event.
    #[error("event {event_id} was already received with different content; the first one stands")]
    ConflictingEvent {
        /// The event.
        event_id: String,
    },
    /// A setting is unusable.
    #[error("invalid daemon setting: {0}")]
    Settings(String),
    /// A component to hand to the runner workers cannot be read from the data directory.
    #[error("cannot hand a component to the workers: {0}")]
    Component(String),
}

/// Whether something handed to the daemon was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Stored now.
    New,
    /// Already stored, identically (a source replayed after a restart): nothing changed.
    AlreadyKnown,
}

/// What one [`Daemon::step`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    /// The instant of the step.
    pub at: Option<DateTime<Utc>>,
    /// Versions that became active at this step.
    pub activations: usize,
    /// Runs executed and recorded.
    pub runs: usize,
    /// Of which ended without a valid prediction.
    pub failed_runs: usize,
    /// Benchmark agents' runs executed and recorded (not counted in `runs`).
    pub benchmark_runs: usize,
    /// Events whose meta-model pools were recorded.
    pub pooled_events: usize,
    /// Of `runs` and `benchmark_runs`, those handed to the runner workers and recorded by them
    /// (when the daemon schedules for workers).
    pub queued_runs: usize,
    /// The leaderboard computed at this step, if resolutions arrived since the previous one.
    pub leaderboard: Option<Vec<LeaderboardRow>>,
}

/// What the daemon remembers between steps; all of it can be lost in a crash.
#[derive(Debug, Default)]
struct StepState {
    /// The last midnight whose activations were recorded by this process.
    activated_through: Option<DateTime<Utc>>,
    /// The value of [`Daemon::changes`] when the last pass over owed runs began.
    runs_done_at_change: u64,
    /// The scoring window as of the last scoring, kept so that a scoring loads only the newly
    /// resolved events instead of all 101.
    window: Option<ScoringWindow>,
    /// Whether the meta-model's entries are known to be in the store.
    pools_recorded: bool,
}

/// The validator daemon. See the module docs.
pub struct Daemon {
    /// Bumped by everything that can make a run owed (an event, a miner, a version); a step
    /// that finds it where the last complete pass over owed runs left it skips the query.
    changes: AtomicU64,
    /// Creation instants of events ingested before they were due.
    future_creations: std::sync::Mutex<BTreeSet<DateTime<Utc>>>,
    /// Events resolved (or resolutions replayed) since the last scoring; an event resolved at
    /// an instant still to come stays here until the clock reaches it. Apart from the step's
    /// state so that ingesting never waits for a step.
    resolved_since_scoring: std::sync::Mutex<HashSet<String>>,
    /// Whether the next step scores even without new resolutions.
    scoring_requested: AtomicBool,
    store: Store,
    clock: Arc<dyn Clock>,
    executor: Arc<dyn RunExecutor>,
    weight_setter: Arc<dyn WeightSetter>,
    settings: DaemonSettings,
    state: Mutex<StepState>,
    /// Where runs, scorings and weights are counted.
    metrics: Option<Arc<ValidatorMetrics>>,
    /// When runner workers run the agents: what the hand-off to them keeps.
    workers: Option<WorkerHandoff>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Daemon")
            .field("clock", &self.clock)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// A daemon on `store`, reading `clock`, running agents with `executor` and publishing
    /// weights to `weight_setter`.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Settings`] for a concurrency limit of 0.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        executor: Arc<dyn RunExecutor>,
        weight_setter: Arc<dyn WeightSetter>,
        settings: DaemonSettings,
    ) -> Result<Self, DaemonError> {
        if settings.max_concurrent_runs == 0 {
            return Err(DaemonError::Settings(
                "max_concurrent_runs must be at least 1".to_owned(),
            ));
        }
        if settings.scoring_window == 0 {
            return Err(DaemonError::Settings(
                "the scoring window must hold at least 1 event".to_owned(),
            ));
        }
        Ok(Self {
            // Not 0: a new daemon owes whatever the store says it owes.
            changes: AtomicU64::new(1),
            future_creations: std::sync::Mutex::new(BTreeSet::new()),
            resolved_since_scoring: std::sync::Mutex::new(HashSet::new()),
            scoring_requested: AtomicBool::new(false),
            store,
            clock,
            executor,
            weight_setter,
            settings,
            state: Mutex::new(StepState::default()),
            metrics: None,
            workers: None,
        })
    }

    /// The same daemon, counting its runs, scorings and weights in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ValidatorMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same daemon as a scheduler for runner workers: it runs no agent itself, but hands
    /// every owed run to the workers through the store (with its component, read from
    /// `components`), and waits until they have recorded them, as it waits for its own runs
    /// otherwise: what follows a pass (pooling, scoring) sees the same runs either way.
    #[must_use]
    pub fn with_workers(mut self, components: Components) -> Self {
        self.workers = Some(WorkerHandoff::new(components));
        self
    }

    /// The store the daemon writes.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The daemon's settings.
    #[must_use]
    pub fn settings(&self) -> &DaemonSettings {
        &self.settings
    }

    /// The daemon's clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Stores a new event. An event already stored with the same content is accepted again
    /// ([`Ingested::AlreadyKnown`]), so sources can be replayed after a restart.
    ///
    /// # Errors
    ///
    /// [`DaemonError::ConflictingEvent`] if the id names a different event (the first stands),
    /// [`DaemonError::Store`] for an invalid event or a failed write. Nothing is written on
    /// error.
    pub async fn ingest_event(&self, event: &Event) -> Result<Ingested, DaemonError> {
        let ingested = self.insert_event(event).await;
        if ingested.is_ok() {
            // After the write: a step that sees the change also sees the event.
            if event.created_at > self.clock.now() {
                self.lock_future_creations().insert(event.created_at);
            }
            self.note_change();
        }
        ingested
    }

    async fn insert_event(&self, new_event: &Event) -> Result<Ingested, DaemonError> {
        match self.store.insert_event(new_event).await {
            Ok(()) => Ok(Ingested::New),
            Err(StoreError::DuplicateEvent { event_id }) => {
                let stored = self.store.event(&event_id).await?;
                if stored.is_some_and(|stored| same_event(&stored.event, new_event)) {
                    Ok(Ingested::AlreadyKnown)
                } else {
                    Err(DaemonError::ConflictingEvent { event_id })
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Records a resolution; the next [`step`](Self::step) scores the event. The same
    /// resolution again is accepted ([`Ingested::AlreadyKnown`]) and rescored identically.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Store`]: an unknown event, a resolution before the event's creation, one
    /// that disagrees with the recorded one, a failed write.
    pub async fn ingest_resolution(
        &self,
        resolution: &Resolution,
    ) -> Result<Ingested, DaemonError> {
        let recorded = self
            .store
            .resolve_event(
                &resolution.event_id,
                resolution.outcome.as_u8(),
                resolution.resolved_at,
            )
            .await?;
        self.lock_resolved().insert(resolution.event_id.clone());
        Ok(match recorded {
            ResolutionRecorded::Recorded => Ingested::New,
            ResolutionRecorded::AlreadyRecorded => Ingested::AlreadyKnown,
        })
    }

    /// Registers `hotkey` now: the lowest free uid, or, when the slots are full, the uid of the
    /// lowest-ranked miner outside immunity, which is deregistered (its history stays, its runs
    /// stop).
    ///
    /// # Errors
    ///
    /// [`DaemonError::Registration`] (already registered, every miner immune, no slots),
    /// [`DaemonError::Store`]. Nothing is written on error.
    pub async fn register_miner(&self, hotkey: &str) -> Result<RegistrationDecision, DaemonError> {
        let now = self.clock.now();
        let standings = self.standings(now).await?;
        let decision = decide_registration(&self.settings.registration, &standings, hotkey, now)?;
        self.store.apply_registration(&decision).await?;
        self.note_change();
        tracing::info!(
            hotkey,
            uid = decision.registered.uid,
            deregistered = decision
                .deregistered
                .as_ref()
                .map(|miner| miner.hotkey.as_str()),
            "miner registered"
        );
        Ok(decision)
    }

    /// Adds a verified version `hash` of `hotkey`'s agent, uploaded and verified now: it
    /// becomes active at the next midnight unless a newer one is added before then.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Store`]: unknown or deregistered miner, a hash it already uploaded, a
    /// failed write.
    pub async fn add_verified_version(&self, hotkey: &str, hash: &str) -> Result<(), DaemonError> {
        let now = self.clock.now();
        self.store
            .add_agent_version(&AgentVersion {
                hotkey: hotkey.to_owned(),
                hash: hash.to_owned(),
                uploaded_at: now,
                verified_at: Some(now),
            })
            .await?;
        self.note_change();
        Ok(())
    }

    /// Records benchmark agent `name` with its component `hash` (already admitted by the
    /// executor): it runs on every event created from now on that is still open, under a
    /// reserved entry that holds no slot and is never weighted.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Store`]: a refused name (empty, over-long, the meta-model's prefix), a
    /// failed write.
    pub async fn set_benchmark(&self, name: &str, hash: &str) -> Result<(), DaemonError> {
        self.store.set_benchmark(name, hash).await?;
        self.note_change();
        Ok(())
    }

    /// The leaderboard at `at`: every registered miner over the last 101 events resolved by
    /// then.
    ///
    /// # Errors
    ///
    /// [`DaemonError::Store`], [`DaemonError::Scoring`].
    pub async fn standings(&self, at: DateTime<Utc>) -> Result<Vec<LeaderboardRow>, DaemonError> {
        let miners = self.store.registered_miners().await?;
        let window = self
            .store
            .last_resolved_events(&miners, self.settings.scoring_window, at)
            .await?;
        Ok(leaderboard_over(
            &miners,
            &window,
            self.settings.scoring_window,
        )?)
    }

    /// Makes the next [`step`](Self::step) compute and publish weights even if no resolution
    /// arrived (a restarted live daemon publishes its current weights this way).
    pub fn request_scoring(&self) {
        self.scoring_requested.store(true, Ordering::SeqCst);
    }

    /// One pass at the clock's current instant: activation, owed runs, scoring. See the module
    /// docs. Steps are serialized: a second caller waits for the first to finish.
    ///
    /// # Errors
    ///
    /// [`DaemonError`] when the store fails; what was recorded before the failure stays
    /// recorded, and the next step carries on from there.
    pub async fn step(&self) -> Result<StepReport, DaemonError> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        let mut report = StepReport {
            at: Some(now),
            ..StepReport::default()
        };
        let midnight = midnight_at_or_before(now);
        if state.activated_through != Some(midnight) {
            report.activations = self.record_activations(now).await?;
            state.activated_through = Some(midnight);
            // A new day's versions run the events created from now on.
            self.note_change();
        }
        let came_due = self
            .lock_future_creations()
            .first()
            .is_some_and(|&first| first <= now);
        let changes = self.changes.load(Ordering::SeqCst);
        if came_due || changes != state.runs_done_at_change {
            // Before the owed runs are looked for: every event within it has had its runs
            // once this pass is over, and only those are pooled.
            let seen = self.store.events_seen().await?;
            let owed = self.run_owed(now).await?;
            report.runs = owed.runs;
            report.failed_runs = owed.failed;
            report.benchmark_runs = owed.benchmark_runs;
            report.queued_runs = owed.queued;
            report.pooled_events = self.pool_events(now, seen, &mut state).await?;
            // Only once every owed run is recorded: a failed pass is tried again.
            state.runs_done_at_change = changes;
            self.lock_future_creations()
                .retain(|&instant| instant > now);
        }
        let pending = std::mem::take(&mut *self.lock_resolved());
        let requested = self.scoring_requested.swap(false, Ordering::SeqCst);
        if requested || !pending.is_empty() {
            let began = std::time::Instant::now();
            match self.score(now, &mut state, &pending, requested).await {
                Ok((leaderboard, later)) => {
                    if let (Some(metrics), Some(_)) = (&self.metrics, &leaderboard) {
                        // A leaderboard is returned only once its weights were published.
                        metrics.observe_scoring(began.elapsed());
                        metrics.observe_weights_set(now);
                    }
                    report.leaderboard = leaderboard;
                    self.lock_resolved().extend(later);
                }
                Err(error) => {
                    // Scored again at the next step.
                    self.lock_resolved().extend(pending);
                    self.scoring_requested.fetch_or(requested, Ordering::SeqCst);
                    return Err(error);
                }
            }
        }
        Ok(report)
    }

    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.resolved_since_scoring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note_change(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    fn lock_future_creations(&self) -> std::sync::MutexGuard<'_, BTreeSet<DateTime<Utc>>> {
        self.future_creations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records, per registered miner, the version active at `now` (with the midnight it became
    /// active at); returns how many changed.
    async fn record_activations(&self, now: DateTime<Utc>) -> Result<usize, DaemonError> {
        let versions = self.store.versions_for_activation().await?;
        let hotkeys: BTreeSet<&str> = versions.iter().map(|v| v.hotkey.as_str()).collect();
        let mut changed = 0;
        for hotkey in hotkeys {
            // The timeline looks at `hotkey`'s versions only.
            let timeline = activation_timeline(&versions, hotkey);
            let current = timeline
                .iter()
                .rev()
                .find(|period| period.from <= now && period.until.is_none_or(|until| now < until));
            if let Some(period) = current
                && self
                    .store
                    .record_activation(hotkey, &period.version.hash, period.from)
                    .await?
            {
                tracing::info!(hotkey, hash = %period.version.hash, from = %period.from, "version activated");
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Executes every run owed at `now`, the miners' and the benchmark agents', recording
    /// outcomes as they finish.
    async fn run_owed(&self, now: DateTime<Utc>) -> Result<OwedRuns, DaemonError> {
        let missing = self.store.missing_runs(now).await?;
        let benchmarks = self.store.missing_benchmark_runs(now).await?;
        if missing.is_empty() && benchmarks.is_empty() {
            if let Some(metrics) = &self.metrics {
                metrics.set_runs_owed(0);
            }
            return Ok(OwedRuns::default());
        }
        let versions = self.store.versions_for_activation().await?;
        let events: HashMap<String, EventRecord> = self
            .store
            .open_events(now)
            .await?
            .into_iter()
            .map(|record| (record.event.id.clone(), record))
            .collect();
        // A miner without a version active at the event's creation has nothing to run on it.
        let miner_jobs = missing.into_iter().filter_map(|run| {
            let version = active_version(&versions, &run.hotkey, run.created_at)?;
            let event = events.get(&run.event_id)?.clone();
            Some(Owed::Miner(RunJob {
                run_id: RunJob::run_id_for(&run.event_id, &run.hotkey),
                event,
                version_hash: version.hash.clone(),
                hotkey: run.hotkey,
                uid: run.uid,
            }))
        });
        let benchmark_jobs = benchmarks.into_iter().filter_map(|run| {
            let event = events.get(&run.event_id)?.clone();
            // The gateway meters a benchmark under this reserved name, which no hotkey can be
            // (a hotkey is hex or SS58).
            let hotkey = format!("benchmark:{}", run.name);
            Some(Owed::Benchmark {
                entry: run.name,
                job: RunJob {
                    run_id: RunJob::run_id_for(&run.event_id, &hotkey),
                    event,
                    version_hash: run.component_hash,
                    hotkey,
                    // Benchmarks hold no slot; the sandbox and the gateway never read a uid.
                    uid: 0,
                },
            })
        });
        let jobs: Vec<Owed> = miner_jobs.chain(benchmark_jobs).collect();
        if let Some(metrics) = &self.metrics {
            // Miners' runs only: the metrics count benchmark runs nowhere.
            let owed = jobs
                .iter()
                .filter(|owed| matches!(owed, Owed::Miner(_)))
                .count();
            metrics.set_runs_owed(owed);
        }
        if let Some(handoff) = &self.workers {
            return self.hand_to_workers(jobs, handoff).await;
        }
        let executor = &self.executor;
        let mut finished = futures::stream::iter(jobs)
            .map(|owed| {
                let execution = Arc::clone(executor).execute(owed.job().clone());
                async move { (owed, execution.await) }
            })
            .buffer_unordered(self.settings.max_concurrent_runs)
            .ready_chunks(RECORD_BATCH);
        let mut done = OwedRuns::default();
        while let Some(chunk) = finished.next().await {
            let finished_at = self.clock.now();
            let mut records: Vec<NewRun> = Vec::with_capacity(chunk.len());
            let mut forecasts: Vec<NewReferenceForecast> = Vec::new();
            for (owed, executed) in chunk {
                match owed {
                    Owed::Miner(job) => records.push(NewRun {
                        event_id: job.event.event.id,
                        hotkey: job.hotkey,
                        version_hash: job.version_hash,
                        executed,
                        finished_at,
                    }),
                    Owed::Benchmark { entry, job } => forecasts.push(NewReferenceForecast {
                        event_id: job.event.event.id,
                        entry,
                        executed: Some(executed),
                        finished_at,
                    }),
                }
            }
            if !records.is_empty() {
                let outcomes = self.store.record_runs(&records).await?;
                for (record, outcome) in records.iter().zip(outcomes) {
                    if outcome == RunRecorded::Inserted {
                        if let Some(metrics) = &self.metrics {
                            let duration = Duration::from_millis(record.executed.duration_ms);
                            metrics.observe_run(record.executed.status, duration);
                            metrics.observe_run_spend(
                                &record.executed.gateway_usage,
                                record.executed.cost_usd,
                            );
                        }
                        done.runs += 1;
                        done.failed += usize::from(record.executed.prediction.is_none());
                    }
                }
            }
            if !forecasts.is_empty() {
                let outcomes = self.store.record_reference_forecasts(&forecasts).await?;
                done.benchmark_runs += outcomes
                    .iter()
                    .filter(|&&outcome| outcome == RunRecorded::Inserted)
                    .count();
            }
        }
        Ok(done)
    }
}

/// A run owed: a miner's, or a benchmark agent's.
enum Owed {
    Miner(RunJob),
    Benchmark { entry: String, job: RunJob },
}

impl Owed {
    fn job(&self) -> &RunJob {
        match self {
            Self::Miner(job) | Self::Benchmark { job, .. } => job,
        }
    }
}

/// What [`Daemon::run_owed`] executed and recorded.
#[derive(Debug, Default)]
struct OwedRuns {
    runs: usize,
    failed: usize,
    benchmark_runs: usize,
    queued: usize,
}

/// Whether a stored event is `new_event` (instants compared at the store's millisecond
/// precision).
fn same_event(stored: &Event, new_event: &Event) -> bool {
    stored.id == new_event.id
        && stored.kind == new_event.kind
        && stored.title == new_event.title
        && stored.description == new_event.description
        && stored.metadata == new_event.metadata
        && stored.created_at.timestamp_millis() == new_event.created_at.timestamp_millis()
        && stored.cutoff.timestamp_millis() == new_event.cutoff.timestamp_millis()
}
