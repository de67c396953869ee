//! Reading a miner's signed request: what can be checked without the body first (its declared
//! length, the signer, the timestamp), then the body, bounded in size, time and how many are
//! read at once, then the signature over it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use sooth_protocol::VerifiedEpistula;

use super::{ApiError, ApiState};
use crate::uploads::UploadDesk;

/// How long a signed request's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// A header's value by (lower-case) name, as the signature checks ask for it.
pub(super) fn header_lookup(headers: &HeaderMap) -> impl Fn(&str) -> Option<String> + '_ {
    |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
}

/// What a signed request's body may be.
pub(super) struct BodyRules<'a> {
    /// The most bytes it may have.
    pub limit: u64,
    /// The error for a body over the limit.
    pub too_large: &'a (dyn Fn() -> ApiError + Sync),
    /// Whether the signer must be registered already (everything but registration).
    pub registered_signer: bool,
    /// What the body is, for the timeout's message ("the upload").
    pub what: &'static str,
}

/// Reads and verifies the signed request of `headers` and `body` under `rules`.
///
/// # Errors
///
/// [`ApiError`]: a body over the limit (declared, or read past it), a signer that may not send
/// it, a stale or bad signature, a body that did not arrive within [`BODY_TIMEOUT`].
pub(super) async fn read_signed(
    state: &ApiState,
    desk: &UploadDesk,
    headers: &HeaderMap,
    body: Body,
    rules: &BodyRules<'_>,
) -> Result<(Bytes, VerifiedEpistula), ApiError> {
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
        .is_some_and(|length| length > rules.limit)
    {
        return Err((rules.too_large)());
    }
    desk.precheck(header_lookup(headers), rules.registered_signer)
        .await?;
    let _permit = state
        .bodies
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable("the validator is shutting down".to_owned()))?;
    let read_limit = usize::try_from(rules.limit).unwrap_or(usize::MAX);
    let bytes =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, read_limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return Err((rules.too_large)()),
            Err(_) => {
                return Err(ApiError::BadRequest {
                    code: "body_timeout",
                    message: format!(
                        "{} did not arrive within {} s",
                        rules.what,
                        BODY_TIMEOUT.as_secs()
                    ),
                });
            }
        };
    let signed = desk.verify(header_lookup(headers), &bytes)?;
    Ok((bytes, signed))
}
