//! Uploads: a version entering the verification queue, and what the upload API reads back.
//!
//! An upload is a version row (status `pending`) and a queue item, written together; the rate
//! of a miner's own uploads is checked inside the same write transaction, so that concurrent
//! uploads of one hotkey cannot both pass it.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::run_queue::PUT_COMPONENT;
use super::versions::VersionStatus;
use super::{Store, StoreError, flag_from, from_ms, from_optional_ms, to_ms};

/// Who added a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UploadedBy {
    /// The operator (`sooth validator add-agent`): not rate-limited.
    Operator,
    /// The miner, through the upload API: one upload per rate interval.
    Miner,
}

impl UploadedBy {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Miner => "miner",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "operator" => Some(Self::Operator),
            "miner" => Some(Self::Miner),
            _ => None,
        }
    }
}

/// A component to queue for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    /// The miner.
    pub hotkey: String,
    /// The component's content hash (its file name in the components directory).
    pub hash: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Who added it.
    pub uploaded_by: UploadedBy,
    /// When.
    pub at: DateTime<Utc>,
    /// For [`UploadedBy::Miner`]: the least time between two of the miner's uploads.
    pub min_interval: TimeDelta,
}

/// Where a version stands in the verification queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueState {
    /// Waiting for a worker.
    Queued,
    /// Held by a worker.
    Verifying,
    /// A verdict was recorded.
    Done,
    /// Every attempt failed; the version was rejected.
    Failed,
}

impl QueueState {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Verifying => "verifying",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub(super) fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "queued" => Self::Queued,
            "verifying" => Self::Verifying,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// An integrity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegrityCheck {
    /// The same bytes as another miner's earlier version.
    Duplicate,
    /// Agreement with another miner's earlier version beyond the public signals.
    Originality,
    /// Different behaviour on probe events than on live ones.
    Concordance,
}

impl IntegrityCheck {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Originality => "originality",
            Self::Concordance => "concordance",
        }
    }

    pub(super) fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "duplicate" => Self::Duplicate,
            "originality" => Self::Originality,
            "concordance" => Self::Concordance,
            _ => return None,
        })
    }
}

/// Which predictions a verdict was reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictScope {
    /// The probe set, at verification.
    Probe,
    /// The version's recent live events, in the daily check.
    Live,
}

impl VerdictScope {
    /// The stored word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Live => "live",
        }
    }

    pub(super) fn parse(word: &str) -> Option<Self> {
        match word {
            "probe" => Some(Self::Probe),
            "live" => Some(Self::Live),
            _ => None,
        }
    }
}

/// A recorded integrity verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRecord {
    /// Which check.
    pub check: IntegrityCheck,
    /// On which predictions.
    pub scope: VerdictScope,
    /// Whether the version passed.
    pub passed: bool,
    /// The other miner's version it matched, where there is one.
    pub matched_version: Option<i64>,
    /// The check's statistic, where it has one.
    pub statistic: Option<f64>,
    /// What was found, in words.
    pub detail: String,
    /// When.
    pub decided_at: DateTime<Utc>,
}

/// A version as the upload API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    /// The version's id.
    pub version: i64,
    /// The miner.
    pub hotkey: String,
    /// The component's content hash.
    pub hash: String,
    /// The component's size, where known.
    pub size_bytes: Option<u64>,
    /// Who added it.
    pub uploaded_by: UploadedBy,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// When it was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it activated.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it stopped being active.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Its status.
    pub status: VersionStatus,
    /// Its queue item's state, if it went through the queue.
    pub queue: Option<QueueState>,
    /// Attempts at verifying it so far.
    pub attempts: u32,
    /// Why it was rejected or superseded.
    pub reason: Option<String>,
    /// The other miner's version a rejection matched.
    pub matched_version: Option<i64>,
    /// Its integrity verdicts, oldest first.
    pub verdicts: Vec<VerdictRecord>,
}

/// The most verdicts a version is shown with: the newest.
pub const MAX_VERDICTS_SHOWN: usize = 60;

const UPLOAD_COLUMNS: &str = "v.version_no, m.hotkey, v.hash, v.size_bytes, v.uploaded_by, \
     v.uploaded_at_ms, v.verified_at_ms, v.activated_at_ms, v.deactivated_at_ms, v.status, \
     v.reason, v.matched_version_no, q.state AS queue_state, coalesce(q.attempts, 0) AS attempts";

impl Store {
    /// Adds a `pending` version and its queue item, in one transaction. Returns the version's
    /// id.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`] and [`StoreError::NotRegistered`] for a hotkey that cannot
    /// upload, [`StoreError::UploadTooSoon`] when a miner's upload comes before its rate
    /// allows, [`StoreError::DuplicateVersion`] when the miner already has these bytes,
    /// [`StoreError::Database`]. Nothing is written on error.
    pub async fn enqueue_upload(&self, upload: &NewUpload) -> Result<i64, StoreError> {
        self.enqueue(upload, None).await
    }

    /// As [`enqueue_upload`](Self::enqueue_upload), keeping `bytes` (the component, whose hash
    /// the caller has checked) where every runner worker can read them, in the same
    /// transaction: a worker that claims the verification finds the component, and bytes whose
    /// upload was refused are not kept.
    ///
    /// # Errors
    ///
    /// As [`enqueue_upload`](Self::enqueue_upload).
    pub async fn enqueue_upload_for_workers(
        &self,
        upload: &NewUpload,
        bytes: &[u8],
    ) -> Result<i64, StoreError> {
        self.enqueue(upload, Some(bytes)).await
    }

    async fn enqueue(&self, upload: &NewUpload, bytes: Option<&[u8]>) -> Result<i64, StoreError> {
        if upload.hash.is_empty() {
            return Err(StoreError::InvalidVersion {
                hotkey: upload.hotkey.clone(),
                hash: String::new(),
                problem: "the hash is empty".to_owned(),
            });
        }
        let size = i64::try_from(upload.size_bytes).map_err(|_| StoreError::InvalidVersion {
            hotkey: upload.hotkey.clone(),
            hash: upload.hash.clone(),
            problem: format!("size {} bytes is out of range", upload.size_bytes),
        })?;
        let mut transaction = self.begin_write().await?;
        let miner = sqlx::query(
            "SELECT miner_no, deregistered_at_ms FROM validator_miners WHERE hotkey = $1",
        )
        .bind(&upload.hotkey)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| StoreError::UnknownMiner {
            hotkey: upload.hotkey.clone(),
        })?;
        if let Some(deregistered_at) = miner.try_get::<Option<i64>, _>("deregistered_at_ms")? {
            return Err(StoreError::NotRegistered {
                hotkey: upload.hotkey.clone(),
                deregistered_at: from_ms(deregistered_at, "deregistered_at_ms")?,
            });
        }
        let miner_no: i64 = miner.try_get("miner_no")?;
        if upload.uploaded_by == UploadedBy::Miner {
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT max(uploaded_at_ms) FROM validator_agent_versions \
                  WHERE miner_no = $1 AND uploaded_by = 'miner'",
            )
            .bind(miner_no)
            .fetch_one(&mut *transaction)
            .await?;
            if let Some(last) = last {
                let last_upload_at = from_ms(last, "uploaded_at_ms")?;
                let next_allowed_at = last_upload_at + upload.min_interval;
                if upload.at < next_allowed_at {
                    return Err(StoreError::UploadTooSoon {
                        hotkey: upload.hotkey.clone(),
                        last_upload_at,
                        next_allowed_at,
                    });
                }
            }
        }
        let version_no: Option<i64> = sqlx::query_scalar(
            "INSERT INTO validator_agent_versions \
                 (miner_no, hash, uploaded_at_ms, status, uploaded_by, size_bytes) \
             VALUES ($1, $2, $3, 'pending', $4, $5) \
             ON CONFLICT (miner_no, hash) DO NOTHING \
             RETURNING version_no",
        )
        .bind(miner_no)
        .bind(&upload.hash)
        .bind(to_ms(upload.at))
        .bind(upload.uploaded_by.as_str())
        .bind(size)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(version_no) = version_no else {
            return Err(StoreError::DuplicateVersion {
                hotkey: upload.hotkey.clone(),
                hash: upload.hash.clone(),
            });
        };
        sqlx::query(
            "INSERT INTO validator_verifications (version_no, queued_at_ms, state) \
             VALUES ($1, $2, 'queued')",
        )
        .bind(version_no)
        .bind(to_ms(upload.at))
        .execute(&mut *transaction)
        .await?;
        if let Some(bytes) = bytes {
            sqlx::query(&self.sql(PUT_COMPONENT))
                .bind(&upload.hash)
                .bind(bytes)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(version_no)
    }

    /// The version with id `version`, with its verdicts; `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn upload(&self, version: i64) -> Result<Option<UploadRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
               LEFT JOIN validator_verifications q USING (version_no) \
              WHERE v.version_no = $1"
        ))
        .bind(version)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut record = upload_from_row(&row)?;
        record.verdicts = self.verdicts_of(version).await?;
        Ok(Some(record))
    }

    /// Every version of `hotkey`, oldest upload first, with their verdicts.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`] for a hotkey never registered, [`StoreError::Database`],
    /// [`StoreError::Corrupt`].
    pub async fn uploads_of(&self, hotkey: &str) -> Result<Vec<UploadRecord>, StoreError> {
        if self.miner(hotkey).await?.is_none() {
            return Err(StoreError::UnknownMiner {
                hotkey: hotkey.to_owned(),
            });
        }
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
               LEFT JOIN validator_verifications q USING (version_no) \
              WHERE m.hotkey = $1 \
              ORDER BY v.uploaded_at_ms, v.version_no"
        ))
        .bind(hotkey)
        .fetch_all(&self.reader)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut record = upload_from_row(row)?;
            record.verdicts = self.verdicts_of(record.version).await?;
            records.push(record);
        }
        Ok(records)
    }

    /// The newest [`MAX_VERDICTS_SHOWN`] integrity verdicts of `version`, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn verdicts_of(&self, version: i64) -> Result<Vec<VerdictRecord>, StoreError> {
        // The daily check adds verdicts for as long as a version is active: only the newest
        // are served.
        let rows = sqlx::query(
            "SELECT * FROM (SELECT verdict_no, check_name, scope, CAST(passed AS INTEGER) AS passed, matched_version_no, \
                                   statistic, detail, decided_at_ms \
                              FROM validator_integrity_verdicts WHERE version_no = $1 \
                             ORDER BY decided_at_ms DESC, verdict_no DESC LIMIT $2) AS newest \
              ORDER BY decided_at_ms, verdict_no",
        )
        .bind(version)
        .bind(i64::try_from(MAX_VERDICTS_SHOWN).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let check: String = row.try_get("check_name")?;
                let scope: String = row.try_get("scope")?;
                Ok(VerdictRecord {
                    check: IntegrityCheck::parse(&check)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown check {check:?}")))?,
                    scope: VerdictScope::parse(&scope)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown scope {scope:?}")))?,
                    passed: flag_from(row.try_get("passed")?, "passed")?,
                    matched_version: row.try_get("matched_version_no")?,
                    statistic: row.try_get("statistic")?,
                    detail: row.try_get("detail")?,
                    decided_at: from_ms(row.try_get("decided_at_ms")?, "decided_at_ms")?,
                })
            })
            .collect()
    }

    /// Whether any version names the component `hash`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn hash_in_use(&self, hash: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM validator_agent_versions WHERE hash = $1 LIMIT 1")
                .bind(hash)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    /// Versions waiting in the queue or being verified.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn verification_backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM validator_verifications WHERE state IN ('queued', 'verifying')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

fn upload_from_row(row: &AnyRow) -> Result<UploadRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let uploaded_by: String = row.try_get("uploaded_by")?;
    let queue: Option<String> = row.try_get("queue_state")?;
    let size: Option<i64> = row.try_get("size_bytes")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(UploadRecord {
        version: row.try_get("version_no")?,
        hotkey: row.try_get("hotkey")?,
        hash: row.try_get("hash")?,
        size_bytes: size.and_then(|size| u64::try_from(size).ok()),
        uploaded_by: UploadedBy::parse(&uploaded_by)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown uploader {uploaded_by:?}")))?,
        uploaded_at: from_ms(row.try_get("uploaded_at_ms")?, "uploaded_at_ms")?,
        verified_at: from_optional_ms(row.try_get("verified_at_ms")?, "verified_at_ms")?,
        activated_at: from_optional_ms(row.try_get("activated_at_ms")?, "activated_at_ms")?,
        deactivated_at: from_optional_ms(row.try_get("deactivated_at_ms")?, "deactivated_at_ms")?,
        status: VersionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown version status {status:?}")))?,
        queue: queue
            .map(|word| {
                QueueState::parse(&word)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown queue state {word:?}")))
            })
            .transpose()?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        reason: row.try_get("reason")?,
        matched_version: row.try_get("matched_version_no")?,
        verdicts: Vec::new(),
    })
}
