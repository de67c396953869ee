//! `POST /v1/services/{service}/key`: a miner links its own key for one of the gateway's
//! services.
//!
//! Signed as uploads are, by a registered hotkey; the body is JSON `{"api_key": "..."}`, at
//! most [`KEY_BODY_BYTES`]. The answer names the service and the instant, never the key, and
//! no error repeats the body (a body that is not the JSON expected may be the key itself).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::signed_body::{BodyRules, read_signed};
use super::upload_routes::desk_of;
use super::upload_views::KeyLinkedView;
use super::{ApiError, ApiState};
use crate::uploads::DeskError;

/// The largest body a key's request may have (a key is at most 4096 bytes).
pub const KEY_BODY_BYTES: usize = 8192;

/// The body (no `Debug`: it holds the key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkKeyBody {
    api_key: String,
}

pub(super) async fn link_key(
    State(state): State<ApiState>,
    service: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<KeyLinkedView>, ApiError> {
    let desk = desk_of(&state)?;
    let Path(service) = service.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let limit = KEY_BODY_BYTES as u64;
    let too_large = || ApiError::Desk(DeskError::BodyTooLarge { limit });
    let rules = BodyRules {
        limit,
        too_large: &too_large,
        registered_signer: true,
        what: "the request",
    };
    let (bytes, signed) = read_signed(&state, desk, &headers, body, &rules).await?;
    // serde's message may quote the body, which may be the key: it is not passed on.
    let parsed: LinkKeyBody = serde_json::from_slice(&bytes).map_err(|_| ApiError::BadRequest {
        code: "bad_request",
        message: "the body must be the JSON object {\"api_key\": \"...\"}".to_owned(),
    })?;
    let linked = desk
        .link_key(&signed.hotkey.to_string(), &service, &parsed.api_key)
        .await?;
    Ok(Json(KeyLinkedView {
        service: linked.service,
        linked_at: linked.linked_at,
    }))
}
