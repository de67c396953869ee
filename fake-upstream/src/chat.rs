//! `POST /v1/chat/completions`: OpenAI-compatible chat completions with a
//! deterministic answer and usage.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::routes::{bad_request, error, unauthorized};
use crate::shared::{Route, Shared, lock};

/// `max_tokens` assumed when a chat request does not give one.
pub const DEFAULT_MAX_TOKENS: u64 = 16;

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
pub(crate) fn tokens_for(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX)
}

/// 64-bit FNV-1a: stable across platforms and releases.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The default answer to a prompt: `Probability: 0.01` to `0.99`.
pub fn default_chat_answer(last_user_message: &str) -> String {
    let hundredths = fnv1a(last_user_message.as_bytes()) % 99 + 1;
    format!("Probability: 0.{hundredths:02}")
}

/// The answer to a request that passed the counting and recording.
pub(crate) async fn answer(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
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
