//! What the miners' endpoints answer (uploads, registration, linked keys).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{QueueState, UploadRecord, VerdictRecord, VersionStatus};

/// A version's status as the API says it: `pending` (queued), `verifying`, `verified`,
/// `rejected`, `active` or `inactive`.
#[must_use]
pub fn status_word(status: VersionStatus, queue: Option<QueueState>) -> &'static str {
    match (status, queue) {
        (VersionStatus::Pending, Some(QueueState::Verifying)) => "verifying",
        (VersionStatus::Pending, _) => "pending",
        (VersionStatus::Verified, _) => "verified",
        (VersionStatus::Active, _) => "active",
        (VersionStatus::Inactive, _) => "inactive",
        (VersionStatus::Refused, _) => "rejected",
    }
}

/// `202` to `POST /v1/agents`.
#[derive(Debug, Clone, Serialize)]
pub struct UploadAcceptedView {
    /// The version's id, for `GET /v1/agents/{version}`.
    pub version: i64,
    /// The component's SHA-256, hex.
    pub hash: String,
    /// Always `pending`.
    pub status: &'static str,
}

/// A version (`GET /v1/agents/{version}`, `GET /v1/miners/{hotkey}/agents`).
#[derive(Debug, Clone, Serialize)]
pub struct UploadView {
    /// Its id.
    pub version: i64,
    /// The miner.
    pub hotkey: String,
    /// The component's SHA-256, hex.
    pub hash: String,
    /// The component's size in bytes, where known.
    pub size_bytes: Option<u64>,
    /// `miner` (the upload API) or `operator`.
    pub uploaded_by: &'static str,
    /// See [`status_word`].
    pub status: &'static str,
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
    /// Attempts at verifying it.
    pub attempts: u32,
    /// Its integrity verdicts, oldest first.
    pub verdicts: Vec<VerdictView>,
}

/// An integrity verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictView {
    /// `duplicate`, `originality` or `concordance`.
    pub check: &'static str,
    /// `probe` (at verification) or `live` (the daily check).
    pub scope: &'static str,
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

impl From<VerdictRecord> for VerdictView {
    fn from(record: VerdictRecord) -> Self {
        Self {
            check: record.check.as_str(),
            scope: record.scope.as_str(),
            passed: record.passed,
            matched_version: record.matched_version,
            statistic: record.statistic,
            detail: record.detail,
            decided_at: record.decided_at,
        }
    }
}

impl From<UploadRecord> for UploadView {
    fn from(record: UploadRecord) -> Self {
        Self {
            version: record.version,
            hotkey: record.hotkey,
            hash: record.hash,
            size_bytes: record.size_bytes,
            uploaded_by: record.uploaded_by.as_str(),
            status: status_word(record.status, record.queue),
            reason: record.reason,
            matched_version: record.matched_version,
            uploaded_at: record.uploaded_at,
            verified_at: record.verified_at,
            activated_at: record.activated_at,
            deactivated_at: record.deactivated_at,
            attempts: record.attempts,
            verdicts: record.verdicts.into_iter().map(VerdictView::from).collect(),
        }
    }
}

/// `GET /v1/identity`: what a miner needs to sign requests for this validator.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    /// The validator's hotkey: what `Epistula-Signed-For` must say.
    pub hotkey: String,
    /// Whether uploads are taken.
    pub uploads: bool,
    /// An upload's size cap.
    pub max_upload_bytes: u64,
    /// Hours between two uploads of one miner.
    pub upload_interval_hours: i64,
    /// Whether miners may register themselves.
    pub registration_open: bool,
    /// Whether miners may link their own service keys (`POST /v1/services/{service}/key`).
    pub linked_keys: bool,
}

/// `200` to `POST /v1/services/{service}/key`: the key was kept and handed to the gateway
/// (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct KeyLinkedView {
    /// The service.
    pub service: String,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
}

/// `200` to `POST /v1/miners`.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredView {
    /// The miner.
    pub hotkey: String,
    /// Its slot.
    pub uid: u16,
    /// When.
    pub registered_at: DateTime<Utc>,
    /// The miner deregistered to free the slot, if one was.
    pub deregistered: Option<String>,
}
