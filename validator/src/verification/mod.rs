//! The verification queue's workers: every new version, uploaded by its miner or added by the
//! operator, is checked here before it can activate.
//!
//! This module owns the steps of a verification and their order: the duplicate check (the
//! same bytes as another miner's earlier version, before anything is compiled); compiling the
//! component in the runner's compile process, under its time and memory limits, which also
//! checks the contract (imports and exports); running the agent on the probe set (stopping
//! once too many runs fail); the originality check against other miners' earlier versions on
//! those predictions. A version that passes is `verified` and activates at the next midnight
//! under the activation rule; one that fails is rejected with the reason, naming the version
//! it matched where there is one.
//!
//! The queue lives in the store (`store::verification`): a worker claims an item under a
//! lease it renews while it works, so that a worker that dies (or a restarted validator)
//! loses the item when the lease ends and another claims it again; the verdict is recorded
//! only by the holder of the latest claim, so each item gets exactly one. An attempt that fails
//! for a reason of ours (the store, a missing file) is retried up to `max_attempts` times, then
//! the version is rejected with the last error. It must not decide scoring or activation, nor
//! hold the statistics themselves (those are [`crate::integrity`]).
//!
//! [`live_check`] is the same checks run daily over each active version's recent live events;
//! a version that fails them stops earning weight until a new one activates.

pub mod live_check;
mod originality;
pub mod plan;
mod probe_runs;
pub mod probe_set;

use std::sync::Arc;

use chrono::TimeDelta;
use thiserror::Error;
use tokio::sync::Notify;

use crate::causes::with_causes;
use crate::clock::Clock;
use crate::integrity::OriginalityConfig;
use crate::metrics::ValidatorMetrics;
use crate::sandbox::{AdmitError, SandboxExecutor};
use crate::store::{
    AttemptFailed, IntegrityCheck, NewVerdict, ProbeRun, Store, StoreError, VerdictScope,
    Verification, VerificationClaim,
};

pub use live_check::{LiveCheckReport, LiveCheckSettings, check_active_versions};
pub use plan::{PlanError, PlannedBenchmark, VerificationPlan, worker_verifier};
pub use probe_set::{ProbeSet, ProbeSetError};

/// How versions are verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationSettings {
    /// Attempts before a version is rejected with the last error.
    pub max_attempts: u32,
    /// A worker's hold on an item; renewed every third of it while it works.
    pub lease: TimeDelta,
    /// Failed probe runs that reject a version.
    pub max_probe_failures: usize,
    /// Probe runs executing at once (per verification).
    pub concurrency: usize,
    /// The originality check.
    pub originality: OriginalityConfig,
}

impl Default for VerificationSettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            lease: TimeDelta::seconds(120),
            max_probe_failures: 20,
            concurrency: 8,
            originality: OriginalityConfig::default(),
        }
    }
}

/// What one pass of a worker did.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// The version got its verdict.
    Decided {
        /// The version.
        version: i64,
        /// The verdict.
        verification: Verification,
    },
    /// The attempt failed for a reason of ours; the item is queued again or, after its last
    /// attempt, rejected.
    AttemptFailed {
        /// The version.
        version: i64,
        /// What became of it.
        outcome: AttemptFailed,
        /// Why the attempt failed.
        error: String,
    },
    /// Another worker took the item over (this one's lease ended); nothing was recorded.
    LeaseLost {
        /// The version.
        version: i64,
    },
}

/// Why an attempt failed for a reason of ours rather than the agent's.
#[derive(Debug, Error)]
enum AttemptError {
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("the component cannot be read")]
    Component(#[source] AdmitError),
    #[error("the originality check refused its input")]
    Originality(#[from] crate::integrity::IntegrityError),
    #[error("benchmark agent {name} does not load")]
    Benchmark { name: String, source: AdmitError },
    #[error("the component cannot be fetched from the store")]
    Fetch(#[from] crate::shared_components::FetchError),
}

/// Verifies queued versions. Cheap to share behind an `Arc`.
pub struct Verifier {
    store: Store,
    executor: Arc<SandboxExecutor>,
    clock: Arc<dyn Clock>,
    probe: ProbeSet,
    settings: VerificationSettings,
    queued: Notify,
    /// The benchmark agents' components, run on the probe set the first time they are needed.
    benchmarks: Vec<(String, Vec<u8>)>,
    /// Their probe predictions, aligned with the probe events: public signals.
    benchmark_predictions: tokio::sync::OnceCell<Vec<Vec<Option<f64>>>>,
    /// Where each attempt's outcome is counted.
    metrics: Option<Arc<ValidatorMetrics>>,
    /// Whether components are fetched from the store into the executor's directory (a
    /// runner worker's verifier) rather than found there (the scheduler's).
    fetches_components: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Verifier")
            .field("probe_events", &self.probe.events().len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of the queue in `store`, loading and running agents with `executor`, on the
    /// instants of `clock`.
    #[must_use]
    pub fn new(
        store: Store,
        executor: Arc<SandboxExecutor>,
        clock: Arc<dyn Clock>,
        probe: ProbeSet,
        settings: VerificationSettings,
    ) -> Self {
        Self {
            store,
            executor,
            clock,
            probe,
            settings,
            queued: Notify::new(),
            benchmarks: Vec::new(),
            benchmark_predictions: tokio::sync::OnceCell::new(),
            metrics: None,
            fetches_components: false,
        }
    }

    /// The same verifier fetching each version's component from the store (where the
    /// scheduler keeps uploads for its runner workers) when the executor's directory lacks it.
    #[must_use]
    pub fn fetching_components(mut self) -> Self {
        self.fetches_components = true;
        self
    }

    /// The same verifier, counting each attempt's outcome in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<ValidatorMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same verifier with benchmark agents (`(name, component bytes)`): their predictions
    /// on the probe set are public signals, so that what an agent shares with them (the
    /// market's price, an LLM's answer) is not taken for a copy of another miner.
    #[must_use]
    pub fn with_benchmarks(mut self, benchmarks: Vec<(String, Vec<u8>)>) -> Self {
        self.benchmarks = benchmarks;
        self
    }

    /// The benchmark agents' probe predictions, run once.
    async fn benchmark_predictions(&self) -> Result<&[Vec<Option<f64>>], AttemptError> {
        let predictions = self
            .benchmark_predictions
            .get_or_try_init(|| async {
                let mut all = Vec::with_capacity(self.benchmarks.len());
                for (name, bytes) in &self.benchmarks {
                    let hash = self.executor.admit(bytes).await.map_err(|source| {
                        AttemptError::Benchmark {
                            name: name.clone(),
                            source,
                        }
                    })?;
                    let claim = VerificationClaim {
                        version: 0,
                        attempt: 0,
                        hotkey: format!("benchmark:{name}"),
                        hash,
                        uploaded_at: self.clock.now(),
                    };
                    let outcome = probe_runs::run_probe_set(
                        &self.executor,
                        &self.probe,
                        &claim,
                        0,
                        self.settings.concurrency,
                        usize::MAX,
                    )
                    .await;
                    all.push(originality::aligned(&self.probe, &outcome.runs));
                }
                Ok::<_, AttemptError>(all)
            })
            .await?;
        Ok(predictions)
    }

    /// The probe set.
    #[must_use]
    pub fn probe(&self) -> &ProbeSet {
        &self.probe
    }

    /// Wakes a waiting worker: something was queued.
    pub fn notify_queued(&self) {
        self.queued.notify_waiters();
    }

    /// Works the queue until `shutdown` resolves: verifies whatever is waiting, then waits for
    /// [`notify_queued`](Self::notify_queued) or a few seconds (another process may queue
    /// too, and leases end). An item being verified when `shutdown` resolves is finished and
    /// recorded first (its probe runs are not thrown away); nothing more is claimed.
    pub async fn work(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let notified = self.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            loop {
                if futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
                    return;
                }
                match self.verify_next().await {
                    Ok(Some(done)) => {
                        if let Some(metrics) = &self.metrics {
                            metrics.observe_verification((&done).into());
                        }
                        log_pass(&done);
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "cannot claim from the verification queue"
                        );
                        break;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = notified => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    /// Claims the oldest waiting item and verifies it. `None` when nothing waits.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the queue cannot be read or the claim written; a failure during the
    /// verification itself is an [`Verified::AttemptFailed`].
    pub async fn verify_next(&self) -> Result<Option<Verified>, StoreError> {
        let Some(claim) = self
            .store
            .claim_verification(
                self.clock.now(),
                self.settings.lease,
                self.settings.max_attempts,
            )
            .await?
        else {
            return Ok(None);
        };
        tracing::info!(version = claim.version, hotkey = %claim.hotkey, attempt = claim.attempt, "verifying");
        let renewal = self.keep_lease(&claim);
        let attempt = self.verify(&claim).await;
        renewal.abort();
        let now = self.clock.now();
        let done = match attempt {
            Ok((verification, verdicts, probe_runs)) => {
                let recorded = self
                    .store
                    .finish_verification(&claim, &verification, &verdicts, &probe_runs, now)
                    .await?;
                if matches!(verification, Verification::Rejected { .. }) {
                    self.executor.unload(&claim.hash);
                }
                if recorded {
                    Verified::Decided {
                        version: claim.version,
                        verification,
                    }
                } else {
                    Verified::LeaseLost {
                        version: claim.version,
                    }
                }
            }
            Err(error) => {
                let error = with_causes(&error);
                let outcome = self
                    .store
                    .fail_verification_attempt(&claim, &error, now, self.settings.max_attempts)
                    .await?;
                match outcome {
                    AttemptFailed::LeaseLost => Verified::LeaseLost {
                        version: claim.version,
                    },
                    outcome => Verified::AttemptFailed {
                        version: claim.version,
                        outcome,
                        error,
                    },
                }
            }
        };
        Ok(Some(done))
    }

    /// Renews `claim`'s lease every third of it until aborted.
    fn keep_lease(&self, claim: &VerificationClaim) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let clock = Arc::clone(&self.clock);
        let claim = claim.clone();
        let lease = self.settings.lease;
        let every = (lease / 3)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store
                    .renew_verification_lease(&claim, clock.now() + lease)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        version = claim.version,
                        "cannot renew a verification lease"
                    ),
                }
            }
        })
    }

    /// The steps, in order; the first that fails decides.
    async fn verify(
        &self,
        claim: &VerificationClaim,
    ) -> Result<(Verification, Vec<NewVerdict>, Vec<ProbeRun>), AttemptError> {
        let mut verdicts = Vec::new();
        if let Some((matched, hotkey)) = self.store.earlier_same_bytes(claim).await? {
            let reason = format!(
                "duplicate: the same bytes as version {matched} of miner {hotkey}, uploaded earlier"
            );
            verdicts.push(NewVerdict {
                check: IntegrityCheck::Duplicate,
                scope: VerdictScope::Probe,
                passed: false,
                matched_version: Some(matched),
                statistic: None,
                detail: reason.clone(),
            });
            return Ok((
                Verification::Rejected {
                    reason,
                    matched_version: Some(matched),
                },
                verdicts,
                Vec::new(),
            ));
        }
        verdicts.push(NewVerdict {
            check: IntegrityCheck::Duplicate,
            scope: VerdictScope::Probe,
            passed: true,
            matched_version: None,
            statistic: None,
            detail: "no other miner uploaded these bytes before".to_owned(),
        });
        if self.fetches_components {
            crate::shared_components::keep_locally(
                &self.store,
                self.executor.components(),
                &claim.hash,
            )
            .await?;
        }
        match self.executor.load_kept(&claim.hash).await {
            Ok(()) => {}
            Err(AdmitError::Load(error)) => {
                return Ok((
                    Verification::Rejected {
                        reason: format!("the agent does not load: {}", with_causes(&error)),
                        matched_version: None,
                    },
                    verdicts,
                    Vec::new(),
                ));
            }
            Err(error) => return Err(AttemptError::Component(error)),
        }
        if self.probe.is_empty() {
            return Ok((Verification::Verified, verdicts, Vec::new()));
        }
        let uid = self
            .store
            .miner(&claim.hotkey)
            .await?
            .map_or(0, |record| record.miner.uid);
        let probe = probe_runs::run_probe_set(
            &self.executor,
            &self.probe,
            claim,
            uid,
            self.settings.concurrency,
            self.settings.max_probe_failures,
        )
        .await;
        if let Some(reason) = probe.refusal {
            return Ok((
                Verification::Rejected {
                    reason,
                    matched_version: None,
                },
                verdicts,
                probe.runs,
            ));
        }
        let earlier = self.store.earlier_probe_predictions(claim).await?;
        let benchmarks = self.benchmark_predictions().await?;
        let verdict = originality::check(
            &self.probe,
            &probe.runs,
            &earlier,
            benchmarks,
            &self.settings.originality,
        )?;
        let verification = if verdict.passed {
            Verification::Verified
        } else {
            Verification::Rejected {
                reason: verdict.detail.clone(),
                matched_version: verdict.matched_version,
            }
        };
        verdicts.push(verdict);
        Ok((verification, verdicts, probe.runs))
    }
}

fn log_pass(done: &Verified) {
    match done {
        Verified::Decided {
            version,
            verification: Verification::Verified,
        } => tracing::info!(version, "version verified"),
        Verified::Decided {
            version,
            verification: Verification::Rejected { reason, .. },
        } => tracing::info!(version, reason = %reason, "version rejected"),
        Verified::AttemptFailed {
            version,
            outcome,
            error,
        } => tracing::warn!(version, ?outcome, error = %error, "verification attempt failed"),
        Verified::LeaseLost { version } => {
            tracing::warn!(version, "verification taken over by another worker")
        }
    }
}
