//! Each miner's contribution (MMC) over a scoring window: its eras are the UTC days the
//! window's events resolved on.

use chrono::NaiveDate;

use super::MetaError;
use super::mmc::MetaEra;
use crate::scoring::{ResolvedEvent, scored_prediction};

/// Each miner's MMC over `events` (predictions indexed like the miners), against `meta`, the
/// meta-model's forecast on each event (indexed like `events`): the mean over the eras (UTC
/// days of resolution) of its per-era MMC, each era weighing the same. A missing forecast,
/// a miner's or the meta-model's, counts as the imputed 0.5, as at scoring. `None` for every
/// miner when there are no events.
///
/// # Errors
///
/// [`MetaError::LengthMismatch`] when `meta` is not one per event or an event's predictions
/// are not one per miner; [`MetaError::NonFinite`] for a value that is not finite.
pub fn contributions(
    miners: usize,
    events: &[ResolvedEvent],
    meta: &[Option<f64>],
) -> Result<Vec<Option<f64>>, MetaError> {
    if meta.len() != events.len() {
        return Err(MetaError::LengthMismatch {
            what: "the meta-model's forecasts",
            expected: events.len(),
            found: meta.len(),
        });
    }
    if let Some(event) = events.iter().find(|e| e.predictions.len() != miners) {
        return Err(MetaError::LengthMismatch {
            what: "an event's predictions",
            expected: miners,
            found: event.predictions.len(),
        });
    }
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&index| (day(&events[index]), index));
    let mut sums = vec![0.0; miners];
    let mut eras = 0_usize;
    let mut column = Vec::new();
    for era in order.chunk_by(|&a, &b| day(&events[a]) == day(&events[b])) {
        let pooled: Vec<f64> = era
            .iter()
            .map(|&index| scored_prediction(meta[index]).value)
            .collect();
        let outcomes: Vec<f64> = era
            .iter()
            .map(|&index| f64::from(events[index].outcome.as_u8()))
            .collect();
        let prepared = MetaEra::new(&pooled, &outcomes)?;
        for (miner, sum) in sums.iter_mut().enumerate() {
            column.clear();
            column.extend(
                era.iter()
                    .map(|&index| scored_prediction(events[index].predictions[miner]).value),
            );
            *sum += prepared.contribution(&column)?;
        }
        eras += 1;
    }
    if eras == 0 {
        return Ok(vec![None; miners]);
    }
    Ok(sums
        .into_iter()
        .map(|sum| Some(sum / eras as f64))
        .collect())
}

fn day(event: &ResolvedEvent) -> NaiveDate {
    event.resolved_at.date_naive()
}
