//! The live validator: `sooth validator run`, `sooth validator add-agent` and `sooth validator
//! add-miner`.
//!
//! This module owns the wiring of a live daemon from its [`ValidatorConfig`]: the store and
//! components in the data directory, the validator's key (created on first start; its public
//! half is the validator's hotkey, which miners sign for), the weights file, the HTTP API with
//! the upload desk, the verification queue's worker, miners' linked keys (sealed with the key
//! file of `[linked_keys]`, handed to the gateway at start and as they are linked, taken back
//! after activations dropped them), and the loop that polls the sources and steps the daemon
//! on the real clock: at every poll and at every midnight (activation). The gateway its agents
//! call, and the sink that hands it miners' keys, are the caller's (the command line starts
//! one in-process or points at a running one), so that the validator never links the gateway.
//! It must not hold rules of its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::TimeDelta;
use ed25519_dalek::SigningKey;
use sooth_protocol::{Hotkey, HotkeyError, HotkeyScheme, KeyFileError, load_or_create_signing_key};
use sooth_runner::{Gateway, Runner, ScriptedGateway};
use thiserror::Error;

use crate::activation::next_midnight_after;
use crate::backtest::STORE_FILE;
use crate::clock::{Clock, SystemClock};
use crate::config::ValidatorConfig;
use crate::daemon::{Daemon, DaemonError, DaemonSettings, StepReport};
use crate::intake::{Intake, IntakeError};
use crate::linked_keys::{KeySealer, LinkedKeySink, MinerKeys};
use crate::metrics::ValidatorMetrics;
use crate::registration::{RegistrationDecision, RegistrationRules};
use crate::run_tokens::SignedRunTokens;
use crate::sandbox::{RunTokens, SandboxExecutor};
use crate::sources::Batch;
use crate::store::{Store, StoreOptions, UploadRecord, UploadedBy};
use crate::uploads::{DeskError, DeskSettings, UploadDesk};
use crate::verification::{
    LiveCheckSettings, PlannedBenchmark, ProbeSet, ProbeSetError, VerificationPlan,
    VerificationSettings, Verified, Verifier, check_active_versions,
};
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
    /// The key file that seals miners' linked keys cannot be read or created.
    #[error("the key file of miners' linked keys ([linked_keys] key_file)")]
    LinkedKeysKey(#[source] KeyFileError),
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
    /// A step of the daemon panicked (a bug); the validator stops rather than go on half-way.
    #[error("a step of the daemon failed")]
    Step(#[source] tokio::task::JoinError),
    /// The probe set cannot be loaded.
    #[error("the verification's probe set")]
    ProbeSet(#[from] ProbeSetError),
    /// A benchmark agent's component cannot be read.
    #[error("cannot read the benchmark agent {path}")]
    Benchmark {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A benchmark agent's component does not load in the sandbox.
    #[error("the benchmark agent {name} does not load")]
    BenchmarkLoad {
        /// Its entry name.
        name: String,
        /// Why.
        source: crate::sandbox::AdmitError,
    },
    /// An upload or a registration was refused.
    #[error(transparent)]
    Desk(#[from] DeskError),
    /// A hotkey given by the operator is not one.
    #[error("{hotkey:?} is not a hotkey")]
    Hotkey {
        /// What was given.
        hotkey: String,
        /// Why it is not one.
        source: HotkeyError,
    },
    /// The store failed while verifying an added agent.
    #[error("the verification queue")]
    Queue(#[source] crate::store::StoreError),
}

/// What [`add_agent`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedAgent {
    /// The version's hash.
    pub hash: String,
    /// The registration made for the miner, if it was not registered yet.
    pub registration: Option<RegistrationDecision>,
    /// The version as it stands after verification (or while a running validator verifies
    /// it).
    pub version: UploadRecord,
}

/// The parts of a live validator, opened from its configuration.
struct Parts {
    daemon: Arc<Daemon>,
    store: Store,
    verifier: Arc<Verifier>,
    desk: Arc<UploadDesk>,
    miner_keys: Option<Arc<MinerKeys>>,
    metrics: Arc<ValidatorMetrics>,
}

/// The validator's hotkey (the public half of its key): what miners sign their requests for.
#[must_use]
pub fn validator_hotkey(key: &SigningKey) -> Hotkey {
    Hotkey::from_public_bytes(HotkeyScheme::Ed25519, key.verifying_key().to_bytes())
        .expect("an ed25519 verifying key is a valid ed25519 hotkey")
}

fn verification_settings(config: &ValidatorConfig) -> VerificationSettings {
    VerificationSettings {
        max_attempts: config.verification.max_attempts,
        lease: TimeDelta::seconds(i64::try_from(config.verification.lease_secs).unwrap_or(120)),
        max_probe_failures: config.verification.max_probe_failures,
        concurrency: config.scheduling.max_concurrent_runs,
        originality: config.verification.originality.clone(),
    }
}

fn settings(config: &ValidatorConfig) -> DaemonSettings {
    DaemonSettings {
        max_concurrent_runs: config.scheduling.max_concurrent_runs,
        registration: RegistrationRules {
            slots: config.competition.slots,
            immunity: TimeDelta::days(i64::from(config.competition.immunity_days)),
        },
        scoring_window: config.verification.live_window,
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

/// The store the configuration names: PostgreSQL at `database_url`, or the SQLite file in the
/// data directory.
///
/// # Errors
///
/// [`ServiceError::Daemon`] wrapping the store's error when it cannot be opened or reached.
pub async fn open_store(config: &ValidatorConfig) -> Result<Store, ServiceError> {
    let store = match &config.database_url {
        Some(url) => Store::connect(url, &StoreOptions::default()).await,
        None => Store::open(&config.data_dir.join(STORE_FILE)).await,
    };
    Ok(store.map_err(DaemonError::from)?)
}

async fn open(
    config: &ValidatorConfig,
    runner: Runner,
    key: SigningKey,
    gateway: Arc<dyn Gateway>,
    linked_keys: Option<Arc<dyn LinkedKeySink>>,
) -> Result<Parts, ServiceError> {
    let data_dir_error = |source| ServiceError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(data_dir_error)?;
    let store = open_store(config).await?;
    let hotkey = validator_hotkey(&key);
    let sandbox_version = runner.sandbox_version();
    let tokens: Option<Arc<dyn RunTokens>> = Some(Arc::new(SignedRunTokens::new(
        key,
        BTreeMap::from([("*".to_owned(), config.gateway.run_cap_usd)]),
    )));
    let executor = Arc::new(
        SandboxExecutor::new(runner, config.data_dir.join("agents"), gateway, tokens)
            .map_err(data_dir_error)?,
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let metrics = Arc::new(ValidatorMetrics::new());
    let daemon = Daemon::new(
        store.clone(),
        Arc::clone(&clock),
        executor.clone(),
        Arc::new(JsonFileWeights::new(
            config.data_dir.join(&config.weights.file),
        )),
        settings(config),
    )?
    .with_metrics(Arc::clone(&metrics));
    let daemon = Arc::new(if config.scheduling.workers {
        daemon.with_workers(executor.components().clone())
    } else {
        daemon
    });
    let probe = match &config.verification.probe_file {
        Some(path) => ProbeSet::load(path, config.verification.probe_events)?,
        None => ProbeSet::default(),
    };
    let mut benchmarks = Vec::with_capacity(config.benchmarks.agents.len());
    let mut planned = Vec::with_capacity(config.benchmarks.agents.len());
    for (name, path) in config.benchmarks.named() {
        let bytes = std::fs::read(path).map_err(|source| ServiceError::Benchmark {
            path: path.display().to_string(),
            source,
        })?;
        let hash = executor
            .admit(&bytes)
            .await
            .map_err(|source| ServiceError::BenchmarkLoad {
                name: name.clone(),
                source,
            })?;
        daemon.set_benchmark(&name, &hash).await?;
        if config.scheduling.workers {
            // Where the workers fetch it to verify by the plan.
            store
                .put_component(&hash, &bytes)
                .await
                .map_err(DaemonError::from)?;
        }
        planned.push(PlannedBenchmark {
            name: name.clone(),
            hash,
        });
        benchmarks.push((name, bytes));
    }
    if config.scheduling.workers {
        VerificationPlan::new(&verification_settings(config), &probe, planned)
            .publish(&store, &sandbox_version)
            .await
            .map_err(DaemonError::from)?;
    }
    let verifier = Arc::new(
        Verifier::new(
            store.clone(),
            Arc::clone(&executor),
            clock,
            probe,
            verification_settings(config),
        )
        .with_benchmarks(benchmarks)
        .with_metrics(Arc::clone(&metrics)),
    );
    let miner_keys = match linked_keys {
        Some(sink) => {
            let sealer =
                KeySealer::load_or_create(&config.data_dir.join(&config.linked_keys.key_file))
                    .map_err(ServiceError::LinkedKeysKey)?;
            Some(Arc::new(MinerKeys::new(store.clone(), sealer, sink)))
        }
        None => None,
    };
    let desk = UploadDesk::new(
        &hotkey,
        config.uploads.schemes.clone(),
        std::time::Duration::from_secs(config.uploads.signature_window_secs),
        executor.components().clone(),
        Arc::clone(&daemon),
        // With runner workers, nothing in this process verifies to be woken.
        (!config.scheduling.workers).then(|| Arc::clone(&verifier)),
        DeskSettings {
            max_bytes: config.uploads.max_bytes,
            min_interval: TimeDelta::hours(i64::from(config.uploads.min_interval_hours)),
            open_registration: config.registration.open,
            registrations_per_hour: config.registration.max_per_hour,
        },
    );
    let desk = if config.scheduling.workers {
        desk.for_workers()
    } else {
        desk
    };
    let desk = Arc::new(match &miner_keys {
        Some(keys) => desk.with_miner_keys(Arc::clone(keys)),
        None => desk,
    });
    Ok(Parts {
        daemon,
        store,
        verifier,
        desk,
        miner_keys,
        metrics,
    })
}

/// Adds a version of `hotkey`'s agent from the component `bytes`, now, registering the miner
/// first if it is not registered, through the verification queue as a miner's upload goes
/// (without the upload rate): this process verifies what is queued, this version included,
/// unless a running validator holds it. A verified version becomes active at the next
/// midnight. Works while the daemon runs (the store is shared safely). Probe runs reach
/// outside services through `gateway`, with tokens signed by `key`.
///
/// # Errors
///
/// [`ServiceError::Hotkey`] for a hotkey that is not one, [`ServiceError::Desk`] when the
/// bytes are not a component or the miner already has them,
/// [`ServiceError::Daemon`] when the registration is refused or the store fails,
/// [`ServiceError::Queue`] when the queue cannot be worked.
pub async fn add_agent(
    config: &ValidatorConfig,
    runner: Runner,
    key: SigningKey,
    gateway: Arc<dyn Gateway>,
    hotkey: &str,
    bytes: &[u8],
) -> Result<AddedAgent, ServiceError> {
    let hotkey = Hotkey::parse(hotkey)
        .map_err(|source| ServiceError::Hotkey {
            hotkey: hotkey.to_owned(),
            source,
        })?
        .to_string();
    let hotkey = hotkey.as_str();
    let parts = open(config, runner, key, gateway, None).await?;
    // The bytes are looked at before anyone is registered for them: a refused agent leaves no
    // miner behind (nor a miner deregistered to make room for it).
    parts.desk.check_bytes(bytes)?;
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
    let accepted = parts
        .desk
        .accept_upload(hotkey, bytes, UploadedBy::Operator)
        .await?;
    let version = loop {
        let record = parts
            .store
            .upload(accepted.version)
            .await
            .map_err(ServiceError::Queue)?
            .ok_or_else(|| {
                ServiceError::Queue(crate::store::StoreError::Corrupt(format!(
                    "version {} vanished from the queue",
                    accepted.version
                )))
            })?;
        let waiting = record.status == crate::store::VersionStatus::Pending;
        // With runner workers, they verify it: this process runs no agent.
        if !waiting || config.scheduling.workers {
            break record;
        }
        match parts
            .verifier
            .verify_next()
            .await
            .map_err(ServiceError::Queue)?
        {
            Some(Verified::Decided { .. } | Verified::AttemptFailed { .. }) => {}
            // Held by a running validator (or nothing left to claim): it decides.
            Some(Verified::LeaseLost { .. }) | None => break record,
        }
    };
    parts.store.close().await;
    Ok(AddedAgent {
        hash: accepted.hash,
        registration,
        version,
    })
}

/// Registers the miner `hotkey` (an ed25519 public key in hex, or an sr25519 SS58 address) now,
/// under the slot and immunity rules.
///
/// # Errors
///
/// [`ServiceError::Hotkey`] for text that is not a hotkey, [`ServiceError::Daemon`] when the
/// registration is refused or the store fails.
pub async fn add_miner(
    config: &ValidatorConfig,
    runner: Runner,
    hotkey: &str,
) -> Result<RegistrationDecision, ServiceError> {
    let hotkey = Hotkey::parse(hotkey).map_err(|source| ServiceError::Hotkey {
        hotkey: hotkey.to_owned(),
        source,
    })?;
    let key = validator_key(config)?;
    let parts = open(
        config,
        runner,
        key,
        Arc::new(ScriptedGateway::empty()),
        None,
    )
    .await?;
    let decision = parts.daemon.register_miner(&hotkey.to_string()).await;
    parts.store.close().await;
    Ok(decision?)
}

/// Runs the live validator until `shutdown` completes, as [`run_with_linked_keys`] without a
/// sink for miners' keys: their linking is refused (`linked_keys_closed`).
///
/// # Errors
///
/// As [`run_with_linked_keys`].
pub async fn run(
    config: ValidatorConfig,
    runner: Runner,
    key: SigningKey,
    gateway: Arc<dyn Gateway>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServiceError> {
    run_with_linked_keys(config, runner, key, gateway, None, shutdown).await
}

/// Runs the live validator until `shutdown` completes: polls the sources every
/// `sources.poll_secs`, steps the daemon after each poll and at each midnight, and serves the
/// HTTP API. Runs get tokens signed with `key` (the one [`validator_key`] gives), and reach
/// outside services through `gateway`, which must trust its public half. Miners' linked keys
/// are handed to `linked_keys` (every kept key at the start, each as it is linked) and taken
/// back from it after the activation of a newer version dropped them; without a sink, miners
/// cannot link keys.
///
/// # Errors
///
/// [`ServiceError`] when something cannot be opened at the start (the key file of
/// `[linked_keys]` among them), or the store fails later.
pub async fn run_with_linked_keys(
    config: ValidatorConfig,
    runner: Runner,
    key: SigningKey,
    gateway: Arc<dyn Gateway>,
    linked_keys: Option<Arc<dyn LinkedKeySink>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServiceError> {
    let parts = open(&config, runner, key, gateway, linked_keys).await?;
    sync_linked_keys(parts.miner_keys.as_deref()).await;
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .map_err(|source| ServiceError::Api {
            listen: config.api.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %config.api.listen, "HTTP API listening");
    let api = tokio::spawn(serve_api(
        listener,
        Arc::clone(&parts.desk),
        config.uploads.max_in_flight,
        Arc::clone(&parts.metrics),
    ));
    // A restart finishes what was queued: the worker claims whatever waits, and items held
    // by the process that stopped are claimed again when their leases end. With runner
    // workers, they verify: the scheduler runs no agent.
    let verifying = (!config.scheduling.workers)
        .then(|| tokio::spawn(Arc::clone(&parts.verifier).work(std::future::pending())));

    let mut intake = Intake::open(&config.sources, &parts.store).await?;
    let live_check = LiveCheckSettings {
        window: config.verification.live_window,
        originality: config.verification.originality.clone(),
        concordance: config.verification.concordance.clone(),
    };
    let mut live_checked_on = None;
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
        release_dropped_keys(parts.miner_keys.as_deref()).await;
        let today = clock.now().date_naive();
        if live_checked_on != Some(today) {
            live_checked_on = Some(today);
            check_live(&parts, &live_check, clock.now()).await;
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
    if let Some(verifying) = verifying {
        verifying.abort();
    }
    parts.store.close().await;
    tracing::info!("validator stopped");
    result
}

/// The daily integrity check of active versions on their live events; a change in who may
/// earn weight is scored at once.
async fn check_live(
    parts: &Parts,
    settings: &LiveCheckSettings,
    now: chrono::DateTime<chrono::Utc>,
) {
    match check_active_versions(&parts.store, parts.verifier.probe(), settings, now).await {
        Ok(report) => {
            tracing::info!(
                versions = report.versions,
                verdicts = report.verdicts,
                failed = report.failed.len(),
                "live integrity check done"
            );
            parts.daemon.request_scoring();
        }
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "live integrity check failed; it runs again tomorrow"
        ),
    }
}

/// Hands every kept key to the gateway as the validator starts (and takes back those dropped
/// while it was stopped); what fails is logged, and linking goes on.
async fn sync_linked_keys(keys: Option<&MinerKeys>) {
    let Some(keys) = keys else {
        tracing::warn!(
            "miners' own service keys cannot be handed to this validator's gateway: \
             POST /v1/services/{{service}}/key answers linked_keys_closed (an operator links \
             keys on the gateway's machine with `sooth proxy link-key`)"
        );
        return;
    };
    match keys.sync().await {
        Ok(report) => tracing::info!(
            handed = report.handed,
            refused = report.refused,
            unopened = report.unopened,
            released = report.released,
            "miners' linked keys handed to the gateway"
        ),
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "miners' linked keys could not be read to hand them to the gateway; they go over as \
             miners link them again, or at the next start"
        ),
    }
}

/// Takes back from the gateway the keys activations dropped (a new version activated); what
/// is left is tried again at the next poll.
async fn release_dropped_keys(keys: Option<&MinerKeys>) {
    if let Some(keys) = keys
        && let Err(error) = keys.release_dropped().await
    {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "dropped linked keys could not be taken back from the gateway yet; trying at the next poll"
        );
    }
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

async fn serve_api(
    listener: tokio::net::TcpListener,
    desk: Arc<UploadDesk>,
    max_in_flight: usize,
    metrics: Arc<ValidatorMetrics>,
) {
    let store = desk.store().clone();
    let router = crate::api::router_with_uploads(desk, max_in_flight)
        .merge(crate::metrics::router(store, metrics));
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(
            error = &error as &dyn std::error::Error,
            "the HTTP API stopped"
        );
    }
}
