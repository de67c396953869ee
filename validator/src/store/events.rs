//! Events and their resolution (`validator_events`), and which runs are still owed.
//!
//! Owns the rows of events: inserting a new event (validated before anything is written),
//! resolving it once (an identical second resolution is accepted, a different one refused),
//! and listing the (event, miner) pairs that still need a run. It must not write runs or
//! scores; the scheduler and the scorer do that through [`super::runs`] and [`super::scores`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, from_ms, from_optional_ms, outcome_from, to_ms, truncate_to_ms};
use crate::event::{Event, Outcome, Resolution};

/// Whether an event has resolved (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    /// Not resolved yet.
    Open,
    /// Resolved; outcome and instant are final.
    Resolved,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// What was inserted (instants at millisecond precision).
    pub event: Event,
    /// Open or resolved.
    pub status: EventStatus,
    /// The outcome, once resolved.
    pub outcome: Option<Outcome>,
    /// When it resolved, once resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What [`Store::resolve_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolutionRecorded {
    /// The event was open and is now resolved.
    Recorded,
    /// The event had already been resolved exactly so; nothing changed.
    AlreadyRecorded,
}

/// A registered miner without a run on an event still open to runs. Which version runs it,
/// if any, is `activation`'s answer for the event's creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRun {
    /// The event.
    pub event_id: String,
    /// The event's creation instant.
    pub created_at: DateTime<Utc>,
    /// The miner.
    pub hotkey: String,
    /// The miner's uid.
    pub uid: u16,
}

const EVENT_COLUMNS: &str = "id, kind, title, description, metadata, created_at_ms, cutoff_ms, \
                             status, outcome, resolved_at_ms";

impl Store {
    /// Inserts a new, open event.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidEvent`] for an event that [`Event::validate`] refuses (checked
    /// before anything is written); [`StoreError::DuplicateEvent`] if the id exists (the stored
    /// event is unchanged); [`StoreError::Database`].
    pub async fn insert_event(&self, event: &Event) -> Result<(), StoreError> {
        event
            .validate()
            .map_err(|problem| StoreError::InvalidEvent {
                event_id: event.id.clone(),
                problem,
            })?;
        // A map of JSON values always prints as a JSON object.
        let metadata = Value::Object(event.metadata.clone()).to_string();
        // One statement: atomic without an explicit transaction. The conflict clause turns a
        // duplicate into "no row inserted" instead of an error to pick apart.
        let inserted = sqlx::query(
            "INSERT INTO validator_events \
                 (id, kind, title, description, metadata, created_at_ms, cutoff_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(&event.title)
        .bind(&event.description)
        .bind(metadata)
        .bind(to_ms(event.created_at))
        .bind(to_ms(event.cutoff))
        .execute(&self.writer)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::DuplicateEvent {
                event_id: event.id.clone(),
            });
        }
        Ok(())
    }

    /// Resolves event `event_id` to `outcome` (0 or 1) at `resolved_at`.
    ///
    /// A second resolution identical to the first (same outcome, same instant at millisecond
    /// precision) is accepted and changes nothing ([`ResolutionRecorded::AlreadyRecorded`]), so a
    /// resolution source may be replayed after a restart.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidOutcome`] for anything but 0 or 1, [`StoreError::UnknownEvent`],
    /// [`StoreError::InvalidResolution`] for a resolution before the event's creation,
    /// [`StoreError::ConflictingResolution`] if it was resolved differently (the first
    /// resolution stands), [`StoreError::Database`].
    pub async fn resolve_event(
        &self,
        event_id: &str,
        outcome: u8,
        resolved_at: DateTime<Utc>,
    ) -> Result<ResolutionRecorded, StoreError> {
        let parsed = Outcome::try_from(outcome).map_err(|_| StoreError::InvalidOutcome {
            event_id: event_id.to_owned(),
            value: outcome,
        })?;
        let resolved_at = truncate_to_ms(resolved_at);
        let mut transaction = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT created_at_ms, status, outcome, resolved_at_ms FROM validator_events \
              WHERE id = $1",
        )
        .bind(event_id)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| StoreError::UnknownEvent {
            event_id: event_id.to_owned(),
        })?;
        let recorded_outcome: Option<i64> = row.try_get("outcome")?;
        let recorded_at: Option<i64> = row.try_get("resolved_at_ms")?;
        if let (Some(recorded_outcome), Some(recorded_at)) = (recorded_outcome, recorded_at) {
            let recorded_at = from_ms(recorded_at, "resolved_at_ms")?;
            if recorded_outcome == i64::from(outcome) && recorded_at == resolved_at {
                return Ok(ResolutionRecorded::AlreadyRecorded);
            }
            return Err(StoreError::ConflictingResolution {
                event_id: event_id.to_owned(),
                recorded_outcome: u8::try_from(recorded_outcome).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "event {event_id:?} has outcome {recorded_outcome}"
                    ))
                })?,
                recorded_at,
                new_outcome: outcome,
                new_at: resolved_at,
            });
        }
        let created_at = from_ms(row.try_get("created_at_ms")?, "created_at_ms")?;
        let resolution = Resolution {
            event_id: event_id.to_owned(),
            outcome: parsed,
            resolved_at,
        };
        resolution
            .check_after(created_at)
            .map_err(|problem| StoreError::InvalidResolution {
                event_id: event_id.to_owned(),
                problem,
            })?;
        sqlx::query(
            "UPDATE validator_events \
                SET status = 'resolved', outcome = $2, resolved_at_ms = $3 \
              WHERE id = $1 AND status = 'open'",
        )
        .bind(event_id)
        .bind(i64::from(u8::from(parsed)))
        .bind(to_ms(resolved_at))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(ResolutionRecorded::Recorded)
    }

    /// The event with `event_id`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn event(&self, event_id: &str) -> Result<Option<EventRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM validator_events WHERE id = $1"
        ))
        .bind(event_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// Open events created at or before `as_of`, oldest creation first (then by id).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn open_events(&self, as_of: DateTime<Utc>) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM validator_events \
              WHERE status = 'open' AND created_at_ms <= $1 \
              ORDER BY created_at_ms, id"
        ))
        .bind(to_ms(as_of))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The runs missing at `as_of`: every registered miner without a run on an open event
    /// created at or before `as_of` whose cutoff is after it. Ordered by the event's creation,
    /// event id, then uid.
    ///
    /// An event past its cutoff gets no more runs: a late run could see the future through the
    /// gateway's web search. Its missing runs are imputed 0.5 at scoring.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn missing_runs(&self, as_of: DateTime<Utc>) -> Result<Vec<MissingRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.created_at_ms, m.hotkey, m.uid \
               FROM validator_events e \
               JOIN validator_miners m ON m.deregistered_at_ms IS NULL \
              WHERE e.status = 'open' AND e.created_at_ms <= $1 AND e.cutoff_ms > $1 \
                AND NOT EXISTS (SELECT 1 FROM validator_runs r \
                                 WHERE r.event_no = e.event_no AND r.miner_no = m.miner_no) \
              ORDER BY e.created_at_ms, e.id, m.uid",
        )
        .bind(to_ms(as_of))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MissingRun {
                    event_id: row.try_get("id")?,
                    created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
                    hotkey: row.try_get("hotkey")?,
                    uid: super::uid_from(row.try_get("uid")?)?,
                })
            })
            .collect()
    }
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<EventRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let metadata: String = row.try_get("metadata")?;
    let status: String = row.try_get("status")?;
    let outcome: Option<i64> = row.try_get("outcome")?;
    Ok(EventRecord {
        event: Event {
            kind: row.try_get("kind")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            metadata: serde_json::from_str::<Map<String, Value>>(&metadata).map_err(|source| {
                StoreError::CorruptJson {
                    what: format!("the metadata of event {id:?}"),
                    source,
                }
            })?,
            created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
            cutoff: from_ms(row.try_get("cutoff_ms")?, "cutoff_ms")?,
            id: id.clone(),
        },
        status: match status.as_str() {
            "open" => EventStatus::Open,
            "resolved" => EventStatus::Resolved,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "event {id:?} has status {other:?}"
                )));
            }
        },
        outcome: outcome_from(outcome, &id)?,
        resolved_at: from_optional_ms(row.try_get("resolved_at_ms")?, "resolved_at_ms")?,
    })
}

/// The internal number of the event `event_id`.
pub(super) async fn event_no(
    connection: &mut AnyConnection,
    event_id: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT event_no FROM validator_events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(connection)
        .await?
        .ok_or_else(|| StoreError::UnknownEvent {
            event_id: event_id.to_owned(),
        })
}
