//! What the pages read, gathered from the store's public methods.
//!
//! Owns the shape of each page's raw data and which reference entries (the benchmark agents
//! and the meta-model's pools) a page shows beside the miners ([`charted_references`],
//! [`reference_forecasts`]). It must not write, nor format anything for display (that is
//! `models`).
//!
//! Every read goes through [`Store`]'s public methods: the store's connections are private to
//! it. The ones written for the pages (`store::page_queries`) read from indexes, so that a
//! page costs about the same however long the history.

use chrono::{DateTime, TimeDelta, Utc};

use crate::meta::Pool;
use crate::scoring::Score;
use crate::store::{
    EventRecord, EventScore, MinerHistory, MinerRecord, MinerRun, ReferenceEntry, ReferenceKind,
    RunRecord, Store, StoreError, VersionRecord, WeightRow,
};

/// Scored events of a miner read for its page: the history of its rolling Brier score and its
/// calibration cover at most this many of its newest.
pub const MAX_HISTORY_EVENTS: usize = 20_000;

/// The span of the operator page's runs: the day up to the newest run's finish.
const OPERATOR_SPAN: TimeDelta = TimeDelta::days(1);

/// A named per-event Brier series of a reference (a benchmark agent or a meta-model pool),
/// in resolution order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSeries {
    /// Its name (`market-baseline`, `meta:linear`...).
    pub name: String,
    /// `(resolution instant, Brier score)` per resolved event, oldest first.
    pub scores: Vec<(DateTime<Utc>, f64)>,
}

/// A reference's forecast on one event.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceForecast {
    /// Its name.
    pub name: String,
    /// Benchmark agent or meta-model pool.
    pub kind: ReferenceKind,
    /// How its forecast ended (a run's status word, or `no_forecasts` for a pool over no
    /// miner's forecast); `None` without a forecast on the event.
    pub status: Option<String>,
    /// Its raw prediction; `None` without one.
    pub prediction: Option<f64>,
    /// Its prediction, clipped as scored; `None` without one.
    pub clipped: Option<f64>,
    /// Its Brier score once the event resolved (the imputed 0.5 scored without a valid
    /// forecast, as the leaderboard scores it).
    pub brier: Option<f64>,
    /// How long a benchmark's run took; `None` for a pool or without a forecast.
    pub duration_ms: Option<u64>,
}

/// Everything a miner's page shows.
#[derive(Debug, Clone)]
pub struct MinerData {
    /// The miner.
    pub record: MinerRecord,
    /// Its agent versions, oldest upload first.
    pub versions: Vec<VersionRecord>,
    /// Its line of the latest weights computation, if any.
    pub standing: Option<WeightRow>,
    /// Its scored events, `(resolution instant, Brier)`, in resolution order: with a run or
    /// without (imputed).
    pub scores: Vec<(DateTime<Utc>, f64)>,
    /// `(clipped prediction, outcome)` of its valid forecasts on scored events.
    pub calibration: Vec<(f64, f64)>,
    /// Its newest runs, newest finish first.
    pub recent: Vec<MinerRun>,
    /// The charted references' Brier series on the same events as `scores` (same instants).
    pub references: Vec<ReferenceSeries>,
}

/// Everything an event's page shows.
#[derive(Debug, Clone)]
pub struct EventData {
    /// The event.
    pub record: EventRecord,
    /// Every miner's run on it.
    pub runs: Vec<RunRecord>,
    /// Every miner's score on it, once scored.
    pub scores: Vec<EventScore>,
    /// Every reference entry's forecast on it.
    pub references: Vec<ReferenceForecast>,
}

/// The operator page's raw data.
#[derive(Debug, Clone)]
pub struct OperatorData {
    /// Open events.
    pub open_events: usize,
    /// Resolved events.
    pub resolved_events: usize,
    /// The end of the day shown: the newest run's finish (so that a backtest's store shows its
    /// own last day), `None` without runs.
    pub day_end: Option<DateTime<Utc>>,
    /// The runs that finished in the 24 hours up to `day_end`.
    pub runs: Vec<RunRecord>,
}

/// The data of `hotkey`'s page with its `recent` newest runs; `None` for an unknown miner.
///
/// Its history is its newest [`MAX_HISTORY_EVENTS`] scores (every resolved event it was scored
/// on, a score imputed without a run included), with the [`charted_references`]' scores on
/// the same events.
///
/// # Errors
///
/// [`StoreError`] when a read fails.
pub async fn miner_data(
    store: &Store,
    hotkey: &str,
    recent: usize,
) -> Result<Option<MinerData>, StoreError> {
    let Some(record) = store.miner(hotkey).await? else {
        return Ok(None);
    };
    let versions = store.agent_versions(hotkey).await?;
    let standing = store
        .latest_weights()
        .await?
        .into_iter()
        .find(|row| row.hotkey == hotkey);
    let charted = charted_references(&store.reference_entries().await?);
    let names: Vec<&str> = charted.iter().map(String::as_str).collect();
    let history = match store
        .miner_history(hotkey, &names, MAX_HISTORY_EVENTS)
        .await
    {
        Ok(history) => history,
        // Deregistered and forgotten between the two reads: as unknown.
        Err(StoreError::UnknownMiner { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let recent = match store.miner_recent_runs(hotkey, recent).await {
        Ok(runs) => runs,
        Err(StoreError::UnknownMiner { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let scores = history
        .events
        .iter()
        .map(|event| (event.resolved_at, event.brier))
        .collect();
    let calibration = history
        .events
        .iter()
        .filter_map(|event| {
            let prediction = event.clipped_prediction?;
            Some((prediction, event.outcome.as_f64()))
        })
        .collect();
    let references = reference_brier_series(&history);
    Ok(Some(MinerData {
        record,
        versions,
        standing,
        scores,
        calibration,
        recent,
        references,
    }))
}

/// The names of the reference entries drawn beside a miner's rolling Brier score: every
/// benchmark agent, and the meta-model's equally weighted linear pool (the one a miner's
/// contribution is measured against) when it is recorded. The other pools stay on the
/// leaderboard: five dashed lines would hide the miner's.
#[must_use]
pub fn charted_references(entries: &[ReferenceEntry]) -> Vec<String> {
    let pool = Pool::CONTRIBUTION.name();
    entries
        .iter()
        .filter(|entry| entry.kind == ReferenceKind::Benchmark || entry.name == pool)
        .map(|entry| entry.name.clone())
        .collect()
}

/// The references' per-event Brier series of `history`, each on the miner's events: a point
/// of a reference's rolling mean is over the very events of the miner's point at the same
/// instant.
#[must_use]
pub fn reference_brier_series(history: &MinerHistory) -> Vec<ReferenceSeries> {
    history
        .references
        .iter()
        .map(|reference| ReferenceSeries {
            name: reference.name.clone(),
            scores: history
                .events
                .iter()
                .zip(&reference.briers)
                .map(|(event, &brier)| (event.resolved_at, brier))
                .collect(),
        })
        .collect()
}

/// Every reference entry's forecast on `event`, benchmarks first, each kind by name; an entry
/// without a forecast on it is listed too (a benchmark added after the event, a pool not
/// computed yet).
///
/// # Errors
///
/// [`StoreError`] when a read fails.
pub async fn reference_forecasts(
    store: &Store,
    event: &EventRecord,
) -> Result<Vec<ReferenceForecast>, StoreError> {
    let entries = store.reference_entries().await?;
    let forecasts = store.reference_forecasts_of_event(&event.event.id).await?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let forecast = forecasts
                .iter()
                .find(|forecast| forecast.entry == entry.name);
            let clipped = forecast.and_then(|forecast| forecast.clipped_prediction);
            ReferenceForecast {
                status: forecast.map(|forecast| forecast.status.clone()),
                prediction: forecast.and_then(|forecast| forecast.prediction),
                clipped,
                brier: event
                    .outcome
                    .map(|outcome| Score::of(clipped, outcome).brier),
                duration_ms: forecast
                    .filter(|_| entry.kind == ReferenceKind::Benchmark)
                    .map(|forecast| forecast.duration_ms),
                kind: entry.kind,
                name: entry.name,
            }
        })
        .collect())
}

/// The data of event `event_id`'s page; `None` for an unknown event.
///
/// # Errors
///
/// [`StoreError`] when a read fails.
pub async fn event_data(store: &Store, event_id: &str) -> Result<Option<EventData>, StoreError> {
    let Some(record) = store.event(event_id).await? else {
        return Ok(None);
    };
    let runs = store.runs_of_event(event_id).await?;
    let scores = store.event_scores(event_id).await?;
    let references = reference_forecasts(store, &record).await?;
    Ok(Some(EventData {
        record,
        runs,
        scores,
        references,
    }))
}

/// The operator page's data: events by status, and the runs of the day up to the newest run.
///
/// # Errors
///
/// [`StoreError`] when a read fails.
pub async fn operator_data(store: &Store) -> Result<OperatorData, StoreError> {
    let counts = store.event_counts().await?;
    let day_end = store.newest_run_finish().await?;
    let runs = match day_end {
        Some(end) => {
            store
                .runs_finished_between(end - OPERATOR_SPAN, end)
                .await?
        }
        None => Vec::new(),
    };
    Ok(OperatorData {
        open_events: usize::try_from(counts.open).unwrap_or(usize::MAX),
        resolved_events: usize::try_from(counts.resolved).unwrap_or(usize::MAX),
        day_end,
        runs,
    })
}

/// What a run's recorded gateway usage says (calls, spend by service), as the metrics read it.
pub use crate::gateway_usage::{gateway_calls, spend_by_service};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn calls_and_spend_come_from_the_runners_usage() {
        let usage = json!({
            "calls": [
                {"service": "chat", "cost_usd": 0.25},
                {"service": "search", "cost_usd": 0.5},
                {"service": "chat", "cost_usd": 0.25}
            ],
            "total_calls": 5,
            "refused_calls": 0,
            "total_cost_usd": 1.5
        });
        assert_eq!(gateway_calls(&usage), 5);
        let spend = spend_by_service(&usage, 1.5);
        assert_eq!(
            spend,
            vec![
                (Some("chat".to_owned()), 2, 0.5),
                (Some("search".to_owned()), 1, 0.5),
                (None, 2, 0.5),
            ]
        );
    }

    #[test]
    fn unknown_usage_shapes_count_nothing() {
        assert_eq!(gateway_calls(&json!({"llm": {"calls": 2}})), 0);
        assert_eq!(gateway_calls(&json!("text")), 0);
        assert_eq!(spend_by_service(&json!(null), 0.0), vec![]);
        assert_eq!(spend_by_service(&json!([]), 0.25), vec![(None, 0, 0.25)]);
    }
}
