//! The [`Runner`]: loads agents and runs them, one fresh store per run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sooth_protocol::{AgentEvent, EventError};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::agent::{Agent, LoadError, check_component_header, content_hash};
use crate::cache::CompileCache;
use crate::clock::{EventWallClock, RunMonotonicClock, RunSeeds};
use crate::compile::compile;
use crate::config::{ConfigError, RunnerConfig};
use crate::engine::{EpochTicker, run_engine};
use crate::exports::predict_mismatch;
use crate::gateway::{Gateway, RunContext};
use crate::host::{Forecaster, ForecasterPre, HostState, WitEvent, WitForecast};
use crate::imports::first_forbidden;
use crate::limits::RunLimiter;
use crate::logs::LogSink;
use crate::outcome::{RunOutcome, RunReport, clip_probability};
use crate::truncate::{MAX_MESSAGE_BYTES, truncate};
use crate::usage::CallLog;

/// Longest reasoning kept with a forecast, in bytes.
const MAX_REASONING_BYTES: usize = 2048;
/// Host-side WASI resources (streams, pollables...) one run may hold at
/// once. Each lives in host memory and a guest can make them in a loop
/// without dropping them; ordinary programs hold a handful.
const MAX_HOST_RESOURCES: usize = 10_000;
/// Component-model handles one run may hold at once, for the same reason.
const MAX_COMPONENT_HANDLES: usize = 10_000;

/// The runner could not be set up, or was asked something impossible.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// wasmtime refused to start.
    #[error("cannot start the wasm engine")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The compile cache directory is unusable.
    #[error("cannot use the compile cache at {path}")]
    Cache {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The event cannot be handed to an agent.
    #[error(transparent)]
    Event(#[from] EventError),
}

/// How one run is made.
#[derive(Clone)]
pub struct RunSpec {
    /// Identifier of the run, passed to the gateway.
    pub run_id: String,
    /// The miner the agent belongs to, when known.
    pub miner: Option<String>,
    /// Where the agent's gateway calls go.
    pub gateway: Arc<dyn Gateway>,
    /// A shorter limit than the configured one (for quick local checks);
    /// never a longer one.
    pub timeout: Option<Duration>,
    /// The run token for the gateway proxy, when the gateway needs one.
    pub token: Option<String>,
}

impl RunSpec {
    /// A run with the configured limit and no miner.
    pub fn new(run_id: impl Into<String>, gateway: Arc<dyn Gateway>) -> Self {
        Self {
            run_id: run_id.into(),
            miner: None,
            gateway,
            timeout: None,
            token: None,
        }
    }
}

/// Marks the epoch callback's interruption so it reads as a timeout.
#[derive(Debug)]
struct DeadlineReached;

impl std::fmt::Display for DeadlineReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("run deadline reached")
    }
}

impl std::error::Error for DeadlineReached {}

/// Runs agents: one per process is the intent (it owns the engine, its
/// instance pool and the epoch ticker). Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    config: RunnerConfig,
    engine: Engine,
    linker: Linker<HostState>,
    slots: Semaphore,
    /// Compile slots: a compile holds one from before the worker starts
    /// until its artifact is back.
    compiles: Semaphore,
    cache: Option<CompileCache>,
    _ticker: EpochTicker,
}

impl Runner {
    /// Start an engine with `config`.
    ///
    /// # Errors
    ///
    /// [`RunnerError`] when the configuration is invalid, the engine cannot
    /// reserve its pool, or the cache directory cannot be used.
    pub fn new(config: RunnerConfig) -> Result<Self, RunnerError> {
        config.validate()?;
        let engine = run_engine(&config).map_err(|e| RunnerError::Engine(e.into()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RunnerError::Engine(e.into()))?;
        Forecaster::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| RunnerError::Engine(e.into()))?;
        let cache = match &config.cache_dir {
            Some(dir) => {
                Some(
                    CompileCache::open(dir, &engine).map_err(|source| RunnerError::Cache {
                        path: dir.display().to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let ticker = EpochTicker::start(&engine, config.epoch_tick)
            .map_err(|e| RunnerError::Engine(e.into()))?;
        let slots = Semaphore::new(config.max_concurrent_runs as usize);
        let compiles = Semaphore::new(config.max_concurrent_compiles as usize);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                engine,
                linker,
                slots,
                compiles,
                cache,
                _ticker: ticker,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    /// What a run's outcome depends on besides the agent and the event: this crate's release,
    /// the engine's code generation (wasmtime's version and settings) and the limits a run
    /// meets. Hosts that share runs must agree on it, or the same run would mean different
    /// things on different hosts.
    #[must_use]
    pub fn sandbox_version(&self) -> String {
        let config = &self.inner.config;
        let fingerprint = crate::cache::engine_fingerprint(&self.inner.engine);
        let engine: String = fingerprint[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!(
            "sooth-runner/{} engine/{engine} timeout-ms/{} memory/{} logs/{} component/{} \
             gateway-calls/{}",
            env!("CARGO_PKG_VERSION"),
            config.timeout.as_millis(),
            config.memory_limit_bytes,
            config.log_limit_bytes,
            config.max_component_bytes,
            config.max_gateway_calls,
        )
    }

    /// Check, compile (or fetch from the cache) and link a component.
    ///
    /// # Errors
    ///
    /// [`LoadError`] saying what is wrong with the bytes: too large, not
    /// wasm, a core module, invalid, too costly to compile, importing outside
    /// the contract, or not exporting the agent interface.
    pub async fn load(&self, bytes: &[u8]) -> Result<Agent, LoadError> {
        let inner = &self.inner;
        check_component_header(bytes, inner.config.max_component_bytes)?;
        let hash = content_hash(bytes);
        let component = self.compiled(&hash, bytes).await?;
        if let Some(name) = first_forbidden(&inner.engine, &component) {
            return Err(LoadError::ForbiddenImport(name));
        }
        if let Some(reason) = predict_mismatch(&inner.engine, &component) {
            return Err(LoadError::MissingExport(reason));
        }
        let instance_pre = inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = ForecasterPre::new(instance_pre)
            .map_err(|e| LoadError::MissingExport(format!("{e:#}")))?;
        Ok(Agent::new(hash, bytes.len(), pre))
    }

    async fn compiled(&self, hash: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let inner = &self.inner;
        if let Some(component) = self.cached(hash) {
            return Ok(component);
        }
        // Every compile in flight may hold up to its memory cap; the slots
        // bound their sum however many uploads arrive at once. The semaphore
        // is never closed, so acquiring only waits.
        let waiting = Instant::now();
        let _slot = inner
            .compiles
            .acquire()
            .await
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        tracing::debug!(%hash, waited = ?waiting.elapsed(), "compile slot taken");
        // The same bytes may have been compiled while this load waited.
        if let Some(component) = self.cached(hash) {
            return Ok(component);
        }
        let artifact = compile(
            &inner.config.compile_isolation,
            Arc::from(bytes),
            inner.config.compile_timeout,
            inner.config.compile_memory_limit_bytes,
        )
        .await?;
        let component = deserialize(&inner.engine, &artifact)?;
        if let Some(cache) = &inner.cache
            && let Err(error) = cache.store(hash, &artifact)
        {
            tracing::warn!(%hash, %error, "cannot write the compile cache");
        }
        Ok(component)
    }

    /// The compiled component of `hash` from the cache, if it holds a
    /// usable one.
    fn cached(&self, hash: &str) -> Option<Component> {
        let inner = &self.inner;
        let artifact = inner.cache.as_ref()?.load(hash)?;
        match deserialize_file(&inner.engine, &artifact) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(%hash, %error, "cached artifact does not load; recompiling");
                None
            }
        }
    }

    /// Run `agent` on `event` once. Every failure of the agent is in the
    /// report's outcome; this never panics on anything the agent does.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Event`] when the event itself is invalid (nothing ran).
    pub async fn run(
        &self,
        agent: &Agent,
        event: &AgentEvent,
        spec: &RunSpec,
    ) -> Result<RunReport, RunnerError> {
        event.validate()?;
        let inner = &self.inner;
        // The semaphore is never closed, so acquiring only waits.
        let _slot = inner
            .slots
            .acquire()
            .await
            .map_err(|e| RunnerError::Engine(e.into()))?;
        let limit = spec
            .timeout
            .map_or(inner.config.timeout, |t| t.min(inner.config.timeout));
        let began = Instant::now();
        let deadline = began + limit;
        let logs = LogSink::new(inner.config.log_limit_bytes);
        let seeds = RunSeeds::new(&event.id, agent.hash());
        let wasi = WasiCtxBuilder::new()
            .stdout(logs.clone())
            .stderr(logs.clone())
            .wall_clock(EventWallClock::new(event.created_at, began))
            .monotonic_clock(RunMonotonicClock::new(began))
            .secure_random(seeds.secure())
            .insecure_random(seeds.insecure())
            .insecure_random_seed(seeds.insecure_seed())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_HOST_RESOURCES);
                table
            },
            limiter: RunLimiter::new(inner.config.memory_limit_bytes),
            logs: logs.clone(),
            gateway: spec.gateway.clone(),
            run: RunContext {
                run_id: spec.run_id.clone(),
                event_id: event.id.clone(),
                agent_hash: agent.hash().to_owned(),
                miner: spec.miner.clone(),
                deadline,
                token: spec.token.clone(),
            },
            calls: CallLog::new(
                inner.config.max_gateway_calls,
                inner.config.max_recorded_calls,
            ),
        };
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_max_component_handles(MAX_COMPONENT_HANDLES);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineReached))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let wit_event = to_wit(event);
        let result =
            tokio::time::timeout_at(deadline.into(), call(agent.pre(), &mut store, &wit_event))
                .await;
        let duration = began.elapsed();
        let memory_refused = store.data().limiter.memory_refused;
        let outcome = match result {
            Err(_) => RunOutcome::Timeout {
                limit_ms: millis(limit),
            },
            Ok(result) => classify(
                result,
                &event.id,
                limit,
                memory_refused,
                inner.config.memory_limit_bytes,
            ),
        };
        let gateway = store.data_mut().calls.take();
        drop(store);
        Ok(RunReport {
            outcome,
            duration,
            logs: logs.finish(),
            gateway,
        })
    }
}

#[allow(unsafe_code)]
fn deserialize_file(engine: &Engine, artifact: &std::path::Path) -> Result<Component, LoadError> {
    // SAFETY: the cache checked the file's keyed tag just now: it is what
    // our own compiler produced for this engine's configuration.
    unsafe { Component::deserialize_file(engine, artifact) }
        .map_err(|e| LoadError::Engine(format!("cannot load the compiled component: {e:#}")))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> Result<Component, LoadError> {
    // SAFETY: `artifact` is what our own compiler produced just now for this
    // engine's configuration.
    unsafe { Component::deserialize(engine, artifact) }
        // So what stops it loading is the component's shape, measured
        // against the instance pool's limits.
        .map_err(|e| LoadError::OverSandboxLimits(format!("{e:#}")))
}

enum Stage {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

async fn call(
    pre: &ForecasterPre<HostState>,
    store: &mut Store<HostState>,
    event: &WitEvent,
) -> Result<Result<WitForecast, String>, Stage> {
    let forecaster = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(Stage::Instantiate)?;
    forecaster
        .sooth_agent_agent()
        .call_predict(&mut *store, event)
        .await
        .map_err(Stage::Call)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn to_wit(event: &AgentEvent) -> WitEvent {
    WitEvent {
        id: event.id.clone(),
        kind: event.kind.clone(),
        title: event.title.clone(),
        description: event.description.clone(),
        created_at: event.created_at,
        cutoff: event.cutoff,
        metadata: serde_json::Value::Object(event.metadata.clone()).to_string(),
    }
}

fn describe(error: &wasmtime::Error) -> String {
    // The first line carries wasmtime's summary; the trap code (if any) is
    // the most useful detail for a miner.
    let text = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("{trap}"),
        None => format!("{error:#}"),
    };
    truncate(&text, MAX_MESSAGE_BYTES).to_owned()
}

fn classify(
    result: Result<Result<WitForecast, String>, Stage>,
    event_id: &str,
    limit: Duration,
    memory_refused: bool,
    memory_limit: u64,
) -> RunOutcome {
    let failed = |error: &wasmtime::Error| error.downcast_ref::<DeadlineReached>().is_some();
    match result {
        Err(Stage::Instantiate(error) | Stage::Call(error)) if failed(&error) => {
            RunOutcome::Timeout {
                limit_ms: millis(limit),
            }
        }
        Err(_) | Ok(Err(_)) if memory_refused => RunOutcome::MemoryExceeded {
            limit_bytes: memory_limit,
        },
        Err(Stage::Instantiate(error)) => RunOutcome::InstantiationFailure {
            reason: describe(&error),
        },
        Err(Stage::Call(error)) => RunOutcome::Trap {
            message: describe(&error),
        },
        Ok(Err(message)) => RunOutcome::InvalidOutput {
            reason: format!(
                "the agent returned an error: {}",
                truncate(&message, MAX_REASONING_BYTES)
            ),
        },
        Ok(Ok(forecast)) => validate(forecast, event_id),
    }
}

fn validate(forecast: WitForecast, event_id: &str) -> RunOutcome {
    if forecast.event_id != event_id {
        return RunOutcome::InvalidOutput {
            reason: format!(
                "forecast is for event {:?}, not {event_id:?}",
                truncate(&forecast.event_id, 256)
            ),
        };
    }
    match clip_probability(forecast.probability) {
        None => RunOutcome::InvalidOutput {
            reason: format!(
                "probability {} is not a finite number",
                forecast.probability
            ),
        },
        Some(probability) => RunOutcome::Prediction {
            raw: forecast.probability,
            probability,
            reasoning: forecast
                .reasoning
                .map(|r| truncate(&r, MAX_REASONING_BYTES).to_owned()),
        },
    }
}
