//! Key files: a signing key kept as its 32-byte seed in hex, one line, made
//! on first use with owner-only permissions. The validator keeps its
//! run-token key this way, the gateway its outbound signing key; a secret
//! key of 32 random bytes (the validator's key for miners' linked service
//! keys) is kept in the same form.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::token::{TokenError, encode_signing_key_hex, generate_key, parse_signing_key_hex};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists but cannot be read.
    #[error("cannot read the key file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("the key file {path} holds no key")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text (never the text itself).
        source: TokenError,
    },
    /// The file did not exist and cannot be created.
    #[error("cannot create the key file {path}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The signing key in `path`, or a new one written there (mode 0600, never
/// over an existing file) when there is none.
///
/// # Errors
///
/// [`KeyFileError`] when the file cannot be read, holds no key, or cannot be
/// created.
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    load_or_create(path, "signing key")
}

/// The 32-byte secret key in `path` (an encryption key, say), or 32 new
/// random bytes written there (mode 0600, never over an existing file) when
/// there is none. The file's form is a signing key file's: 64 hex digits on
/// one line.
///
/// # Errors
///
/// [`KeyFileError`] when the file cannot be read, holds no key, or cannot be
/// created.
pub fn load_or_create_secret_key(path: &Path) -> Result<[u8; 32], KeyFileError> {
    // A signing key's seed is 32 bytes from the operating system's random source.
    Ok(load_or_create(path, "secret key")?.to_bytes())
}

fn load_or_create(path: &Path, what: &str) -> Result<SigningKey, KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_signing_key_hex(&text).map_err(|source| KeyFileError::Parse {
            path: path.to_owned(),
            source,
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_key();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(path)
                .and_then(|mut file| {
                    file.write_all(format!("{}\n", encode_signing_key_hex(&key)).as_bytes())
                })
                .map_err(|source| KeyFileError::Create {
                    path: path.to_owned(),
                    source,
                })?;
            tracing::info!(path = %path.display(), "created a new {what}");
            Ok(key)
        }
        Err(source) => Err(KeyFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyFileError, load_or_create_secret_key, load_or_create_signing_key};

    #[test]
    fn a_key_is_created_once_then_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("key");
        let created = load_or_create_signing_key(&path).expect("created");
        let read = load_or_create_signing_key(&path).expect("read");
        assert_eq!(created.to_bytes(), read.to_bytes());
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

    #[test]
    fn a_file_without_a_key_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("key");
        std::fs::write(&path, "not a key\n").expect("written");
        let error = load_or_create_signing_key(&path).expect_err("refused");
        assert!(matches!(error, KeyFileError::Parse { .. }), "{error:?}");
        assert!(error.to_string().contains("holds no key"));
        assert!(!error.to_string().contains("not a key"));
    }

    #[test]
    fn a_secret_key_is_created_once_then_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("secret.key");
        let created = load_or_create_secret_key(&path).expect("created");
        assert_eq!(load_or_create_secret_key(&path).expect("read"), created);
        assert_ne!(created, [0_u8; 32]);
        let other = load_or_create_secret_key(&dir.path().join("other.key")).expect("created");
        assert_ne!(other, created, "each file has a key of its own");
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
