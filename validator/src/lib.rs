//! The sooth validator: turns events and agents into scored forecasts and
//! weights.
//!
//! This crate owns the competition's rules (the rules table of `SPEC.md`)
//! and, as they land, the daemon's storage, clock, event sources and
//! scheduling. It must not run agents itself (that is `sooth-runner`) nor
//! talk to upstream services (that is `sooth-proxy`).
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
//! - [`api`]: the daemon's read-only HTTP API (events, runs, miners, leaderboard, weights).

pub mod activation;
pub mod api;
pub mod clock;
pub mod event;
pub mod registration;
pub mod scoring;
pub mod sources;
pub mod store;
