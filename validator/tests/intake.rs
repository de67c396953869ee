//! The live validator's sources resume where their saved progress says after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use chrono::Utc;
use serde_json::json;
use sooth_validator::store::Store;
use sooth_validator::{Intake, SourcesConfig};

/// A feed of two pages: events `a` and `b` at the start, then `c` after cursor "p2".
async fn feed(Query(query): Query<HashMap<String, String>>) -> axum::Json<serde_json::Value> {
    axum::Json(match query.get("cursor").map(String::as_str) {
        None => json!({
            "events": [
                {"id": "a", "title": "A?", "created_at": "2026-03-01T00:00:00Z"},
                {"id": "b", "title": "B?", "created_at": "2026-03-01T00:00:00Z"},
            ],
            "next_cursor": "p2",
        }),
        Some("p2") => json!({
            "events": [{"id": "c", "title": "C?", "created_at": "2026-03-01T00:00:00Z"}],
            "next_cursor": "p3",
        }),
        Some(_) => json!({"events": []}),
    })
}

fn ids(batch: &sooth_validator::sources::Batch) -> Vec<String> {
    batch.events.iter().map(|event| event.id.clone()).collect()
}

#[tokio::test]
async fn directories_and_feeds_read_on_after_a_restart_instead_of_from_the_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/feed", get(feed)))
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let file = events.join("one.jsonl");
    std::fs::write(
        &file,
        "{\"id\": \"x\", \"title\": \"X?\", \"created_at\": \"2026-03-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let config = SourcesConfig {
        jsonl_dirs: vec![events.clone()],
        http_feeds: vec![format!("http://{address}/feed")],
        ..SourcesConfig::default()
    };
    let store = Store::open(&dir.path().join("validator.sqlite"))
        .await
        .unwrap();

    let mut intake = Intake::open(&config, &store).await.unwrap();
    let first = intake.poll(Utc::now()).await;
    assert_eq!(ids(&first), ["x", "a", "b"]);
    intake.save_progress(Utc::now()).await.unwrap();
    drop(intake);

    // A restart: nothing is read again; what arrives after is.
    let mut intake = Intake::open(&config, &store).await.unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(
            b"{\"id\": \"y\", \"title\": \"Y?\", \"created_at\": \"2026-03-01T00:00:00Z\"}\n",
        )
        .unwrap();
    let second = intake.poll(Utc::now()).await;
    assert_eq!(ids(&second), ["y", "c"]);
    assert!(second.rejected.is_empty(), "{:?}", second.rejected);

    // Progress not saved (a crash before the save): the same rows come again.
    let mut intake = Intake::open(&config, &store).await.unwrap();
    assert_eq!(ids(&intake.poll(Utc::now()).await), ["y", "c"]);
}

/// Gamma-shaped `/markets`: one open market in the listing; asked by id, it has settled yes.
async fn markets(Query(query): Query<Vec<(String, String)>>) -> axum::Json<serde_json::Value> {
    let by_id = query.iter().any(|(key, value)| key == "id" && value == "7");
    let first_page = query
        .iter()
        .any(|(key, value)| key == "offset" && value == "0");
    let market = |closed: bool, yes: &str, no: &str| {
        json!({
            "id": "7",
            "question": "Will the bridge open by March 10?",
            "description": "Resolves Yes if it opens.",
            "endDate": "2025-03-10T00:00:00Z",
            "outcomes": "[\"Yes\", \"No\"]",
            "outcomePrices": format!("[\"{yes}\", \"{no}\"]"),
            "active": true,
            "closed": closed,
            "closedTime": if closed { json!("2025-03-09 18:30:00+00") } else { json!(null) },
        })
    };
    axum::Json(if by_id {
        json!([market(true, "1", "0")])
    } else if first_page {
        json!([market(false, "0.45", "0.55")])
    } else {
        json!([])
    })
}

#[tokio::test]
async fn market_listings_give_events_and_then_their_resolutions_once_they_end() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/markets", get(markets)))
            .await
            .unwrap();
    });
    let store = Store::in_memory().await.unwrap();
    let config = SourcesConfig {
        gamma_url: Some(format!("http://{address}")),
        gamma_poll_secs: 60,
        ..SourcesConfig::default()
    };
    let mut intake = Intake::open(&config, &store).await.unwrap();
    let listed_at = "2025-03-01T12:00:00Z".parse().unwrap();
    let batch = intake.poll(listed_at).await;
    assert_eq!(ids(&batch), ["polymarket:7"]);
    let event = &batch.events[0];
    assert_eq!(event.metadata["market_prob"], 0.45);
    store.insert_event(event).await.unwrap();
    // Within the listing's own pace nothing is asked again.
    let soon = intake
        .poll(listed_at + chrono::TimeDelta::seconds(10))
        .await;
    assert!(soon.is_empty());
    // After the market's end, its resolution is asked for and read.
    let after = intake.poll("2025-03-11T00:00:00Z".parse().unwrap()).await;
    assert_eq!(after.resolutions.len(), 1, "{after:?}");
    let resolution = &after.resolutions[0];
    assert_eq!(resolution.event_id, "polymarket:7");
    assert_eq!(resolution.outcome, sooth_validator::Outcome::Yes);
}
