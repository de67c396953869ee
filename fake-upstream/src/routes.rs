//! The routes and the error answers they share.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::shared::Shared;
use crate::{chat, generic, search};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/chat/completions", post(chat::chat))
        .route("/search", post(search::search))
        .route("/generic/{name}", post(generic::generic))
        .with_state(shared)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// An OpenAI-style error answer.
pub(crate) fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

pub(crate) fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid or missing API key",
        "invalid_request_error",
        "invalid_api_key",
    )
}

pub(crate) fn bad_request(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        "invalid_request",
    )
}
