//! The routes and the error answers they share.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::shared::{Route, Shared};
use crate::{chat, generic, search};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/v1/chat/completions",
            post(
                |State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes| {
                    handle(shared, Route::Chat, String::new(), uri, headers, body)
                },
            ),
        )
        .route(
            "/search",
            post(
                |State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes| {
                    handle(shared, Route::Search, String::new(), uri, headers, body)
                },
            ),
        )
        .route(
            "/generic/{name}",
            post(
                |State(shared): State<Arc<Shared>>,
                 Path(name): Path<String>,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| {
                    handle(shared, Route::Generic, name, uri, headers, body)
                },
            ),
        )
        .with_state(shared)
}

/// Every route but `/health`: records and counts the request, waits the
/// latency, answers (the generic route as the service `name`), and counts
/// a 200.
async fn handle(
    shared: Arc<Shared>,
    route: Route,
    name: String,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.arrive(route, &uri, &headers, &body).await;
    let response = match route {
        Route::Chat => chat::answer(&shared, &headers, &body).await,
        Route::Search => search::answer(&shared, &headers, &body).await,
        Route::Generic => generic::answer(&shared, &name, &headers, &body).await,
    };
    shared.count_ok(route, &response);
    response
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
