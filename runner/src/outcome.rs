//! What a run yields.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::logs::CapturedLogs;
use crate::usage::GatewayUsage;

/// How a run ended. Anything but [`RunOutcome::Prediction`] is a failure and
/// is imputed 0.5 at scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// A valid forecast.
    Prediction {
        /// The probability the agent returned.
        raw: f64,
        /// The same, clipped to [0, 1].
        probability: f64,
        /// The agent's explanation, truncated.
        reasoning: Option<String>,
    },
    /// The run passed its wall-clock limit and was killed.
    Timeout {
        /// The limit it passed.
        limit_ms: u64,
    },
    /// The guest trapped (panic, abort, stack overflow, bad memory access...).
    Trap {
        /// What happened, as wasmtime describes it.
        message: String,
    },
    /// The guest answered, but not with a usable forecast.
    InvalidOutput {
        /// Why it is unusable.
        reason: String,
    },
    /// The guest tried to use more memory than its cap and failed because of it.
    MemoryExceeded {
        /// The cap, in bytes.
        limit_bytes: u64,
    },
    /// The component could not be instantiated.
    InstantiationFailure {
        /// Why.
        reason: String,
    },
}

impl RunOutcome {
    /// The clipped probability of a valid forecast.
    pub fn probability(&self) -> Option<f64> {
        match self {
            Self::Prediction { probability, .. } => Some(*probability),
            _ => None,
        }
    }

    /// A short name of the outcome: `ok`, `timeout`, `trap`, ...
    pub fn status(&self) -> &'static str {
        match self {
            Self::Prediction { .. } => "ok",
            Self::Timeout { .. } => "timeout",
            Self::Trap { .. } => "trap",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::MemoryExceeded { .. } => "memory_exceeded",
            Self::InstantiationFailure { .. } => "instantiation_failure",
        }
    }

    /// A one-line explanation of a failure; `None` for a prediction.
    pub fn reason(&self) -> Option<String> {
        match self {
            Self::Prediction { .. } => None,
            Self::Timeout { limit_ms } => Some(format!("killed after the {limit_ms} ms limit")),
            Self::Trap { message } => Some(message.clone()),
            Self::InvalidOutput { reason } => Some(reason.clone()),
            Self::MemoryExceeded { limit_bytes } => {
                Some(format!("memory limit of {limit_bytes} bytes exceeded"))
            }
            Self::InstantiationFailure { reason } => Some(reason.clone()),
        }
    }
}

/// The full record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Wall time from the start of instantiation to the end.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    /// stdout, stderr and log lines.
    pub logs: CapturedLogs,
    /// Gateway calls made.
    pub gateway: GatewayUsage,
}

/// Clip a finite probability to [0, 1]; `None` for NaN or infinities.
pub fn clip_probability(raw: f64) -> Option<f64> {
    raw.is_finite().then(|| raw.clamp(0.0, 1.0))
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}
