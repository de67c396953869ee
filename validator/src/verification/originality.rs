//! The originality check at verification: the new version's probe predictions against those of
//! other miners' earlier versions, aligned by probe event.

use crate::event::Outcome;
use crate::integrity::{
    IntegrityError, OriginalityConfig, OriginalityVerdict, PublicSignals,
    check_originality_resolved,
};
use crate::store::{EarlierProbe, IntegrityCheck, NewVerdict, ProbeRun, VerdictScope};

use super::probe_set::ProbeSet;

/// The originality verdict of the version whose probe runs are `runs`.
///
/// # Errors
///
/// [`IntegrityError`] for a configuration the check refuses.
pub(super) fn check(
    probe: &ProbeSet,
    runs: &[ProbeRun],
    earlier: &[EarlierProbe],
    benchmarks: &[Vec<Option<f64>>],
    config: &OriginalityConfig,
) -> Result<NewVerdict, IntegrityError> {
    let ids: Vec<&str> = probe
        .events()
        .iter()
        .map(|record| record.event.id.as_str())
        .collect();
    let candidate = aligned(probe, runs);
    let others: Vec<(i64, Vec<Option<f64>>)> = earlier
        .iter()
        .map(|version| {
            let aligned = ids
                .iter()
                .map(|id| version.predictions.get(*id).copied().flatten())
                .collect();
            (version.version, aligned)
        })
        .collect();
    let signals = PublicSignals {
        market: probe.market_probabilities(),
        benchmarks: benchmarks.to_vec(),
    };
    // Probe events have resolved: agreeing because both are right is not copying.
    let outcomes: Vec<Option<bool>> = probe
        .events()
        .iter()
        .map(|record| record.outcome.map(|outcome| outcome == Outcome::Yes))
        .collect();
    let verdict = check_originality_resolved(&candidate, &others, &signals, &outcomes, config)?;
    let hotkey_of = |version: i64| {
        earlier
            .iter()
            .find(|earlier| earlier.version == version)
            .map_or("?", |earlier| earlier.hotkey.as_str())
            .to_owned()
    };
    Ok(to_verdict(
        verdict,
        VerdictScope::Probe,
        others.len(),
        hotkey_of,
        None,
    ))
}

/// The verdict to record from the check's answer, compared with `earlier` versions (whose
/// miners `hotkey_of` names) `over` the events it says (`None`: the probe set).
pub(super) fn to_verdict(
    verdict: OriginalityVerdict<i64>,
    scope: VerdictScope,
    earlier: usize,
    hotkey_of: impl Fn(i64) -> String,
    over: Option<&str>,
) -> NewVerdict {
    match verdict {
        OriginalityVerdict::Copy {
            matched,
            statistic,
            detail,
            ..
        } => NewVerdict {
            check: IntegrityCheck::Originality,
            scope,
            passed: false,
            matched_version: Some(matched),
            statistic: Some(statistic),
            detail: format!(
                "not original{}: a copy of version {matched} of miner {}, uploaded earlier \
                 ({detail})",
                over.map(|over| format!(" {over}")).unwrap_or_default(),
                hotkey_of(matched)
            ),
        },
        other => NewVerdict {
            check: IntegrityCheck::Originality,
            scope,
            passed: true,
            matched_version: None,
            statistic: None,
            detail: match over {
                Some(over) => format!("{over}: {}", describe(&other, earlier)),
                None => describe(&other, earlier),
            },
        },
    }
}

/// The scored predictions of `runs` in the probe set's order; `None` for a failed or missing
/// run.
pub(super) fn aligned(probe: &ProbeSet, runs: &[ProbeRun]) -> Vec<Option<f64>> {
    let by_event: std::collections::HashMap<&str, Option<f64>> = runs
        .iter()
        .map(|run| {
            let scored = run
                .prediction
                .filter(|value| value.is_finite())
                .map(|value| crate::scoring::scored_prediction(Some(value)).value);
            (run.event_id.as_str(), scored)
        })
        .collect();
    probe
        .events()
        .iter()
        .map(|record| by_event.get(record.event.id.as_str()).copied().flatten())
        .collect()
}

/// A passing verdict in words.
pub(super) fn describe(verdict: &OriginalityVerdict<i64>, earlier: usize) -> String {
    match verdict {
        OriginalityVerdict::Original {
            strongest: Some((version, statistic)),
            compared,
        } => format!(
            "original: compared with {compared} of {earlier} earlier versions of other miners; \
             the closest, version {version}, at {statistic:.2}"
        ),
        OriginalityVerdict::Original { compared, .. } => format!(
            "original: compared with {compared} of {earlier} earlier versions of other miners"
        ),
        OriginalityVerdict::PublicSignalOnly {
            residual_rms,
            tolerance,
        } => format!(
            "public-signal only: its predictions depart from the public signals by \
             {residual_rms:.4} (root mean square), under {tolerance}; compared with no one"
        ),
        OriginalityVerdict::TooFewPredictions {
            predictions,
            required,
        } => format!(
            "not judged: {predictions} of its runs gave a prediction, {required} are needed"
        ),
        OriginalityVerdict::Copy { detail, .. } => detail.clone(),
    }
}
