//! `POST /generic/{name}`: echoes its JSON body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::routes::{bad_request, unauthorized};
use crate::shared::{Route, Shared};

pub(crate) async fn generic(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.arrive(Route::Generic, &uri, &headers, &body).await;
    let response = generic_answer(&shared, &name, &headers, &body).await;
    shared.count_ok(Route::Generic, &response);
    response
}

async fn generic_answer(
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
