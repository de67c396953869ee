//! The request and answer formats of the upstreams the gateway forwards to:
//! what goes out for an agent's request and how the upstream's answer is
//! read back into the protocol's types. No I/O here: sending, retries and
//! charging are the server's.

/// Desearch-style web search (`POST {base_url}/search`).
pub(crate) mod desearch;
/// OpenAI-compatible chat completions (`POST {base_url}/v1/chat/completions`).
pub(crate) mod openai;
