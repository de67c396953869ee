//! The host's view of an event, as handed to an agent.

use serde::{Deserialize, Serialize};

/// A yes/no question, as the runner hands it to an agent (the WIT `event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// Unique identifier; the agent's forecast must echo it.
    pub id: String,
    /// The kind of event, `binary` for yes/no questions.
    pub kind: String,
    /// The question.
    pub title: String,
    /// Background and resolution criteria.
    pub description: String,
    /// Creation instant, seconds since the Unix epoch: what the agent's clock
    /// reads when the run starts.
    pub created_at: i64,
    /// Cutoff instant, seconds since the Unix epoch.
    pub cutoff: i64,
    /// Further fields, a JSON object.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// An event that cannot be handed to an agent.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    /// The id is empty or too long.
    #[error("event id must be 1 to 256 bytes long, got {0} bytes")]
    BadId(usize),
    /// The cutoff is before the creation.
    #[error("event {id}: cutoff {cutoff} is before creation {created_at}")]
    CutoffBeforeCreation {
        /// The event.
        id: String,
        /// Its creation instant.
        created_at: i64,
        /// Its cutoff.
        cutoff: i64,
    },
}

/// Three days: the SPEC's event lifetime, the default cutoff.
const DEFAULT_LIFETIME_SECS: i64 = 3 * 24 * 3600;

impl AgentEvent {
    /// A binary event with empty description and metadata, cut off three
    /// days after creation.
    pub fn new(id: impl Into<String>, title: impl Into<String>, created_at: i64) -> Self {
        Self {
            id: id.into(),
            kind: "binary".into(),
            title: title.into(),
            description: String::new(),
            created_at,
            cutoff: created_at.saturating_add(DEFAULT_LIFETIME_SECS),
            metadata: serde_json::Map::new(),
        }
    }

    /// Check the event before a run.
    ///
    /// # Errors
    ///
    /// [`EventError`] naming what is wrong.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.id.is_empty() || self.id.len() > 256 {
            return Err(EventError::BadId(self.id.len()));
        }
        if self.cutoff < self.created_at {
            return Err(EventError::CutoffBeforeCreation {
                id: self.id.clone(),
                created_at: self.created_at,
                cutoff: self.cutoff,
            });
        }
        Ok(())
    }
}
