//! A fake upstream for tests and demos: it stands in for the LLM, search and
//! generic services the gateway forwards to, on loopback.
//!
//! This crate owns that stand-in and nothing of the gateway: it ships in no
//! validator or gateway, and it must not depend on them. The gateway's
//! tests and benchmark, the command line's tests and `sooth demo` use it.
//!
//! Routes:
//!
//! * `POST /v1/chat/completions`: OpenAI-compatible chat completions (like
//!   Chutes). Needs `Authorization: Bearer <api_key>`. The answer is
//!   deterministic: by default `"Probability: 0.NN"` where `NN` comes from a
//!   hash of the last user message, so identical prompts get identical
//!   answers. Usage: `prompt_tokens = ceil(chars of all message contents / 4)`,
//!   `completion_tokens = min(max_tokens or 16, ceil(chars of answer / 4))`;
//!   an answer longer than that is cut and ends with `finish_reason:
//!   "length"`, so the usage never exceeds `max_tokens`.
//! * `POST /search`: Desearch-style web search. Needs `Authorization:
//!   <search_api_key>` (no `Bearer`). Request `{prompt, tools?, start_date?,
//!   end_date?, count?}`; answers `{results: [{title, url, snippet,
//!   published}], cost_usd}`. Each query has a corpus of
//!   [`SEARCH_CORPUS_SIZE`] pages, page `i` published at
//!   [`SEARCH_FIRST_PUBLISHED`]` + i * `[`SEARCH_PUBLISHED_STEP`]; the answer
//!   is the newest `count` pages published within the window (`start_date`
//!   and `end_date` inclusive, each an RFC 3339 instant, a `YYYY-MM-DD`
//!   date or unix seconds; an unreadable one is a 400), newest first, with
//!   `published` in RFC 3339. [`FakeUpstream::set_search_ignores_window`]
//!   makes it answer as if no window were given (an upstream that leaks).
//! * `POST /generic/{name}`: echoes its JSON body as `{echo, service}`. Needs
//!   the header named in [`FakeUpstreamConfig::generic_auth_header`] equal to
//!   [`FakeUpstreamConfig::generic_api_key`].
//!
//! Every route also accepts the keys in [`FakeUpstreamConfig::extra_api_keys`]
//! (miners' own keys, in tests of linked keys), presented the route's way.
//! * `GET /health`: `{"status":"ok"}`; not counted, recorded nor delayed.
//!
//! Scripted behaviour, changeable while it runs: a fixed latency for every
//! request ([`FakeUpstream::set_latency`]), a plan of failures consumed by the
//! next requests ([`FakeUpstream::fail_next`]), models that are "cold" and
//! answer 503 until warmed ([`FakeUpstream::set_cold`]), and a fixed chat
//! answer ([`FakeUpstream::set_chat_reply`]).
//!
//! Accounting ([`FakeUpstream::stats`]): per route, requests received and
//! answered 200, and what the upstream billed. Only 200 answers that carry
//! usage are billed: chat at `prompt_tokens * input + completion_tokens *
//! output` (prices in USD per million tokens), search at the configured price
//! per search; the generic route is not billed. Every received request
//! (except `/health`) is also recorded with its `x-sooth-*` headers and raw
//! body and the API key it presented ([`FakeUpstream::recorded`], the last
//! [`RECORDED_CAPACITY`]), so that tests can verify the gateway's signatures
//! and which key it used.
//!
//! Order of handling for a request: record and count it, sleep the latency,
//! check authentication (401), then consume the next scripted failure if any,
//! then validate the body (400), the model (404) and the cold flag (503).
//! Requests failing authentication therefore do not consume scripted
//! failures.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sooth_fake_upstream::{Failure, FakeUpstream, FakeUpstreamConfig};
//! use std::time::Duration;
//!
//! let fake = FakeUpstream::start(FakeUpstreamConfig::default()).await?;
//! fake.fail_next(2, Failure::RateLimited { retry_after: Duration::from_secs(1) });
//! // ... point the gateway at fake.base_url() and drive it ...
//! assert!(fake.stats().billed_usd <= 0.10 + 1e-9);
//! fake.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How many received requests [`FakeUpstream::recorded`] keeps (the latest).
pub const RECORDED_CAPACITY: usize = 1_000;

/// `max_tokens` assumed when a chat request does not give one.
pub const DEFAULT_MAX_TOKENS: u64 = 16;

/// Header carrying the `Retry-After` delay in milliseconds (the standard
/// `Retry-After` header only has whole seconds).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// Prefix of the request headers that are recorded.
const RECORDED_HEADER_PREFIX: &str = "x-sooth-";

/// The body of a [`Failure::Garbage`] answer: not JSON, despite its
/// content type.
const GARBAGE_BODY: &str = "<html><body>502 Bad Gateway</body></html>{\"choices\":[";

/// How long [`FakeUpstream::shutdown`] waits for open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Listen backlog, so that bursts of 1,000+ new connections are not refused.
const LISTEN_BACKLOG: u32 = 4_096;

/// Most search results one request can ask for.
const MAX_SEARCH_RESULTS: u64 = 20;

/// Search results when the request gives no `count`.
const DEFAULT_SEARCH_RESULTS: u64 = 3;

/// Pages per query in the fake search's corpus.
pub const SEARCH_CORPUS_SIZE: i64 = 100;

/// When the oldest page of every query's corpus was published: 2025-01-01
/// 00:00:00 UTC, unix seconds.
pub const SEARCH_FIRST_PUBLISHED: i64 = 1_735_689_600;

/// Time between two pages of a corpus, seconds (a week: the corpus spans
/// nearly two years from [`SEARCH_FIRST_PUBLISHED`]).
pub const SEARCH_PUBLISHED_STEP: i64 = 7 * 86_400;

/// Configuration of a [`FakeUpstream`].
#[derive(Debug, Clone, PartialEq)]
pub struct FakeUpstreamConfig {
    /// Key the chat route expects as `Authorization: Bearer <api_key>`.
    pub api_key: String,
    /// Key the search route expects as `Authorization: <search_api_key>`.
    pub search_api_key: String,
    /// Header name the generic route reads its key from (e.g. `x-api-key`).
    pub generic_auth_header: String,
    /// Key the generic route expects in [`Self::generic_auth_header`].
    pub generic_api_key: String,
    /// Further keys every route accepts, presented the route's way (miners'
    /// own keys, in tests of linked keys).
    pub extra_api_keys: Vec<String>,
    /// Models the chat route knows; any other answers 404.
    pub models: Vec<String>,
    /// Chat price of prompt tokens, USD per million.
    pub input_usd_per_million: f64,
    /// Chat price of completion tokens, USD per million.
    pub output_usd_per_million: f64,
    /// Price of one search, USD (also reported as `cost_usd`).
    pub search_usd: f64,
    /// Delay before answering every request (except `/health`).
    pub latency: Duration,
}

impl Default for FakeUpstreamConfig {
    fn default() -> Self {
        Self {
            api_key: "fake-chat-key".to_owned(),
            search_api_key: "fake-search-key".to_owned(),
            generic_auth_header: "x-api-key".to_owned(),
            generic_api_key: "fake-generic-key".to_owned(),
            extra_api_keys: Vec::new(),
            models: vec![
                "fake-org/Fake-Model-8B".to_owned(),
                "fake-org/Fake-Model-70B".to_owned(),
            ],
            input_usd_per_million: 0.5,
            output_usd_per_million: 2.0,
            search_usd: 0.002,
            latency: Duration::ZERO,
        }
    }
}

/// A scripted failure, consumed by one request (see [`FakeUpstream::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 503 Service Unavailable.
    Unavailable,
    /// 429 Too Many Requests with `Retry-After` (whole seconds, rounded up)
    /// and `retry-after-ms` (milliseconds).
    RateLimited {
        /// The delay the upstream asks for.
        retry_after: Duration,
    },
    /// 200 with a body that is not JSON (content type still JSON). Not billed.
    Garbage,
    /// 200 with a normal answer but no `usage` (chat) or `cost_usd` (search).
    /// Not billed.
    NoUsage,
    /// This status with an OpenAI-style error body (e.g. 400, 500).
    Status(u16),
    /// Answer normally, after this extra delay (to provoke timeouts).
    Delay(Duration),
}

/// What the fake upstream received, answered and billed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FakeStats {
    /// Requests received on the chat route (any outcome).
    pub chat_requests: u64,
    /// Chat requests answered 200 (including garbage and no-usage answers).
    pub chat_ok: u64,
    /// Requests received on the search route.
    pub search_requests: u64,
    /// Search requests answered 200.
    pub search_ok: u64,
    /// Requests received on the generic route.
    pub generic_requests: u64,
    /// Generic requests answered 200.
    pub generic_ok: u64,
    /// Total billed, USD (chat and search; a float sum, compare with a small
    /// tolerance).
    pub billed_usd: f64,
    /// Prompt tokens billed.
    pub billed_prompt_tokens: u64,
    /// Completion tokens billed.
    pub billed_completion_tokens: u64,
    /// Searches billed.
    pub billed_searches: u64,
}

/// One request the fake upstream received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Request path, e.g. `/v1/chat/completions` (no query).
    pub path: String,
    /// The headers whose names start with `x-sooth-` (names lower case), in
    /// the order received.
    pub headers: Vec<(String, String)>,
    /// The raw request body.
    pub body: Vec<u8>,
    /// The API key the request presented the route's way (without
    /// `Bearer ` on the chat route), accepted or not; `None` without one.
    pub api_key: Option<String>,
}

impl RecordedRequest {
    /// The value of the recorded header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running fake upstream. Dropping it stops the server (without waiting);
/// [`FakeUpstream::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The environment variable the chat key of [`FakeUpstream::gateway_config_toml`] is read from.
pub const CHAT_KEY_ENV: &str = "SOOTH_FAKE_CHAT_KEY";

/// The environment variable the search key of [`FakeUpstream::gateway_config_toml`] is read
/// from.
pub const SEARCH_KEY_ENV: &str = "SOOTH_FAKE_SEARCH_KEY";

impl FakeUpstream {
    /// Binds `127.0.0.1` on a free port and serves in a spawned task.
    pub async fn start(config: FakeUpstreamConfig) -> std::io::Result<Self> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `addr` (port 0 for a free one) and serves in a spawned task; for
    /// demos that need a fixed port.
    pub async fn start_on(config: FakeUpstreamConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;

        let shared = Arc::new(Shared::new(config));
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            // Best effort: small answers should not wait for Nagle.
            let _ = stream.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "fake upstream stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake upstream listening");
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A gateway configuration (TOML) whose chat service `chat` (offering `models`) and search
    /// service `search` are this upstream, each miner capped at `day_cap_usd` a day, the
    /// gateway's files under `data_dir`; the keys come from [`CHAT_KEY_ENV`] and
    /// [`SEARCH_KEY_ENV`] ([`gateway_api_keys`](Self::gateway_api_keys) gives them). What demos
    /// and tests run a gateway on.
    pub fn gateway_config_toml(
        &self,
        data_dir: &std::path::Path,
        models: &[&str],
        day_cap_usd: f64,
    ) -> String {
        let models: Vec<String> = models
            .iter()
            .map(|model| {
                format!("{model:?} = {{ input_per_million = 0.5, output_per_million = 2.0 }}")
            })
            .collect();
        format!(
            r#"data_dir = {data:?}
validator_public_key = "{unused}"
signing_key_file = {key:?}
default_chat_service = "chat"
default_search_service = "search"

[services.chat]
kind = "chat"
base_url = "{base}"
api_key_env = "{CHAT_KEY_ENV}"
per_miner_day_cap_usd = {day_cap_usd:?}
linked_per_miner_day_cap_usd = {day_cap_usd:?}
models = {{ {models} }}

[services.search]
kind = "search"
base_url = "{base}"
api_key_env = "{SEARCH_KEY_ENV}"
auth = "raw"
price_per_call = 0.002
per_miner_day_cap_usd = {day_cap_usd:?}
linked_per_miner_day_cap_usd = {day_cap_usd:?}
"#,
            data = data_dir.join("gateway").display().to_string(),
            key = data_dir.join("gateway-signing.key").display().to_string(),
            unused = "00".repeat(32),
            base = self.base_url(),
            models = models.join(", "),
        )
    }

    /// The upstream API keys of [`gateway_config_toml`](Self::gateway_config_toml), by service.
    pub fn gateway_api_keys(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([
            ("chat".to_owned(), self.shared.config.api_key.clone()),
            (
                "search".to_owned(),
                self.shared.config.search_api_key.clone(),
            ),
        ])
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `count` requests (any route but `/health`, after passing
    /// authentication) answer with `failure`. Plans queue up: calling this
    /// twice scripts the first failures, then the second.
    pub fn fail_next(&self, count: u32, failure: Failure) {
        if count > 0 {
            lock(&self.shared.script)
                .failures
                .push_back((failure, count));
        }
    }

    /// Forgets the failures not yet consumed.
    pub fn clear_failures(&self) {
        lock(&self.shared.script).failures.clear();
    }

    /// The number of scripted failures not yet consumed.
    pub fn pending_failures(&self) -> u64 {
        lock(&self.shared.script)
            .failures
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Sets the delay before answering each request from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_nanos
            .store(duration_nanos(latency), Ordering::Relaxed);
    }

    /// Marks `model` cold (chat answers 503 for it) or warm again.
    pub fn set_cold(&self, model: &str, cold: bool) {
        let mut script = lock(&self.shared.script);
        if cold {
            script.cold.insert(model.to_owned());
        } else {
            script.cold.remove(model);
        }
    }

    /// Makes every chat answer `reply` (still cut to `max_tokens`), or the
    /// default hash-derived probability with `None`.
    pub fn set_chat_reply(&self, reply: Option<String>) {
        lock(&self.shared.script).chat_reply = reply;
    }

    /// Makes the search route ignore `start_date` and `end_date` (still
    /// read and checked) and answer the newest pages of the whole corpus:
    /// an upstream that does not honour the window.
    pub fn set_search_ignores_window(&self, ignores: bool) {
        lock(&self.shared.script).search_ignores_window = ignores;
    }

    /// Counters and billing so far.
    pub fn stats(&self) -> FakeStats {
        *lock(&self.shared.stats)
    }

    /// The last [`RECORDED_CAPACITY`] requests received, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).iter().cloned().collect()
    }

    /// Zeroes the counters and billing and forgets the recorded requests
    /// (the script, latency and cold models stay).
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = FakeStats::default();
        lock(&self.shared.recorded).clear();
    }

    /// Stops accepting, lets open requests finish (at most 5 seconds), and
    /// waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state

/// State shared by the handlers and the [`FakeUpstream`] handle. Locks are
/// held only briefly, never across an await.
#[derive(Debug)]
struct Shared {
    config: FakeUpstreamConfig,
    generic_auth_header: Option<HeaderName>,
    latency_nanos: AtomicU64,
    next_id: AtomicU64,
    script: Mutex<Script>,
    stats: Mutex<FakeStats>,
    recorded: Mutex<VecDeque<RecordedRequest>>,
}

#[derive(Debug, Default)]
struct Script {
    failures: VecDeque<(Failure, u32)>,
    cold: HashSet<String>,
    chat_reply: Option<String>,
    search_ignores_window: bool,
}

impl Script {
    fn pop_failure(&mut self) -> Option<Failure> {
        let (failure, left) = self.failures.front_mut()?;
        let failure = *failure;
        *left -= 1;
        if *left == 0 {
            self.failures.pop_front();
        }
        Some(failure)
    }
}

impl Shared {
    fn new(config: FakeUpstreamConfig) -> Self {
        let generic_auth_header =
            HeaderName::from_bytes(config.generic_auth_header.as_bytes()).ok();
        if generic_auth_header.is_none() {
            tracing::warn!(
                header = %config.generic_auth_header,
                "fake upstream: invalid generic auth header name; the generic route will answer 401"
            );
        }
        Self {
            latency_nanos: AtomicU64::new(duration_nanos(config.latency)),
            config,
            generic_auth_header,
            next_id: AtomicU64::new(1),
            script: Mutex::new(Script::default()),
            stats: Mutex::new(FakeStats::default()),
            recorded: Mutex::new(VecDeque::with_capacity(RECORDED_CAPACITY)),
        }
    }

    /// Counts and records a request, then sleeps the latency (no lock held).
    async fn arrive(&self, route: Route, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        {
            let mut stats = lock(&self.stats);
            match route {
                Route::Chat => stats.chat_requests += 1,
                Route::Search => stats.search_requests += 1,
                Route::Generic => stats.generic_requests += 1,
            }
        }
        let recorded = RecordedRequest {
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with(RECORDED_HEADER_PREFIX))
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            api_key: self.presented_key(route, headers).map(str::to_owned),
        };
        {
            let mut log = lock(&self.recorded);
            if log.len() >= RECORDED_CAPACITY {
                log.pop_front();
            }
            log.push_back(recorded);
        }
        let latency = Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed));
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// The API key a request presents, read the way its route expects it.
    fn presented_key<'h>(&self, route: Route, headers: &'h HeaderMap) -> Option<&'h str> {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        match route {
            Route::Chat => text(&AUTHORIZATION)?.strip_prefix("Bearer "),
            Route::Search => text(&AUTHORIZATION),
            Route::Generic => text(self.generic_auth_header.as_ref()?),
        }
    }

    /// Whether a request to `route` presents `own` (the route's key) or one
    /// of the extra keys.
    fn authorized(&self, route: Route, headers: &HeaderMap, own: &str) -> bool {
        self.presented_key(route, headers)
            .is_some_and(|key| key == own || self.config.extra_api_keys.iter().any(|k| k == key))
    }

    /// Consumes the next scripted failure. `Ok(no_usage)` to go on
    /// (after any scripted delay), `Err(response)` to answer with it.
    async fn scripted(&self) -> Result<bool, Response> {
        let failure = lock(&self.script).pop_failure();
        match failure {
            None => Ok(false),
            Some(Failure::NoUsage) => Ok(true),
            Some(Failure::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(false)
            }
            Some(Failure::Unavailable) => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is temporarily unavailable",
                "server_error",
                "service_unavailable",
            )),
            Some(Failure::RateLimited { retry_after }) => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limit exceeded, retry later",
                    "rate_limit_error",
                    "rate_limit_exceeded",
                );
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let headers = response.headers_mut();
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
                headers.insert(
                    HeaderName::from_static(RETRY_AFTER_MS),
                    HeaderValue::from(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
                );
                Err(response)
            }
            Some(Failure::Garbage) => Err((
                StatusCode::OK,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                GARBAGE_BODY,
            )
                .into_response()),
            Some(Failure::Status(code)) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err(error(
                    status,
                    "scripted failure",
                    "server_error",
                    "scripted_failure",
                ))
            }
        }
    }

    fn count_ok(&self, route: Route, response: &Response) {
        if response.status() == StatusCode::OK {
            let mut stats = lock(&self.stats);
            match route {
                Route::Chat => stats.chat_ok += 1,
                Route::Search => stats.search_ok += 1,
                Route::Generic => stats.generic_ok += 1,
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Chat,
    Search,
    Generic,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Routes

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/chat/completions", post(chat))
        .route("/search", post(search))
        .route("/generic/{name}", post(generic))
        .with_state(shared)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// An OpenAI-style error answer.
fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid or missing API key",
        "invalid_request_error",
        "invalid_api_key",
    )
}

fn bad_request(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        "invalid_request",
    )
}

// --- chat ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default, alias = "max_completion_tokens")]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// The text of a message: a string, or the `text` of an array of parts.
fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// Tokens the fake counts for `chars` characters: one per four, rounded up.
fn tokens_for(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX)
}

/// 64-bit FNV-1a: stable across platforms and releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The default answer to a prompt: `Probability: 0.01` to `0.99`.
pub fn default_chat_answer(last_user_message: &str) -> String {
    let hundredths = fnv1a(last_user_message.as_bytes()) % 99 + 1;
    format!("Probability: 0.{hundredths:02}")
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.arrive(Route::Chat, &uri, &headers, &body).await;
    let response = chat_answer(&shared, &headers, &body).await;
    shared.count_ok(Route::Chat, &response);
    response
}

async fn chat_answer(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    if !shared.authorized(Route::Chat, headers, &shared.config.api_key) {
        return unauthorized();
    }
    let no_usage = match shared.scripted().await {
        Ok(no_usage) => no_usage,
        Err(response) => return response,
    };
    let request: ChatRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return bad_request(&format!("invalid request body: {err}")),
    };
    if request.stream == Some(true) {
        return bad_request("streaming is not supported by the fake upstream");
    }
    if request
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return bad_request("temperature must be between 0 and 2");
    }
    if request.max_tokens == Some(0) {
        return bad_request("max_tokens must be at least 1");
    }
    if !shared.config.models.contains(&request.model) {
        return error(
            StatusCode::NOT_FOUND,
            "model not found",
            "invalid_request_error",
            "model_not_found",
        );
    }
    let (reply, cold) = {
        let script = lock(&shared.script);
        (
            script.chat_reply.clone(),
            script.cold.contains(&request.model),
        )
    };
    if cold {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "model is cold, try again later",
            "server_error",
            "model_cold",
        );
    }

    let mut prompt_chars = 0usize;
    let mut last_user = None;
    for message in &request.messages {
        let Some(text) = message_text(&message.content) else {
            return bad_request("message content must be a string or an array of parts");
        };
        prompt_chars += text.chars().count();
        if message.role == "user" {
            last_user = Some(text);
        }
    }
    let Some(last_user) = last_user else {
        return bad_request("messages must contain a user message");
    };

    let limit = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut content = reply.unwrap_or_else(|| default_chat_answer(&last_user));
    let mut finish_reason = "stop";
    if tokens_for(content.chars().count()) > limit {
        // Cut to exactly `limit` tokens (four characters each).
        let keep = usize::try_from(limit.saturating_mul(4)).unwrap_or(usize::MAX);
        content = content.chars().take(keep).collect();
        finish_reason = "length";
    }
    let prompt_tokens = tokens_for(prompt_chars);
    let completion_tokens = tokens_for(content.chars().count()).min(limit);

    let mut answer = json!({
        "id": format!("chatcmpl-fake-{}", shared.next_id()),
        "object": "chat.completion",
        "created": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "model": request.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason,
        }],
    });
    if !no_usage {
        answer["usage"] = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        });
        let cost = prompt_tokens as f64 * shared.config.input_usd_per_million / 1e6
            + completion_tokens as f64 * shared.config.output_usd_per_million / 1e6;
        let mut stats = lock(&shared.stats);
        stats.billed_usd += cost;
        stats.billed_prompt_tokens += prompt_tokens;
        stats.billed_completion_tokens += completion_tokens;
    }
    axum::Json(answer).into_response()
}

// --- search ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct SearchRequest {
    prompt: String,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    start_date: Option<Value>,
    #[serde(default)]
    end_date: Option<Value>,
    #[serde(default)]
    count: Option<u64>,
}

/// A window bound as unix seconds: an RFC 3339 instant, a `YYYY-MM-DD`
/// date (its midnight, UTC) or a number of seconds. `Err` for anything
/// else; `Ok(None)` for an absent bound or `null`.
fn window_bound(value: Option<&Value>) -> Result<Option<i64>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp())
            .ok()
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp())
            })
            .map(Some)
            .ok_or(()),
        Some(_) => Err(()),
    }
}

async fn search(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.arrive(Route::Search, &uri, &headers, &body).await;
    let response = search_answer(&shared, &headers, &body).await;
    shared.count_ok(Route::Search, &response);
    response
}

async fn search_answer(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    if !shared.authorized(Route::Search, headers, &shared.config.search_api_key) {
        return unauthorized();
    }
    let no_usage = match shared.scripted().await {
        Ok(no_usage) => no_usage,
        Err(response) => return response,
    };
    let request: SearchRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return bad_request(&format!("invalid request body: {err}")),
    };
    if request.prompt.trim().is_empty() {
        return bad_request("prompt must not be empty");
    }
    let count = request
        .count
        .unwrap_or(DEFAULT_SEARCH_RESULTS)
        .min(MAX_SEARCH_RESULTS);
    let hash = fnv1a(request.prompt.as_bytes());
    let topic: String = request.prompt.chars().take(60).collect();
    let tools = request
        .tools
        .as_ref()
        .map(|tools| {
            tools
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let (Ok(start), Ok(end)) = (
        window_bound(request.start_date.as_ref()),
        window_bound(request.end_date.as_ref()),
    ) else {
        return bad_request(
            "start_date and end_date must be RFC 3339 instants, dates or unix seconds",
        );
    };
    let (start, end) = if lock(&shared.script).search_ignores_window {
        (None, None)
    } else {
        (start, end)
    };
    let results: Vec<Value> = (0..SEARCH_CORPUS_SIZE)
        .rev()
        .map(|page| (page, SEARCH_FIRST_PUBLISHED + page * SEARCH_PUBLISHED_STEP))
        .filter(|(_, published)| {
            start.is_none_or(|start| *published >= start) && end.is_none_or(|end| *published <= end)
        })
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .map(|(page, published)| {
            json!({
                "title": format!("Result {} about {topic}", page + 1),
                "url": format!("https://search.fake.invalid/{hash:016x}/{page}"),
                "snippet": format!("Snippet {} for \"{topic}\"{}", page + 1,
                    if tools.is_empty() { String::new() } else { format!(" (tools: {tools})") }),
                "published": chrono::DateTime::from_timestamp(published, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })
        })
        .collect();
    let mut answer = json!({"results": results});
    if !no_usage {
        answer["cost_usd"] = json!(shared.config.search_usd);
        let mut stats = lock(&shared.stats);
        stats.billed_usd += shared.config.search_usd;
        stats.billed_searches += 1;
    }
    axum::Json(answer).into_response()
}

// --- generic ---------------------------------------------------------------

async fn generic(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.arrive(Route::Generic, &uri, &headers, &body).await;
    let response = generic_answer(&shared, &name, &headers, &body).await;
    shared.count_ok(Route::Generic, &response);
    response
}

async fn generic_answer(
    shared: &Shared,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if !shared.authorized(Route::Generic, headers, &shared.config.generic_api_key) {
        return unauthorized();
    }
    if let Err(response) = shared.scripted().await {
        return response;
    }
    let echo: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(err) => return bad_request(&format!("invalid request body: {err}")),
        }
    };
    axum::Json(json!({"echo": echo, "service": name})).into_response()
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MODEL: &str = "fake-org/Fake-Model-8B";

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    fn config() -> FakeUpstreamConfig {
        FakeUpstreamConfig {
            input_usd_per_million: 2.0,
            output_usd_per_million: 8.0,
            search_usd: 0.004,
            ..FakeUpstreamConfig::default()
        }
    }

    async fn start() -> FakeUpstream {
        FakeUpstream::start(config()).await.expect("start")
    }

    fn chat_body(prompt: &str, max_tokens: Option<u64>) -> Value {
        let mut body = json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You forecast."},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0.2,
        });
        if let Some(max) = max_tokens {
            body["max_tokens"] = json!(max);
        }
        body
    }

    async fn post_chat(
        fake: &FakeUpstream,
        client: &reqwest::Client,
        body: &Value,
    ) -> reqwest::Response {
        client
            .post(format!("{}/v1/chat/completions", fake.base_url()))
            .bearer_auth("fake-chat-key")
            .json(body)
            .send()
            .await
            .expect("send")
    }

    async fn post_search(
        fake: &FakeUpstream,
        client: &reqwest::Client,
        body: &Value,
    ) -> reqwest::Response {
        client
            .post(format!("{}/search", fake.base_url()))
            .header("authorization", "fake-search-key")
            .json(body)
            .send()
            .await
            .expect("send")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[tokio::test]
    async fn health_answers_and_is_not_counted() {
        let fake = start().await;
        let response = client()
            .get(format!("{}/health", fake.base_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        assert_eq!(fake.stats(), FakeStats::default());
        assert!(fake.recorded().is_empty());
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn chat_happy_path_reports_usage_and_bills_it() {
        let fake = start().await;
        let client = client();
        // System "You forecast." (13 chars) + user prompt (27 chars) = 40 chars.
        let prompt = "Will it rain in Paris soon?";
        assert_eq!(prompt.len(), 27);
        let response = post_chat(&fake, &client, &chat_body(prompt, Some(100))).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["model"], MODEL);
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        assert_eq!(content, default_chat_answer(prompt));
        assert!(content.starts_with("Probability: 0."), "{content}");
        assert_eq!(content.len(), 17);
        assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert_eq!(answer["usage"]["prompt_tokens"], 10);
        assert_eq!(answer["usage"]["completion_tokens"], 5);
        assert_eq!(answer["usage"]["total_tokens"], 15);

        // Identical prompt, identical answer; another prompt is still well formed.
        let again: Value = post_chat(&fake, &client, &chat_body(prompt, Some(100)))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(again["choices"][0]["message"]["content"], content);
        assert_ne!(again["id"], answer["id"]);

        let stats = fake.stats();
        assert_eq!(stats.chat_requests, 2);
        assert_eq!(stats.chat_ok, 2);
        assert_eq!(stats.billed_prompt_tokens, 20);
        assert_eq!(stats.billed_completion_tokens, 10);
        // 20 * $2/M + 10 * $8/M = $0.00012.
        assert!(
            close(stats.billed_usd, 20.0 * 2e-6 + 10.0 * 8e-6),
            "{stats:?}"
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn chat_completion_never_exceeds_max_tokens() {
        let fake = start().await;
        let client = client();
        fake.set_chat_reply(Some("x".repeat(400))); // 100 tokens
        let answer: Value = post_chat(&fake, &client, &chat_body("q", Some(7)))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(answer["usage"]["completion_tokens"], 7);
        assert_eq!(answer["choices"][0]["finish_reason"], "length");
        assert_eq!(
            answer["choices"][0]["message"]["content"]
                .as_str()
                .map(str::len),
            Some(28)
        );
        // Without max_tokens the limit is 16.
        let answer: Value = post_chat(&fake, &client, &chat_body("q", None))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(answer["usage"]["completion_tokens"], DEFAULT_MAX_TOKENS);
        // Default answer (5 tokens) cut to 1 token.
        fake.set_chat_reply(None);
        let answer: Value = post_chat(&fake, &client, &chat_body("q", Some(1)))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(answer["usage"]["completion_tokens"], 1);
        assert_eq!(answer["choices"][0]["message"]["content"], "Prob");
        // max_tokens 0 or negative is a 400, not billed.
        let billed = fake.stats().billed_usd;
        for bad in [json!(0), json!(-5)] {
            let mut body = chat_body("q", None);
            body["max_tokens"] = bad;
            assert_eq!(post_chat(&fake, &client, &body).await.status(), 400);
        }
        assert!(close(fake.stats().billed_usd, billed));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn chat_without_the_right_key_is_401() {
        let fake = start().await;
        let client = client();
        let url = format!("{}/v1/chat/completions", fake.base_url());
        let body = chat_body("q", None);
        let missing = client.post(&url).json(&body).send().await.expect("send");
        assert_eq!(missing.status(), 401);
        let wrong = client
            .post(&url)
            .bearer_auth("not-the-key")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(wrong.status(), 401);
        let error: Value = wrong.json().await.expect("json");
        assert_eq!(error["error"]["code"], "invalid_api_key");
        assert!(error["error"]["message"].is_string());
        // The raw key without "Bearer" is not accepted either.
        let raw = client
            .post(&url)
            .header("authorization", "fake-chat-key")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(raw.status(), 401);
        // A 401 does not consume a scripted failure.
        fake.fail_next(1, Failure::Unavailable);
        let wrong = client.post(&url).json(&body).send().await.expect("send");
        assert_eq!(wrong.status(), 401);
        assert_eq!(fake.pending_failures(), 1);
        let stats = fake.stats();
        assert_eq!((stats.chat_requests, stats.chat_ok), (4, 0));
        assert!(close(stats.billed_usd, 0.0));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn chat_unknown_model_is_404() {
        let fake = start().await;
        let mut body = chat_body("q", None);
        body["model"] = json!("nobody/Nothing-1B");
        let response = post_chat(&fake, &client(), &body).await;
        assert_eq!(response.status(), 404);
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["message"], "model not found");
        assert_eq!(error["error"]["code"], "model_not_found");
        assert_eq!(fake.stats().chat_ok, 0);
        assert!(close(fake.stats().billed_usd, 0.0));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn chat_malformed_json_is_400() {
        let fake = start().await;
        let response = client()
            .post(format!("{}/v1/chat/completions", fake.base_url()))
            .bearer_auth("fake-chat-key")
            .body("{not json")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn unavailable_then_success() {
        let fake = start().await;
        let client = client();
        fake.fail_next(2, Failure::Unavailable);
        assert_eq!(fake.pending_failures(), 2);
        let body = chat_body("q", None);
        for _ in 0..2 {
            let response = post_chat(&fake, &client, &body).await;
            assert_eq!(response.status(), 503);
        }
        assert_eq!(post_chat(&fake, &client, &body).await.status(), 200);
        let stats = fake.stats();
        assert_eq!((stats.chat_requests, stats.chat_ok), (3, 1));
        assert_eq!(fake.pending_failures(), 0);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn rate_limited_with_retry_after() {
        let fake = start().await;
        let client = client();
        fake.fail_next(
            1,
            Failure::RateLimited {
                retry_after: Duration::from_millis(1_500),
            },
        );
        fake.fail_next(1, Failure::Status(500));
        let response = post_chat(&fake, &client, &chat_body("q", None)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()[RETRY_AFTER_MS], "1500");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
        // Plans queue up: the second one comes next.
        let response = post_chat(&fake, &client, &chat_body("q", None)).await;
        assert_eq!(response.status(), 500);
        assert_eq!(
            post_chat(&fake, &client, &chat_body("q", None))
                .await
                .status(),
            200
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn garbage_body_is_200_not_json_and_not_billed() {
        let fake = start().await;
        fake.fail_next(1, Failure::Garbage);
        let response = post_chat(&fake, &client(), &chat_body("q", None)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("text");
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let stats = fake.stats();
        assert_eq!((stats.chat_requests, stats.chat_ok), (1, 1));
        assert!(close(stats.billed_usd, 0.0));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn no_usage_is_answered_but_not_billed() {
        let fake = start().await;
        let client = client();
        fake.fail_next(1, Failure::NoUsage);
        let answer: Value = post_chat(&fake, &client, &chat_body("q", None))
            .await
            .json()
            .await
            .expect("json");
        assert!(answer.get("usage").is_none());
        assert!(answer["choices"][0]["message"]["content"].is_string());
        fake.fail_next(1, Failure::NoUsage);
        let answer: Value = post_search(&fake, &client, &json!({"prompt": "news"}))
            .await
            .json()
            .await
            .expect("json");
        assert!(answer.get("cost_usd").is_none());
        assert!(answer["results"].is_array());
        let stats = fake.stats();
        assert_eq!((stats.chat_ok, stats.search_ok), (1, 1));
        assert_eq!(stats.billed_searches, 0);
        assert!(close(stats.billed_usd, 0.0));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn cold_model_is_503_until_warmed() {
        let fake = start().await;
        let client = client();
        fake.set_cold(MODEL, true);
        let response = post_chat(&fake, &client, &chat_body("q", None)).await;
        assert_eq!(response.status(), 503);
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "model_cold");
        // Other models are unaffected.
        let mut other = chat_body("q", None);
        other["model"] = json!("fake-org/Fake-Model-70B");
        assert_eq!(post_chat(&fake, &client, &other).await.status(), 200);
        fake.set_cold(MODEL, false);
        assert_eq!(
            post_chat(&fake, &client, &chat_body("q", None))
                .await
                .status(),
            200
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn search_happy_path_and_billing() {
        let fake = start().await;
        let client = client();
        let body = json!({
            "prompt": "election polls",
            "tools": ["web", "news"],
            "start_date": "2025-03-01",
            "end_date": "2025-03-31",
            "count": 4,
        });
        let response = post_search(&fake, &client, &body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), 4);
        for result in results {
            assert!(result["title"].is_string());
            assert!(
                result["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("https://"))
            );
            assert!(result["snippet"].is_string());
        }
        // The newest four pages of the window (weekly from 2025-01-01),
        // newest first.
        let published: Vec<&str> = results
            .iter()
            .map(|r| r["published"].as_str().expect("published"))
            .collect();
        assert_eq!(
            published,
            [
                "2025-03-26T00:00:00Z",
                "2025-03-19T00:00:00Z",
                "2025-03-12T00:00:00Z",
                "2025-03-05T00:00:00Z"
            ]
        );
        assert_eq!(answer["cost_usd"], 0.004);
        // Deterministic.
        let again: Value = post_search(&fake, &client, &body)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(again, answer);
        // Bearer form is refused, so is a missing prompt.
        let bearer = client
            .post(format!("{}/search", fake.base_url()))
            .bearer_auth("fake-search-key")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(bearer.status(), 401);
        assert_eq!(
            post_search(&fake, &client, &json!({"count": 2}))
                .await
                .status(),
            400
        );

        let stats = fake.stats();
        assert_eq!((stats.search_requests, stats.search_ok), (4, 2));
        assert_eq!(stats.billed_searches, 2);
        assert!(close(stats.billed_usd, 0.008), "{stats:?}");
        assert_eq!(stats.chat_requests, 0);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn search_honours_its_window_unless_told_to_leak() {
        let fake = start().await;
        let client = client();
        let published = |answer: &Value| -> Vec<i64> {
            answer["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| {
                    chrono::DateTime::parse_from_rfc3339(r["published"].as_str().expect("date"))
                        .expect("rfc 3339")
                        .timestamp()
                })
                .collect()
        };
        let ask = |body: Value| {
            let (fake, client) = (&fake, &client);
            async move {
                let response = post_search(fake, client, &body).await;
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("json")
            }
        };
        // No window: the newest pages of the corpus.
        let newest = SEARCH_FIRST_PUBLISHED + (SEARCH_CORPUS_SIZE - 1) * SEARCH_PUBLISHED_STEP;
        let all = ask(json!({"prompt": "q", "count": 2})).await;
        assert_eq!(published(&all), [newest, newest - SEARCH_PUBLISHED_STEP]);
        // An end in any of the accepted forms: nothing after it.
        let end = SEARCH_FIRST_PUBLISHED + 10 * SEARCH_PUBLISHED_STEP + 3600;
        for form in [
            json!(end),
            json!("2025-03-12T01:00:00Z"),
            json!("2025-03-12T03:00:00+02:00"),
        ] {
            let answer = ask(json!({"prompt": "q", "count": 5, "end_date": form})).await;
            let dates = published(&answer);
            assert_eq!(dates.len(), 5, "{form}");
            assert_eq!(dates[0], end - 3600, "{form}");
            assert!(dates.iter().all(|d| *d <= end), "{form}");
        }
        // A date-only end includes the page published at its midnight.
        let answer = ask(json!({"prompt": "q", "count": 1, "end_date": "2025-03-12"})).await;
        assert_eq!(published(&answer), [end - 3600]);
        // Both bounds: only what lies between.
        let answer = ask(json!({"prompt": "q", "count": 20, "start_date": "2025-01-08", "end_date": "2025-01-22"})).await;
        assert_eq!(published(&answer).len(), 3);
        // Unreadable bounds are refused.
        for bad in [json!("yesterday"), json!(true), json!(1.5)] {
            let response =
                post_search(&fake, &client, &json!({"prompt": "q", "end_date": bad})).await;
            assert_eq!(response.status(), 400, "{bad}");
        }
        // A leaking upstream answers as if there were no window.
        fake.set_search_ignores_window(true);
        let leaked = ask(json!({"prompt": "q", "count": 2, "end_date": end})).await;
        assert_eq!(published(&leaked), published(&all));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn generic_echo() {
        let fake = start().await;
        let client = client();
        let url = format!("{}/generic/weather", fake.base_url());
        let body = json!({"city": "Oslo", "days": [1, 2]});
        let response = client
            .post(&url)
            .header("x-api-key", "fake-generic-key")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer, json!({"echo": body, "service": "weather"}));
        let unauthorized = client.post(&url).json(&body).send().await.expect("send");
        assert_eq!(unauthorized.status(), 401);
        let stats = fake.stats();
        assert_eq!((stats.generic_requests, stats.generic_ok), (2, 1));
        assert!(close(stats.billed_usd, 0.0));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn records_sooth_headers_and_raw_body() {
        let fake = start().await;
        let raw =
            br#"{"model":"fake-org/Fake-Model-8B","messages":[{"role":"user","content":"hi"}]}"#;
        let response = client()
            .post(format!("{}/v1/chat/completions", fake.base_url()))
            .bearer_auth("fake-chat-key")
            .header("X-Sooth-Signature", "c2ln")
            .header("x-sooth-nonce", "n1")
            .header("x-other", "ignored")
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        let recorded = fake.recorded();
        assert_eq!(recorded.len(), 1);
        let request = &recorded[0];
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(request.body, raw.to_vec());
        assert_eq!(request.headers.len(), 2);
        assert_eq!(request.header("x-sooth-signature"), Some("c2ln"));
        assert_eq!(request.header("X-SOOTH-NONCE"), Some("n1"));
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.api_key.as_deref(), Some("fake-chat-key"));
        fake.reset_stats();
        assert!(fake.recorded().is_empty());
        assert_eq!(fake.stats(), FakeStats::default());
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn recording_keeps_only_the_latest() {
        let fake = start().await;
        let client = client();
        let url = format!("{}/generic/log", fake.base_url());
        for i in 0..(RECORDED_CAPACITY + 5) {
            let response = client
                .post(&url)
                .header("x-api-key", "fake-generic-key")
                .json(&json!(i))
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 200);
        }
        let recorded = fake.recorded();
        assert_eq!(recorded.len(), RECORDED_CAPACITY);
        assert_eq!(recorded[0].body, b"5".to_vec());
        assert_eq!(
            recorded[RECORDED_CAPACITY - 1].body,
            (RECORDED_CAPACITY + 4).to_string().into_bytes()
        );
        fake.shutdown().await;
    }

    async fn concurrent_chats(fake: &FakeUpstream, n: usize) {
        let client = client();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let client = client.clone();
            let url = format!("{}/v1/chat/completions", fake.base_url());
            tasks.spawn(async move {
                client
                    .post(url)
                    .bearer_auth("fake-chat-key")
                    .json(&chat_body(&format!("question {i:04}"), Some(4)))
                    .send()
                    .await
                    .expect("send")
                    .status()
            });
        }
        while let Some(status) = tasks.join_next().await {
            assert_eq!(status.expect("join"), 200);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_counted_exactly() {
        let fake = start().await;
        fake.set_latency(Duration::from_millis(20));
        concurrent_chats(&fake, 200).await;
        let stats = fake.stats();
        assert_eq!((stats.chat_requests, stats.chat_ok), (200, 200));
        // Each: 13 + 13 chars = 7 prompt tokens; answer cut to 4 tokens.
        assert_eq!(stats.billed_prompt_tokens, 200 * 7);
        assert_eq!(stats.billed_completion_tokens, 200 * 4);
        let expected = 200.0 * (7.0 * 2e-6 + 4.0 * 8e-6);
        assert!((stats.billed_usd - expected).abs() < 1e-9, "{stats:?}");
        fake.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_concurrent_requests_with_latency_overlap() {
        let fake = start().await;
        fake.set_latency(Duration::from_millis(300));
        let started = Instant::now();
        concurrent_chats(&fake, 1_000).await;
        let elapsed = started.elapsed();
        // Serialised, this would take 300 s; concurrently, about 0.3 s.
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        assert_eq!(fake.stats().chat_ok, 1_000);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn latency_is_respected_and_changeable() {
        let fake = FakeUpstream::start(FakeUpstreamConfig {
            latency: Duration::from_millis(150),
            ..config()
        })
        .await
        .expect("start");
        let client = client();
        let started = Instant::now();
        assert_eq!(
            post_chat(&fake, &client, &chat_body("q", None))
                .await
                .status(),
            200
        );
        assert!(started.elapsed() >= Duration::from_millis(150));

        // Applies to errors too (the 401 waits as well), and can be changed.
        fake.set_latency(Duration::from_millis(250));
        let started = Instant::now();
        let response = client
            .post(format!("{}/search", fake.base_url()))
            .json(&json!({"prompt": "x"}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401);
        assert!(started.elapsed() >= Duration::from_millis(250));

        // A scripted delay adds to it (to provoke client timeouts).
        fake.set_latency(Duration::ZERO);
        fake.fail_next(1, Failure::Delay(Duration::from_millis(300)));
        let timed_out = client
            .post(format!("{}/v1/chat/completions", fake.base_url()))
            .bearer_auth("fake-chat-key")
            .json(&chat_body("q", None))
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(timed_out.is_err_and(|e| e.is_timeout()));
        let started = Instant::now();
        assert_eq!(
            post_chat(&fake, &client, &chat_body("q", None))
                .await
                .status(),
            200
        );
        assert!(started.elapsed() < Duration::from_millis(150));
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let fake = start().await;
        let url = format!("{}/health", fake.base_url());
        fake.shutdown().await;
        let refused = client().get(url).send().await;
        assert!(refused.is_err());
    }
}
