//! The daemon's read-only HTTP API: events, runs, miners, the leaderboard and the weights, as
//! JSON (the endpoints are documented in `validator/API.md`).
//!
//! Owns the routes, their query parameters and the shape of their answers ([`views`]). It
//! only reads the [`Store`]; it must not write anything nor decide a rule (the standings it
//! serves are those the daemon recorded with [`Store::record_scores_and_weights`]).
//!
//! Every answer is JSON, errors included: `{"error": "..."}` with status 400 for a bad query
//! (unknown parameter, bad value), 404 for an unknown event, miner or path, 405 for another
//! method than GET, and 500 with a generic message when the store fails (the store's error is
//! logged, not sent).
//!
//! Lists are keyset-paginated: `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and
//! `before`, the event id of the last item of the previous page.

mod routes;
pub mod views;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use thiserror::Error;

use crate::store::{Store, StoreError};

/// Items in a page when the query gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

/// The largest `limit` a query may give.
pub const MAX_LIMIT: usize = 1000;

/// The API's routes over `store`, ready to serve (e.g. with `axum::serve`).
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route("/v1/events", get(routes::events))
        .route("/v1/events/{id}", get(routes::event))
        .route("/v1/events/{id}/runs", get(routes::event_runs))
        .route("/v1/miners/{hotkey}", get(routes::miner))
        .route("/v1/miners/{hotkey}/runs", get(routes::miner_runs))
        .route("/v1/leaderboard", get(routes::leaderboard))
        .route("/v1/weights", get(routes::weights))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(store)
}

/// Why a request failed; each maps to a status code and a JSON body `{"error": "..."}`.
#[derive(Debug, Error)]
pub enum ApiError {
    /// A query parameter is unknown or has a bad value, or a path segment cannot be read: 400.
    #[error("{0}")]
    BadQuery(String),
    /// No event, miner or route matches: 404.
    #[error("{0}")]
    NotFound(String),
    /// The route exists for GET only: 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The store failed: 500, with a generic message (the error itself is logged).
    #[error("store error")]
    Store(#[from] StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadQuery(message) => (StatusCode::BAD_REQUEST, message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, message),
            Self::MethodNotAllowed(message) => (StatusCode::METHOD_NOT_ALLOWED, message),
            Self::Store(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "validator API: reading the store failed"
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the validator database could not be read".to_owned(),
                )
            }
        };
        (status, Json(views::ErrorView { error: message })).into_response()
    }
}
