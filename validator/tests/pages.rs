//! The leaderboard's web pages, through the validator's router over stores filled through the
//! store's public API: the numbers agree with the JSON API, errors are HTML pages, hostile
//! text stays text, the charts hold the right points, and the static site is safe to open.

#![allow(clippy::unwrap_used)] // the helpers unwrap what the tests set up

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};
use sooth_validator::api::router;
use sooth_validator::meta::Pool;
use sooth_validator::pages::queries::miner_data;
use sooth_validator::pages::write_static_site;
use sooth_validator::store::{NewReferenceForecast, NewRun, Store};
use sooth_validator::{
    AgentVersion, Event, ExecutedRun, Miner, RunStatus, SCORING_WINDOW, ScoredEvent, leaderboard,
};
use tower::ServiceExt;

const T0: &str = "2026-03-01T00:00:00Z";

/// A hotkey that tries to close an attribute and open a tag.
const HOSTILE_HOTKEY: &str = "\"><img src=x onerror=alert(1)>";
const SCRIPT: &str = "<script>alert(1)</script>";

fn t(hours: i64) -> DateTime<Utc> {
    T0.parse::<DateTime<Utc>>().unwrap() + TimeDelta::hours(hours)
}

fn new_event(id: &str, created_at: DateTime<Utc>) -> Event {
    Event {
        id: id.to_owned(),
        kind: "market".to_owned(),
        title: format!("Will {id} happen?"),
        description: format!("Details of {id}."),
        metadata: Map::from_iter([("market_prob".to_owned(), json!(0.4))]),
        created_at,
        cutoff: created_at + TimeDelta::days(3),
    }
}

fn run(event_id: &str, hotkey: &str, prediction: Option<f64>) -> NewRun {
    NewRun {
        event_id: event_id.to_owned(),
        hotkey: hotkey.to_owned(),
        version_hash: format!("hash-{hotkey}"),
        executed: ExecutedRun {
            status: if prediction.is_some() {
                RunStatus::Ok
            } else {
                RunStatus::Timeout
            },
            prediction,
            duration_ms: 1500,
            logs: format!("{hotkey} thinking about {event_id}\n"),
            gateway_usage: json!({
                "calls": [
                    {"service": "chat", "request_hash": "00", "status": "ok", "cost_usd": 0.1,
                     "cached": false, "retries": 0, "duration_ms": 5.0},
                    {"service": "search", "request_hash": "01", "status": "ok", "cost_usd": 0.025,
                     "cached": false, "retries": 0, "duration_ms": 5.0}
                ],
                "total_calls": 2,
                "refused_calls": 0,
                "total_cost_usd": 0.125
            }),
            cost_usd: 0.125,
        },
        finished_at: t(1) + TimeDelta::minutes(10),
    }
}

async fn add_miner(store: &Store, uid: u16, hotkey: &str) {
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
            hash: format!("hash-{hotkey}"),
            uploaded_at: t(-24),
            verified_at: Some(t(-24) + TimeDelta::seconds(30)),
        })
        .await
        .unwrap();
}

/// Scores every resolved event and records the weights at `at`, as the daemon does.
async fn score(store: &Store, at: DateTime<Utc>) {
    let miners = store.registered_miners().await.unwrap();
    let events = store
        .last_resolved_events(&miners, usize::MAX, DateTime::<Utc>::MAX_UTC)
        .await
        .unwrap();
    let window_start = events.len().saturating_sub(SCORING_WINDOW);
    let standings = leaderboard(&miners, &events[window_start..]).unwrap();
    let scored: Vec<ScoredEvent> = events.iter().map(ScoredEvent::of).collect();
    store
        .record_scores_and_weights(&miners, &scored, &standings, at)
        .await
        .unwrap();
}

/// Alice (uid 0) and bob (uid 1); events `e1` (resolved 1: alice 0.75, bob timed out), `e2`
/// (resolved 0: alice 0.5, bob 0.75), `poly/3` (open: alice 1.3), `e4` (open, no runs);
/// scored at T0+32h. Means: alice 0.15625, bob 0.40625.
async fn scored_store() -> Store {
    let store = Store::in_memory().await.unwrap();
    add_miner(&store, 0, "alice").await;
    add_miner(&store, 1, "bob").await;
    for (id, hours) in [("e1", 1), ("e2", 2), ("poly/3", 3), ("e4", 4)] {
        store.insert_event(&new_event(id, t(hours))).await.unwrap();
    }
    for new_run in [
        run("e1", "alice", Some(0.75)),
        run("e1", "bob", None),
        run("e2", "alice", Some(0.5)),
        run("e2", "bob", Some(0.75)),
        run("poly/3", "alice", Some(1.3)),
    ] {
        store.record_run(&new_run).await.unwrap();
    }
    store.resolve_event("e1", 1, t(30)).await.unwrap();
    store.resolve_event("e2", 0, t(31)).await.unwrap();
    score(&store, t(32)).await;
    store
}

async fn fetch(app: &Router, uri: &str) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The page at `uri`, which must answer 200 with HTML.
async fn page(app: &Router, uri: &str) -> String {
    let (status, content_type, body) = fetch(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    assert!(
        content_type.starts_with("text/html"),
        "{uri}: {content_type}"
    );
    body
}

/// HTML-escaped as askama escapes text.
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The HTML of the first element starting with `start`, up to `end`.
fn section<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the page"));
    let rest = &html[from..];
    let to = rest.find(end).map_or(rest.len(), |at| at + end.len());
    &rest[..to]
}

/// The `data-value` of the cell with `data-field="{field}"` in `html`.
fn value(html: &str, field: &str) -> String {
    let marker = format!("data-field=\"{field}\" data-value=\"");
    let from = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {field} in {html}"))
        + marker.len();
    let rest = &html[from..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Whether a `data-value` holds the JSON number (or null, an empty value).
fn same_number(html_value: &str, json_value: &Value) -> bool {
    match json_value.as_f64() {
        None => json_value.is_null() && html_value.is_empty(),
        Some(expected) => html_value.parse::<f64>().ok() == Some(expected),
    }
}

fn assert_no_raw_markup_from_data(html: &str) {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "a <script> tag in the page");
    assert!(!lower.contains("<img"), "an <img> tag in the page");
}

#[tokio::test]
async fn leaderboard_numbers_are_the_json_apis() {
    let app = router(scored_store().await);
    let (_, _, json_text) = fetch(&app, "/v1/leaderboard").await;
    let json: Value = serde_json::from_str(&json_text).unwrap();
    let html = page(&app, "/").await;

    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(html.matches("<tr class=\"miner\"").count(), rows.len());
    for row in rows {
        let hotkey = row["hotkey"].as_str().unwrap();
        let line = section(&html, &format!("data-hotkey=\"{hotkey}\""), "</tr>");
        for field in [
            "rank",
            "mean_brier",
            "events_counted",
            "imputed_count",
            "consistency",
            "mmc",
            "weight",
        ] {
            let shown = value(line, field);
            assert!(
                same_number(&shown, &row[field]),
                "{hotkey} {field}: page {shown:?}, JSON {}",
                row[field]
            );
        }
        assert!(
            line.contains(&format!("href=\"/miners/{hotkey}\"")),
            "{line}"
        );
    }
    // Alice first, her mean 0.15625 shown with 4 decimals (an exact tie, rounded to even).
    let alice = section(&html, "data-hotkey=\"alice\"", "</tr>");
    assert!(alice.contains(">0.1562<"), "{alice}");
    assert!(html.find("data-hotkey=\"alice\"") < html.find("data-hotkey=\"bob\""));
    // Served pages fit a phone and refresh themselves.
    assert!(html.contains("name=\"viewport\""));
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

#[tokio::test]
async fn an_empty_competition_says_so() {
    let app = router(Store::in_memory().await.unwrap());
    let html = page(&app, "/").await;
    assert!(html.contains("No miner has been scored yet"), "{html}");
    assert!(!html.contains("<table"));
    let operator = page(&app, "/operator").await;
    assert!(operator.contains("No runs yet."), "{operator}");
    assert_eq!(value(&operator, "open"), "0");
}

#[tokio::test]
async fn unknown_miners_and_events_are_html_404s_and_the_api_stays_json() {
    let app = router(scored_store().await);
    for uri in ["/miners/nobody", "/events/nothing", "/miners/%3Cscript%3E"] {
        let (status, content_type, body) = fetch(&app, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            content_type.starts_with("text/html"),
            "{uri}: {content_type}"
        );
        assert!(body.contains("Not found"), "{body}");
        assert_no_raw_markup_from_data(&body);
    }
    let (status, content_type, _) = fetch(&app, "/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/json");
    let (status, content_type, _) = fetch(&app, "/v1/miners/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/json");
}

#[tokio::test]
async fn absurd_queries_are_html_400s() {
    let app = router(scored_store().await);
    for uri in [
        "/miners/alice?runs=99999999",
        "/miners/alice?runs=0",
        "/miners/alice?runs=abc",
        "/miners/alice?runs=-1",
        "/miners/alice?runs=1&runs=2",
        "/miners/alice?colour=red",
        "/?page=2",
        "/operator?x=1",
        "/events/e1?%3Cscript%3E=1",
    ] {
        let (status, content_type, body) = fetch(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(content_type.starts_with("text/html"), "{uri}");
        assert!(body.contains("Bad request"), "{body}");
        assert_no_raw_markup_from_data(&body);
    }
    let html = page(&app, "/miners/alice?runs=1").await;
    assert_eq!(
        section(&html, "<table id=\"runs\">", "</table>")
            .matches("<tr>")
            .count(),
        1 + 1,
        "the header row and one run"
    );
}

#[tokio::test]
async fn hostile_text_is_shown_escaped() {
    let store = scored_store().await;
    add_miner(&store, 2, HOSTILE_HOTKEY).await;
    let long_line = "x".repeat(100 * 1024);
    let mut event = new_event("<b>bold</b>", t(5));
    event.title = SCRIPT.to_owned();
    event.description = format!("{HOSTILE_HOTKEY}\n{long_line}");
    store.insert_event(&event).await.unwrap();
    let mut hostile_run = run("<b>bold</b>", HOSTILE_HOTKEY, Some(0.3));
    hostile_run.executed.logs = format!("{SCRIPT}\n{long_line}");
    hostile_run.executed.gateway_usage = json!({
        "calls": [{"service": SCRIPT, "cost_usd": 0.5}],
        "total_calls": 1,
        "total_cost_usd": 0.5
    });
    hostile_run.executed.cost_usd = 0.5;
    store.record_run(&hostile_run).await.unwrap();
    store.resolve_event("<b>bold</b>", 1, t(40)).await.unwrap();
    score(&store, t(41)).await;
    let app = router(store);

    let board = page(&app, "/").await;
    assert_no_raw_markup_from_data(&board);
    assert!(board.contains(&escaped(HOSTILE_HOTKEY)), "{board}");
    // The quote that would close the attribute is escaped there too.
    assert!(
        board.contains("data-hotkey=\"&#34;&#62;&#60;img"),
        "{board}"
    );
    assert!(board.contains("href=\"/miners/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\""));

    let miner_uri = "/miners/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E";
    let miner = page(&app, miner_uri).await;
    assert_no_raw_markup_from_data(&miner);
    assert!(miner.contains(&escaped(SCRIPT)), "the logs, escaped");
    assert!(
        miner.contains("Truncated: the first 2000 of"),
        "the long logs cut"
    );
    assert!(
        miner.len() < 60 * 1024,
        "the 100 KB line is not on the page"
    );
    assert!(miner.contains("href=\"/events/%3Cb%3Ebold%3C%2Fb%3E\""));

    let event_page = page(&app, "/events/%3Cb%3Ebold%3C%2Fb%3E").await;
    assert_no_raw_markup_from_data(&event_page);
    assert!(!event_page.contains("<b>"));
    assert!(event_page.contains(&escaped(SCRIPT)));
    assert!(
        event_page.contains(&long_line),
        "the description shown whole, as text"
    );

    let operator = page(&app, "/operator").await;
    assert_no_raw_markup_from_data(&operator);
    assert!(
        operator.contains(&escaped(SCRIPT)),
        "the hostile service name, escaped"
    );
    // Long words wrap anywhere rather than widen the page.
    assert!(operator.contains("overflow-wrap:anywhere"));
}

#[tokio::test]
async fn miner_page_charts_hold_the_scores_and_the_bins() {
    let app = router(scored_store().await);
    let html = page(&app, "/miners/alice").await;
    // Two scored events (e1, e2): two points, the last the leaderboard's mean.
    let rolling = section(&html, "<figure id=\"rolling\">", "</figure>");
    assert!(
        rolling.contains("data-series=\"alice\" data-points=\"2\""),
        "{rolling}"
    );
    assert_eq!(value(rolling, "scored_events"), "2");
    assert_eq!(value(rolling, "latest_rolling"), "0.15625");
    assert_eq!(value(&html, "mean_brier"), "0.15625");
    // Alice's ok runs on resolved events: 0.75 (outcome 1) in bin 7, 0.5 (outcome 0) in bin 5.
    let calibration = section(&html, "<figure id=\"calibration\">", "</figure>");
    assert_eq!(calibration.matches("<circle class=\"bin\"").count(), 2);
    assert!(calibration.contains("data-count=\"1\" data-mean=\"0.75\" data-observed=\"1\""));
    assert!(calibration.contains("data-count=\"1\" data-mean=\"0.5\" data-observed=\"0\""));
    assert!(calibration.contains("class=\"diagonal\""));
    let bins = section(&html, "<table id=\"bins\">", "</table>");
    assert_eq!(bins.matches("<tr>").count(), 1 + 10);
    // Recent runs: poly/3 (open, clipped to 0.99), e2, e1, newest first.
    let runs = section(&html, "<table id=\"runs\">", "</table>");
    assert_eq!(runs.matches("<tr>").count(), 1 + 3);
    assert!(runs.find("poly/3") < runs.find(">e2<"));
    assert_eq!(value(runs, "clipped_prediction"), "0.99");
    assert_eq!(value(runs, "gateway_calls"), "2");
    assert_eq!(value(runs, "cost_usd"), "0.125");
}

#[tokio::test]
async fn a_long_history_is_downsampled_and_ends_on_the_window_mean() {
    let store = Store::in_memory().await.unwrap();
    add_miner(&store, 0, "carol").await;
    let events = 640;
    let mut runs = Vec::new();
    for i in 0..events {
        let id = format!("ev-{i:04}");
        store
            .insert_event(&new_event(&id, t(i64::from(i))))
            .await
            .unwrap();
        // Alternating forecasts, a failed run every seventh event (imputed 0.5).
        let prediction = (i % 7 != 0).then_some(if i % 2 == 0 { 0.8 } else { 0.4 });
        runs.push(run(&id, "carol", prediction));
    }
    store.record_runs(&runs).await.unwrap();
    let mut briers = Vec::new();
    for i in 0..events {
        let outcome = u8::from(i % 3 == 0);
        store
            .resolve_event(&format!("ev-{i:04}"), outcome, t(i64::from(i) + 80))
            .await
            .unwrap();
        let p = if i % 7 == 0 {
            0.5
        } else if i % 2 == 0 {
            0.8
        } else {
            0.4
        };
        briers.push((p - f64::from(outcome)).powi(2));
    }
    score(&store, t(i64::from(events) + 100)).await;
    let app = router(store);
    let html = page(&app, "/miners/carol").await;
    let rolling = section(&html, "<figure id=\"rolling\">", "</figure>");
    assert!(
        rolling.contains("data-series=\"carol\" data-points=\"500\""),
        "{rolling}"
    );
    assert_eq!(value(rolling, "scored_events"), events.to_string());
    let window = &briers[briers.len() - SCORING_WINDOW..];
    let expected = window.iter().sum::<f64>() / 101.0;
    let shown: f64 = value(rolling, "latest_rolling").parse().unwrap();
    assert!((shown - expected).abs() < 1e-12, "{shown} vs {expected}");
    let standing: f64 = value(&html, "mean_brier").parse().unwrap();
    assert!(
        (shown - standing).abs() < 1e-12,
        "{shown} vs the leaderboard's {standing}"
    );
}

const BENCHMARK: &str = "market-baseline";

/// A reference entry's forecast on `event_id` (a benchmark's run takes 900 ms, a pool's none):
/// `ok` with `Some(prediction)`; with `None`, a timeout (a benchmark) or a pool over no
/// forecast.
fn reference_forecast(
    event_id: &str,
    entry: &str,
    prediction: Option<f64>,
) -> NewReferenceForecast {
    let benchmark = entry == BENCHMARK;
    let executed = |status| ExecutedRun {
        status,
        prediction,
        duration_ms: if benchmark { 900 } else { 0 },
        logs: String::new(),
        gateway_usage: json!({}),
        cost_usd: 0.0,
    };
    NewReferenceForecast {
        event_id: event_id.to_owned(),
        entry: entry.to_owned(),
        executed: match (prediction, benchmark) {
            (Some(_), _) => Some(executed(RunStatus::Ok)),
            (None, true) => Some(executed(RunStatus::Timeout)),
            (None, false) => None,
        },
        finished_at: t(5),
    }
}

/// [`scored_store`] with carol (uid 2, registered, no run: imputed on e1 and e2), the
/// benchmark `market-baseline` and the four pools, each with a forecast on e1 and e2:
/// benchmark 0.6 on e1 (Brier 0.16), timed out on e2 (0.25); `meta:linear` 0.75 on e1
/// (0.0625) and 0.625 on e2 (0.390625); the weighted pools over no forecast on e2.
async fn store_with_references() -> Store {
    let store = scored_store().await;
    add_miner(&store, 2, "carol").await;
    score(&store, t(33)).await;
    store
        .set_benchmark(BENCHMARK, "hash-benchmark")
        .await
        .unwrap();
    let pools: Vec<&str> = Pool::ALL.iter().map(|pool| pool.name()).collect();
    store.ensure_meta_entries(&pools).await.unwrap();
    store
        .record_reference_forecasts(&[
            reference_forecast("e1", BENCHMARK, Some(0.6)),
            reference_forecast("e2", BENCHMARK, None),
            reference_forecast("e1", "meta:linear", Some(0.75)),
            reference_forecast("e2", "meta:linear", Some(0.625)),
            reference_forecast("e1", "meta:log-odds", Some(0.75)),
            reference_forecast("e2", "meta:log-odds", Some(0.6)),
            reference_forecast("e1", "meta:linear-weighted", Some(0.75)),
            reference_forecast("e2", "meta:linear-weighted", None),
            reference_forecast("e1", "meta:log-odds-weighted", Some(0.75)),
            reference_forecast("e2", "meta:log-odds-weighted", None),
        ])
        .await
        .unwrap();
    store
}

/// The x coordinates of the polyline of series `name` in a chart.
fn series_xs(chart: &str, name: &str) -> Vec<String> {
    let line = section(chart, &format!("data-series=\"{name}\""), "/>");
    let points = section(line, " points=\"", "\"/>");
    points[" points=\"".len()..points.len() - "\"/>".len()]
        .split(' ')
        .map(|point| point.split(',').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_score_without_a_run_is_in_the_miners_history() {
    let store = store_with_references().await;
    let carol = miner_data(&store, "carol", 20).await.unwrap().unwrap();
    assert_eq!(carol.scores, vec![(t(30), 0.25), (t(31), 0.25)]);
    assert!(carol.calibration.is_empty(), "no forecast to calibrate");
    assert!(carol.recent.is_empty());
    let html = page(&router(store), "/miners/carol").await;
    let rolling = section(&html, "<figure id=\"rolling\">", "</figure>");
    assert!(
        rolling.contains("data-series=\"carol\" data-points=\"2\""),
        "{rolling}"
    );
    assert_eq!(value(rolling, "latest_rolling"), "0.25");
    assert!(html.contains("No runs yet."));
}

#[tokio::test]
async fn the_references_are_drawn_beside_the_miner_on_its_events() {
    let store = store_with_references().await;
    for hotkey in ["alice", "carol"] {
        let data = miner_data(&store, hotkey, 20).await.unwrap().unwrap();
        let names: Vec<&str> = data.references.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, [BENCHMARK, "meta:linear"], "{hotkey}");
        // Scored on every resolved event, the miner's events are the references' whole
        // history: the series are the store's, point for point.
        for reference in &data.references {
            assert_eq!(
                reference.scores,
                store.reference_history(&reference.name).await.unwrap(),
                "{hotkey} {}",
                reference.name
            );
        }
        assert_eq!(
            data.references[0].scores,
            vec![(t(30), (0.6f64 - 1.0).powi(2)), (t(31), 0.25)]
        );
        assert_eq!(
            data.references[1].scores,
            vec![(t(30), 0.0625), (t(31), 0.390625)]
        );
    }

    let app = router(store);
    let html = page(&app, "/miners/alice").await;
    let rolling = section(&html, "<figure id=\"rolling\">", "</figure>");
    for name in ["alice", BENCHMARK, "meta:linear"] {
        assert!(
            rolling.contains(&format!("data-series=\"{name}\" data-points=\"2\"")),
            "{name}: {rolling}"
        );
        assert_eq!(
            series_xs(rolling, name),
            series_xs(rolling, "alice"),
            "{name}"
        );
    }
    assert!(
        section(rolling, &format!("data-series=\"{BENCHMARK}\""), "/>")
            .contains("stroke-dasharray"),
        "a reference is dashed"
    );
    for pool in [
        "meta:log-odds",
        "meta:linear-weighted",
        "meta:log-odds-weighted",
    ] {
        assert!(
            !rolling.contains(&format!("data-series=\"{pool}\"")),
            "{pool}"
        );
    }
}

#[tokio::test]
async fn the_event_page_lists_every_reference_marked_as_such() {
    let app = router(store_with_references().await);
    let html = page(&app, "/events/e2").await;
    let table = section(&html, "<table id=\"forecasts\">", "</table>");
    assert_eq!(table.matches("<tr class=\"miner\"").count(), 2);
    assert_eq!(table.matches("<tr class=\"reference\"").count(), 1 + 4);
    // Benchmarks first, then the pools by name, after the miners.
    let order: Vec<usize> = [
        "data-hotkey=\"bob\"",
        "data-reference=\"market-baseline\"",
        "data-reference=\"meta:linear\"",
        "data-reference=\"meta:linear-weighted\"",
        "data-reference=\"meta:log-odds\"",
        "data-reference=\"meta:log-odds-weighted\"",
    ]
    .iter()
    .map(|marker| table.find(marker).unwrap())
    .collect();
    assert!(order.is_sorted(), "{table}");

    let benchmark = section(table, "data-reference=\"market-baseline\"", "</tr>");
    assert!(benchmark.contains("data-kind=\"benchmark\""), "{benchmark}");
    assert!(benchmark.contains("(benchmark)"));
    assert!(benchmark.contains("timeout"));
    assert_eq!(value(benchmark, "prediction"), "");
    assert_eq!(value(benchmark, "brier"), "0.25");
    assert_eq!(value(benchmark, "duration_ms"), "900");
    let linear = section(table, "data-reference=\"meta:linear\"", "</tr>");
    assert!(linear.contains("data-kind=\"meta-model\""), "{linear}");
    assert!(linear.contains("(meta-model)"));
    assert_eq!(value(linear, "prediction"), "0.625");
    assert_eq!(value(linear, "clipped_prediction"), "0.625");
    assert_eq!(value(linear, "brier"), "0.390625");
    assert_eq!(value(linear, "duration_ms"), "");
    let weighted = section(table, "data-reference=\"meta:linear-weighted\"", "</tr>");
    assert!(weighted.contains("no_forecasts"), "{weighted}");
    assert_eq!(
        value(weighted, "brier"),
        "0.25",
        "scored as the imputed 0.5"
    );

    let e1 = page(&app, "/events/e1").await;
    let benchmark = section(&e1, "data-reference=\"market-baseline\"", "</tr>");
    assert_eq!(value(benchmark, "prediction"), "0.6");
    let brier: f64 = value(benchmark, "brier").parse().unwrap();
    assert!((brier - 0.16).abs() < 1e-12, "{brier}");

    // An open event without forecasts lists every entry, without a score.
    let open = page(&app, "/events/e4").await;
    assert_eq!(open.matches("<tr class=\"reference\"").count(), 5);
    let pool = section(&open, "data-reference=\"meta:log-odds\"", "</tr>");
    assert!(pool.contains(">none<"), "{pool}");
    assert_eq!(value(pool, "brier"), "");
}

#[tokio::test]
async fn event_page_lists_every_forecast() {
    let app = router(scored_store().await);
    let html = page(&app, "/events/e1").await;
    assert!(html.contains("Will e1 happen?"));
    let alice = section(&html, "data-hotkey=\"alice\"", "</tr>");
    assert_eq!(value(alice, "prediction"), "0.75");
    assert_eq!(value(alice, "brier"), "0.0625");
    let bob = section(&html, "data-hotkey=\"bob\"", "</tr>");
    assert!(bob.contains("timeout"));
    assert_eq!(value(bob, "prediction"), "");
    assert_eq!(value(bob, "brier"), "0.25");
    assert!(html.contains("data-field=\"outcome\">1<"));
    let open = page(&app, "/events/poly%2F3").await;
    assert!(open.contains("data-field=\"status\">open<"));
}

#[tokio::test]
async fn operator_page_counts_the_last_days_runs() {
    let app = router(scored_store().await);
    let html = page(&app, "/operator").await;
    assert_eq!(value(&html, "open"), "2");
    assert_eq!(value(&html, "resolved"), "2");
    assert_eq!(value(&html, "runs"), "5");
    let statuses = section(&html, "<table id=\"statuses\">", "</table>");
    assert_eq!(value(statuses, "ok"), "4");
    assert_eq!(value(statuses, "timeout"), "1");
    let durations = section(&html, "<table id=\"durations\">", "</table>");
    for label in ["p50", "p90", "p99", "max"] {
        assert_eq!(value(durations, label), "1500");
    }
    let spend = section(&html, "<table id=\"spend\">", "</table>");
    let chat = section(spend, ">chat<", "</tr>");
    assert_eq!(value(chat, "calls"), "5");
    assert!((value(chat, "cost_usd").parse::<f64>().unwrap() - 0.5).abs() < 1e-12);
    assert!((value(spend, "total_cost_usd").parse::<f64>().unwrap() - 0.625).abs() < 1e-12);
}

#[tokio::test]
async fn static_site_has_safe_names_and_relative_links() {
    let store = scored_store().await;
    add_miner(&store, 2, HOSTILE_HOTKEY).await;
    store
        .insert_event(&new_event("../../etc/passwd", t(6)))
        .await
        .unwrap();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("site");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("stale.html"), "old").unwrap();

    let summary = write_static_site(&store, &dir).await.unwrap();
    assert_eq!(summary.miners, 3);
    assert_eq!(summary.events, 5);
    assert!(
        !dir.join("stale.html").exists(),
        "the site is replaced whole"
    );
    let leftovers: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("site")]);

    for folder in ["miners", "events"] {
        for entry in std::fs::read_dir(dir.join(folder)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".html").unwrap();
            assert!(
                stem.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{name}"
            );
        }
    }
    assert!(dir.join("events/poly_2F3.html").exists());
    assert!(
        dir.join("events/_2E_2E_2F_2E_2E_2Fetc_2Fpasswd.html")
            .exists()
    );

    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(index.contains("href=\"miners/alice.html\""));
    assert!(index.contains("href=\"operator.html\""));
    assert!(!index.contains("http-equiv=\"refresh\""));
    assert!(!index.contains("href=\"/"), "no absolute link");
    assert_no_raw_markup_from_data(&index);
    let alice = std::fs::read_to_string(dir.join("miners/alice.html")).unwrap();
    assert!(alice.contains("href=\"../events/poly_2F3.html\""));
    assert!(alice.contains("href=\"../index.html\""));
    assert!(!alice.contains("href=\"/"), "no absolute link");
    assert!(dir.join("operator.html").exists());

    // Writing again replaces the site in place.
    write_static_site(&store, &dir).await.unwrap();
    assert!(dir.join("index.html").exists());
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 1);
}
