//! The downloads over the HTTP API: per day, the benchmark agents' and the meta-model's
//! forecasts per event and the resolved events, as CSV and Parquet, read back with the tables
//! reader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::scripted::{Harness, harness};
use serde_json::{Value, json};
use sooth_validator::Outcome;
use sooth_validator::tables::{Column, ReadLimits, Table};
use tower::ServiceExt;

async fn get(h: &Harness, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let response = sooth_validator::api::router(h.daemon.store().clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, content_type, body.to_vec())
}

/// Two days: on the first, two events forecast by a benchmark and two miners, one resolved
/// that day; on the second, the other resolves.
async fn competition() -> Harness {
    let h = harness("2026-03-01T10:00:00Z").await;
    h.miner("a", "a-v1").await;
    h.miner("b", "b-v1").await;
    h.daemon.set_benchmark("baseline", "bench").await.unwrap();
    h.advance("2026-03-02T09:00:00Z").await;
    h.event("e1", json!({"a": 0.2, "b": 0.6, "benchmark:baseline": 0.7}))
        .await;
    h.advance("2026-03-02T10:00:00Z").await;
    h.event(
        "e2",
        json!({"a": 0.9, "b": "trap", "benchmark:baseline": 1.5}),
    )
    .await;
    h.advance("2026-03-02T20:00:00Z").await;
    h.resolve("e1", Outcome::Yes).await;
    h.advance("2026-03-03T08:00:00Z").await;
    h.resolve("e2", Outcome::No).await;
    h
}

fn numbers(table: &Table, name: &str) -> Vec<Option<f64>> {
    table.numbers(name).unwrap()
}

#[tokio::test]
async fn a_days_forecasts_come_as_csv_and_parquet_with_the_same_values() {
    let h = competition().await;
    let (status, content_type, csv) = get(&h, "/v1/downloads/2026-03-02/forecasts.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let table = Table::read_csv(csv.as_slice(), &ReadLimits::DEFAULT).unwrap();
    let names: Vec<&str> = table
        .columns()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "era",
            "event_id",
            "created_at",
            "baseline",
            "meta:linear",
            "meta:linear-weighted",
            "meta:log-odds",
            "meta:log-odds-weighted"
        ]
    );
    assert_eq!(
        table.keys("event_id").unwrap(),
        [Some("e1".to_owned()), Some("e2".to_owned())]
    );
    assert_eq!(
        table.keys("era").unwrap(),
        [Some("2026-03-02".to_owned()), Some("2026-03-02".to_owned())]
    );
    // The scored values: the benchmark's 1.5 is clipped to 0.99.
    assert_eq!(numbers(&table, "baseline"), [Some(0.7), Some(0.99)]);
    // e1: mean(0.2, 0.6); e2: b trapped, so a's 0.9 alone.
    let linear = numbers(&table, "meta:linear");
    assert!((linear[0].unwrap() - 0.4).abs() < 1e-12);
    assert_eq!(linear[1], Some(0.9));
    // No weights before the first resolution: the weighted pools are empty cells.
    assert_eq!(numbers(&table, "meta:linear-weighted"), [None, None]);
    let stored = h
        .daemon
        .store()
        .reference_forecasts_of_event("e1")
        .await
        .unwrap();
    let log_odds = stored.iter().find(|f| f.entry == "meta:log-odds").unwrap();
    assert_eq!(
        numbers(&table, "meta:log-odds")[0],
        log_odds.clipped_prediction
    );

    let (status, content_type, parquet) =
        get(&h, "/v1/downloads/2026-03-02/forecasts.parquet").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/vnd.apache.parquet");
    assert_eq!(&parquet[..4], b"PAR1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forecasts.parquet");
    std::fs::write(&path, &parquet).unwrap();
    let from_parquet = Table::read(&path).unwrap();
    assert_eq!(from_parquet, table, "Parquet and CSV hold the same table");
}

#[tokio::test]
async fn resolved_events_by_day_and_the_index_of_days() {
    let h = competition().await;
    let (status, _, body) = get(&h, "/v1/downloads/2026-03-03/resolved.csv").await;
    assert_eq!(status, StatusCode::OK);
    let table = Table::read_csv(body.as_slice(), &ReadLimits::DEFAULT).unwrap();
    assert_eq!(table.keys("event_id").unwrap(), [Some("e2".to_owned())]);
    assert_eq!(
        table.column("outcome"),
        Some(&Column::Number(vec![Some(0.0)]))
    );
    assert_eq!(
        table.keys("resolved_at").unwrap(),
        [Some("2026-03-03T08:00:00.000Z".to_owned())]
    );
    let (_, _, body) = get(&h, "/v1/downloads/2026-03-02/resolved.parquet").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolved.parquet");
    std::fs::write(&path, &body).unwrap();
    let table = Table::read(&path).unwrap();
    assert_eq!(table.keys("event_id").unwrap(), [Some("e1".to_owned())]);
    assert_eq!(
        table.column("outcome"),
        Some(&Column::Integer(vec![Some(1)]))
    );

    // A day without events is an empty table, not an error.
    let (status, _, body) = get(&h, "/v1/downloads/2026-01-01/resolved.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).unwrap().trim(),
        "era,event_id,title,created_at,resolved_at,outcome"
    );

    let (status, _, body) = get(&h, "/v1/downloads").await;
    assert_eq!(status, StatusCode::OK);
    let index: Value = serde_json::from_slice(&body).unwrap();
    let days: Vec<&str> = index["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| day["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2026-03-03", "2026-03-02"]);
    assert_eq!(index["days"][0]["files"][1], "forecasts.parquet");
}

#[tokio::test]
async fn bad_days_and_unknown_files_are_refused_clearly() {
    let h = competition().await;
    for day in [
        "2026-02-30",
        "20260302",
        "+2026-03-02",
        "99999-01-01",
        "0001-01-01",
        "2026-3-2",
        "yesterday",
    ] {
        let (status, content_type, body) =
            get(&h, &format!("/v1/downloads/{day}/forecasts.csv")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{day}");
        assert_eq!(content_type, "application/json");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["code"], "bad_query");
        assert!(
            error["message"].as_str().unwrap().contains("YYYY-MM-DD"),
            "{error}"
        );
    }
    for file in ["forecasts.xlsx", "..", "resolved", "forecasts.csv.gz"] {
        let (status, _, body) = get(&h, &format!("/v1/downloads/2026-03-02/{file}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{file}");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("forecasts.parquet"),
            "{error}"
        );
    }
}
