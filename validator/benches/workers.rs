//! The scheduler and its runner workers on PostgreSQL (the machine's server, a schema of the
//! bench's own), as shipped: the daemon hands runs to workers through the store, workers claim
//! them (`FOR UPDATE SKIP LOCKED`, leases), run them in the sandbox and record them.
//!
//! 1. Claim overhead: one light run (the market baseline, no gateway call) per step, 200 steps,
//!    through the daemon running it in process on the same PostgreSQL store, then through one
//!    worker, three rounds alternately; the difference per run after the first few steps is
//!    what handing a run to a worker costs (target <= 2 ms). The first steps, where a fresh
//!    worker fetches and loads the component once, are reported apart, and so is what one
//!    commit costs on the server.
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

/// The steps of a replay left out of the claim overhead: the first run of a component on a
/// fresh worker fetches it from the store and loads it (once per component and worker; in
/// process it was loaded when the agent entered).
const WARM_UP: usize = 5;

/// How a replay went.
struct Replayed {
    /// Its seconds in all.
    seconds: f64,
    /// Its seconds after the first [`WARM_UP`] steps.
    warm_seconds: f64,
    runs: usize,
}

/// A simulation on a fresh schema with `miners` miners running `agent`; with `workers` workers
/// when `Some`. Returns how the replay of `events` went.
async fn replay(
    agent: &[u8],
    miners: usize,
    events: Vec<Event>,
    workers: Option<(usize, usize)>,
    slow: bool,
) -> Replayed {
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
    let mut warm = began;
    let done = simulation
        .replay(events, Vec::<Resolution>::new(), |progress| {
            if progress.done == WARM_UP {
                warm = Instant::now();
            }
        })
        .await
        .unwrap();
    let replayed = Replayed {
        seconds: began.elapsed().as_secs_f64(),
        warm_seconds: warm.elapsed().as_secs_f64(),
        runs: done.runs,
    };
    stop.notify_waiters();
    for handle in handles {
        handle.await.unwrap();
    }
    replayed
}

/// The median milliseconds of a one-row insert committed on its own on the bench's server,
/// waiting for the WAL to reach the disk (as the store's records do) and not.
async fn commit_latency() -> (f64, f64) {
    let schema = TestSchema::create().await;
    let pool = sqlx::PgPool::connect(schema.url()).await.unwrap();
    sqlx::query("CREATE TABLE commit_probe (x BIGINT)")
        .execute(&pool)
        .await
        .unwrap();
    let mut medians = Vec::new();
    for setting in ["on", "off"] {
        let mut connection = pool.acquire().await.unwrap();
        sqlx::query(&format!("SET synchronous_commit = {setting}"))
            .execute(&mut *connection)
            .await
            .unwrap();
        let mut times = Vec::new();
        for x in 0..200_i64 {
            let began = Instant::now();
            sqlx::query("INSERT INTO commit_probe VALUES ($1)")
                .bind(x)
                .execute(&mut *connection)
                .await
                .unwrap();
            times.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        medians.push(times[times.len() / 2]);
        // Not back in the pool with the setting changed.
        connection.detach();
    }
    pool.close().await;
    (medians[0], medians[1])
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
        // Alternately, so that what else the machine does weighs on both alike.
        const ROUNDS: usize = 3;
        let per_step = |seconds: f64, steps: usize| seconds * 1000.0 / steps as f64;
        let mut overheads = Vec::new();
        let mut cold = Vec::new();
        for round in 1..=ROUNDS {
            let in_process = replay(&light, 1, spaced(), None, false).await;
            let through_worker = replay(&light, 1, spaced(), Some((1, 1)), false).await;
            assert_eq!((in_process.runs, through_worker.runs), (STEPS, STEPS));
            let warm = |replayed: &Replayed| per_step(replayed.warm_seconds, STEPS - WARM_UP);
            let first = |replayed: &Replayed| {
                per_step(replayed.seconds - replayed.warm_seconds, WARM_UP) * WARM_UP as f64
            };
            let overhead = warm(&through_worker) - warm(&in_process);
            println!(
                "claim overhead, round {round}: {} steps of one light run each on PostgreSQL \
                 after the first {WARM_UP}: in process {:.2} ms a step, through a worker {:.2} \
                 ms a step: {overhead:+.2} ms a run",
                STEPS - WARM_UP,
                warm(&in_process),
                warm(&through_worker),
            );
            overheads.push(overhead);
            cold.push(first(&through_worker) - first(&in_process));
        }
        overheads.sort_by(f64::total_cmp);
        cold.sort_by(f64::total_cmp);
        println!(
            "claim overhead: median {:+.2} ms a run over {ROUNDS} rounds (target <= 2 ms); the \
             first {WARM_UP} steps, where a fresh worker fetches and loads the component: \
             {:+.1} ms in all",
            overheads[ROUNDS / 2],
            cold[ROUNDS / 2]
        );
        let (durable, relaxed) = commit_latency().await;
        println!(
            "one commit on this server (median of 200 one-row inserts): {durable:.2} ms waiting \
             for the disk (as the queueing and the record do), {relaxed:.2} ms without (as the \
             claim does)"
        );

        const PER_WORKER: usize = 500;
        for workers in 1..=3 {
            // Three seconds' worth of runs for the workers at 500 at once: 1,500 per worker.
            let miners = 50;
            let count = 30 * workers;
            let Replayed { seconds, runs, .. } = replay(
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
