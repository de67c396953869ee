//! The search routes: `POST /v1/search` (the default search service) and
//! `POST /v1/search/{service}`. A service that clamps to the run's as-of
//! instant never shows the agent what was published after it.

use std::borrow::Cow;
use std::sync::Arc;

use sooth_protocol::{RunClaims, SearchRequest};

use super::GatewayState;
use super::answer::{Answer, Refusal, bad};
use super::priced::{PricedCall, UpstreamRequest, priced_call};
use crate::config::ServiceConfig;
use crate::upstream::desearch;

/// Answers `claims`' request `body` to `service`, configured as
/// `service_name`.
pub(super) async fn answer(
    state: &GatewayState,
    claims: Arc<RunClaims>,
    service_name: &str,
    service: &ServiceConfig,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let mut request: SearchRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed search request: {e}")))?;
    if request.query.trim().is_empty() {
        return Err(bad("the search query is empty"));
    }
    // Nothing published after this instant reaches the agent (None: the
    // service forwards the window as asked).
    let visible_until = if service.clamps_to_as_of() {
        Some(clamp_window(&mut request, claims.as_of)?)
    } else {
        None
    };
    let window = (
        upstream_instant(request.start_date, "start_date")?,
        upstream_instant(request.end_date, "end_date")?,
    );
    // The key holds the clamped window: runs with different as-of instants
    // that asked the same share an answer only if their windows agree, and
    // that answer holds nothing after its window's end (below), so it
    // leaks to neither.
    let key_body = || serde_json::to_value(&request).unwrap_or_default();
    priced_call(
        state,
        &claims,
        service_name,
        service,
        PricedCall {
            route: "search",
            upstream: || UpstreamRequest {
                url: Cow::Owned(desearch::search_url(&service.base_url)),
                body: Cow::Owned(
                    serde_json::to_vec(&desearch::request(&request, &window)).unwrap_or_default(),
                ),
            },
        },
        key_body,
        |answer| desearch::read_answer(answer, visible_until),
    )
    .await
}

/// Ends `request`'s window at `as_of` (unix seconds): sets the end when
/// absent, lowers it when later. Returns the window's end.
///
/// A window that starts after `as_of` is refused as a bad request rather
/// than sent or answered empty: the agent learns at once that it asked for
/// what it may not see.
fn clamp_window(request: &mut SearchRequest, as_of: i64) -> Result<i64, Refusal> {
    if let Some(start) = request.start_date
        && start > as_of
    {
        return Err(bad(format!(
            "start_date {start} is after this run's as-of instant {as_of}: nothing published after it can be searched"
        )));
    }
    let end = request.end_date.map_or(as_of, |end| end.min(as_of));
    request.end_date = Some(end);
    Ok(end)
}

/// A window bound as the upstream gets it, or a bad request when it is not
/// a representable instant.
fn upstream_instant(unix: Option<i64>, field: &str) -> Result<Option<String>, Refusal> {
    unix.map(|secs| {
        desearch::instant(secs)
            .ok_or_else(|| bad(format!("{field} {secs} is not a representable instant")))
    })
    .transpose()
}
