//! The sooth host sandbox: runs one untrusted forecasting agent, compiled to a
//! WebAssembly component, on one event, and turns whatever it does into a
//! [`RunReport`].
//!
//! This crate owns the wasmtime engine and everything around a run: the
//! compile cache, import checks, resource limits, the deterministic clock and
//! random numbers, captured logs, the host side of the WIT contract and the
//! [`Gateway`] trait through which agents reach outside services, with its
//! HTTP and scripted clients. What passes between a run and the gateway
//! (requests, answers, errors, the event an agent sees) is `sooth-protocol`'s,
//! re-exported here. It must not know about miners' scores or storage, nor
//! serve HTTP: the validator and the command line build on it, and the
//! gateway does not link it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sooth_runner::{AgentEvent, RunSpec, Runner, RunnerConfig, ScriptedGateway};
//!
//! let runner = Runner::new(RunnerConfig::default())?;
//! let agent = runner.load(&std::fs::read("agent.wasm")?).await?;
//! let event = AgentEvent::new("e1", "Will it rain in Paris tomorrow?", 1_760_000_000);
//! let gateway = Arc::new(ScriptedGateway::empty());
//! let report = runner.run(&agent, &event, &RunSpec::new("run-1", gateway)).await?;
//! println!("{:?} in {:?}", report.outcome, report.duration);
//! # Ok(()) }
//! ```

mod agent;
mod cache;
mod clock;
mod compile;
mod config;
mod engine;
mod exports;
mod gateway;
mod host;
mod http_gateway;
mod imports;
mod limits;
mod logs;
mod outcome;
mod runner;
mod scripted;
mod truncate;
mod usage;

pub use agent::{Agent, LoadError, check_component_header, content_hash};
pub use compile::{CompileIsolation, compile_worker_main};
pub use config::{ConfigError, RunnerConfig};
pub use gateway::{Gateway, GatewayAnswer, RunContext};
pub use http_gateway::{HttpGateway, HttpGatewayError};
// What passes between a run and the gateway is the protocol's; the runner
// re-exports it so that a host needs one crate to run agents.
pub use logs::CapturedLogs;
pub use outcome::{RunOutcome, RunReport, clip_probability};
pub use runner::{RunSpec, Runner, RunnerError};
pub use scripted::{ScriptError, ScriptedGateway};
pub use sooth_protocol::{
    AgentEvent, CACHE_HEADER, COST_HEADER, ChatMessage, ChatRequest, ChatResponse, EventError,
    GatewayError, GatewayRequest, GatewayResponse, MAX_SERVICE_NAME_LEN, RETRIES_HEADER,
    SearchRequest, SearchResponse, SearchResult, ServiceNameError, TokenUsage, check_service_name,
};
pub use usage::{GatewayCall, GatewayUsage};
