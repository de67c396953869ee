//! The script of failures and quirks a test sets while the fake runs:
//! failures consumed by the next requests, cold models, a fixed chat
//! answer, a search that ignores its window.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::routes::error;
use crate::shared::{Shared, lock};

/// Header carrying the `Retry-After` delay in milliseconds (the standard
/// `Retry-After` header only has whole seconds).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The body of a [`Failure::Garbage`] answer: not JSON, despite its
/// content type.
const GARBAGE_BODY: &str = "<html><body>502 Bad Gateway</body></html>{\"choices\":[";

/// A scripted failure, consumed by one request (see [`FakeUpstream::fail_next`](crate::FakeUpstream::fail_next)).
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

#[derive(Debug, Default)]
pub(crate) struct Script {
    pub(crate) failures: VecDeque<(Failure, u32)>,
    pub(crate) cold: HashSet<String>,
    pub(crate) chat_reply: Option<String>,
    pub(crate) search_ignores_window: bool,
}

impl Script {
    pub(crate) fn pop_failure(&mut self) -> Option<Failure> {
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
    /// Consumes the next scripted failure. `Ok(no_usage)` to go on
    /// (after any scripted delay), `Err(response)` to answer with it.
    pub(crate) async fn scripted(&self) -> Result<bool, Response> {
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
}
