//! Reaching LLM chat, web search and other services through the validator's
//! gateway, with retries on the errors where waiting can help.

pub use crate::bindings::sooth::agent::gateway::{
    ChatMessage, ChatRequest, ChatResponse, GatewayError, SearchRequest, SearchResponse,
    SearchResult, TokenUsage, call, chat, search,
};

use std::time::Duration;

impl ChatMessage {
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

impl GatewayError {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_) | Self::Unavailable(_) | Self::Timeout
        )
    }

    /// A one-line description for logs and reasoning.
    pub fn describe(&self) -> String {
        match self {
            Self::BudgetExceeded(why) => format!("budget exceeded: {why}"),
            Self::RateLimited(ms) => format!("rate limited, retry after {ms} ms"),
            Self::Unavailable(why) => format!("unavailable: {why}"),
            Self::NotFound(what) => format!("not found: {what}"),
            Self::BadRequest(why) => format!("bad request: {why}"),
            Self::Timeout => "timed out".to_owned(),
        }
    }
}

/// How often and how patiently [`retry`] tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// No single wait is longer than this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// How long to wait after failed attempt number `attempt` (1-based),
    /// honouring the service's retry-after when it gave one.
    pub fn backoff(&self, attempt: u32, error: &GatewayError) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let asked = match error {
            GatewayError::RateLimited(ms) => Duration::from_millis(u64::from(*ms)),
            _ => Duration::ZERO,
        };
        exponential.max(asked).min(self.max_backoff)
    }
}

/// Call `operation` until it succeeds, fails with an error that retrying
/// cannot fix, or the policy's attempts are spent; returns the last result.
///
/// Waiting counts against the run's time limit like everything else.
///
/// # Errors
///
/// The last error when no attempt succeeded.
pub fn retry<T>(
    policy: RetryPolicy,
    mut operation: impl FnMut() -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    let mut attempt = 1;
    loop {
        match operation() {
            Err(error) if error.is_retryable() && attempt < policy.attempts => {
                std::thread::sleep(policy.backoff(attempt, &error));
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_honours_retry_after_and_is_capped() {
        let policy = RetryPolicy::default();
        let unavailable = GatewayError::Unavailable("cold".into());
        assert_eq!(policy.backoff(1, &unavailable), Duration::from_millis(250));
        assert_eq!(policy.backoff(3, &unavailable), Duration::from_millis(1000));
        assert_eq!(policy.backoff(30, &unavailable), Duration::from_secs(8));
        let limited = GatewayError::RateLimited(3000);
        assert_eq!(policy.backoff(1, &limited), Duration::from_millis(3000));
    }

    #[test]
    fn retry_stops_on_errors_that_cannot_be_fixed_by_waiting() {
        let policy = RetryPolicy {
            initial_backoff: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let result: Result<(), _> = retry(policy, || {
            calls += 1;
            Err(GatewayError::NotFound("model".into()))
        });
        assert_eq!(calls, 1);
        assert!(result.is_err());

        let mut calls = 0;
        let result = retry(policy, || {
            calls += 1;
            if calls < 3 {
                Err(GatewayError::Timeout)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result, Ok(3));

        let mut calls = 0;
        let result: Result<(), _> = retry(policy, || {
            calls += 1;
            Err(GatewayError::Unavailable("down".into()))
        });
        assert_eq!(calls, policy.attempts);
        assert!(result.is_err());
    }
}
