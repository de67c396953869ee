//! Helpers shared by the validator's integration tests.

use chrono::{DateTime, Utc};

/// The instant an RFC 3339 text names.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .with_timezone(&Utc)
}

#[allow(dead_code)]
pub mod desk;

#[allow(dead_code, unused_imports, unused_macros)]
pub mod engines;

#[allow(dead_code)]
pub mod scripted;

pub mod ensemble_reference;
