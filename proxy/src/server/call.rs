//! The generic route, `POST /v1/call/{service}`: any JSON body, forwarded
//! as is to the service's URL and priced per call; the answer must be JSON.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::answer::{Answer, Refusal, bad};
use super::auth::authenticate;
use super::priced::{PricedCall, priced_call};
use super::{GatewayState, reply, service};
use crate::config::ServiceKind;

/// `POST /v1/call/{service}`.
pub(super) async fn call(
    State(state): State<Arc<GatewayState>>,
    Path(service_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = call_inner(&state, &service_name, &headers, &body).await;
    reply(&state, &service_name, result)
}

async fn call_inner(
    state: &GatewayState,
    service_name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let claims = authenticate(state, headers)?;
    let service = service(state, service_name, ServiceKind::Generic)?;
    let Ok(key_body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(bad("the body is not valid JSON"));
    };
    let call = PricedCall {
        route: "call",
        url: &service.base_url,
        body,
    };
    priced_call(
        state,
        &claims,
        service_name,
        service,
        call,
        || key_body,
        |answer| {
            serde_json::from_slice::<serde::de::IgnoredAny>(answer).ok()?;
            Some((answer.to_vec(), Some(service.price_per_call)))
        },
    )
    .await
}
