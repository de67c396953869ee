//! The daemon with its real executor: hostile agents in the sandbox, on a simulated clock.
//! Every misbehaviour ends as a failed run without a prediction (imputed 0.5 at scoring) or,
//! for an out-of-range forecast, a clipped one; none stops the daemon or another miner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::at;
use sooth_runner::{CompileIsolation, Runner, RunnerConfig, ScriptedGateway};
use sooth_validator::{DaemonSettings, Event, Outcome, Resolution, RunStatus, Simulation};

/// A simulation in `dir` whose runs get 2 s and 64 MiB, with a gateway that
/// answers every call not-found.
async fn simulation_in(dir: &std::path::Path) -> Simulation {
    let runner = Runner::new(RunnerConfig {
        timeout: Duration::from_secs(2),
        memory_limit_bytes: 64 << 20,
        compile_isolation: CompileIsolation::InProcess,
        ..RunnerConfig::default()
    })
    .unwrap();
    Simulation::open(
        dir,
        at("2026-03-01T23:00:00Z"),
        runner,
        Arc::new(ScriptedGateway::empty()),
        None,
        DaemonSettings::default(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_agents_fail_alone_and_are_imputed() {
    let hostile = std::fs::read(sooth_test_agents::hostile()).unwrap();
    let baseline = std::fs::read(sooth_test_agents::market_baseline()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let simulation = simulation_in(dir.path()).await;
    simulation.enter("hostile", &hostile).await.unwrap();
    simulation.enter("baseline", &baseline).await.unwrap();

    let titles = [
        ("spin", RunStatus::Timeout),
        ("sleep", RunStatus::Timeout),
        ("memory-bomb", RunStatus::MemoryExceeded),
        ("panic", RunStatus::Trap),
        ("nan", RunStatus::InvalidOutput),
        ("wrong-id", RunStatus::InvalidOutput),
        ("seven", RunStatus::Ok),
    ];
    let created = at("2026-03-02T08:00:00Z");
    let mut events = Vec::new();
    let mut resolutions = Vec::new();
    for (index, (title, _)) in titles.iter().enumerate() {
        let mut event = Event::new(
            format!("e-{title}"),
            *title,
            created + TimeDelta::minutes(index as i64),
        );
        event
            .metadata
            .insert("market_prob".to_owned(), serde_json::json!(0.8));
        resolutions.push(Resolution {
            event_id: event.id.clone(),
            outcome: Outcome::Yes,
            resolved_at: at("2026-03-06T00:00:00Z"),
        });
        events.push(event);
    }
    let replay = simulation
        .replay(events, resolutions, |_| {})
        .await
        .unwrap();
    assert_eq!(replay.runs, 2 * titles.len());

    for (title, status) in titles {
        let runs = simulation
            .daemon
            .store()
            .runs_of_event(&format!("e-{title}"))
            .await
            .unwrap();
        let hostile_run = runs.iter().find(|run| run.run.hotkey == "hostile").unwrap();
        assert_eq!(
            hostile_run.run.executed.status, status,
            "{title}: {:?}",
            hostile_run.run.executed.logs
        );
        let baseline_run = runs
            .iter()
            .find(|run| run.run.hotkey == "baseline")
            .unwrap();
        assert_eq!(baseline_run.run.executed.prediction, Some(0.8), "{title}");
    }
    let seven = simulation
        .daemon
        .store()
        .runs_of_event("e-seven")
        .await
        .unwrap();
    let seven = seven
        .iter()
        .find(|run| run.run.hotkey == "hostile")
        .unwrap();
    assert_eq!(
        seven.run.executed.prediction,
        Some(7.0),
        "the raw answer is kept"
    );
    assert_eq!(seven.clipped_prediction, Some(0.99));

    let report = simulation.report().await.unwrap();
    let hostile_row = report
        .rows
        .iter()
        .find(|row| row.hotkey == "hostile")
        .unwrap();
    // Six failures imputed 0.5 (0.25 each) and 0.99 on a yes (0.0001), over 7 events.
    let expected = (6.0 * 0.25 + 0.01_f64.powi(2)) / 7.0;
    assert!((hostile_row.mean_brier_101.unwrap() - expected).abs() < 1e-12);
    assert_eq!(hostile_row.imputed_count, 6);
    assert_eq!(report.rows[0].hotkey, "baseline");
}

/// What the validator keeps of a run that floods the gateway: the run is
/// stored with its exact call count but only the first calls in detail, and
/// a service name of megabytes is never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_floods_are_stored_within_bounds() {
    let hostile = std::fs::read(sooth_test_agents::hostile()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let simulation = simulation_in(dir.path()).await;
    simulation.enter("hostile", &hostile).await.unwrap();
    let titles = ["call-loop", "long-name-loop"];
    let created = at("2026-03-02T08:00:00Z");
    let events = titles
        .iter()
        .enumerate()
        .map(|(index, title)| {
            Event::new(
                format!("e-{title}"),
                *title,
                created + TimeDelta::minutes(index as i64),
            )
        })
        .collect();
    simulation.replay(events, Vec::new(), |_| {}).await.unwrap();
    for title in titles {
        let runs = simulation
            .daemon
            .store()
            .runs_of_event(&format!("e-{title}"))
            .await
            .unwrap();
        let run = &runs[0].run.executed;
        assert_eq!(run.status, RunStatus::Timeout, "{title}");
        let usage = &run.gateway_usage;
        let total = usage["total_calls"].as_u64().unwrap();
        assert!(total > 1000, "{title}: the flood ran ({total} calls)");
        assert_eq!(
            usage["calls"].as_array().unwrap().len(),
            64,
            "{title}: details of the first 64 only"
        );
        let stored = serde_json::to_string(usage).unwrap().len();
        assert!(stored < 64 << 10, "{title}: {stored} bytes stored");
    }
}
