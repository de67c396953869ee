//! Agents' components on disk: content-addressed files in one directory, written once.
//!
//! This module owns the directory's layout (`<sha256 hex>.wasm`) and how a file gets there
//! (through a temporary file in the same directory, so a file is absent or complete). It must
//! not compile or judge components: the sandbox loads them, the verification queue checks them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sooth_runner::content_hash;
use thiserror::Error;

/// Why a component could not be kept or read.
#[derive(Debug, Error)]
pub enum ComponentFileError {
    /// The hash is not lower-case hex, so it names no file of ours.
    #[error("{0:?} is not a component hash")]
    NotAHash(String),
    /// The file could not be written.
    #[error("cannot save the component to {}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("cannot read the component {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds other bytes than its name says (edited or damaged on disk).
    #[error("the component {} does not hash to its name", path.display())]
    WrongHash {
        /// The file.
        path: PathBuf,
    },
}

/// The directory of components. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Components {
    dir: PathBuf,
}

impl Components {
    /// Components in `dir`, created if missing.
    ///
    /// # Errors
    ///
    /// An I/O error if the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The file of `hash`.
    ///
    /// # Errors
    ///
    /// [`ComponentFileError::NotAHash`] for anything but 64 lower-case hex digits.
    pub fn path(&self, hash: &str) -> Result<PathBuf, ComponentFileError> {
        let is_hash = hash.len() == 64
            && hash
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !is_hash {
            return Err(ComponentFileError::NotAHash(hash.to_owned()));
        }
        Ok(self.dir.join(format!("{hash}.wasm")))
    }

    /// Keeps `bytes` under their hash (once: bytes already kept are not written again) and
    /// returns the hash.
    ///
    /// # Errors
    ///
    /// [`ComponentFileError::Save`].
    pub fn save(&self, bytes: &[u8]) -> Result<String, ComponentFileError> {
        let hash = content_hash(bytes);
        let path = self.path(&hash)?;
        if !path.exists() {
            write_atomically(&path, bytes).map_err(|source| ComponentFileError::Save {
                path: path.clone(),
                source,
            })?;
        }
        Ok(hash)
    }

    /// The bytes of `hash`, checked against it.
    ///
    /// # Errors
    ///
    /// [`ComponentFileError::NotAHash`], [`ComponentFileError::Read`] (missing file...),
    /// [`ComponentFileError::WrongHash`].
    pub async fn read(&self, hash: &str) -> Result<Vec<u8>, ComponentFileError> {
        let path = self.path(hash)?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|source| ComponentFileError::Read {
                path: path.clone(),
                source,
            })?;
        if content_hash(&bytes) != hash {
            return Err(ComponentFileError::WrongHash { path });
        }
        Ok(bytes)
    }

    /// Removes the file of `hash` if it is there (an upload that was not recorded).
    pub fn remove(&self, hash: &str) {
        if let Ok(path) = self.path(hash) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so that the file
/// is either absent or complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(directory)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}
