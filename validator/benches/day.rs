//! A simulated day end to end: 256 miners running the market-price baseline (a real wasm
//! component in the sandbox, no gateway calls) on 100 events, each resolved an hour after its
//! creation, through the daemon on SQLite: schedule, run, persist, resolve, score, weights.
//! 25,600 runs and 100 scorings of 256 miners.
//!
//! Run with `cargo bench -p sooth-validator --bench day`. Targets: <= 5 s on the 2-core
//! machine, peak RSS <= 1 GiB.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use chrono::TimeDelta;
use sooth_runner::{Runner, RunnerConfig, ScriptedGateway};
use sooth_validator::synthetic::{WorldSpec, generate};
use sooth_validator::{DaemonSettings, Simulation, start_instant};

const MINERS: usize = 256;
const EVENTS: usize = 100;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agent = std::fs::read(sooth_test_agents::market_baseline())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&agent))
}

async fn run(agent: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let mut world = generate(&WorldSpec {
        days: 2,
        ..WorldSpec::default()
    });
    world.truncate(EVENTS);
    let (events, mut resolutions): (Vec<_>, Vec<_>) = world
        .into_iter()
        .map(|item| (item.event, item.resolution))
        .unzip();
    for (resolution, event) in resolutions.iter_mut().zip(&events) {
        resolution.resolved_at = event.created_at + TimeDelta::hours(1);
    }

    let dir = tempfile::tempdir()?;
    let runner = Runner::new(RunnerConfig::default())?;
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let simulation = Simulation::open(
        dir.path(),
        start_instant(&events)?,
        runner,
        Arc::new(ScriptedGateway::empty()),
        None,
        DaemonSettings {
            max_concurrent_runs: workers * 4,
            ..DaemonSettings::default()
        },
    )
    .await?;
    let setup = Instant::now();
    for miner in 0..MINERS {
        simulation
            .enter(&format!("miner-{miner:03}"), agent)
            .await?;
    }
    println!(
        "setup: {MINERS} miners registered with the baseline agent in {:.2} s",
        setup.elapsed().as_secs_f64()
    );

    let day = Instant::now();
    let replay = simulation.replay(events, resolutions, |_| {}).await?;
    let elapsed = day.elapsed();
    let report = simulation.report().await?;
    assert_eq!(replay.runs, MINERS * EVENTS, "every miner ran every event");
    assert!(replay.refused.is_empty(), "{:?}", replay.refused);
    let history = simulation.daemon.store().weights_history_len().await?;
    println!(
        "simulated day: {MINERS} miners x {EVENTS} events = {} runs, {history} scorings, in {:.2} s \
         (target <= 5 s); {:.0} runs/s; peak RSS {:.0} MiB (target <= 1024)",
        replay.runs,
        elapsed.as_secs_f64(),
        replay.runs as f64 / elapsed.as_secs_f64(),
        peak_rss_mib()
    );
    println!(
        "winner: {} with mean Brier {:.4} over {} events",
        report.rows[0].hotkey,
        report.rows[0].mean_brier_101.unwrap_or(f64::NAN),
        report.rows[0].events_counted
    );
    Ok(())
}
