//! The read-only HTTP API, through its router, over a store filled through the store's public
//! API: every endpoint's content, pagination, and the errors.

#![allow(clippy::unwrap_used)] // the helpers unwrap what the tests set up

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::engines::{Engine, TestStore, empty_store};
use serde_json::{Map, Value, json};
use sooth_validator::api::router;
use sooth_validator::store::{NewRun, Store};
use sooth_validator::{
    AgentVersion, Event, ExecutedRun, Miner, ResolvedEvent, RunStatus, SCORING_WINDOW, ScoredEvent,
    leaderboard,
};
use tower::ServiceExt;

const T0: &str = "2026-03-01T00:00:00Z";

fn t(hours: i64) -> DateTime<Utc> {
    T0.parse::<DateTime<Utc>>().unwrap() + TimeDelta::hours(hours)
}

/// RFC 3339 as the API writes it.
fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn new_event(id: &str, created_at: DateTime<Utc>) -> Event {
    Event {
        id: id.to_owned(),
        kind: "market".to_owned(),
        title: format!("Will {id} happen?"),
        description: format!("Details of {id}."),
        metadata: Map::from_iter([
            ("market_prob".to_owned(), json!(0.4)),
            ("source".to_owned(), json!(id)),
        ]),
        created_at,
        cutoff: created_at + TimeDelta::days(3),
    }
}

fn run(event_id: &str, hotkey: &str, hash: &str, prediction: Option<f64>) -> NewRun {
    NewRun {
        event_id: event_id.to_owned(),
        hotkey: hotkey.to_owned(),
        version_hash: hash.to_owned(),
        executed: ExecutedRun {
            status: if prediction.is_some() {
                RunStatus::Ok
            } else {
                RunStatus::Timeout
            },
            prediction,
            duration_ms: 1500,
            logs: format!("{hotkey} thinking about {event_id}\n"),
            gateway_usage: json!({"llm": {"calls": 2}}),
            cost_usd: 0.125,
        },
        finished_at: t(1) + TimeDelta::minutes(10),
    }
}

/// Miners alice (uid 0) and bob (uid 1), registered at T0 - 1 day, each with one version
/// (alice's active from T0, bob's still verified). Events, oldest creation first:
///
/// - `e1` (T0+1h), resolved to 1 at T0+30h: alice 0.75 (Brier 0.0625), bob timed out
///   (imputed 0.5, Brier 0.25);
/// - `e2` (T0+2h), resolved to 0 at T0+31h: alice 0.5 (0.25), bob 0.75 (0.5625);
/// - `poly/3` (T0+3h), open: alice 1.3 (clipped to 0.99), bob no run;
/// - `e4` (T0+4h), open, no runs.
///
/// Means: alice (0.0625 + 0.25) / 2 = 0.15625, bob (0.25 + 0.5625) / 2 = 0.40625.
async fn filled_store(engine: Engine) -> TestStore {
    let store = empty_store(engine).await;
    for (uid, hotkey, hash) in [(0, "alice", "hash-a1"), (1, "bob", "hash-b1")] {
        store
            .register_miner(&Miner {
                uid,
                hotkey: hotkey.to_owned(),
                registered_at: t(-24),
            })
            .await
            .unwrap();
        store
            .add_agent_version(&AgentVersion {
                hotkey: hotkey.to_owned(),
                hash: hash.to_owned(),
                uploaded_at: t(-24),
                verified_at: Some(t(-24) + TimeDelta::seconds(30)),
            })
            .await
            .unwrap();
    }
    assert!(
        store
            .record_activation("alice", "hash-a1", t(0))
            .await
            .unwrap()
    );
    for (id, hours) in [("e1", 1), ("e2", 2), ("poly/3", 3), ("e4", 4)] {
        store.insert_event(&new_event(id, t(hours))).await.unwrap();
    }
    for new_run in [
        run("e1", "alice", "hash-a1", Some(0.75)),
        run("e1", "bob", "hash-b1", None),
        run("e2", "alice", "hash-a1", Some(0.5)),
        run("e2", "bob", "hash-b1", Some(0.75)),
        run("poly/3", "alice", "hash-a1", Some(1.3)),
    ] {
        store.record_run(&new_run).await.unwrap();
    }
    store.resolve_event("e1", 1, t(30)).await.unwrap();
    store.resolve_event("e2", 0, t(31)).await.unwrap();
    store
}

/// The registered miners and the scoring window of `store`, as scoring takes them.
async fn scoring_input(
    store: &Store,
) -> (
    Vec<sooth_validator::Miner>,
    Vec<sooth_validator::ResolvedEvent>,
) {
    let miners = store.registered_miners().await.unwrap();
    let events = store
        .last_resolved_events(
            &miners,
            SCORING_WINDOW,
            chrono::DateTime::<chrono::Utc>::MAX_UTC,
        )
        .await
        .unwrap();
    (miners, events)
}

/// [`filled_store`] with the weights computed at T0+32h.
/// What the scores history keeps of `events`.
fn scored(events: &[ResolvedEvent]) -> Vec<ScoredEvent> {
    events.iter().map(ScoredEvent::of).collect()
}

async fn scored_store(engine: Engine) -> TestStore {
    let store = filled_store(engine).await;
    let (miners, events) = scoring_input(&store).await;
    let standings = leaderboard(&miners, &events).unwrap();
    store
        .record_scores_and_weights(&miners, &scored(&events), &standings, t(32))
        .await
        .unwrap();
    store
}

async fn request(app: &Router, method: Method, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json",
        "{uri}"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    request(app, Method::GET, uri).await
}

/// The ids of a JSON array of objects, in order.
fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

/// The error message of a 400.
async fn bad_request(app: &Router, uri: &str) -> String {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    assert_eq!(body["code"], "bad_query", "{uri}: {body}");
    body["message"].as_str().unwrap().to_owned()
}

async fn health_answers_ok(engine: Engine) {
    let store = empty_store(engine).await;
    let app = router(store.store.clone());
    assert_eq!(
        get(&app, "/health").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

async fn events_list_newest_creation_first_with_every_field(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/events").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body, "id"), ["e4", "poly/3", "e2", "e1"]);
    assert_eq!(
        body[3],
        json!({
            "id": "e1",
            "kind": "market",
            "title": "Will e1 happen?",
            "description": "Details of e1.",
            "metadata": {"market_prob": 0.4, "source": "e1"},
            "created_at": "2026-03-01T01:00:00Z",
            "cutoff": "2026-03-04T01:00:00Z",
            "status": "resolved",
            "outcome": 1,
            "resolved_at": "2026-03-02T06:00:00Z",
        })
    );
    assert_eq!(body[0]["status"], "open");
    assert_eq!(body[0]["outcome"], Value::Null);
    assert_eq!(body[0]["resolved_at"], Value::Null);
    assert_eq!(body[2]["outcome"], 0);
}

async fn events_filter_by_status(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let (status, open) = get(&app, "/v1/events?status=open").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&open, "id"), ["e4", "poly/3"]);
    let (_, resolved) = get(&app, "/v1/events?status=resolved").await;
    assert_eq!(ids(&resolved, "id"), ["e2", "e1"]);
}

async fn events_paginate_with_before(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let (_, first) = get(&app, "/v1/events?limit=3").await;
    assert_eq!(ids(&first, "id"), ["e4", "poly/3", "e2"]);
    let (status, second) = get(&app, "/v1/events?limit=3&before=e2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&second, "id"), ["e1"]);
    let (_, after_last) = get(&app, "/v1/events?before=e1").await;
    assert_eq!(after_last, json!([]));
    // An id with a slash, percent-encoded, as a position.
    let (_, after_poly) = get(&app, "/v1/events?before=poly%2F3&limit=1").await;
    assert_eq!(ids(&after_poly, "id"), ["e2"]);
    // With a filter, `before` still names a position in the newest-first order.
    let (_, resolved) = get(&app, "/v1/events?status=resolved&before=e4").await;
    assert_eq!(ids(&resolved, "id"), ["e2", "e1"]);
    let (_, open) = get(&app, "/v1/events?status=open&before=e4").await;
    assert_eq!(ids(&open, "id"), ["poly/3"]);
}

async fn events_same_creation_instant_paginate_by_id(engine: Engine) {
    let store = empty_store(engine).await;
    for id in ["b", "a", "c"] {
        store.insert_event(&new_event(id, t(1))).await.unwrap();
    }
    let app = router(store.store.clone());
    let (_, first) = get(&app, "/v1/events?limit=2").await;
    assert_eq!(ids(&first, "id"), ["c", "b"]);
    let (_, second) = get(&app, "/v1/events?limit=2&before=b").await;
    assert_eq!(ids(&second, "id"), ["a"]);
}

async fn events_refuse_bad_queries(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let message = bad_request(&app, "/v1/events?status=closed").await;
    assert_eq!(message, r#"status must be open or resolved, got "closed""#);
    for limit in ["0", "1001", "-1", "ten", ""] {
        let message = bad_request(&app, &format!("/v1/events?limit={limit}")).await;
        assert_eq!(
            message,
            format!("limit must be a whole number from 1 to 1000, got {limit:?}")
        );
    }
    let message = bad_request(&app, "/v1/events?colour=blue").await;
    assert!(message.contains("unknown field `colour`"), "{message}");
    let message = bad_request(&app, "/v1/events?limit=1&limit=2").await;
    assert!(message.contains("duplicate field `limit`"), "{message}");
    let message = bad_request(&app, "/v1/events?before=nope").await;
    assert!(message.contains(r#"no event with id "nope""#), "{message}");
    // The largest limit is accepted.
    let (status, _) = get(&app, "/v1/events?limit=1000").await;
    assert_eq!(status, StatusCode::OK);
}

async fn one_event_by_id(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/events/poly%2F3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "poly/3");
    assert_eq!(body["title"], "Will poly/3 happen?");
    assert_eq!(body["created_at"], "2026-03-01T03:00:00Z");
    assert_eq!(body["status"], "open");
    let (status, body) = get(&app, "/v1/events/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"code": "not_found", "message": r#"no event with id "nope""#})
    );
    // Not UTF-8 once percent-decoded.
    let message = bad_request(&app, "/v1/events/%FF").await;
    assert!(message.contains("Invalid UTF-8"), "{message}");
}

async fn runs_of_an_event(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/events/e1/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([
            {
                "hotkey": "alice",
                "version_hash": "hash-a1",
                "status": "ok",
                "prediction": 0.75,
                "clipped_prediction": 0.75,
                "duration_ms": 1500,
                "cost_usd": 0.125,
                "finished_at": "2026-03-01T01:10:00Z",
                "gateway_usage": {"llm": {"calls": 2}},
                "logs": "alice thinking about e1\n",
            },
            {
                "hotkey": "bob",
                "version_hash": "hash-b1",
                "status": "timeout",
                "prediction": null,
                "clipped_prediction": null,
                "duration_ms": 1500,
                "cost_usd": 0.125,
                "finished_at": "2026-03-01T01:10:00Z",
                "gateway_usage": {"llm": {"calls": 2}},
                "logs": "bob thinking about e1\n",
            },
        ])
    );
    let (_, clipped) = get(&app, "/v1/events/poly%2F3/runs").await;
    assert_eq!(clipped[0]["prediction"], 1.3);
    assert_eq!(clipped[0]["clipped_prediction"], 0.99);
    let (status, none) = get(&app, "/v1/events/e4/runs").await;
    assert_eq!((status, none), (StatusCode::OK, json!([])));
    let (status, body) = get(&app, "/v1/events/nope/runs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"code": "not_found", "message": r#"no event with id "nope""#})
    );
}

async fn a_miner_with_versions_and_standing(engine: Engine) {
    let store = scored_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/miners/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "uid": 0,
            "hotkey": "alice",
            "registered_at": "2026-02-28T00:00:00Z",
            "deregistered_at": null,
            "versions": [{
                "hash": "hash-a1",
                "status": "active",
                "uploaded_at": "2026-02-28T00:00:00Z",
                "verified_at": "2026-02-28T00:00:30Z",
                "activated_at": "2026-03-01T00:00:00Z",
                "deactivated_at": null,
                "reason": null,
            }],
            "standing": {
                "computed_at": "2026-03-02T08:00:00Z",
                "rank": 1,
                "mean_brier": 0.15625,
                "events_counted": 2,
                "imputed_count": 0,
                "weight": 1.0,
            },
        })
    );
    let (_, bob) = get(&app, "/v1/miners/bob").await;
    assert_eq!(bob["versions"][0]["status"], "verified");
    assert_eq!(bob["standing"]["rank"], 2);
    assert_eq!(bob["standing"]["mean_brier"], 0.40625);
    assert_eq!(bob["standing"]["imputed_count"], 1);
    assert_eq!(bob["standing"]["weight"], 0.0);
    let (status, body) = get(&app, "/v1/miners/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"code": "not_found", "message": r#"no miner with hotkey "nobody""#})
    );
}

async fn a_miner_before_any_weights_has_no_standing(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/miners/bob").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["uid"], 1);
    assert_eq!(body["standing"], Value::Null);
}

async fn a_miners_runs_with_outcomes_and_briers(engine: Engine) {
    let store = scored_store(engine).await;
    let app = router(store.store.clone());
    let (status, alice) = get(&app, "/v1/miners/alice/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&alice, "event_id"), ["poly/3", "e2", "e1"]);
    // Open: no outcome, no score.
    assert_eq!(alice[0]["outcome"], Value::Null);
    assert_eq!(alice[0]["brier"], Value::Null);
    assert_eq!(alice[0]["imputed"], Value::Null);
    assert_eq!(alice[0]["clipped_prediction"], 0.99);
    // 0.5 on an event resolved to 0: (0.5 - 0)^2.
    assert_eq!(alice[1]["outcome"], 0);
    assert_eq!(alice[1]["brier"], 0.25);
    assert_eq!(alice[1]["imputed"], false);
    // 0.75 on an event resolved to 1: (0.75 - 1)^2.
    assert_eq!(
        alice[2],
        json!({
            "event_id": "e1",
            "hotkey": "alice",
            "version_hash": "hash-a1",
            "status": "ok",
            "prediction": 0.75,
            "clipped_prediction": 0.75,
            "duration_ms": 1500,
            "cost_usd": 0.125,
            "finished_at": "2026-03-01T01:10:00Z",
            "gateway_usage": {"llm": {"calls": 2}},
            "logs": "alice thinking about e1\n",
            "outcome": 1,
            "brier": 0.0625,
            "imputed": false,
        })
    );

    let (_, bob) = get(&app, "/v1/miners/bob/runs").await;
    assert_eq!(ids(&bob, "event_id"), ["e2", "e1"]);
    assert_eq!(bob[0]["brier"], 0.5625);
    // The timed-out run is scored as the imputed 0.5.
    assert_eq!(bob[1]["status"], "timeout");
    assert_eq!(bob[1]["brier"], 0.25);
    assert_eq!(bob[1]["imputed"], true);
}

async fn a_miners_runs_paginate_and_refuse_bad_queries(engine: Engine) {
    let store = scored_store(engine).await;
    let app = router(store.store.clone());
    let (_, first) = get(&app, "/v1/miners/alice/runs?limit=2").await;
    assert_eq!(ids(&first, "event_id"), ["poly/3", "e2"]);
    let (_, second) = get(&app, "/v1/miners/alice/runs?limit=2&before=e2").await;
    assert_eq!(ids(&second, "event_id"), ["e1"]);
    let (_, done) = get(&app, "/v1/miners/alice/runs?limit=2&before=e1").await;
    assert_eq!(done, json!([]));
    // A position on an event the miner did not run is still a position.
    let (_, bob) = get(&app, "/v1/miners/bob/runs?before=poly%2F3").await;
    assert_eq!(ids(&bob, "event_id"), ["e2", "e1"]);

    let (status, body) = get(&app, "/v1/miners/nobody/runs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"code": "not_found", "message": r#"no miner with hotkey "nobody""#})
    );
    let message = bad_request(&app, "/v1/miners/alice/runs?limit=0").await;
    assert_eq!(
        message,
        r#"limit must be a whole number from 1 to 1000, got "0""#
    );
    let message = bad_request(&app, "/v1/miners/alice/runs?limit=5000").await;
    assert_eq!(
        message,
        r#"limit must be a whole number from 1 to 1000, got "5000""#
    );
    let message = bad_request(&app, "/v1/miners/alice/runs?status=open").await;
    assert!(message.contains("unknown field `status`"), "{message}");
    let message = bad_request(&app, "/v1/miners/alice/runs?before=nope").await;
    assert!(message.contains(r#"no event with id "nope""#), "{message}");
}

async fn leaderboard_and_weights_of_the_latest_computation(engine: Engine) {
    let store = scored_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/leaderboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "computed_at": rfc3339(t(32)),
            "rows": [
                // Both events resolved on 2 March: alice's mean that day beat 0.25, bob's
                // did not.
                {"rank": 1, "uid": 0, "hotkey": "alice", "mean_brier": 0.15625,
                 "events_counted": 2, "imputed_count": 0, "weight": 1.0,
                 "consistency": 1.0, "days_scored": 1, "integrity_flags": [],
                 "mmc": null},
                {"rank": 2, "uid": 1, "hotkey": "bob", "mean_brier": 0.40625,
                 "events_counted": 2, "imputed_count": 1, "weight": 0.0,
                 "consistency": 0.0, "days_scored": 1, "integrity_flags": [],
                 "mmc": null},
            ],
            // No reference entry: the store was filled without a daemon.
            "references": [],
        })
    );
    let (status, body) = get(&app, "/v1/weights").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "computed_at": "2026-03-02T08:00:00Z",
            "weights": [
                {"uid": 0, "hotkey": "alice", "weight": 1.0},
                {"uid": 1, "hotkey": "bob", "weight": 0.0},
            ],
        })
    );
}

async fn leaderboard_serves_only_the_latest_computation(engine: Engine) {
    let store = scored_store(engine).await;
    // A later computation where bob wins (e.g. alice passed over): only it is served.
    let (miners, events) = scoring_input(&store).await;
    let mut standings = leaderboard(&miners, &events).unwrap();
    sooth_validator::assign_winner_take_all(&mut standings, |miner| miner.hotkey == "bob");
    store
        .record_scores_and_weights(&miners, &scored(&events), &standings, t(40))
        .await
        .unwrap();
    let app = router(store.store.clone());
    let (_, body) = get(&app, "/v1/weights").await;
    assert_eq!(
        body,
        json!({
            "computed_at": "2026-03-02T16:00:00Z",
            "weights": [
                {"uid": 0, "hotkey": "alice", "weight": 0.0},
                {"uid": 1, "hotkey": "bob", "weight": 1.0},
            ],
        })
    );
    let (_, body) = get(&app, "/v1/leaderboard").await;
    assert_eq!(body["computed_at"], "2026-03-02T16:00:00Z");
    assert_eq!(ids(&body["rows"], "hotkey"), ["alice", "bob"]);
}

async fn leaderboard_and_weights_are_empty_before_any_computation(engine: Engine) {
    let store = filled_store(engine).await;
    let app = router(store.store.clone());
    assert_eq!(
        get(&app, "/v1/leaderboard").await,
        (
            StatusCode::OK,
            json!({"computed_at": null, "rows": [], "references": []})
        )
    );
    assert_eq!(
        get(&app, "/v1/weights").await,
        (StatusCode::OK, json!({"computed_at": null, "weights": []}))
    );
}

async fn unknown_paths_and_other_methods_answer_json_errors(engine: Engine) {
    let store = empty_store(engine).await;
    let app = router(store.store.clone());
    let (status, body) = get(&app, "/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"code": "not_found", "message": "no endpoint at /v1/nothing"})
    );
    let (status, body) = request(&app, Method::POST, "/v1/events").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        json!({"code": "method_not_allowed", "message": "POST is not allowed on /v1/events"})
    );
}

async fn a_closed_store_answers_500_with_a_generic_message(engine: Engine) {
    let store = empty_store(engine).await;
    let app = router(store.clone());
    store.close().await;
    let (status, body) = get(&app, "/v1/leaderboard").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({
            "code": "internal",
            "message": "internal error: the validator database could not be read"
        })
    );
}

crate::on_both_engines!(
    health_answers_ok,
    events_list_newest_creation_first_with_every_field,
    events_filter_by_status,
    events_paginate_with_before,
    events_same_creation_instant_paginate_by_id,
    events_refuse_bad_queries,
    one_event_by_id,
    runs_of_an_event,
    a_miner_with_versions_and_standing,
    a_miner_before_any_weights_has_no_standing,
    a_miners_runs_with_outcomes_and_briers,
    a_miners_runs_paginate_and_refuse_bad_queries,
    leaderboard_and_weights_of_the_latest_computation,
    leaderboard_serves_only_the_latest_computation,
    leaderboard_and_weights_are_empty_before_any_computation,
    unknown_paths_and_other_methods_answer_json_errors,
    a_closed_store_answers_500_with_a_generic_message,
);
