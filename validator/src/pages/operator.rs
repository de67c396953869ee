//! The operator's page model: events by status, the runs of the last day by outcome, their
//! durations' percentiles, and gateway spend by service.

use askama::Template;

use super::format::{Num, count, count_of, duration, instant, usd};
use super::links::Links;
use super::models::Chrome;
use super::queries::{OperatorData, spend_by_service};

/// `/operator`.
#[derive(Debug, Clone, Template)]
#[template(path = "operator.html")]
pub struct OperatorPage {
    /// Title and links.
    pub chrome: Chrome,
    /// Open events.
    pub open_events: Num,
    /// Resolved events.
    pub resolved_events: Num,
    /// The day shown, `from – to`, if there were runs.
    pub day: Option<String>,
    /// Runs of the day.
    pub runs: Num,
    /// Runs of the day by status, most frequent first.
    pub statuses: Vec<(String, Num)>,
    /// Duration percentiles of the day's runs: p50, p90, p99, max.
    pub durations: Vec<(&'static str, Num)>,
    /// Gateway spend of the day's runs by service, largest first.
    pub spend: Vec<SpendRow>,
    /// Total spend of the day's runs.
    pub total_cost: Num,
}

/// A service's spend.
#[derive(Debug, Clone)]
pub struct SpendRow {
    /// The service (or a note for calls not itemized).
    pub service: String,
    /// Calls.
    pub calls: Num,
    /// Cost.
    pub cost: Num,
}

/// The nearest-rank `quantile` of sorted `values`.
fn percentile(sorted: &[u64], quantile: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // ceil(q * n) is in 1..=n for q in (0, 1]: the rank, 1-based.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

impl OperatorPage {
    /// The page of `data`.
    #[must_use]
    pub fn new(data: OperatorData, links: Links) -> Self {
        let mut statuses: Vec<(String, u64)> = Vec::new();
        let mut spend: Vec<(Option<String>, u64, f64)> = Vec::new();
        let mut durations: Vec<u64> = Vec::with_capacity(data.runs.len());
        let mut total_cost = 0.0;
        for run in &data.runs {
            let executed = &run.run.executed;
            let status = executed.status.as_str();
            match statuses.iter_mut().find(|entry| entry.0 == status) {
                Some(entry) => entry.1 += 1,
                None => statuses.push((status.to_owned(), 1)),
            }
            durations.push(executed.duration_ms);
            total_cost += executed.cost_usd;
            for (service, calls, cost) in
                spend_by_service(&executed.gateway_usage, executed.cost_usd)
            {
                match spend.iter_mut().find(|entry| entry.0 == service) {
                    Some(entry) => {
                        entry.1 += calls;
                        entry.2 += cost;
                    }
                    None => spend.push((service, calls, cost)),
                }
            }
        }
        statuses.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        spend.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        durations.sort_unstable();
        let quantiles: [(&'static str, f64); 4] =
            [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)];
        Self {
            chrome: Chrome::new("sooth operator", links),
            open_events: count_of(data.open_events),
            resolved_events: count_of(data.resolved_events),
            day: data.day_end.map(|end| {
                format!(
                    "{} – {}",
                    instant(end - chrono::TimeDelta::days(1)),
                    instant(end)
                )
            }),
            runs: count_of(data.runs.len()),
            statuses: statuses
                .into_iter()
                .map(|(status, n)| (status, count(n)))
                .collect(),
            durations: quantiles
                .iter()
                .map(|&(label, q)| {
                    (
                        label,
                        percentile(&durations, q).map_or_else(Num::none, duration),
                    )
                })
                .collect(),
            spend: spend
                .into_iter()
                .map(|(service, calls, cost)| SpendRow {
                    service: service.unwrap_or_else(|| "(calls not itemized)".to_owned()),
                    calls: count(calls),
                    cost: usd(cost),
                })
                .collect(),
            total_cost: usd(total_cost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), Some(50));
        assert_eq!(percentile(&values, 0.99), Some(99));
        assert_eq!(percentile(&values, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.9), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
