//! What the fake received, answered and billed: counters per route and
//! the last requests, recorded for tests to read back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

use crate::shared::{Route, Shared, lock};

/// How many received requests [`FakeUpstream::recorded`](crate::FakeUpstream::recorded) keeps (the latest).
pub const RECORDED_CAPACITY: usize = 1_000;

/// Prefix of the request headers that are recorded.
const RECORDED_HEADER_PREFIX: &str = "x-sooth-";

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

impl Shared {
    /// Counts and records a request, then sleeps the latency (no lock held).
    pub(crate) async fn arrive(&self, route: Route, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
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

    /// Counts an answer of 200 to `route`.
    pub(crate) fn count_ok(&self, route: Route, response: &Response) {
        if response.status() == StatusCode::OK {
            let mut stats = lock(&self.stats);
            match route {
                Route::Chat => stats.chat_ok += 1,
                Route::Search => stats.search_ok += 1,
                Route::Generic => stats.generic_ok += 1,
            }
        }
    }
}
