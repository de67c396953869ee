//! The daemon's HTTP API: events, runs, miners, the leaderboard and the weights, as JSON, and
//! the miners' signed uploads, registration and linked service keys (the endpoints are
//! documented in `validator/API.md`).
//!
//! Owns the routes, their query parameters and the shape of their answers ([`views`],
//! [`upload_views`]). The read endpoints only read the [`Store`]; the miners' requests go to
//! the [`UploadDesk`], which holds their rules. It must not decide a rule itself (the
//! standings it serves are those the daemon recorded with
//! [`Store::record_scores_and_weights`]).
//!
//! Every answer is JSON, errors included: `{"code": "...", "message": "..."}`, the code a
//! stable word (see [`ApiError`]), with status 400 for a bad query (unknown parameter, bad
//! value) or a malformed request, 401 for a signature refused, 403 for a hotkey that may not
//! do this, 404 for an unknown event, miner, version, service or path, 405 for a method the
//! route does not take, 409 for a conflict (already uploaded, already registered), 413 for a
//! body over its cap, 422 for bytes that are not a component, 429 for a rate exceeded, 503 when
//! the gateway did not take a linked key, and 500 with a generic message when the store fails
//! (the error is logged, not sent). No answer ever holds a miner's linked key.
//!
//! Lists are keyset-paginated: `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and
//! `before`, the event id of the last item of the previous page.

mod download_routes;
mod key_routes;
mod routes;
mod signed_body;
mod upload_routes;
pub mod upload_views;
pub mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use sooth_protocol::EpistulaError;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::linked_keys::MinerKeyError;
use crate::store::{Store, StoreError};
use crate::uploads::{DeskError, UploadDesk};

pub use key_routes::KEY_BODY_BYTES;
pub use signed_body::BODY_TIMEOUT;

/// Items in a page when the query gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

/// The largest `limit` a query may give.
pub const MAX_LIMIT: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    store: Store,
    desk: Option<Arc<UploadDesk>>,
    /// Upload bodies read at once.
    bodies: Arc<Semaphore>,
}

impl FromRef<ApiState> for Store {
    fn from_ref(state: &ApiState) -> Self {
        state.store.clone()
    }
}

/// The read-only routes over `store`, ready to serve (e.g. with `axum::serve`); the miners'
/// endpoints answer 404.
pub fn router(store: Store) -> Router {
    build(ApiState {
        store,
        desk: None,
        bodies: Arc::new(Semaphore::new(1)),
    })
}

/// Every route, the miners' going to `desk`, which reads at most `max_in_flight` upload bodies
/// at once.
pub fn router_with_uploads(desk: Arc<UploadDesk>, max_in_flight: usize) -> Router {
    build(ApiState {
        store: desk.store().clone(),
        desk: Some(desk),
        bodies: Arc::new(Semaphore::new(max_in_flight.max(1))),
    })
}

fn build(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route("/v1/identity", get(upload_routes::identity))
        .route("/v1/agents", post(upload_routes::upload))
        .route("/v1/agents/{version}", get(upload_routes::version))
        .route("/v1/miners", post(upload_routes::register))
        .route("/v1/services/{service}/key", post(key_routes::link_key))
        .route(
            "/v1/miners/{hotkey}/agents",
            get(upload_routes::miner_versions),
        )
        .route("/v1/events", get(routes::events))
        .route("/v1/events/{id}", get(routes::event))
        .route("/v1/events/{id}/runs", get(routes::event_runs))
        .route("/v1/miners/{hotkey}", get(routes::miner))
        .route("/v1/miners/{hotkey}/runs", get(routes::miner_runs))
        .route("/v1/leaderboard", get(routes::leaderboard))
        .route("/v1/weights", get(routes::weights))
        .route("/v1/downloads", get(download_routes::index))
        .route("/v1/downloads/{day}/{file}", get(download_routes::file))
        // The leaderboard's HTML pages (`/`, `/miners/{hotkey}`, `/events/{id}`, `/operator`).
        .merge(crate::pages::routes())
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Upload bodies are bounded by the desk's own cap, read by the handler.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Why a request failed; each maps to a status code and a JSON body `{"code": "...",
/// "message": "..."}`.
#[derive(Debug, Error)]
pub enum ApiError {
    /// A query parameter is unknown or has a bad value, or a path segment cannot be read: 400,
    /// `bad_query`.
    #[error("{0}")]
    BadQuery(String),
    /// A malformed request: 400 with its own code.
    #[error("{message}")]
    BadRequest {
        /// The code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A miner's request refused by the desk: the status its code calls for.
    #[error(transparent)]
    Desk(#[from] DeskError),
    /// The service cannot take the request now: 503, `unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// No event, miner, version or route matches: 404, `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// The route does not take this method: 405, `method_not_allowed`.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The store failed: 500, `internal`, with a generic message (the error itself is logged).
    #[error("store error")]
    Store(#[from] StoreError),
    /// A download could not be written (a bug: tables of the store's values always can be).
    #[error("download error")]
    Download(#[from] crate::tables::TableError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut next_allowed_at: Option<DateTime<Utc>> = None;
        let mut retry_at: Option<DateTime<Utc>> = None;
        let (status, code, message) = match self {
            Self::BadQuery(message) => (StatusCode::BAD_REQUEST, "bad_query", message),
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message),
            Self::MethodNotAllowed(message) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            ),
            Self::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
            Self::Desk(error) => {
                match &error {
                    DeskError::TooSoon {
                        next_allowed_at: at,
                        ..
                    } => next_allowed_at = Some(*at),
                    DeskError::RegistrationRateLimited { retry_at: at } => retry_at = Some(*at),
                    _ => {}
                }
                let status = desk_status(&error);
                if status == StatusCode::INTERNAL_SERVER_ERROR {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "validator API: a miner's request failed on our side"
                    );
                    (
                        status,
                        "internal",
                        "internal error: the request could not be recorded".to_owned(),
                    )
                } else if let DeskError::LinkedKey(MinerKeyError::Gateway(_)) = &error {
                    // The gateway's errors name its files: logged, not sent.
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "validator API: the gateway did not take a miner's key"
                    );
                    (status, error.code(), error.to_string())
                } else {
                    (status, error.code(), crate::causes::with_causes(&error))
                }
            }
            Self::Download(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "validator API: writing a download failed"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error: the download could not be written".to_owned(),
                )
            }
            Self::Store(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "validator API: reading the store failed"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error: the validator database could not be read".to_owned(),
                )
            }
        };
        let body = views::ErrorView {
            code,
            message,
            next_allowed_at,
            retry_at,
        };
        (status, Json(body)).into_response()
    }
}

/// The status a refusal of the desk calls for.
fn desk_status(error: &DeskError) -> StatusCode {
    match error {
        DeskError::Signature(signature) => match signature {
            EpistulaError::Missing { .. }
            | EpistulaError::Malformed { .. }
            | EpistulaError::UnsupportedVersion { .. } => StatusCode::BAD_REQUEST,
            EpistulaError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        },
        DeskError::UnknownHotkey { .. }
        | DeskError::Deregistered { .. }
        | DeskError::RegistrationClosed
        | DeskError::LinkedKeysClosed => StatusCode::FORBIDDEN,
        DeskError::TooLarge { .. } | DeskError::BodyTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        DeskError::LinkedKey(linked) => match linked {
            MinerKeyError::InvalidService(_) | MinerKeyError::InvalidKey(_) => {
                StatusCode::BAD_REQUEST
            }
            MinerKeyError::UnknownService { .. } => StatusCode::NOT_FOUND,
            MinerKeyError::Gateway(_) => StatusCode::SERVICE_UNAVAILABLE,
            MinerKeyError::Seal(_) | MinerKeyError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        },
        DeskError::TooSoon { .. } | DeskError::RegistrationRateLimited { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        DeskError::NotAComponent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeskError::AlreadyUploaded | DeskError::Registration(_) => StatusCode::CONFLICT,
        DeskError::Save(_) | DeskError::Store(_) | DeskError::Daemon(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}
