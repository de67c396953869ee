//! The wasmtime engine: one per process, pooling allocator sized for the
//! configured concurrency, epoch interruption driven by a ticker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::RunnerConfig;

/// Core instances a component may hold; componentize-py output needs about
/// a dozen (interpreter, libc, adapters, shims).
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Linear memories a component may hold.
const MEMORIES_PER_COMPONENT: u32 = 4;
/// Tables a component may hold.
const TABLES_PER_COMPONENT: u32 = 16;
/// Elements per table; CPython's function table needs tens of thousands.
const TABLE_ELEMENTS: usize = 200_000;
/// Wasm stack a guest may use before "call stack exhausted".
const MAX_WASM_STACK: usize = 1 << 20;

/// Settings that shape compiled code. The compile worker and the running
/// engine must agree on every one of them, or artifacts will not load.
pub(crate) fn compilation_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(MAX_WASM_STACK + (1 << 20));
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// An engine that only compiles (the compile worker's).
///
/// # Errors
///
/// When wasmtime rejects the configuration.
pub(crate) fn compile_engine() -> wasmtime::Result<Engine> {
    Engine::new(&compilation_config())
}

/// The engine runs are made on.
///
/// # Errors
///
/// When wasmtime rejects the configuration, e.g. when the pool cannot be
/// reserved.
pub(crate) fn run_engine(runner: &RunnerConfig) -> wasmtime::Result<Engine> {
    let runs = runner.max_concurrent_runs;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(runs)
        .total_core_instances(
            runs.saturating_mul(CORE_INSTANCES_PER_COMPONENT / 4)
                .max(CORE_INSTANCES_PER_COMPONENT),
        )
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(runs.saturating_mul(2))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_memories_per_module(1)
        .total_tables(runs.saturating_mul(4).max(TABLES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(runs)
        .max_memory_size(usize::try_from(runner.memory_limit_bytes).unwrap_or(usize::MAX));
    let mut config = compilation_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances the engine's epoch every tick until dropped, so that a guest's
/// deadline callback runs at least once per tick.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sooth-epoch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread wakes within one tick; its panic (none expected)
            // is not ours to propagate from a destructor.
            let _ = thread.join();
        }
    }
}
