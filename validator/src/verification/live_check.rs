//! The daily check of active versions on their recent live events: originality against other
//! miners' active versions uploaded earlier, and concordance between a version's probe and
//! live predictions. A failed verdict stops the version earning weight (the daemon reads the
//! newest live verdicts when it assigns weights) until a new version activates.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::probe_set::{ProbeSet, market_probability};
use crate::event::Event;
use crate::event::Outcome;
use crate::integrity::{
    ConcordanceConfig, EventFeatures, OriginalityConfig, PublicSignals, check_concordance,
    check_originality_resolved,
};
use crate::store::{IntegrityCheck, LiveRun, NewVerdict, Store, StoreError, VerdictScope};

/// Fewer live events in common than this and two versions are not compared.
pub const MIN_EVENTS_COMPARED: usize = 20;

/// How the daily check runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCheckSettings {
    /// Each version's last live events compared (SPEC: 101).
    pub window: usize,
    /// The originality check.
    pub originality: OriginalityConfig,
    /// The concordance check.
    pub concordance: ConcordanceConfig,
}

/// What a daily check found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveCheckReport {
    /// Versions checked.
    pub versions: usize,
    /// Verdicts recorded.
    pub verdicts: usize,
    /// The versions that failed a check, with the check.
    pub failed: Vec<(i64, IntegrityCheck)>,
}

/// What the checks read of an event.
#[must_use]
pub fn features_of(event: &Event) -> EventFeatures {
    let lifetime = event.cutoff - event.created_at;
    EventFeatures {
        market_probability: market_probability(&event.metadata),
        // Milliseconds to days: exact enough for a feature.
        days_to_cutoff: lifetime.num_milliseconds() as f64 / 86_400_000.0,
        kind: event.kind.clone(),
        text_length: event.title.chars().count() + event.description.chars().count(),
    }
}

/// Checks every active version at `now` and records the verdicts.
///
/// # Errors
///
/// [`StoreError`] when the store cannot be read or written; nothing is recorded then.
pub async fn check_active_versions(
    store: &Store,
    probe: &ProbeSet,
    settings: &LiveCheckSettings,
    now: DateTime<Utc>,
) -> Result<LiveCheckReport, StoreError> {
    let active = store.active_versions().await?;
    let mut runs: HashMap<i64, Vec<LiveRun>> = HashMap::with_capacity(active.len());
    for version in &active {
        runs.insert(
            version.version,
            store.live_runs(version.version, settings.window).await?,
        );
    }
    // The benchmark agents' forecasts on those events are public signals, as on the probe set.
    let first_event = runs
        .values()
        .flatten()
        .map(|run| run.event.created_at)
        .min();
    let benchmarks = match first_event {
        Some(from) => store.benchmark_forecasts_since(from).await?,
        None => Vec::new(),
    };
    // Each version's predictions by event, built once: every later version is compared with it.
    let by_event: HashMap<i64, HashMap<&str, Option<f64>>> = runs
        .iter()
        .map(|(version, runs)| {
            let predictions = runs
                .iter()
                .map(|run| (run.event.id.as_str(), run.prediction))
                .collect();
            (*version, predictions)
        })
        .collect();
    let mut verdicts: Vec<(i64, NewVerdict)> = Vec::new();
    let mut report = LiveCheckReport {
        versions: active.len(),
        ..LiveCheckReport::default()
    };
    for (position, candidate) in active.iter().enumerate() {
        let Some(own) = runs.get(&candidate.version) else {
            continue;
        };
        if own.len() < MIN_EVENTS_COMPARED {
            continue;
        }
        // Active versions of other miners uploaded earlier: the first uploader keeps its place.
        let earlier: Vec<(i64, Vec<Option<f64>>)> = active[..position]
            .iter()
            .filter(|other| other.hotkey != candidate.hotkey)
            .filter_map(|other| {
                let theirs = by_event.get(&other.version)?;
                let aligned: Vec<Option<f64>> = own
                    .iter()
                    .map(|run| theirs.get(run.event.id.as_str()).copied().flatten())
                    .collect();
                let common = aligned.iter().filter(|value| value.is_some()).count();
                (common >= MIN_EVENTS_COMPARED).then_some((other.version, aligned))
            })
            .collect();
        let candidate_predictions: Vec<Option<f64>> =
            own.iter().map(|run| run.prediction).collect();
        let signals = PublicSignals {
            market: own
                .iter()
                .map(|run| market_probability(&run.event.metadata))
                .collect(),
            benchmarks: benchmarks
                .iter()
                .map(|(_, forecasts)| {
                    own.iter()
                        .map(|run| forecasts.get(&run.event.id).copied().flatten())
                        .collect()
                })
                .collect(),
        };
        let outcomes: Vec<Option<bool>> = own
            .iter()
            .map(|run| run.outcome.map(|outcome| outcome == Outcome::Yes))
            .collect();
        let verdict = match check_originality_resolved(
            &candidate_predictions,
            &earlier,
            &signals,
            &outcomes,
            &settings.originality,
        ) {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::warn!(
                    version = candidate.version,
                    error = &error as &dyn std::error::Error,
                    "live originality check skipped"
                );
                continue;
            }
        };
        let hotkey_of = |version: i64| {
            active
                .iter()
                .find(|active| active.version == version)
                .map_or_else(|| "?".to_owned(), |active| active.hotkey.clone())
        };
        let over = format!("on its last {} live events", own.len());
        let originality = super::originality::to_verdict(
            verdict,
            VerdictScope::Live,
            earlier.len(),
            hotkey_of,
            Some(&over),
        );
        if !originality.passed {
            report
                .failed
                .push((candidate.version, IntegrityCheck::Originality));
        }
        verdicts.push((candidate.version, originality));

        if !probe.is_empty() {
            let predictions = store.probe_predictions(candidate.version).await?;
            let probe_side: Vec<(EventFeatures, Option<f64>)> = probe
                .events()
                .iter()
                .filter_map(|record| {
                    let prediction = *predictions.get(&record.event.id)?;
                    Some((features_of(&record.event), prediction))
                })
                .collect();
            if !probe_side.is_empty() {
                let live_side: Vec<(EventFeatures, Option<f64>)> = own
                    .iter()
                    .map(|run| (features_of(&run.event), run.prediction))
                    .collect();
                let verdict =
                    match check_concordance(&probe_side, &live_side, &settings.concordance) {
                        Ok(verdict) => verdict,
                        Err(error) => {
                            tracing::warn!(
                                version = candidate.version,
                                error = &error as &dyn std::error::Error,
                                "live concordance check skipped"
                            );
                            continue;
                        }
                    };
                let concordance = NewVerdict {
                    check: IntegrityCheck::Concordance,
                    scope: VerdictScope::Live,
                    passed: !verdict.flagged,
                    matched_version: None,
                    statistic: Some(verdict.mean_statistic),
                    detail: verdict.detail.clone(),
                };
                if verdict.flagged {
                    report
                        .failed
                        .push((candidate.version, IntegrityCheck::Concordance));
                }
                verdicts.push((candidate.version, concordance));
            }
        }
    }
    report.verdicts = verdicts.len();
    store.record_live_verdicts(&verdicts, now).await?;
    Ok(report)
}
