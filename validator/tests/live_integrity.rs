//! The daily integrity check on live events: a copier that answers the public probe events
//! with a signal of its own passes verification, then is found copying on live events and
//! loses its weight; an agent that says 0.5 on probe events and forecasts on live ones is
//! flagged by concordance. Real agents in the sandbox, on the shared questions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::TimeDelta;
use common::at;
use common::desk::{Options, harness, shared_probe_set};
use sooth_protocol::{HotkeyScheme, SecretHotkey};
use sooth_validator::store::IntegrityCheck;
use sooth_validator::verification::{LiveCheckSettings, check_active_versions};
use sooth_validator::{Clock, Event, Outcome, Resolution};

const LIVE_EVENTS: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_only_copier_loses_its_weight_and_a_probe_dodger_is_flagged_by_concordance() {
    let Some(probe) = shared_probe_set(200) else {
        return;
    };
    // Live events: later questions of the same file, asked again after activation.
    let Some(source) = shared_probe_set(200 + LIVE_EVENTS) else {
        return;
    };
    let h = harness(Options {
        probe,
        ..Options::default()
    })
    .await;

    // The copier registers first: it would win every tie.
    let copier = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let original = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let dodger = SecretHotkey::generate(HotkeyScheme::Ed25519);
    for miner in [&copier, &original, &dodger] {
        h.register(miner).await;
        h.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    }
    let read =
        |features: &[&str]| std::fs::read(sooth_test_agents::signal_agent(features)).unwrap();
    let mut versions = Vec::new();
    for (miner, bytes) in [
        (&original, read(&[])),
        (&copier, read(&["live-copier"])),
        (&dodger, read(&["probe-constant"])),
    ] {
        let (_, accepted) = h.upload(miner, bytes).await;
        versions.push(accepted["version"].as_i64().unwrap());
        h.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    }
    h.verify_all().await;
    for version in &versions {
        let (_, record) = h.get(&format!("/v1/agents/{version}")).await;
        assert_eq!(record["status"], "verified", "{record}");
    }

    // Active from the next midnight; a day of live events, each resolved an hour later.
    h.clock.advance_to(at("2026-03-03T00:00:01Z")).unwrap();
    h.daemon.step().await.unwrap();
    for version in &versions {
        let (_, record) = h.get(&format!("/v1/agents/{version}")).await;
        assert_eq!(record["status"], "active", "{record}");
        assert_eq!(record["activated_at"], "2026-03-03T00:00:00Z", "{record}");
    }
    let start = at("2026-03-03T01:00:00Z");
    let mut resolutions = Vec::new();
    for (index, record) in source.events()[200..].iter().enumerate() {
        let mut event = Event::new(
            format!("live-{index}"),
            record.event.title.clone(),
            start + TimeDelta::minutes(i64::try_from(index).unwrap()),
        );
        event.description = record.event.description.clone();
        event.metadata = record.event.metadata.clone();
        h.daemon.ingest_event(&event).await.unwrap();
        resolutions.push(Resolution {
            event_id: event.id.clone(),
            outcome: record.outcome.unwrap_or(Outcome::No),
            resolved_at: event.created_at + TimeDelta::hours(1),
        });
    }
    h.clock.advance_to(at("2026-03-03T04:00:00Z")).unwrap();
    h.daemon.step().await.unwrap();
    for resolution in &resolutions {
        h.daemon.ingest_resolution(resolution).await.unwrap();
    }
    h.daemon.step().await.unwrap();
    let before = h.store.latest_weights().await.unwrap();
    let weight_of = |rows: &[sooth_validator::store::WeightRow], miner: &SecretHotkey| {
        rows.iter()
            .find(|row| row.hotkey == miner.public().to_string())
            .map(|row| (row.rank, row.weight, row.mean_brier))
            .unwrap()
    };
    let (copier_rank, _, copier_brier) = weight_of(&before, &copier);
    let (original_rank, _, original_brier) = weight_of(&before, &original);
    // On live events the copier says exactly what the original says, and registered first.
    assert_eq!(copier_brier, original_brier);
    assert!(copier_rank < original_rank);

    let settings = LiveCheckSettings {
        window: 101,
        originality: Default::default(),
        concordance: Default::default(),
    };
    let report = check_active_versions(&h.store, h.verifier.probe(), &settings, h.clock.now())
        .await
        .unwrap();
    assert_eq!(report.versions, 3);
    assert!(
        report
            .failed
            .contains(&(versions[1], IntegrityCheck::Originality)),
        "{report:?}"
    );
    assert!(
        report
            .failed
            .contains(&(versions[2], IntegrityCheck::Concordance)),
        "{report:?}"
    );
    assert!(
        !report
            .failed
            .iter()
            .any(|(version, _)| *version == versions[0]),
        "the original was flagged: {report:?}"
    );
    let (_, copied) = h.get(&format!("/v1/agents/{}", versions[1])).await;
    let live = copied["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|verdict| verdict["scope"] == "live" && verdict["check"] == "originality")
        .unwrap()
        .clone();
    assert_eq!(live["passed"], false);
    assert_eq!(live["matched_version"], versions[0]);

    // The next scoring passes over both: the weight goes to the original.
    h.daemon.request_scoring();
    h.daemon.step().await.unwrap();
    let after = h.store.latest_weights().await.unwrap();
    assert_eq!(weight_of(&after, &copier).1, 0.0);
    assert_eq!(weight_of(&after, &dodger).1, 0.0);
    assert_eq!(weight_of(&after, &original).1, 1.0);
    // The leaderboard shows why.
    let (_, board) = h.get("/v1/leaderboard").await;
    let flags_of = |miner: &SecretHotkey| {
        board["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["hotkey"] == miner.public().to_string())
            .unwrap()["integrity_flags"]
            .clone()
    };
    assert_eq!(flags_of(&copier), serde_json::json!(["originality"]));
    assert_eq!(flags_of(&dodger), serde_json::json!(["concordance"]));
    assert_eq!(flags_of(&original), serde_json::json!([]));
}
