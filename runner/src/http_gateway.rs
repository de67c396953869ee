//! The runner's client of the gateway proxy: a [`Gateway`] that forwards
//! each request over HTTP with the run's token, on one shared keep-alive
//! client, to one gateway or, in turn, to several that share a ledger.
//!
//! With several gateways, a request goes to the next in turn. One that
//! cannot be connected to (nothing was sent, so nothing was charged) is
//! skipped for the next; one that fails in any other way before it answers
//! (cut mid-call: the call may have been charged) ends the request with
//! `unavailable`, which the agent may retry. Either way that gateway is
//! tried last for [`DOWN_FOR`], so that a dead gateway costs a refused
//! connection at most every few seconds, not a failed call.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// No gateway URL was given.
    #[error("no gateway URL was given")]
    NoUrl,
    /// The HTTP client cannot be built (no TLS backend).
    #[error("cannot build the gateway's HTTP client")]
    Client(#[source] reqwest::Error),
}

/// How long a gateway that failed is tried after the others.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// A [`Gateway`] that talks to one gateway proxy, or several in turn, over HTTP.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    bases: Arc<[Base]>,
    /// Where the next request starts its turn.
    next: Arc<AtomicUsize>,
    /// What `Base::down_until` counts from.
    epoch: Instant,
    client: reqwest::Client,
}

/// One gateway's base URL and, when it last failed, until when it is tried last.
#[derive(Debug)]
struct Base {
    url: reqwest::Url,
    /// Milliseconds after `HttpGateway::epoch`; 0 when up.
    down_until: AtomicU64,
}

/// How one attempt at one gateway ended.
enum Attempt {
    /// The gateway answered (an error included), or the request failed for a reason that
    /// another gateway would not change.
    Done(GatewayAnswer),
    /// The connection failed after the request may have gone out: the gateway is in
    /// trouble, and the call may have been charged, so it goes nowhere else.
    Cut(GatewayAnswer),
    /// No connection could be made: nothing was sent, another gateway may take it.
    NotConnected(GatewayAnswer),
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
        Self::with_failover([base_url])
    }

    /// A client of several proxies sharing one ledger, each request sent to the next in
    /// turn, skipping one that cannot be connected to (see the module's documentation).
    ///
    /// # Errors
    ///
    /// [`HttpGatewayError`] when no URL is given, one is not an http(s) base URL, or the
    /// HTTP client cannot be built.
    pub fn with_failover(
        base_urls: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, HttpGatewayError> {
        let bases = base_urls
            .into_iter()
            .map(|text| {
                let text = text.into();
                let url = parse_base_url(&text)
                    .ok_or_else(|| HttpGatewayError::BadUrl { url: text.clone() })?;
                Ok(Base {
                    url,
                    down_until: AtomicU64::new(0),
                })
            })
            .collect::<Result<Arc<[Base]>, HttpGatewayError>>()?;
        if bases.is_empty() {
            return Err(HttpGatewayError::NoUrl);
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(HttpGatewayError::Client)?;
        Ok(Self {
            bases,
            next: Arc::new(AtomicUsize::new(0)),
            epoch: Instant::now(),
            client,
        })
    }

    /// The gateways in the order this request tries them: from the next in turn, those that
    /// failed lately last.
    fn turn(&self) -> Vec<usize> {
        let count = self.bases.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let now = self.millis_now();
        let mut order: Vec<usize> = (0..count).map(|k| (start + k) % count).collect();
        order.sort_by_key(|&index| self.bases[index].down_until.load(Ordering::Relaxed) > now);
        order
    }

    fn millis_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark_down(&self, index: usize) {
        let until = self
            .millis_now()
            .saturating_add(DOWN_FOR.as_millis() as u64);
        self.bases[index].down_until.store(until, Ordering::Relaxed);
    }

    /// The base URL with `segments` appended, each percent-encoded as one
    /// path segment: whatever a segment holds, the request stays on the
    /// route it names under the base path.
    fn route(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(&self, run: &RunContext, request: GatewayRequest) -> GatewayAnswer {
        let (segments, body) = match &request {
            GatewayRequest::Chat(chat) => (vec!["v1", "chat"], serde_json::to_vec(chat)),
            GatewayRequest::Search(search) => (vec!["v1", "search"], serde_json::to_vec(search)),
            GatewayRequest::Call { service, body } => {
                if let Err(error) = check_service_name(service) {
                    return GatewayAnswer::free(Err(GatewayError::BadRequest {
                        message: error.to_string(),
                    }));
                }
                (
                    vec!["v1", "call", service.as_str()],
                    Ok(body.clone().into_bytes()),
                )
            }
        };
        let Ok(body) = body else {
            return GatewayAnswer::free(Err(GatewayError::BadRequest {
                message: "request cannot be encoded".into(),
            }));
        };
        let body = bytes::Bytes::from(body);
        let mut last = None;
        for index in self.turn() {
            let url = Self::route(&self.bases[index].url, &segments);
            match self.attempt(run, &request, url, body.clone()).await {
                Attempt::Done(answer) => return answer,
                Attempt::Cut(answer) => {
                    self.mark_down(index);
                    return answer;
                }
                Attempt::NotConnected(answer) => {
                    self.mark_down(index);
                    last = Some(answer);
                }
            }
        }
        last.unwrap_or_else(|| GatewayAnswer::free(Err(GatewayError::Timeout)))
    }

    /// Sends `body` for `request` to `url`, once.
    async fn attempt(
        &self,
        run: &RunContext,
        request: &GatewayRequest,
        url: reqwest::Url,
        body: bytes::Bytes,
    ) -> Attempt {
        let remaining = run.remaining();
        if remaining.is_zero() {
            return Attempt::Done(GatewayAnswer::free(Err(GatewayError::Timeout)));
        }
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
                return Attempt::Done(GatewayAnswer::free(Err(GatewayError::Timeout)));
            }
            Err(error) => {
                let answer = GatewayAnswer::free(Err(GatewayError::Unavailable {
                    message: format!("gateway unreachable: {}", without_url(&error)),
                }));
                return if error.is_connect() {
                    Attempt::NotConnected(answer)
                } else {
                    Attempt::Cut(answer)
                };
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
            Err(error) if error.is_timeout() => {
                return Attempt::Done(answer(Err(GatewayError::Timeout)));
            }
            Err(error) => {
                return Attempt::Cut(answer(Err(GatewayError::Unavailable {
                    message: format!("gateway answer cut short: {}", without_url(&error)),
                })));
            }
        };
        Attempt::Done(answer(if status.is_success() {
            decode_success(request, &bytes)
        } else {
            Err(decode_error(status.as_u16(), &bytes, retry_after_ms))
        }))
    }
}

/// `text` as a base URL requests can be routed under, if it is one.
fn parse_base_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    let usable = matches!(url.scheme(), "http" | "https")
        && !url.cannot_be_a_base()
        && url.query().is_none()
        && url.fragment().is_none();
    usable.then_some(url)
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
