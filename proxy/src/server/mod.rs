//! The gateway's HTTP service: authenticates run tokens, reserves budget,
//! forwards signed requests upstream with retries, settles the real cost.
//!
//! Routes (the bodies and headers are `sooth_protocol`'s):
//! `POST /v1/chat` (the default chat service) and `POST /v1/chat/{service}`,
//! `POST /v1/search` and `POST /v1/search/{service}`,
//! `POST /v1/call/{service}`, `GET /health`, `GET /metrics`.
//!
//! Rooms: this file holds the shared state, the router, the running server
//! and the reply every route ends with; `auth.rs` checks run tokens,
//! `reservation.rs` reserves and settles budget in the ledger, `cached.rs`
//! answers through the response cache, `forward.rs` sends a signed request
//! upstream with retries, `answer.rs` is what a route answers, and
//! `chat.rs`, `search.rs` and `call.rs` are the routes (the last two share
//! `priced.rs`, the shape of a call priced per call).

mod answer;
mod auth;
mod cached;
mod call;
mod chat;
mod forward;
mod priced;
mod reservation;
mod search;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::VerifyingKey;
use sooth_protocol::{GatewayError, RequestSigner, TokenVerifier};

use crate::cache::ResponseCache;
use crate::config::{ProxyConfig, ServiceConfig, ServiceKind, shown_name};
use crate::ledger::{Ledger, LedgerError};
use crate::linked_keys::{ApiKey, LinkedKeyError, LinkedKeys};
use crate::metrics::{Metrics, RequestLabels};
use answer::{Answer, Refusal};

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
    /// A configured service has no API key in its environment variable.
    #[error("service {service} needs its API key in the environment variable {variable}")]
    MissingApiKey {
        /// The service.
        service: String,
        /// The environment variable its key is read from.
        variable: String,
    },
    /// A service's API key is not one (the cause says why; it never holds
    /// the key).
    #[error("the API key of service {service} (from {variable}) is unusable")]
    InvalidApiKey {
        /// The service.
        service: String,
        /// The environment variable it was read from.
        variable: String,
        /// Why.
        #[source]
        source: LinkedKeyError,
    },
    /// The configured `validator_public_key` is not a public key.
    #[error("the configured validator_public_key is unusable")]
    ValidatorKey(#[source] sooth_protocol::TokenError),
    /// The outbound signing key cannot be read or created.
    #[error("the outbound signing key")]
    SigningKey(#[from] sooth_protocol::KeyFileError),
    /// The data directory cannot be created.
    #[error("cannot create data directory {}", .path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The cache could not be opened.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// The linked keys could not be opened or set.
    #[error(transparent)]
    LinkedKeys(#[from] LinkedKeyError),
    /// The configured `listen` is not a socket address.
    #[error("the listen address {0:?} is not an IP address and port")]
    ListenAddress(String, #[source] std::net::AddrParseError),
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The listener cannot be bound.
    #[error("cannot listen on {0}")]
    Listen(SocketAddr, #[source] std::io::Error),
}

impl StartError {
    /// The [`StartError::InvalidApiKey`] of `service`, whose key the
    /// configuration reads from `variable`.
    pub(crate) fn invalid_api_key(service: &str, variable: &str, source: LinkedKeyError) -> Self {
        Self::InvalidApiKey {
            service: service.to_owned(),
            variable: variable.to_owned(),
            source,
        }
    }
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
                let key = api_keys
                    .get(name)
                    .ok_or_else(|| StartError::MissingApiKey {
                        service: name.clone(),
                        variable: service.api_key_env.clone(),
                    })?;
                let key = ApiKey::parse(key).map_err(|error| {
                    StartError::invalid_api_key(name, &service.api_key_env, error)
                })?;
                Ok((name.clone(), key))
            })
            .collect::<Result<BTreeMap<_, _>, StartError>>()?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(StartError::HttpClient)?;
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
fn router(state: Arc<GatewayState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route(
            "/v1/chat",
            post(on_default(Route::Chat, |config| {
                &config.default_chat_service
            })),
        )
        .route("/v1/chat/{service}", post(on_named(Route::Chat)))
        .route(
            "/v1/search",
            post(on_default(Route::Search, |config| {
                &config.default_search_service
            })),
        )
        .route("/v1/search/{service}", post(on_named(Route::Search)))
        .route("/v1/call/{service}", post(on_named(Route::Call)))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The routes that forward to a service.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// `/v1/chat`.
    Chat,
    /// `/v1/search`.
    Search,
    /// `/v1/call`.
    Call,
}

impl Route {
    /// The kind of service the route forwards to.
    fn kind(self) -> ServiceKind {
        match self {
            Self::Chat => ServiceKind::Chat,
            Self::Search => ServiceKind::Search,
            Self::Call => ServiceKind::Generic,
        }
    }
}

/// The handler of `route` for the service named in the path.
fn on_named(
    route: Route,
) -> impl Fn(State<Arc<GatewayState>>, Path<String>, HeaderMap, Bytes) -> BoxFuture<Response>
+ Clone
+ Send
+ 'static {
    move |State(state), Path(service_name), headers, body| {
        Box::pin(async move { serve(&state, route, service_name, &headers, &body).await })
    }
}

/// The handler of `route` for the service `default_of` the configuration
/// names (chat and search have a default service).
fn on_default(
    route: Route,
    default_of: fn(&ProxyConfig) -> &String,
) -> impl Fn(State<Arc<GatewayState>>, HeaderMap, Bytes) -> BoxFuture<Response> + Clone + Send + 'static
{
    move |State(state), headers, body| {
        Box::pin(async move {
            let service_name = default_of(&state.config).clone();
            serve(&state, route, service_name, &headers, &body).await
        })
    }
}

/// A handler's future.
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Answers a request to `service_name` on `route` once its run token and
/// the service check out, and counts it.
async fn serve(
    state: &GatewayState,
    route: Route,
    service_name: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let result = async {
        let claims = auth::authenticate(state, headers)?;
        let service = service(state, &service_name, route.kind())?;
        match route {
            Route::Chat => chat::answer(state, claims, &service_name, service, body).await,
            Route::Search => search::answer(state, claims, &service_name, service, body).await,
            Route::Call => call::answer(state, claims, &service_name, service, body).await,
        }
    };
    let result = result.await;
    reply(state, &service_name, result)
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
            .map_err(|error| StartError::Listen(addr, error))?;
        let addr = listener
            .local_addr()
            .map_err(|error| StartError::Listen(addr, error))?;
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

async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
