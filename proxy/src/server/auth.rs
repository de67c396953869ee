//! Run tokens: every route starts by checking the caller's.

use std::sync::Arc;

use axum::http::HeaderMap;
use sooth_protocol::{RunClaims, TokenError};

use super::answer::Refusal;
use super::{GatewayState, now_unix};

/// The claims of the run token in `headers` (`Authorization: Bearer ...`),
/// if the validator signed it and it has not expired.
pub(super) fn authenticate(
    state: &GatewayState,
    headers: &HeaderMap,
) -> Result<Arc<RunClaims>, Refusal> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Refusal::Unauthorized("missing run token (Authorization: Bearer ...)".into())
        })?;
    let token = value.strip_prefix("Bearer ").ok_or_else(|| {
        Refusal::Unauthorized("the Authorization header must be `Bearer <run token>`".into())
    })?;
    state.tokens.verify(token, now_unix()).map_err(|error| {
        Refusal::Unauthorized(match error {
            TokenError::Expired { .. } => "run token expired".to_owned(),
            other => format!("run token refused: {other}"),
        })
    })
}
