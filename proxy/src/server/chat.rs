//! The chat routes: `POST /v1/chat` (the default chat service) and
//! `POST /v1/chat/{service}`. The request names a model; when it stays
//! unavailable, the service's fallback models are tried in order under one
//! reservation of the dearest one's worst case.

use std::sync::Arc;

use sooth_protocol::{ChatRequest, ChatResponse, GatewayError, RunClaims};

use super::GatewayState;
use super::answer::{Answer, Refusal, bad, failed, unreadable};
use super::cached::cached;
use super::forward::{ForwardError, deadline, forward};
use super::reservation::{close, reserve};
use crate::config::{ModelPrice, ServiceConfig};
use crate::upstream::openai;

fn chat_cost(price: &ModelPrice, input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 * price.input_per_million
        + output_tokens as f64 * price.output_per_million)
        / 1e6
}

/// Prompt tokens, estimated high: a token is rarely shorter than 3 bytes,
/// and each message carries a few tokens of framing.
fn estimate_input_tokens(request: &ChatRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| (m.content.len() + m.role.len()).div_ceil(3) as u64 + 4)
        .sum::<u64>()
        + 3
}

/// Answers `claims`' request `body` to `service`, configured as
/// `service_name`.
pub(super) async fn answer(
    state: &GatewayState,
    claims: Arc<RunClaims>,
    service_name: &str,
    service: &ServiceConfig,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed chat request: {e}")))?;
    if request.messages.is_empty() {
        return Err(bad("a chat request needs at least one message"));
    }
    let max_tokens = match request.max_tokens {
        None => service.max_output_tokens,
        Some(0) => return Err(bad("max_tokens must be at least 1")),
        Some(n) if n > service.max_output_tokens => {
            return Err(bad(format!(
                "max_tokens {n} is over this service's limit of {}",
                service.max_output_tokens
            )));
        }
        Some(n) => n,
    };
    if request
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return Err(bad("temperature must be between 0 and 2"));
    }
    let mut models = vec![request.model.clone()];
    models.extend(
        service
            .fallback_models
            .get(&request.model)
            .into_iter()
            .flatten()
            .cloned(),
    );
    let prices: Vec<ModelPrice> = models
        .iter()
        .filter_map(|m| service.models.get(m).copied())
        .collect();
    if !service.models.contains_key(&request.model) {
        return Err(Refusal::Agent(GatewayError::NotFound {
            message: format!("model {:?} is not offered by {service_name}", request.model),
        }));
    }
    let input_tokens = estimate_input_tokens(&request);
    let worst = prices
        .iter()
        .map(|p| chat_cost(p, input_tokens, u64::from(max_tokens)))
        .fold(0.0, f64::max);
    let request = &request;
    let key_body = || {
        openai::request(
            &request.model,
            &request.messages,
            request.temperature,
            max_tokens,
        )
    };
    cached(
        state,
        service_name,
        service,
        "chat",
        key_body,
        || async move {
            let payer = state.payer(service_name, &claims.miner);
            let reservation = reserve(state, &claims, &payer, service_name, service, worst).await?;
            let deadline = deadline(&claims, service);
            let url = openai::completions_url(&service.base_url);
            let mut total_retries = 0;
            let mut last_error = GatewayError::Unavailable {
                message: "no model answered".into(),
            };
            for (model, price) in models.iter().zip(&prices) {
                let upstream_body =
                    openai::request(model, &request.messages, request.temperature, max_tokens);
                let upstream_body = serde_json::to_vec(&upstream_body).unwrap_or_default();
                match forward(
                    state,
                    service_name,
                    service,
                    &url,
                    &upstream_body,
                    &payer,
                    deadline,
                )
                .await
                {
                    Ok(forwarded) => {
                        total_retries += forwarded.retries;
                        let Some(openai::Completion {
                            content,
                            model: answered_by,
                            usage,
                        }) = openai::read_completion(&forwarded.body)
                        else {
                            let charged =
                                close(state, service_name, reservation, Some((worst, true))).await;
                            return Err(unreadable(service_name, charged, total_retries));
                        };
                        let (cost, estimated) = match usage {
                            Some(usage) => (
                                chat_cost(
                                    price,
                                    u64::from(usage.input_tokens),
                                    u64::from(usage.output_tokens),
                                ),
                                false,
                            ),
                            None => (worst, true),
                        };
                        let charged =
                            close(state, service_name, reservation, Some((cost, estimated))).await;
                        let response = ChatResponse {
                            content,
                            model: answered_by,
                            usage: usage.unwrap_or_default(),
                        };
                        return Ok(Answer::fresh(
                            serde_json::to_vec(&response).unwrap_or_default(),
                            charged,
                            total_retries,
                        ));
                    }
                    Err(ForwardError::Garbage { retries }) => {
                        let charged =
                            close(state, service_name, reservation, Some((worst, true))).await;
                        return Err(unreadable(service_name, charged, total_retries + retries));
                    }
                    Err(ForwardError::Refused { error, retries }) => {
                        total_retries += retries;
                        let fall_back = matches!(
                            error,
                            GatewayError::Unavailable { .. } | GatewayError::RateLimited { .. }
                        );
                        last_error = error;
                        if !fall_back {
                            break;
                        }
                    }
                }
            }
            close(state, service_name, reservation, None).await;
            // Retries are totalled over the fallback models tried.
            Err(failed(last_error, total_retries))
        },
    )
    .await
}
