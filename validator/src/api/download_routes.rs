//! The downloads: per UTC day, the reference entries' forecasts on the events created that day
//! and the events resolved that day, as CSV or Parquet tables.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate, SecondsFormat};
use serde::Serialize;

use super::ApiError;
use crate::store::{DayForecasts, ResolvedRow, Store};
use crate::tables::{Column, Format, Table};

/// The days a download can be asked for: what a store can hold and a file name can say.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// `GET /v1/downloads`: the days that have events, newest first, with the files of each.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadsView {
    /// One entry per day with an event created or resolved on it.
    pub days: Vec<DownloadDay>,
}

/// A day of [`DownloadsView`].
#[derive(Debug, Clone, Serialize)]
pub struct DownloadDay {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The files of the day, relative to `/v1/downloads/{day}/`.
    pub files: [&'static str; 4],
}

/// The files every day has.
const FILES: [&str; 4] = [
    "forecasts.csv",
    "forecasts.parquet",
    "resolved.csv",
    "resolved.parquet",
];

pub(super) async fn index(State(store): State<Store>) -> Result<Json<DownloadsView>, ApiError> {
    let days = store.event_days().await?;
    Ok(Json(DownloadsView {
        days: days
            .into_iter()
            .rev()
            .map(|day| DownloadDay {
                day: day.to_string(),
                files: FILES,
            })
            .collect(),
    }))
}

pub(super) async fn file(
    State(store): State<Store>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((day_text, file)) =
        path.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let day = parse_day(&day_text)?;
    let (table_name, format) = match file.as_str() {
        "forecasts.csv" => ("forecasts", Format::Csv),
        "forecasts.parquet" => ("forecasts", Format::Parquet),
        "resolved.csv" => ("resolved", Format::Csv),
        "resolved.parquet" => ("resolved", Format::Parquet),
        _ => {
            return Err(ApiError::NotFound(format!(
                "no download {file:?}; a day has {}",
                FILES.join(", ")
            )));
        }
    };
    let table = if table_name == "forecasts" {
        forecasts_table(&store.reference_forecasts_of_day(day).await?, day)
    } else {
        resolved_table(&store.resolved_on_day(day).await?, day)
    }?;
    let mut bytes = Vec::new();
    table.write(format, &mut bytes)?;
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Parquet => "application/vnd.apache.parquet",
    };
    let disposition = format!(
        "attachment; filename=\"sooth-{table_name}-{day}.{}\"",
        extension(format)
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

fn extension(format: Format) -> &'static str {
    match format {
        Format::Csv => "csv",
        Format::Parquet => "parquet",
    }
}

/// A day as `YYYY-MM-DD`, in the years a download can be of.
fn parse_day(text: &str) -> Result<NaiveDate, ApiError> {
    let bad = || {
        ApiError::BadQuery(format!(
            "day must be a date YYYY-MM-DD from {} to {}, got {text:?}",
            YEARS.start(),
            YEARS.end()
        ))
    };
    // `%Y` alone would take signs and more digits.
    if text.len() != 10 {
        return Err(bad());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?;
    if YEARS.contains(&day.year()) {
        Ok(day)
    } else {
        Err(bad())
    }
}

/// One row per event created on `day`: `era`, `event_id`, `created_at`, then one column per
/// reference entry with its scored forecast (empty without one).
fn forecasts_table(
    forecasts: &DayForecasts,
    day: NaiveDate,
) -> Result<Table, crate::tables::TableError> {
    let rows = &forecasts.rows;
    let mut table = Table::from_columns(vec![
        (
            "era".to_owned(),
            Column::Text(vec![Some(day.to_string()); rows.len()]),
        ),
        (
            "event_id".to_owned(),
            Column::Text(rows.iter().map(|row| Some(row.event_id.clone())).collect()),
        ),
        (
            "created_at".to_owned(),
            Column::Text(
                rows.iter()
                    .map(|row| Some(row.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)))
                    .collect(),
            ),
        ),
    ])?;
    for (index, entry) in forecasts.entries.iter().enumerate() {
        table.push_column(
            entry.clone(),
            Column::Number(rows.iter().map(|row| row.forecasts[index]).collect()),
        )?;
    }
    Ok(table)
}

/// One row per event resolved on `day`: `era`, `event_id`, `title`, `created_at`,
/// `resolved_at`, `outcome` (1 or 0).
fn resolved_table(
    rows: &[ResolvedRow],
    day: NaiveDate,
) -> Result<Table, crate::tables::TableError> {
    let instant =
        |at: chrono::DateTime<chrono::Utc>| Some(at.to_rfc3339_opts(SecondsFormat::Millis, true));
    Table::from_columns(vec![
        (
            "era".to_owned(),
            Column::Text(vec![Some(day.to_string()); rows.len()]),
        ),
        (
            "event_id".to_owned(),
            Column::Text(rows.iter().map(|row| Some(row.event_id.clone())).collect()),
        ),
        (
            "title".to_owned(),
            Column::Text(rows.iter().map(|row| Some(row.title.clone())).collect()),
        ),
        (
            "created_at".to_owned(),
            Column::Text(rows.iter().map(|row| instant(row.created_at)).collect()),
        ),
        (
            "resolved_at".to_owned(),
            Column::Text(rows.iter().map(|row| instant(row.resolved_at)).collect()),
        ),
        (
            "outcome".to_owned(),
            Column::Integer(
                rows.iter()
                    .map(|row| Some(i64::from(row.outcome)))
                    .collect(),
            ),
        ),
    ])
}
