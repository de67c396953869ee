//! The runner's client of the gateway proxy: a [`Gateway`] that forwards
//! each request over HTTP with the run's token, on one shared keep-alive
//! client.
//!
//! Wire format (the proxy serves it):
//!
//! | request | route | body | answer |
//! |---|---|---|---|
//! | chat | `POST /v1/chat` | [`ChatRequest`] | [`ChatResponse`] |
//! | search | `POST /v1/search` | [`SearchRequest`] | [`SearchResponse`] |
//! | call | `POST /v1/call/{service}` | the agent's JSON | the service's JSON |
//!
//! Routes are appended to the base URL's path (which may have a prefix) as
//! percent-encoded segments, and a service name must pass
//! [`check_service_name`] first: no name can lead a request, or the run's
//! token, to another route or another path of the host.
//!
//! Every request carries `Authorization: Bearer <run token>`. Answers carry
//! `x-sooth-cost-usd`, `x-sooth-cache` (`hit` or `miss`) and
//! `x-sooth-retries`. Errors are a JSON [`GatewayError`] with a matching
//! status (402 budget, 429 rate limit, 503 unavailable, 404 not found,
//! 400 bad request, 504 timeout); an error after the proxy called the
//! upstream carries `x-sooth-retries` and `x-sooth-cost-usd` too, and both
//! are read whatever the status, so that a run's gateway log shows the
//! retries of a call that failed (a storm of 503s, say) and what it cost.
//!
//! [`ChatRequest`]: crate::ChatRequest
//! [`ChatResponse`]: crate::ChatResponse
//! [`SearchRequest`]: crate::SearchRequest
//! [`SearchResponse`]: crate::SearchResponse

use futures::future::BoxFuture;

use sooth_protocol::{
    CACHE_HEADER, COST_HEADER, GatewayError, GatewayRequest, GatewayResponse, RETRIES_HEADER,
    check_service_name,
};

use crate::gateway::{Gateway, GatewayAnswer, RunContext};

/// Why an [`HttpGateway`] cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum HttpGatewayError {
    /// The gateway's address is not an `http` or `https` URL that can take
    /// a path.
    #[error("the gateway URL {url:?} is not a usable http(s) base URL")]
    BadUrl {
        /// The address given.
        url: String,
    },
    /// The HTTP client cannot be built (no TLS backend).
    #[error("cannot build the gateway's HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A [`Gateway`] that talks to a gateway proxy over HTTP.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    base_url: reqwest::Url,
    client: reqwest::Client,
}

impl HttpGateway {
    /// A client of the proxy at `base_url` (e.g. `http://127.0.0.1:8700`,
    /// or one with a path prefix such as `https://host/sooth`).
    ///
    /// # Errors
    ///
    /// [`HttpGatewayError`] when the URL is not an http(s) base URL or the
    /// HTTP client cannot be built.
    pub fn new(base_url: impl Into<String>) -> Result<Self, HttpGatewayError> {
        let text = base_url.into();
        let bad_url = || HttpGatewayError::BadUrl { url: text.clone() };
        let base_url = reqwest::Url::parse(&text).map_err(|_| bad_url())?;
        if !matches!(base_url.scheme(), "http" | "https")
            || base_url.cannot_be_a_base()
            || base_url.query().is_some()
            || base_url.fragment().is_some()
        {
            return Err(bad_url());
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(HttpGatewayError::Client)?;
        Ok(Self { base_url, client })
    }

    /// The base URL with `segments` appended, each percent-encoded as one
    /// path segment: whatever a segment holds, the request stays on the
    /// route it names under the base path.
    fn route(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(&self, run: &RunContext, request: GatewayRequest) -> GatewayAnswer {
        let remaining = run.remaining();
        if remaining.is_zero() {
            return GatewayAnswer::free(Err(GatewayError::Timeout));
        }
        let (url, body) = match &request {
            GatewayRequest::Chat(chat) => (self.route(&["v1", "chat"]), serde_json::to_vec(chat)),
            GatewayRequest::Search(search) => {
                (self.route(&["v1", "search"]), serde_json::to_vec(search))
            }
            GatewayRequest::Call { service, body } => {
                if let Err(error) = check_service_name(service) {
                    return GatewayAnswer::free(Err(GatewayError::BadRequest {
                        message: error.to_string(),
                    }));
                }
                (
                    self.route(&["v1", "call", service]),
                    Ok(body.clone().into_bytes()),
                )
            }
        };
        let Ok(body) = body else {
            return GatewayAnswer::free(Err(GatewayError::BadRequest {
                message: "request cannot be encoded".into(),
            }));
        };
        let mut builder = self
            .client
            .post(url)
            .timeout(remaining)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &run.token {
            builder = builder.bearer_auth(token);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return GatewayAnswer::free(Err(GatewayError::Timeout));
            }
            Err(error) => {
                return GatewayAnswer::free(Err(GatewayError::Unavailable {
                    message: format!("gateway unreachable: {}", without_url(&error)),
                }));
            }
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let cost_usd = header(COST_HEADER)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|c| c.is_finite() && *c >= 0.0);
        let cached = header(CACHE_HEADER).is_some_and(|v| v == "hit");
        let retries = header(RETRIES_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let retry_after_ms = header("retry-after")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|secs| (secs * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u32);
        let status = response.status();
        // The headers arrived: what they say was charged and retried holds
        // even when the body is then cut short.
        let answer = |result| GatewayAnswer {
            result,
            cost_usd: cost_usd.unwrap_or(0.0),
            cached,
            retries,
        };
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) if error.is_timeout() => return answer(Err(GatewayError::Timeout)),
            Err(error) => {
                return answer(Err(GatewayError::Unavailable {
                    message: format!("gateway answer cut short: {}", without_url(&error)),
                }));
            }
        };
        answer(if status.is_success() {
            decode_success(&request, &bytes)
        } else {
            Err(decode_error(status.as_u16(), &bytes, retry_after_ms))
        })
    }
}

fn without_url(error: &reqwest::Error) -> String {
    // The URL adds nothing for the agent and may name internal hosts.
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<gateway>");
    }
    text
}

fn decode_success(request: &GatewayRequest, bytes: &[u8]) -> Result<GatewayResponse, GatewayError> {
    let garbage = |what: &str| GatewayError::Unavailable {
        message: format!("the gateway sent an unreadable {what} answer"),
    };
    match request {
        GatewayRequest::Chat(_) => serde_json::from_slice(bytes)
            .map(GatewayResponse::Chat)
            .map_err(|_| garbage("chat")),
        GatewayRequest::Search(_) => serde_json::from_slice(bytes)
            .map(GatewayResponse::Search)
            .map_err(|_| garbage("search")),
        GatewayRequest::Call { .. } => String::from_utf8(bytes.to_vec())
            .ok()
            .filter(|text| serde_json::from_str::<serde_json::Value>(text).is_ok())
            .map(|body| GatewayResponse::Call { body })
            .ok_or_else(|| garbage("call")),
    }
}

fn decode_error(status: u16, bytes: &[u8], retry_after_ms: Option<u32>) -> GatewayError {
    if let Ok(error) = serde_json::from_slice::<GatewayError>(bytes) {
        return error;
    }
    let message = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    match status {
        402 => GatewayError::BudgetExceeded { message },
        429 => GatewayError::RateLimited {
            retry_after_ms: retry_after_ms.unwrap_or(1000),
        },
        404 => GatewayError::NotFound { message },
        400 | 401 | 403 | 413 | 422 => GatewayError::BadRequest {
            message: format!("gateway refused the request ({status}): {message}"),
        },
        504 => GatewayError::Timeout,
        _ => GatewayError::Unavailable {
            message: format!("gateway answered {status}"),
        },
    }
}

impl Gateway for HttpGateway {
    fn handle<'a>(
        &'a self,
        run: &'a RunContext,
        request: GatewayRequest,
    ) -> BoxFuture<'a, GatewayAnswer> {
        Box::pin(self.send(run, request))
    }
}
