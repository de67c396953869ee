//! What the search and generic routes share: a call to a service priced
//! per call, served from the cache or sent upstream under a reservation of
//! its price.

use std::borrow::Cow;

use serde_json::Value;
use sooth_protocol::RunClaims;

use super::GatewayState;
use super::answer::{Answer, Refusal, failed, unreadable};
use super::cached::cached;
use super::forward::{ForwardError, deadline, forward};
use super::reservation::{close, reserve};
use crate::config::ServiceConfig;

/// A call to a service priced per call.
pub(super) struct PricedCall<F> {
    /// The route, as the cache key names it (`search`, `call`).
    pub(super) route: &'static str,
    /// Makes the request the upstream gets: only on a miss, so that a
    /// cache hit never builds it.
    pub(super) upstream: F,
}

/// A call as the upstream gets it.
pub(super) struct UpstreamRequest<'a> {
    /// Where the call goes.
    pub(super) url: Cow<'a, str>,
    /// What is sent.
    pub(super) body: Cow<'a, [u8]>,
}

/// One call to a service priced per call (search, generic): answered from
/// the cache under the key made from `key_body`, or else: reserve its
/// price, forward the request `call` makes, and read the answer with
/// `read`, which gives the body
/// for the runner and the cost the upstream reported (or `None`: the
/// price is charged as an estimate). An answer `read` cannot make sense of
/// is charged its price, estimated; a refused call is released.
pub(super) async fn priced_call<'a>(
    state: &GatewayState,
    claims: &RunClaims,
    service_name: &str,
    service: &ServiceConfig,
    call: PricedCall<impl FnOnce() -> UpstreamRequest<'a>>,
    key_body: impl FnOnce() -> Value,
    read: impl FnOnce(&[u8]) -> Option<(Vec<u8>, Option<f64>)>,
) -> Result<Answer, Refusal> {
    cached(
        state,
        service_name,
        service,
        call.route,
        key_body,
        || async move {
            let UpstreamRequest { url, body } = (call.upstream)();
            let payer = state.payer(service_name, &claims.miner);
            let reservation = reserve(
                state,
                claims,
                &payer,
                service_name,
                service,
                service.price_per_call,
            )
            .await?;
            let forwarded = forward(
                state,
                service_name,
                service,
                &url,
                &body,
                &payer,
                deadline(claims, service),
            )
            .await;
            let (answer, retries) = match forwarded {
                Ok(forwarded) => (read(&forwarded.body), forwarded.retries),
                Err(ForwardError::Garbage { retries }) => (None, retries),
                Err(ForwardError::Refused { error, retries }) => {
                    close(state, service_name, reservation, None).await;
                    return Err(failed(error, retries));
                }
            };
            let Some((answer, cost)) = answer else {
                let charged = close(
                    state,
                    service_name,
                    reservation,
                    Some((service.price_per_call, true)),
                )
                .await;
                return Err(unreadable(service_name, charged, retries));
            };
            let charge = cost.map_or((service.price_per_call, true), |cost| (cost, false));
            let charged = close(state, service_name, reservation, Some(charge)).await;
            Ok(Answer::fresh(answer, charged, retries))
        },
    )
    .await
}
