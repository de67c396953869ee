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

mod chat;
mod config;
mod gateway_config;
mod generic;
mod routes;
mod script;
mod search;
mod shared;
mod stats;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use chat::{DEFAULT_MAX_TOKENS, default_chat_answer};
pub use config::FakeUpstreamConfig;
pub use gateway_config::{CHAT_KEY_ENV, GatewayConfigBuilder, SEARCH_KEY_ENV, ServiceBuilder};
pub use script::{Failure, RETRY_AFTER_MS};
pub use search::{SEARCH_CORPUS_SIZE, SEARCH_FIRST_PUBLISHED, SEARCH_PUBLISHED_STEP};
pub use stats::{FakeStats, RECORDED_CAPACITY, RecordedRequest};

use routes::router;
use shared::{Shared, duration_nanos, lock};

/// How long [`FakeUpstream::shutdown`] waits for open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Listen backlog, so that bursts of 1,000+ new connections are not refused.
const LISTEN_BACKLOG: u32 = 4_096;

/// A running fake upstream. Dropping it stops the server (without waiting);
/// [`FakeUpstream::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Binds `127.0.0.1` on a free port and serves in a spawned task.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start(config: FakeUpstreamConfig) -> std::io::Result<Self> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `addr` (port 0 for a free one) and serves in a spawned task; for
    /// demos that need a fixed port.
    ///
    /// # Errors
    ///
    /// When `addr` cannot be bound.
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

#[cfg(test)]
mod tests;
