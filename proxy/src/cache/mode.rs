//! How a service's answers are cached, and how a request was answered.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether and how a service's answers are cached (configured per service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Serve stored answers, store new ones, collapse concurrent identical
    /// requests.
    #[default]
    On,
    /// Always fetch; never read or store.
    Off,
    /// Serve stored answers; fetch misses without storing or collapsing.
    ReadOnly,
}

impl CacheMode {
    /// The configuration spelling: `on`, `off`, `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`ResponseCache::get_or_fetch`](super::ResponseCache::get_or_fetch) answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// From the store; no upstream call.
    Hit,
    /// Fetched by this caller (and stored if the mode and status allow).
    Miss,
    /// Waited for another caller's fetch of the same key and got its answer;
    /// no upstream call of its own.
    Collapsed,
    /// Fetched with the cache off.
    Bypass,
}

impl CacheOutcome {
    /// Whether this caller's `fetch` ran, i.e. whether the call is billed
    /// ([`Miss`](Self::Miss), [`Bypass`](Self::Bypass)); hits and collapsed
    /// calls cost nothing.
    pub fn called_upstream(self) -> bool {
        matches!(self, Self::Miss | Self::Bypass)
    }

    /// Lower-case name for headers, logs and metrics: `hit`, `miss`,
    /// `collapsed`, `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
        }
    }
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
