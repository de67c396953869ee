//! The miner's side of a sooth validator's signed API.
//!
//! This crate owns what a miner's tooling says to a validator over HTTP and reads back: the
//! validator's identity (its hotkey, which requests are signed for, and its upload rules),
//! registration, uploads of agent components and their versions' status, and the miner's own
//! service keys linked for the validator's gateway, every request but the identity signed
//! with the miner's hotkey under Epistula v2 at the moment it is sent. Its rooms: the client
//! ([`MinerClient`]), the answers as the miner reads them ([`Identity`], [`Registered`],
//! [`UploadAccepted`], [`AgentVersion`], [`Verdict`], [`KeyLinked`]) and the errors
//! ([`ClientError`], a refusal keeping the validator's code and message). Hotkeys, key files,
//! the signature and the rules of service names and API keys are `sooth-protocol`'s. It must
//! not run or load agents, read key files, or hold any of the validator's rules beyond what
//! the validator's identity says: the validator decides, the client reports.
//!
//! ```no_run
//! use sooth_miner_client::MinerClient;
//! use sooth_protocol::{HotkeyScheme, SecretHotkey};
//!
//! # async fn upload() -> Result<(), sooth_miner_client::ClientError> {
//! let client = MinerClient::new(
//!     "http://127.0.0.1:8710",
//!     SecretHotkey::generate(HotkeyScheme::Ed25519),
//! )?;
//! client.register().await?;
//! let accepted = client.upload(std::fs::read("agent.wasm").unwrap_or_default()).await?;
//! let version = client.version(accepted.version).await?;
//! println!("version {}: {}", version.version, version.status);
//! # Ok(())
//! # }
//! ```

mod answer;
mod client;
mod error;
mod views;

pub use answer::MAX_ANSWER_BYTES;
pub use client::{CONNECT_TIMEOUT, MinerClient, REQUEST_TIMEOUT, UPLOAD_TIMEOUT};
pub use error::ClientError;
pub use views::{AgentVersion, Identity, KeyLinked, Registered, UploadAccepted, Verdict};
