//! The live validator: `sooth validator run` and `sooth validator add-agent`.
//!
//! This module owns the wiring of a live daemon from its [`ValidatorConfig`]: the store and
//! components in the data directory, the validator's key (created on first start), the weights
//! file, the read-only HTTP API, and the loop that polls the sources and steps the daemon on the
//! real clock: at every poll and at every midnight (activation). The gateway its agents call is
//! the caller's (the command line starts one in-process or points at a running one), so that
//! the validator never links the gateway. It must not hold rules of its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::TimeDelta;
use ed25519_dalek::SigningKey;
use sooth_protocol::{KeyFileError, load_or_create_signing_key};
use sooth_runner::{Gateway, Runner, ScriptedGateway};
use thiserror::Error;

use crate::activation::next_midnight_after;
use crate::backtest::STORE_FILE;
use crate::clock::{Clock, SystemClock};
use crate::config::ValidatorConfig;
use crate::daemon::{Daemon, DaemonError, DaemonSettings, StepReport};
use crate::intake::{Intake, IntakeError};
use crate::registration::{RegistrationDecision, RegistrationRules};
use crate::run_tokens::SignedRunTokens;
use crate::sandbox::{AdmitError, RunTokens, SandboxExecutor};
use crate::sources::Batch;
use crate::store::Store;
use crate::weights::JsonFileWeights;

/// The file of the validator's run-token key in the data directory.
pub const KEY_FILE: &str = "validator.key";

/// Why the live validator could not start or stopped.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The data directory cannot be used.
    #[error("cannot use the data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon failed (the store, above all).
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The validator's run-token key cannot be read or created.
    #[error("the validator's run-token key")]
    Key(#[from] KeyFileError),
    /// A source is misconfigured, or its progress unreadable.
    #[error(transparent)]
    Sources(#[from] IntakeError),
    /// The HTTP API cannot listen.
    #[error("cannot serve the HTTP API on {listen}")]
    Api {
        /// The address.
        listen: String,
        /// Why.
        source: std::io::Error,
    },
    /// An agent was refused.
    #[error(transparent)]
    Agent(#[from] AdmitError),
    /// A step of the daemon panicked (a bug); the validator stops rather than go on half-way.
    #[error("a step of the daemon failed")]
    Step(#[source] tokio::task::JoinError),
}

/// What [`add_agent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedAgent {
    /// The version's hash.
    pub hash: String,
    /// The registration made for the miner, if it was not registered yet.
    pub registration: Option<RegistrationDecision>,
}

/// The parts of a live validator, opened from its configuration.
struct Parts {
    daemon: Arc<Daemon>,
    executor: Arc<SandboxExecutor>,
    store: Store,
}

fn settings(config: &ValidatorConfig) -> DaemonSettings {
    DaemonSettings {
        max_concurrent_runs: config.scheduling.max_concurrent_runs,
        registration: RegistrationRules {
            slots: config.competition.slots,
            immunity: TimeDelta::days(i64::from(config.competition.immunity_days)),
        },
        scoring_window: config.competition.scoring_window,
    }
}

/// The validator's run-token key in its data directory, created (with the directory) on first
/// use. The gateway its agents call must trust this key's public half.
///
/// # Errors
///
/// [`ServiceError::DataDir`] when the directory cannot be made, [`ServiceError::Key`] when the
/// key cannot be read or created.
pub fn validator_key(config: &ValidatorConfig) -> Result<SigningKey, ServiceError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServiceError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    Ok(load_or_create_signing_key(&config.data_dir.join(KEY_FILE))?)
}

async fn open(
    config: &ValidatorConfig,
    runner: Runner,
    key: SigningKey,
    gateway: Arc<dyn Gateway>,
) -> Result<Parts, ServiceError> {
    let data_dir_error = |source| ServiceError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    };
    let store = Store::open(&config.data_dir.join(STORE_FILE))
        .await
        .map_err(DaemonError::from)?;
    let tokens: Option<Arc<dyn RunTokens>> = Some(Arc::new(SignedRunTokens::new(
        key,
        BTreeMap::from([("*".to_owned(), config.gateway.run_cap_usd)]),
    )));
    let executor = Arc::new(
        SandboxExecutor::new(runner, config.data_dir.join("agents"), gateway, tokens)
            .map_err(data_dir_error)?,
    );
    let daemon = Daemon::new(
        store.clone(),
        Arc::new(SystemClock::new()),
        executor.clone(),
        Arc::new(JsonFileWeights::new(
            config.data_dir.join(&config.weights.file),
        )),
        settings(config),
    )?;
    Ok(Parts {
        daemon: Arc::new(daemon),
        executor,
        store,
    })
}

/// Adds a verified version of `hotkey`'s agent from the component `bytes`, now, registering the
/// miner first if it is not registered. It becomes active at the next midnight. Works while the
/// daemon runs (the store is shared safely).
///
/// # Errors
///
/// [`ServiceError::Agent`] when the component does not load, [`ServiceError::Daemon`] when the
/// registration or the version is refused, or the store fails.
pub async fn add_agent(
    config: &ValidatorConfig,
    runner: Runner,
    hotkey: &str,
    bytes: &[u8],
) -> Result<AddedAgent, ServiceError> {
    // Adding a version runs no agent: no gateway is needed.
    let key = validator_key(config)?;
    let parts = open(config, runner, key, Arc::new(ScriptedGateway::empty())).await?;
    let hash = parts.executor.admit(bytes).await?;
    let registered = parts
        .store
        .miner(hotkey)
        .await
        .map_err(DaemonError::from)?
        .is_some_and(|miner| miner.deregistered_at.is_none());
    let registration = if registered {
        None
    } else {
        Some(parts.daemon.register_miner(hotkey).await?)
    };
    parts.daemon.add_verified_version(hotkey, &hash).await?;
    parts.store.close().await;
    Ok(AddedAgent { hash, registration })
}

/// Runs the live validator until `shutdown` completes: polls the sources every
/// `sources.poll_secs`, steps the daemon after each poll and at each midnight, and serves the
/// HTTP API. Runs get tokens signed with `key` (the one [`validator_key`] gives), and reach
/// outside services through `gateway`, which must trust its public half.
///
/// # Errors
///
/// [`ServiceError`] when something cannot be opened at the start, or the store fails later.
pub async fn run(
    config: ValidatorConfig,
    runner: Runner,
    key: SigningKey,
    gateway: Arc<dyn Gateway>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServiceError> {
    let parts = open(&config, runner, key, gateway).await?;
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .map_err(|source| ServiceError::Api {
            listen: config.api.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %config.api.listen, "HTTP API listening");
    let api = tokio::spawn(serve_api(listener, parts.store.clone()));

    let mut intake = Intake::open(&config.sources, &parts.store).await?;
    let daemon = Arc::clone(&parts.daemon);
    // Publish the weights as they stand, so a restarted validator sets them at once.
    daemon.request_scoring();
    let clock = SystemClock::new();
    let poll = TimeDelta::seconds(i64::try_from(config.sources.poll_secs).unwrap_or(i64::MAX));
    tokio::pin!(shutdown);
    // Steps run beside the polling, so that long runs never hold up ingestion; the daemon
    // serializes steps itself.
    let mut stepping: Option<tokio::task::JoinHandle<Result<StepReport, DaemonError>>> = None;
    let result = loop {
        let batch = intake.poll(clock.now()).await;
        ingest(&daemon, batch).await;
        if let Err(error) = intake.save_progress(clock.now()).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot save the sources' progress"
            );
        }
        if let Some(step) = stepping.take_if(|step| step.is_finished()) {
            match step.await {
                Ok(Ok(report)) => log_step(&report),
                Ok(Err(error)) => break Err(ServiceError::Daemon(error)),
                Err(error) => break Err(ServiceError::Step(error)),
            }
        }
        if stepping.is_none() {
            let daemon = Arc::clone(&daemon);
            stepping = Some(tokio::spawn(async move { daemon.step().await }));
        }
        let now = clock.now();
        let next_poll = now + poll;
        let wake = next_midnight_after(now).map_or(next_poll, |midnight| midnight.min(next_poll));
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = clock.sleep_until(wake) => {}
        }
    };
    if let Some(step) = stepping {
        // Runs in flight are dropped; what they did not record is owed again at the next start.
        step.abort();
    }
    api.abort();
    parts.store.close().await;
    tracing::info!("validator stopped");
    result
}

fn log_step(report: &StepReport) {
    if report.runs > 0 || report.activations > 0 || report.leaderboard.is_some() {
        tracing::info!(
            runs = report.runs,
            failed = report.failed_runs,
            activations = report.activations,
            scored = report.leaderboard.is_some(),
            "step done"
        );
    }
}

/// Stores a batch's events and resolutions; the next step runs and scores them. Refused rows are
/// logged and skipped.
async fn ingest(daemon: &Daemon, batch: Batch) {
    for rejected in &batch.rejected {
        tracing::warn!(%rejected, "malformed row skipped");
    }
    for event in &batch.events {
        if let Err(error) = daemon.ingest_event(event).await {
            tracing::warn!(error = &error as &dyn std::error::Error, "event skipped");
        }
    }
    for resolution in &batch.resolutions {
        if let Err(error) = daemon.ingest_resolution(resolution).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "resolution skipped"
            );
        }
    }
}

async fn serve_api(listener: tokio::net::TcpListener, store: Store) {
    if let Err(error) = axum::serve(listener, crate::api::router(store)).await {
        tracing::error!(
            error = &error as &dyn std::error::Error,
            "the HTTP API stopped"
        );
    }
}
