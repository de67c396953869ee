//! The Desearch-style web search format.

use serde_json::Value;
use sooth_protocol::{SearchRequest, SearchResponse, SearchResult};

/// The search route of the upstream at `base_url`.
pub(crate) fn search_url(base_url: &str) -> String {
    format!("{}/search", base_url.trim_end_matches('/'))
}

/// The body that runs `request`'s query within `window` (its bounds as
/// [`instant`] writes them).
pub(crate) fn request(request: &SearchRequest, window: &(Option<String>, Option<String>)) -> Value {
    serde_json::json!({
        "prompt": request.query,
        "tools": ["web"],
        "count": request.max_results.unwrap_or(10).clamp(1, 50),
        "start_date": window.0,
        "end_date": window.1,
    })
}

/// A window bound as the upstream gets it: RFC 3339 in UTC to the second
/// (`2026-01-01T12:00:00Z`); `None` when `unix` is not a representable
/// instant.
pub(crate) fn instant(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Reads an answer into the body the runner gets and the cost the upstream
/// reported (`None`: it did not say). Results published after
/// `visible_until` (unix seconds) are dropped. `None` when the answer is
/// not a list of results.
pub(crate) fn read_answer(
    body: &[u8],
    visible_until: Option<i64>,
) -> Option<(Vec<u8>, Option<f64>)> {
    let value = serde_json::from_slice::<Value>(body).ok()?;
    let mut results = value
        .get("results")?
        .as_array()?
        .iter()
        .map(search_result)
        .collect::<Option<Vec<_>>>()?;
    // An upstream may ignore the window: what it sends from after the
    // window's end is dropped here. An undated result is kept, as the
    // upstream filtered it by a date it did not tell.
    if let Some(until) = visible_until {
        results.retain(|r| r.published.is_none_or(|p| p <= until));
    }
    let cost = value
        .get("cost_usd")
        .and_then(Value::as_f64)
        .filter(|c| c.is_finite() && *c >= 0.0);
    let answer = serde_json::to_vec(&SearchResponse { results }).ok()?;
    Some((answer, cost))
}

/// One upstream hit; its publication date may be a date, an RFC 3339
/// instant or Unix seconds.
fn search_result(value: &Value) -> Option<SearchResult> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let published = value.get("published").and_then(|p| match p {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp())
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp())
            }),
        _ => None,
    });
    Some(SearchResult {
        title: text("title")?,
        url: text("url")?,
        snippet: text("snippet").unwrap_or_default(),
        published,
    })
}
