//! Event files for `sooth agent test`: JSON Lines, one event a line, read with the validator's
//! own parser ([`sooth_validator::sources`]), so that an agent is tested on exactly the events a
//! validator would take from the same file.
//!
//! Two row shapes are accepted, told apart by the `question_date` field:
//!
//! - SPEC rows: `{id, kind?, title, description?, created_at, cutoff?, metadata?, outcome?,
//!   resolved_at?}`, instants as RFC 3339 text, a date or Unix seconds;
//! - ForecastBench rows (`../shared/data/forecastbench/questions.jsonl`): `question_date` is
//!   the creation instant, `market_prob`, `source`, `url` and the other descriptive fields go
//!   to the metadata, and the fields that could tell the future (`resolution_date`,
//!   `close_date`, `outcome`) are kept from the agent.
//!
//! Resolution rows (`{event_id, outcome, resolved_at}`) give the outcome of an event of the
//! same file.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use sooth_runner::AgentEvent;
use sooth_validator::sources::{Position, jsonl};

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
        .with_context(|| format!("cannot read events file {}", path.display()))?;
    Ok(parse(&text, &path.display().to_string())?)
}

/// Parse JSON Lines text; `origin` names it in errors. Blank lines are skipped; any malformed
/// line, a duplicate id, a resolution of an event not in the text or an empty file fails the
/// whole parse.
///
/// # Errors
///
/// [`EventsError`] listing the lines that are wrong.
pub fn parse(text: &str, origin: &str) -> Result<Vec<TestEvent>, EventsError> {
    let batch = jsonl::parse_str(text, origin);
    let mut errors: Vec<(usize, String)> = batch
        .rejected
        .iter()
        .map(|rejected| {
            let line = match rejected.position {
                Position::Line(line) => line,
                Position::Item { .. } | Position::Whole => 0,
            };
            (line, rejected.problem.to_string())
        })
        .collect();
    let ids: HashSet<&str> = batch.events.iter().map(|event| event.id.as_str()).collect();
    let mut outcomes = HashMap::new();
    for resolution in &batch.resolutions {
        if ids.contains(resolution.event_id.as_str()) {
            outcomes.insert(resolution.event_id.as_str(), resolution.outcome.as_u8());
        } else {
            errors.push((
                0,
                format!(
                    "a resolution names event {:?}, which is not in the file",
                    resolution.event_id
                ),
            ));
        }
    }
    if errors.is_empty() && batch.events.is_empty() {
        errors.push((0, "no events in the file".to_owned()));
    }
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(MAX_ERRORS);
        errors.truncate(MAX_ERRORS);
        return Err(EventsError {
            origin: origin.to_owned(),
            errors,
            more,
        });
    }
    Ok(batch
        .events
        .iter()
        .map(|event| TestEvent {
            outcome: outcomes.get(event.id.as_str()).copied(),
            event: event.to_agent_event(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn error(text: &str) -> String {
        parse(text, "t.jsonl").unwrap_err().to_string()
    }

    #[test]
    fn events_become_what_the_agent_sees_with_their_outcomes() {
        let text = concat!(
            r#"{"id": "e1", "title": "Rain?", "created_at": "2025-03-01T12:00:00+01:00", "cutoff": 1741000000, "metadata": {"market_prob": 0.4}, "outcome": 1}"#,
            "\n",
            r#"{"id": "e2", "title": "Snow?", "description": "D", "created_at": 1740000000}"#,
            "\n",
            r#"{"event_id": "e2", "outcome": 0, "resolved_at": "2025-03-10"}"#,
            "\n",
            r#"{"id": "e3", "title": "Hail?", "created_at": "2025-03-01"}"#,
        );
        let events = parse(text, "t.jsonl").unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.id, "e1");
        assert_eq!(events[0].event.kind, "binary");
        assert_eq!(events[0].event.created_at, 1_740_826_800);
        assert_eq!(events[0].event.cutoff, 1_741_000_000);
        assert_eq!(events[0].event.metadata["market_prob"], 0.4);
        assert_eq!(events[0].outcome, Some(1));
        assert_eq!(events[1].event.description, "D");
        assert_eq!(events[1].event.cutoff, 1_740_000_000 + 3 * 24 * 3600);
        assert_eq!(events[1].outcome, Some(0));
        assert_eq!(events[2].event.created_at, 1_740_787_200);
        assert_eq!(events[2].outcome, None);
    }

    #[test]
    fn names_the_malformed_lines_and_stray_resolutions() {
        let text = "{\"id\": \"a\", \"title\": \"T\", \"created_at\": 1}\n{\"id\": \"a\", \"title\": \"U\", \"created_at\": 2}\n{\"id\": \"b\", \"title\": \"T\", \"created_at\": \"soon\"}\n{\"event_id\": \"zz\", \"outcome\": 1, \"resolved_at\": 5}\n";
        let message = error(text);
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 3, "{message}");
        assert!(
            lines[0].starts_with("t.jsonl:2: duplicate event id \"a\""),
            "{message}"
        );
        assert!(lines[1].starts_with("t.jsonl:3: `created_at`"), "{message}");
        assert_eq!(
            lines[2],
            "t.jsonl: a resolution names event \"zz\", which is not in the file"
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
