//! What a route answers: an [`Answer`] with what it cost, or a [`Refusal`]
//! with the status and headers the runner reads.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sooth_protocol::GatewayError;

/// An answer to the runner: a [`GatewayError`] body with its status, or an
/// authentication failure.
pub(super) enum Refusal {
    Unauthorized(String),
    /// Refused before any upstream call: nothing charged, no retries.
    Agent(GatewayError),
    /// The upstream was called and the call failed. The runner is told what
    /// it cost (`charged` is non-zero only when the upstream may have billed
    /// it, e.g. an unreadable 200) and how many retries were made before
    /// giving up, so that its gateway log shows them.
    Upstream {
        error: GatewayError,
        charged: f64,
        retries: u32,
    },
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Agent(error) | Self::Upstream { error, .. } => match error {
                GatewayError::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
                GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                GatewayError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                GatewayError::NotFound { .. } => StatusCode::NOT_FOUND,
                GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
                GatewayError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            },
        }
    }

    pub(super) fn into_response(self) -> Response {
        let status = self.status();
        let mut response = match &self {
            Self::Unauthorized(message) => (
                status,
                axum::Json(serde_json::json!({"error": "unauthorized", "message": message})),
            )
                .into_response(),
            Self::Agent(error) | Self::Upstream { error, .. } => {
                (status, axum::Json(error)).into_response()
            }
        };
        let headers = response.headers_mut();
        if let Self::Upstream {
            charged, retries, ..
        } = &self
        {
            if let Ok(value) = HeaderValue::from_str(&format!("{charged}")) {
                headers.insert(sooth_protocol::COST_HEADER, value);
            }
            headers.insert(sooth_protocol::RETRIES_HEADER, HeaderValue::from(*retries));
        }
        if let Self::Agent(GatewayError::RateLimited { retry_after_ms })
        | Self::Upstream {
            error: GatewayError::RateLimited { retry_after_ms },
            ..
        } = self
            && let Ok(value) =
                HeaderValue::from_str(&format!("{:.3}", f64::from(retry_after_ms) / 1000.0))
        {
            headers.insert("retry-after", value);
        }
        response
    }
}

pub(super) fn unreadable(service_name: &str, charged: f64, retries: u32) -> Refusal {
    Refusal::Upstream {
        error: GatewayError::Unavailable {
            message: format!("{service_name} sent an unreadable answer"),
        },
        charged,
        retries,
    }
}

/// A failed upstream call that was not billed.
pub(super) fn failed(error: GatewayError, retries: u32) -> Refusal {
    Refusal::Upstream {
        error,
        charged: 0.0,
        retries,
    }
}

pub(super) fn bad(message: impl Into<String>) -> Refusal {
    Refusal::Agent(GatewayError::BadRequest {
        message: message.into(),
    })
}

/// A successful answer and what it cost.
pub(super) struct Answer {
    pub(super) body: Vec<u8>,
    pub(super) cost: f64,
    pub(super) retries: u32,
    /// `hit` or `miss`, for the cache header.
    pub(super) cache: &'static str,
}

impl Answer {
    pub(super) fn fresh(body: Vec<u8>, cost: f64, retries: u32) -> Self {
        Self {
            body,
            cost,
            retries,
            cache: "miss",
        }
    }
}
