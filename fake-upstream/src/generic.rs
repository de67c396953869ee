//! `POST /generic/{name}`: echoes its JSON body.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::routes::{bad_request, unauthorized};
use crate::shared::{Route, Shared};

/// The answer to a request that passed the counting and recording.
pub(crate) async fn answer(
    shared: &Shared,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if !shared.authorized(Route::Generic, headers, &shared.config.generic_api_key) {
        return unauthorized();
    }
    if let Err(response) = shared.scripted().await {
        return response;
    }
    let echo: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(err) => return bad_request(&format!("invalid request body: {err}")),
        }
    };
    axum::Json(json!({"echo": echo, "service": name})).into_response()
}
