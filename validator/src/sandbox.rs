//! The daemon's real executor: agents run in the wasmtime sandbox of `sooth-runner`.
//!
//! This module owns the loaded agents in memory (their files are [`Components`]) and turns a [`RunJob`] into a runner call: the
//! event as the agent sees it, the run's time limit, its gateway and its run token. It must not
//! decide what runs (that is [`crate::daemon`]) nor change what the runner reports beyond
//! mapping it to an [`ExecutedRun`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sooth_runner::{Agent, Gateway, LoadError, RunOutcome, RunSpec, Runner, content_hash};
use thiserror::Error;

use crate::causes::with_causes;
use crate::components::{ComponentFileError, Components};
use crate::executor::{ExecutedRun, Execution, RunExecutor, RunJob, RunStatus};

/// Mints the run token the gateway asks of each run.
pub trait RunTokens: Send + Sync + 'static {
    /// The token for `job`, valid for at least `limit` from now.
    fn token_for(&self, job: &RunJob, limit: Duration) -> String;
}

/// Why a component was not admitted.
#[derive(Debug, Error)]
pub enum AdmitError {
    /// The runner refused the bytes (not a component, too large, forbidden imports...).
    #[error("the agent does not load")]
    Load(#[from] LoadError),
    /// The component could not be saved or read back.
    #[error(transparent)]
    File(#[from] ComponentFileError),
}

/// Runs agents in the sandbox. Cheap to share behind an `Arc`.
pub struct SandboxExecutor {
    runner: Runner,
    components: Components,
    loaded: Mutex<HashMap<String, Agent>>,
    gateway: Arc<dyn Gateway>,
    tokens: Option<Arc<dyn RunTokens>>,
}

impl std::fmt::Debug for SandboxExecutor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SandboxExecutor")
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}

impl SandboxExecutor {
    /// Runs with `runner`, components kept in `components` (created if missing), gateway calls
    /// to `gateway`, each run with a token from `tokens` when given.
    ///
    /// # Errors
    ///
    /// An I/O error if the directory cannot be created.
    pub fn new(
        runner: Runner,
        components: impl Into<PathBuf>,
        gateway: Arc<dyn Gateway>,
        tokens: Option<Arc<dyn RunTokens>>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            runner,
            components: Components::open(components)?,
            loaded: Mutex::new(HashMap::new()),
            gateway,
            tokens,
        })
    }

    /// Verifies `bytes` (the runner loads them: a valid component importing only the contract)
    /// and keeps them; returns the version hash to register.
    ///
    /// # Errors
    ///
    /// [`AdmitError::Load`] saying what is wrong with the bytes, [`AdmitError::File`] when
    /// they cannot be kept.
    pub async fn admit(&self, bytes: &[u8]) -> Result<String, AdmitError> {
        // Bytes already loaded are already verified.
        let known = content_hash(bytes);
        if self.lock_loaded().contains_key(&known) && self.components.path(&known)?.exists() {
            return Ok(known);
        }
        let agent = self.runner.load(bytes).await?;
        let hash = self.components.save(bytes)?;
        self.lock_loaded().insert(hash.clone(), agent);
        Ok(hash)
    }

    /// Drops the loaded agent of `hash` from memory (a version that will not run: rejected at
    /// verification), so that the compiled code of refused uploads does not pile up.
    pub fn unload(&self, hash: &str) {
        self.lock_loaded().remove(hash);
    }

    /// The directory the components are kept in.
    #[must_use]
    pub fn components(&self) -> &Components {
        &self.components
    }

    /// Loads the kept component `hash` (compiled in the runner's compile process, under its
    /// time and memory limits, and checked against the contract), so that its runs need not
    /// load it again.
    ///
    /// # Errors
    ///
    /// [`AdmitError::File`] when the file is missing or damaged, [`AdmitError::Load`] saying
    /// what is wrong with the component.
    pub async fn load_kept(&self, hash: &str) -> Result<(), AdmitError> {
        self.agent(hash).await?;
        Ok(())
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Agent>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loaded agent of `hash`, loading its saved component the first time.
    async fn agent(&self, hash: &str) -> Result<Agent, AdmitError> {
        if let Some(agent) = self.lock_loaded().get(hash) {
            return Ok(agent.clone());
        }
        let bytes = self.components.read(hash).await?;
        let agent = self.runner.load(&bytes).await?;
        self.lock_loaded().insert(hash.to_owned(), agent.clone());
        Ok(agent)
    }

    async fn run(self: Arc<Self>, job: RunJob) -> ExecutedRun {
        let agent = match self.agent(&job.version_hash).await {
            Ok(agent) => agent,
            Err(error) => return ExecutedRun::crash(with_causes(&error)),
        };
        let agent_event = job.event.event.to_agent_event();
        let limit = self.runner.config().timeout;
        let mut spec = RunSpec::new(job.run_id.clone(), self.gateway.clone());
        spec.miner = Some(job.hotkey.clone());
        spec.token = self
            .tokens
            .as_ref()
            .map(|tokens| tokens.token_for(&job, limit));
        let report = match self.runner.run(&agent, &agent_event, &spec).await {
            Ok(report) => report,
            Err(error) => {
                return ExecutedRun::crash(format!("the runner failed: {}", with_causes(&error)));
            }
        };
        let (status, prediction) = match &report.outcome {
            RunOutcome::Prediction { raw, .. } if raw.is_finite() => (RunStatus::Ok, Some(*raw)),
            RunOutcome::Prediction { .. } => (RunStatus::InvalidOutput, None),
            RunOutcome::Timeout { .. } => (RunStatus::Timeout, None),
            RunOutcome::Trap { .. } => (RunStatus::Trap, None),
            RunOutcome::InvalidOutput { .. } => (RunStatus::InvalidOutput, None),
            RunOutcome::MemoryExceeded { .. } => (RunStatus::MemoryExceeded, None),
            RunOutcome::InstantiationFailure { .. } => (RunStatus::InstantiationFailure, None),
        };
        let mut logs = report.logs.text;
        if let Some(reason) = report.outcome.reason() {
            if !logs.is_empty() && !logs.ends_with('\n') {
                logs.push('\n');
            }
            logs.push_str(&format!("[sooth] {}: {reason}\n", report.outcome.status()));
        }
        ExecutedRun {
            status,
            prediction,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            logs,
            cost_usd: report.gateway.cost_usd(),
            gateway_usage: serde_json::to_value(&report.gateway)
                .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
        }
    }
}

impl RunExecutor for SandboxExecutor {
    fn execute(self: Arc<Self>, job: RunJob) -> Execution {
        Box::pin(self.run(job))
    }
}
