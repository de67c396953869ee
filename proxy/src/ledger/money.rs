//! Money: the API speaks `f64` US dollars, the ledger counts integer
//! micro-dollars, rounded in the safe direction at the boundary.

use super::LedgerError;

/// Micro-dollars per US dollar.
pub(super) const MICROS_PER_USD: f64 = 1_000_000.0;

/// The largest amount or cap accepted, in USD (far below where micro-dollars
/// would overflow an `i64`).
pub const MAX_USD: f64 = 1e9;

/// How close (in micro-dollars) a converted amount must be to a whole number
/// of micro-dollars to be taken as that number rather than rounded. Absorbs
/// binary floating-point noise: `0.000123 * 1e6` is `123.00000000000001`,
/// which must reserve 123 micro-dollars, not 124, and a cap of `1.001 * 1e6`
/// (`1000999.9999999999`) is 1,001,000, not 1,000,999.
const ROUNDING_SLACK_MICROS: f64 = 1e-3;

/// Validates an amount or cap in USD and returns it in micro-dollars.
fn checked_micros(field: &'static str, usd: f64) -> Result<f64, LedgerError> {
    if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
        return Err(LedgerError::InvalidAmount { field, value: usd });
    }
    Ok(usd * MICROS_PER_USD)
}

/// USD to micro-dollars, rounding up (amounts to reserve).
pub(super) fn usd_to_micros_up(field: &'static str, usd: f64) -> Result<i64, LedgerError> {
    let m = checked_micros(field, usd)?;
    let whole = m.round();
    Ok(if (m - whole).abs() <= ROUNDING_SLACK_MICROS {
        whole as i64
    } else {
        m.ceil() as i64
    })
}

/// USD to micro-dollars, rounding down (caps).
pub(super) fn usd_to_micros_down(field: &'static str, usd: f64) -> Result<i64, LedgerError> {
    let m = checked_micros(field, usd)?;
    let whole = m.round();
    Ok(if (m - whole).abs() <= ROUNDING_SLACK_MICROS {
        whole as i64
    } else {
        m.floor() as i64
    })
}

pub(super) fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD
}
