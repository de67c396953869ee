//! Hotkey files: a miner's secret hotkey on disk.
//!
//! # Format
//!
//! Two lines of UTF-8 text, each ending in a line feed:
//!
//! ```text
//! sooth-hotkey sr25519
//! 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
//! ```
//!
//! The first line names the scheme (`ed25519` or `sr25519`); the second is
//! the key's 32-byte seed in hex (see [`SecretHotkey::from_seed`]): the
//! Ed25519 secret key, or the sr25519 mini secret key that substrate
//! expands with `ExpansionMode::Ed25519` (the `secretSeed` of a substrate
//! or bittensor key). Reading accepts either case of hex, `\r\n` line ends
//! and a missing final line feed, and refuses anything after the secret
//! line but blank lines.
//!
//! A file is written once, with mode 0600 on unix, and never over an
//! existing file. Errors name the file and never include its text.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::hotkey::{HotkeyScheme, SecretHotkey};

/// The first word of a hotkey file.
pub const HOTKEY_FILE_MAGIC: &str = "sooth-hotkey";

/// Why a hotkey file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HotkeyFileError {
    /// The file cannot be read.
    #[error("cannot read the hotkey file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's text is not a hotkey file.
    #[error("the hotkey file {path} is not in the hotkey file format: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text (never the text itself).
        problem: &'static str,
    },
    /// A file already exists where a new key was to be written.
    #[error("the hotkey file {path} already exists (a hotkey file is never overwritten)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be created or written.
    #[error("cannot write the hotkey file {path}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Generates a secret hotkey of `scheme` and writes it to a new file at
/// `path` (mode 0600 on unix), returning it.
///
/// # Errors
///
/// [`HotkeyFileError::Exists`] if there is a file at `path` already;
/// [`HotkeyFileError::Create`] if the file cannot be created or written.
///
/// # Panics
///
/// If the operating system cannot provide random bytes for the key.
pub fn write_new_hotkey_file(
    path: &Path,
    scheme: HotkeyScheme,
) -> Result<SecretHotkey, HotkeyFileError> {
    let secret = SecretHotkey::generate(scheme);
    write_hotkey_file(path, &secret)?;
    Ok(secret)
}

/// Writes `secret` to a new file at `path` (mode 0600 on unix), for a key
/// made elsewhere (say from a substrate seed with
/// [`SecretHotkey::from_seed`]).
///
/// # Errors
///
/// [`HotkeyFileError::Exists`] if there is a file at `path` already;
/// [`HotkeyFileError::Create`] if the file cannot be created or written (a
/// file left half-written is removed).
pub fn write_hotkey_file(path: &Path, secret: &SecretHotkey) -> Result<(), HotkeyFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            HotkeyFileError::Exists {
                path: path.to_owned(),
            }
        } else {
            HotkeyFileError::Create {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let text = format!(
        "{HOTKEY_FILE_MAGIC} {}\n{}\n",
        secret.scheme(),
        hex::encode(secret.seed())
    );
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        // The file is ours (create_new) and holds no usable key.
        let _ = std::fs::remove_file(path);
        return Err(HotkeyFileError::Create {
            path: path.to_owned(),
            source,
        });
    }
    tracing::info!(path = %path.display(), hotkey = %secret.public(), "wrote a hotkey file");
    Ok(())
}

/// Reads the secret hotkey in the file at `path`.
///
/// A file that others than its owner can read (mode bits 077 on unix) is
/// read all the same, with a warning logged.
///
/// # Errors
///
/// [`HotkeyFileError::Read`] if the file cannot be read;
/// [`HotkeyFileError::Format`] if its text is not a hotkey file.
pub fn read_hotkey_file(path: &Path) -> Result<SecretHotkey, HotkeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| HotkeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the hotkey file can be read by others than its owner; chmod 600 it"
            );
        }
    }
    parse_hotkey_file(&text).map_err(|problem| HotkeyFileError::Format {
        path: path.to_owned(),
        problem,
    })
}

fn parse_hotkey_file(text: &str) -> Result<SecretHotkey, &'static str> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("the file is empty")?;
    let scheme = first
        .strip_prefix(HOTKEY_FILE_MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or("the first line is not `sooth-hotkey ed25519` or `sooth-hotkey sr25519`")?;
    let scheme = match scheme.trim_end() {
        "ed25519" => HotkeyScheme::Ed25519,
        "sr25519" => HotkeyScheme::Sr25519,
        _ => return Err("the first line names an unknown scheme (expected ed25519 or sr25519)"),
    };
    let secret_line = lines
        .next()
        .ok_or("there is no second line with the secret seed")?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(secret_line.trim(), &mut seed)
        .map_err(|_| "the second line is not 64 hex characters (a 32-byte secret seed)")?;
    if lines.any(|line| !line.trim().is_empty()) {
        return Err("there is text after the secret line");
    }
    Ok(SecretHotkey::from_seed(scheme, &seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    #[test]
    fn a_new_file_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for scheme in [HotkeyScheme::Ed25519, HotkeyScheme::Sr25519] {
            let path = dir.path().join(format!("{scheme}.hotkey"));
            let written = write_new_hotkey_file(&path, scheme).expect("written");
            let read = read_hotkey_file(&path).expect("read");
            assert_eq!(read.public(), written.public());
            assert_eq!(read.public().scheme(), scheme);
            let text = std::fs::read_to_string(&path).expect("text");
            assert_eq!(
                text,
                format!("sooth-hotkey {scheme}\n{}\n", hex::encode(written.seed()))
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
            let error = write_new_hotkey_file(&path, scheme).expect_err("not overwritten");
            assert!(matches!(error, HotkeyFileError::Exists { .. }), "{error:?}");
            assert!(error.to_string().contains("already exists"));
            assert_eq!(
                read_hotkey_file(&path).expect("read").public(),
                written.public()
            );
        }
    }

    #[test]
    fn a_substrate_seed_reads_as_its_substrate_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("hotkey");
        std::fs::write(&path, format!("sooth-hotkey sr25519\r\n{SECRET_HEX}")).expect("written");
        let secret = read_hotkey_file(&path).expect("read");
        assert_eq!(
            hex::encode(secret.public().public_bytes()),
            "44a996beb1eef7bdcab976ab6d2ca26104834164ecf28fb375600576fcc6eb0f"
        );
    }

    #[test]
    fn malformed_files_are_refused_naming_the_file_not_the_secret() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("hotkey");
        let upper = SECRET_HEX.to_uppercase();
        let cases = [
            String::new(),
            SECRET_HEX.to_owned(),
            format!("sooth-hotkey\n{SECRET_HEX}\n"),
            format!("sooth-hotkey ecdsa\n{SECRET_HEX}\n"),
            format!("sooth-hotkey {SECRET_HEX}\n"),
            "sooth-hotkey ed25519\n".to_owned(),
            format!("sooth-hotkey ed25519\n{}\n", &SECRET_HEX[..62]),
            format!("sooth-hotkey ed25519\n{SECRET_HEX}00\n"),
            format!("sooth-hotkey ed25519\n{SECRET_HEX}\n{SECRET_HEX}\n"),
        ];
        for text in cases {
            std::fs::write(&path, &text).expect("written");
            let error = read_hotkey_file(&path).expect_err("refused");
            assert!(
                matches!(error, HotkeyFileError::Format { .. }),
                "{text:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(!message.contains(&SECRET_HEX[..16]), "{message}");
            assert!(!message.contains(&upper[..16]), "{message}");
        }
        // Upper-case hex and blank trailing lines are fine.
        std::fs::write(&path, format!("sooth-hotkey ed25519\n{upper}\n\n")).expect("written");
        assert!(read_hotkey_file(&path).is_ok());
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let error = read_hotkey_file(&dir.path().join("absent")).expect_err("refused");
        assert!(matches!(error, HotkeyFileError::Read { .. }), "{error:?}");
    }
}
