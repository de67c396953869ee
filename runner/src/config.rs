//! Runner configuration: limits and caches, with the SPEC's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compile::CompileIsolation;

// The compile caps fit the largest legitimate agent, the Python example
// (componentize-py, 18.4 MB, carrying CPython), with a margin. Measured by
// `cargo bench -p sooth-runner --bench compile` on the 2-core reference
// machine, release build, worker on 2 compile threads: it compiles in 13 s
// (13 s of CPU) at a peak RSS of 340-350 MiB, and needs an address-space cap
// of at least 418 MiB; the Rust example agents need 0.2 s and 71 MiB. The
// `sooth` binary, the worker validators use, maps about 25 MB more code.
// - 1 GiB is 2.4x the worker's minimum (2.3x for `sooth`), while both crafted
//   shapes are refused at it: 2,400,000 nested blocks (1.9 GiB and 8 s
//   uncapped) in under a second, 200,000 functions (1.07 GiB) in 10 s.
// - 60 s is 4.6x the Python agent's compile alone, 2.3x when the default two
//   compiles share the two cores.
const DEFAULT_COMPILE_MEMORY_LIMIT_BYTES: u64 = 1 << 30;
const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a [`Runner`](crate::Runner) can be told. Unknown keys are
/// refused when it is read from TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerConfig {
    /// Wall-clock limit of one run, guest CPU and host waits together.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Linear memory one run may use in all, in bytes.
    pub memory_limit_bytes: u64,
    /// stdout, stderr and `log` lines kept per run, in bytes; the rest is
    /// counted and dropped.
    pub log_limit_bytes: usize,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Gateway calls one run may make; later calls fail with
    /// `budget-exceeded` without reaching the gateway.
    pub max_gateway_calls: u32,
    /// Gateway calls of one run kept in detail in its report; every call is
    /// counted and costed whatever this is.
    pub max_recorded_calls: u32,
    /// Runs in flight at once; further runs wait for a slot.
    pub max_concurrent_runs: u32,
    /// How often the epoch ticks: the granularity of deadlines and of a
    /// CPU-bound guest yielding to the scheduler.
    #[serde(with = "millis")]
    pub epoch_tick: Duration,
    /// Wall-clock limit on compiling one component (its wait for a compile
    /// slot not included).
    #[serde(with = "secs")]
    pub compile_timeout: Duration,
    /// Address space a compiling process may use, in bytes (subprocess
    /// isolation only).
    pub compile_memory_limit_bytes: u64,
    /// Components compiled at once; further compiles wait for a slot, so
    /// that many hostile uploads together hold at most this many times
    /// `compile_memory_limit_bytes`. Loads answered by the cache never wait.
    pub max_concurrent_compiles: u32,
    /// Where compiled components are cached; no cache when absent.
    pub cache_dir: Option<PathBuf>,
    /// Where untrusted bytes are compiled.
    pub compile_isolation: CompileIsolation,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(240),
            memory_limit_bytes: 512 << 20,
            log_limit_bytes: 64 << 10,
            max_component_bytes: 32 << 20,
            // An honest agent waits on its calls, a second or more each:
            // a few hundred fit in a run. Cached answers are fast, so the
            // ceiling leaves room for many of those.
            max_gateway_calls: 1000,
            max_recorded_calls: 64,
            max_concurrent_runs: 1000,
            epoch_tick: Duration::from_millis(5),
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            compile_memory_limit_bytes: DEFAULT_COMPILE_MEMORY_LIMIT_BYTES,
            max_concurrent_compiles: 2,
            cache_dir: None,
            compile_isolation: CompileIsolation::InProcess,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, its TOML did not parse, or it named an
    /// unknown key.
    #[error(transparent)]
    File(#[from] sooth_config::ConfigFileError),
    /// A value is out of its range.
    #[error("invalid runner configuration: {0}")]
    Invalid(String),
}

impl RunnerConfig {
    /// Read a configuration from a TOML file; missing keys take defaults.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the file cannot be read, does not parse, names an
    /// unknown key or holds a value out of range.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = sooth_config::read(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Parse a configuration from TOML text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`RunnerConfig::from_file`].
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = sooth_config::parse(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    /// Check that every value is usable.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.timeout.is_zero() {
            return invalid("timeout must be positive");
        }
        if self.memory_limit_bytes < (1 << 20) || self.memory_limit_bytes > (4 << 30) {
            return invalid("memory_limit_bytes must be between 1 MiB and 4 GiB");
        }
        if self.max_concurrent_runs == 0 || self.max_concurrent_runs > 100_000 {
            return invalid("max_concurrent_runs must be between 1 and 100000");
        }
        if self.epoch_tick.is_zero() || self.epoch_tick > Duration::from_secs(1) {
            return invalid("epoch_tick must be between 1 ms and 1 s");
        }
        if self.max_recorded_calls > 10_000 {
            return invalid("max_recorded_calls must be at most 10000");
        }
        if self.max_component_bytes == 0 {
            return invalid("max_component_bytes must be positive");
        }
        if self.compile_timeout.is_zero() {
            return invalid("compile_timeout must be positive");
        }
        if self.max_concurrent_compiles == 0 || self.max_concurrent_compiles > 1024 {
            return invalid("max_concurrent_compiles must be between 1 and 1024");
        }
        Ok(())
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}
