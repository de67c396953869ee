//! What the validator answers, as the miner reads it (see the validator's API.md). Unknown
//! fields are ignored, so that a validator may add fields without breaking its miners.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::ClientError;

/// `GET /v1/identity`: the validator's hotkey, which signed requests name in
/// `Epistula-Signed-For`, and its upload rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    /// The validator's hotkey text.
    pub hotkey: String,
    /// Whether the validator takes uploads at all.
    pub uploads: bool,
    /// An upload's size cap, in bytes.
    pub max_upload_bytes: u64,
    /// Hours between two uploads of one miner.
    pub upload_interval_hours: i64,
    /// Whether miners may register themselves.
    pub registration_open: bool,
    /// Whether miners may link their own service keys (absent from validators that cannot).
    #[serde(default)]
    pub linked_keys: bool,
}

impl Identity {
    /// Whether an upload of `size` bytes may be sent to this validator: it takes uploads, and
    /// `size` is within its cap.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoUploads`] if the validator takes no uploads, [`ClientError::TooLarge`]
    /// if `size` is over its cap.
    pub fn check_upload(&self, size: u64) -> Result<(), ClientError> {
        if !self.uploads {
            return Err(ClientError::NoUploads);
        }
        if size > self.max_upload_bytes {
            return Err(ClientError::TooLarge {
                size,
                limit: self.max_upload_bytes,
            });
        }
        Ok(())
    }
}

/// `POST /v1/miners`: the registration made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Registered {
    /// The miner's hotkey.
    pub hotkey: String,
    /// Its slot.
    pub uid: u16,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
    /// The miner deregistered to free the slot, if one was.
    pub deregistered: Option<String>,
}

/// `POST /v1/services/{service}/key`: the miner's key was kept and handed to the validator's
/// gateway (the answer never holds the key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyLinked {
    /// The service.
    pub service: String,
    /// When it was linked. A newer version of the miner's agent activating drops it.
    pub linked_at: DateTime<Utc>,
}

/// `POST /v1/agents`: the upload was taken and queued for verification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadAccepted {
    /// The version's id, for [`MinerClient::version`](crate::MinerClient::version).
    pub version: i64,
    /// The component's SHA-256, hex.
    pub hash: String,
    /// `pending`.
    pub status: String,
}

/// `GET /v1/agents/{version}`: one agent version and its verdicts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentVersion {
    /// Its id.
    pub version: i64,
    /// The miner.
    pub hotkey: String,
    /// The component's SHA-256, hex.
    pub hash: String,
    /// The component's size in bytes, where known.
    pub size_bytes: Option<u64>,
    /// `miner` (uploaded through the API) or `operator`.
    pub uploaded_by: String,
    /// `pending`, `verifying`, `verified`, `rejected`, `active` or `inactive`.
    pub status: String,
    /// Why it was rejected or superseded.
    pub reason: Option<String>,
    /// The other miner's version a rejection matched.
    pub matched_version: Option<i64>,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// When it was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it activated.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it stopped being active.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// The verifier's attempts so far.
    pub attempts: u32,
    /// Its integrity verdicts, oldest first.
    pub verdicts: Vec<Verdict>,
}

impl AgentVersion {
    /// Whether the verification has decided (any status but `pending` and `verifying`).
    #[must_use]
    pub fn is_decided(&self) -> bool {
        !matches!(self.status.as_str(), "pending" | "verifying")
    }
}

/// An integrity verdict on a version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Verdict {
    /// `duplicate`, `originality` or `concordance`.
    pub check: String,
    /// `probe` (at verification) or `live` (the daily check).
    pub scope: String,
    /// Whether the version passed.
    pub passed: bool,
    /// The other miner's version it matched.
    pub matched_version: Option<i64>,
    /// The check's statistic.
    pub statistic: Option<f64>,
    /// What was found.
    pub detail: String,
    /// When.
    pub decided_at: DateTime<Utc>,
}

/// The JSON body of an error answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub next_allowed_at: Option<String>,
    #[serde(default)]
    pub retry_at: Option<String>,
}
