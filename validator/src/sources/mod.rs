//! Event sources: where events and resolutions come from.
//!
//! This module owns what every source hands the daemon, a [`Batch`] of well-formed events and
//! resolutions plus the rows it had to reject ([`RowError`], each with file and line or list
//! and index), the errors that stop a whole read ([`SourceError`]), the [`Source`] trait and
//! the polling loop [`poll_every`]. A malformed row never stops a read: it is reported and
//! skipped, and everything else is returned (issue 4, "event sources").
//!
//! - [`row`]: the JSON row shapes (SPEC events, resolutions, ForecastBench questions);
//! - [`jsonl`]: JSON Lines files, directories of them, and a directory watcher;
//! - [`http_feed`]: an HTTP JSON feed read with a cursor;
//! - [`gamma`]: prediction-market listings in the shape of Polymarket's Gamma API.
//!
//! Sources do not know what the daemon already stored: they drop what they have themselves
//! delivered, but after a restart the store must treat an event it already holds, delivered
//! again unchanged, as nothing new.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::event::{Event, Resolution};

pub mod gamma;
mod http;
pub mod http_feed;
pub mod jsonl;
pub mod row;

pub use http::REQUEST_TIMEOUT;
use row::Row;
pub use row::RowProblem;

/// What one read of a source produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Well-formed new events, in source order.
    pub events: Vec<Event>,
    /// Well-formed resolutions, in source order.
    pub resolutions: Vec<Resolution>,
    /// Rows that were malformed and skipped, each with where it was.
    pub rejected: Vec<RowError>,
    /// Rows read fine but deliberately not used: a market outside the price band, a closed
    /// market without a decided outcome, a listing already delivered.
    pub ignored: usize,
}

impl Batch {
    /// Whether the read produced nothing at all, not even a rejected row.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.resolutions.is_empty()
            && self.rejected.is_empty()
            && self.ignored == 0
    }

    /// Append another batch's contents, keeping the order.
    pub fn append(&mut self, mut other: Batch) {
        self.events.append(&mut other.events);
        self.resolutions.append(&mut other.resolutions);
        self.rejected.append(&mut other.rejected);
        self.ignored += other.ignored;
    }
}

/// Where in a source a row was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A line of a file, from 1.
    Line(usize),
    /// An item of a JSON list in a response, from 0.
    Item {
        /// The list's name, e.g. `events`.
        list: &'static str,
        /// The item's index.
        index: usize,
    },
    /// The whole file or response.
    Whole,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, ":{line}"),
            Self::Item { list, index } => write!(f, " {list}[{index}]"),
            Self::Whole => Ok(()),
        }
    }
}

/// A row that was rejected, with where it was: displays as `file:line: problem`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}{position}: {problem}")]
pub struct RowError {
    /// The file or URL.
    pub origin: String,
    /// Where in it.
    pub position: Position,
    /// What is wrong.
    pub problem: RowProblem,
}

/// A read that failed as a whole: nothing was taken from the source, and the source's position
/// (file offsets, cursor) did not move, so the next poll tries again.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A URL that cannot be used.
    #[error("bad URL {url:?}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        #[source]
        problem: UrlProblem,
    },
    /// The request failed before a response (connection, timeout), or the HTTP client could
    /// not be built.
    #[error("{url}: request failed")]
    Request {
        /// The URL requested.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP status {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The response is not the expected JSON.
    #[error("{url}: bad response")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What is wrong.
        #[source]
        problem: ResponseProblem,
    },
}

/// Why a source's URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlProblem {
    /// It is not a URL.
    #[error(transparent)]
    Parse(<reqwest::Url as std::str::FromStr>::Err),
    /// It is a URL of another scheme.
    #[error("the scheme must be http or https")]
    NotHttp,
}

/// What is wrong with a whole response of an HTTP source (a row in it is a [`RowProblem`]).
#[derive(Debug, thiserror::Error)]
pub enum ResponseProblem {
    /// The body is not JSON.
    #[error("invalid JSON: {excerpt}")]
    Json {
        /// The start of the body.
        excerpt: String,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// The body is JSON of another shape.
    #[error("expected {expected}, got {found}")]
    Shape {
        /// What it must be, e.g. "a JSON object".
        expected: &'static str,
        /// What it was, e.g. "an array".
        found: &'static str,
    },
    /// A field of the body has the wrong type.
    #[error("`{field}` must be {expected}, got {found}")]
    Field {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        found: &'static str,
    },
}

impl ResponseProblem {
    /// How much of a body that is not JSON the problem quotes.
    const EXCERPT_CHARS: usize = 80;

    /// `body` parsed as JSON.
    pub(crate) fn parse_json(body: &str) -> Result<serde_json::Value, Self> {
        serde_json::from_str(body).map_err(|source| Self::Json {
            excerpt: excerpt(body, Self::EXCERPT_CHARS),
            source,
        })
    }
}

/// Something that can be read again and again for what is new.
pub trait Source {
    /// Read what arrived since the last successful poll.
    ///
    /// # Errors
    ///
    /// [`SourceError`] when the read failed as a whole; the source's position is unchanged.
    fn poll(&mut self) -> impl Future<Output = Result<Batch, SourceError>> + Send;
}

/// Poll `source` every `every` (the first poll at once) and send each non-empty batch, or the
/// error of a failed poll, to `sink`; returns when the receiver is dropped.
///
/// A slow poll delays the next tick instead of bursting to catch up: polls that pile up would
/// only read the same source again.
pub async fn poll_every<S: Source>(
    mut source: S,
    every: Duration,
    sink: mpsc::Sender<Result<Batch, SourceError>>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = sink.closed() => return,
            _ = ticks.tick() => {}
        }
        let result = source.poll().await;
        if matches!(&result, Ok(batch) if batch.is_empty()) {
            continue;
        }
        if sink.send(result).await.is_err() {
            return;
        }
    }
}

/// What has been delivered, to refuse a second event with the same id or a second resolution
/// of the same event: ids to where they were first seen.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    events: HashMap<String, String>,
    resolutions: HashMap<String, String>,
}

impl Seen {
    /// Add a parsed row found at `position` of `origin` to the batch, or report it: a row
    /// that failed to parse, or one that repeats an id. A row with a duplicate event is refused
    /// whole, its resolution too, since which of the two events it resolves is unclear.
    pub(crate) fn take(
        &mut self,
        batch: &mut Batch,
        origin: &str,
        position: Position,
        parsed: Result<Row, RowProblem>,
    ) {
        let here = format!("{origin}{position}");
        if let Err(problem) = parsed.and_then(|row| self.take_row(batch, row, &here)) {
            batch.rejected.push(RowError {
                origin: origin.to_owned(),
                position,
                problem,
            });
        }
    }

    fn take_row(&mut self, batch: &mut Batch, row: Row, here: &str) -> Result<(), RowProblem> {
        let (event, resolution) = match row {
            Row::Event(event, resolution) => (Some(event), resolution),
            Row::Resolution(resolution) => (None, Some(resolution)),
        };
        if let Some(event) = &event
            && let Some(first) = self.events.get(&event.id)
        {
            return Err(RowProblem::DuplicateId {
                id: event.id.clone(),
                first: first.clone(),
            });
        }
        if let Some(resolution) = &resolution
            && let Some(first) = self.resolutions.get(&resolution.event_id)
        {
            return Err(RowProblem::DuplicateResolution {
                id: resolution.event_id.clone(),
                first: first.clone(),
            });
        }
        if let Some(event) = event {
            self.events.insert(event.id.clone(), here.to_owned());
            batch.events.push(event);
        }
        if let Some(resolution) = resolution {
            self.resolutions
                .insert(resolution.event_id.clone(), here.to_owned());
            batch.resolutions.push(resolution);
        }
        Ok(())
    }
}

/// The first `limit` characters of a response body, for error messages.
pub(crate) fn excerpt(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}
