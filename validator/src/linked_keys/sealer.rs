//! [`KeySealer`]: miners' keys sealed at rest with XChaCha20-Poly1305 under a key kept apart
//! from the database.
//!
//! Each key is sealed with a random 24-byte nonce of its own; the miner's hotkey and the
//! service are the seal's associated data, so sealed bytes copied to another miner's or
//! another service's row do not open. The sealing key is 32 random bytes in a key file
//! (`sooth_protocol::load_or_create_secret_key`: 64 hex digits, mode 0600, made on first use).
//! Losing the file loses every sealed key (miners link again); a copy of the database without
//! it holds no key.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sooth_protocol::{KeyFileError, load_or_create_secret_key};
use thiserror::Error;

use super::ServiceKey;

/// The length of a seal's nonce, in bytes.
pub const NONCE_LEN: usize = 24;

/// What the associated data starts with: sealed bytes of another purpose never open here.
const DOMAIN: &[u8] = b"sooth linked service key v1";

/// Why a key could not be sealed or opened. No variant carries a key.
#[derive(Debug, Error)]
pub enum SealError {
    /// The operating system gave no random bytes for a nonce.
    #[error("no random bytes for a seal's nonce")]
    Random(#[source] getrandom::Error),
    /// The cipher refused to seal (a key far over any size allowed).
    #[error("the key could not be sealed")]
    Seal,
    /// The sealed bytes do not open under this key file for this miner and service (another
    /// key file, or the row was altered or moved), or what they hold is not a key.
    #[error("a sealed key does not open with this key file")]
    Open,
}

/// A key as sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The nonce, [`NONCE_LEN`] bytes.
    pub nonce: [u8; NONCE_LEN],
    /// The sealed key with its tag.
    pub ciphertext: Vec<u8>,
}

/// Seals and opens miners' keys. Its `Debug` output shows nothing of the key.
pub struct KeySealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for KeySealer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("KeySealer(<key>)")
    }
}

impl KeySealer {
    /// A sealer with the key in the key file at `path`, made there (mode 0600) if there is
    /// none.
    ///
    /// # Errors
    ///
    /// [`KeyFileError`] when the file cannot be read, holds no key, or cannot be created.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        Ok(Self::from_key(load_or_create_secret_key(path)?))
    }

    /// A sealer with the 32-byte `key`.
    #[must_use]
    pub fn from_key(key: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Seals `hotkey`'s `key` for `service` under a new random nonce.
    ///
    /// # Errors
    ///
    /// [`SealError::Random`] without random bytes, [`SealError::Seal`] if the cipher refuses.
    pub fn seal(&self, hotkey: &str, service: &str, key: &ServiceKey) -> Result<Sealed, SealError> {
        let mut nonce = [0_u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Random)?;
        let aad = associated_data(hotkey, service);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Opens what [`seal`](Self::seal) made for `hotkey` and `service`.
    ///
    /// # Errors
    ///
    /// [`SealError::Open`] when the bytes do not open for this miner and service under this
    /// key, or do not hold a key.
    pub fn open(
        &self,
        hotkey: &str,
        service: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<ServiceKey, SealError> {
        if nonce.len() != NONCE_LEN {
            return Err(SealError::Open);
        }
        let aad = associated_data(hotkey, service);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open)?;
        let text = std::str::from_utf8(&plain).map_err(|_| SealError::Open)?;
        ServiceKey::parse(text).map_err(|_| SealError::Open)
    }
}

/// The domain, the hotkey and the service, each closed by a NUL (neither holds one).
fn associated_data(hotkey: &str, service: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + hotkey.len() + service.len() + 3);
    for part in [DOMAIN, hotkey.as_bytes(), service.as_bytes()] {
        aad.extend_from_slice(part);
        aad.push(0);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::{KeySealer, NONCE_LEN, SealError};
    use crate::linked_keys::ServiceKey;

    fn key(text: &str) -> ServiceKey {
        ServiceKey::parse(text).expect("a key")
    }

    #[test]
    fn a_key_opens_for_its_miner_and_service_only() {
        let sealer = KeySealer::from_key([7; 32]);
        let sealed = sealer
            .seal("5Miner", "chat", &key("sk-secret-1"))
            .expect("sealed");
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert!(
            !sealed
                .ciphertext
                .windows(6)
                .any(|window| window == b"secret"),
            "the key is not in the sealed bytes"
        );
        let opened = sealer
            .open("5Miner", "chat", &sealed.nonce, &sealed.ciphertext)
            .expect("opens");
        assert_eq!(opened, key("sk-secret-1"));
        for (hotkey, service) in [("5Other", "chat"), ("5Miner", "search")] {
            assert!(matches!(
                sealer.open(hotkey, service, &sealed.nonce, &sealed.ciphertext),
                Err(SealError::Open)
            ));
        }
        let other = KeySealer::from_key([8; 32]);
        assert!(matches!(
            other.open("5Miner", "chat", &sealed.nonce, &sealed.ciphertext),
            Err(SealError::Open)
        ));
        let mut altered = sealed.ciphertext.clone();
        altered[0] ^= 1;
        assert!(
            sealer
                .open("5Miner", "chat", &sealed.nonce, &altered)
                .is_err()
        );
        assert!(
            sealer
                .open("5Miner", "chat", &sealed.nonce[..12], &sealed.ciphertext)
                .is_err()
        );
    }

    #[test]
    fn every_seal_has_a_nonce_of_its_own() {
        let sealer = KeySealer::from_key([1; 32]);
        let one = sealer.seal("m", "chat", &key("k")).expect("sealed");
        let two = sealer.seal("m", "chat", &key("k")).expect("sealed");
        assert_ne!(one.nonce, two.nonce);
        assert_ne!(one.ciphertext, two.ciphertext);
        assert_eq!(format!("{sealer:?}"), "KeySealer(<key>)");
    }

    #[test]
    fn the_key_file_is_made_once_for_the_owner_only() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("linked-keys.key");
        let sealed = KeySealer::load_or_create(&path)
            .expect("created")
            .seal("m", "chat", &key("k"))
            .expect("sealed");
        let again = KeySealer::load_or_create(&path).expect("read back");
        assert_eq!(
            again
                .open("m", "chat", &sealed.nonce, &sealed.ciphertext)
                .expect("opens"),
            key("k")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
