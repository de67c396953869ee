//! The daemon driven through its public API on a simulated clock, with a scripted executor
//! standing in for the sandbox (the sandbox itself is exercised by the CLI's backtest tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;
use common::at;
use common::scripted::{Harness, ScriptedExecutor, harness, harness_with};
use serde_json::json;
use sooth_validator::store::Store;
use sooth_validator::{
    Clock, Daemon, DaemonError, DaemonSettings, Event, ExecutedRun, Execution, Ingested,
    JsonFileWeights, NoWeightSetter, Outcome, RegistrationError, RegistrationRules, Resolution,
    RunExecutor, RunJob, RunStatus, SimulatedClock, Weights,
};

#[tokio::test]
async fn an_upload_at_2359_runs_from_the_next_day_and_one_at_0001_from_the_day_after() {
    let h = harness("2026-03-01T23:59:00Z").await;
    h.miner("early", "e1").await;
    h.clock.advance_to(at("2026-03-02T00:01:00Z")).unwrap();
    h.miner("late", "l1").await;

    h.advance("2026-03-02T12:00:00Z").await;
    h.event("day-2", json!({})).await;
    h.advance("2026-03-03T00:00:00Z").await;
    h.event("day-3-midnight", json!({})).await;

    assert_eq!(h.executor.count("day-2", "early"), 1);
    assert_eq!(
        h.executor.count("day-2", "late"),
        0,
        "not active on the day of its upload"
    );
    assert_eq!(h.executor.count("day-3-midnight", "early"), 1);
    assert_eq!(
        h.executor.count("day-3-midnight", "late"),
        1,
        "active from the midnight after"
    );
    let late = h.daemon.store().agent_versions("late").await.unwrap();
    assert_eq!(late[0].activated_at, Some(at("2026-03-03T00:00:00Z")));
}

#[tokio::test]
async fn the_version_active_at_creation_runs_an_event_once_and_its_prediction_holds() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("m", "v1").await;
    h.advance("2026-03-02T10:00:00Z").await;
    h.event("e", json!({"m": 0.8})).await;
    // A new version uploaded the same day activates at the next midnight.
    h.daemon.add_verified_version("m", "v2").await.unwrap();
    // Step through the event's life, several times a day, past the next midnight.
    for hour in [
        "2026-03-02T11:00:00Z",
        "2026-03-03T00:00:00Z",
        "2026-03-03T09:00:00Z",
    ] {
        h.advance(hour).await;
        h.daemon.step().await.unwrap();
    }
    h.event("after", json!({})).await;
    let executions = h.executor.executions();
    assert_eq!(
        executions,
        vec![
            ("e".to_owned(), "m".to_owned(), "v1".to_owned()),
            ("after".to_owned(), "m".to_owned(), "v2".to_owned()),
        ],
        "e ran once with v1; the new version runs new events only"
    );
    let runs = h.daemon.store().runs_of_event("e").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run.executed.prediction, Some(0.8));
    let versions = h.daemon.store().agent_versions("m").await.unwrap();
    assert_eq!(versions[0].deactivated_at, Some(at("2026-03-03T00:00:00Z")));
}

#[tokio::test]
async fn failures_and_missing_versions_are_imputed_and_predictions_clipped() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("high", "h").await;
    h.miner("low", "l").await;
    h.miner("trapper", "t").await;
    h.advance("2026-03-02T10:00:00Z").await;
    // Registered after the event's creation day began: no active version for it.
    h.miner("newcomer", "n").await;
    h.event("e", json!({"high": 1.7, "low": -3.0, "trapper": "trap"}))
        .await;
    h.advance("2026-03-03T10:00:00Z").await;
    h.resolve("e", Outcome::Yes).await;

    let runs = h.daemon.store().runs_of_event("e").await.unwrap();
    let by_miner: HashMap<_, _> = runs
        .iter()
        .map(|run| (run.run.hotkey.as_str(), run))
        .collect();
    assert_eq!(by_miner.len(), 3, "no run for the newcomer");
    assert_eq!(by_miner["high"].clipped_prediction, Some(0.99));
    assert_eq!(by_miner["low"].clipped_prediction, Some(0.01));
    assert_eq!(by_miner["trapper"].run.executed.status, RunStatus::Trap);
    assert_eq!(
        by_miner["trapper"].run.executed.prediction, None,
        "no fake prediction stored"
    );

    assert!((h.mean("high").await - 0.01_f64.powi(2)).abs() < 1e-12);
    assert!((h.mean("low").await - 0.99_f64.powi(2)).abs() < 1e-12);
    assert!((h.mean("trapper").await - 0.25).abs() < 1e-12);
    assert!((h.mean("newcomer").await - 0.25).abs() < 1e-12);
    let scores = h.daemon.store().event_scores("e").await.unwrap();
    let imputed: Vec<_> = scores
        .iter()
        .filter(|score| score.imputed)
        .map(|score| score.hotkey.as_str())
        .collect();
    assert_eq!(imputed.len(), 2);
    assert!(imputed.contains(&"trapper") && imputed.contains(&"newcomer"));
    assert_eq!(h.winner().await, "high");
}

#[tokio::test]
async fn the_score_is_the_mean_over_the_last_101_resolutions() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("steady", "s").await;
    h.miner("lucky", "l").await;
    h.advance("2026-03-02T00:00:00Z").await;
    // Event 0: lucky is perfect, steady says 0.5. Then 101 events where steady says 0.6 and
    // lucky 0.45 on yes outcomes. Event 0 drops out of the window when the 102nd resolves.
    let mut created = Vec::new();
    for index in 0..102 {
        let id = format!("e{index:03}");
        let answers = if index == 0 {
            json!({"steady": 0.5, "lucky": 1.0})
        } else {
            json!({"steady": 0.6, "lucky": 0.45})
        };
        h.clock.advance_by(TimeDelta::minutes(1)).unwrap();
        h.event(&id, answers).await;
        created.push(id);
    }
    for (index, id) in created.iter().enumerate() {
        h.clock.advance_by(TimeDelta::minutes(1)).unwrap();
        h.resolve(id, Outcome::Yes).await;
        if index == 100 {
            // 101 events: all in the window.
            let steady = (0.25 + 100.0 * 0.16) / 101.0;
            let lucky = (0.01_f64.powi(2) + 100.0 * 0.3025) / 101.0;
            assert!((h.mean("steady").await - steady).abs() < 1e-12);
            assert!((h.mean("lucky").await - lucky).abs() < 1e-12);
        }
    }
    assert!((h.mean("steady").await - 0.16).abs() < 1e-12);
    assert!((h.mean("lucky").await - 0.3025).abs() < 1e-12);
    let standings = h.daemon.standings(h.clock.now()).await.unwrap();
    assert_eq!(standings[0].events_counted, 101);
    assert_eq!(h.winner().await, "steady");
}

#[tokio::test]
async fn a_tie_goes_to_the_miner_registered_earlier() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("zeta-first", "z").await;
    h.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    h.miner("alpha-second", "a").await;
    h.advance("2026-03-02T10:00:00Z").await;
    h.event("e", json!({"zeta-first": 0.7, "alpha-second": 0.7}))
        .await;
    h.advance("2026-03-03T10:00:00Z").await;
    h.resolve("e", Outcome::No).await;
    assert_eq!(h.mean("zeta-first").await, h.mean("alpha-second").await);
    assert_eq!(h.winner().await, "zeta-first");
}

#[tokio::test]
async fn immunity_protects_new_miners_and_the_worst_outside_it_makes_room() {
    let rules = RegistrationRules {
        slots: 2,
        immunity: TimeDelta::days(7),
    };
    let h = harness_with("2026-03-01T10:00:00Z", rules, Arc::new(NoWeightSetter)).await;
    h.miner("good", "g").await;
    h.miner("bad", "b").await;
    h.advance("2026-03-02T10:00:00Z").await;
    h.event("e", json!({"good": 0.9, "bad": 0.1})).await;
    h.advance("2026-03-03T10:00:00Z").await;
    h.resolve("e", Outcome::Yes).await;

    let refused = h.daemon.register_miner("newcomer").await;
    assert!(
        matches!(
            refused,
            Err(DaemonError::Registration(
                RegistrationError::AllImmune { .. }
            ))
        ),
        "{refused:?}"
    );
    // Immunity lasts 7 full days from 2026-03-01T10:00.
    h.advance("2026-03-08T10:00:00Z").await;
    let decision = h.daemon.register_miner("newcomer").await.unwrap();
    let leaving = decision.deregistered.expect("someone makes room");
    assert_eq!(leaving.hotkey, "bad");
    assert_eq!(decision.registered.uid, leaving.uid);

    h.daemon
        .add_verified_version("newcomer", "n")
        .await
        .unwrap();
    h.advance("2026-03-09T10:00:00Z").await;
    h.event("later", json!({})).await;
    let miners_on_later: Vec<_> = h
        .daemon
        .store()
        .runs_of_event("later")
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.run.hotkey)
        .collect();
    assert_eq!(
        miners_on_later,
        vec!["good".to_owned(), "newcomer".to_owned()]
    );
    // The deregistered miner's history stays.
    let old = h.daemon.store().runs_of_event("e").await.unwrap();
    assert!(old.iter().any(|run| run.run.hotkey == "bad"));
    let bad = h.daemon.store().miner("bad").await.unwrap().unwrap();
    assert_eq!(bad.deregistered_at, Some(at("2026-03-08T10:00:00Z")));
}

#[tokio::test]
async fn known_events_are_accepted_again_and_conflicting_ones_refused() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("m", "v").await;
    h.advance("2026-03-02T10:00:00Z").await;
    let event = Event::new("e", "Rain?", h.clock.now());
    assert_eq!(h.daemon.ingest_event(&event).await.unwrap(), Ingested::New);
    h.daemon.step().await.unwrap();
    assert_eq!(
        h.daemon.ingest_event(&event).await.unwrap(),
        Ingested::AlreadyKnown
    );
    let mut changed = event.clone();
    changed.title = "Snow?".to_owned();
    let refused = h.daemon.ingest_event(&changed).await;
    assert!(
        matches!(&refused, Err(DaemonError::ConflictingEvent { event_id }) if event_id == "e"),
        "{refused:?}"
    );
    assert_eq!(
        h.daemon
            .store()
            .event("e")
            .await
            .unwrap()
            .unwrap()
            .event
            .title,
        "Rain?"
    );
    h.daemon.step().await.unwrap();
    assert_eq!(h.executor.count("e", "m"), 1);

    let resolution = Resolution {
        event_id: "e".to_owned(),
        outcome: Outcome::Yes,
        resolved_at: h.clock.now(),
    };
    assert_eq!(
        h.daemon.ingest_resolution(&resolution).await.unwrap(),
        Ingested::New
    );
    assert_eq!(
        h.daemon.ingest_resolution(&resolution).await.unwrap(),
        Ingested::AlreadyKnown
    );
    let disagreeing = Resolution {
        outcome: Outcome::No,
        ..resolution
    };
    assert!(h.daemon.ingest_resolution(&disagreeing).await.is_err());
    let unknown = Resolution {
        event_id: "nope".to_owned(),
        ..disagreeing
    };
    assert!(h.daemon.ingest_resolution(&unknown).await.is_err());
}

#[tokio::test]
async fn weights_go_to_the_history_and_the_json_file_after_each_resolution_batch() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("weights.json");
    let h = harness_with(
        "2026-03-01T10:00:00Z",
        RegistrationRules::default(),
        Arc::new(JsonFileWeights::new(&path)),
    )
    .await;
    h.miner("a", "a1").await;
    h.miner("b", "b1").await;
    h.advance("2026-03-02T10:00:00Z").await;
    h.event("e1", json!({"a": 0.9, "b": 0.2})).await;
    h.event("e2", json!({"a": 0.1, "b": 0.2})).await;
    assert!(!path.exists(), "nothing resolved, no weights yet");
    h.advance("2026-03-05T10:00:00Z").await;
    h.resolve("e1", Outcome::Yes).await;
    let written: Weights = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written.computed_at, at("2026-03-05T10:00:00Z"));
    let weight_of = |weights: &Weights, hotkey: &str| {
        weights
            .weights
            .iter()
            .find(|w| w.hotkey == hotkey)
            .unwrap()
            .weight
    };
    assert_eq!(weight_of(&written, "a"), 1.0);
    assert_eq!(weight_of(&written, "b"), 0.0);

    h.advance("2026-03-05T11:00:00Z").await;
    h.resolve("e2", Outcome::Yes).await;
    // a: (0.01 + 0.81) / 2 = 0.41; b: (0.64 + 0.64) / 2 = 0.64.
    assert_eq!(h.winner().await, "a");
    h.advance("2026-03-05T12:00:00Z").await;
    let history = h.daemon.store().latest_weights().await.unwrap();
    assert_eq!(history[0].computed_at, at("2026-03-05T11:00:00Z"));
    let written: Weights = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written.computed_at, at("2026-03-05T11:00:00Z"));
}

#[tokio::test]
async fn a_resolution_dated_later_counts_only_once_the_clock_reaches_it() {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("a", "a1").await;
    h.miner("b", "b1").await;
    h.advance("2026-03-02T10:00:00Z").await;
    h.event("e", json!({"a": 0.9, "b": 0.1})).await;
    h.daemon
        .ingest_resolution(&Resolution {
            event_id: "e".to_owned(),
            outcome: Outcome::Yes,
            resolved_at: at("2026-03-04T00:00:00Z"),
        })
        .await
        .unwrap();
    let report = h.daemon.step().await.unwrap();
    assert!(
        report.leaderboard.is_none(),
        "not resolved yet at this instant"
    );
    assert!(h.daemon.store().latest_weights().await.unwrap().is_empty());
    h.advance("2026-03-03T23:59:59Z").await;
    assert!(h.daemon.store().latest_weights().await.unwrap().is_empty());
    h.clock.advance_to(at("2026-03-04T00:00:00Z")).unwrap();
    let report = h.daemon.step().await.unwrap();
    let rows = report.leaderboard.expect("scored once its instant came");
    assert_eq!(rows[0].miner.hotkey, "a");
    assert_eq!(h.winner().await, "a");
}

/// Holds every run until released.
struct GatedExecutor {
    gate: tokio::sync::Semaphore,
}

impl RunExecutor for GatedExecutor {
    fn execute(self: Arc<Self>, _job: RunJob) -> Execution {
        Box::pin(async move {
            let _permit = self.gate.acquire().await.unwrap();
            ExecutedRun {
                status: RunStatus::Ok,
                prediction: Some(0.9),
                duration_ms: 1,
                logs: String::new(),
                gateway_usage: json!({}),
                cost_usd: 0.0,
            }
        })
    }
}

/// A daemon whose runs wait at `executor.gate`, with miner `m` active on 2 March, its clock at
/// 10:00 that day.
async fn gated_daemon() -> (Arc<Daemon>, SimulatedClock, Arc<GatedExecutor>) {
    let clock = SimulatedClock::new(at("2026-03-01T10:00:00Z"));
    let executor = Arc::new(GatedExecutor {
        gate: tokio::sync::Semaphore::new(0),
    });
    let daemon = Arc::new(
        Daemon::new(
            Store::in_memory().await.unwrap(),
            Arc::new(clock.clone()),
            executor.clone(),
            Arc::new(NoWeightSetter),
            DaemonSettings::default(),
        )
        .unwrap(),
    );
    daemon.register_miner("m").await.unwrap();
    daemon.add_verified_version("m", "v").await.unwrap();
    clock.advance_to(at("2026-03-02T10:00:00Z")).unwrap();
    (daemon, clock, executor)
}

/// An event that arrives while a step runs the owed runs of the events before it is not
/// pooled by that step (its runs have not happened): the meta-model pools it at the next step,
/// over its runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_arriving_during_a_pass_is_pooled_after_its_own_runs() {
    let (daemon, clock, executor) = gated_daemon().await;
    daemon
        .ingest_event(&Event::new("first", "First?", clock.now()))
        .await
        .unwrap();
    let stepping = tokio::spawn({
        let daemon = Arc::clone(&daemon);
        async move { daemon.step().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!stepping.is_finished(), "the step waits on its run");
    daemon
        .ingest_event(&Event::new("second", "Second?", clock.now()))
        .await
        .unwrap();
    executor.gate.add_permits(10);
    let report = stepping.await.unwrap().unwrap();
    assert_eq!((report.runs, report.pooled_events), (1, 1));
    let store = daemon.store();
    assert!(
        store
            .reference_forecasts_of_event("second")
            .await
            .unwrap()
            .is_empty(),
        "pooled before its runs"
    );
    let report = daemon.step().await.unwrap();
    assert_eq!((report.runs, report.pooled_events), (1, 1));
    let pools = store.reference_forecasts_of_event("second").await.unwrap();
    let linear = pools
        .iter()
        .find(|pool| pool.entry == "meta:linear")
        .unwrap();
    assert_eq!(linear.prediction, Some(0.9), "{pools:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_resolutions_are_taken_while_a_step_waits_on_its_runs() {
    let (daemon, clock, executor) = gated_daemon().await;
    let first = Event::new("first", "First?", clock.now());
    daemon.ingest_event(&first).await.unwrap();
    let stepping = tokio::spawn({
        let daemon = Arc::clone(&daemon);
        async move { daemon.step().await }
    });
    // The step is blocked on its run; ingestion goes on meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!stepping.is_finished());
    let second = Event::new("second", "Second?", clock.now());
    let ingest = async {
        daemon.ingest_event(&second).await.unwrap();
        daemon
            .ingest_resolution(&Resolution {
                event_id: "second".to_owned(),
                outcome: Outcome::No,
                resolved_at: clock.now(),
            })
            .await
            .unwrap();
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), ingest)
        .await
        .expect("ingestion waited for the step");
    executor.gate.add_permits(10);
    let report = stepping.await.unwrap().unwrap();
    assert_eq!(report.runs, 1, "the first event ran");
    // The step scored the resolution that arrived while it ran: the second event, resolved
    // before any run of it, is imputed and never runs.
    let rows = report.leaderboard.expect("scored");
    assert_eq!(rows[0].imputed_count, 1);
    let report = daemon.step().await.unwrap();
    assert_eq!(report.runs, 0);
    assert!(
        daemon
            .store()
            .runs_of_event("second")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_scoring_window_is_configurable() {
    let clock = SimulatedClock::new(at("2026-03-01T10:00:00Z"));
    let executor = Arc::new(ScriptedExecutor::default());
    let daemon = Daemon::new(
        Store::in_memory().await.unwrap(),
        Arc::new(clock.clone()),
        executor.clone(),
        Arc::new(NoWeightSetter),
        DaemonSettings {
            scoring_window: 2,
            ..DaemonSettings::default()
        },
    )
    .unwrap();
    let h = Harness {
        daemon,
        clock,
        executor,
    };
    h.miner("m", "v").await;
    h.advance("2026-03-02T10:00:00Z").await;
    for (index, prediction) in [0.1, 0.8, 0.6].into_iter().enumerate() {
        h.clock.advance_by(TimeDelta::minutes(1)).unwrap();
        h.event(&format!("e{index}"), json!({"m": prediction}))
            .await;
    }
    for index in 0..3 {
        h.clock.advance_by(TimeDelta::minutes(1)).unwrap();
        h.resolve(&format!("e{index}"), Outcome::Yes).await;
    }
    // The last two: (0.2^2 + 0.4^2) / 2 = 0.1; the first (0.81) has left the window.
    assert!((h.mean("m").await - 0.1).abs() < 1e-12);
    let refused = Daemon::new(
        Store::in_memory().await.unwrap(),
        Arc::new(SimulatedClock::new(at("2026-03-01T10:00:00Z"))),
        Arc::new(ScriptedExecutor::default()),
        Arc::new(NoWeightSetter),
        DaemonSettings {
            scoring_window: 0,
            ..DaemonSettings::default()
        },
    );
    assert!(matches!(refused, Err(DaemonError::Settings(_))));
}
