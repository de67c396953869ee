//! The generic route, `POST /v1/call/{service}`: any JSON body, forwarded
//! as is to the service's URL and priced per call; the answer must be JSON.

use axum::http::HeaderMap;

use super::answer::{Answer, Refusal, bad};
use super::auth::authenticate;
use super::priced::{PricedCall, priced_call};
use super::{GatewayState, service};
use crate::config::ServiceKind;

/// Answers a request to `service_name` on this route.
pub(super) async fn answer(
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
