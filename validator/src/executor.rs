//! What the daemon asks of whoever runs agents: one version on one event, once.
//!
//! This module owns the seam between scheduling and execution: [`RunJob`] (what to run),
//! [`ExecutedRun`] (what came of it) and the [`RunExecutor`] trait. The daemon's real executor
//! is [`crate::sandbox::SandboxExecutor`] (the wasmtime sandbox of `sooth-runner`); tests put
//! scripted executors here to drive the rules without compiling agents. It must not touch
//! storage: the daemon records what an executor returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

use crate::scoring::scored_prediction;
use crate::store::EventRecord;

/// One run to execute: `hotkey`'s version `version_hash` on `event`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunJob {
    /// The run's identifier, unique per validator and stable across restarts (so that the
    /// gateway's ledger and a repeated run after a crash name the same run).
    pub run_id: String,
    /// The event, as stored.
    pub event: EventRecord,
    /// The miner.
    pub hotkey: String,
    /// The miner's uid.
    pub uid: u16,
    /// The version that runs it (the one active at the event's creation).
    pub version_hash: String,
}

impl RunJob {
    /// The run id the daemon gives the run of `hotkey` on `event_id`.
    #[must_use]
    pub fn run_id_for(event_id: &str, hotkey: &str) -> String {
        format!("{event_id}/{hotkey}")
    }
}

/// How a run ended (the `status` column). The words are the runner's
/// (`sooth_runner::RunOutcome::status`) plus `crash`, for a run the daemon lost (the runner
/// itself failed). Only [`RunStatus::Ok`] carries a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// A valid forecast.
    Ok,
    /// Killed at the time limit.
    Timeout,
    /// The guest trapped.
    Trap,
    /// The guest answered with something unusable (NaN, wrong event id...).
    InvalidOutput,
    /// The guest ran out of memory.
    MemoryExceeded,
    /// The component could not be instantiated.
    InstantiationFailure,
    /// The run was lost outside the guest.
    Crash,
}

impl RunStatus {
    /// The word stored in the `status` column.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::Trap => "trap",
            Self::InvalidOutput => "invalid_output",
            Self::MemoryExceeded => "memory_exceeded",
            Self::InstantiationFailure => "instantiation_failure",
            Self::Crash => "crash",
        }
    }

    /// The status stored as `word`, if it is one.
    #[must_use]
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "ok" => Self::Ok,
            "timeout" => Self::Timeout,
            "trap" => Self::Trap,
            "invalid_output" => Self::InvalidOutput,
            "memory_exceeded" => Self::MemoryExceeded,
            "instantiation_failure" => Self::InstantiationFailure,
            "crash" => Self::Crash,
            _ => return None,
        })
    }
}

/// What came of a run. Every failure is a status without a prediction; the daemon records it
/// and scoring imputes 0.5.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutedRun {
    /// How it ended.
    pub status: RunStatus,
    /// The agent's prediction, exactly when `status` is [`RunStatus::Ok`] (finite; may lie
    /// outside [0, 1]).
    pub prediction: Option<f64>,
    /// Wall-clock duration of the run, in milliseconds.
    pub duration_ms: u64,
    /// Captured output (already truncated by the runner) and, for a failure, why it failed.
    pub logs: String,
    /// What the run used through the gateway (JSON object), as the runner reported it.
    pub gateway_usage: Value,
    /// What those calls cost, in USD; finite and not negative.
    pub cost_usd: f64,
}

/// Why an [`ExecutedRun`] cannot be what a run reported.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RunError {
    /// The cost is negative or not a number.
    #[error("cost {0} USD is not a valid amount")]
    BadCost(f64),
    /// An `ok` run whose prediction is NaN or infinite.
    #[error("prediction {0} is not finite (record it as invalid_output)")]
    NotFinite(f64),
    /// An `ok` run without a prediction.
    #[error("status ok without a prediction")]
    OkWithoutPrediction,
    /// A failed run with a prediction.
    #[error("status {} carries prediction {prediction}; only ok runs have one", status.as_str())]
    FailedWithPrediction {
        /// How the run ended.
        status: RunStatus,
        /// The prediction it carries.
        prediction: f64,
    },
    /// A duration beyond what an instant can hold.
    #[error("duration {0} ms is out of range")]
    Duration(u64),
}

impl ExecutedRun {
    /// A run lost outside the guest (the component is missing, the runner failed): status
    /// [`RunStatus::Crash`], `reason` in the logs.
    #[must_use]
    pub fn crash(reason: impl Into<String>) -> Self {
        Self {
            status: RunStatus::Crash,
            prediction: None,
            duration_ms: 0,
            logs: reason.into(),
            gateway_usage: Value::Object(serde_json::Map::new()),
            cost_usd: 0.0,
        }
    }

    /// Checks that the run is one a run could have ended as: a prediction, finite, exactly
    /// when the status is [`RunStatus::Ok`]; a cost that is an amount; a duration an instant
    /// can hold.
    ///
    /// # Errors
    ///
    /// The first [`RunError`] found.
    pub fn check(&self) -> Result<(), RunError> {
        if !self.cost_usd.is_finite() || self.cost_usd < 0.0 {
            return Err(RunError::BadCost(self.cost_usd));
        }
        if i64::try_from(self.duration_ms).is_err() {
            return Err(RunError::Duration(self.duration_ms));
        }
        match (self.status, self.prediction) {
            (RunStatus::Ok, Some(prediction)) if prediction.is_finite() => Ok(()),
            (RunStatus::Ok, Some(prediction)) => Err(RunError::NotFinite(prediction)),
            (RunStatus::Ok, None) => Err(RunError::OkWithoutPrediction),
            (status, Some(prediction)) => {
                Err(RunError::FailedWithPrediction { status, prediction })
            }
            (_, None) => Ok(()),
        }
    }

    /// The prediction as it is scored, clipped to [0.01, 0.99]; `None` without one (scoring
    /// imputes those).
    #[must_use]
    pub fn clipped_prediction(&self) -> Option<f64> {
        self.prediction
            .filter(|prediction| prediction.is_finite())
            .map(|prediction| scored_prediction(Some(prediction)).value)
    }
}

/// The future an executor returns.
pub type Execution = Pin<Box<dyn Future<Output = ExecutedRun> + Send + 'static>>;

/// Runs agents for the daemon.
///
/// An executor never fails as a whole: whatever goes wrong with one run is that run's
/// [`ExecutedRun`] (a failure status). The daemon calls it from several tasks at once, up to
/// its concurrency limit.
pub trait RunExecutor: Send + Sync + 'static {
    /// Runs `job` once. (Takes the `Arc` so that the future can own its executor and be
    /// spawned.)
    fn execute(self: Arc<Self>, job: RunJob) -> Execution;
}
