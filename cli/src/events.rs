//! Event files for `sooth agent test`: JSON Lines, one event a line.
//!
//! Two row shapes are accepted, told apart by the `question_date` field:
//!
//! - SPEC rows: `{id, kind?, title, description?, created_at, cutoff?,
//!   metadata?, outcome?}`, instants as RFC 3339 text, a date or Unix seconds;
//! - ForecastBench rows (`../shared/data/forecastbench/questions.jsonl`):
//!   `question_date` is the creation instant, `market_prob`, `source`, `url`
//!   and the other descriptive fields go to the metadata, and the fields that
//!   could tell the future (`resolution_date`, `close_date`, `outcome`) are
//!   kept from the agent.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};
use sooth_runner::AgentEvent;

/// The synthetic events `sooth agent test` runs on when given no file.
pub const SAMPLE_EVENTS: &str = include_str!("../data/sample-events.jsonl");

/// Name under which [`SAMPLE_EVENTS`] appears in messages.
pub const SAMPLE_ORIGIN: &str = "<built-in sample events>";

/// One event to run, with its outcome when known.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvent {
    /// What the agent sees.
    pub event: AgentEvent,
    /// 0 or 1 when the event has resolved.
    pub outcome: Option<u8>,
}

/// Most line errors reported at once.
const MAX_ERRORS: usize = 10;

/// What is wrong with an event file: each problem with its line number.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsError {
    /// The file, as named in messages.
    pub origin: String,
    /// `(line, message)`; line 0 is about the whole file.
    pub errors: Vec<(usize, String)>,
    /// Further errors not listed.
    pub more: usize,
}

impl fmt::Display for EventsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (line, message)) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            if *line == 0 {
                write!(f, "{}: {message}", self.origin)?;
            } else {
                write!(f, "{}:{line}: {message}", self.origin)?;
            }
        }
        if self.more > 0 {
            write!(f, "\n{}: {} more errors", self.origin, self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for EventsError {}

/// Read and parse an event file.
///
/// # Errors
///
/// When the file cannot be read, or as [`parse`].
pub fn read_file(path: &Path) -> anyhow::Result<Vec<TestEvent>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read events file {}: {error}", path.display()))?;
    Ok(parse(&text, &path.display().to_string())?)
}

/// Parse JSON Lines text; `origin` names it in errors. Blank lines are
/// skipped; any malformed line, a duplicate id or an empty file fails the
/// whole parse.
///
/// # Errors
///
/// [`EventsError`] listing the lines that are wrong.
pub fn parse(text: &str, origin: &str) -> Result<Vec<TestEvent>, EventsError> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Err(message) => errors.push((number, message)),
            Ok(event) => match first_line.get(&event.event.id) {
                Some(first) => errors.push((
                    number,
                    format!(
                        "duplicate event id {:?} (first on line {first})",
                        event.event.id
                    ),
                )),
                None => {
                    first_line.insert(event.event.id.clone(), number);
                    events.push(event);
                }
            },
        }
    }
    if errors.is_empty() && events.is_empty() {
        errors.push((0, "no events in the file".to_owned()));
    }
    if errors.is_empty() {
        return Ok(events);
    }
    let more = errors.len().saturating_sub(MAX_ERRORS);
    errors.truncate(MAX_ERRORS);
    Err(EventsError {
        origin: origin.to_owned(),
        errors,
        more,
    })
}

fn parse_line(line: &str) -> Result<TestEvent, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|error| format!("invalid JSON: {error}"))?;
    let Value::Object(row) = value else {
        return Err("expected a JSON object".to_owned());
    };
    let event = if row.contains_key("question_date") {
        forecastbench_row(row)?
    } else {
        spec_row(row)?
    };
    event.event.validate().map_err(|error| error.to_string())?;
    Ok(event)
}

const SPEC_FIELDS: [&str; 8] = [
    "id",
    "kind",
    "title",
    "description",
    "created_at",
    "cutoff",
    "metadata",
    "outcome",
];

fn spec_row(row: Map<String, Value>) -> Result<TestEvent, String> {
    if let Some(unknown) = row.keys().find(|key| !SPEC_FIELDS.contains(&key.as_str())) {
        return Err(format!(
            "unknown field `{unknown}` (expected {})",
            SPEC_FIELDS.join(", ")
        ));
    }
    let id = required_string(&row, "id")?;
    let title = required_string(&row, "title")?;
    let created_at = match row.get("created_at") {
        None | Some(Value::Null) => return Err("missing field `created_at`".to_owned()),
        Some(value) => instant(value).map_err(|error| format!("`created_at`: {error}"))?,
    };
    let mut event = AgentEvent::new(id, title, created_at);
    if let Some(kind) = optional_string(&row, "kind")? {
        event.kind = kind;
    }
    event.description = optional_string(&row, "description")?.unwrap_or_default();
    if let Some(value) = row.get("cutoff").filter(|value| !value.is_null()) {
        event.cutoff = instant(value).map_err(|error| format!("`cutoff`: {error}"))?;
    }
    match row.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) => event.metadata = metadata.clone(),
        Some(other) => {
            return Err(format!(
                "`metadata` must be a JSON object, got {}",
                kind_of(other)
            ));
        }
    }
    let outcome = outcome(&row)?;
    Ok(TestEvent { event, outcome })
}

/// ForecastBench fields an agent must not see: they tell when or how the
/// question resolved (a platform's close date moves when a market resolves
/// early).
const HIDDEN_FORECASTBENCH_FIELDS: [&str; 3] = ["resolution_date", "close_date", "outcome"];

fn forecastbench_row(mut row: Map<String, Value>) -> Result<TestEvent, String> {
    let id = required_string(&row, "id")?;
    let title = required_string(&row, "title")?;
    let created_at = row
        .get("question_date")
        .map_or_else(|| Err("missing field `question_date`".to_owned()), instant)
        .map_err(|error| format!("`question_date`: {error}"))?;
    if let Some(value) = row.get("resolution_date").filter(|value| !value.is_null()) {
        instant(value).map_err(|error| format!("`resolution_date`: {error}"))?;
    }
    if let Some(value) = row.get("market_prob").filter(|value| !value.is_null()) {
        match value.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => {}
            _ => {
                return Err(format!(
                    "`market_prob` must be a number in [0, 1], got {value}"
                ));
            }
        }
    }
    let mut event = AgentEvent::new(id, title, created_at);
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
    let outcome = outcome(&row)?;
    for key in [
        "id",
        "title",
        "description",
        "resolution_criteria",
        "question_date",
    ]
    .iter()
    .chain(HIDDEN_FORECASTBENCH_FIELDS.iter())
    {
        row.remove(*key);
    }
    row.retain(|_, value| !value.is_null());
    event.metadata = row;
    Ok(TestEvent { event, outcome })
}

fn required_string(row: &Map<String, Value>, key: &str) -> Result<String, String> {
    optional_string(row, key)?.ok_or_else(|| format!("missing field `{key}`"))
}

fn optional_string(row: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("`{key}` must be a string, got {}", kind_of(other))),
    }
}

fn outcome(row: &Map<String, Value>) -> Result<Option<u8>, String> {
    match row.get("outcome") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(0.0) => Ok(Some(0)),
            Some(1.0) => Ok(Some(1)),
            _ => Err(format!("`outcome` must be 0 or 1, got {value}")),
        },
    }
}

/// Seconds since the Unix epoch from Unix seconds, RFC 3339 text or a date
/// (midnight UTC).
fn instant(value: &Value) -> Result<i64, String> {
    const EXPECTED: &str = "expected an RFC 3339 date-time (2025-03-01T12:00:00Z), a date (2025-03-01) or Unix seconds";
    match value {
        Value::Number(number) => number.as_i64().ok_or_else(|| {
            format!("{EXPECTED}, got {number} (Unix seconds must be a whole number)")
        }),
        Value::String(text) => {
            if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
                return Ok(instant.timestamp());
            }
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
                .map(|midnight| midnight.and_utc().timestamp())
                .ok_or_else(|| format!("{EXPECTED}, got {text:?}"))
        }
        other => Err(format!("{EXPECTED}, got {}", kind_of(other))),
    }
}

fn kind_of(value: &Value) -> &'static str {
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
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn one(line: &str) -> TestEvent {
        let mut events = parse(line, "t.jsonl").unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn error(text: &str) -> String {
        parse(text, "t.jsonl").unwrap_err().to_string()
    }

    #[test]
    fn parses_spec_rows_with_every_time_form() {
        let event = one(
            r#"{"id": "e1", "title": "Rain?", "created_at": "2025-03-01T12:00:00+01:00", "cutoff": 1741000000, "metadata": {"market_prob": 0.4}, "outcome": 1}"#,
        );
        assert_eq!(event.event.id, "e1");
        assert_eq!(event.event.kind, "binary");
        assert_eq!(event.event.created_at, 1_740_826_800);
        assert_eq!(event.event.cutoff, 1_741_000_000);
        assert_eq!(event.event.metadata["market_prob"], 0.4);
        assert_eq!(event.outcome, Some(1));

        let event = one(
            r#"{"id": "e2", "kind": "binary", "title": "T", "description": "D", "created_at": 1740000000}"#,
        );
        assert_eq!(event.event.created_at, 1_740_000_000);
        assert_eq!(event.event.cutoff, 1_740_000_000 + 3 * 24 * 3600);
        assert_eq!(event.event.description, "D");
        assert!(event.event.metadata.is_empty());
        assert_eq!(event.outcome, None);

        let event =
            one(r#"{"id": "e3", "title": "T", "created_at": "2025-03-01", "outcome": null}"#);
        assert_eq!(event.event.created_at, 1_740_787_200);
        assert_eq!(event.outcome, None);
    }

    #[test]
    fn parses_forecastbench_rows_and_hides_the_future() {
        let event = one(
            r#"{"id": "infer:1", "source": "infer", "title": "Q?", "description": "Bg", "resolution_criteria": "Crit", "url": "https://example.org/1", "created_date": "2023-07-27T19:00:00+00:00", "close_date": "2025-01-01T05:00:00+00:00", "question_date": "2024-07-12T00:00:00+00:00", "resolution_date": "2025-01-01", "market_prob": 0.0186, "market_prob_kind": "The crowd forecast.", "outcome": 0}"#,
        );
        assert_eq!(event.event.created_at, 1_720_742_400);
        assert_eq!(event.event.cutoff, 1_720_742_400 + 3 * 24 * 3600);
        assert_eq!(event.event.description, "Bg\n\nResolution criteria: Crit");
        assert_eq!(event.outcome, Some(0));
        let metadata = &event.event.metadata;
        assert_eq!(metadata["market_prob"], 0.0186);
        assert_eq!(metadata["source"], "infer");
        assert_eq!(metadata["url"], "https://example.org/1");
        for hidden in [
            "resolution_date",
            "close_date",
            "outcome",
            "question_date",
            "title",
        ] {
            assert!(
                !metadata.contains_key(hidden),
                "{hidden} leaked into the metadata"
            );
        }
        // A bare date is accepted as the question date too.
        assert_eq!(
            one(r#"{"id": "m:2", "title": "Q", "question_date": "2024-07-12"}"#)
                .event
                .created_at,
            1_720_742_400
        );
    }

    #[test]
    fn names_the_malformed_line() {
        let text = "{\"id\": \"a\", \"title\": \"T\", \"created_at\": 1}\n\n{\"id\": \"b\", \"title\": \"T\"\n";
        assert_eq!(
            error(text)
                .lines()
                .next()
                .unwrap()
                .split(": ")
                .next()
                .unwrap(),
            "t.jsonl:3"
        );
        assert!(error(text).contains("invalid JSON"));
    }

    #[test]
    fn refuses_bad_fields() {
        let cases = [
            (r#"{"id": "a", "title": "T"}"#, "missing field `created_at`"),
            (r#"{"title": "T", "created_at": 1}"#, "missing field `id`"),
            (
                r#"{"id": "a", "title": "T", "created_at": "yesterday"}"#,
                "`created_at`: expected an RFC 3339",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1.5}"#,
                "whole number",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "outcome": 2}"#,
                "`outcome` must be 0 or 1",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "metadata": [1]}"#,
                "`metadata` must be a JSON object",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 1, "outcom": 1}"#,
                "unknown field `outcom`",
            ),
            (
                r#"{"id": "a", "title": 3, "created_at": 1}"#,
                "`title` must be a string",
            ),
            (
                r#"{"id": "a", "title": "T", "created_at": 100, "cutoff": 50}"#,
                "cutoff 50 is before creation 100",
            ),
            (
                r#"{"id": "", "title": "T", "created_at": 1}"#,
                "event id must be 1 to 256 bytes",
            ),
            (
                r#"{"id": "f:1", "title": "T", "question_date": "2024-07-12", "market_prob": 1.5}"#,
                "`market_prob` must be a number in [0, 1]",
            ),
            ("[1, 2]", "expected a JSON object"),
        ];
        for (line, expected) in cases {
            let message = error(line);
            assert!(message.starts_with("t.jsonl:1: "), "{message}");
            assert!(message.contains(expected), "{line}: {message}");
        }
    }

    #[test]
    fn refuses_duplicates_and_empty_files() {
        let text = "{\"id\": \"a\", \"title\": \"T\", \"created_at\": 1}\n{\"id\": \"a\", \"title\": \"U\", \"created_at\": 2}\n";
        assert_eq!(
            error(text),
            "t.jsonl:2: duplicate event id \"a\" (first on line 1)"
        );
        assert_eq!(error("\n  \n"), "t.jsonl: no events in the file");
    }

    #[test]
    fn lists_at_most_ten_errors() {
        let text = "x\n".repeat(12);
        let message = error(&text);
        assert_eq!(message.lines().count(), 11);
        assert!(message.ends_with("t.jsonl: 2 more errors"));
    }

    #[test]
    fn the_sample_events_parse() {
        let events = parse(SAMPLE_EVENTS, SAMPLE_ORIGIN).unwrap();
        assert_eq!(events.len(), 20);
        assert!(
            events
                .iter()
                .all(|e| e.outcome.is_some() && e.event.metadata.contains_key("market_prob"))
        );
        assert!(
            events
                .iter()
                .all(|e| e.event.title.starts_with("[synthetic]"))
        );
    }

    #[test]
    fn parses_the_shared_forecastbench_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/forecastbench/questions.jsonl");
        if !path.exists() {
            println!("skipped: {} is absent", path.display());
            return;
        }
        let events = read_file(&path).unwrap();
        assert_eq!(events.len(), 560);
        assert!(events.iter().all(|e| e.outcome.is_some()));
        assert!(
            events
                .iter()
                .all(|e| e.event.metadata.contains_key("market_prob"))
        );
    }
}
