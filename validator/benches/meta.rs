//! Times the meta-model and the miners' contribution (MMC) for a day of 100 events x 256
//! miners (the target is <= 20 ms for both):
//!
//! - **computed**: the four pools of each of the day's 100 events (`meta::Pool`) and each
//!   miner's contribution over the day (`meta::contributions`), from their inputs as the store
//!   serves them: the target's figure;
//! - **read**: reading the day's 25,600 runs to pool from the store;
//! - **the daemon's pooling step**: the step that records the pools once the runs are in, as a
//!   validator runs it (the owed-runs query every step makes, the read, pooling, one write);
//! - **the leaderboard**: the whole leaderboard the API and the pages serve
//!   (`LeaderboardView::load`), MMC and reference rows included.
//!
//! The store is a database file with the default options, as a validator opens it. Run with
//! `cargo bench -p sooth-validator --bench meta`.

#[path = "common/random.rs"]
mod random;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sooth_validator::api::views::LeaderboardView;
use sooth_validator::meta::{Pool, contributions};
use sooth_validator::store::{NewRun, Store};
use sooth_validator::{
    Clock, Daemon, DaemonSettings, Event, ExecutedRun, Execution, Miner, NoWeightSetter, Outcome,
    Resolution, RunExecutor, RunJob, RunStatus, SimulatedClock,
};

use random::XorShift;

const MINERS: usize = 256;
const EVENTS: usize = 100;
const DAYS: usize = 7;

/// Never called: every run is recorded before the timed step.
struct NoRuns;

impl RunExecutor for NoRuns {
    fn execute(self: Arc<Self>, _job: RunJob) -> Execution {
        Box::pin(async { ExecutedRun::crash("the benchmark records its runs itself") })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut pools = Vec::new();
    let mut reads = Vec::new();
    let mut computed_pools = Vec::new();
    let mut computed = Vec::new();
    let mut mmc = Vec::new();
    let mut boards = Vec::new();
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    // A new day, with a store of its own, per sample: the pools of an event are recorded once.
    for _ in 0..DAYS {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("validator.sqlite")).await?;
        let start: DateTime<Utc> = "2026-03-01T10:00:00Z".parse()?;
        let clock = SimulatedClock::new(start);
        let daemon = Daemon::new(
            store.clone(),
            Arc::new(clock.clone()),
            Arc::new(NoRuns),
            Arc::new(NoWeightSetter),
            DaemonSettings::default(),
        )?;
        let hotkeys: Vec<String> = (0..MINERS).map(|i| format!("miner-{i:03}")).collect();
        for hotkey in &hotkeys {
            daemon.register_miner(hotkey).await?;
            daemon
                .add_verified_version(hotkey, &format!("{hotkey}-v1"))
                .await?;
        }
        let morning = start + TimeDelta::hours(15);
        clock.advance_to(morning)?;
        daemon.step().await?;
        let mut runs = Vec::with_capacity(EVENTS * MINERS);
        for index in 0..EVENTS {
            let id = format!("event-{index:03}");
            let event = Event::new(&id, format!("Question {index}?"), morning);
            daemon.ingest_event(&event).await?;
            for hotkey in &hotkeys {
                runs.push(NewRun {
                    event_id: id.clone(),
                    hotkey: hotkey.clone(),
                    version_hash: format!("{hotkey}-v1"),
                    executed: ExecutedRun {
                        status: RunStatus::Ok,
                        prediction: Some(random.next_unit()),
                        duration_ms: 1,
                        logs: String::new(),
                        gateway_usage: json!({}),
                        cost_usd: 0.0,
                    },
                    finished_at: morning,
                });
            }
        }
        store.record_runs(&runs).await?;

        let began = Instant::now();
        let seen = store.events_seen().await?;
        let inputs = store
            .events_to_pool(morning, Pool::ALL[0].name(), seen)
            .await?;
        reads.push(began.elapsed());
        let began = Instant::now();
        let mut pooled = 0;
        for input in &inputs.events {
            // Equal weights here: the weighted pools cost the same.
            let forecasts: Vec<(f64, f64)> = input
                .forecasts
                .iter()
                .map(|&(_, value)| (value, 1.0))
                .collect();
            for pool in Pool::ALL {
                pooled += usize::from(pool.of(&forecasts)?.is_some());
            }
        }
        computed_pools.push(began.elapsed());
        assert_eq!(pooled, EVENTS * Pool::ALL.len());
        let began = Instant::now();
        let report = daemon.step().await?;
        pools.push(began.elapsed());
        assert_eq!(report.pooled_events, EVENTS, "the step pools the day");

        clock.advance_to(morning + TimeDelta::hours(5))?;
        for index in 0..EVENTS {
            daemon
                .ingest_resolution(&Resolution {
                    event_id: format!("event-{index:03}"),
                    outcome: if random.next_unit() < 0.5 {
                        Outcome::No
                    } else {
                        Outcome::Yes
                    },
                    resolved_at: clock.now(),
                })
                .await?;
        }
        daemon.step().await?;

        let at = clock.now();
        let miners: Vec<Miner> = store.registered_miners().await?;
        let window = store.last_resolved_events(&miners, EVENTS, at).await?;
        let references = store.reference_window(EVENTS, at).await?;
        let pool = references
            .entries
            .iter()
            .position(|entry| entry.name == Pool::CONTRIBUTION.name())
            .ok_or("no contribution pool")?;
        let began = Instant::now();
        let meta: Vec<Option<f64>> = references
            .events
            .iter()
            .map(|event| event.predictions[pool])
            .collect();
        let contributions = contributions(miners.len(), &window, &meta)?;
        mmc.push(began.elapsed());
        computed.push(computed_pools[computed_pools.len() - 1] + began.elapsed());
        assert!(contributions.iter().all(Option::is_some));

        let began = Instant::now();
        let view = LeaderboardView::load(&store).await?;
        boards.push(began.elapsed());
        assert_eq!(view.rows.len(), MINERS);
        assert!(view.rows.iter().all(|row| row.mmc.is_some()));
        store.close().await;
    }
    println!("meta-model and MMC, one day of {EVENTS} events x {MINERS} miners ({DAYS} days):");
    report(
        "computed: the 4 pools of every event and every miner's MMC",
        &mut computed,
    );
    report("  of which the pools", &mut computed_pools);
    report("  of which the MMC", &mut mmc);
    report("read: the day's runs to pool from the store", &mut reads);
    report(
        "the daemon's whole pooling step (owed runs, read, pool, write)",
        &mut pools,
    );
    report("the leaderboard (with MMC and references)", &mut boards);
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {what}: median {:.2} ms, max {:.2} ms",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}
