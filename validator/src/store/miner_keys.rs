//! Miners' linked service keys, sealed (`validator_miner_keys`, schema in
//! `migrations/sqlite/0008_validator_linked_keys.sql`).
//!
//! Owns the rows of the keys miners linked through the API: the sealed bytes as the caller
//! gives them, the miner's newest version when each was linked, and their dropping when a newer
//! version activates (in [`Store::record_activation`]'s transaction: a new upload requires
//! linking again). It never sees a key in clear and must not seal, open or hand one: that is
//! `linked_keys`'.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, from_ms, to_ms};

/// A key to keep, sealed by the caller.
#[derive(Debug, Clone, Copy)]
pub struct NewSealedKey<'a> {
    /// The miner's hotkey; it must be registered.
    pub hotkey: &'a str,
    /// The gateway service the key is for.
    pub service: &'a str,
    /// The seal's nonce.
    pub nonce: &'a [u8],
    /// The sealed key.
    pub ciphertext: &'a [u8],
    /// When it was linked.
    pub at: DateTime<Utc>,
}

/// A sealed key on file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The miner's hotkey.
    pub hotkey: String,
    /// The gateway service.
    pub service: String,
    /// The seal's nonce.
    pub nonce: Vec<u8>,
    /// The sealed key.
    pub ciphertext: Vec<u8>,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
    /// The miner's newest version when it was linked (`None`: it had none).
    pub version: Option<i64>,
}

/// A key dropped by an activation that the gateway may still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKey {
    /// The miner's hotkey.
    pub hotkey: String,
    /// The gateway service.
    pub service: String,
    /// When it was dropped (the activation's midnight).
    pub dropped_at: DateTime<Utc>,
}

impl Store {
    /// Keeps `key` for its miner and service, replacing what was there (a dropped key too),
    /// with the miner's newest version now; returns that version (`None` when the miner has
    /// none yet).
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownMiner`] or [`StoreError::NotRegistered`] for a hotkey that is not a
    /// registered miner, [`StoreError::Database`]. Nothing is written on error.
    pub async fn put_sealed_key(&self, key: &NewSealedKey<'_>) -> Result<Option<i64>, StoreError> {
        let mut transaction = self.begin_write().await?;
        let miner = sqlx::query(
            "SELECT miner_no, deregistered_at_ms FROM validator_miners WHERE hotkey = $1",
        )
        .bind(key.hotkey)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| StoreError::UnknownMiner {
            hotkey: key.hotkey.to_owned(),
        })?;
        if let Some(deregistered_at) = miner.try_get::<Option<i64>, _>("deregistered_at_ms")? {
            return Err(StoreError::NotRegistered {
                hotkey: key.hotkey.to_owned(),
                deregistered_at: from_ms(deregistered_at, "deregistered_at_ms")?,
            });
        }
        let miner_no: i64 = miner.try_get("miner_no")?;
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT max(version_no) FROM validator_agent_versions WHERE miner_no = $1",
        )
        .bind(miner_no)
        .fetch_one(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO validator_miner_keys \
                 (miner_no, service, nonce, ciphertext, linked_at_ms, version_no) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (miner_no, service) DO UPDATE \
                SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                    linked_at_ms = excluded.linked_at_ms, version_no = excluded.version_no, \
                    dropped_at_ms = NULL",
        )
        .bind(miner_no)
        .bind(key.service)
        .bind(key.nonce)
        .bind(key.ciphertext)
        .bind(to_ms(key.at))
        .bind(version)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(version)
    }

    /// Every key on file that was not dropped, by hotkey then service.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn sealed_keys(&self) -> Result<Vec<SealedKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.hotkey, k.service, k.nonce, k.ciphertext, k.linked_at_ms, k.version_no \
               FROM validator_miner_keys k JOIN validator_miners m USING (miner_no) \
              WHERE k.dropped_at_ms IS NULL \
              ORDER BY m.hotkey, k.service",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(sealed_from_row).collect()
    }

    /// `hotkey`'s key for `service`, unless there is none or it was dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn sealed_key(
        &self,
        hotkey: &str,
        service: &str,
    ) -> Result<Option<SealedKey>, StoreError> {
        let row = sqlx::query(
            "SELECT m.hotkey, k.service, k.nonce, k.ciphertext, k.linked_at_ms, k.version_no \
               FROM validator_miner_keys k JOIN validator_miners m USING (miner_no) \
              WHERE m.hotkey = $1 AND k.service = $2 AND k.dropped_at_ms IS NULL",
        )
        .bind(hotkey)
        .bind(service)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(sealed_from_row).transpose()
    }

    /// The keys activations dropped that are still to be forgotten (see
    /// [`forget_dropped_key`](Self::forget_dropped_key)), oldest drop first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], [`StoreError::Corrupt`].
    pub async fn dropped_keys(&self) -> Result<Vec<DroppedKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.hotkey, k.service, k.dropped_at_ms \
               FROM validator_miner_keys k JOIN validator_miners m USING (miner_no) \
              WHERE k.dropped_at_ms IS NOT NULL \
              ORDER BY k.dropped_at_ms, m.hotkey, k.service",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DroppedKey {
                    hotkey: row.try_get("hotkey")?,
                    service: row.try_get("service")?,
                    dropped_at: from_ms(row.try_get("dropped_at_ms")?, "dropped_at_ms")?,
                })
            })
            .collect()
    }

    /// Deletes `hotkey`'s dropped key for `service` once the gateway forgot it; a key linked
    /// again since it was dropped stays. Returns whether a row was deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn forget_dropped_key(
        &self,
        hotkey: &str,
        service: &str,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM validator_miner_keys \
              WHERE service = $2 AND dropped_at_ms IS NOT NULL \
                AND miner_no = (SELECT miner_no FROM validator_miners WHERE hotkey = $1)",
        )
        .bind(hotkey)
        .bind(service)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(deleted > 0)
    }
}

/// Drops, in the caller's transaction, the keys miner `miner_no` linked before it uploaded
/// version `version_no` (or before it had any version): their sealed bytes are wiped at once
/// and the rows stay, marked dropped at `at`, until the gateway forgot them. Returns how many.
pub(super) async fn drop_keys_linked_before(
    connection: &mut AnyConnection,
    miner_no: i64,
    version_no: i64,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE validator_miner_keys \
            SET nonce = NULL, ciphertext = NULL, dropped_at_ms = $3 \
          WHERE miner_no = $1 AND dropped_at_ms IS NULL \
            AND (version_no IS NULL OR version_no < $2)",
    )
    .bind(miner_no)
    .bind(version_no)
    .bind(to_ms(at))
    .execute(&mut *connection)
    .await?
    .rows_affected())
}

fn sealed_from_row(row: &AnyRow) -> Result<SealedKey, StoreError> {
    let corrupt = || StoreError::Corrupt("a linked key without its sealed bytes".to_owned());
    Ok(SealedKey {
        hotkey: row.try_get("hotkey")?,
        service: row.try_get("service")?,
        nonce: row
            .try_get::<Option<Vec<u8>>, _>("nonce")?
            .ok_or_else(corrupt)?,
        ciphertext: row
            .try_get::<Option<Vec<u8>>, _>("ciphertext")?
            .ok_or_else(corrupt)?,
        linked_at: from_ms(row.try_get("linked_at_ms")?, "linked_at_ms")?,
        version: row.try_get("version_no")?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::activation::AgentVersion;
    use crate::scoring::Miner;
    use crate::test_support::at;

    fn t(hours: i64) -> DateTime<Utc> {
        at("2026-03-01T00:00:00Z") + TimeDelta::hours(hours)
    }

    fn key<'a>(hotkey: &'a str, service: &'a str, at: DateTime<Utc>) -> NewSealedKey<'a> {
        NewSealedKey {
            hotkey,
            service,
            nonce: &[1; 24],
            ciphertext: &[2; 40],
            at,
        }
    }

    async fn store_with(hotkeys: &[&str]) -> Store {
        let store = Store::in_memory().await.unwrap();
        for (uid, hotkey) in (0_u16..).zip(hotkeys) {
            store
                .register_miner(&Miner {
                    uid,
                    hotkey: (*hotkey).to_owned(),
                    registered_at: t(0),
                })
                .await
                .unwrap();
        }
        store
    }

    async fn add_verified(store: &Store, hotkey: &str, hash: &str, at: DateTime<Utc>) {
        store
            .add_agent_version(&AgentVersion {
                hotkey: hotkey.to_owned(),
                hash: hash.to_owned(),
                uploaded_at: at,
                verified_at: Some(at),
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn only_registered_miners_keep_keys_and_the_newest_version_is_recorded() {
        let store = store_with(&["alice", "bob"]).await;
        assert!(matches!(
            store.put_sealed_key(&key("carol", "chat", t(1))).await,
            Err(StoreError::UnknownMiner { .. })
        ));
        assert_eq!(
            store
                .put_sealed_key(&key("alice", "chat", t(1)))
                .await
                .unwrap(),
            None
        );
        add_verified(&store, "alice", "a1", t(2)).await;
        add_verified(&store, "alice", "a2", t(3)).await;
        let newest = store
            .put_sealed_key(&key("alice", "chat", t(4)))
            .await
            .unwrap();
        let kept = store.sealed_key("alice", "chat").await.unwrap().unwrap();
        assert_eq!((kept.version, kept.linked_at), (newest, t(4)));
        assert!(newest.is_some());
        store.deregister_miner("bob", t(5)).await.unwrap();
        assert!(matches!(
            store.put_sealed_key(&key("bob", "chat", t(6))).await,
            Err(StoreError::NotRegistered { .. })
        ));
        assert_eq!(store.sealed_keys().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_activation_drops_the_keys_linked_before_its_upload_in_its_transaction() {
        let store = store_with(&["alice", "bob"]).await;
        add_verified(&store, "alice", "a1", t(1)).await;
        store
            .put_sealed_key(&key("alice", "chat", t(2)))
            .await
            .unwrap();
        store
            .put_sealed_key(&key("bob", "chat", t(2)))
            .await
            .unwrap();
        add_verified(&store, "alice", "a2", t(3)).await;
        store
            .put_sealed_key(&key("alice", "search", t(4)))
            .await
            .unwrap();

        // a1 activating keeps both of alice's keys (linked after it was uploaded).
        assert!(store.record_activation("alice", "a1", t(24)).await.unwrap());
        assert!(store.dropped_keys().await.unwrap().is_empty());
        // a2 drops the key linked before a2's upload only; bob's stays.
        assert!(store.record_activation("alice", "a2", t(48)).await.unwrap());
        let dropped = store.dropped_keys().await.unwrap();
        assert_eq!(
            dropped,
            [DroppedKey {
                hotkey: "alice".to_owned(),
                service: "chat".to_owned(),
                dropped_at: t(48),
            }]
        );
        let kept: Vec<_> = store
            .sealed_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|key| (key.hotkey, key.service))
            .collect();
        assert_eq!(
            kept,
            [
                ("alice".to_owned(), "search".to_owned()),
                ("bob".to_owned(), "chat".to_owned())
            ]
        );
        // Recording the same midnight again drops nothing more.
        assert!(!store.record_activation("alice", "a2", t(48)).await.unwrap());
        assert_eq!(store.dropped_keys().await.unwrap().len(), 1);

        // Linked again before being forgotten: the new key stays, and is not forgotten.
        store
            .put_sealed_key(&key("alice", "chat", t(49)))
            .await
            .unwrap();
        assert!(store.dropped_keys().await.unwrap().is_empty());
        assert!(!store.forget_dropped_key("alice", "chat").await.unwrap());
        assert!(store.sealed_key("alice", "chat").await.unwrap().is_some());
        // A dropped key is forgotten once.
        add_verified(&store, "bob", "b1", t(50)).await;
        assert!(store.record_activation("bob", "b1", t(72)).await.unwrap());
        assert!(store.forget_dropped_key("bob", "chat").await.unwrap());
        assert!(!store.forget_dropped_key("bob", "chat").await.unwrap());
        assert!(store.dropped_keys().await.unwrap().is_empty());
    }
}
