//! Reading a TOML configuration file, the one way every sooth component
//! (sandbox, gateway, validator, scripted answers) does it.
//!
//! This crate owns reading and parsing only: the file is read whole, parsed
//! into the caller's type (which refuses unknown keys with
//! `#[serde(deny_unknown_fields)]`), and a failure names the file. Checking
//! the values belongs to each configuration's own type; this crate must not
//! know any of them.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     threads: u32,
//! }
//!
//! let settings: Settings = sooth_config::parse("threads = 4", "inline").expect("parses");
//! assert_eq!(settings.threads, 4);
//! let error = sooth_config::parse::<Settings>("thread = 4", "inline").err().expect("refused");
//! assert_eq!(error.to_string(), "cannot parse the configuration inline");
//! ```

use std::path::Path;

use serde::de::DeserializeOwned;

/// Why a configuration file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the configuration {origin}")]
    Read {
        /// The file.
        origin: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape: a syntax error, a missing
    /// key, a value of the wrong type, or a key the configuration does not
    /// have.
    #[error("cannot parse the configuration {origin}")]
    Parse {
        /// The file, or what the text came from.
        origin: String,
        /// What is wrong, with its line and column.
        source: toml::de::Error,
    },
}

/// Reads and parses the configuration in `path`.
///
/// # Errors
///
/// [`ConfigFileError::Read`] when the file cannot be read,
/// [`ConfigFileError::Parse`] when its text is not a configuration of type `T`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        origin: origin.clone(),
        source,
    })?;
    parse(&text, &origin)
}

/// Parses configuration `text`; `origin` names it in errors.
///
/// # Errors
///
/// [`ConfigFileError::Parse`] when the text is not a configuration of type `T`.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigFileError> {
    toml::from_str(text).map_err(|source| ConfigFileError::Parse {
        origin: origin.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::error::Error as _;

    use super::{ConfigFileError, parse, read};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[allow(dead_code)]
        threads: u32,
    }

    #[test]
    fn an_unknown_key_is_refused_by_name_in_the_cause() {
        let error = parse::<Settings>("threads = 1\nthreds = 2\n", "a.toml").unwrap_err();
        assert!(matches!(error, ConfigFileError::Parse { .. }));
        assert_eq!(error.to_string(), "cannot parse the configuration a.toml");
        let cause = error.source().unwrap().to_string();
        assert!(cause.contains("unknown field `threds`"), "{cause}");
        assert!(!cause.contains("a.toml"), "{cause}");
    }

    #[test]
    fn an_unreadable_file_names_the_file_and_not_the_cause_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let error = read::<Settings>(&path).unwrap_err();
        assert!(matches!(error, ConfigFileError::Read { .. }));
        let cause = error.source().unwrap().to_string();
        assert!(error.to_string().contains("missing.toml"));
        assert!(!error.to_string().contains(&cause));
    }
}
