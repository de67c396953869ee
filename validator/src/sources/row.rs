//! One JSON row to an event, a resolution or both.
//!
//! This module owns the row shapes that every line-oriented source shares (JSON Lines files
//! and the HTTP feed), told apart by their fields:
//!
//! - a ForecastBench row (it has `question_date`): `title`, `description` and
//!   `resolution_criteria` make the question, `question_date` is the creation instant, the
//!   descriptive fields (`market_prob`, `source`, `url`, ...) go to the metadata, and
//!   `resolution_date` with `outcome` make its resolution. Fields that could tell the future
//!   (`resolution_date`, `close_date`, `outcome`) never reach the metadata;
//! - a resolution row (it has `event_id`): `{event_id, outcome, resolved_at}`;
//! - otherwise an event row, the SPEC's shape: `{id, kind?, title, description?, created_at,
//!   cutoff?, metadata?}`, optionally with `outcome`, which makes a resolution too: at
//!   `resolved_at` when given, else at the event's cutoff (the moment the question closes).
//!
//! Instants are RFC 3339 text, a date (midnight UTC) or whole Unix seconds. `sooth agent test`
//! reads its event files with this module too.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use crate::event::{Event, EventError, Outcome, Resolution};

/// What one row holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// An event, with its resolution when the row carries one.
    Event(Event, Option<Resolution>),
    /// A resolution of an event given elsewhere.
    Resolution(Resolution),
}

/// Parse one row of JSON text.
///
/// # Errors
///
/// [`RowProblem`]: invalid JSON, not an object, or an [`EventError`] naming the field.
pub fn parse_text(text: &str) -> Result<Row, RowProblem> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| RowProblem::Json(error.to_string()))?;
    parse_value(value)
}

/// Parse one row already read as JSON.
///
/// # Errors
///
/// [`RowProblem::NotAnObject`], or [`RowProblem::Field`] naming the field at fault.
pub fn parse_value(value: Value) -> Result<Row, RowProblem> {
    let Value::Object(row) = value else {
        return Err(RowProblem::NotAnObject(kind_of(&value)));
    };
    let parsed = if row.contains_key("question_date") {
        forecastbench_row(row)?
    } else if row.contains_key("event_id") {
        Row::Resolution(resolution_row(&row)?)
    } else {
        event_row(row)?
    };
    Ok(parsed)
}

/// What is wrong with one row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowProblem {
    /// The text is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A whole file or response cannot be read, or changed in a way that cannot be followed.
    #[error("{0}")]
    Unreadable(String),
    /// The text is not valid UTF-8.
    #[error("invalid UTF-8")]
    Utf8,
    /// The JSON is not an object.
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A field is missing or wrong.
    #[error(transparent)]
    Field(#[from] EventError),
    /// An event id seen before in the same source.
    #[error("duplicate event id {id:?} (first at {first})")]
    DuplicateId {
        /// The id.
        id: String,
        /// Where it was first seen, e.g. `line 3`.
        first: String,
    },
    /// A second resolution of the same event in the same source.
    #[error("duplicate resolution of event {id:?} (first at {first})")]
    DuplicateResolution {
        /// The event id.
        id: String,
        /// Where the first resolution was seen.
        first: String,
    },
}

const EVENT_FIELDS: [&str; 9] = [
    "id",
    "kind",
    "title",
    "description",
    "created_at",
    "cutoff",
    "metadata",
    "outcome",
    "resolved_at",
];

const RESOLUTION_FIELDS: [&str; 3] = ["event_id", "outcome", "resolved_at"];

fn event_row(row: Map<String, Value>) -> Result<Row, EventError> {
    refuse_unknown(&row, &EVENT_FIELDS)?;
    let id = required_string(&row, "id")?;
    let title = required_string(&row, "title")?;
    let created_at = required_instant(&row, "created_at")?;
    let mut event = Event::new(id, title, created_at);
    if let Some(kind) = optional_string(&row, "kind")? {
        event.kind = kind;
    }
    event.description = optional_string(&row, "description")?.unwrap_or_default();
    if let Some(cutoff) = optional_instant(&row, "cutoff")? {
        event.cutoff = cutoff;
    }
    match row.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) => event.metadata.clone_from(metadata),
        Some(other) => return Err(wrong_type("metadata", "a JSON object", other)),
    }
    event.validate()?;
    let resolution = match (present(&row, "outcome"), present(&row, "resolved_at")) {
        (None, None) => None,
        (Some(outcome), None) => {
            // Known outcome, unknown instant: the question resolves when it closes.
            Some(Resolution {
                event_id: event.id.clone(),
                outcome: Outcome::from_json(outcome)?,
                resolved_at: event.cutoff,
            })
        }
        (None, Some(_)) => {
            return Err(EventError::HalfResolution {
                present: "resolved_at",
                missing: "outcome",
            });
        }
        (Some(outcome), Some(_)) => {
            let resolution = Resolution {
                event_id: event.id.clone(),
                outcome: Outcome::from_json(outcome)?,
                resolved_at: required_instant(&row, "resolved_at")?,
            };
            resolution.validate_for(&event)?;
            Some(resolution)
        }
    };
    Ok(Row::Event(event, resolution))
}

fn resolution_row(row: &Map<String, Value>) -> Result<Resolution, EventError> {
    refuse_unknown(row, &RESOLUTION_FIELDS)?;
    let outcome = present(row, "outcome").ok_or_else(|| missing("outcome"))?;
    let resolution = Resolution {
        event_id: required_string(row, "event_id")?,
        outcome: Outcome::from_json(outcome)?,
        resolved_at: required_instant(row, "resolved_at")?,
    };
    resolution.validate()?;
    Ok(resolution)
}

/// ForecastBench fields an agent must not see: they tell when or how the question resolved (a
/// platform's close date moves when a market resolves early).
const HIDDEN_FORECASTBENCH_FIELDS: [&str; 3] = ["resolution_date", "close_date", "outcome"];

/// ForecastBench fields used for the event itself rather than copied to the metadata.
const USED_FORECASTBENCH_FIELDS: [&str; 5] = [
    "id",
    "title",
    "description",
    "resolution_criteria",
    "question_date",
];

fn forecastbench_row(mut row: Map<String, Value>) -> Result<Row, EventError> {
    let id = required_string(&row, "id")?;
    let title = required_string(&row, "title")?;
    let created_at = required_instant(&row, "question_date")?;
    if let Some(value) = present(&row, "market_prob") {
        match value.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => {}
            _ => {
                return Err(EventError::OutOfRange {
                    field: "market_prob".into(),
                    reason: "must be a number in [0, 1]",
                    found: value.to_string(),
                });
            }
        }
    }
    let mut event = Event::new(id, title, created_at);
    let mut description = optional_string(&row, "description")?.unwrap_or_default();
    if let Some(criteria) =
        optional_string(&row, "resolution_criteria")?.filter(|c| !c.trim().is_empty())
    {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str("Resolution criteria: ");
        description.push_str(&criteria);
    }
    event.description = description;
    event.validate()?;
    // A ForecastBench row resolves when it has both fields; one without the other is a
    // broken row, not an open question.
    let resolution = match (
        present(&row, "outcome"),
        optional_instant(&row, "resolution_date")?,
    ) {
        (None, None) => None,
        (Some(_), None) => return Err(missing("resolution_date")),
        (None, Some(_)) => return Err(missing("outcome")),
        (Some(outcome), Some(resolved_at)) => {
            let resolution = Resolution {
                event_id: event.id.clone(),
                outcome: Outcome::from_json(outcome)?,
                resolved_at,
            };
            resolution.validate_for(&event)?;
            Some(resolution)
        }
    };
    for key in USED_FORECASTBENCH_FIELDS
        .iter()
        .chain(HIDDEN_FORECASTBENCH_FIELDS.iter())
    {
        row.remove(*key);
    }
    row.retain(|_, value| !value.is_null());
    event.metadata = row;
    Ok(Row::Event(event, resolution))
}

/// Read an instant: RFC 3339 text, a date (midnight UTC) or whole Unix seconds.
///
/// # Errors
///
/// [`EventError::BadInstant`] naming `field`.
pub fn parse_instant(field: &str, value: &Value) -> Result<DateTime<Utc>, EventError> {
    let bad = || EventError::BadInstant {
        field: field.to_owned(),
        found: value.to_string(),
    };
    match value {
        Value::Number(number) => number
            .as_i64()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or_else(bad),
        Value::String(text) => {
            if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
                return Ok(instant.with_timezone(&Utc));
            }
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
                .map(|midnight| midnight.and_utc())
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

fn refuse_unknown(row: &Map<String, Value>, fields: &[&str]) -> Result<(), EventError> {
    match row.keys().find(|key| !fields.contains(&key.as_str())) {
        Some(unknown) => Err(EventError::UnknownField {
            field: unknown.clone(),
            expected: fields.join(", "),
        }),
        None => Ok(()),
    }
}

/// The field's value unless it is absent or null (null means absent in every row shape).
fn present<'a>(row: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    row.get(key).filter(|value| !value.is_null())
}

/// A required field is absent or null.
pub(super) fn missing(field: &str) -> EventError {
    EventError::Missing {
        field: field.to_owned(),
    }
}

/// A field holds the wrong kind of JSON value.
pub(super) fn wrong_type(field: &str, expected: &'static str, found: &Value) -> EventError {
    EventError::WrongType {
        field: field.to_owned(),
        expected,
        found: kind_of(found),
    }
}

fn required_string(row: &Map<String, Value>, key: &str) -> Result<String, EventError> {
    optional_string(row, key)?.ok_or_else(|| missing(key))
}

fn optional_string(row: &Map<String, Value>, key: &str) -> Result<Option<String>, EventError> {
    match present(row, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn required_instant(row: &Map<String, Value>, key: &str) -> Result<DateTime<Utc>, EventError> {
    optional_instant(row, key)?.ok_or_else(|| missing(key))
}

fn optional_instant(
    row: &Map<String, Value>,
    key: &str,
) -> Result<Option<DateTime<Utc>>, EventError> {
    present(row, key)
        .map(|value| parse_instant(key, value))
        .transpose()
}

/// The JSON type of a value, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at_unix as at;

    fn error(text: &str) -> String {
        parse_text(text).unwrap_err().to_string()
    }

    #[test]
    fn event_rows_with_every_time_form() {
        let Row::Event(event, resolution) = parse_text(
            r#"{"id": "e1", "title": "Rain?", "created_at": "2025-03-01T12:00:00+01:00", "cutoff": 1741000000, "metadata": {"market_prob": 0.4}, "outcome": 1, "resolved_at": "2025-03-05"}"#,
        )
        .unwrap() else {
            panic!("not an event")
        };
        assert_eq!(event.created_at, at(1_740_826_800));
        assert_eq!(event.cutoff, at(1_741_000_000));
        assert_eq!(event.metadata["market_prob"], 0.4);
        let resolution = resolution.unwrap();
        assert_eq!(resolution.outcome, Outcome::Yes);
        assert_eq!(resolution.resolved_at, at(1_741_132_800));
        assert_eq!(resolution.event_id, "e1");

        let Row::Event(event, None) = parse_text(
            r#"{"id": "e2", "kind": "binary", "title": "T", "description": "D", "created_at": 1740000000, "outcome": null}"#,
        )
        .unwrap() else {
            panic!("expected an open event")
        };
        assert_eq!(event.cutoff, at(1_740_000_000 + 3 * 24 * 3600));
        assert_eq!(event.description, "D");
    }

    #[test]
    fn an_outcome_without_an_instant_resolves_at_the_cutoff() {
        let Row::Event(event, Some(resolution)) = parse_text(
            r#"{"id": "e3", "title": "T", "created_at": 1740000000, "cutoff": 1740500000, "outcome": 1}"#,
        )
        .unwrap() else {
            panic!("expected a resolved event")
        };
        assert_eq!(resolution.resolved_at, event.cutoff);
        assert_eq!(resolution.resolved_at, at(1_740_500_000));
        assert_eq!(resolution.outcome, Outcome::Yes);
    }

    #[test]
    fn resolution_rows() {
        assert_eq!(
            parse_text(r#"{"event_id": "e1", "outcome": 0, "resolved_at": 5}"#).unwrap(),
            Row::Resolution(Resolution {
                event_id: "e1".into(),
                outcome: Outcome::No,
                resolved_at: at(5)
            })
        );
    }

    #[test]
    fn forecastbench_rows_hide_the_future() {
        let Row::Event(event, Some(resolution)) = parse_text(
            r#"{"id": "infer:1", "source": "infer", "title": "Q?", "description": "Bg", "resolution_criteria": "Crit", "url": "https://example.org/1", "created_date": "2023-07-27T19:00:00+00:00", "close_date": "2025-01-01T05:00:00+00:00", "question_date": "2024-07-12T00:00:00+00:00", "resolution_date": "2025-01-01", "market_prob": 0.0186, "market_prob_kind": "The crowd forecast.", "outcome": 0}"#,
        )
        .unwrap() else {
            panic!("expected a resolved event")
        };
        assert_eq!(event.created_at, at(1_720_742_400));
        assert_eq!(event.cutoff, at(1_720_742_400 + 3 * 24 * 3600));
        assert_eq!(event.description, "Bg\n\nResolution criteria: Crit");
        assert_eq!(event.metadata["market_prob"], 0.0186);
        assert_eq!(event.metadata["source"], "infer");
        for hidden in [
            "resolution_date",
            "close_date",
            "outcome",
            "question_date",
            "title",
        ] {
            assert!(!event.metadata.contains_key(hidden), "{hidden} leaked");
        }
        assert_eq!(resolution.outcome, Outcome::No);
        assert_eq!(resolution.resolved_at, at(1_735_689_600));
    }

    #[test]
    fn bad_rows_name_the_field() {
        let cases = [
            (r#"{"id": "a", "title": "T"}"#, "missing field `created_at`"),
            (r#"{"title": "T", "created_at": 1}"#, "missing field `id`"),
            (
                r#"{"id": "a", "title": "T", "created_at": "yesterday"}"#,
                "`created_at`: expected an RFC 3339",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1.5}"#,
                "`created_at`: expected",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "cutoff": "2025-13-01"}"#,
                "`cutoff`: expected",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "outcome": 2, "resolved_at": 5}"#,
                "`outcome` must be 0 or 1, got 2",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "resolved_at": 5}"#,
                "`resolved_at` needs `outcome`",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 10, "outcome": 1, "resolved_at": 5}"#,
                "`resolved_at`",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "metadata": [1]}"#,
                "`metadata` must be a JSON object, got an array",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "outcom": 1}"#,
                "unknown field `outcom`",
            ),
            (
                r#"{"id": "a", "title": 3, "created_at": 1}"#,
                "`title` must be a string, got a number",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 100, "cutoff": 50}"#,
                "`cutoff`",
            ),
            (
                r#"{"id": "", "title": "T", "created_at": 1}"#,
                "`id` must be",
            ),
            (
                r#"{"event_id": "a", "outcome": 0.5, "resolved_at": 1}"#,
                "`outcome` must be 0 or 1",
            ),
            (
                r#"{"event_id": "a", "resolved_at": 1}"#,
                "missing field `outcome`",
            ),
            (
                r#"{"event_id": "a", "outcome": 1}"#,
                "missing field `resolved_at`",
            ),
            (
                r#"{"id": "f:1", "title": "T", "question_date": "2024-07-12", "market_prob": 1.5}"#,
                "`market_prob`: must be a number in [0, 1]",
            ),
            (
                r#"{"id": "f:1", "title": "T", "question_date": "2024-07-12", "outcome": 1}"#,
                "missing field `resolution_date`",
            ),
            (
                r#"{"id": "f:1", "title": "T", "question_date": "2024-07-12", "resolution_date": "2024-07-13", "outcome": 3}"#,
                "`outcome` must be 0 or 1",
            ),
            (
                r#"{"id": "f:1", "question_date": "2024-07-12"}"#,
                "missing field `title`",
            ),
            ("[1, 2]", "expected a JSON object, got an array"),
            ("{\"id\": ", "invalid JSON"),
        ];
        for (line, expected) in cases {
            let message = error(line);
            assert!(message.contains(expected), "{line}: {message}");
        }
    }
}
