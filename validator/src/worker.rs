//! A runner worker (`sooth runner`): claims owed runs from the shared store, runs them in the
//! sandbox, and records each outcome only while it still holds the run's lease; beside them it
//! verifies the versions the scheduler queues, by the plan the scheduler published.
//!
//! This module owns the worker's loop: registration (turned away unless its sandbox is the
//! scheduler's), claims up to its concurrency, the components fetched by content hash from the
//! store into its own directory, lease renewal while runs last, records in batches, and the
//! drain on shutdown (it claims nothing more and exits once what it holds is recorded, the
//! version it is verifying included). When the database is unreachable it keeps the outcomes
//! it holds and tries again, claiming nothing meanwhile; a lease that ended meanwhile drops its
//! outcome, and the run is recorded by whoever claimed it next. It must not decide what is
//! owed (the scheduler enqueues), nor score, nor decide a verdict (that is
//! [`crate::verification`]).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::causes::with_causes;
use crate::database_clock::DatabaseClock;
use crate::executor::{RunExecutor, RunJob};
use crate::sandbox::SandboxExecutor;
use crate::store::{
    ClaimRecorded, ClaimedRun, FinishedClaim, Store, StoreError, WorkerRegistration, WorkerState,
};
use crate::verification::worker_verifier;
use crate::wakeups::Wakeups;

/// How a worker works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Its id among the validator's workers.
    pub worker_id: String,
    /// The host it runs on (shown by `sooth validator status`).
    pub host: String,
    /// Runs at once.
    pub concurrency: usize,
    /// A claim's lease; renewed every third of it.
    pub lease: Duration,
    /// How often an idle worker looks for runs.
    pub idle_poll: Duration,
}

/// Why a worker stopped before it was told to.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The scheduler turned it away (another sandbox), or the store failed at registration.
    #[error("worker {worker_id} cannot join")]
    Register {
        /// The worker.
        worker_id: String,
        /// Why.
        source: StoreError,
    },
}

/// What a worker did, counted when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Runs claimed.
    pub claimed: u64,
    /// Runs recorded.
    pub recorded: u64,
    /// Outcomes dropped because the lease had ended.
    pub lost: u64,
}

/// A runner worker on a store.
#[derive(Debug)]
pub struct Worker {
    store: Store,
    executor: Arc<SandboxExecutor>,
    sandbox_version: String,
    settings: WorkerSettings,
    /// Held while a component is fetched and compiled: the runs of a new component claimed
    /// together wait for one compile instead of each starting its own.
    fetching: tokio::sync::Mutex<()>,
}

/// The longest a worker waits before trying the database again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a worker that cannot follow the verification plan waits before trying again.
const PLAN_RETRY: Duration = Duration::from_secs(10);

/// How often a worker measures its clock against the database's again.
const CLOCK_REMEASURE: Duration = Duration::from_secs(60);

impl Worker {
    /// A worker that claims from `store` and runs in `executor`, whose sandbox is
    /// `sandbox_version` (`Runner::sandbox_version`).
    #[must_use]
    pub fn new(
        store: Store,
        executor: Arc<SandboxExecutor>,
        sandbox_version: String,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            store,
            executor,
            sandbox_version,
            settings,
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Registers, then claims, runs and records until `shutdown` completes; then drains: it
    /// claims nothing more, finishes and records what it holds, and marks itself stopped.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Register`] when the scheduler turns it away or the store cannot be
    /// reached at start. Failures after that are logged and retried.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport, WorkerError> {
        let settings = &self.settings;
        let mut shutdown = pin!(shutdown);
        if !self.register(&mut shutdown).await? {
            return Ok(WorkerReport::default());
        }
        tracing::info!(worker = %settings.worker_id, "worker registered");
        let (stop_verifying, verifying) = self.start_verifying();
        let mut queued = Wakeups::from_opened(self.store.queue_listener().await, "queued runs");
        let mut report = WorkerReport::default();
        let mut in_flight = FuturesUnordered::new();
        let mut finished: Vec<FinishedClaim> = Vec::new();
        let mut draining = false;
        let mut renew = tokio::time::interval(settings.lease / 3);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(settings.idle_poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut trouble = Trouble::default();
        loop {
            if !finished.is_empty() && trouble.may_try() {
                match self
                    .store
                    .record_claimed(&settings.worker_id, &finished)
                    .await
                {
                    Ok(outcomes) => {
                        trouble.cleared();
                        for outcome in outcomes {
                            match outcome {
                                ClaimRecorded::Recorded(_) => report.recorded += 1,
                                ClaimRecorded::LeaseLost => report.lost += 1,
                            }
                        }
                        finished.clear();
                    }
                    Err(error) => trouble.failed("record runs", &error),
                }
            }
            let room = settings.concurrency.saturating_sub(in_flight.len());
            if !draining && room > 0 && trouble.may_try() {
                match self
                    .store
                    .claim_runs(&settings.worker_id, room, settings.lease)
                    .await
                {
                    Ok(claims) => {
                        trouble.cleared();
                        report.claimed += claims.len() as u64;
                        for claim in claims {
                            in_flight.push(self.execute(claim));
                        }
                    }
                    Err(error) => trouble.failed("claim runs", &error),
                }
            }
            if draining && in_flight.is_empty() && finished.is_empty() {
                break;
            }
            tokio::select! {
                () = &mut shutdown, if !draining => {
                    draining = true;
                    stop_verifying.send_replace(true);
                    tracing::info!(worker = %settings.worker_id, held = in_flight.len(),
                                   "draining: finishing the runs held, claiming no more");
                    if let Err(error) = self
                        .store
                        .set_worker_state(&settings.worker_id, WorkerState::Draining)
                        .await
                    {
                        tracing::warn!(error = %with_causes(&error), "cannot mark the worker draining");
                    }
                }
                Some(done) = in_flight.next() => {
                    finished.extend(done);
                    // Record everything that finished together in one transaction.
                    while let Some(Some(done)) = in_flight.next().now_or_never() {
                        finished.extend(done);
                    }
                }
                _ = renew.tick() => {
                    if let Err(error) = self
                        .store
                        .renew_leases(&settings.worker_id, settings.lease)
                        .await
                    {
                        tracing::warn!(error = %with_causes(&error), "cannot renew leases");
                    }
                }
                _ = poll.tick() => {}
                () = queued.next() => {}
            }
        }
        stop_verifying.send_replace(true);
        if let Err(error) = verifying.await {
            tracing::warn!(%error, "the verification task ended abnormally");
        }
        // Whatever it still holds (nothing, after a drain) goes back to the queue.
        if let Err(error) = self
            .store
            .set_worker_state(&settings.worker_id, WorkerState::Stopped)
            .await
        {
            tracing::warn!(error = %with_causes(&error), "cannot mark the worker stopped");
        }
        tracing::info!(worker = %settings.worker_id, claimed = report.claimed,
                       recorded = report.recorded, lost = report.lost, "worker stopped");
        Ok(report)
    }

    /// Verifies versions beside the runs, by the plan the scheduler published, until told to
    /// stop (then it finishes the version in hand). Verifies nothing when the scheduler
    /// published no plan (it verifies in its own process).
    fn start_verifying(&self) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                // A dropped sender stops it too.
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let store = self.store.clone();
        let executor = Arc::clone(&self.executor);
        let concurrency = self.settings.concurrency;
        let task = tokio::spawn(async move {
            let clock = Arc::new(DatabaseClock::default());
            let verifier = loop {
                let followed = async {
                    clock.measure(&store).await?;
                    worker_verifier(
                        &store,
                        Arc::clone(&executor),
                        concurrency,
                        Arc::clone(&clock),
                    )
                    .await
                };
                match followed.await {
                    Ok(Some(verifier)) => break Arc::new(verifier),
                    Ok(None) => {
                        tracing::info!("the scheduler verifies versions itself");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(error = %with_causes(&error),
                                       "cannot follow the scheduler's verification plan; trying again");
                        tokio::select! {
                            () = until_stopped() => return,
                            () = tokio::time::sleep(PLAN_RETRY) => {}
                        }
                    }
                }
            };
            // The host's clock may be stepped while the worker runs.
            let remeasure = async {
                loop {
                    tokio::time::sleep(CLOCK_REMEASURE).await;
                    if let Err(error) = clock.measure(&store).await {
                        tracing::warn!(error = %with_causes(&error), "cannot read the database's clock");
                    }
                }
            };
            tokio::select! {
                () = verifier.work(until_stopped()) => {}
                () = remeasure => {}
            }
        });
        (stop, task)
    }

    /// Registers the worker, waiting for a scheduler to start if none has; `false` when
    /// `shutdown` came first.
    async fn register(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, WorkerError> {
        let settings = &self.settings;
        let registration = WorkerRegistration {
            worker_id: settings.worker_id.clone(),
            host: settings.host.clone(),
            sandbox_version: self.sandbox_version.clone(),
            concurrency: u32::try_from(settings.concurrency).unwrap_or(u32::MAX),
        };
        let mut said = false;
        loop {
            match self.store.register_worker(&registration).await {
                Ok(()) => return Ok(true),
                Err(StoreError::NoScheduler) => {
                    if !said {
                        tracing::info!("no scheduler has started on the database; waiting for one");
                        said = true;
                    }
                    tokio::select! {
                        () = shutdown.as_mut() => return Ok(false),
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(source) => {
                    return Err(WorkerError::Register {
                        worker_id: settings.worker_id.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Runs one claimed run, fetching its component first if this host lacks it. `None` when
    /// the component cannot be had: the claim goes back to the queue for another try.
    async fn execute(&self, claim: ClaimedRun) -> Option<FinishedClaim> {
        let hash = claim.run.component_hash.clone();
        if let Err(problem) = self.ensure_component(&hash).await {
            tracing::warn!(run = %claim.run.run_id, component = %hash, %problem,
                           "cannot fetch the component; the run goes back to the queue");
            if let Err(error) = self
                .store
                .release_claim(&self.settings.worker_id, &claim.run.run_id, claim.attempt)
                .await
            {
                tracing::warn!(error = %with_causes(&error), "cannot release the claim");
            }
            return None;
        }
        let job = RunJob {
            run_id: claim.run.run_id.clone(),
            event: claim.event.clone(),
            hotkey: claim.run.gateway_name.clone(),
            uid: claim.run.uid,
            version_hash: hash,
        };
        let executed = Arc::clone(&self.executor).execute(job).await;
        Some(FinishedClaim { claim, executed })
    }

    /// Makes sure the component `hash` is in this host's directory, fetched from the store
    /// and checked against its hash if not.
    async fn ensure_component(&self, hash: &str) -> Result<(), String> {
        let path = self
            .executor
            .components()
            .path(hash)
            .map_err(|error| with_causes(&error))?;
        if path.exists() {
            return Ok(());
        }
        let _fetching = self.fetching.lock().await;
        if path.exists() {
            return Ok(());
        }
        let bytes = crate::shared_components::fetch(&self.store, hash)
            .await
            .map_err(|error| with_causes(&error))?;
        self.executor
            .admit(&bytes)
            .await
            .map(drop)
            .map_err(|error| with_causes(&error))
    }
}

/// The database's failures in a row, and when to try again.
#[derive(Debug, Default)]
struct Trouble {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Trouble {
    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn failed(&mut self, what: &str, error: &StoreError) {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_millis(100)
            .saturating_mul(2_u32.saturating_pow(self.failures.min(6)))
            .min(MAX_BACKOFF);
        self.retry_at = Some(Instant::now() + wait);
        tracing::warn!(error = %with_causes(error), retry_in_ms = wait.as_millis() as u64,
                       "cannot {what}; the database may be unreachable");
    }

    fn cleared(&mut self) {
        if self.failures > 0 {
            tracing::info!("the database answers again");
        }
        self.failures = 0;
        self.retry_at = None;
    }
}
