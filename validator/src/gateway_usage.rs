//! What a run's recorded gateway usage says: how many calls it made and what it spent by
//! service. The usage is the runner's report as stored (`validator_runs.gateway_usage`); read
//! for the pages and the metrics, never trusted for money (the gateway's ledger is).

use serde_json::Value;

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

/// A run's spend by gateway service, from its recorded calls, as (service, calls, USD); what
/// its total cost holds beyond them (calls past the recorded ones) goes to `None`.
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
