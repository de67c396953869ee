//! The upload desk: what the validator does with a miner's signed request once its HTTP layer
//! has read it: check who signed it, keep an upload's bytes and queue them for verification,
//! register a miner that asks to be, take a miner's own service key.
//!
//! This module owns the rules of accepting a request (signature, registration, size, rate,
//! what the bytes must look like) and their stable error codes. It must not speak HTTP (that
//! is [`crate::api`]), verify versions (that is [`crate::verification`], which it wakes) nor
//! keep keys (that is [`crate::linked_keys`], which it calls).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sooth_protocol::{EpistulaError, EpistulaVerifier, Hotkey, HotkeyScheme, VerifiedEpistula};
use sooth_runner::{LoadError, check_component_header};
use thiserror::Error;

use crate::components::{ComponentFileError, Components};
use crate::daemon::{Daemon, DaemonError};
use crate::linked_keys::{KeyLinked, MinerKeyError, MinerKeys};
use crate::registration::{RegistrationDecision, RegistrationError};
use crate::store::{NewUpload, Store, StoreError, UploadedBy};
use crate::verification::Verifier;

/// Why a miner's request was refused. [`code`](Self::code) names each kind stably.
#[derive(Debug, Error)]
pub enum DeskError {
    /// The Epistula headers are missing, malformed, stale, replayed, for another validator, or
    /// the signature does not verify.
    #[error(transparent)]
    Signature(#[from] EpistulaError),
    /// No miner has this hotkey.
    #[error("hotkey {hotkey} is not registered with this validator")]
    UnknownHotkey {
        /// The hotkey.
        hotkey: String,
    },
    /// The miner was deregistered.
    #[error("hotkey {hotkey} was deregistered at {deregistered_at}")]
    Deregistered {
        /// The hotkey.
        hotkey: String,
        /// When.
        deregistered_at: DateTime<Utc>,
    },
    /// The body is larger than the cap.
    #[error("the upload is larger than the {limit} bytes allowed")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The miner's last upload is too recent.
    #[error(
        "one upload every {interval_hours} hours: the last was at {last_upload_at}, the next is allowed at {next_allowed_at}"
    )]
    TooSoon {
        /// The rate interval.
        interval_hours: i64,
        /// The last upload.
        last_upload_at: DateTime<Utc>,
        /// When the next upload is allowed.
        next_allowed_at: DateTime<Utc>,
    },
    /// The bytes are not a WebAssembly component.
    #[error("the upload is not a WebAssembly component")]
    NotAComponent(#[source] LoadError),
    /// The miner already uploaded these bytes.
    #[error("these bytes were already uploaded by this miner")]
    AlreadyUploaded,
    /// Registration is the operator's here.
    #[error("this validator does not take registrations from miners; ask its operator")]
    RegistrationClosed,
    /// Too many registrations lately.
    #[error("too many registrations in the last hour; try again after {retry_at}")]
    RegistrationRateLimited {
        /// When one is allowed again.
        retry_at: DateTime<Utc>,
    },
    /// The registration was refused by the rules (already registered, no slot to free).
    #[error("the registration was refused")]
    Registration(#[source] RegistrationError),
    /// The component could not be kept.
    #[error("the upload could not be saved")]
    Save(#[source] ComponentFileError),
    /// The store failed.
    #[error("the validator's database failed")]
    Store(#[source] StoreError),
    /// The daemon failed while registering (its store, above all).
    #[error("the registration could not be recorded")]
    Daemon(#[source] DaemonError),
    /// A request's body (other than an upload's) is larger than its cap.
    #[error("the request's body is larger than the {limit} bytes allowed")]
    BodyTooLarge {
        /// The cap.
        limit: u64,
    },
    /// This validator cannot hand miners' keys to its gateway.
    #[error(
        "this validator cannot hand miners' keys to its gateway (it runs apart); ask its operator"
    )]
    LinkedKeysClosed,
    /// The key was refused, or could not be kept or handed.
    #[error(transparent)]
    LinkedKey(MinerKeyError),
}

impl DeskError {
    /// A stable snake_case name of the error's kind: the signature's codes
    /// (`missing_header`, `stale_request`, `replayed_request`, ...), `unknown_hotkey`,
    /// `deregistered`, `too_large`, `upload_too_soon`, `not_a_component`, `already_uploaded`,
    /// `registration_closed`, `registration_rate_limited`, `already_registered`,
    /// `registration_refused`, `linked_keys_closed`, the linked key's codes
    /// (`invalid_service`, `unknown_service`, `invalid_api_key`, `gateway_unavailable`),
    /// `internal`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Signature(error) => error.code(),
            Self::UnknownHotkey { .. } => "unknown_hotkey",
            Self::Deregistered { .. } => "deregistered",
            Self::TooLarge { .. } | Self::BodyTooLarge { .. } => "too_large",
            Self::TooSoon { .. } => "upload_too_soon",
            Self::NotAComponent(_) => "not_a_component",
            Self::AlreadyUploaded => "already_uploaded",
            Self::RegistrationClosed => "registration_closed",
            Self::RegistrationRateLimited { .. } => "registration_rate_limited",
            Self::Registration(RegistrationError::AlreadyRegistered { .. }) => "already_registered",
            Self::Registration(_) => "registration_refused",
            Self::LinkedKeysClosed => "linked_keys_closed",
            Self::LinkedKey(error) => error.code(),
            Self::Save(_) | Self::Store(_) | Self::Daemon(_) => "internal",
        }
    }
}

/// An accepted upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadAccepted {
    /// The version's id.
    pub version: i64,
    /// The component's content hash.
    pub hash: String,
}

/// The desk's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeskSettings {
    /// An upload's size cap.
    pub max_bytes: u64,
    /// Time between two uploads of one miner.
    pub min_interval: TimeDelta,
    /// Whether miners may register themselves.
    pub open_registration: bool,
    /// Self-registrations per hour, all miners together.
    pub registrations_per_hour: u32,
}

/// The desk. Cheap to share behind an `Arc`.
pub struct UploadDesk {
    store: Store,
    components: Components,
    daemon: Arc<Daemon>,
    verifier: Option<Arc<Verifier>>,
    signatures: EpistulaVerifier,
    settings: DeskSettings,
    recent_registrations: Mutex<Vec<DateTime<Utc>>>,
    miner_keys: Option<Arc<MinerKeys>>,
    /// Whether runner workers verify the uploads (they fetch them from the store).
    for_workers: bool,
}

impl std::fmt::Debug for UploadDesk {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UploadDesk")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl UploadDesk {
    /// A desk for the validator whose hotkey is `validator`, accepting signatures of `schemes`
    /// within `window`, keeping uploads in `components`, registering through `daemon`, and
    /// waking `verifier` when something is queued.
    #[must_use]
    pub fn new(
        validator: &Hotkey,
        schemes: Vec<HotkeyScheme>,
        window: Duration,
        components: Components,
        daemon: Arc<Daemon>,
        verifier: Option<Arc<Verifier>>,
        settings: DeskSettings,
    ) -> Self {
        Self {
            store: daemon.store().clone(),
            components,
            daemon,
            verifier,
            signatures: EpistulaVerifier::new(validator.to_string(), schemes, window),
            settings,
            recent_registrations: Mutex::new(Vec::new()),
            miner_keys: None,
            for_workers: false,
        }
    }

    /// The desk of a scheduler whose runner workers verify uploads: each upload's component is
    /// kept in the store, where they fetch it, in the transaction that queues it.
    #[must_use]
    pub fn for_workers(mut self) -> Self {
        self.for_workers = true;
        self
    }

    /// The desk taking miners' own service keys into `keys` (without, it refuses them with
    /// [`DeskError::LinkedKeysClosed`]).
    #[must_use]
    pub fn with_miner_keys(mut self, keys: Arc<MinerKeys>) -> Self {
        self.miner_keys = Some(keys);
        self
    }

    /// Whether the desk takes miners' own service keys.
    #[must_use]
    pub fn takes_linked_keys(&self) -> bool {
        self.miner_keys.is_some()
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &DeskSettings {
        &self.settings
    }

    /// The hotkey requests must be signed for.
    #[must_use]
    pub fn validator_hotkey(&self) -> &str {
        self.signatures.expected_signed_for()
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn now(&self) -> DateTime<Utc> {
        self.daemon.clock().now()
    }

    /// Checks, before the body is read, all that can be checked without it: the signature
    /// headers (their form, the timestamp's window, the validator signed for, the scheme; the
    /// protocol's [`EpistulaVerifier::precheck`]) and, for an upload, that the signer is
    /// registered. The signature itself is checked with the body ([`verify`](Self::verify)).
    ///
    /// # Errors
    ///
    /// [`DeskError::Signature`], [`DeskError::UnknownHotkey`], [`DeskError::Deregistered`],
    /// [`DeskError::Store`].
    pub async fn precheck(
        &self,
        headers: impl Fn(&str) -> Option<String>,
        must_be_registered: bool,
    ) -> Result<(), DeskError> {
        let now = u64::try_from(self.now().timestamp_millis()).unwrap_or(0);
        let hotkey = self.signatures.precheck(headers, now)?;
        if must_be_registered {
            self.registered(&hotkey.to_string()).await?;
        }
        Ok(())
    }

    /// Verifies the request's signature over `body` (and remembers its uuid).
    ///
    /// # Errors
    ///
    /// [`DeskError::Signature`].
    pub fn verify(
        &self,
        headers: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<VerifiedEpistula, DeskError> {
        let now = u64::try_from(self.now().timestamp_millis()).unwrap_or(0);
        Ok(self.signatures.verify(headers, body, now)?)
    }

    async fn registered(&self, hotkey: &str) -> Result<(), DeskError> {
        match self.store.miner(hotkey).await.map_err(DeskError::Store)? {
            None => Err(DeskError::UnknownHotkey {
                hotkey: hotkey.to_owned(),
            }),
            Some(record) => match record.deregistered_at {
                Some(deregistered_at) => Err(DeskError::Deregistered {
                    hotkey: hotkey.to_owned(),
                    deregistered_at,
                }),
                None => Ok(()),
            },
        }
    }

    /// Checks that `bytes` are within the size cap and look like a WebAssembly component (what
    /// can be told without compiling them).
    ///
    /// # Errors
    ///
    /// [`DeskError::TooLarge`], [`DeskError::NotAComponent`].
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<(), DeskError> {
        let limit = usize::try_from(self.settings.max_bytes).unwrap_or(usize::MAX);
        check_component_header(bytes, limit).map_err(|error| match error {
            LoadError::TooLarge { .. } => DeskError::TooLarge {
                limit: self.settings.max_bytes,
            },
            other => DeskError::NotAComponent(other),
        })
    }

    /// Accepts `bytes` as a new version of `hotkey`'s agent: checks the size and that they are
    /// a component, keeps them, queues them for verification (checking the upload rate in the
    /// same transaction).
    ///
    /// # Errors
    ///
    /// [`DeskError`]; nothing is kept or queued on error.
    pub async fn accept_upload(
        &self,
        hotkey: &str,
        bytes: &[u8],
        uploaded_by: UploadedBy,
    ) -> Result<UploadAccepted, DeskError> {
        self.check_bytes(bytes)?;
        self.registered(hotkey).await?;
        let now = self.now();
        let hash = self.components.save(bytes).map_err(DeskError::Save)?;
        let upload = NewUpload {
            hotkey: hotkey.to_owned(),
            hash: hash.clone(),
            size_bytes: bytes.len() as u64,
            uploaded_by,
            at: now,
            min_interval: self.settings.min_interval,
        };
        let queued = if self.for_workers {
            self.store.enqueue_upload_for_workers(&upload, bytes).await
        } else {
            self.store.enqueue_upload(&upload).await
        };
        match queued {
            Ok(version) => {
                if let Some(verifier) = &self.verifier {
                    verifier.notify_queued();
                }
                tracing::info!(hotkey, version, hash = %hash, "upload queued for verification");
                Ok(UploadAccepted { version, hash })
            }
            Err(error) => {
                // Bytes no version names are not kept.
                if matches!(self.store.hash_in_use(&hash).await, Ok(false)) {
                    self.components.remove(&hash);
                }
                Err(match error {
                    StoreError::UploadTooSoon {
                        last_upload_at,
                        next_allowed_at,
                        ..
                    } => DeskError::TooSoon {
                        interval_hours: self.settings.min_interval.num_hours(),
                        last_upload_at,
                        next_allowed_at,
                    },
                    StoreError::DuplicateVersion { .. } => DeskError::AlreadyUploaded,
                    StoreError::UnknownMiner { hotkey } => DeskError::UnknownHotkey { hotkey },
                    StoreError::NotRegistered {
                        hotkey,
                        deregistered_at,
                    } => DeskError::Deregistered {
                        hotkey,
                        deregistered_at,
                    },
                    other => DeskError::Store(other),
                })
            }
        }
    }

    /// Links `api_key`, as the miner `hotkey` sent it, for its calls to `service`: the miner
    /// must be registered; the key is kept sealed and handed to the gateway, until a newer
    /// version of the miner's agent activates.
    ///
    /// # Errors
    ///
    /// [`DeskError::LinkedKeysClosed`], [`DeskError::UnknownHotkey`],
    /// [`DeskError::Deregistered`], [`DeskError::LinkedKey`] (a bad service name or key, a
    /// service the gateway lacks, the gateway not taking it), [`DeskError::Store`].
    pub async fn link_key(
        &self,
        hotkey: &str,
        service: &str,
        api_key: &str,
    ) -> Result<KeyLinked, DeskError> {
        let keys = self
            .miner_keys
            .as_ref()
            .ok_or(DeskError::LinkedKeysClosed)?;
        self.registered(hotkey).await?;
        keys.link(hotkey, service, api_key, self.now())
            .await
            .map_err(|error| match error {
                MinerKeyError::Store(StoreError::UnknownMiner { hotkey }) => {
                    DeskError::UnknownHotkey { hotkey }
                }
                MinerKeyError::Store(StoreError::NotRegistered {
                    hotkey,
                    deregistered_at,
                }) => DeskError::Deregistered {
                    hotkey,
                    deregistered_at,
                },
                MinerKeyError::Store(other) => DeskError::Store(other),
                other => DeskError::LinkedKey(other),
            })
    }

    /// Registers `hotkey` at its own request, where registration is open and the hourly
    /// bound allows.
    ///
    /// # Errors
    ///
    /// [`DeskError::RegistrationClosed`], [`DeskError::RegistrationRateLimited`],
    /// [`DeskError::Registration`], [`DeskError::Store`].
    pub async fn register(&self, hotkey: &Hotkey) -> Result<RegistrationDecision, DeskError> {
        if !self.settings.open_registration {
            return Err(DeskError::RegistrationClosed);
        }
        let now = self.now();
        {
            let mut recent = self
                .recent_registrations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            recent.retain(|at| *at > now - TimeDelta::hours(1));
            if recent.len() >= self.settings.registrations_per_hour as usize {
                let retry_at = recent.first().copied().unwrap_or(now) + TimeDelta::hours(1);
                return Err(DeskError::RegistrationRateLimited { retry_at });
            }
            recent.push(now);
        }
        match self.daemon.register_miner(&hotkey.to_string()).await {
            Ok(decision) => Ok(decision),
            Err(error) => {
                // A refused registration does not use up the hour's allowance.
                let mut recent = self
                    .recent_registrations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(position) = recent.iter().rposition(|at| *at == now) {
                    recent.remove(position);
                }
                Err(match error {
                    DaemonError::Registration(refused) => DeskError::Registration(refused),
                    other => DeskError::Daemon(other),
                })
            }
        }
    }
}
