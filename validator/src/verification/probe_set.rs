//! The probe set: public past events with outcomes that every new version runs on before it
//! can activate.

use std::path::Path;

use crate::event::Outcome;
use crate::sources::{SourceError, jsonl};
use crate::store::{EventRecord, EventStatus};

/// The probe events, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeSet {
    events: Vec<EventRecord>,
}

/// Why a probe file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeSetError {
    /// The file cannot be read.
    #[error("cannot read the probe set")]
    Read(#[from] SourceError),
    /// A row of the file is malformed.
    #[error("the probe set {path} has a malformed row: {row}")]
    Malformed {
        /// The file.
        path: String,
        /// The first bad row, with where it is.
        row: String,
    },
    /// The file has no event with an outcome.
    #[error("the probe set {path} holds no event with an outcome")]
    Empty {
        /// The file.
        path: String,
    },
}

impl ProbeSet {
    /// The first `limit` events with outcomes of the JSON Lines file at `path` (the validator's
    /// event rows; rows without an outcome are skipped, a malformed row refuses the file).
    ///
    /// # Errors
    ///
    /// [`ProbeSetError`] naming the file.
    pub fn load(path: &Path, limit: usize) -> Result<Self, ProbeSetError> {
        let batch = jsonl::read_path(path)?;
        if let Some(row) = batch.rejected.first() {
            return Err(ProbeSetError::Malformed {
                path: path.display().to_string(),
                row: row.to_string(),
            });
        }
        let probe = Self::from_batch(&batch, limit);
        if probe.is_empty() {
            return Err(ProbeSetError::Empty {
                path: path.display().to_string(),
            });
        }
        Ok(probe)
    }

    /// The first `limit` events of `batch` with an outcome in it, in order (rows without one
    /// are skipped; the batch's rejected rows are the caller's to look at).
    #[must_use]
    pub fn from_batch(batch: &crate::sources::Batch, limit: usize) -> Self {
        let outcomes: std::collections::HashMap<&str, Outcome> = batch
            .resolutions
            .iter()
            .map(|resolution| (resolution.event_id.as_str(), resolution.outcome))
            .collect();
        let resolved_at: std::collections::HashMap<&str, _> = batch
            .resolutions
            .iter()
            .map(|resolution| (resolution.event_id.as_str(), resolution.resolved_at))
            .collect();
        let events: Vec<EventRecord> = batch
            .events
            .iter()
            .filter_map(|event| {
                let outcome = *outcomes.get(event.id.as_str())?;
                Some(EventRecord {
                    event: event.clone(),
                    status: EventStatus::Resolved,
                    outcome: Some(outcome),
                    resolved_at: resolved_at.get(event.id.as_str()).copied(),
                })
            })
            .take(limit)
            .collect();
        Self { events }
    }

    /// Takes the first `count` events of `batch` that have a resolution in it (file order) out
    /// of it, with their resolutions, as a probe set: a backtest checks its agents on the
    /// start of its own file and replays the rest.
    #[must_use]
    pub fn split_from(batch: &mut crate::sources::Batch, count: usize) -> Self {
        let resolutions: std::collections::HashMap<String, crate::event::Resolution> = batch
            .resolutions
            .iter()
            .map(|resolution| (resolution.event_id.clone(), resolution.clone()))
            .collect();
        let mut taken = std::collections::HashSet::new();
        let mut events = Vec::new();
        for event in &batch.events {
            if events.len() == count {
                break;
            }
            if let Some(resolution) = resolutions.get(&event.id) {
                taken.insert(event.id.clone());
                events.push(EventRecord {
                    event: event.clone(),
                    status: EventStatus::Resolved,
                    outcome: Some(resolution.outcome),
                    resolved_at: Some(resolution.resolved_at),
                });
            }
        }
        batch.events.retain(|event| !taken.contains(&event.id));
        batch
            .resolutions
            .retain(|resolution| !taken.contains(&resolution.event_id));
        Self { events }
    }

    /// A probe set of `events` (a backtest's first events, tests).
    #[must_use]
    pub fn from_events(events: Vec<EventRecord>) -> Self {
        Self { events }
    }

    /// The events, in order.
    #[must_use]
    pub fn events(&self) -> &[EventRecord] {
        &self.events
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The market probability of each event (its metadata's `market_prob`), where given.
    #[must_use]
    pub fn market_probabilities(&self) -> Vec<Option<f64>> {
        self.events
            .iter()
            .map(|record| market_probability(&record.event.metadata))
            .collect()
    }
}

/// The market probability an event's metadata carries (`market_prob`, in [0, 1]).
#[must_use]
pub fn market_probability(metadata: &serde_json::Map<String, serde_json::Value>) -> Option<f64> {
    metadata
        .get("market_prob")
        .and_then(serde_json::Value::as_f64)
        .filter(|value| (0.0..=1.0).contains(value))
}
