//! The host side of the gateway: the [`Gateway`] trait every implementation
//! (scripted, in-process proxy, HTTP) provides, and what passes through it.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sooth_protocol::{GatewayError, GatewayRequest, GatewayResponse};

/// Who is asking: passed with every gateway request so that the gateway can
/// attribute, cap and bound it.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Identifier of the run.
    pub run_id: String,
    /// The event being forecast.
    pub event_id: String,
    /// SHA-256 of the agent's component, hex.
    pub agent_hash: String,
    /// The miner the agent belongs to, when known.
    pub miner: Option<String>,
    /// When the run is killed; a gateway should not wait past it.
    pub deadline: Instant,
    /// The run token the validator minted for this run, presented to the
    /// gateway proxy; never visible to the agent.
    pub token: Option<String>,
}

impl RunContext {
    /// Time left before the run's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A gateway's answer with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayAnswer {
    /// The response, or why there is none.
    pub result: Result<GatewayResponse, GatewayError>,
    /// What the call cost in US dollars (0 on a cache hit).
    pub cost_usd: f64,
    /// Whether the answer came from the cache.
    pub cached: bool,
    /// Upstream retries made.
    pub retries: u32,
}

impl GatewayAnswer {
    /// A free, uncached answer.
    pub fn free(result: Result<GatewayResponse, GatewayError>) -> Self {
        Self {
            result,
            cost_usd: 0.0,
            cached: false,
            retries: 0,
        }
    }
}

/// The way out of the sandbox. Implementations: [`ScriptedGateway`]
/// (canned answers, for tests and miners' local checks), and the gateway
/// proxy's in-process and HTTP clients.
///
/// A gateway must be safe to call from many runs at once and must not wait
/// past [`RunContext::deadline`]; the runner cancels the call then anyway.
///
/// [`ScriptedGateway`]: crate::ScriptedGateway
pub trait Gateway: Send + Sync + 'static {
    /// Answer one request of one run.
    fn handle<'a>(
        &'a self,
        run: &'a RunContext,
        request: GatewayRequest,
    ) -> BoxFuture<'a, GatewayAnswer>;
}
