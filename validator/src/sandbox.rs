//! The daemon's real executor: agents run in the wasmtime sandbox of `sooth-runner`.
//!
//! This module owns the agents' components on disk (content-addressed files in one directory,
//! written once) and the loaded agents in memory, and turns a [`RunJob`] into a runner call: the
//! event as the agent sees it, the run's time limit, its gateway and its run token. It must not
//! decide what runs (that is [`crate::daemon`]) nor change what the runner reports beyond
//! mapping it to an [`ExecutedRun`].

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sooth_runner::{Agent, Gateway, LoadError, RunOutcome, RunSpec, Runner, content_hash};
use thiserror::Error;

use crate::causes::with_causes;
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
    /// The component could not be saved.
    #[error("cannot save the component to {}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a version's saved component cannot run; the run is then a crash with this in its log.
#[derive(Debug, Error)]
enum ComponentError {
    /// The version hash is not hex, so it names no file of ours.
    #[error("version hash {0:?} names no component")]
    NotAHash(String),
    /// The file cannot be read.
    #[error("component {} cannot be read", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The runner refuses the file.
    #[error("component {} does not load", path.display())]
    Load { path: PathBuf, source: LoadError },
    /// The file holds another component.
    #[error("component {} holds {found}, not {expected}", path.display())]
    WrongHash {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Runs agents in the sandbox. Cheap to share behind an `Arc`.
pub struct SandboxExecutor {
    runner: Runner,
    components: PathBuf,
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
        let components = components.into();
        std::fs::create_dir_all(&components)?;
        Ok(Self {
            runner,
            components,
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
    /// [`AdmitError::Load`] saying what is wrong with the bytes, [`AdmitError::Save`].
    pub async fn admit(&self, bytes: &[u8]) -> Result<String, AdmitError> {
        // Bytes already loaded are already verified.
        let known = content_hash(bytes);
        if self.lock_loaded().contains_key(&known) && self.component_path(&known).exists() {
            return Ok(known);
        }
        let agent = self.runner.load(bytes).await?;
        let hash = agent.hash().to_owned();
        let path = self.component_path(&hash);
        if !path.exists() {
            write_atomically(&path, bytes).map_err(|source| AdmitError::Save {
                path: path.clone(),
                source,
            })?;
        }
        self.lock_loaded().insert(hash.clone(), agent);
        Ok(hash)
    }

    fn component_path(&self, hash: &str) -> PathBuf {
        self.components.join(format!("{hash}.wasm"))
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Agent>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loaded agent of `hash`, loading its saved component the first time.
    async fn agent(&self, hash: &str) -> Result<Agent, ComponentError> {
        if let Some(agent) = self.lock_loaded().get(hash) {
            return Ok(agent.clone());
        }
        // A hash is hex; anything else cannot name a file of ours.
        if hash.is_empty() || !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(ComponentError::NotAHash(hash.to_owned()));
        }
        let path = self.component_path(hash);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(source) => return Err(ComponentError::Read { path, source }),
        };
        let agent = match self.runner.load(&bytes).await {
            Ok(agent) => agent,
            Err(source) => return Err(ComponentError::Load { path, source }),
        };
        if agent.hash() != hash {
            return Err(ComponentError::WrongHash {
                path,
                found: agent.hash().to_owned(),
                expected: hash.to_owned(),
            });
        }
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

/// Writes `bytes` to `path` through a temporary file in the same directory, so that the file
/// is either absent or complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(directory)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}
