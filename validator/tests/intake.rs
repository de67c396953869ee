//! The live validator's sources resume where their saved progress says after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use chrono::Utc;
use serde_json::json;
use sooth_validator::config::SourcesConfig;
use sooth_validator::intake::Intake;
use sooth_validator::store::Store;

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
