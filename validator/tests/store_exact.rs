//! The scoring input read back from either engine is bit-for-bit what was recorded: predictions
//! are packed as text on the way out (SQLite's 17 significant digits, PostgreSQL's shortest
//! exact text), and must read back as the same f64.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sooth_test_postgres::TestSchema;
use sooth_validator::store::{NewRun, Store, StoreOptions};
use sooth_validator::{AgentVersion, Event, ExecutedRun, Miner, RunStatus};

#[tokio::test]
async fn predictions_read_back_for_scoring_from_sqlite_are_the_recorded_values_exactly() {
    predictions_read_back_exactly(&Store::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn predictions_read_back_for_scoring_from_postgresql_are_the_recorded_values_exactly() {
    let schema = TestSchema::create().await;
    let store = Store::connect(schema.url(), &StoreOptions::default())
        .await
        .unwrap();
    predictions_read_back_exactly(&store).await;
}

async fn predictions_read_back_exactly(store: &Store) {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let miners: Vec<Miner> = (0..3_u16)
        .map(|uid| Miner {
            uid,
            hotkey: format!("m{uid}"),
            registered_at: start,
        })
        .collect();
    for miner in &miners {
        store.register_miner(miner).await.unwrap();
        store
            .add_agent_version(&AgentVersion {
                hotkey: miner.hotkey.clone(),
                hash: "h".into(),
                uploaded_at: start,
                verified_at: Some(start),
            })
            .await
            .unwrap();
    }
    // Values with full mantissas, some outside [0.01, 0.99], some at awkward decimal places.
    let value = |i: usize, m: usize| {
        let x = ((i * 3 + m) as f64 * 0.618_033_988_749_894_8).fract();
        match i % 5 {
            0 => x * 1.2 - 0.1,
            1 => x / 3.0,
            2 => 0.5 + x * 1e-9,
            _ => x,
        }
    };
    let events = 120;
    let mut recorded = Vec::new();
    for i in 0..events {
        let id = format!("e{i:03}");
        let created_at = start + TimeDelta::minutes(i as i64);
        store
            .insert_event(&Event::new(id.clone(), "T", created_at))
            .await
            .unwrap();
        for (m, miner) in miners.iter().enumerate() {
            store
                .record_run(&NewRun {
                    event_id: id.clone(),
                    hotkey: miner.hotkey.clone(),
                    version_hash: "h".into(),
                    executed: ExecutedRun {
                        status: RunStatus::Ok,
                        prediction: Some(value(i, m)),
                        duration_ms: 1,
                        logs: String::new(),
                        gateway_usage: json!({}),
                        cost_usd: 0.0,
                    },
                    finished_at: created_at,
                })
                .await
                .unwrap();
        }
        store
            .resolve_event(&id, u8::from(i % 2 == 0), created_at + TimeDelta::hours(1))
            .await
            .unwrap();
        recorded.push(id);
    }
    let loaded = store
        .last_resolved_events(&miners, 1_000, DateTime::<Utc>::MAX_UTC)
        .await
        .unwrap();
    assert_eq!(loaded.len(), events);
    for (i, event) in loaded.iter().enumerate() {
        assert_eq!(event.id, recorded[i]);
        let runs = store.runs_of_event(&event.id).await.unwrap();
        for (m, slot) in event.predictions.iter().enumerate() {
            let expected = value(i, m).clamp(0.01, 0.99);
            assert_eq!(
                slot.map(f64::to_bits),
                Some(expected.to_bits()),
                "{} m{m}",
                event.id
            );
            assert_eq!(runs[m].clipped_prediction, Some(expected));
        }
    }
}
