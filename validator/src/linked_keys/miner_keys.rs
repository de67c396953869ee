//! [`MinerKeys`]: linking a miner's key (check, seal, keep, hand to the gateway), handing
//! every kept key over when the validator starts, and taking back the keys activations
//! dropped.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sooth_protocol::{ApiKeyError, ServiceNameError, check_service_name};
use thiserror::Error;

use super::{KeySealer, LinkedKeySink, SealError, ServiceKey, SinkError};
use crate::store::{NewSealedKey, Store, StoreError};

/// Why a key could not be linked, handed or taken back. No variant carries a key.
#[derive(Debug, Error)]
pub enum MinerKeyError {
    /// The service name breaks the protocol's rule.
    #[error("not a service name")]
    InvalidService(#[source] ServiceNameError),
    /// The gateway has no service of this name.
    #[error("this validator's gateway has no service {service:?}")]
    UnknownService {
        /// The name.
        service: String,
    },
    /// The key's text breaks the gateway's rule.
    #[error("not an API key")]
    InvalidKey(#[source] ApiKeyError),
    /// The key could not be sealed.
    #[error("the key could not be sealed")]
    Seal(#[source] SealError),
    /// The store failed, or the hotkey is not a registered miner.
    #[error("the linked keys' store failed")]
    Store(#[source] StoreError),
    /// The key was kept, but the gateway did not take it (or did not forget a dropped key).
    #[error("the key was kept but the gateway did not take it; send it again later")]
    Gateway(#[source] SinkError),
}

impl MinerKeyError {
    /// A stable snake_case name of the error's kind: `invalid_service`, `unknown_service`,
    /// `invalid_api_key`, `gateway_unavailable`, `internal`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidService(_) => "invalid_service",
            Self::UnknownService { .. } => "unknown_service",
            Self::InvalidKey(_) => "invalid_api_key",
            Self::Gateway(_) => "gateway_unavailable",
            Self::Seal(_) | Self::Store(_) => "internal",
        }
    }
}

/// A key linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLinked {
    /// The service.
    pub service: String,
    /// When (at the store's millisecond precision).
    pub linked_at: DateTime<Utc>,
    /// The miner's newest version then: the key is dropped when a newer one activates.
    pub version: Option<i64>,
}

/// What [`MinerKeys::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Keys handed to the gateway.
    pub handed: usize,
    /// Keys the gateway did not take (each logged).
    pub refused: usize,
    /// Keys that did not open with the key file (each logged, naming miner and service).
    pub unopened: usize,
    /// Dropped keys the gateway forgot.
    pub released: usize,
}

/// The validator's side of miners' linked keys: sealed in the store, handed to the gateway
/// through a [`LinkedKeySink`], opened only to be handed. Changes are handed one at a time,
/// so that the gateway ends with what the store says.
pub struct MinerKeys {
    store: Store,
    sealer: KeySealer,
    sink: Arc<dyn LinkedKeySink>,
    handing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MinerKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("MinerKeys").finish_non_exhaustive()
    }
}

impl MinerKeys {
    /// Keys kept in `store`, sealed by `sealer`, handed to `sink`.
    #[must_use]
    pub fn new(store: Store, sealer: KeySealer, sink: Arc<dyn LinkedKeySink>) -> Self {
        Self {
            store,
            sealer,
            sink,
            handing: tokio::sync::Mutex::new(()),
        }
    }

    /// Links `api_key` (as the miner sent it) for `hotkey`'s calls to `service` at `at`: checks
    /// the service and the key, keeps the key sealed (replacing any), and hands it to the
    /// gateway.
    ///
    /// # Errors
    ///
    /// [`MinerKeyError::InvalidService`], [`MinerKeyError::UnknownService`],
    /// [`MinerKeyError::InvalidKey`] (nothing kept); [`MinerKeyError::Store`] with
    /// `StoreError::UnknownMiner` or `StoreError::NotRegistered` for a hotkey that may not
    /// link (nothing kept); [`MinerKeyError::Gateway`] when the key was kept but the gateway
    /// did not take it (it is handed again at the next start, or when linked again).
    pub async fn link(
        &self,
        hotkey: &str,
        service: &str,
        api_key: &str,
        at: DateTime<Utc>,
    ) -> Result<KeyLinked, MinerKeyError> {
        check_service_name(service).map_err(MinerKeyError::InvalidService)?;
        if !self.sink.has_service(service) {
            return Err(MinerKeyError::UnknownService {
                service: service.to_owned(),
            });
        }
        let key = ServiceKey::parse(api_key).map_err(MinerKeyError::InvalidKey)?;
        let sealed = self
            .sealer
            .seal(hotkey, service, &key)
            .map_err(MinerKeyError::Seal)?;
        let _handing = self.handing.lock().await;
        let version = self
            .store
            .put_sealed_key(&NewSealedKey {
                hotkey,
                service,
                nonce: &sealed.nonce,
                ciphertext: &sealed.ciphertext,
                at,
            })
            .await
            .map_err(MinerKeyError::Store)?;
        self.sink
            .link(hotkey, service, &key)
            .await
            .map_err(MinerKeyError::Gateway)?;
        tracing::info!(
            hotkey,
            service,
            "a miner linked its own key; handed to the gateway"
        );
        Ok(KeyLinked {
            service: service.to_owned(),
            linked_at: DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at),
            version,
        })
    }

    /// Tells the gateway to forget the keys activations dropped (a new version of their miner
    /// activated), then deletes them; returns how many. Stops at the first the gateway does not
    /// take: the rest wait for the next call.
    ///
    /// # Errors
    ///
    /// [`MinerKeyError::Store`], [`MinerKeyError::Gateway`].
    pub async fn release_dropped(&self) -> Result<usize, MinerKeyError> {
        let _handing = self.handing.lock().await;
        self.release_dropped_locked().await
    }

    async fn release_dropped_locked(&self) -> Result<usize, MinerKeyError> {
        let dropped = self
            .store
            .dropped_keys()
            .await
            .map_err(MinerKeyError::Store)?;
        for key in &dropped {
            self.sink
                .unlink(&key.hotkey, &key.service)
                .await
                .map_err(MinerKeyError::Gateway)?;
            self.store
                .forget_dropped_key(&key.hotkey, &key.service)
                .await
                .map_err(MinerKeyError::Store)?;
            tracing::info!(
                hotkey = %key.hotkey,
                service = %key.service,
                dropped_at = %key.dropped_at,
                "a linked key was dropped (a new version activated); the gateway forgot it"
            );
        }
        Ok(dropped.len())
    }

    /// Brings the gateway in line with the store, as the validator starts: dropped keys are
    /// taken back (what the gateway does not take is logged and left for
    /// [`release_dropped`](Self::release_dropped)), then every kept key is opened and handed
    /// over. A key that does not open or that the gateway refuses is logged (miner and service,
    /// never the key) and skipped.
    ///
    /// # Errors
    ///
    /// [`MinerKeyError::Store`] when the store cannot be read.
    pub async fn sync(&self) -> Result<SyncReport, MinerKeyError> {
        let _handing = self.handing.lock().await;
        let mut report = SyncReport::default();
        match self.release_dropped_locked().await {
            Ok(released) => report.released = released,
            Err(MinerKeyError::Gateway(error)) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "the gateway did not forget a dropped linked key; trying again later"
            ),
            Err(other) => return Err(other),
        }
        let kept = self
            .store
            .sealed_keys()
            .await
            .map_err(MinerKeyError::Store)?;
        for sealed in kept {
            let (hotkey, service) = (sealed.hotkey.as_str(), sealed.service.as_str());
            let key = match self
                .sealer
                .open(hotkey, service, &sealed.nonce, &sealed.ciphertext)
            {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(
                        hotkey,
                        service,
                        error = &error as &dyn std::error::Error,
                        "a linked key does not open (was the key file replaced?); the miner must link it again"
                    );
                    report.unopened += 1;
                    continue;
                }
            };
            match self.sink.link(hotkey, service, &key).await {
                Ok(()) => report.handed += 1,
                Err(error) => {
                    tracing::warn!(
                        hotkey,
                        service,
                        error = &error as &dyn std::error::Error,
                        "the gateway did not take a linked key"
                    );
                    report.refused += 1;
                }
            }
        }
        Ok(report)
    }
}
