//! Miners: registration and deregistration (`validator_miners`).
//!
//! Owns the rows of registered and deregistered miners. It records what
//! `registration::decide_registration` decided and does not decide anything itself
//! (slots, immunity and who goes are that module's). It must not touch runs or scores: a
//! deregistered miner's history stays.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, from_ms, from_optional_ms, to_ms, uid_from};
use crate::registration::RegistrationDecision;
use crate::scoring::Miner;

/// A miner as stored, registered or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerRecord {
    /// The miner (uid, hotkey, registration instant). After a deregistration, the uid it held.
    pub miner: Miner,
    /// When it was deregistered; `None` while registered.
    pub deregistered_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Registers `miner` in its uid. A hotkey deregistered earlier registers again in the same
    /// row (new uid and instant); its past runs stay attached to it.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidMiner`] for an empty hotkey,
    /// [`StoreError::AlreadyRegistered`] if the hotkey is registered,
    /// [`StoreError::UidTaken`] if another registered miner holds the uid,
    /// [`StoreError::InvalidInstant`] for a re-registration before the hotkey's deregistration,
    /// [`StoreError::Database`] if the write fails. Nothing is written on error.
    pub async fn register_miner(&self, miner: &Miner) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        register_in(&mut transaction, miner).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deregisters `hotkey` at `at`: it loses its uid and its runs stop; its history stays.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`], [`StoreError::NotRegistered`] (already deregistered),
    /// [`StoreError::InvalidInstant`] if `at` is before its registration,
    /// [`StoreError::Database`].
    pub async fn deregister_miner(
        &self,
        hotkey: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        deregister_in(&mut transaction, hotkey, at).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Records a registration decision in one transaction: the deregistration (at the new
    /// miner's registration instant) and the registration, or neither.
    ///
    /// # Errors
    ///
    /// As [`deregister_miner`](Self::deregister_miner) and
    /// [`register_miner`](Self::register_miner); nothing is written on error.
    pub async fn apply_registration(
        &self,
        decision: &RegistrationDecision,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        if let Some(leaving) = &decision.deregistered {
            deregister_in(
                &mut transaction,
                &leaving.hotkey,
                decision.registered.registered_at,
            )
            .await?;
        }
        register_in(&mut transaction, &decision.registered).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The registered miners, by uid: the `miners` slice scoring and registration take.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for a row the store never writes.
    pub async fn registered_miners(&self) -> Result<Vec<Miner>, StoreError> {
        let rows = sqlx::query(
            "SELECT uid, hotkey, registered_at_ms FROM validator_miners \
             WHERE deregistered_at_ms IS NULL ORDER BY uid",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Miner {
                    uid: uid_from(row.try_get("uid")?)?,
                    hotkey: row.try_get("hotkey")?,
                    registered_at: from_ms(row.try_get("registered_at_ms")?, "registered_at_ms")?,
                })
            })
            .collect()
    }

    /// The miner with `hotkey`, registered or not; `None` if it never registered.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn miner(&self, hotkey: &str) -> Result<Option<MinerRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT uid, hotkey, registered_at_ms, deregistered_at_ms FROM validator_miners \
             WHERE hotkey = $1",
        )
        .bind(hotkey)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(MinerRecord {
                miner: Miner {
                    uid: uid_from(row.try_get("uid")?)?,
                    hotkey: row.try_get("hotkey")?,
                    registered_at: from_ms(row.try_get("registered_at_ms")?, "registered_at_ms")?,
                },
                deregistered_at: from_optional_ms(
                    row.try_get("deregistered_at_ms")?,
                    "deregistered_at_ms",
                )?,
            })
        })
        .transpose()
    }
}

/// The internal key of `hotkey`'s row, registered or not.
pub(super) async fn miner_no(
    connection: &mut AnyConnection,
    hotkey: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT miner_no FROM validator_miners WHERE hotkey = $1")
        .bind(hotkey)
        .fetch_optional(&mut *connection)
        .await?
        .ok_or_else(|| StoreError::UnknownMiner {
            hotkey: hotkey.to_owned(),
        })
}

async fn register_in(connection: &mut AnyConnection, miner: &Miner) -> Result<(), StoreError> {
    if miner.hotkey.is_empty() {
        return Err(StoreError::InvalidMiner {
            hotkey: String::new(),
            problem: "the hotkey is empty".to_owned(),
        });
    }
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT hotkey FROM validator_miners WHERE uid = $1 AND deregistered_at_ms IS NULL",
    )
    .bind(i64::from(miner.uid))
    .fetch_optional(&mut *connection)
    .await?;
    if let Some(holder) = holder {
        if holder == miner.hotkey {
            return Err(StoreError::AlreadyRegistered {
                hotkey: holder,
                uid: miner.uid,
            });
        }
        return Err(StoreError::UidTaken {
            uid: miner.uid,
            holder,
        });
    }
    let existing =
        sqlx::query("SELECT uid, deregistered_at_ms FROM validator_miners WHERE hotkey = $1")
            .bind(&miner.hotkey)
            .fetch_optional(&mut *connection)
            .await?;
    match existing {
        None => {
            sqlx::query(
                "INSERT INTO validator_miners (uid, hotkey, registered_at_ms) VALUES ($1, $2, $3)",
            )
            .bind(i64::from(miner.uid))
            .bind(&miner.hotkey)
            .bind(to_ms(miner.registered_at))
            .execute(&mut *connection)
            .await?;
        }
        Some(row) => {
            let deregistered_at: Option<i64> = row.try_get("deregistered_at_ms")?;
            let Some(deregistered_at) = deregistered_at else {
                return Err(StoreError::AlreadyRegistered {
                    hotkey: miner.hotkey.clone(),
                    uid: uid_from(row.try_get("uid")?)?,
                });
            };
            if to_ms(miner.registered_at) < deregistered_at {
                return Err(StoreError::InvalidInstant(format!(
                    "miner {:?} cannot register again at {} before its deregistration at {}",
                    miner.hotkey,
                    miner.registered_at,
                    from_ms(deregistered_at, "deregistered_at_ms")?
                )));
            }
            sqlx::query(
                "UPDATE validator_miners \
                    SET uid = $1, registered_at_ms = $2, deregistered_at_ms = NULL \
                  WHERE hotkey = $3",
            )
            .bind(i64::from(miner.uid))
            .bind(to_ms(miner.registered_at))
            .bind(&miner.hotkey)
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}

async fn deregister_in(
    connection: &mut AnyConnection,
    hotkey: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT registered_at_ms, deregistered_at_ms FROM validator_miners WHERE hotkey = $1",
    )
    .bind(hotkey)
    .fetch_optional(&mut *connection)
    .await?
    .ok_or_else(|| StoreError::UnknownMiner {
        hotkey: hotkey.to_owned(),
    })?;
    if let Some(deregistered_at) = row.try_get::<Option<i64>, _>("deregistered_at_ms")? {
        return Err(StoreError::NotRegistered {
            hotkey: hotkey.to_owned(),
            deregistered_at: from_ms(deregistered_at, "deregistered_at_ms")?,
        });
    }
    let registered_at: i64 = row.try_get("registered_at_ms")?;
    if to_ms(at) < registered_at {
        return Err(StoreError::InvalidInstant(format!(
            "miner {hotkey:?} cannot be deregistered at {at}, before its registration at {}",
            from_ms(registered_at, "registered_at_ms")?
        )));
    }
    sqlx::query("UPDATE validator_miners SET deregistered_at_ms = $1 WHERE hotkey = $2")
        .bind(to_ms(at))
        .bind(hotkey)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
