//! Where each event source has read up to (`validator_source_state`).
//!
//! Owns one JSON document per source name, written after what the source delivered is stored,
//! so that a restarted daemon reads on instead of from the start. It must not interpret the
//! documents (the sources' readers define them) nor touch events.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreError, to_ms};

impl Store {
    /// The state saved for `source`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`], or [`StoreError::CorruptJson`] for a document that is not JSON.
    pub async fn source_state(&self, source: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT state FROM validator_source_state WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.reader)
                .await?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|error| StoreError::CorruptJson {
                what: format!("the state of source {source:?}"),
                source: error,
            })
        })
        .transpose()
    }

    /// Saves `state` for `source` at `at`, replacing what was saved.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn save_source_state(
        &self,
        source: &str,
        state: &Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO validator_source_state (source, state, updated_at_ms) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (source) DO UPDATE \
             SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(source)
        .bind(state.to_string())
        .bind(to_ms(at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
