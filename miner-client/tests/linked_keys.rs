//! Linking a miner's own service key: sent once, signed over the JSON body, to the service's
//! route; refused locally when the name or the key breaks the rules or the validator takes no
//! keys; the validator's refusals kept.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sooth_miner_client::{ClientError, MinerClient};
use sooth_protocol::{EpistulaVerifier, HotkeyScheme, SecretHotkey};

struct Validator {
    hotkey: String,
    takes_keys: bool,
    verifier: EpistulaVerifier,
    /// (service, signer, body) of each request whose signature verified.
    received: Mutex<Vec<(String, String, Value)>>,
}

type Shared = Arc<Validator>;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn identity(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "hotkey": state.hotkey, "uploads": true, "max_upload_bytes": 1000,
        "upload_interval_hours": 72, "registration_open": true, "linked_keys": state.takes_keys
    }))
}

async fn link(
    State(state): State<Shared>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let verified = match state.verifier.verify(header, &body, now_ms()) {
        Ok(verified) => verified,
        Err(refusal) => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"code": refusal.code(), "message": refusal.to_string()})),
            )
                .into_response();
        }
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    state
        .received
        .lock()
        .unwrap()
        .push((service.clone(), verified.hotkey.to_string(), parsed));
    if service == "llm" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code": "unknown_service",
                        "message": "this validator's gateway has no service \"llm\""})),
        )
            .into_response();
    }
    Json(json!({"service": service, "linked_at": "2026-03-01T10:00:00Z"})).into_response()
}

async fn start(takes_keys: bool) -> (String, Shared) {
    let hotkey = SecretHotkey::generate(HotkeyScheme::Ed25519)
        .public()
        .to_string();
    let state = Arc::new(Validator {
        verifier: EpistulaVerifier::new(
            hotkey.clone(),
            vec![HotkeyScheme::Ed25519, HotkeyScheme::Sr25519],
            Duration::from_secs(8),
        ),
        hotkey,
        takes_keys,
        received: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v1/identity", get(identity))
        .route("/v1/services/{service}/key", post(link))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), state)
}

#[tokio::test]
async fn a_key_is_sent_once_signed_in_its_json_body() {
    let (url, state) = start(true).await;
    let secret = SecretHotkey::generate(HotkeyScheme::Sr25519);
    let client = MinerClient::new(&url, secret.clone()).unwrap();
    let linked = client
        .link_service_key("chat", "  sk-own-key-31\n")
        .await
        .unwrap();
    assert_eq!(linked.service, "chat");
    assert_eq!(linked.linked_at.to_rfc3339(), "2026-03-01T10:00:00+00:00");
    let received = state.received.lock().unwrap().clone();
    assert_eq!(
        received,
        [(
            "chat".to_owned(),
            secret.public().to_string(),
            json!({"api_key": "sk-own-key-31"})
        )]
    );

    let refused = client.link_service_key("llm", "sk-x").await.unwrap_err();
    assert_eq!(refused.code(), Some("unknown_service"), "{refused}");
}

#[tokio::test]
async fn what_breaks_the_rules_is_not_sent_and_the_key_is_not_repeated() {
    let (url, state) = start(true).await;
    let client = MinerClient::new(&url, SecretHotkey::generate(HotkeyScheme::Ed25519)).unwrap();
    for service in ["Chat", "a/b", "", "../key"] {
        let refused = client.link_service_key(service, "sk-x").await.unwrap_err();
        assert!(
            matches!(refused, ClientError::InvalidService(_)),
            "{service:?}: {refused:?}"
        );
    }
    for key in ["", "sk secret-inside", &"k".repeat(4097)] {
        let refused = client.link_service_key("chat", key).await.unwrap_err();
        assert!(
            matches!(refused, ClientError::InvalidApiKey(_)),
            "{refused:?}"
        );
        let said = format!("{refused} {refused:?}");
        assert!(!said.contains("secret-inside"), "{said}");
    }
    assert!(state.received.lock().unwrap().is_empty());

    let (closed_url, closed) = start(false).await;
    let client =
        MinerClient::new(&closed_url, SecretHotkey::generate(HotkeyScheme::Ed25519)).unwrap();
    let refused = client.link_service_key("chat", "sk-x").await.unwrap_err();
    assert!(matches!(refused, ClientError::NoLinkedKeys), "{refused:?}");
    assert!(closed.received.lock().unwrap().is_empty());
}
