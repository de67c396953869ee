//! UTC days as the ledger names them (`YYYY-MM-DD`): the per-day caps are
//! kept per such day.

use std::time::{SystemTime, UNIX_EPOCH};

use super::LedgerError;

/// Accepts `YYYY-MM-DD` with a month 01-12 and a day 01-31 (so that every
/// caller names a day the same way and the per-day caps are not split).
pub(super) fn check_day(day: &str) -> Result<(), LedgerError> {
    let b = day.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let number =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && (1..=12).contains(&number(5..7))
        && (1..=31).contains(&number(8..10));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidField {
            field: "day",
            value: day.to_owned(),
        })
    }
}

/// The UTC day of `t` as `YYYY-MM-DD`, the form [`Reservation::day`](super::Reservation::day) takes.
/// Times before 1970 count as 1970-01-01.
pub fn utc_day(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's UTC day as `YYYY-MM-DD`.
pub fn utc_today() -> String {
    utc_day(SystemTime::now())
}
