//! The generic route, `POST /v1/call/{service}`: any JSON body, forwarded
//! as is to the service's URL and priced per call; the answer must be JSON.

use std::borrow::Cow;
use std::sync::Arc;

use sooth_protocol::RunClaims;

use super::GatewayState;
use super::answer::{Answer, Refusal, bad};
use super::priced::{PricedCall, UpstreamRequest, priced_call};
use crate::config::ServiceConfig;

/// Answers `claims`' request `body` to `service`, configured as
/// `service_name`.
pub(super) async fn answer(
    state: &GatewayState,
    claims: Arc<RunClaims>,
    service_name: &str,
    service: &ServiceConfig,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let Ok(key_body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(bad("the body is not valid JSON"));
    };
    priced_call(
        state,
        &claims,
        service_name,
        service,
        PricedCall {
            route: "call",
            upstream: || UpstreamRequest {
                url: Cow::Borrowed(&service.base_url),
                body: Cow::Borrowed(body),
            },
        },
        || key_body,
        |answer| {
            serde_json::from_slice::<serde::de::IgnoredAny>(answer).ok()?;
            Some((answer.to_vec(), Some(service.price_per_call)))
        },
    )
    .await
}
