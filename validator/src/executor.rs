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

use crate::store::{EventRecord, RunStatus};

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
    /// Captured output and, for a failure, why it failed.
    pub logs: String,
    /// What the run used through the gateway (JSON object).
    pub gateway_usage: Value,
    /// What those calls cost, in USD.
    pub cost_usd: f64,
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
