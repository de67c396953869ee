//! [`LinkedKeySink`]: where the validator hands miners' keys, the gateway its agents call.
//!
//! The validator does not link the gateway: its caller implements the sink (`sooth validator
//! run` does it for a gateway started in-process, writing to that gateway's store of linked
//! keys). A key is handed in clear only through [`LinkedKeySink::link`].

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use super::ServiceKey;

/// The future a sink's call returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Why the gateway did not take a change. Its source must not carry a key (the gateway's own
/// errors never do).
#[derive(Debug, Error)]
#[error("the gateway did not take the change")]
pub struct SinkError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// The gateway's own error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(source.into())
    }
}

/// The gateway's store of miners' keys, as the validator hands keys to it. Every call may be
/// repeated: linking replaces a key on file, unlinking a key not on file does nothing.
pub trait LinkedKeySink: Send + Sync + 'static {
    /// Whether the gateway has a service named `service` (keys for any other are refused).
    fn has_service(&self, service: &str) -> bool;

    /// Puts `key` on file for `miner`'s calls to `service`, replacing any there.
    fn link<'a>(&'a self, miner: &'a str, service: &'a str, key: &'a ServiceKey) -> SinkFuture<'a>;

    /// Removes `miner`'s key for `service`: its calls go back to the operator's key and cap.
    fn unlink<'a>(&'a self, miner: &'a str, service: &'a str) -> SinkFuture<'a>;
}
