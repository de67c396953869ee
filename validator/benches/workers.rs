//! The scheduler and its runner workers on PostgreSQL (the machine's server, a schema of the
//! bench's own), as shipped: the daemon hands runs to workers through the store, workers claim
//! them (`FOR UPDATE SKIP LOCKED`, leases), run them in the sandbox and record them.
//!
//! 1. Claim overhead: one light run (the market baseline, no gateway call) per step, 200 steps,
//!    through the daemon running it in process on the same PostgreSQL store, then through one
//!    worker; the difference per run is what handing a run to a worker costs (target <= 2 ms).
//! 2. Throughput: a gateway-bound agent (the LLM forecaster; each gateway call waits 1 s, as on
//!    a slow upstream) at 500 runs at once per worker, with 1, 2 and 3 workers. The workers
//!    share this process and its 2 cores (on separate hosts they would not).
//!
//! Run with `cargo bench -p sooth-validator --bench workers` (needs PostgreSQL:
//! `SOOTH_TEST_POSTGRES_URL`, by default the machine's own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use sooth_runner::{
    Gateway, GatewayAnswer, GatewayRequest, RunContext, Runner, RunnerConfig, ScriptedGateway,
};
use sooth_test_postgres::TestSchema;
use sooth_validator::store::{Store, StoreOptions};
use sooth_validator::worker::{Worker, WorkerSettings};
use sooth_validator::{
    DaemonSettings, Event, Resolution, SandboxExecutor, Simulation, start_instant,
};

/// Answers every call as the scripted gateway does (nothing configured: not found), after a
/// second: a slow upstream.
struct SlowUpstream(ScriptedGateway);

impl Gateway for SlowUpstream {
    fn handle<'a>(
        &'a self,
        run: &'a RunContext,
        request: GatewayRequest,
    ) -> BoxFuture<'a, GatewayAnswer> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.0.handle(run, request).await
        })
    }
}

fn start() -> DateTime<Utc> {
    "2026-05-01T00:00:00Z".parse().unwrap()
}

fn runner(concurrency: u32) -> Runner {
    Runner::new(RunnerConfig {
        max_concurrent_runs: concurrency.max(RunnerConfig::default().max_concurrent_runs),
        ..RunnerConfig::default()
    })
    .unwrap()
}

fn gateway(slow: bool) -> Arc<dyn Gateway> {
    if slow {
        Arc::new(SlowUpstream(ScriptedGateway::empty()))
    } else {
        Arc::new(ScriptedGateway::empty())
    }
}

/// `count` events created `spacing` apart, never resolved within the bench.
fn events(count: usize, spacing: TimeDelta) -> Vec<Event> {
    (0..count)
        .map(|i| {
            Event::new(
                format!("e{i:05}"),
                "Will it?",
                start() + spacing * i32::try_from(i).unwrap(),
            )
        })
        .collect()
}

/// Runs `workers` workers on `url` until `stop` is notified.
fn start_workers(
    runtime: &tokio::runtime::Handle,
    url: &str,
    workers: usize,
    concurrency: usize,
    slow: bool,
    stop: &Arc<tokio::sync::Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|index| {
            let url = url.to_owned();
            let stop = Arc::clone(stop);
            runtime.spawn(async move {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::connect(&url, &StoreOptions::default())
                    .await
                    .unwrap();
                let runner = runner(u32::try_from(concurrency).unwrap());
                let version = runner.sandbox_version();
                let executor = Arc::new(
                    SandboxExecutor::new(runner, dir.path().join("agents"), gateway(slow), None)
                        .unwrap(),
                );
                let worker = Worker::new(
                    store,
                    executor,
                    version,
                    WorkerSettings {
                        worker_id: format!("bench-{index}"),
                        host: "bench".into(),
                        concurrency,
                        lease: Duration::from_secs(60),
                        idle_poll: Duration::from_millis(200),
                    },
                );
                worker.run(stop.notified()).await.unwrap();
            })
        })
        .collect()
}

/// A simulation on a fresh schema with `miners` miners running `agent`; with `workers` workers
/// when `Some`. Returns the seconds the replay of `events` took and its runs.
async fn replay(
    agent: &[u8],
    miners: usize,
    events: Vec<Event>,
    workers: Option<(usize, usize)>,
    slow: bool,
) -> (f64, usize) {
    let schema = TestSchema::create().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(schema.url(), &StoreOptions::default())
        .await
        .unwrap();
    let runner = runner(500);
    let version = runner.sandbox_version();
    let mut simulation = Simulation::on_store(
        store,
        dir.path(),
        start_instant(&events).unwrap(),
        runner,
        gateway(slow),
        None,
        DaemonSettings {
            max_concurrent_runs: 500,
            ..DaemonSettings::default()
        },
    )
    .unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut handles = Vec::new();
    if let Some((count, concurrency)) = workers {
        simulation = simulation.with_workers(&version).await.unwrap();
        handles = start_workers(
            &tokio::runtime::Handle::current(),
            schema.url(),
            count,
            concurrency,
            slow,
            &stop,
        );
    }
    for miner in 0..miners {
        simulation
            .enter(&format!("miner-{miner:03}"), agent)
            .await
            .unwrap();
    }
    let began = Instant::now();
    let done = simulation
        .replay(events, Vec::<Resolution>::new(), |_| {})
        .await
        .unwrap();
    let seconds = began.elapsed().as_secs_f64();
    stop.notify_waiters();
    for handle in handles {
        handle.await.unwrap();
    }
    (seconds, done.runs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let light = std::fs::read(sooth_test_agents::market_baseline())?;
    let llm = std::fs::read(sooth_test_agents::llm_forecaster())?;
    runtime.block_on(async {
        const STEPS: usize = 200;
        let spaced = || events(STEPS, TimeDelta::minutes(1));
        // Warm the compile cache and the connections once.
        replay(
            &light,
            1,
            events(5, TimeDelta::minutes(1)),
            Some((1, 1)),
            false,
        )
        .await;
        let (in_process, runs) = replay(&light, 1, spaced(), None, false).await;
        assert_eq!(runs, STEPS);
        let (through_worker, runs) = replay(&light, 1, spaced(), Some((1, 1)), false).await;
        assert_eq!(runs, STEPS);
        let per_run = |seconds: f64| seconds * 1000.0 / STEPS as f64;
        println!(
            "claim overhead: {STEPS} steps of one light run each on PostgreSQL: in process \
             {:.2} ms a step, through a worker {:.2} ms a step: {:+.2} ms a run (target <= 2 ms)",
            per_run(in_process),
            per_run(through_worker),
            per_run(through_worker) - per_run(in_process)
        );

        const PER_WORKER: usize = 500;
        for workers in 1..=3 {
            // Three seconds' worth of runs for the workers at 500 at once: 1,500 per worker.
            let miners = 50;
            let count = 30 * workers;
            let (seconds, runs) = replay(
                &llm,
                miners,
                events(count, TimeDelta::zero()),
                Some((workers, PER_WORKER)),
                true,
            )
            .await;
            assert_eq!(runs, miners * count);
            println!(
                "gateway-bound runs (1 s upstream wait) with {workers} worker(s) at {PER_WORKER} \
                 at once each: {runs} runs in {seconds:.2} s = {:.0} runs/s",
                runs as f64 / seconds
            );
        }
    });
    Ok(())
}
