//! How a fake upstream is set up: its keys, models, prices and latency.

use std::time::Duration;

/// Configuration of a [`FakeUpstream`](crate::FakeUpstream).
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
