//! The verification plan: how a scheduler whose agents run on runner workers has its versions
//! verified, published in the store for the workers that verify them.
//!
//! A scheduler with workers runs no agent itself, probe runs included, so the workers need
//! what its own verifier would have had: the attempts, lease and probe failures allowed, the
//! originality settings, the probe events and the benchmark agents (whose probe predictions
//! are public signals). The plan carries them, the components by content hash (the scheduler
//! keeps those in the store), so that every worker verifies exactly as the scheduler would,
//! whatever its host was given. This module owns the plan's shape and the verifier a worker
//! builds from it; it must not decide a verdict (that is [`super::Verifier`]).

use std::sync::Arc;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::{ProbeSet, VerificationSettings, Verifier};
use crate::database_clock::DatabaseClock;
use crate::integrity::OriginalityConfig;
use crate::sandbox::SandboxExecutor;
use crate::shared_components::{self, FetchError};
use crate::sources::jsonl;
use crate::store::{Store, StoreError};

/// How versions are verified, as the scheduler publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationPlan {
    /// Attempts before a version is rejected with the last error.
    pub max_attempts: u32,
    /// A worker's hold on an item, in seconds.
    pub lease_secs: i64,
    /// Failed probe runs that reject a version.
    pub max_probe_failures: usize,
    /// The originality check.
    pub originality: OriginalityConfig,
    /// The probe events with their outcomes, as JSON Lines event rows, in order.
    pub probe: String,
    /// The benchmark agents.
    pub benchmarks: Vec<PlannedBenchmark>,
}

/// A benchmark agent of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedBenchmark {
    /// Its name.
    pub name: String,
    /// Its component's content hash, kept in the store.
    pub hash: String,
}

/// Why a plan cannot be published or followed.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// The published text is not a plan (written by another release, or damaged).
    #[error("the published verification plan cannot be read: {0}")]
    Malformed(String),
    /// A benchmark agent's component cannot be had from the store.
    #[error("benchmark agent {name}'s component cannot be fetched")]
    Benchmark {
        /// The benchmark.
        name: String,
        /// Why.
        source: FetchError,
    },
}

impl VerificationPlan {
    /// The plan of a scheduler verifying with `settings` on `probe`, with `benchmarks` (whose
    /// components the scheduler keeps in the store for the workers to fetch).
    #[must_use]
    pub fn new(
        settings: &VerificationSettings,
        probe: &ProbeSet,
        benchmarks: Vec<PlannedBenchmark>,
    ) -> Self {
        Self {
            max_attempts: settings.max_attempts,
            lease_secs: settings.lease.num_seconds(),
            max_probe_failures: settings.max_probe_failures,
            originality: settings.originality.clone(),
            probe: probe_rows(probe),
            benchmarks,
        }
    }

    /// Publishes the plan for the runner workers, with the scheduler's `sandbox_version` (the
    /// one a worker must match) in the same write.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn publish(&self, store: &Store, sandbox_version: &str) -> Result<(), StoreError> {
        store
            .set_scheduler(sandbox_version, Some(&self.to_json()))
            .await
    }

    /// The plan as the store keeps it.
    ///
    /// # Panics
    ///
    /// Never: the plan is plain data (strings, numbers, and a configuration of them).
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a verification plan serializes")
    }

    /// A plan from the store's text.
    ///
    /// # Errors
    ///
    /// [`PlanError::Malformed`] when the text is not a plan or its probe rows do not parse.
    pub fn from_json(text: &str) -> Result<Self, PlanError> {
        let plan: Self =
            serde_json::from_str(text).map_err(|error| PlanError::Malformed(error.to_string()))?;
        plan.probe_set()?;
        Ok(plan)
    }

    /// The settings a verifier running `concurrency` probe runs at once follows.
    #[must_use]
    pub fn settings(&self, concurrency: usize) -> VerificationSettings {
        VerificationSettings {
            max_attempts: self.max_attempts,
            lease: TimeDelta::seconds(self.lease_secs.max(1)),
            max_probe_failures: self.max_probe_failures,
            concurrency,
            originality: self.originality.clone(),
        }
    }

    /// The probe set.
    ///
    /// # Errors
    ///
    /// [`PlanError::Malformed`] when a probe row does not parse.
    pub fn probe_set(&self) -> Result<ProbeSet, PlanError> {
        let batch = jsonl::parse_str(&self.probe, "the verification plan's probe set");
        if let Some(row) = batch.rejected.first() {
            return Err(PlanError::Malformed(row.to_string()));
        }
        Ok(ProbeSet::from_batch(&batch, usize::MAX))
    }
}

/// The probe events as event rows carrying their outcome and resolution instant.
fn probe_rows(probe: &ProbeSet) -> String {
    let mut rows = String::new();
    for record in probe.events() {
        let mut row = serde_json::to_value(&record.event).expect("an event serializes");
        if let Value::Object(fields) = &mut row {
            if let Some(outcome) = record.outcome {
                fields.insert("outcome".to_owned(), Value::from(outcome.as_u8()));
            }
            if let Some(resolved_at) = record.resolved_at {
                fields.insert(
                    "resolved_at".to_owned(),
                    Value::from(resolved_at.to_rfc3339()),
                );
            }
        }
        rows.push_str(&row.to_string());
        rows.push('\n');
    }
    rows
}

/// The verifier of a runner worker: the plan the scheduler published, probe runs in
/// `executor` (`concurrency` at once), components fetched from the store, leases and verdicts
/// timed by `clock` (the database's, as the worker reads it). `None` when the scheduler
/// published no plan (it verifies in its own process).
///
/// # Errors
///
/// [`PlanError`] when the store fails, the plan cannot be read, or a benchmark's component
/// cannot be fetched.
pub async fn worker_verifier(
    store: &Store,
    executor: Arc<SandboxExecutor>,
    concurrency: usize,
    clock: Arc<DatabaseClock>,
) -> Result<Option<Verifier>, PlanError> {
    let Some(text) = store.verification_plan().await? else {
        return Ok(None);
    };
    let plan = VerificationPlan::from_json(&text)?;
    let mut benchmarks = Vec::with_capacity(plan.benchmarks.len());
    for benchmark in &plan.benchmarks {
        let bytes = shared_components::fetch(store, &benchmark.hash)
            .await
            .map_err(|source| PlanError::Benchmark {
                name: benchmark.name.clone(),
                source,
            })?;
        benchmarks.push((benchmark.name.clone(), bytes));
    }
    let probe = plan.probe_set()?;
    tracing::info!(
        probe_events = probe.events().len(),
        benchmarks = benchmarks.len(),
        "verifying versions by the scheduler's plan"
    );
    let verifier = Verifier::new(
        store.clone(),
        executor,
        clock,
        probe,
        plan.settings(concurrency),
    )
    .with_benchmarks(benchmarks)
    .fetching_components();
    Ok(Some(verifier))
}
