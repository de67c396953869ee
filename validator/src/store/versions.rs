//! Agent versions and their activation (`validator_agent_versions`).
//!
//! Owns the rows of uploaded versions and records their activation and deactivation. Which
//! version is active when is decided by `activation` from the versions' instants; this
//! file serves that module its input ([`Store::versions_for_activation`]) and records its
//! answer ([`Store::record_activation`]), which also drops the keys the miner linked before
//! the activated version (through `miner_keys`, in the same transaction). It must not touch
//! runs, events or miners' rows.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::miner_keys::drop_keys_linked_before;
use super::miners::miner_no;
use super::{Store, StoreError, from_ms, from_optional_ms, to_ms};
use crate::activation::AgentVersion;

/// Where a version is in its life (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionStatus {
    /// Uploaded, not yet verified.
    Pending,
    /// Verified, waiting for a midnight to activate.
    Verified,
    /// The miner's active version.
    Active,
    /// Was active and was replaced, or was superseded before it ever activated.
    Inactive,
    /// Failed verification; never activates.
    Refused,
}

impl VersionStatus {
    /// The word stored in the `status` column.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Refused => "refused",
        }
    }

    /// The status stored as `word`, if it is one.
    #[must_use]
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "pending" => Self::Pending,
            "verified" => Self::Verified,
            "active" => Self::Active,
            "inactive" => Self::Inactive,
            "refused" => Self::Refused,
            _ => return None,
        })
    }
}

/// A version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// Miner, hash, upload and verification instants.
    pub version: AgentVersion,
    /// Its status.
    pub status: VersionStatus,
    /// When it became active, if it did.
    pub activated_at: Option<DateTime<Utc>>,
    /// When it stopped being active, if it did.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Why it was refused or superseded, if it was.
    pub reason: Option<String>,
}

impl Store {
    /// Adds an uploaded version of a registered miner's agent: `verified` if
    /// `version.verified_at` is set, `pending` otherwise. (Uploads come through the daemon's
    /// API; tests and backtests add verified versions directly.)
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidVersion`] for an empty hash or a verification before the upload,
    /// [`StoreError::UnknownMiner`] / [`StoreError::NotRegistered`] if the hotkey is not a
    /// registered miner, [`StoreError::DuplicateVersion`] if the miner already has this hash,
    /// [`StoreError::Database`]. Nothing is written on error.
    pub async fn add_agent_version(&self, version: &AgentVersion) -> Result<(), StoreError> {
        let invalid = |problem: &str| StoreError::InvalidVersion {
            hotkey: version.hotkey.clone(),
            hash: version.hash.clone(),
            problem: problem.to_owned(),
        };
        if version.hash.is_empty() {
            return Err(invalid("the hash is empty"));
        }
        if version
            .verified_at
            .is_some_and(|verified| verified < version.uploaded_at)
        {
            return Err(invalid("it was verified before it was uploaded"));
        }
        let mut transaction = self.begin_write().await?;
        let miner = sqlx::query(
            "SELECT miner_no, deregistered_at_ms FROM validator_miners WHERE hotkey = $1",
        )
        .bind(&version.hotkey)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| StoreError::UnknownMiner {
            hotkey: version.hotkey.clone(),
        })?;
        if let Some(deregistered_at) = miner.try_get::<Option<i64>, _>("deregistered_at_ms")? {
            return Err(StoreError::NotRegistered {
                hotkey: version.hotkey.clone(),
                deregistered_at: from_ms(deregistered_at, "deregistered_at_ms")?,
            });
        }
        let status = if version.verified_at.is_some() {
            VersionStatus::Verified
        } else {
            VersionStatus::Pending
        };
        let inserted = sqlx::query(
            "INSERT INTO validator_agent_versions \
                 (miner_no, hash, uploaded_at_ms, verified_at_ms, status) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (miner_no, hash) DO NOTHING",
        )
        .bind(miner.try_get::<i64, _>("miner_no")?)
        .bind(&version.hash)
        .bind(to_ms(version.uploaded_at))
        .bind(version.verified_at.map(to_ms))
        .bind(status.as_str())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::DuplicateVersion {
                hotkey: version.hotkey.clone(),
                hash: version.hash.clone(),
            });
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Every version that can be, or has been, active, of every registered miner: the input
    /// of `activation::active_version`. Pending and refused versions are left out (they
    /// never activate), and so are deregistered miners' (their runs stop).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn versions_for_activation(&self) -> Result<Vec<AgentVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.hotkey, v.hash, v.uploaded_at_ms, v.verified_at_ms \
               FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
              WHERE m.deregistered_at_ms IS NULL \
                AND v.verified_at_ms IS NOT NULL AND v.status <> 'refused' \
              ORDER BY m.hotkey, v.uploaded_at_ms, v.hash",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Every version of `hotkey`, oldest upload first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn agent_versions(&self, hotkey: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.hotkey, v.hash, v.uploaded_at_ms, v.verified_at_ms, v.status, \
                    v.activated_at_ms, v.deactivated_at_ms, v.reason \
               FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
              WHERE m.hotkey = $1 \
              ORDER BY v.uploaded_at_ms, v.hash",
        )
        .bind(hotkey)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(VersionRecord {
                    version: version_from_row(row)?,
                    status: VersionStatus::parse(&status).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown version status {status:?}"))
                    })?,
                    activated_at: from_optional_ms(
                        row.try_get("activated_at_ms")?,
                        "activated_at_ms",
                    )?,
                    deactivated_at: from_optional_ms(
                        row.try_get("deactivated_at_ms")?,
                        "deactivated_at_ms",
                    )?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }

    /// Records that `hash` became `hotkey`'s active version at `midnight`, in one transaction:
    /// the previously active version (if another) becomes inactive at `midnight`, and verified
    /// versions uploaded before `hash` that never activated become inactive as superseded, and
    /// the service keys the miner linked before it uploaded `hash` are dropped (a new upload
    /// requires linking again; see [`Store::dropped_keys`]).
    /// Returns `false` (and writes nothing) if `hash` is already the active version, so a
    /// restarted daemon may record the same midnight again.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`], [`StoreError::UnknownVersion`],
    /// [`StoreError::InvalidVersion`] if the version is not verified (pending, refused) or was
    /// active before and replaced, [`StoreError::Database`].
    pub async fn record_activation(
        &self,
        hotkey: &str,
        hash: &str,
        midnight: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin_write().await?;
        let miner = miner_no(&mut transaction, hotkey).await?;
        let row = sqlx::query(
            "SELECT version_no, status, uploaded_at_ms FROM validator_agent_versions \
              WHERE miner_no = $1 AND hash = $2",
        )
        .bind(miner)
        .bind(hash)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| StoreError::UnknownVersion {
            hotkey: hotkey.to_owned(),
            hash: hash.to_owned(),
        })?;
        let status: String = row.try_get("status")?;
        match VersionStatus::parse(&status) {
            Some(VersionStatus::Active) => return Ok(false),
            Some(VersionStatus::Verified) => {}
            _ => {
                return Err(StoreError::InvalidVersion {
                    hotkey: hotkey.to_owned(),
                    hash: hash.to_owned(),
                    problem: format!("a version with status {status:?} cannot activate"),
                });
            }
        }
        let version: i64 = row.try_get("version_no")?;
        let uploaded_at: i64 = row.try_get("uploaded_at_ms")?;
        sqlx::query(
            "UPDATE validator_agent_versions \
                SET status = 'inactive', deactivated_at_ms = $2 \
              WHERE miner_no = $1 AND status = 'active'",
        )
        .bind(miner)
        .bind(to_ms(midnight))
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE validator_agent_versions \
                SET status = 'inactive', reason = 'superseded by ' || $3 || ' before activation' \
              WHERE miner_no = $1 AND status = 'verified' AND version_no <> $2 \
                AND uploaded_at_ms <= $4",
        )
        .bind(miner)
        .bind(version)
        .bind(hash)
        .bind(uploaded_at)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE validator_agent_versions \
                SET status = 'active', activated_at_ms = $2 \
              WHERE version_no = $1",
        )
        .bind(version)
        .bind(to_ms(midnight))
        .execute(&mut *transaction)
        .await?;
        drop_keys_linked_before(&mut transaction, miner, version, midnight).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// The version's own columns of a row (`hotkey`, `hash`, `uploaded_at_ms`, `verified_at_ms`).
fn version_from_row(row: &AnyRow) -> Result<AgentVersion, StoreError> {
    Ok(AgentVersion {
        hotkey: row.try_get("hotkey")?,
        hash: row.try_get("hash")?,
        uploaded_at: from_ms(row.try_get("uploaded_at_ms")?, "uploaded_at_ms")?,
        verified_at: from_optional_ms(row.try_get("verified_at_ms")?, "verified_at_ms")?,
    })
}
