//! What the downloads serve: a day's reference forecasts per event and a day's resolved
//! events, read in the shape of a table.
//!
//! Read-only over `validator_events` and `validator_reference_forecasts`; it must not format
//! files (the API does, with `crate::tables`).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_ms, to_ms};

/// The reference entries' forecasts on the events created on one UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayForecasts {
    /// The entries, benchmarks first, each kind by name: the table's value columns.
    pub entries: Vec<String>,
    /// One row per event created that day, by creation then id.
    pub rows: Vec<DayForecastRow>,
}

/// One event's row of [`DayForecasts`].
#[derive(Debug, Clone, PartialEq)]
pub struct DayForecastRow {
    /// The event.
    pub event_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Each entry's scored (clipped) forecast, indexed like the entries; `None` without a
    /// valid one (not run yet, failed, a pool over no forecast).
    pub forecasts: Vec<Option<f64>>,
}

/// An event resolved on the day asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRow {
    /// The event.
    pub event_id: String,
    /// Its title.
    pub title: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it resolved.
    pub resolved_at: DateTime<Utc>,
    /// 1 for yes, 0 for no.
    pub outcome: u8,
}

impl Store {
    /// The reference entries' forecasts on the events created on `day` (UTC).
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn reference_forecasts_of_day(
        &self,
        day: NaiveDate,
    ) -> Result<DayForecasts, StoreError> {
        let (from, until) = day_bounds(day);
        let entries: Vec<String> = self
            .reference_entries()
            .await?
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        let rows = sqlx::query(
            "SELECT e.event_no, e.id, e.created_at_ms, p.name, f.clipped_prediction \
               FROM validator_events e \
               LEFT JOIN validator_reference_forecasts f ON f.event_no = e.event_no \
               LEFT JOIN validator_reference_entries p ON p.entry_no = f.entry_no \
              WHERE e.created_at_ms >= $1 AND e.created_at_ms < $2 \
              ORDER BY e.created_at_ms, e.id",
        )
        .bind(from)
        .bind(until)
        .fetch_all(&self.reader)
        .await?;
        let mut table: Vec<DayForecastRow> = Vec::new();
        let mut last_event = None;
        for row in &rows {
            let event_no: i64 = row.try_get("event_no")?;
            if last_event != Some(event_no) {
                last_event = Some(event_no);
                table.push(DayForecastRow {
                    event_id: row.try_get("id")?,
                    created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
                    forecasts: vec![None; entries.len()],
                });
            }
            let name: Option<String> = row.try_get("name")?;
            let value: Option<f64> = row.try_get("clipped_prediction")?;
            let column = name.and_then(|name| entries.iter().position(|entry| *entry == name));
            if let (Some(column), Some(current)) = (column, table.last_mut()) {
                current.forecasts[column] = value;
            }
        }
        Ok(DayForecasts {
            entries,
            rows: table,
        })
    }

    /// The UTC days on which an event was created or resolved, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn event_days(&self) -> Result<Vec<NaiveDate>, StoreError> {
        let days: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at_ms / 86400000 FROM validator_events WHERE created_at_ms >= 0              UNION              SELECT resolved_at_ms / 86400000 FROM validator_events               WHERE status = 'resolved' AND resolved_at_ms >= 0              ORDER BY 1",
        )
        .fetch_all(&self.reader)
        .await?;
        days.into_iter()
            .map(|day| Ok(from_ms(day.saturating_mul(MS_PER_DAY), "an event's day")?.date_naive()))
            .collect()
    }

    /// The events resolved on `day` (UTC), by resolution then id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn resolved_on_day(&self, day: NaiveDate) -> Result<Vec<ResolvedRow>, StoreError> {
        let (from, until) = day_bounds(day);
        let rows = sqlx::query(
            "SELECT id, title, created_at_ms, resolved_at_ms, outcome FROM validator_events \
              WHERE status = 'resolved' AND resolved_at_ms >= $1 AND resolved_at_ms < $2 \
              ORDER BY resolved_at_ms, id",
        )
        .bind(from)
        .bind(until)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let outcome: i64 = row.try_get("outcome")?;
                let outcome = u8::try_from(outcome)
                    .ok()
                    .filter(|value| *value <= 1)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("event {id:?} has outcome {outcome}"))
                    })?;
                Ok(ResolvedRow {
                    title: row.try_get("title")?,
                    created_at: from_ms(row.try_get("created_at_ms")?, "created_at_ms")?,
                    resolved_at: from_ms(row.try_get("resolved_at_ms")?, "resolved_at_ms")?,
                    outcome,
                    event_id: id,
                })
            })
            .collect()
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// The day's first millisecond and the next day's, as stored.
fn day_bounds(day: NaiveDate) -> (i64, i64) {
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let next = start + chrono::TimeDelta::days(1);
    (to_ms(start), to_ms(next))
}
