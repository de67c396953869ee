//! Tests of the prediction-market listings: parsing markets into events and resolutions, and
//! the client against a local listing server.

use std::collections::HashMap;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A market in the shape of Gamma's `/markets` items (fields trimmed).
fn market(id: &str, yes: &str, closed: bool) -> Value {
    json!({
        "id": id,
        "question": format!("Will {id} happen?"),
        "conditionId": "0xabc",
        "slug": format!("will-{id}-happen"),
        "description": "Resolves Yes if it happens.",
        "endDate": "2025-03-10T00:00:00Z",
        "outcomes": "[\"Yes\", \"No\"]",
        "outcomePrices": format!("[\"{yes}\", \"{}\"]", 1.0 - yes.parse::<f64>().unwrap()),
        "active": true,
        "closed": closed,
        "closedTime": if closed { json!("2025-03-09 18:30:00+00") } else { Value::Null },
        "volumeNum": 12345.5,
    })
}

#[test]
fn keeps_open_markets_in_the_band() {
    let listing = json!([
        market("1", "0.45", false),
        market("2", "0.1", false),
        market("3", "0.2", false),
        market("4", "0.8", false),
        market("5", "0.95", false),
    ]);
    let batch = parse_markets(&listing.to_string(), now(), "t").unwrap();
    let ids: Vec<_> = batch.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["polymarket:1", "polymarket:3", "polymarket:4"]);
    assert_eq!(batch.ignored, 2);
    assert!(batch.rejected.is_empty());
    let event = &batch.events[0];
    assert_eq!(event.title, "Will 1 happen?");
    assert_eq!(event.description, "Resolves Yes if it happens.");
    assert_eq!(event.created_at, now());
    assert_eq!(event.cutoff.to_rfc3339(), "2025-03-10T00:00:00+00:00");
    assert_eq!(event.metadata["market_prob"], 0.45);
    assert_eq!(event.metadata["source"], "polymarket");
    assert_eq!(
        event.metadata["url"],
        "https://polymarket.com/market/will-1-happen"
    );
    assert_eq!(event.metadata["volume"], 12345.5);
    assert_eq!(event.validate(), Ok(()));
}

#[test]
fn the_yes_price_is_found_by_name_and_other_markets_are_ignored() {
    let mut flipped = market("1", "0.3", false);
    flipped["outcomes"] = json!("[\"No\", \"Yes\"]");
    flipped["outcomePrices"] = json!("[\"0.9\", \"0.1\"]");
    let mut multi = market("2", "0.5", false);
    multi["outcomes"] = json!("[\"Trump\", \"Harris\"]");
    let mut past = market("3", "0.5", false);
    past["endDate"] = json!("2025-03-01T11:00:00Z");
    let mut inactive = market("4", "0.5", false);
    inactive["active"] = json!(false);
    let listing = json!([flipped, multi, past, inactive]);
    let batch = parse_markets(&listing.to_string(), now(), "t").unwrap();
    assert!(batch.events.is_empty(), "{:?}", batch.events);
    assert_eq!(batch.ignored, 4);
}

#[test]
fn closed_markets_with_a_decided_price_resolve() {
    let listing = json!([
        market("1", "1", true),
        market("2", "0", true),
        market("3", "0.5", true),
    ]);
    let batch = parse_markets(&listing.to_string(), now(), "t").unwrap();
    assert!(batch.events.is_empty());
    assert_eq!(batch.ignored, 1);
    assert_eq!(
        batch.resolutions,
        [
            Resolution {
                event_id: "polymarket:1".into(),
                outcome: Outcome::Yes,
                resolved_at: DateTime::parse_from_rfc3339("2025-03-09T18:30:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            },
            Resolution {
                event_id: "polymarket:2".into(),
                outcome: Outcome::No,
                resolved_at: DateTime::parse_from_rfc3339("2025-03-09T18:30:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            },
        ]
    );
}

#[test]
fn a_reader_delivers_each_market_once() {
    let mut reader = GammaReader::new();
    let listing = json!([market("1", "0.5", false), market("1", "0.5", false)]).to_string();
    let first = reader.read_text(&listing, now(), "t").unwrap();
    assert_eq!((first.events.len(), first.ignored), (1, 1));
    let again = reader.read_text(&listing, now(), "t").unwrap();
    assert_eq!((again.events.len(), again.ignored), (0, 2));
    let closed = json!([market("1", "1", true)]).to_string();
    assert_eq!(
        reader
            .read_text(&closed, now(), "t")
            .unwrap()
            .resolutions
            .len(),
        1
    );
    assert_eq!(reader.read_text(&closed, now(), "t").unwrap().ignored, 1);
}

#[test]
fn malformed_markets_are_reported_with_their_index() {
    let mut no_end = market("1", "0.5", false);
    no_end.as_object_mut().unwrap().remove("endDate");
    let mut bad_prices = market("2", "0.5", false);
    bad_prices["outcomePrices"] = json!("0.5, 0.5");
    let mut no_question = market("3", "0.5", false);
    no_question["question"] = Value::Null;
    let mut bad_end = market("4", "0.5", false);
    bad_end["endDate"] = json!("next week");
    let mut wide = market("5", "0.5", false);
    wide["outcomePrices"] = json!("[\"1.5\", \"-0.5\"]");
    let mut short = market("6", "0.5", false);
    short["outcomePrices"] = json!("[\"0.5\"]");
    let mut closed_no_time = market("7", "1", true);
    let object = closed_no_time.as_object_mut().unwrap();
    object.remove("closedTime");
    object.remove("endDate");
    let listing = json!([
        no_end,
        bad_prices,
        no_question,
        bad_end,
        wide,
        short,
        closed_no_time,
        json!({"question": "no id"}),
        json!(3),
        market("8", "0.5", false),
    ]);
    let batch = parse_markets(&listing.to_string(), now(), "gamma").unwrap();
    assert_eq!(batch.events.len(), 1);
    let messages: Vec<String> = batch.rejected.iter().map(ToString::to_string).collect();
    let expected = [
        "gamma markets[0]: missing field `endDate`",
        "gamma markets[1]: `outcomePrices`: must be a JSON array encoded as a string",
        "gamma markets[2]: missing field `question`",
        "gamma markets[3]: `endDate`: expected",
        "gamma markets[4]: `outcomePrices`: must hold one price in [0, 1]",
        "gamma markets[5]: `outcomePrices`: must hold one price in [0, 1]",
        "gamma markets[6]: missing field `closedTime`",
        "gamma markets[7]: missing field `id`",
        "gamma markets[8]: `market` must be a JSON object, got a number",
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for (message, expected) in messages.iter().zip(expected) {
        assert!(message.starts_with(expected), "{message}");
    }
    assert!(matches!(
        parse_markets("{\"markets\": []}", now(), "gamma"),
        Err(SourceError::BadResponse { .. })
    ));
    assert!(matches!(
        parse_markets("<html>", now(), "gamma"),
        Err(SourceError::BadResponse { .. })
    ));
}

/// Serves `router` locally; returns the base URL of its Gamma API.
async fn serve(router: Router) -> String {
    format!("{}/api", crate::test_support::serve(router).await)
}

#[tokio::test]
async fn fetches_pages_and_markets_by_id() {
    // 150 open markets over two pages, every other one in the band.
    async fn markets(Query(query): Query<Vec<(String, String)>>) -> axum::Json<Value> {
        let query_map: HashMap<_, _> = query.iter().cloned().collect();
        let ids: Vec<&str> = query
            .iter()
            .filter(|(key, _)| key == "id")
            .map(|(_, value)| value.as_str())
            .collect();
        if !ids.is_empty() {
            return axum::Json(Value::Array(
                ids.iter().map(|id| market(id, "1", true)).collect(),
            ));
        }
        assert_eq!(query_map["closed"], "false");
        let offset: usize = query_map["offset"].parse().unwrap();
        let limit: usize = query_map["limit"].parse().unwrap();
        let page = (offset..150.min(offset + limit))
            .map(|i| {
                market(
                    &i.to_string(),
                    if i % 2 == 0 { "0.5" } else { "0.9" },
                    false,
                )
            })
            .collect();
        axum::Json(Value::Array(page))
    }
    let base = serve(Router::new().route("/api/markets", get(markets))).await;
    let mut client = GammaClient::new(&base).unwrap();
    let batch = client.open_markets(now()).await.unwrap();
    assert_eq!(batch.events.len(), 75);
    assert_eq!(batch.ignored, 75);
    assert!(client.open_markets(now()).await.unwrap().events.is_empty());

    let batch = client
        .markets_by_id(&["polymarket:4", "6"], now())
        .await
        .unwrap();
    let ids: Vec<_> = batch
        .resolutions
        .iter()
        .map(|r| r.event_id.as_str())
        .collect();
    assert_eq!(ids, ["polymarket:4", "polymarket:6"]);
}

#[tokio::test]
async fn a_failing_api_is_an_error_and_loses_nothing() {
    let base = serve(
        Router::new()
            .route(
                "/api/markets",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
            )
            .route("/bad/markets", get(|| async { "{not json" })),
    )
    .await;
    let mut client = GammaClient::new(&base).unwrap();
    assert!(matches!(
        client.open_markets(now()).await,
        Err(SourceError::Status { status: 500, .. })
    ));
    let mut bad = GammaClient::new(&base.replace("/api", "/bad")).unwrap();
    assert!(matches!(
        bad.open_markets(now()).await,
        Err(SourceError::BadResponse { .. })
    ));
    assert!(matches!(
        GammaClient::new("file:///tmp"),
        Err(SourceError::BadUrl { .. })
    ));
}
