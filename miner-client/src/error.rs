//! Why a request to a validator failed.

/// Why a request to a validator failed. Each error says only its own layer and leaves its
/// cause to `source()`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The validator's URL is not an http(s) base URL.
    #[error("{url:?} is not a validator URL (http:// or https://, without query or fragment)")]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// The HTTP client cannot be built (its TLS backend failed to start).
    #[error("cannot start the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The request did not get an answer: no connection, a timeout, a body cut short.
    #[error("no answer from {url}")]
    Http {
        /// The URL asked.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The validator refused the request with a JSON error.
    #[error("{}", api_text(message, code, next_allowed_at.as_deref(), retry_at.as_deref()))]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's stable word (`unknown_hotkey`, `upload_too_soon`, ...).
        code: String,
        /// The validator's message, for a human.
        message: String,
        /// When the next upload is allowed (with `upload_too_soon`).
        next_allowed_at: Option<String>,
        /// When to register again (with `registration_rate_limited`).
        retry_at: Option<String>,
    },
    /// The validator answered something other than the JSON its API documents.
    #[error("unexpected answer from the validator (HTTP {status}): {body_prefix:?}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The start of the body, as text.
        body_prefix: String,
    },
    /// The validator takes no uploads (its identity says so).
    #[error("this validator takes no uploads")]
    NoUploads,
    /// The validator cannot take miners' service keys (its identity says so); nothing was
    /// sent.
    #[error("this validator takes no linked keys (its gateway runs apart; ask its operator)")]
    NoLinkedKeys,
    /// The service name breaks the protocol's rule; nothing was sent.
    #[error("not a service name")]
    InvalidService(#[source] sooth_protocol::ServiceNameError),
    /// The API key breaks the gateway's rule (the error never repeats it); nothing was sent.
    #[error("not an API key")]
    InvalidApiKey(#[source] sooth_protocol::ApiKeyError),
    /// The upload is over the validator's cap; it was not sent.
    #[error("the agent is {size} bytes, over the validator's cap of {limit} bytes")]
    TooLarge {
        /// The upload's size.
        size: u64,
        /// The cap.
        limit: u64,
    },
}

impl ClientError {
    /// The API error's stable word, for a refusal by the validator.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The message, the instant the error names if the message does not say it already, and the
/// code.
fn api_text(
    message: &str,
    code: &str,
    next_allowed_at: Option<&str>,
    retry_at: Option<&str>,
) -> String {
    let mut text = message.to_owned();
    if let Some(at) = next_allowed_at.filter(|at| !says_instant(message, at)) {
        text.push_str(&format!("; the next upload is allowed at {at}"));
    }
    if let Some(at) = retry_at.filter(|at| !says_instant(message, at)) {
        text.push_str(&format!("; try again after {at}"));
    }
    text.push_str(&format!(" ({code})"));
    text
}

/// Whether `message` holds the instant `at` (RFC 3339) as sent, or written as chrono writes
/// an instant (`2026-03-04 10:00:00 UTC`).
fn says_instant(message: &str, at: &str) -> bool {
    message.contains(at)
        || chrono::DateTime::parse_from_rfc3339(at)
            .is_ok_and(|instant| message.contains(&instant.with_timezone(&chrono::Utc).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_says_its_message_and_code() {
        let error = ClientError::Api {
            status: 403,
            code: "unknown_hotkey".into(),
            message: "hotkey abc is not registered".into(),
            next_allowed_at: None,
            retry_at: None,
        };
        assert_eq!(
            error.to_string(),
            "hotkey abc is not registered (unknown_hotkey)"
        );
        assert_eq!(error.code(), Some("unknown_hotkey"));
    }

    #[test]
    fn the_next_allowed_instant_is_said_once() {
        let at = "2026-03-04T10:00:00Z";
        let said = ClientError::Api {
            status: 429,
            code: "upload_too_soon".into(),
            message: format!("the next is allowed at {at}"),
            next_allowed_at: Some(at.into()),
            retry_at: None,
        };
        assert_eq!(said.to_string().matches(at).count(), 1);
        let said_otherwise = ClientError::Api {
            status: 429,
            code: "upload_too_soon".into(),
            message: "the next is allowed at 2026-03-04 10:00:00.250 UTC".into(),
            next_allowed_at: Some("2026-03-04T10:00:00.250Z".into()),
            retry_at: None,
        };
        assert_eq!(
            said_otherwise.to_string(),
            "the next is allowed at 2026-03-04 10:00:00.250 UTC (upload_too_soon)"
        );
        let unsaid = ClientError::Api {
            status: 429,
            code: "upload_too_soon".into(),
            message: "too soon".into(),
            next_allowed_at: Some(at.into()),
            retry_at: None,
        };
        assert_eq!(
            unsaid.to_string(),
            format!("too soon; the next upload is allowed at {at} (upload_too_soon)")
        );
    }
}
