//! What the pages read, gathered from the store's public methods.
//!
//! Owns the shape of each page's raw data and the few places the benchmark agents' and the
//! meta-model's numbers will come in ([`reference_brier_series`], [`reference_forecasts`]).
//! It must not write, nor format anything for display (that is `models`).
//!
//! Every read goes through [`Store`]'s public methods: the store's connections are private to
//! it. Where that costs more than one SQL query would, the function says so and names the
//! store method that would replace it.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::store::{
    EventRecord, EventScore, EventStatus, MinerRecord, MinerRun, RunRecord, Store, StoreError,
    VersionRecord, WeightRow,
};

/// Runs of a miner read for its page: the history of its rolling Brier score and its
/// calibration cover at most this many of its newest runs.
pub const MAX_HISTORY_RUNS: usize = 20_000;

/// Events the operator page reads the runs of, at most: the newest that may have had runs in
/// the last day.
pub const MAX_OPERATOR_EVENTS: usize = 2_000;

/// How long a run may finish after its event's cutoff (the run's time limit, with room to
/// record it): how far back the operator page looks for the last day's runs.
const RUN_SLACK: TimeDelta = TimeDelta::hours(1);

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
    /// Its prediction, clipped as scored; `None` without one.
    pub prediction: Option<f64>,
    /// Its Brier score once the event resolved.
    pub brier: Option<f64>,
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
    /// Its scored events, `(resolution instant, Brier)`, in resolution order.
    pub scores: Vec<(DateTime<Utc>, f64)>,
    /// `(clipped prediction, outcome)` of its `ok` runs on resolved events.
    pub calibration: Vec<(f64, f64)>,
    /// Its newest runs, newest event first.
    pub recent: Vec<MinerRun>,
    /// The references' per-event Brier series, for comparison.
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
    /// The references' forecasts on it.
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
/// Reads the miner's newest [`MAX_HISTORY_RUNS`] runs with their scores, and the resolved
/// events for their resolution instants. A score imputed on an event the miner has no run on
/// is not in the history: `Store::miner_runs` lists runs. A store method giving a miner's
/// scores in resolution order (`validator_scores` joined with `validator_events`) would add
/// those and spare reading the runs' logs.
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
    let runs = match store.miner_runs(hotkey, None, MAX_HISTORY_RUNS).await {
        Ok(runs) => runs,
        // Deregistered and forgotten between the two reads: as unknown.
        Err(StoreError::UnknownMiner { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let resolved = resolution_instants(store).await?;
    let mut scores: Vec<(DateTime<Utc>, &str, f64)> = runs
        .iter()
        .filter_map(|run| {
            let score = run.score.as_ref()?;
            let event_id = run.run.run.event_id.as_str();
            let resolved_at = *resolved.get(event_id)?;
            Some((resolved_at, event_id, score.brier))
        })
        .collect();
    // The scoring order: resolution instant, then id.
    scores.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let calibration = runs
        .iter()
        .filter_map(|run| {
            let outcome = run.outcome?;
            let prediction = run.run.clipped_prediction?;
            Some((prediction, outcome.as_f64()))
        })
        .collect();
    let references = reference_brier_series(store, &record).await?;
    Ok(Some(MinerData {
        record,
        versions,
        standing,
        scores: scores
            .into_iter()
            .map(|(at, _, brier)| (at, brier))
            .collect(),
        calibration,
        recent: runs.into_iter().take(recent).collect(),
        references,
    }))
}

/// Each resolved event's resolution instant, by id.
async fn resolution_instants(store: &Store) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
    // Without miners the scoring window's loader reads only the events' index: no texts, no
    // metadata to parse.
    let events = store
        .last_resolved_events(&[], usize::MAX, DateTime::<Utc>::MAX_UTC)
        .await?;
    Ok(events
        .into_iter()
        .map(|event| (event.id, event.resolved_at))
        .collect())
}

/// The benchmark agents' and the meta-model's per-event Brier series to draw beside
/// `miner`'s, in resolution order.
///
/// Empty for now: the store does not yet give the references' scores. This is the one place
/// they are gathered; each series becomes a dashed line of the miner's chart, its rolling mean
/// computed as the miner's is.
///
/// # Errors
///
/// [`StoreError`] when a read fails.
#[allow(clippy::unused_async)] // the store read it will make is async
pub async fn reference_brier_series(
    _store: &Store,
    _miner: &MinerRecord,
) -> Result<Vec<ReferenceSeries>, StoreError> {
    Ok(Vec::new())
}

/// The benchmark agents' and the meta-model's forecasts on `event`, shown under the miners'.
///
/// Empty for now: the store does not yet give them. This is the one place they are gathered.
///
/// # Errors
///
/// [`StoreError`] when a read fails.
#[allow(clippy::unused_async)] // the store read it will make is async
pub async fn reference_forecasts(
    _store: &Store,
    _event: &EventRecord,
) -> Result<Vec<ReferenceForecast>, StoreError> {
    Ok(Vec::new())
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
/// The runs are gathered per event (`Store::runs_of_event`) over the newest events that may
/// have had runs in that day (at most [`MAX_OPERATOR_EVENTS`]): a store method listing the
/// runs finished in an interval would answer in one query.
///
/// # Errors
///
/// [`StoreError`] when a read fails.
pub async fn operator_data(store: &Store) -> Result<OperatorData, StoreError> {
    let open = store
        .events_page(Some(EventStatus::Open), None, usize::MAX)
        .await?;
    let resolved = store
        .events_page(Some(EventStatus::Resolved), None, usize::MAX)
        .await?;
    // Runs happen between an event's creation and its cutoff: the events still taking runs
    // within a day of the newest creation hold the last day's runs.
    let newest_created = open
        .iter()
        .chain(&resolved)
        .map(|record| record.event.created_at)
        .max();
    let mut candidates: Vec<&EventRecord> = match newest_created {
        Some(newest) => open
            .iter()
            .chain(&resolved)
            .filter(|record| {
                record.event.cutoff + RUN_SLACK >= newest - TimeDelta::days(1)
                    || record.resolved_at.is_some_and(|at| at >= newest)
            })
            .collect(),
        None => Vec::new(),
    };
    candidates.sort_by_key(|record| std::cmp::Reverse(record.event.created_at));
    candidates.truncate(MAX_OPERATOR_EVENTS);
    let mut runs = Vec::new();
    for record in candidates {
        runs.extend(store.runs_of_event(&record.event.id).await?);
    }
    let day_end = runs.iter().map(|run| run.run.finished_at).max();
    if let Some(end) = day_end {
        let start = end - TimeDelta::days(1);
        runs.retain(|run| run.run.finished_at > start);
    }
    Ok(OperatorData {
        open_events: open.len(),
        resolved_events: resolved.len(),
        day_end,
        runs,
    })
}

/// The gateway calls a run made, from its recorded usage: `total_calls` as the runner writes
/// it, else the number of recorded calls; 0 for a shape it does not know.
#[must_use]
pub fn gateway_calls(usage: &Value) -> u64 {
    if let Some(total) = usage.get("total_calls").and_then(Value::as_u64) {
        return total;
    }
    usage
        .get("calls")
        .and_then(Value::as_array)
        .map_or(0, |calls| calls.len() as u64)
}

/// A run's spend by gateway service, from its recorded calls; what its total cost holds beyond
/// them (calls past the recorded ones) goes to `None`.
#[must_use]
pub fn spend_by_service(usage: &Value, cost_usd: f64) -> Vec<(Option<String>, u64, f64)> {
    let mut by_service: Vec<(Option<String>, u64, f64)> = Vec::new();
    let mut itemized = 0.0;
    if let Some(calls) = usage.get("calls").and_then(Value::as_array) {
        for call in calls {
            let service = call
                .get("service")
                .and_then(Value::as_str)
                .unwrap_or("<unknown>");
            let cost = call
                .get("cost_usd")
                .and_then(Value::as_f64)
                .filter(|cost| cost.is_finite() && *cost >= 0.0)
                .unwrap_or(0.0);
            itemized += cost;
            match by_service
                .iter_mut()
                .find(|(name, _, _)| name.as_deref() == Some(service))
            {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 += cost;
                }
                None => by_service.push((Some(service.to_owned()), 1, cost)),
            }
        }
    }
    let calls = gateway_calls(usage);
    let recorded: u64 = by_service.iter().map(|entry| entry.1).sum();
    let rest = cost_usd - itemized;
    // Rounding leaves crumbs below a billionth of a dollar; they are not spend.
    if rest > 1e-9 || calls > recorded {
        by_service.push((None, calls.saturating_sub(recorded), rest.max(0.0)));
    }
    by_service
}

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
