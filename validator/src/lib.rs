//! The sooth validator: turns events and agents into scored forecasts and
//! weights.
//!
//! This crate owns the competition's rules (the rules table of `SPEC.md`) and the daemon that
//! applies them: storage, clock, event sources, activation, scheduling, resolution, scoring,
//! weights and registration, live or replayed on a simulated clock. It runs agents only through
//! `sooth-runner` and mints run tokens in `sooth-protocol`'s format. It must not implement a
//! sandbox, talk to upstream services itself nor start a gateway: the live daemon's gateway
//! comes from its caller ([`service::run`] takes it; `sooth validator run` chooses it).
//!
//! Its rooms, one concern each:
//!
//! - `event`: the event model ([`Event`], [`Outcome`], [`Resolution`]) and the one rule of
//!   what a well-formed event is;
//! - `activation`: which agent version is active at an instant (daily activation at
//!   00:00 UTC);
//! - `scoring`: imputation, clipping, Brier scores, the 101-event window, the leaderboard and
//!   winner-take-all weights;
//! - `registration`: slots, immunity and deregistration;
//! - `executor`: the seam between scheduling and running agents ([`RunJob`],
//!   [`ExecutedRun`], [`RunExecutor`]);
//! - `sandbox`: the real executor, agents in `sooth-runner`'s sandbox, and `run_tokens`, the
//!   run tokens it hands the gateway;
//! - `daemon`: the daemon's step (activation, runs, scoring and weights), driven by a live
//!   service or a backtest;
//! - `clock`: the clock the daemon reads, real or simulated; `database_clock`, the
//!   database's clock as a runner worker reads it;
//! - `weights`: where weights go once computed (a JSON file; a chain client later);
//! - `components`: agents' components on disk, content-addressed, and `shared_components`,
//!   those a runner worker fetches from the store;
//! - `uploads`: the upload desk, the rules of a miner's signed request (signature,
//!   registration, size, rate) before its upload is queued;
//! - [`linked_keys`]: miners' own service keys, sealed at rest and handed to the gateway
//!   through a sink the caller provides (the gateway's cap is higher for them);
//! - [`verification`]: the verification queue's workers (duplicate, compile and contract,
//!   probe runs, originality) and the probe set;
//! - `backtest`: replaying an event file through the daemon on a simulated clock;
//! - `config` and `intake`: the live validator's configuration, and its sources with their
//!   saved progress;
//! - [`service`]: the live validator's wiring (`sooth validator run`);
//! - [`sources`]: where events and resolutions come from (JSON Lines files and watched
//!   directories, an HTTP feed with a cursor, prediction-market listings);
//! - [`store`]: the daemon's storage (sqlx on SQLite): miners, agent versions, events, runs,
//!   scores and weights history;
//! - [`api`]: the daemon's HTTP API (events, runs, miners, leaderboard, weights, downloads,
//!   miners' signed requests);
//! - [`pages`]: the leaderboard's web pages (server-rendered HTML, inline SVG charts), served
//!   beside the API or written as a static site;
//! - [`metrics`]: the validator's Prometheus metrics (`/metrics`);
//! - [`meta`]: the benchmark models' statistics: the rank-gauss ensemble, the meta-model's
//!   pools and contribution (MMC);
//! - [`tables`]: tables of named columns read from and written to CSV and Parquet (downloads,
//!   `sooth ensemble`);
//! - [`synthetic`]: a seeded synthetic world (hidden truths, noisy market prices) for the
//!   demo and benchmarks.

mod activation;
pub mod api;
mod backtest;
mod causes;
mod clock;
mod components;
mod config;
mod daemon;
mod database_clock;
mod event;
mod executor;
mod gateway_usage;
mod intake;
pub mod integrity;
mod linalg;
pub mod linked_keys;
pub mod meta;
pub mod metrics;
pub mod pages;
mod registration;
mod run_tokens;
mod sandbox;
mod scoring;
pub mod service;
mod shared_components;
pub mod sources;
pub mod store;
pub mod synthetic;
pub mod tables;
#[cfg(test)]
mod test_support;
mod uploads;
pub mod verification;
mod wakeups;
mod weights;
pub mod worker;

pub use activation::AgentVersion;
pub use backtest::{
    BacktestError, BacktestReport, BacktestRow, Progress, Replay, STORE_FILE, Simulation,
    start_instant,
};
pub use clock::{Clock, ClockError, SimulatedClock, Sleep, SystemClock};
pub use components::{ComponentFileError, Components};
pub use config::{
    ApiConfig, BenchmarksConfig, CompetitionConfig, ConfigError, GatewayConfig, LinkedKeysConfig,
    RegistrationConfig, SchedulingConfig, SourcesConfig, UploadsConfig, ValidatorConfig,
    VerificationConfig, WeightsConfig, WorkerConfig,
};
pub use daemon::{Daemon, DaemonError, DaemonSettings, Ingested, StepReport};
pub use database_clock::DatabaseClock;
pub use event::{BINARY, DEFAULT_LIFETIME, Event, EventError, MAX_ID_BYTES, Outcome, Resolution};
pub use executor::{ExecutedRun, Execution, RunError, RunExecutor, RunJob, RunStatus};
pub use intake::{Intake, IntakeError};
pub use registration::{
    DEFAULT_IMMUNITY, DEFAULT_SLOTS, RegistrationDecision, RegistrationError, RegistrationRules,
};
pub use run_tokens::SignedRunTokens;
pub use sandbox::{AdmitError, RunTokens, SandboxExecutor};
pub use scoring::{
    LeaderboardRow, Miner, ResolvedEvent, SCORING_WINDOW, Score, ScoredEvent, ScoringError,
    assign_winner_take_all, leaderboard, leaderboard_over, scoring_window,
};
pub use shared_components::FetchError;
pub use uploads::{DeskError, DeskSettings, UploadAccepted, UploadDesk};
pub use weights::{
    JsonFileWeights, MinerWeight, NoWeightSetter, WeightSetter, Weights, WeightsError,
};
