//! The miners' endpoints: signed uploads and registration, and the versions' status.
//!
//! An upload's body is read only after what can be checked without it passed: the declared
//! length against the cap, the signer's hotkey registered, the timestamp in the window. It is
//! then read up to the cap (a body without a declared length that grows past it is refused
//! there), by at most `uploads.max_in_flight` requests at once and within [`BODY_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::upload_views::{IdentityView, RegisteredView, UploadAcceptedView, UploadView};
use super::{ApiError, ApiState};
use crate::store::{Store, StoreError, UploadedBy};
use crate::uploads::{DeskError, UploadDesk};

/// How long an upload's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest body a registration request may have.
const REGISTRATION_BODY_BYTES: usize = 4096;

pub(super) fn desk_of(state: &ApiState) -> Result<&Arc<UploadDesk>, ApiError> {
    state
        .desk
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this validator takes no uploads".to_owned()))
}

/// A header's value by (lower-case) name, as the signature checks ask for it.
pub(super) fn header_lookup(headers: &HeaderMap) -> impl Fn(&str) -> Option<String> + '_ {
    |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }
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
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
        && length > limit
    {
        return Err(too_large());
    }
    desk.precheck(header_lookup(&headers), true).await?;
    let _permit = state
        .bodies
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable("the validator is shutting down".to_owned()))?;
    let read_limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, read_limit)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::BadRequest {
                    code: "body_timeout",
                    message: format!(
                        "the upload did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                });
            }
        };
    let signed = desk.verify(header_lookup(&headers), &bytes)?;
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
    desk.precheck(header_lookup(&headers), false).await?;
    let bytes = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, REGISTRATION_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        _ => {
            return Err(ApiError::BadRequest {
                code: "bad_request",
                message: format!(
                    "a registration's body is at most {REGISTRATION_BODY_BYTES} bytes (it may be empty)"
                ),
            });
        }
    };
    let signed = desk.verify(header_lookup(&headers), &bytes)?;
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
