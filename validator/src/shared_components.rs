//! Components shared through the store: what a runner worker fetches by content hash, for
//! its runs and for the versions it verifies.
//!
//! This module owns the check that the store's bytes are the ones their hash names: a worker
//! never runs bytes that do not hash to the name it was handed. It must not write the store
//! (the scheduler keeps components there) nor compile (the sandbox does).

use sooth_runner::content_hash;
use thiserror::Error;

use crate::components::{ComponentFileError, Components};
use crate::store::{Store, StoreError};

/// Why a component cannot be had from the store.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// The store holds no component of that hash.
    #[error("the store does not hold component {0}")]
    Missing(String),
    /// The store's bytes hash to something else.
    #[error("the store's bytes for component {0} do not hash to its name")]
    WrongHash(String),
    /// The component cannot be kept in this host's directory.
    #[error("the component cannot be kept on this host")]
    Keep(#[from] ComponentFileError),
}

/// The bytes of component `hash`, read from the store and checked against their hash.
///
/// # Errors
///
/// [`FetchError`] when the store fails, lacks the component or holds other bytes.
pub async fn fetch(store: &Store, hash: &str) -> Result<Vec<u8>, FetchError> {
    let bytes = store
        .component(hash)
        .await?
        .ok_or_else(|| FetchError::Missing(hash.to_owned()))?;
    if content_hash(&bytes) != hash {
        return Err(FetchError::WrongHash(hash.to_owned()));
    }
    Ok(bytes)
}

/// Makes sure component `hash` is in `components`, fetched from the store if it is not.
///
/// # Errors
///
/// As [`fetch`], and [`FetchError::Keep`] when the file cannot be written.
pub async fn keep_locally(
    store: &Store,
    components: &Components,
    hash: &str,
) -> Result<(), FetchError> {
    if components.path(hash)?.exists() {
        return Ok(());
    }
    let bytes = fetch(store, hash).await?;
    components.save(&bytes)?;
    Ok(())
}
