//! `POST /search`: Desearch-style web search over a corpus of pages per
//! query, published at known instants.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::chat::fnv1a;
use crate::routes::{bad_request, unauthorized};
use crate::shared::{Route, Shared, lock};

/// Most search results one request can ask for.
const MAX_SEARCH_RESULTS: u64 = 20;

/// Search results when the request gives no `count`.
const DEFAULT_SEARCH_RESULTS: u64 = 3;

/// Pages per query in the fake search's corpus.
pub const SEARCH_CORPUS_SIZE: i64 = 100;

/// When the oldest page of every query's corpus was published: 2025-01-01
/// 00:00:00 UTC, unix seconds.
pub const SEARCH_FIRST_PUBLISHED: i64 = 1_735_689_600;

/// Time between two pages of a corpus, seconds (a week: the corpus spans
/// nearly two years from [`SEARCH_FIRST_PUBLISHED`]).
pub const SEARCH_PUBLISHED_STEP: i64 = 7 * 86_400;

#[derive(Debug, Deserialize)]
struct SearchRequest {
    prompt: String,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    start_date: Option<Value>,
    #[serde(default)]
    end_date: Option<Value>,
    #[serde(default)]
    count: Option<u64>,
}

/// A window bound as unix seconds: an RFC 3339 instant, a `YYYY-MM-DD`
/// date (its midnight, UTC) or a number of seconds. `Err` for anything
/// else; `Ok(None)` for an absent bound or `null`.
fn window_bound(value: Option<&Value>) -> Result<Option<i64>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp())
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp())
            })
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

/// The answer to a request that passed the counting and recording.
pub(crate) async fn answer(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    if !shared.authorized(Route::Search, headers, &shared.config.search_api_key) {
        return unauthorized();
    }
    let no_usage = match shared.scripted().await {
        Ok(no_usage) => no_usage,
        Err(response) => return response,
    };
    let request: SearchRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return bad_request(&format!("invalid request body: {err}")),
    };
    if request.prompt.trim().is_empty() {
        return bad_request("prompt must not be empty");
    }
    let count = request
        .count
        .unwrap_or(DEFAULT_SEARCH_RESULTS)
        .min(MAX_SEARCH_RESULTS);
    let hash = fnv1a(request.prompt.as_bytes());
    let topic: String = request.prompt.chars().take(60).collect();
    let tools = request
        .tools
        .as_ref()
        .map(|tools| {
            tools
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let (Ok(start), Ok(end)) = (
        window_bound(request.start_date.as_ref()),
        window_bound(request.end_date.as_ref()),
    ) else {
        return bad_request(
            "start_date and end_date must be RFC 3339 instants, dates or unix seconds",
        );
    };
    let (start, end) = if lock(&shared.script).search_ignores_window {
        (None, None)
    } else {
        (start, end)
    };
    let results: Vec<Value> = (0..SEARCH_CORPUS_SIZE)
        .rev()
        .map(|page| (page, SEARCH_FIRST_PUBLISHED + page * SEARCH_PUBLISHED_STEP))
        .filter(|(_, published)| {
            start.is_none_or(|start| *published >= start) && end.is_none_or(|end| *published <= end)
        })
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .map(|(page, published)| {
            json!({
                "title": format!("Result {} about {topic}", page + 1),
                "url": format!("https://search.fake.invalid/{hash:016x}/{page}"),
                "snippet": format!("Snippet {} for \"{topic}\"{}", page + 1,
                    if tools.is_empty() { String::new() } else { format!(" (tools: {tools})") }),
                "published": chrono::DateTime::from_timestamp(published, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })
        })
        .collect();
    let mut answer = json!({"results": results});
    if !no_usage {
        answer["cost_usd"] = json!(shared.config.search_usd);
        let mut stats = lock(&shared.stats);
        stats.billed_usd += shared.config.search_usd;
        stats.billed_searches += 1;
    }
    axum::Json(answer).into_response()
}
