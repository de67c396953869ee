//! The client against a small in-test validator that checks every signed request with the
//! protocol's Epistula verifier and answers canned JSON, JSON errors and, once, not JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sooth_miner_client::{ClientError, MinerClient};
use sooth_protocol::{EpistulaVerifier, HotkeyScheme, SecretHotkey};

/// What the test validator saw of one signed request that verified.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    signed_by: String,
    body_sha256: String,
    content_type: Option<String>,
    content_length: Option<String>,
}

struct Validator {
    hotkey: String,
    max_upload_bytes: u64,
    verifier: EpistulaVerifier,
    seen: Mutex<Vec<Seen>>,
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

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Verifies the request's Epistula headers over `body` and records it; `Some` refusal, as
/// the validator's JSON error, when they do not verify.
fn check(state: &Validator, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let verified = match state
        .verifier
        .verify(|name| header_text(headers, name), body, now_ms())
    {
        Ok(verified) => verified,
        Err(refusal) => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                refusal.code(),
                &refusal.to_string(),
            ));
        }
    };
    state.seen.lock().unwrap().push(Seen {
        path: path.to_owned(),
        signed_by: verified.hotkey.to_string(),
        body_sha256: hex::encode(Sha256::digest(body)),
        content_type: header_text(headers, header::CONTENT_TYPE.as_str()),
        content_length: header_text(headers, header::CONTENT_LENGTH.as_str()),
    });
    None
}

async fn identity(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "hotkey": state.hotkey, "uploads": true, "max_upload_bytes": state.max_upload_bytes,
        "upload_interval_hours": 72, "registration_open": true, "a_field_added_later": [1, 2]
    }))
}

async fn register(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = check(&state, "/v1/miners", &headers, &body) {
        return refusal;
    }
    let signer = header_text(&headers, "epistula-signed-by").unwrap();
    Json(
        json!({"hotkey": signer, "uid": 4, "registered_at": "2026-03-01T10:00:00Z",
                "deregistered": null}),
    )
    .into_response()
}

async fn upload(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = check(&state, "/v1/agents", &headers, &body) {
        return refusal;
    }
    let uploads = state
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|seen| seen.path == "/v1/agents")
        .count();
    if uploads > 1 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(
                json!({"code": "upload_too_soon", "message": "one upload every 72 hours",
                        "next_allowed_at": "2026-03-04T10:00:00Z"}),
            ),
        )
            .into_response();
    }
    (
        StatusCode::ACCEPTED,
        Json(
            json!({"version": 7, "hash": hex::encode(Sha256::digest(&body)),
                    "status": "pending"}),
        ),
    )
        .into_response()
}

fn version_json(id: i64, hotkey: &str) -> Value {
    json!({
        "version": id, "hotkey": hotkey, "hash": "9f86d081", "size_bytes": 181_234,
        "uploaded_by": "miner", "status": "rejected",
        "reason": "duplicate: the same bytes as version 3", "matched_version": 3,
        "uploaded_at": "2026-03-01T10:00:00Z", "verified_at": null, "activated_at": null,
        "deactivated_at": null, "attempts": 1, "queue_position": 0,
        "verdicts": [{"check": "duplicate", "scope": "probe", "passed": false,
                      "matched_version": 3, "statistic": null, "detail": "same bytes",
                      "decided_at": "2026-03-01T10:00:01.250Z"}]
    })
}

async fn version(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = check(&state, &format!("/v1/agents/{id}"), &headers, &body) {
        return refusal;
    }
    if id != 7 {
        return error(StatusCode::NOT_FOUND, "not_found", "no version 8");
    }
    let signer = header_text(&headers, "epistula-signed-by").unwrap();
    Json(version_json(id, &signer)).into_response()
}

async fn versions(
    State(state): State<Shared>,
    Path(hotkey): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/miners/{hotkey}/agents");
    if let Some(refusal) = check(&state, &path, &headers, &body) {
        return refusal;
    }
    Json(json!([version_json(6, &hotkey), version_json(7, &hotkey)])).into_response()
}

/// A test validator on a free port: its URL and state.
async fn start(max_upload_bytes: u64) -> (String, Shared) {
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
        max_upload_bytes,
        seen: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v1/identity", get(identity))
        .route("/v1/miners", post(register))
        .route("/v1/agents", post(upload))
        .route("/v1/agents/{version}", get(version))
        .route("/v1/miners/{hotkey}/agents", get(versions))
        .route(
            "/broken/v1/identity",
            get(|| async { (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>") }),
        )
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), state)
}

fn seen(state: &Validator) -> Vec<Seen> {
    state.seen.lock().unwrap().clone()
}

#[tokio::test]
async fn registration_and_uploads_are_signed_over_the_bytes_sent() {
    let (url, state) = start(1 << 20).await;
    for scheme in [HotkeyScheme::Ed25519, HotkeyScheme::Sr25519] {
        let secret = SecretHotkey::generate(scheme);
        let client = MinerClient::new(&format!("{url}/"), secret.clone()).unwrap();
        let registered = client.register().await.unwrap();
        assert_eq!(registered.hotkey, secret.public().to_string());
        assert_eq!(registered.uid, 4);
        assert_eq!(registered.deregistered, None);
    }
    let registrations = seen(&state);
    assert_eq!(registrations.len(), 2);
    let empty_sha256 = hex::encode(Sha256::digest(b""));
    assert!(
        registrations
            .iter()
            .all(|seen| seen.body_sha256 == empty_sha256)
    );

    let secret = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let client = MinerClient::new(&url, secret.clone()).unwrap();
    let bytes = b"\0asm component bytes".repeat(1000);
    let accepted = client.upload(bytes.clone()).await.unwrap();
    assert_eq!(accepted.version, 7);
    assert_eq!(accepted.status, "pending");
    let upload = seen(&state).pop().unwrap();
    assert_eq!(upload.path, "/v1/agents");
    assert_eq!(upload.signed_by, secret.public().to_string());
    assert_eq!(upload.body_sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(accepted.hash, upload.body_sha256);
    assert_eq!(upload.content_type.as_deref(), Some("application/wasm"));
    assert_eq!(upload.content_length, Some(bytes.len().to_string()));
}

#[tokio::test]
async fn refusals_keep_the_validators_code_message_and_instant() {
    let (url, _state) = start(1 << 20).await;
    let client = MinerClient::new(&url, SecretHotkey::generate(HotkeyScheme::Ed25519)).unwrap();
    client.upload(b"first".to_vec()).await.unwrap();
    let refused = client.upload(b"second".to_vec()).await.unwrap_err();
    match &refused {
        ClientError::Api {
            status,
            code,
            message,
            next_allowed_at,
            retry_at,
        } => {
            assert_eq!(*status, 429);
            assert_eq!(code, "upload_too_soon");
            assert_eq!(message, "one upload every 72 hours");
            assert_eq!(next_allowed_at.as_deref(), Some("2026-03-04T10:00:00Z"));
            assert_eq!(*retry_at, None);
        }
        other => panic!("not an API error: {other:?}"),
    }
    assert_eq!(
        refused.to_string(),
        "one upload every 72 hours; the next upload is allowed at 2026-03-04T10:00:00Z \
         (upload_too_soon)"
    );

    let missing = client.version(8).await.unwrap_err();
    assert_eq!(missing.code(), Some("not_found"), "{missing}");
}

#[tokio::test]
async fn versions_are_read_with_signed_requests_and_tolerate_new_fields() {
    let (url, state) = start(1 << 20).await;
    let secret = SecretHotkey::generate(HotkeyScheme::Sr25519);
    let client = MinerClient::new(&url, secret.clone()).unwrap();
    let identity = client.identity().await.unwrap();
    assert_eq!(identity.hotkey, state.hotkey);
    assert_eq!(identity.upload_interval_hours, 72);

    let version = client.version(7).await.unwrap();
    assert_eq!(version.status, "rejected");
    assert_eq!(version.matched_version, Some(3));
    assert!(version.is_decided());
    assert_eq!(version.verdicts.len(), 1);
    assert!(!version.verdicts[0].passed);
    assert_eq!(
        version.verdicts[0].decided_at.to_rfc3339(),
        "2026-03-01T10:00:01.250+00:00"
    );

    let versions = client.versions().await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [6, 7]
    );
    let hotkey = secret.public().to_string();
    let reads = seen(&state);
    assert_eq!(
        reads
            .iter()
            .map(|seen| seen.path.as_str())
            .collect::<Vec<_>>(),
        ["/v1/agents/7", &format!("/v1/miners/{hotkey}/agents")]
    );
    assert!(reads.iter().all(|seen| seen.signed_by == hotkey));
}

#[tokio::test]
async fn an_upload_over_the_cap_is_not_sent() {
    let (url, state) = start(1000).await;
    let client = MinerClient::new(&url, SecretHotkey::generate(HotkeyScheme::Ed25519)).unwrap();
    let refused = client.upload(vec![0; 1001]).await.unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::TooLarge {
                size: 1001,
                limit: 1000
            }
        ),
        "{refused:?}"
    );
    assert!(seen(&state).is_empty());
    client.upload(vec![0; 1000]).await.unwrap();
}

#[tokio::test]
async fn what_is_not_the_api_says_so() {
    let (url, _state) = start(1000).await;
    let secret = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let broken = MinerClient::new(&format!("{url}/broken"), secret.clone()).unwrap();
    match broken.register().await.unwrap_err() {
        ClientError::Unexpected {
            status,
            body_prefix,
        } => {
            assert_eq!(status, 502);
            assert_eq!(body_prefix, "<html>bad gateway</html>");
        }
        other => panic!("not unexpected: {other:?}"),
    }

    // Nothing listens on the port of a listener just closed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let nowhere = MinerClient::new(&format!("http://{address}"), secret.clone()).unwrap();
    let error = nowhere.identity().await.unwrap_err();
    assert!(matches!(error, ClientError::Http { .. }), "{error:?}");
    assert!(error.to_string().contains(&address.to_string()), "{error}");

    for bad in ["ftp://host", "not a url", "http://host/?q=1", "mailto:a@b"] {
        assert!(
            matches!(
                MinerClient::new(bad, secret.clone()),
                Err(ClientError::BadUrl { .. })
            ),
            "{bad}"
        );
    }
}
