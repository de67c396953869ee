//! The gateway's HTTP service: authenticates run tokens, reserves budget,
//! forwards signed requests upstream with retries, settles the real cost.
//!
//! Routes (the bodies and headers are `sooth_protocol`'s):
//! `POST /v1/chat` (the default chat service) and `POST /v1/chat/{service}`,
//! `POST /v1/search` and `POST /v1/search/{service}`,
//! `POST /v1/call/{service}`, `GET /health`, `GET /metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::VerifyingKey;
use sooth_protocol::{
    ChatRequest, ChatResponse, GatewayError, SearchRequest, SearchResponse, SearchResult,
    TokenUsage,
};

use crate::cache::{CacheMode, CachedResponse, ResponseCache, cache_key};
use crate::config::{
    AuthStyle, CachePolicy, ModelPrice, ProxyConfig, ServiceConfig, ServiceKind, shown_name,
};
use crate::ledger::{BudgetScope, Ledger, LedgerError, Reservation, ReservationId, utc_today};
use crate::linked_keys::{ApiKey, LinkedKeys};
use crate::metrics::{Metrics, RefusalLabels, RequestLabels};
use crate::retry::{backoff, parse_retry_after};
use sooth_protocol::RequestSigner;
use sooth_protocol::{RunClaims, TokenError, TokenVerifier};

/// Everything the handlers share.
pub struct GatewayState {
    config: ProxyConfig,
    tokens: TokenVerifier,
    signer: RequestSigner,
    ledger: Ledger,
    cache: ResponseCache,
    client: reqwest::Client,
    /// The operator's key per service.
    api_keys: BTreeMap<String, ApiKey>,
    /// Miners' own keys, used instead of the operator's when on file.
    linked: LinkedKeys,
    metrics: Metrics,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A key is missing or malformed.
    #[error("{0}")]
    Key(String),
    /// The outbound signing key cannot be read or created.
    #[error("the outbound signing key")]
    SigningKey(#[from] sooth_protocol::KeyFileError),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The cache could not be opened.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// The linked keys could not be opened or set.
    #[error(transparent)]
    LinkedKeys(#[from] crate::linked_keys::LinkedKeyError),
    /// The HTTP client or listener failed.
    #[error("{0}")]
    Io(String),
}

impl GatewayState {
    /// Build the state: keys, ledger, HTTP client. `api_keys` maps service
    /// names to the operator's upstream keys (read from the environment by
    /// the caller, so that this crate never reads ambient state); `linked`
    /// holds the keys miners linked, used instead of the operator's.
    ///
    /// # Errors
    ///
    /// [`StartError`] when a key is missing or malformed or the HTTP client
    /// cannot be built.
    pub async fn new(
        config: ProxyConfig,
        validator_key: VerifyingKey,
        signer: RequestSigner,
        ledger: Ledger,
        cache: ResponseCache,
        api_keys: BTreeMap<String, String>,
        linked: LinkedKeys,
    ) -> Result<Self, StartError> {
        let api_keys = config
            .services
            .iter()
            .map(|(name, service)| {
                let key = api_keys.get(name).ok_or_else(|| {
                    StartError::Key(format!(
                        "no API key for service {name} (set {})",
                        service.api_key_env
                    ))
                })?;
                let key = ApiKey::parse(key).map_err(|error| {
                    StartError::Key(format!(
                        "the API key of service {name} (from {}): {error}",
                        service.api_key_env
                    ))
                })?;
                Ok((name.clone(), key))
            })
            .collect::<Result<BTreeMap<_, _>, StartError>>()?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let metrics = Metrics::new(cache.dropped_writes_counter());
        Ok(Self {
            config,
            tokens: TokenVerifier::new(validator_key),
            signer,
            ledger,
            cache,
            client,
            api_keys,
            linked,
            metrics,
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Who pays for `miner`'s calls to `service_name`: the miner's own key
    /// when one is on file, else the operator's. Looked up once per
    /// forwarded call, so that the key sent and the cap applied agree.
    fn payer<'a>(&self, service_name: &str, miner: &'a str) -> Payer<'a> {
        match self.linked.lookup(service_name, miner) {
            Some(key) => Payer {
                miner,
                key: Some(key),
                linked: true,
            },
            None => Payer {
                miner,
                key: self.api_keys.get(service_name).cloned(),
                linked: false,
            },
        }
    }
}

/// The miner a forwarded call is made for, and the key that pays for it.
struct Payer<'a> {
    miner: &'a str,
    /// `None` only for a service without an operator key, which
    /// [`GatewayState::new`] refuses; kept an `Option` so that no lookup
    /// can panic.
    key: Option<ApiKey>,
    /// Whether `key` is the miner's own: then the linked day cap applies.
    linked: bool,
}

/// The router of the gateway service.
pub fn router(state: Arc<GatewayState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/chat", post(chat))
        .route("/v1/chat/{service}", post(chat_on))
        .route("/v1/search", post(search))
        .route("/v1/search/{service}", post(search_on))
        .route("/v1/call/{service}", post(call))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A running gateway on a local port.
pub struct RunningGateway {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    state: Arc<GatewayState>,
    /// Tells the server to stop accepting and finish what it has.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How long [`RunningGateway::stop`] lets requests in flight finish.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

impl RunningGateway {
    /// Serve `state` on `addr` (port 0 picks a free one).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn start(state: GatewayState, addr: SocketAddr) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let state = Arc::new(state);
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "gateway server stopped");
            }
        });
        Ok(Self {
            addr,
            task,
            state,
            stop: Some(stop),
        })
    }

    /// Stops accepting requests, lets those in flight finish (for at most
    /// [`STOP_GRACE`]), then writes the ledger's last decisions and the
    /// cache's queued answers to their file and closes them.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("gateway: requests still running after the grace period; dropping them");
            self.task.abort();
        }
        self.state.ledger.close().await;
        self.state.cache.close().await;
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An answer to the runner: a [`GatewayError`] body with its status, or an
/// authentication failure.
enum Refusal {
    Unauthorized(String),
    /// Refused before any upstream call: nothing charged, no retries.
    Agent(GatewayError),
    /// The upstream was called and the call failed. The runner is told what
    /// it cost (`charged` is non-zero only when the upstream may have billed
    /// it, e.g. an unreadable 200) and how many retries were made before
    /// giving up, so that its gateway log shows them.
    Upstream {
        error: GatewayError,
        charged: f64,
        retries: u32,
    },
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Agent(error) | Self::Upstream { error, .. } => match error {
                GatewayError::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
                GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                GatewayError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                GatewayError::NotFound { .. } => StatusCode::NOT_FOUND,
                GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
                GatewayError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            },
        }
    }

    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = match &self {
            Self::Unauthorized(message) => (
                status,
                axum::Json(serde_json::json!({"error": "unauthorized", "message": message})),
            )
                .into_response(),
            Self::Agent(error) | Self::Upstream { error, .. } => {
                (status, axum::Json(error)).into_response()
            }
        };
        let headers = response.headers_mut();
        if let Self::Upstream {
            charged, retries, ..
        } = &self
        {
            if let Ok(value) = HeaderValue::from_str(&format!("{charged}")) {
                headers.insert(sooth_protocol::COST_HEADER, value);
            }
            headers.insert(sooth_protocol::RETRIES_HEADER, HeaderValue::from(*retries));
        }
        if let Self::Agent(GatewayError::RateLimited { retry_after_ms })
        | Self::Upstream {
            error: GatewayError::RateLimited { retry_after_ms },
            ..
        } = self
            && let Ok(value) =
                HeaderValue::from_str(&format!("{:.3}", f64::from(retry_after_ms) / 1000.0))
        {
            headers.insert("retry-after", value);
        }
        response
    }
}

fn unreadable(service_name: &str, charged: f64, retries: u32) -> Refusal {
    Refusal::Upstream {
        error: GatewayError::Unavailable {
            message: format!("{service_name} sent an unreadable answer"),
        },
        charged,
        retries,
    }
}

/// A failed upstream call that was not billed.
fn failed(error: GatewayError, retries: u32) -> Refusal {
    Refusal::Upstream {
        error,
        charged: 0.0,
        retries,
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::Agent(GatewayError::BadRequest {
        message: message.into(),
    })
}

fn authenticate(state: &GatewayState, headers: &HeaderMap) -> Result<Arc<RunClaims>, Refusal> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Refusal::Unauthorized("missing run token (Authorization: Bearer ...)".into())
        })?;
    let token = value.strip_prefix("Bearer ").ok_or_else(|| {
        Refusal::Unauthorized("the Authorization header must be `Bearer <run token>`".into())
    })?;
    state.tokens.verify(token, now_unix()).map_err(|error| {
        Refusal::Unauthorized(match error {
            TokenError::Expired { .. } => "run token expired".to_owned(),
            other => format!("run token refused: {other}"),
        })
    })
}

/// The successful end of a forwarded call.
struct Forwarded {
    body: Bytes,
    retries: u32,
}

/// How a forwarded call failed.
enum ForwardError {
    /// The upstream answered 200 with something unreadable: it may have
    /// billed us, so the reservation is charged.
    Garbage { retries: u32 },
    /// Nothing was billed.
    Refused { error: GatewayError, retries: u32 },
}

async fn forward(
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

/// A successful answer and what it cost.
struct Answer {
    body: Vec<u8>,
    cost: f64,
    retries: u32,
    /// `hit` or `miss`, for the cache header.
    cache: &'static str,
}

impl Answer {
    fn fresh(body: Vec<u8>, cost: f64, retries: u32) -> Self {
        Self {
            body,
            cost,
            retries,
            cache: "miss",
        }
    }
}

/// Serve from the cache, or run `fetch` (which reserves, forwards and
/// settles) once for all concurrent identical requests. Hits and collapsed
/// requests cost nothing and reserve nothing.
async fn cached<F, Fut>(
    state: &GatewayState,
    service_name: &str,
    service: &ServiceConfig,
    route: &str,
    key_body: impl FnOnce() -> serde_json::Value,
    fetch: F,
) -> Result<Answer, Refusal>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Answer, Refusal>>,
{
    let mode = match service.cache {
        CachePolicy::On => CacheMode::On,
        CachePolicy::Off => CacheMode::Off,
        CachePolicy::ReadOnly => CacheMode::ReadOnly,
    };
    // Without a cache there is nothing to look up, and the key (canonical
    // JSON and its hash) is not worth making.
    let key = match mode {
        CacheMode::Off => String::new(),
        CacheMode::On | CacheMode::ReadOnly => cache_key(service_name, route, &key_body()),
    };
    let ttl = Duration::from_secs(service.cache_ttl_secs);
    let fetched = std::sync::Mutex::new((0.0, 0));
    let (response, outcome) = state
        .cache
        .get_or_fetch(&key, service_name, mode, ttl, || async {
            let answer = fetch().await?;
            if let Ok(mut slot) = fetched.lock() {
                *slot = (answer.cost, answer.retries);
            }
            Ok(CachedResponse {
                status: 200,
                body: answer.body,
                content_type: "application/json".into(),
            })
        })
        .await?;
    let labels = Metrics::service(service_name);
    let (cost, retries, cache) = if outcome.called_upstream() {
        let (cost, retries) = fetched.lock().map_or((0.0, 0), |slot| *slot);
        if mode != CacheMode::Off {
            state.metrics.cache_misses.get_or_create(&labels).inc();
        }
        (cost, retries, "miss")
    } else {
        state.metrics.cache_hits.get_or_create(&labels).inc();
        (0.0, 0, "hit")
    };
    Ok(Answer {
        body: response.body,
        cost,
        retries,
        cache,
    })
}

fn reply(state: &GatewayState, service: &str, result: Result<Answer, Refusal>) -> Response {
    let response = match result {
        Err(refusal) => refusal.into_response(),
        Ok(Answer {
            body,
            cost,
            retries,
            cache,
        }) => {
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            if let Ok(value) = HeaderValue::from_str(&format!("{cost}")) {
                headers.insert(sooth_protocol::COST_HEADER, value);
            }
            headers.insert(
                sooth_protocol::CACHE_HEADER,
                HeaderValue::from_static(cache),
            );
            headers.insert(sooth_protocol::RETRIES_HEADER, HeaderValue::from(retries));
            response
        }
    };
    // The name comes from the URL: an agent could make up any number of
    // them, so a name the configuration lacks is counted under one label.
    let service = if state.config.services.contains_key(service) {
        service
    } else {
        UNKNOWN_SERVICE_LABEL
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            service: service.to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The `service` label of requests to a service name that is not
/// configured (no configured name has this spelling: parentheses are not
/// in a service name's alphabet).
pub const UNKNOWN_SERVICE_LABEL: &str = "(unknown)";

async fn reserve(
    state: &GatewayState,
    claims: &RunClaims,
    payer: &Payer<'_>,
    service_name: &str,
    service: &ServiceConfig,
    amount: f64,
) -> Result<ReservationId, Refusal> {
    // "*" gives a cap to every service the token does not name.
    let run_cap = claims
        .caps_usd
        .get(service_name)
        .or_else(|| claims.caps_usd.get("*"))
        .copied()
        .unwrap_or(0.0);
    // The higher cap follows the key that pays: the miner's own key on file,
    // not the token's `linked_key` claim, which may be stale (a flag without
    // a key would let the operator's key spend at the linked cap).
    let day_cap = if payer.linked {
        service.linked_per_miner_day_cap_usd
    } else {
        service.per_miner_day_cap_usd
    };
    let reservation = Reservation {
        run_id: claims.run_id.clone(),
        miner: claims.miner.clone(),
        service: service_name.to_owned(),
        day: utc_today(),
        amount_usd: amount,
        run_cap_usd: run_cap,
        day_cap_usd: day_cap,
    };
    state.ledger.reserve(reservation).await.map_err(|error| match error {
        LedgerError::BudgetExceeded { scope, cap_usd, committed_usd, requested_usd } => {
            let scope_name = match scope {
                BudgetScope::Run => "run",
                BudgetScope::MinerDay => "miner_day",
            };
            state.metrics.budget_refusals.get_or_create(&RefusalLabels { service: service_name.to_owned(), scope: scope_name.to_owned() }).inc();
            Refusal::Agent(GatewayError::BudgetExceeded {
                message: format!(
                    "{service_name}: this call may cost up to ${requested_usd:.6}, and ${committed_usd:.6} of the {} cap of ${cap_usd:.6} is committed",
                    if scope_name == "run" { "run's" } else { "miner's daily" }
                ),
            })
        }
        other => {
            tracing::error!(error = %other, "ledger failure");
            Refusal::Agent(GatewayError::Unavailable { message: "the gateway's ledger is unavailable".into() })
        }
    })
}

async fn close(
    state: &GatewayState,
    service: &str,
    id: ReservationId,
    charge: Option<(f64, bool)>,
) -> f64 {
    let result = match charge {
        Some((usd, estimated)) => state
            .ledger
            .settle(id, usd, estimated)
            .await
            .map(|c| c.charged_usd),
        None => state.ledger.release(id).await.map(|()| 0.0),
    };
    match result {
        Ok(charged) => {
            state
                .metrics
                .spend_usd
                .get_or_create(&Metrics::service(service))
                .inc_by(charged);
            charged
        }
        Err(error) => {
            tracing::error!(%error, "cannot close a reservation");
            0.0
        }
    }
}

fn deadline(claims: &RunClaims, service: &ServiceConfig) -> Instant {
    let token_left =
        Duration::from_secs(u64::try_from(claims.expires_at - now_unix()).unwrap_or(0));
    let upstream =
        Duration::try_from_secs_f64(service.timeout_secs).unwrap_or(Duration::from_secs(60));
    Instant::now() + token_left.min(upstream)
}

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

async fn chat(State(state): State<Arc<GatewayState>>, headers: HeaderMap, body: Bytes) -> Response {
    let service_name = state.config.default_chat_service.clone();
    let result = chat_inner(&state, &service_name, &headers, &body).await;
    reply(&state, &service_name, result)
}

async fn chat_on(
    State(state): State<Arc<GatewayState>>,
    Path(service_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = chat_inner(&state, &service_name, &headers, &body).await;
    reply(&state, &service_name, result)
}

/// The configured service named `service_name`, when it is of `kind`; every
/// route looks its service up here, so an unknown or mismatched name is a
/// clean 404 whichever route it came through. The name is the path segment
/// percent-decoded: a `..` or `/` in it is part of the name, which no
/// configured name contains, never a step to another route.
fn service<'a>(
    state: &'a GatewayState,
    service_name: &str,
    kind: ServiceKind,
) -> Result<&'a ServiceConfig, Refusal> {
    state
        .config
        .services
        .get(service_name)
        .filter(|service| service.kind == kind)
        .ok_or_else(|| {
            // The name is the agent's: shown short, it cannot make the
            // answer large.
            Refusal::Agent(GatewayError::NotFound {
                message: format!(
                    "no {} service named {}",
                    kind_name(kind),
                    shown_name(service_name)
                ),
            })
        })
}

fn kind_name(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Chat => "chat",
        ServiceKind::Search => "search",
        ServiceKind::Generic => "generic",
    }
}

/// Any path that is not a route (a literal `..` that walked off one, say):
/// the same not-found error as an unknown service, so the runner reads it
/// the same way.
async fn no_route() -> Response {
    Refusal::Agent(GatewayError::NotFound {
        message: "no such route".into(),
    })
    .into_response()
}

async fn chat_inner(
    state: &GatewayState,
    service_name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let claims = authenticate(state, headers)?;
    let service = service(state, service_name, ServiceKind::Chat)?;
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
    let key_body = || serde_json::json!({"model": request.model, "messages": request.messages, "temperature": request.temperature, "max_tokens": max_tokens});
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
            let url = format!(
                "{}/v1/chat/completions",
                service.base_url.trim_end_matches('/')
            );
            let mut total_retries = 0;
            let mut last_error = GatewayError::Unavailable {
                message: "no model answered".into(),
            };
            for (model, price) in models.iter().zip(&prices) {
                let upstream_body = serde_json::json!({
                    "model": model,
                    "messages": request.messages,
                    "temperature": request.temperature,
                    "max_tokens": max_tokens,
                });
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
                        let Some((content, answered_by, usage)) = parse_chat(&forwarded.body)
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

fn parse_chat(body: &[u8]) -> Option<(String, String, Option<TokenUsage>)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let content = value
        .pointer("/choices/0/message/content")?
        .as_str()?
        .to_owned();
    let model = value
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    let usage = value.get("usage").and_then(|usage| {
        Some(TokenUsage {
            input_tokens: u32::try_from(usage.get("prompt_tokens")?.as_u64()?).ok()?,
            output_tokens: u32::try_from(usage.get("completion_tokens")?.as_u64()?).ok()?,
        })
    });
    Some((content, model, usage))
}

async fn search(
    State(state): State<Arc<GatewayState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service_name = state.config.default_search_service.clone();
    let result = search_inner(&state, &service_name, &headers, &body).await;
    reply(&state, &service_name, result)
}

async fn search_on(
    State(state): State<Arc<GatewayState>>,
    Path(service_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = search_inner(&state, &service_name, &headers, &body).await;
    reply(&state, &service_name, result)
}

async fn search_inner(
    state: &GatewayState,
    service_name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Answer, Refusal> {
    let claims = authenticate(state, headers)?;
    let service = service(state, service_name, ServiceKind::Search)?;
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
    let request = &request;
    // The key holds the clamped window: runs with different as-of instants
    // that asked the same share an answer only if their windows agree, and
    // that answer holds nothing after its window's end (below), so it
    // leaks to neither.
    let key_body = || serde_json::to_value(request).unwrap_or_default();
    cached(
        state,
        service_name,
        service,
        "search",
        key_body,
        || async move {
            let upstream_body = serde_json::json!({
                "prompt": request.query,
                "tools": ["web"],
                "count": request.max_results.unwrap_or(10).clamp(1, 50),
                "start_date": window.0,
                "end_date": window.1,
            });
            let upstream_body = serde_json::to_vec(&upstream_body).unwrap_or_default();
            let url = format!("{}/search", service.base_url.trim_end_matches('/'));
            priced_call(
                state,
                &claims,
                service_name,
                service,
                &url,
                &upstream_body,
                |body| {
                    let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
                    let mut results = value
                        .get("results")?
                        .as_array()?
                        .iter()
                        .map(search_result)
                        .collect::<Option<Vec<_>>>()?;
                    // An upstream may ignore the window: what it sends from
                    // after the window's end is dropped here. An undated
                    // result is kept, as the upstream filtered it by a date
                    // it did not tell.
                    if let Some(until) = visible_until {
                        results.retain(|r| r.published.is_none_or(|p| p <= until));
                    }
                    let cost = value
                        .get("cost_usd")
                        .and_then(serde_json::Value::as_f64)
                        .filter(|c| c.is_finite() && *c >= 0.0);
                    let answer = serde_json::to_vec(&SearchResponse { results }).ok()?;
                    Some((answer, cost))
                },
            )
            .await
        },
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

/// A window bound as the upstream gets it: RFC 3339 in UTC to the second
/// (`2026-01-01T12:00:00Z`).
fn upstream_instant(unix: Option<i64>, field: &str) -> Result<Option<String>, Refusal> {
    unix.map(|secs| {
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .ok_or_else(|| bad(format!("{field} {secs} is not a representable instant")))
    })
    .transpose()
}

/// One upstream hit; its publication date may be a date, an RFC 3339
/// instant or Unix seconds.
fn search_result(value: &serde_json::Value) -> Option<SearchResult> {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let published = value.get("published").and_then(|p| match p {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
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

async fn call(
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
    cached(
        state,
        service_name,
        service,
        "call",
        || key_body,
        || async move {
            priced_call(
                state,
                &claims,
                service_name,
                service,
                &service.base_url,
                body,
                |body| {
                    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
                    Some((body.to_vec(), Some(service.price_per_call)))
                },
            )
            .await
        },
    )
    .await
}

/// One call to a service priced per call (search, generic): reserve its
/// price, forward, and read the answer with `read`, which gives the body
/// for the runner and the cost the upstream reported (or `None`: the
/// price is charged as an estimate). An answer `read` cannot make sense of
/// is charged its price, estimated; a refused call is released.
async fn priced_call(
    state: &GatewayState,
    claims: &RunClaims,
    service_name: &str,
    service: &ServiceConfig,
    url: &str,
    body: &[u8],
    read: impl FnOnce(&[u8]) -> Option<(Vec<u8>, Option<f64>)>,
) -> Result<Answer, Refusal> {
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
        url,
        body,
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
}

async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
