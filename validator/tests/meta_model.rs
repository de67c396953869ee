//! Benchmark agents, the meta-model's pools and the miners' contribution (MMC), driven through
//! the daemon's public API on a simulated clock with a scripted executor, and read back through
//! the store and the JSON API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use chrono::TimeDelta;
use common::at;
use common::scripted::{ScriptedExecutor, harness};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use sooth_validator::api::views::{LeaderboardView, ReferenceKind};
use sooth_validator::integrity::{ConcordanceConfig, OriginalityConfig};
use sooth_validator::store::{ReferenceForecast, Store, StoreError};
use sooth_validator::verification::{LiveCheckSettings, ProbeSet, check_active_versions};
use sooth_validator::{
    Clock, Daemon, DaemonError, DaemonSettings, Event, NoWeightSetter, Outcome, RegistrationRules,
    Resolution, SimulatedClock,
};
use tower::ServiceExt;

fn pool_forecast(store_forecasts: &[ReferenceForecast], name: &str) -> Option<f64> {
    store_forecasts
        .iter()
        .find(|forecast| forecast.entry == name)
        .unwrap_or_else(|| panic!("no forecast of {name}: {store_forecasts:?}"))
        .prediction
}

#[tokio::test]
async fn a_benchmark_runs_on_every_event_holds_no_slot_and_is_never_weighted() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("m1", "v1").await;
    h.daemon
        .set_benchmark("market-baseline", "bench-hash")
        .await
        .unwrap();
    h.advance("2026-03-02T10:00:00Z").await;
    h.event("e1", json!({"m1": 0.3, "benchmark:market-baseline": 0.9}))
        .await;
    h.advance("2026-03-02T11:00:00Z").await;
    h.event(
        "e2",
        json!({"m1": 0.3, "benchmark:market-baseline": "trap"}),
    )
    .await;

    // Run once per event, under its reserved name and with its component.
    for event in ["e1", "e2"] {
        assert_eq!(h.executor.count(event, "benchmark:market-baseline"), 1);
    }
    assert!(
        h.executor
            .executions()
            .iter()
            .any(|(_, hotkey, hash)| hotkey == "benchmark:market-baseline" && hash == "bench-hash")
    );
    // More steps do not run it again.
    h.advance("2026-03-02T12:00:00Z").await;
    assert_eq!(h.executor.count("e1", "benchmark:market-baseline"), 1);

    h.resolve("e1", Outcome::Yes).await;
    h.resolve("e2", Outcome::Yes).await;
    // It is neither registered nor weighted.
    let registered = h.daemon.store().registered_miners().await.unwrap();
    assert_eq!(registered.len(), 1);
    let weights = h.daemon.store().latest_weights().await.unwrap();
    assert_eq!(weights.len(), 1, "{weights:?}");
    assert_eq!(weights[0].hotkey, "m1");
    assert_eq!(h.winner().await, "m1");

    // Scored like a miner over the same window: 0.9 on e1, the imputed 0.5 on e2.
    let view = LeaderboardView::load(h.daemon.store()).await.unwrap();
    let bench = view
        .references
        .iter()
        .find(|row| row.name == "market-baseline")
        .expect("the benchmark's row");
    assert_eq!(bench.kind, ReferenceKind::Benchmark);
    assert_eq!(bench.events_counted, 2);
    assert_eq!(bench.imputed_count, 1);
    let expected = (0.1_f64.powi(2) + 0.25) / 2.0;
    assert!((bench.mean_brier.unwrap() - expected).abs() < 1e-12);
}

#[tokio::test]
async fn reserved_names_are_refused() {
    let h = harness("2026-03-01T10:00:00Z").await;
    for bad in ["", "meta:linear", &"x".repeat(65), "tab\there"] {
        let error = h.daemon.set_benchmark(bad, "hash").await.unwrap_err();
        assert!(
            matches!(
                error,
                DaemonError::Store(StoreError::InvalidReference { .. })
            ),
            "{bad:?}: {error:?}"
        );
    }
    assert!(
        h.daemon
            .store()
            .reference_entries()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn pools_are_recorded_once_the_runs_are_in_equally_and_by_weight() {
    let h = harness("2026-03-01T10:00:00Z").await;
    for miner in ["a", "b", "c", "d"] {
        h.miner(miner, &format!("{miner}-v1")).await;
    }
    h.advance("2026-03-02T10:00:00Z").await;
    // d fails: a failed run is in no pool.
    h.event("e1", json!({"a": 0.2, "b": 0.7, "c": 0.9, "d": "timeout"}))
        .await;
    let store = h.daemon.store();
    let forecasts = store.reference_forecasts_of_event("e1").await.unwrap();
    assert_eq!(forecasts.len(), 4, "{forecasts:?}");
    assert!(forecasts.iter().all(|f| f.kind == ReferenceKind::MetaModel));
    // Reference values (Python's math module): sum([0.2, 0.7, 0.9]) / 3 = 0.6;
    // 1 / (1 + exp(-mean(log(p / (1 - p)) for p in [0.2, 0.7, 0.9]))) = 0.6347716821524939.
    let linear = pool_forecast(&forecasts, "meta:linear").unwrap();
    assert!((linear - 0.6).abs() < 1e-12, "{linear}");
    let log_odds = pool_forecast(&forecasts, "meta:log-odds").unwrap();
    assert!(
        (log_odds - 0.634_771_682_152_493_9).abs() < 1e-12,
        "{log_odds}"
    );
    // No weights computed yet: the weighted pools have no forecast to pool.
    assert_eq!(pool_forecast(&forecasts, "meta:linear-weighted"), None);
    let weighted = forecasts
        .iter()
        .find(|f| f.entry == "meta:log-odds-weighted")
        .unwrap();
    assert_eq!(weighted.status, "no_forecasts");

    // c wins the weight; the next event's weighted pools are c's forecast.
    h.resolve("e1", Outcome::Yes).await;
    assert_eq!(h.winner().await, "c");
    h.advance("2026-03-02T12:00:00Z").await;
    h.event("e2", json!({"a": 0.3, "b": 0.4, "c": 0.7})).await;
    let forecasts = store.reference_forecasts_of_event("e2").await.unwrap();
    assert_eq!(pool_forecast(&forecasts, "meta:linear-weighted"), Some(0.7));
    let weighted = pool_forecast(&forecasts, "meta:log-odds-weighted").unwrap();
    assert!((weighted - 0.7).abs() < 1e-12);
    // Pooled once: later steps leave them as they are.
    h.advance("2026-03-03T12:00:00Z").await;
    assert_eq!(
        store.reference_forecasts_of_event("e2").await.unwrap(),
        forecasts
    );
}

/// A world where outcomes follow hidden truths: a miner that knows the truth has information
/// the others lack; a market follower only has the noisy public price; a copier says the
/// equal-weight pool of the others (so, the meta-model itself).
#[tokio::test]
async fn a_copy_of_the_meta_model_earns_zero_and_private_information_earns_more() {
    const DAYS: i64 = 12;
    const PER_DAY: i64 = 30;
    let clock = SimulatedClock::new(at("2026-03-01T10:00:00Z"));
    let executor = Arc::new(ScriptedExecutor::default());
    let daemon = Daemon::new(
        Store::in_memory().await.unwrap(),
        Arc::new(clock.clone()),
        executor,
        Arc::new(NoWeightSetter),
        DaemonSettings {
            max_concurrent_runs: 8,
            registration: RegistrationRules::default(),
            // Every event counts, so that the contribution is over all twelve days.
            scoring_window: (DAYS * PER_DAY) as usize,
        },
    )
    .unwrap();
    for miner in ["informed", "market", "market-too", "copier"] {
        daemon.register_miner(miner).await.unwrap();
        daemon
            .add_verified_version(miner, &format!("{miner}-v1"))
            .await
            .unwrap();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let first_day = at("2026-03-02T00:00:00Z");
    for day in 0..DAYS {
        let morning = first_day + TimeDelta::days(day) + TimeDelta::hours(1);
        clock.advance_to(morning).unwrap();
        let mut outcomes = Vec::new();
        for index in 0..PER_DAY {
            let truth: f64 = rng.random_range(0.05..0.95);
            let market = (truth + rng.random_range(-0.3..0.3)).clamp(0.02, 0.98);
            let market_too = (market + rng.random_range(-0.02..0.02)).clamp(0.02, 0.98);
            let copier = (truth + market + market_too) / 3.0;
            let id = format!("d{day}-{index}");
            let mut event = Event::new(&id, format!("Question {id}?"), clock.now());
            let mut metadata = Map::new();
            metadata.insert(
                "answers".to_owned(),
                json!({"informed": truth, "market": market, "market-too": market_too, "copier": copier}),
            );
            event.metadata = metadata;
            daemon.ingest_event(&event).await.unwrap();
            let yes = rng.random_bool(truth);
            outcomes.push((id, if yes { Outcome::Yes } else { Outcome::No }));
        }
        daemon.step().await.unwrap();
        clock.advance_to(morning + TimeDelta::hours(10)).unwrap();
        for (id, outcome) in outcomes {
            daemon
                .ingest_resolution(&Resolution {
                    event_id: id,
                    outcome,
                    resolved_at: clock.now(),
                })
                .await
                .unwrap();
        }
        daemon.step().await.unwrap();
    }

    let router = sooth_validator::api::router(daemon.store().clone());
    let response = router
        .oneshot(Request::get("/v1/leaderboard").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let mmc = |hotkey: &str| {
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["hotkey"] == hotkey)
            .and_then(|row| row["mmc"].as_f64())
            .unwrap_or_else(|| panic!("no mmc for {hotkey}: {json}"))
    };
    let (informed, market, copier) = (mmc("informed"), mmc("market"), mmc("copier"));
    eprintln!("MMC: informed {informed:.4}, market {market:.4}, copier {copier:.2e}");
    assert!(copier.abs() < 1e-12, "the copier's MMC is {copier}");
    assert!(
        informed > market + 0.02,
        "informed {informed} against market {market}"
    );
    assert!(informed > 0.02, "informed {informed}");
    // The references are on the leaderboard, every pool over the same window as the miners.
    let references = json["references"].as_array().unwrap();
    let names: Vec<&str> = references
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "meta:linear",
            "meta:linear-weighted",
            "meta:log-odds",
            "meta:log-odds-weighted"
        ]
    );
    for row in references {
        assert_eq!(row["kind"], "meta_model");
        assert_eq!(row["events_counted"], DAYS * PER_DAY);
    }
}

/// Two miners that follow a benchmark agent's forecast (which carries a signal the market
/// lacks), each with small noise of its own: with the benchmark's live forecasts as a public
/// signal, the daily live check sees their own parts only and passes both; without it, the
/// later one looks like a copy of the earlier.
#[tokio::test]
async fn benchmark_forecasts_are_public_signals_to_the_daily_live_check() {
    let mut failed = Vec::new();
    for with_benchmark in [true, false] {
        let h = harness("2026-03-01T10:00:00Z").await;
        h.miner("first", "first-v1").await;
        h.clock.advance_to(at("2026-03-01T11:00:00Z")).unwrap();
        h.miner("second", "second-v1").await;
        if with_benchmark {
            h.daemon
                .set_benchmark("signal", "signal-hash")
                .await
                .unwrap();
        }
        h.advance("2026-03-02T01:00:00Z").await;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for index in 0..80 {
            let market: f64 = rng.random_range(0.1..0.9);
            let benchmark = (market + rng.random_range(-0.25..0.25)).clamp(0.02, 0.98);
            let first = (benchmark + rng.random_range(-0.04..0.04)).clamp(0.01, 0.99);
            let second = (benchmark + rng.random_range(-0.04..0.04)).clamp(0.01, 0.99);
            let id = format!("e{index:02}");
            let mut event = Event::new(&id, format!("Question {id}?"), h.clock.now());
            let mut metadata = Map::new();
            metadata.insert("market_prob".to_owned(), json!(market));
            metadata.insert(
                "answers".to_owned(),
                json!({"first": first, "second": second, "benchmark:signal": benchmark}),
            );
            event.metadata = metadata;
            h.daemon.ingest_event(&event).await.unwrap();
            h.clock
                .advance_to(h.clock.now() + TimeDelta::minutes(10))
                .unwrap();
            h.daemon.step().await.unwrap();
        }
        let report = check_active_versions(
            h.daemon.store(),
            &ProbeSet::default(),
            &LiveCheckSettings {
                window: 101,
                originality: OriginalityConfig::default(),
                concordance: ConcordanceConfig::default(),
            },
            h.clock.now(),
        )
        .await
        .unwrap();
        assert_eq!(report.versions, 2);
        failed.push(report.failed.len());
    }
    assert_eq!(failed, [0, 1], "flagged with the benchmark, without it");
}
