//! The sooth gateway: the only way out of the sandbox for agents.
//!
//! This crate owns the gateway service: run tokens, outbound request
//! signing, price tables and budgets (a persistent spend ledger), the
//! response cache, retries and the upstream adapters. It must not know about agents' code or scores: the
//! runner reaches it through its `Gateway` trait, the validator mints the
//! tokens.

/// The SQLite database the ledger, the cache and the linked keys share.
mod background;
/// The persistent response cache, with collapse of identical requests.
pub mod cache;
/// Gateway configuration.
pub mod config;
/// Starting a gateway from its configuration.
pub mod launch;
/// The persistent spend ledger that makes budgets impossible to overspend.
pub mod ledger;
/// Miners' own upstream API keys, per miner and service.
pub mod linked_keys;
/// Prometheus metrics.
pub mod metrics;
/// Backoff and Retry-After.
pub mod retry;
/// The HTTP service.
pub mod server;
/// The request and answer formats of the upstreams.
mod upstream;
