//! The sooth gateway: the only way out of the sandbox for agents.
//!
//! This crate owns the gateway service: it checks the run tokens the
//! validator mints, signs what it sends upstream, prices every call and
//! keeps each run and each miner's day under its cap in a persistent spend
//! ledger, answers identical requests once from a response cache, uses the
//! API keys miners link instead of the operator's, retries what may
//! succeed, and speaks the upstreams' formats. It must not know agents'
//! code, scores or the sandbox: the runner reaches it over HTTP with the
//! bodies and headers of `sooth_protocol`, and the validator only mints
//! the tokens.
//!
//! Rooms:
//!
//! * `server/`: the HTTP service (state, router, one file per route, token
//!   checks, reservations, the cache in front of a route, forwarding with
//!   retries);
//! * `upstream/`: the upstreams' request and answer formats (OpenAI chat,
//!   Desearch search);
//! * `ledger/`: the spend ledger (books in memory, the journal that writes
//!   them, money in micro-dollars; `shared/`: gateways sharing one ledger
//!   in PostgreSQL);
//! * `cache/`: the response cache (key, single-flight, memory front, file,
//!   background writer and key index);
//! * `linked_keys.rs`: miners' own upstream API keys;
//! * `config.rs`: the gateway's configuration file;
//! * `launch.rs`: starting a gateway from its configuration, linking keys;
//! * `metrics.rs`, `retry.rs`, `background.rs`, `error_chain.rs`:
//!   Prometheus metrics, backoff and Retry-After, the periodic maintenance
//!   tasks, errors with their causes on one log line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sooth_proxy::{ProxyConfig, api_keys, launch};
//!
//! let config = ProxyConfig::from_file(std::path::Path::new("gateway.toml"))?;
//! let keys = api_keys(&config, |name| std::env::var(name).ok())?;
//! let gateway = launch(config, None, keys, None).await?;
//! println!("gateway on {}", gateway.base_url());
//! gateway.stop().await;
//! # Ok(()) }
//! ```

mod background;
mod cache;
mod config;
mod error_chain;
mod launch;
mod ledger;
mod linked_keys;
mod metrics;
mod retry;
mod server;
mod upstream;

pub use cache::{
    CacheError, CacheMode, CacheOptions, CacheOutcome, CachedResponse, MAX_FAILED_LEADERS,
    ResponseCache, VOLATILE_FIELDS, cache_key, canonical_body, unix_now_ms,
};
pub use config::{
    AuthStyle, CachePolicy, ConfigError, ModelPrice, ProxyConfig, ServiceConfig, ServiceKind,
};
pub use launch::{
    LinkError, api_keys, database_path, launch, launch_with_own_keys, link_key, unlink_key,
};
pub use ledger::{
    BudgetScope, Charge, Ledger, LedgerError, LedgerOptions, MAX_USD, Reservation, ReservationId,
    ReservationState, SharedLedgerOptions, utc_day, utc_today,
};
pub use linked_keys::{ApiKey, DEFAULT_RELOAD_INTERVAL, LinkedKeyError, LinkedKeys, MAX_KEY_LEN};
pub use server::{GatewayState, RunningGateway, STOP_GRACE, StartError, UNKNOWN_SERVICE_LABEL};
