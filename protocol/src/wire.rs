//! The bodies that pass between an agent's host and the gateway: what an
//! agent asks for, what it gets back, and why a call failed, with the
//! response headers that carry what a call cost. The runner's HTTP client and
//! the gateway's server both speak exactly these types, so they cannot drift
//! apart.

use serde::{Deserialize, Serialize};

/// Response header: what the call cost, in US dollars (decimal).
pub const COST_HEADER: &str = "x-sooth-cost-usd";
/// Response header: `hit` when the answer came from the gateway's cache.
pub const CACHE_HEADER: &str = "x-sooth-cache";
/// Response header: how many upstream retries the gateway made.
pub const RETRIES_HEADER: &str = "x-sooth-retries";

/// One message of a chat conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Upper bound on generated tokens.
    pub max_tokens: Option<u32>,
}

/// Tokens consumed by one chat call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
}

/// The answer to a chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Generated text.
    pub content: String,
    /// The model that answered.
    pub model: String,
    /// Tokens consumed.
    pub usage: TokenUsage,
}

/// A web search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// What to search for.
    pub query: String,
    /// At most this many results.
    pub max_results: Option<u32>,
    /// Only results published at or after this instant (Unix seconds).
    pub start_date: Option<i64>,
    /// Only results published at or before this instant (Unix seconds).
    pub end_date: Option<i64>,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Page title.
    pub title: String,
    /// Page address.
    pub url: String,
    /// Excerpt.
    #[serde(default)]
    pub snippet: String,
    /// Publication instant (Unix seconds), when known.
    #[serde(default)]
    pub published: Option<i64>,
}

/// The answer to a search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Hits, best first.
    pub results: Vec<SearchResult>,
}

/// What an agent asks the gateway for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayRequest {
    /// LLM chat.
    Chat(ChatRequest),
    /// Web search.
    Search(SearchRequest),
    /// A further named service with a JSON body in text form.
    Call {
        /// The service's name in the gateway's configuration.
        service: String,
        /// JSON body, as text.
        body: String,
    },
}

impl GatewayRequest {
    /// The service this request goes to: `chat`, `search` or the named one.
    pub fn service(&self) -> &str {
        match self {
            Self::Chat(_) => "chat",
            Self::Search(_) => "search",
            Self::Call { service, .. } => service,
        }
    }

    /// SHA-256 of the request's canonical JSON, hex: how calls are told apart
    /// in a run's record without keeping prompts.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

/// A successful gateway answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayResponse {
    /// Answer to [`GatewayRequest::Chat`].
    Chat(ChatResponse),
    /// Answer to [`GatewayRequest::Search`].
    Search(SearchResponse),
    /// Answer to [`GatewayRequest::Call`]: JSON as text.
    Call {
        /// The service's JSON answer.
        body: String,
    },
}

/// Why a gateway call failed, as the agent sees it (the WIT `gateway-error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum GatewayError {
    /// A spending cap would be exceeded.
    #[error("budget exceeded: {message}")]
    BudgetExceeded {
        /// Which cap.
        message: String,
    },
    /// The upstream is rate limiting.
    #[error("rate limited, retry after {retry_after_ms} ms")]
    RateLimited {
        /// Suggested wait.
        retry_after_ms: u32,
    },
    /// The upstream is unavailable.
    #[error("unavailable: {message}")]
    Unavailable {
        /// Details.
        message: String,
    },
    /// Unknown service or model.
    #[error("not found: {message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// Malformed request.
    #[error("bad request: {message}")]
    BadRequest {
        /// What was wrong.
        message: String,
    },
    /// No answer within the time left.
    #[error("timed out")]
    Timeout,
}

impl GatewayError {
    /// A short machine-readable name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BudgetExceeded { .. } => "budget-exceeded",
            Self::RateLimited { .. } => "rate-limited",
            Self::Unavailable { .. } => "unavailable",
            Self::NotFound { .. } => "not-found",
            Self::BadRequest { .. } => "bad-request",
            Self::Timeout => "timeout",
        }
    }
}
