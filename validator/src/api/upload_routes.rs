//! The miners' endpoints: signed uploads and registration, and the versions' status.
//!
//! An upload's body is read only after what can be checked without it passed: the declared
//! length against the cap, the signer's hotkey registered, the timestamp in the window. It is
//! then read up to the cap (a body without a declared length that grows past it is refused
//! there), by at most `uploads.max_in_flight` requests at once and within
//! [`super::BODY_TIMEOUT`] (`signed_body`).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use super::signed_body::{BodyRules, read_signed};
use super::upload_views::{IdentityView, RegisteredView, UploadAcceptedView, UploadView};
use super::{ApiError, ApiState};
use crate::store::{Store, StoreError, UploadedBy};
use crate::uploads::{DeskError, UploadDesk};

/// The largest body a registration request may have.
const REGISTRATION_BODY_BYTES: u64 = 4096;

pub(super) fn desk_of(state: &ApiState) -> Result<&Arc<UploadDesk>, ApiError> {
    state
        .desk
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this validator takes no uploads".to_owned()))
}

pub(super) async fn identity(State(state): State<ApiState>) -> Json<IdentityView> {
    Json(match &state.desk {
        Some(desk) => IdentityView {
            hotkey: desk.validator_hotkey().to_owned(),
            uploads: true,
            max_upload_bytes: desk.settings().max_bytes,
            upload_interval_hours: desk.settings().min_interval.num_hours(),
            registration_open: desk.settings().open_registration,
            linked_keys: desk.takes_linked_keys(),
        },
        None => IdentityView {
            hotkey: String::new(),
            uploads: false,
            max_upload_bytes: 0,
            upload_interval_hours: 0,
            registration_open: false,
            linked_keys: false,
        },
    })
}

pub(super) async fn upload(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadAcceptedView>), ApiError> {
    let desk = desk_of(&state)?;
    let limit = desk.settings().max_bytes;
    let too_large = || ApiError::Desk(DeskError::TooLarge { limit });
    let rules = BodyRules {
        limit,
        too_large: &too_large,
        registered_signer: true,
        what: "the upload",
    };
    let (bytes, signed) = read_signed(&state, desk, &headers, body, &rules).await?;
    let accepted = desk
        .accept_upload(&signed.hotkey.to_string(), &bytes, UploadedBy::Miner)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadAcceptedView {
            version: accepted.version,
            hash: accepted.hash,
            status: "pending",
        }),
    ))
}

pub(super) async fn register(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RegisteredView>, ApiError> {
    let desk = desk_of(&state)?;
    let too_large = || ApiError::BadRequest {
        code: "bad_request",
        message: format!(
            "a registration's body is at most {REGISTRATION_BODY_BYTES} bytes (it may be empty)"
        ),
    };
    let rules = BodyRules {
        limit: REGISTRATION_BODY_BYTES,
        too_large: &too_large,
        registered_signer: false,
        what: "the registration",
    };
    let (_, signed) = read_signed(&state, desk, &headers, body, &rules).await?;
    let decision = desk.register(&signed.hotkey).await?;
    Ok(Json(RegisteredView {
        hotkey: decision.registered.hotkey,
        uid: decision.registered.uid,
        registered_at: decision.registered.registered_at,
        deregistered: decision.deregistered.map(|miner| miner.hotkey),
    }))
}

pub(super) async fn version(
    State(store): State<Store>,
    version: Result<Path<String>, PathRejection>,
) -> Result<Json<UploadView>, ApiError> {
    let Path(text) = version.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let id = text
        .parse::<i64>()
        .map_err(|_| ApiError::BadQuery(format!("a version id is a whole number, got {text:?}")))?;
    let record = store
        .upload(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no agent version {id}")))?;
    Ok(Json(record.into()))
}

pub(super) async fn miner_versions(
    State(store): State<Store>,
    hotkey: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<UploadView>>, ApiError> {
    let Path(hotkey) = hotkey.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let records = store
        .uploads_of(&hotkey)
        .await
        .map_err(|error| match error {
            StoreError::UnknownMiner { hotkey } => {
                ApiError::NotFound(format!("no miner with hotkey {hotkey:?}"))
            }
            other => ApiError::Store(other),
        })?;
    Ok(Json(records.into_iter().map(UploadView::from).collect()))
}
