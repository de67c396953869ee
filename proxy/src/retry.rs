//! Exponential backoff with full jitter, honouring Retry-After.

use std::time::Duration;

/// First wait before a retry.
const BASE: Duration = Duration::from_millis(100);
/// Longest single wait.
const MAX: Duration = Duration::from_secs(10);

/// How long to wait before attempt `attempt + 1` (`attempt` counts from 1).
///
/// Full jitter (a uniform draw below the exponential bound) spreads a storm
/// of clients apart; a Retry-After from the upstream is a floor.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let bound = BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX);
    let fraction = getrandom::u64().map_or(0.5, |r| (r >> 11) as f64 / (1u64 << 53) as f64);
    let jittered = bound.mul_f64(fraction);
    retry_after.map_or(jittered, |floor| jittered.max(floor))
}

/// Parse a Retry-After header: whole or fractional seconds (HTTP dates are
/// not used by the upstreams we speak to).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 1..20 {
            let wait = backoff(attempt, None);
            assert!(wait <= BASE.saturating_mul(1 << (attempt - 1).min(16)).min(MAX));
        }
        assert!(backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
