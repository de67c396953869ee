//! The OpenAI-compatible chat completions format (Chutes and the like).

use serde_json::Value;
use sooth_protocol::{ChatMessage, TokenUsage};

/// The chat completions route of the upstream at `base_url`.
pub(crate) fn completions_url(base_url: &str) -> String {
    format!("{}/v1/chat/completions", base_url.trim_end_matches('/'))
}

/// The body that asks `model` for a completion. The cache key is made from
/// the same body for the model the agent named, so that the key holds
/// exactly what the upstream is asked.
pub(crate) fn request(
    model: &str,
    messages: &[ChatMessage],
    temperature: Option<f32>,
    max_tokens: u32,
) -> Value {
    serde_json::json!({
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
    })
}

/// What a completion answered.
pub(crate) struct Completion {
    /// The first choice's text.
    pub(crate) content: String,
    /// The model that answered (empty when the upstream does not say).
    pub(crate) model: String,
    /// The tokens billed, when the upstream reports them.
    pub(crate) usage: Option<TokenUsage>,
}

/// Reads a completion; `None` when the answer has no first choice's text.
pub(crate) fn read_completion(body: &[u8]) -> Option<Completion> {
    let value: Value = serde_json::from_slice(body).ok()?;
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
    Some(Completion {
        content,
        model,
        usage,
    })
}
