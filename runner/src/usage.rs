//! The record of a run's gateway calls, bounded whatever the agent does: the
//! counts and the cost are exact, the details are kept for the first calls
//! only, and past the run's ceiling calls are refused without reaching the
//! gateway.

use serde::{Deserialize, Serialize};

/// One gateway call of a run, as recorded with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayCall {
    /// `chat`, `search`, the named service, or `<invalid>` for a name the
    /// host refused (the name itself is not kept: it may be megabytes).
    pub service: String,
    /// SHA-256 of the canonical request, hex.
    pub request_hash: String,
    /// `ok` or the error kind.
    pub status: String,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Served from cache.
    pub cached: bool,
    /// Upstream retries.
    pub retries: u32,
    /// Wall time of the call, milliseconds.
    pub duration_ms: f64,
}

/// All gateway calls of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayUsage {
    /// The first calls, in order: at most the runner's
    /// `max_recorded_calls`; the rest are only counted.
    pub calls: Vec<GatewayCall>,
    /// Every call the agent made, recorded in detail or not, forwarded or
    /// refused by the host, including one the end of the run cut short
    /// (which has no details: it has no outcome).
    #[serde(default)]
    pub total_calls: u64,
    /// Calls the host refused without asking the gateway: a bad service
    /// name, a request over the size limit, a body that is not JSON, or a
    /// call past the run's ceiling.
    #[serde(default)]
    pub refused_calls: u64,
    /// What all the calls cost, in US dollars.
    #[serde(default)]
    pub total_cost_usd: f64,
}

impl GatewayUsage {
    /// Total cost of the run's calls in US dollars.
    pub fn cost_usd(&self) -> f64 {
        self.total_cost_usd
    }

    /// Number of calls the agent made, recorded in detail or not.
    pub fn call_count(&self) -> u64 {
        self.total_calls
    }

    /// Number of calls made but not recorded in detail.
    pub fn unrecorded_calls(&self) -> u64 {
        self.total_calls
            .saturating_sub(u64::try_from(self.calls.len()).unwrap_or(u64::MAX))
    }
}

/// Keeps one run's [`GatewayUsage`] within its bounds.
pub(crate) struct CallLog {
    usage: GatewayUsage,
    max_calls: u64,
    max_recorded: usize,
}

/// Why the host refused a call before it reached the gateway.
pub(crate) struct OverCeiling {
    pub(crate) limit: u64,
}

impl CallLog {
    pub(crate) fn new(max_calls: u32, max_recorded: u32) -> Self {
        Self {
            usage: GatewayUsage::default(),
            max_calls: u64::from(max_calls),
            max_recorded: max_recorded as usize,
        }
    }

    /// Counts one call; refuses it when the run already made as many as
    /// it may (the caller then records the refusal).
    pub(crate) fn admit(&mut self) -> Result<(), OverCeiling> {
        self.usage.total_calls = self.usage.total_calls.saturating_add(1);
        if self.usage.total_calls > self.max_calls {
            return Err(OverCeiling {
                limit: self.max_calls,
            });
        }
        Ok(())
    }

    /// Marks an admitted call as refused by the host.
    pub(crate) fn refused(&mut self) {
        self.usage.refused_calls = self.usage.refused_calls.saturating_add(1);
    }

    /// Whether the next finished call's details will be kept, so that a
    /// caller computes them (a request hash, say) only then.
    pub(crate) fn keeps_details(&self) -> bool {
        self.usage.calls.len() < self.max_recorded
    }

    /// Adds a finished call's cost, and its details while there is room.
    pub(crate) fn finished(&mut self, cost_usd: f64, details: impl FnOnce() -> GatewayCall) {
        self.usage.total_cost_usd += cost_usd;
        if self.keeps_details() {
            self.usage.calls.push(details());
        }
    }

    pub(crate) fn take(&mut self) -> GatewayUsage {
        std::mem::take(&mut self.usage)
    }
}
