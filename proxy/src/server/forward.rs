//! Sending a request upstream: signed, with the key that pays, retried
//! within the run's deadline.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use sooth_protocol::{GatewayError, RunClaims};

use super::{GatewayState, Payer, now_unix};
use crate::config::{AuthStyle, ServiceConfig};
use crate::linked_keys::ApiKey;
use crate::metrics::Metrics;
use crate::retry::{backoff, parse_retry_after};

/// The successful end of a forwarded call.
pub(super) struct Forwarded {
    pub(super) body: Bytes,
    pub(super) retries: u32,
}

/// How a forwarded call failed.
pub(super) enum ForwardError {
    /// The upstream answered 200 with something unreadable: it may have
    /// billed us, so the reservation is charged.
    Garbage { retries: u32 },
    /// Nothing was billed.
    Refused { error: GatewayError, retries: u32 },
}

/// Sends `body` to `url` for `payer`, signed and with the key that pays,
/// retrying what may succeed on another try until `deadline`.
pub(super) async fn forward(
    state: &GatewayState,
    service_name: &str,
    service: &ServiceConfig,
    url: &str,
    body: &[u8],
    payer: &Payer<'_>,
    deadline: Instant,
) -> Result<Forwarded, ForwardError> {
    let Some((auth_name, auth_value)) = auth_header(service, payer.key.as_ref()) else {
        return Err(ForwardError::Refused {
            error: GatewayError::Unavailable {
                message: format!("{service_name} has no usable API key"),
            },
            retries: 0,
        });
    };
    let labels = Metrics::service(service_name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let retries = attempt - 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ForwardError::Refused {
                error: GatewayError::Timeout,
                retries,
            });
        }
        let signed = state.signer.sign(body, payer.miner, now_unix());
        let mut request = state
            .client
            .post(url)
            .timeout(remaining)
            .header("content-type", "application/json");
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        request = request.header(auth_name.clone(), auth_value.clone());
        let started = Instant::now();
        let sent = request.body(body.to_vec()).send().await;
        state
            .metrics
            .upstream_latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let (retry_after, failure) = match sent {
            Ok(response) if response.status().is_success() => {
                return match response.bytes().await {
                    Ok(body) => Ok(Forwarded { body, retries }),
                    Err(_) => Err(ForwardError::Garbage { retries }),
                };
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after)
                };
                let retry_after = header("retry-after-ms")
                    .map(|d| d / 1000)
                    .or_else(|| header("retry-after"));
                match status {
                    429 => (
                        retry_after,
                        GatewayError::RateLimited {
                            retry_after_ms: retry_after
                                .map_or(1000, |d| d.as_millis().min(u128::from(u32::MAX)) as u32),
                        },
                    ),
                    500..=599 => (
                        retry_after,
                        GatewayError::Unavailable {
                            message: format!("{service_name} answered {status}"),
                        },
                    ),
                    404 => {
                        return Err(ForwardError::Refused {
                            error: GatewayError::NotFound {
                                message: format!(
                                    "{service_name} does not know this model or route"
                                ),
                            },
                            retries,
                        });
                    }
                    // The upstream refused what we sent: the agent's input was bad.
                    _ => {
                        return Err(ForwardError::Refused {
                            error: GatewayError::BadRequest {
                                message: format!("{service_name} refused the request ({status})"),
                            },
                            retries,
                        });
                    }
                }
            }
            Err(error) if error.is_timeout() => (None, GatewayError::Timeout),
            Err(_) => (
                None,
                GatewayError::Unavailable {
                    message: format!("{service_name} is unreachable"),
                },
            ),
        };
        if attempt >= service.max_attempts {
            return Err(ForwardError::Refused {
                error: failure,
                retries,
            });
        }
        let wait = backoff(attempt, retry_after);
        if Instant::now() + wait >= deadline {
            return Err(ForwardError::Refused {
                error: failure,
                retries,
            });
        }
        state.metrics.retries.get_or_create(&labels).inc();
        tracing::debug!(service = service_name, attempt, ?wait, "retrying upstream");
        tokio::time::sleep(wait).await;
    }
}

/// The header that presents `key` upstream in the service's style, marked
/// sensitive so that the HTTP client's `Debug` output never shows it.
/// `None` when there is no key or it cannot be a header.
fn auth_header(
    service: &ServiceConfig,
    key: Option<&ApiKey>,
) -> Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
    let key = key?.expose();
    let (name, text) = match &service.auth {
        AuthStyle::Bearer => (reqwest::header::AUTHORIZATION, format!("Bearer {key}")),
        AuthStyle::Raw => (reqwest::header::AUTHORIZATION, key.to_owned()),
        AuthStyle::Header(name) => (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).ok()?,
            key.to_owned(),
        ),
    };
    let mut value = reqwest::header::HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

/// When a call for `claims`' run must be answered: the sooner of the
/// token's expiry and the service's upstream timeout.
pub(super) fn deadline(claims: &RunClaims, service: &ServiceConfig) -> Instant {
    let token_left =
        Duration::from_secs(u64::try_from(claims.expires_at - now_unix()).unwrap_or(0));
    let upstream =
        Duration::try_from_secs_f64(service.timeout_secs).unwrap_or(Duration::from_secs(60));
    Instant::now() + token_left.min(upstream)
}
