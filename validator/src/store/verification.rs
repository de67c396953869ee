//! The verification queue: claiming an item under a lease, recording its one verdict, retrying
//! a failed attempt a bounded number of times; and the probe predictions the checks compare.
//!
//! `attempts` is the fencing token: a worker's verdict is recorded only while the item is still
//! `verifying` at the attempt it claimed, so a worker whose lease expired (it was slow, or
//! another process took the item over after a restart) cannot record a second verdict.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;

use super::BindOptionalF64;
use super::uploads::{IntegrityCheck, VerdictScope};
use super::{Store, StoreError, from_ms, to_ms};
use crate::executor::RunStatus;
use crate::scoring::scored_prediction;

/// An item a worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationClaim {
    /// The version to verify.
    pub version: i64,
    /// This claim's attempt (1 for the first); the fencing token.
    pub attempt: u32,
    /// The miner.
    pub hotkey: String,
    /// The component's content hash.
    pub hash: String,
    /// When the version was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

/// A verdict of one check, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVerdict {
    /// Which check.
    pub check: IntegrityCheck,
    /// On which predictions.
    pub scope: VerdictScope,
    /// Whether the version passed.
    pub passed: bool,
    /// The other miner's version it matched.
    pub matched_version: Option<i64>,
    /// The statistic, where the check has one (finite, or it is not stored).
    pub statistic: Option<f64>,
    /// What was found, in words.
    pub detail: String,
}

/// A version's run on one probe event.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRun {
    /// The probe event's id.
    pub event_id: String,
    /// How the run ended.
    pub status: RunStatus,
    /// The prediction, exactly when the status is ok (finite).
    pub prediction: Option<f64>,
    /// How long it took.
    pub duration_ms: u64,
}

/// The end of a verification.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// Passed: the version is `verified` and activates at the next midnight.
    Verified,
    /// Failed a step or a check: the version is rejected.
    Rejected {
        /// Why, for the miner.
        reason: String,
        /// The other miner's version it matched, where there is one.
        matched_version: Option<i64>,
    },
}

/// What became of an attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailed {
    /// The item is queued again.
    Retrying,
    /// That was the last attempt: the version is rejected with the error as its reason.
    GaveUp,
    /// The worker no longer held the item; nothing was changed.
    LeaseLost,
}

/// Another miner's earlier version's probe predictions: event id to the scored (clipped)
/// prediction, `None` where the run failed.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlierProbe {
    /// The version.
    pub version: i64,
    /// Its miner.
    pub hotkey: String,
    /// Its predictions by probe event id.
    pub predictions: HashMap<String, Option<f64>>,
}

impl Store {
    /// Claims the oldest item waiting (queued, or held under a lease that ended before `now`)
    /// for `lease`. An item whose lease ended after its last allowed attempt (the worker died
    /// every time, for example on a component that crashes the process) is failed instead, and
    /// the version rejected.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn claim_verification(
        &self,
        now: DateTime<Utc>,
        lease: TimeDelta,
        max_attempts: u32,
    ) -> Result<Option<VerificationClaim>, StoreError> {
        let mut transaction = self.begin_write().await?;
        loop {
            let row = sqlx::query(
                "SELECT q.version_no, q.attempts, q.last_error, m.hotkey, v.hash, \
                        v.uploaded_at_ms \
                   FROM validator_verifications q \
                   JOIN validator_agent_versions v USING (version_no) \
                   JOIN validator_miners m USING (miner_no) \
                  WHERE q.state = 'queued' OR (q.state = 'verifying' AND q.lease_until_ms <= $1) \
                  ORDER BY q.queued_at_ms, q.version_no LIMIT 1",
            )
            .bind(to_ms(now))
            .fetch_optional(&mut *transaction)
            .await?;
            let Some(row) = row else {
                transaction.commit().await?;
                return Ok(None);
            };
            let version: i64 = row.try_get("version_no")?;
            let attempts = u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX);
            if attempts >= max_attempts {
                let last_error: Option<String> = row.try_get("last_error")?;
                let reason = format!(
                    "verification failed {attempts} times: {}",
                    last_error.as_deref().unwrap_or(
                        "the verifier stopped during every attempt (it crashed or was restarted)"
                    )
                );
                give_up(&mut transaction, version, &reason, now).await?;
                continue;
            }
            let attempt = attempts + 1;
            sqlx::query(
                "UPDATE validator_verifications \
                    SET state = 'verifying', attempts = $2, lease_until_ms = $3 \
                  WHERE version_no = $1",
            )
            .bind(version)
            .bind(i64::from(attempt))
            .bind(to_ms(now + lease))
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            return Ok(Some(VerificationClaim {
                version,
                attempt,
                hotkey: row.try_get("hotkey")?,
                hash: row.try_get("hash")?,
                uploaded_at: from_ms(row.try_get("uploaded_at_ms")?, "uploaded_at_ms")?,
            }));
        }
    }

    /// Extends `claim`'s lease to `until`. Returns `false` if the worker no longer holds it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn renew_verification_lease(
        &self,
        claim: &VerificationClaim,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE validator_verifications SET lease_until_ms = $3 \
              WHERE version_no = $1 AND attempts = $2 AND state = 'verifying'",
        )
        .bind(claim.version)
        .bind(i64::from(claim.attempt))
        .bind(to_ms(until))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Records the verdict of `claim` with its checks and probe runs, in one transaction, if
    /// the worker still holds the item. Returns `false` (and writes nothing) if it does not.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`]; nothing is written on error.
    pub async fn finish_verification(
        &self,
        claim: &VerificationClaim,
        verification: &Verification,
        verdicts: &[NewVerdict],
        probe_runs: &[ProbeRun],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin_write().await?;
        let held = sqlx::query(
            "UPDATE validator_verifications \
                SET state = 'done', lease_until_ms = NULL, finished_at_ms = $3 \
              WHERE version_no = $1 AND attempts = $2 AND state = 'verifying'",
        )
        .bind(claim.version)
        .bind(i64::from(claim.attempt))
        .bind(to_ms(now))
        .execute(&mut *transaction)
        .await?;
        if held.rows_affected() != 1 {
            return Ok(false);
        }
        match verification {
            Verification::Verified => {
                sqlx::query(
                    "UPDATE validator_agent_versions SET status = 'verified', verified_at_ms = $2 \
                      WHERE version_no = $1 AND status = 'pending'",
                )
                .bind(claim.version)
                .bind(to_ms(now.max(claim.uploaded_at)))
                .execute(&mut *transaction)
                .await?;
            }
            Verification::Rejected {
                reason,
                matched_version,
            } => {
                sqlx::query(
                    "UPDATE validator_agent_versions \
                        SET status = 'refused', reason = $2, matched_version_no = $3 \
                      WHERE version_no = $1 AND status = 'pending'",
                )
                .bind(claim.version)
                .bind(reason)
                .bind(*matched_version)
                .execute(&mut *transaction)
                .await?;
            }
        }
        insert_verdicts(&mut transaction, claim.version, verdicts, now).await?;
        for run in probe_runs {
            let prediction = run.prediction.filter(|value| value.is_finite());
            let (status, prediction) = match (run.status, prediction) {
                (RunStatus::Ok, Some(prediction)) => (RunStatus::Ok, Some(prediction)),
                // An ok run without a usable prediction is an invalid output, as in live runs.
                (RunStatus::Ok, None) => (RunStatus::InvalidOutput, None),
                (status, _) => (status, None),
            };
            sqlx::query(
                "INSERT INTO validator_probe_runs \
                     (version_no, event_id, status, prediction, clipped_prediction, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (version_no, event_id) DO NOTHING",
            )
            .bind(claim.version)
            .bind(&run.event_id)
            .bind(status.as_str())
            .bind_optional_f64(prediction)
            .bind_optional_f64(prediction.map(|value| scored_prediction(Some(value)).value))
            .bind(i64::try_from(run.duration_ms).unwrap_or(i64::MAX))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// Records that `claim`'s attempt failed with `error`: the item is queued again, or, after
    /// `max_attempts`, failed and the version rejected with the error as its reason.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn fail_verification_attempt(
        &self,
        claim: &VerificationClaim,
        error: &str,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<AttemptFailed, StoreError> {
        let mut transaction = self.begin_write().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT version_no FROM validator_verifications \
              WHERE version_no = $1 AND attempts = $2 AND state = 'verifying'",
        )
        .bind(claim.version)
        .bind(i64::from(claim.attempt))
        .fetch_optional(&mut *transaction)
        .await?;
        if held.is_none() {
            return Ok(AttemptFailed::LeaseLost);
        }
        let outcome = if claim.attempt >= max_attempts {
            let reason = format!("verification failed {} times: {error}", claim.attempt);
            give_up(&mut transaction, claim.version, &reason, now).await?;
            AttemptFailed::GaveUp
        } else {
            sqlx::query(
                "UPDATE validator_verifications \
                    SET state = 'queued', lease_until_ms = NULL, last_error = $2 \
                  WHERE version_no = $1",
            )
            .bind(claim.version)
            .bind(error)
            .execute(&mut *transaction)
            .await?;
            AttemptFailed::Retrying
        };
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Records verdicts of the daily live check.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`]; nothing is written on error.
    pub async fn record_live_verdicts(
        &self,
        verdicts: &[(i64, NewVerdict)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        for (version, verdict) in verdicts {
            insert_verdicts(
                &mut transaction,
                *version,
                std::slice::from_ref(verdict),
                now,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The earliest version of another miner than `claim`'s with the same bytes, uploaded
    /// before it, that was not itself rejected.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn earlier_same_bytes(
        &self,
        claim: &VerificationClaim,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT v.version_no, m.hotkey FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
              WHERE v.hash = $1 AND m.hotkey <> $2 AND v.status <> 'refused' \
                AND (v.uploaded_at_ms < $3 OR (v.uploaded_at_ms = $3 AND v.version_no < $4)) \
              ORDER BY v.uploaded_at_ms, v.version_no LIMIT 1",
        )
        .bind(&claim.hash)
        .bind(&claim.hotkey)
        .bind(to_ms(claim.uploaded_at))
        .bind(claim.version)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| Ok((row.try_get("version_no")?, row.try_get("hotkey")?)))
            .transpose()
    }

    /// The probe predictions of every version of other miners than `claim`'s uploaded before
    /// it that passed verification (verified, active or inactive): the versions a new one is
    /// compared with. The first uploader keeps its place.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn earlier_probe_predictions(
        &self,
        claim: &VerificationClaim,
    ) -> Result<Vec<EarlierProbe>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.version_no, m.hotkey, p.event_id, p.clipped_prediction \
               FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
               JOIN validator_probe_runs p USING (version_no) \
              WHERE m.hotkey <> $1 AND v.status IN ('verified', 'active', 'inactive') \
                AND (v.uploaded_at_ms < $2 OR (v.uploaded_at_ms = $2 AND v.version_no < $3)) \
              ORDER BY v.version_no",
        )
        .bind(&claim.hotkey)
        .bind(to_ms(claim.uploaded_at))
        .bind(claim.version)
        .fetch_all(&self.reader)
        .await?;
        let mut versions: Vec<EarlierProbe> = Vec::new();
        for row in &rows {
            let version: i64 = row.try_get("version_no")?;
            if versions.last().is_none_or(|last| last.version != version) {
                versions.push(EarlierProbe {
                    version,
                    hotkey: row.try_get("hotkey")?,
                    predictions: HashMap::new(),
                });
            }
            if let Some(last) = versions.last_mut() {
                last.predictions
                    .insert(row.try_get("event_id")?, row.try_get("clipped_prediction")?);
            }
        }
        Ok(versions)
    }

    /// `version`'s probe predictions by event id (scored values; `None` where the run failed).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn probe_predictions(
        &self,
        version: i64,
    ) -> Result<HashMap<String, Option<f64>>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, clipped_prediction FROM validator_probe_runs WHERE version_no = $1",
        )
        .bind(version)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("event_id")?, row.try_get("clipped_prediction")?)))
            .collect()
    }
}

async fn give_up(
    transaction: &mut sqlx::AnyConnection,
    version: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE validator_verifications \
            SET state = 'failed', lease_until_ms = NULL, finished_at_ms = $2, \
                last_error = coalesce(last_error, $3) \
          WHERE version_no = $1",
    )
    .bind(version)
    .bind(to_ms(now))
    .bind(reason)
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "UPDATE validator_agent_versions SET status = 'refused', reason = $2 \
          WHERE version_no = $1 AND status = 'pending'",
    )
    .bind(version)
    .bind(reason)
    .execute(&mut *transaction)
    .await?;
    Ok(())
}

async fn insert_verdicts(
    transaction: &mut sqlx::AnyConnection,
    version: i64,
    verdicts: &[NewVerdict],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for verdict in verdicts {
        sqlx::query(
            "INSERT INTO validator_integrity_verdicts \
                 (version_no, check_name, scope, passed, matched_version_no, statistic, detail, \
                  decided_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(version)
        .bind(verdict.check.as_str())
        .bind(verdict.scope.as_str())
        .bind(i64::from(verdict.passed))
        .bind(verdict.matched_version)
        .bind_optional_f64(verdict.statistic.filter(|value| value.is_finite()))
        .bind(&verdict.detail)
        .bind(to_ms(now))
        .execute(&mut *transaction)
        .await?;
    }
    Ok(())
}

/// An active version with what the daily live check compares.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveVersion {
    /// The version.
    pub version: i64,
    /// Its miner.
    pub hotkey: String,
    /// When it was uploaded (the first uploader keeps its place).
    pub uploaded_at: DateTime<Utc>,
}

/// A run of a version on a live event, with what the checks read of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRun {
    /// The event.
    pub event: crate::event::Event,
    /// The scored (clipped) prediction; `None` where the run failed.
    pub prediction: Option<f64>,
    /// The event's outcome, once resolved.
    pub outcome: Option<crate::event::Outcome>,
}

impl Store {
    /// The active versions of registered miners, oldest upload first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn active_versions(&self) -> Result<Vec<ActiveVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.version_no, m.hotkey, v.uploaded_at_ms FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
              WHERE v.status = 'active' AND m.deregistered_at_ms IS NULL \
              ORDER BY v.uploaded_at_ms, v.version_no",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActiveVersion {
                    version: row.try_get("version_no")?,
                    hotkey: row.try_get("hotkey")?,
                    uploaded_at: from_ms(row.try_get("uploaded_at_ms")?, "uploaded_at_ms")?,
                })
            })
            .collect()
    }

    /// `version`'s runs on its last `limit` live events (newest creation first).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn live_runs(&self, version: i64, limit: usize) -> Result<Vec<LiveRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.kind, e.title, e.description, e.metadata, e.created_at_ms, \
                    e.cutoff_ms, e.outcome, r.clipped_prediction \
               FROM validator_runs r JOIN validator_events e USING (event_no) \
              WHERE r.version_no = $1 \
              ORDER BY e.created_at_ms DESC, e.id DESC LIMIT $2",
        )
        .bind(version)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let metadata: String = row.try_get("metadata")?;
                let metadata =
                    serde_json::from_str(&metadata).map_err(|source| StoreError::CorruptJson {
                        what: "an event's metadata".to_owned(),
                        source,
                    })?;
                let id: String = row.try_get("id")?;
                let outcome = super::outcome_from(row.try_get("outcome")?, &id)?;
                Ok(LiveRun {
                    outcome,
                    event: crate::event::Event {
                        id,
                        kind: row.try_get("kind")?,
                        title: row.try_get("title")?,
                        description: row.try_get("description")?,
                        metadata,
                        created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
                        cutoff: from_ms(row.try_get("cutoff_ms")?, "cutoff_ms")?,
                    },
                    prediction: row.try_get("clipped_prediction")?,
                })
            })
            .collect()
    }

    /// The hotkeys whose active version's newest live verdict of some check failed: they earn
    /// no weight until a new version activates.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn hotkeys_without_weight(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        Ok(self.failed_live_checks().await?.into_keys().collect())
    }

    /// For each hotkey whose active version's newest live verdict of some check failed, those
    /// checks (in check order): what the leaderboard shows beside the miner.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn failed_live_checks(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<IntegrityCheck>>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT m.hotkey, d.check_name FROM validator_agent_versions v \
               JOIN validator_miners m USING (miner_no) \
               JOIN validator_integrity_verdicts d ON d.version_no = v.version_no \
              WHERE v.status = 'active' AND d.scope = 'live' AND d.passed = 0 \
                AND d.verdict_no = (SELECT max(newest.verdict_no) \
                                      FROM validator_integrity_verdicts newest \
                                     WHERE newest.version_no = d.version_no \
                                       AND newest.scope = 'live' \
                                       AND newest.check_name = d.check_name) \
              ORDER BY m.hotkey, d.check_name",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut failed: std::collections::HashMap<String, Vec<IntegrityCheck>> =
            std::collections::HashMap::new();
        for row in &rows {
            let check: String = row.try_get("check_name")?;
            let check = IntegrityCheck::parse(&check)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown check {check:?}")))?;
            failed
                .entry(row.try_get("hotkey")?)
                .or_default()
                .push(check);
        }
        Ok(failed)
    }
}
