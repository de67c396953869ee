//! The validator's event model: an [`Event`] as it is created, and its [`Resolution`].
//!
//! This module owns what an event and a resolution are and when they are well formed, with
//! errors that name the field at fault ([`EventError`]). It does not read any input format;
//! that is [`crate::sources`]. SPEC, "events": each event "lasts 3 days to its cutoff" (the
//! default [`DEFAULT_LIFETIME`]) and is "resolved to 0 or 1 after the cutoff" ([`Outcome`]).
//!
//! Unlike the runner's `AgentEvent` (what an agent sees), an event here keeps instants as
//! `DateTime<Utc>` like the rest of the crate, and its outcome travels separately as a
//! [`Resolution`] so that nothing that tells the future sits beside what agents are shown.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sooth_protocol::AgentEvent;

/// SPEC, "events": an event lasts three days to its cutoff unless its source says otherwise.
pub const DEFAULT_LIFETIME: TimeDelta = TimeDelta::days(3);

/// Longest event id, in bytes (the runner refuses longer ones, so refuse them on the way in).
pub const MAX_ID_BYTES: usize = 256;

/// The kind given to an event whose source names none: a yes/no question.
pub const BINARY: &str = "binary";

/// A question put to every active agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unique identifier, 1 to [`MAX_ID_BYTES`] bytes; an agent's forecast must echo it.
    pub id: String,
    /// The kind of question; [`BINARY`] for yes/no questions.
    pub kind: String,
    /// The question.
    pub title: String,
    /// Background and resolution criteria; may be empty.
    pub description: String,
    /// Further fields for agents (a market price, a source, a URL), a JSON object.
    pub metadata: Map<String, Value>,
    /// When the event was created: what an agent's clock reads, and which agent versions run it.
    pub created_at: DateTime<Utc>,
    /// When forecasting on the event ends; after `created_at`.
    pub cutoff: DateTime<Utc>,
}

impl Event {
    /// A binary event with empty description and metadata, cut off [`DEFAULT_LIFETIME`] after
    /// creation (or at the end of chrono's calendar, if that comes first).
    #[must_use]
    pub fn new(id: impl Into<String>, title: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        Self {
            id: id.into(),
            kind: BINARY.to_owned(),
            title: title.into(),
            description: String::new(),
            metadata: Map::new(),
            created_at,
            cutoff: created_at
                .checked_add_signed(DEFAULT_LIFETIME)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Check the event before it is stored or run: the one rule of what a well-formed event
    /// is, for every source and the store alike.
    ///
    /// The cutoff must come after the creation, at the millisecond precision instants are
    /// kept at: runs are owed from the creation until before the cutoff, so an event cut off
    /// at its creation would never be run and every miner would be imputed 0.5 on it.
    ///
    /// # Errors
    ///
    /// [`EventError::BadId`] for an empty or too long id, [`EventError::Empty`] for an empty
    /// `kind` or `title`, [`EventError::CutoffNotAfterCreation`] when `cutoff` is not after
    /// `created_at`.
    pub fn validate(&self) -> Result<(), EventError> {
        check_id("id", &self.id)?;
        if self.kind.trim().is_empty() {
            return Err(EventError::Empty { field: "kind" });
        }
        if self.title.trim().is_empty() {
            return Err(EventError::Empty { field: "title" });
        }
        if self.cutoff.timestamp_millis() <= self.created_at.timestamp_millis() {
            return Err(EventError::CutoffNotAfterCreation {
                created_at: self.created_at,
                cutoff: self.cutoff,
            });
        }
        Ok(())
    }

    /// The event as an agent sees it: instants as Unix seconds, nothing that tells the future.
    #[must_use]
    pub fn to_agent_event(&self) -> AgentEvent {
        AgentEvent {
            id: self.id.clone(),
            kind: self.kind.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            created_at: self.created_at.timestamp(),
            cutoff: self.cutoff.timestamp(),
            metadata: self.metadata.clone(),
        }
    }
}

/// How a binary event resolved. Serialized as the SPEC's number, 0 or 1, not the variant's
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Outcome {
    /// Resolved no: outcome 0.
    No,
    /// Resolved yes: outcome 1.
    Yes,
}

impl Outcome {
    /// The outcome as the SPEC's number, 0 or 1.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::No => 0,
            Self::Yes => 1,
        }
    }

    /// The outcome as a float, for Brier scores.
    #[must_use]
    pub fn as_f64(self) -> f64 {
        f64::from(self.as_u8())
    }

    /// Read an outcome from JSON: the numbers 0 or 1 (`1.0` too, since some exporters write
    /// floats), nothing else; in particular not `true`/`false` or `"1"`, which would hide a
    /// confused source.
    ///
    /// # Errors
    ///
    /// [`EventError::BadOutcome`] with the value found.
    pub fn from_json(value: &Value) -> Result<Self, EventError> {
        match value.as_f64() {
            Some(0.0) => Ok(Self::No),
            Some(1.0) => Ok(Self::Yes),
            _ => Err(EventError::BadOutcome(value.to_string())),
        }
    }
}

impl TryFrom<u8> for Outcome {
    type Error = EventError;

    /// # Errors
    ///
    /// [`EventError::BadOutcome`] for anything but 0 or 1.
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::No),
            1 => Ok(Self::Yes),
            other => Err(EventError::BadOutcome(other.to_string())),
        }
    }
}

impl From<Outcome> for u8 {
    fn from(outcome: Outcome) -> Self {
        outcome.as_u8()
    }
}

/// How and when an event resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The event resolved.
    pub event_id: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// When the outcome became known: orders resolved events in the 101-event window.
    pub resolved_at: DateTime<Utc>,
}

impl Resolution {
    /// Check the resolution on its own: its event id must be one an event could have.
    ///
    /// # Errors
    ///
    /// [`EventError::BadId`] naming `event_id`.
    pub fn validate(&self) -> Result<(), EventError> {
        check_id("event_id", &self.event_id)
    }

    /// Check the resolution against its event: same id, and not resolved before the event
    /// existed (such a row is a mistake in the source, and would let a backtest resolve an
    /// event before agents ran on it).
    ///
    /// # Errors
    ///
    /// [`EventError::WrongEvent`] or [`EventError::ResolvedBeforeCreation`].
    pub fn validate_for(&self, event: &Event) -> Result<(), EventError> {
        self.validate()?;
        if self.event_id != event.id {
            return Err(EventError::WrongEvent {
                expected: event.id.clone(),
                found: self.event_id.clone(),
            });
        }
        self.check_after(event.created_at)
    }

    /// Check that the resolution does not come before its event's creation at `created_at`.
    ///
    /// # Errors
    ///
    /// [`EventError::ResolvedBeforeCreation`].
    pub fn check_after(&self, created_at: DateTime<Utc>) -> Result<(), EventError> {
        if self.resolved_at < created_at {
            return Err(EventError::ResolvedBeforeCreation {
                created_at,
                resolved_at: self.resolved_at,
            });
        }
        Ok(())
    }
}

fn check_id(field: &'static str, id: &str) -> Result<(), EventError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(EventError::BadId {
            field,
            len: id.len(),
        });
    }
    Ok(())
}

/// What is wrong with an event, a resolution or one of their fields; every variant names the
/// field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// A required field is absent or null.
    #[error("missing field `{field}`")]
    Missing {
        /// The field.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("`{field}` must be {expected}, got {found}")]
    WrongType {
        /// The field.
        field: String,
        /// What it must be, e.g. "a string".
        expected: &'static str,
        /// What it was, e.g. "a number".
        found: &'static str,
    },
    /// A field that is not part of the row's shape (most often a misspelling).
    #[error("unknown field `{field}` (expected {expected})")]
    UnknownField {
        /// The field.
        field: String,
        /// The fields the row may have.
        expected: String,
    },
    /// A field that must not be empty is.
    #[error("`{field}` must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// An id is empty or longer than [`MAX_ID_BYTES`].
    #[error("`{field}` must be 1 to {MAX_ID_BYTES} bytes long, got {len} bytes")]
    BadId {
        /// The field (`id` or `event_id`).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// An instant that cannot be read.
    #[error(
        "`{field}`: expected an RFC 3339 date-time (2025-03-01T12:00:00Z), a date (2025-03-01) or Unix seconds, got {found}"
    )]
    BadInstant {
        /// The field.
        field: String,
        /// The value found, as JSON.
        found: String,
    },
    /// A field's value is out of its range.
    #[error("`{field}`: {reason}, got {found}")]
    OutOfRange {
        /// The field.
        field: String,
        /// What it must be.
        reason: &'static str,
        /// The value found, as JSON.
        found: String,
    },
    /// An outcome other than 0 or 1.
    #[error("`outcome` must be 0 or 1, got {0}")]
    BadOutcome(String),
    /// `outcome` and `resolved_at` must come together.
    #[error("`{present}` needs `{missing}`: a resolution has both or neither")]
    HalfResolution {
        /// The field given.
        present: &'static str,
        /// The field missing.
        missing: &'static str,
    },
    /// The cutoff is not after the creation.
    #[error("`cutoff` {cutoff} is not after the creation at {created_at}")]
    CutoffNotAfterCreation {
        /// Creation instant.
        created_at: DateTime<Utc>,
        /// Cutoff instant.
        cutoff: DateTime<Utc>,
    },
    /// The resolution is before the event's creation.
    #[error("`resolved_at` {resolved_at} is before the event's `created_at` {created_at}")]
    ResolvedBeforeCreation {
        /// The event's creation instant.
        created_at: DateTime<Utc>,
        /// The resolution instant.
        resolved_at: DateTime<Utc>,
    },
    /// A resolution checked against another event.
    #[error("`event_id` {found:?} does not match the event {expected:?}")]
    WrongEvent {
        /// The event's id.
        expected: String,
        /// The resolution's `event_id`.
        found: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at_unix as at;

    #[test]
    fn a_new_event_lasts_three_days() {
        let event = Event::new("e1", "Rain?", at(1_000));
        assert_eq!(event.kind, BINARY);
        assert_eq!(event.cutoff, at(1_000 + 3 * 24 * 3600));
        assert_eq!(event.validate(), Ok(()));
        // Near the end of the calendar the cutoff saturates instead of panicking.
        let late = Event::new("e2", "T", DateTime::<Utc>::MAX_UTC);
        assert_eq!(late.cutoff, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn validation_names_the_field() {
        let mut event = Event::new("", "T", at(10));
        assert_eq!(
            event.validate().unwrap_err().to_string(),
            "`id` must be 1 to 256 bytes long, got 0 bytes"
        );
        event.id = "x".repeat(257);
        assert!(matches!(
            event.validate(),
            Err(EventError::BadId { len: 257, .. })
        ));
        event.id = "e".into();
        event.title = "  ".into();
        assert_eq!(event.validate(), Err(EventError::Empty { field: "title" }));
        event.title = "T".into();
        event.kind = String::new();
        assert_eq!(event.validate(), Err(EventError::Empty { field: "kind" }));
        event.kind = BINARY.into();
        event.cutoff = at(5);
        let message = event.validate().unwrap_err().to_string();
        assert!(message.starts_with("`cutoff` "), "{message}");
    }

    #[test]
    fn outcomes_are_zero_or_one() {
        assert_eq!(Outcome::try_from(0), Ok(Outcome::No));
        assert_eq!(Outcome::try_from(1), Ok(Outcome::Yes));
        assert_eq!(
            Outcome::try_from(2).unwrap_err().to_string(),
            "`outcome` must be 0 or 1, got 2"
        );
        assert_eq!(Outcome::from_json(&Value::from(1.0)), Ok(Outcome::Yes));
        assert_eq!(Outcome::from_json(&Value::from(0)), Ok(Outcome::No));
        for bad in [
            Value::from(0.5),
            Value::from(-1),
            Value::from(true),
            Value::from("1"),
        ] {
            assert!(Outcome::from_json(&bad).is_err(), "{bad}");
        }
        assert_eq!(Outcome::Yes.as_f64(), 1.0);
        assert_eq!(u8::from(Outcome::No), 0);
        assert_eq!(serde_json::to_string(&Outcome::Yes).unwrap(), "1");
    }

    #[test]
    fn a_resolution_is_checked_against_its_event() {
        let event = Event::new("e1", "T", at(100));
        let mut resolution = Resolution {
            event_id: "e1".into(),
            outcome: Outcome::Yes,
            resolved_at: at(100),
        };
        assert_eq!(resolution.validate_for(&event), Ok(()));
        resolution.resolved_at = at(99);
        assert!(matches!(
            resolution.validate_for(&event),
            Err(EventError::ResolvedBeforeCreation { .. })
        ));
        resolution.event_id = "e2".into();
        assert!(matches!(
            resolution.validate_for(&event),
            Err(EventError::WrongEvent { .. })
        ));
        resolution.event_id = String::new();
        assert!(matches!(
            resolution.validate(),
            Err(EventError::BadId {
                field: "event_id",
                ..
            })
        ));
    }
}
