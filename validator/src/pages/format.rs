//! The pages' number and instant formats: one per quantity, the same on every page, each
//! number with its exact value beside its text (`data-value`), so that a program can read a
//! page as precisely as the JSON API.

use chrono::{DateTime, Utc};

/// A number as shown, with its exact value for programs (empty when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Num {
    /// What a reader sees.
    pub text: String,
    /// The exact value (Rust's shortest round-trip form), or empty.
    pub value: String,
}

impl Num {
    pub(super) fn none() -> Self {
        Self {
            text: "—".to_owned(),
            value: String::new(),
        }
    }

    fn of(value: f64, text: String) -> Self {
        if value.is_finite() {
            Self {
                text,
                value: value.to_string(),
            }
        } else {
            Self {
                text: value.to_string(),
                value: value.to_string(),
            }
        }
    }
}

/// A fixed-decimals form that stays short for absurd magnitudes (an agent's raw prediction
/// may be anything finite).
fn fixed(value: f64, decimals: usize) -> String {
    if value.is_finite() && value.abs() >= 1e6 {
        format!("{value:.3e}")
    } else {
        format!("{value:.decimals$}")
    }
}

/// A Brier score or a mean of them: 4 decimals.
#[must_use]
pub fn brier(value: Option<f64>) -> Num {
    value.map_or_else(Num::none, |value| Num::of(value, fixed(value, 4)))
}

/// A probability (a prediction, a frequency): 4 decimals.
#[must_use]
pub fn probability(value: Option<f64>) -> Num {
    brier(value)
}

/// A weight: 4 decimals.
#[must_use]
pub fn weight(value: f64) -> Num {
    Num::of(value, fixed(value, 4))
}

/// A share shown as a percentage with one decimal; the value stays the share.
#[must_use]
pub fn share(value: Option<f64>) -> Num {
    value.map_or_else(Num::none, |value| {
        Num::of(value, format!("{}%", fixed(value * 100.0, 1)))
    })
}

/// A contribution (MMC): signed, 4 decimals.
#[must_use]
pub fn signed(value: Option<f64>) -> Num {
    value.map_or_else(Num::none, |value| {
        let text = if value.is_finite() && value.abs() < 1e6 {
            format!("{value:+.4}")
        } else {
            fixed(value, 4)
        };
        Num::of(value, text)
    })
}

/// A count.
#[must_use]
pub fn count(value: u64) -> Num {
    Num {
        text: value.to_string(),
        value: value.to_string(),
    }
}

/// A count of items in memory.
pub(super) fn count_of(value: usize) -> Num {
    count(u64::try_from(value).unwrap_or(u64::MAX))
}

/// US dollars: 4 decimals.
#[must_use]
pub fn usd(value: f64) -> Num {
    Num::of(value, format!("${}", fixed(value, 4)))
}

/// A duration in milliseconds, shown in seconds with 2 decimals; the value stays in ms.
#[must_use]
pub fn duration(ms: u64) -> Num {
    // Precision loss past 2^53 ms (285,000 years) does not matter for display.
    #[allow(clippy::cast_precision_loss)]
    let seconds = ms as f64 / 1000.0;
    Num {
        text: format!("{seconds:.2} s"),
        value: ms.to_string(),
    }
}

/// An instant as shown: minutes, UTC.
#[must_use]
pub fn instant(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
