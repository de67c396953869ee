//! [`MinerClient`]: one miner's signed requests to one validator.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use sooth_protocol::{Hotkey, SecretHotkey, check_api_key, check_service_name, sign_epistula};

use crate::answer::read_answer;
use crate::error::ClientError;
use crate::views::{AgentVersion, Identity, KeyLinked, Registered, UploadAccepted};

/// How long connecting to the validator may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upload may take, from connecting to the last byte of the answer.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long any other request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A miner's client of one validator's API: every request but [`identity`](Self::identity) is
/// signed with the miner's hotkey (Epistula v2) for the validator's hotkey, which the client
/// asks the validator for once and keeps.
#[derive(Debug)]
pub struct MinerClient {
    base_url: Url,
    http: reqwest::Client,
    secret: SecretHotkey,
    identity: OnceLock<Identity>,
}

impl MinerClient {
    /// A client of the validator at `base_url` (e.g. `http://127.0.0.1:8710`, or one with a
    /// path prefix such as `https://host/sooth`) signing with `secret`. Nothing is sent yet.
    ///
    /// # Errors
    ///
    /// [`ClientError::BadUrl`] when `base_url` is not an http(s) base URL,
    /// [`ClientError::Client`] when the HTTP client cannot be built.
    pub fn new(base_url: &str, secret: SecretHotkey) -> Result<Self, ClientError> {
        let bad_url = || ClientError::BadUrl {
            url: base_url.to_owned(),
        };
        let parsed = Url::parse(base_url).map_err(|_| bad_url())?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.cannot_be_a_base()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(bad_url());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(UPLOAD_TIMEOUT)
            .build()
            .map_err(ClientError::Client)?;
        Ok(Self {
            base_url: parsed,
            http,
            secret,
            identity: OnceLock::new(),
        })
    }

    /// The miner's hotkey: what its requests are signed by.
    #[must_use]
    pub fn hotkey(&self) -> Hotkey {
        self.secret.public()
    }

    /// The validator's base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.base_url.as_str()
    }

    /// Asks the validator for its hotkey and upload rules (`GET /v1/identity`, unsigned), and
    /// keeps the hotkey for signing.
    ///
    /// # Errors
    ///
    /// [`ClientError::Http`] without an answer, [`ClientError::Api`] for a JSON error,
    /// [`ClientError::Unexpected`] for any other answer.
    pub async fn identity(&self) -> Result<Identity, ClientError> {
        let url = self.route(&["v1", "identity"]);
        let request = self.http.get(url.clone()).timeout(REQUEST_TIMEOUT);
        let response = send(&url, request).await?;
        let identity: Identity = read_answer(&url, response).await?;
        // The first identity read is the one signed for; a validator's hotkey does not change.
        let _ = self.identity.set(identity.clone());
        Ok(identity)
    }

    /// Registers the miner's hotkey (`POST /v1/miners`, signed, empty body), where the
    /// validator's operator opened registration.
    ///
    /// # Errors
    ///
    /// As [`identity`](Self::identity); the validator's refusals (`registration_closed`,
    /// `already_registered`, `registration_rate_limited`, a refused signature...) are
    /// [`ClientError::Api`].
    pub async fn register(&self) -> Result<Registered, ClientError> {
        let url = self.route(&["v1", "miners"]);
        self.signed(Method::POST, url, Vec::new(), None, REQUEST_TIMEOUT)
            .await
    }

    /// Uploads the component `bytes` (`POST /v1/agents`, signed over the bytes, as
    /// `application/wasm`). The validator queues it for verification.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoUploads`] or [`ClientError::TooLarge`] when the validator's identity
    /// says it would refuse the upload (nothing is sent); otherwise as
    /// [`identity`](Self::identity), the validator's refusals (`unknown_hotkey`,
    /// `upload_too_soon`, `not_a_component`, `already_uploaded`...) being
    /// [`ClientError::Api`].
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<UploadAccepted, ClientError> {
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.known_identity().await?.check_upload(size)?;
        let url = self.route(&["v1", "agents"]);
        self.signed(
            Method::POST,
            url,
            bytes,
            Some("application/wasm"),
            UPLOAD_TIMEOUT,
        )
        .await
    }

    /// Links the miner's own upstream `api_key` for the validator's gateway service `service`
    /// (`POST /v1/services/{service}/key`, signed, JSON `{"api_key": ...}`): the validator keeps
    /// it sealed and hands it to its gateway, which then pays the miner's calls to that service
    /// with it, under the higher cap, until a newer version of the miner's agent activates
    /// (then link again). The key is sent once, in the body, and never returned.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidService`] or [`ClientError::InvalidApiKey`] when the name or the
    /// key breaks the rules, [`ClientError::NoLinkedKeys`] when the validator's identity says
    /// it takes no keys (nothing is sent); otherwise as [`identity`](Self::identity), the
    /// validator's refusals (`unknown_hotkey`, `unknown_service`, `gateway_unavailable`...)
    /// being [`ClientError::Api`].
    pub async fn link_service_key(
        &self,
        service: &str,
        api_key: &str,
    ) -> Result<KeyLinked, ClientError> {
        check_service_name(service).map_err(ClientError::InvalidService)?;
        let key = check_api_key(api_key).map_err(ClientError::InvalidApiKey)?;
        if !self.known_identity().await?.linked_keys {
            return Err(ClientError::NoLinkedKeys);
        }
        let body = serde_json::json!({ "api_key": key })
            .to_string()
            .into_bytes();
        let url = self.route(&["v1", "services", service, "key"]);
        self.signed(
            Method::POST,
            url,
            body,
            Some("application/json"),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// One of the validator's agent versions (`GET /v1/agents/{id}`, signed).
    ///
    /// # Errors
    ///
    /// As [`identity`](Self::identity); an unknown version is [`ClientError::Api`] with
    /// `not_found`.
    pub async fn version(&self, id: i64) -> Result<AgentVersion, ClientError> {
        let url = self.route(&["v1", "agents", &id.to_string()]);
        self.signed(Method::GET, url, Vec::new(), None, REQUEST_TIMEOUT)
            .await
    }

    /// The miner's own agent versions, oldest upload first (`GET
    /// /v1/miners/{hotkey}/agents`, signed).
    ///
    /// # Errors
    ///
    /// As [`identity`](Self::identity); a miner the validator does not know is
    /// [`ClientError::Api`] with `not_found`.
    pub async fn versions(&self) -> Result<Vec<AgentVersion>, ClientError> {
        let hotkey = self.hotkey().to_string();
        let url = self.route(&["v1", "miners", &hotkey, "agents"]);
        self.signed(Method::GET, url, Vec::new(), None, REQUEST_TIMEOUT)
            .await
    }

    /// The identity kept, or the validator's, asked for now.
    async fn known_identity(&self) -> Result<Identity, ClientError> {
        match self.identity.get() {
            Some(identity) => Ok(identity.clone()),
            None => self.identity().await,
        }
    }

    /// Sends a request with `body`, signed at the moment of sending, and reads its answer.
    async fn signed<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
        content_type: Option<&str>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let signed_for = self.known_identity().await?.hotkey;
        let has_body = method == Method::POST;
        let mut request = self.http.request(method, url.clone()).timeout(timeout);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let headers = sign_epistula(&self.secret, &body, &signed_for, now_ms());
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        if has_body {
            request = request.header(CONTENT_LENGTH, body.len()).body(body);
        }
        let response = send(&url, request).await?;
        read_answer(&url, response).await
    }

    /// The base URL with `segments` appended, each percent-encoded as one path segment.
    fn route(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

async fn send(url: &Url, request: reqwest::RequestBuilder) -> Result<Response, ClientError> {
    request.send().await.map_err(|source| ClientError::Http {
        url: url.to_string(),
        source,
    })
}

/// The system clock in Unix milliseconds (0 before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
