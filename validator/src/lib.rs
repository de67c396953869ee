//! The sooth validator: turns events and agents into scored forecasts and
//! weights.
//!
//! This crate owns the competition's rules (the rules table of `SPEC.md`) and the daemon that
//! applies them: storage, clock, event sources, activation, scheduling, resolution, scoring,
//! weights and registration, live or replayed on a simulated clock. It runs agents only through
//! `sooth-runner` and mints run tokens in `sooth-proxy`'s format; it must not implement a
//! sandbox nor talk to upstream services itself.
//!
//! - [`scoring`]: imputation, clipping, Brier scores, the 101-event window,
//!   the leaderboard and winner-take-all weights;
//! - [`activation`]: which agent version is active at an instant (daily
//!   activation at 00:00 UTC);
//! - [`registration`]: slots, immunity and deregistration;
//! - [`event`]: the event model (event, outcome, resolution) and its validation;
//! - [`sources`]: where events and resolutions come from (JSON Lines files and watched
//!   directories, an HTTP feed with a cursor, prediction-market listings);
//! - [`clock`]: the clock the daemon reads, real or simulated;
//! - [`store`]: the daemon's storage (sqlx on SQLite): miners, agent versions, events, runs,
//!   scores and weights history;
//! - [`api`]: the daemon's read-only HTTP API (events, runs, miners, leaderboard, weights);
//! - [`backtest`]: replaying an event file through the daemon on a simulated clock;
//! - [`daemon`]: the daemon's step (activation, runs, scoring and weights), driven by a live
//!   service or a backtest;
//! - [`executor`]: the seam between scheduling and running agents;
//! - [`sandbox`]: the real executor, agents in `sooth-runner`'s sandbox, and
//!   [`run_tokens`], the run tokens it hands the gateway;
//! - [`config`], [`intake`] and [`service`]: the live validator's configuration, its sources
//!   with their saved progress, and its wiring (`sooth validator run`);
//! - [`synthetic`]: a seeded synthetic world (hidden truths, noisy market prices) for the
//!   demo and benchmarks;
//! - [`weights`]: where weights go once computed (a JSON file; a chain client later).

pub mod activation;
pub mod api;
pub mod backtest;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod event;
pub mod executor;
pub mod intake;
pub mod registration;
pub mod run_tokens;
pub mod sandbox;
pub mod scoring;
pub mod service;
pub mod sources;
pub mod store;
pub mod synthetic;
pub mod weights;
