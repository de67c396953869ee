//! What can go wrong when the integrity checks are called with inconsistent input.

use thiserror::Error;

/// Input that the integrity checks cannot work with: a caller's bug, never a verdict on an
/// agent.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum IntegrityError {
    /// A vector is not aligned with the events it should describe.
    #[error("{what} has {actual} entries but there are {expected} events")]
    LengthMismatch {
        /// Which vector (for the message).
        what: String,
        /// How many events there are.
        expected: usize,
        /// How many entries the vector has.
        actual: usize,
    },
    /// A configuration value is out of its range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// There is nothing to compare (for example no probe or no live event).
    #[error("nothing to compare: {0}")]
    Empty(String),
}
