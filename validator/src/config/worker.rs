//! A runner worker's configuration (`sooth runner --config FILE`; TOML, unknown keys refused).
//!
//! ```toml
//! database_url = "postgres://sooth:PASSWORD@db.internal/sooth"  # the scheduler's store
//! key_file = "validator.key"     # the validator's run-token key (copied from its data_dir)
//! cache_dir = "runner-data"      # components fetched from the store, compiled code
//! concurrency = 8                # runs at once
//! lease_secs = 60                # a claim's lease, renewed while the run lasts
//! # worker_id = "host-a"         # default: the host name and the process id
//! gateway_url = "http://gateway.internal:8700"   # absent: agents' gateway calls fail; or a
//! # list of gateways sharing one ledger, taken in turn: ["http://g1:8700", "http://g2:8700"]
//! run_cap_usd = 0.05             # each run's cap per service
//!
//! [runner]                       # the sandbox: must match the scheduler's
//! memory_limit_bytes = 536870912
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sooth_runner::RunnerConfig;

use super::ConfigError;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The scheduler's store: a PostgreSQL URL.
    pub database_url: String,
    /// The validator's run-token key, which the gateway trusts (needed with `gateway_url`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Where fetched components and compiled code are kept.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// A claim's lease in seconds, renewed every third of it while the run lasts; a worker that
    /// dies holds its runs this long at most.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// This worker's id among the validator's workers [default: host name and process id].
    #[serde(default)]
    pub worker_id: Option<String>,
    /// The gateways agents call, taken in turn (one URL, or a list of gateways sharing one
    /// ledger); none, their calls fail.
    #[serde(default, deserialize_with = "one_or_many")]
    pub gateway_url: Vec<String>,
    /// Each run's cap per service, in US dollars, carried in its run token.
    #[serde(default = "default_run_cap_usd")]
    pub run_cap_usd: f64,
    /// The sandbox's settings.
    #[serde(default)]
    pub runner: RunnerConfig,
}

/// A string, or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a URL or a list of URLs")
        }

        fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<Self::Value, E> {
            Ok(vec![url.to_owned()])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut urls = Vec::new();
            while let Some(url) = seq.next_element()? {
                urls.push(url);
            }
            Ok(urls)
        }
    }
    deserializer.deserialize_any(OneOrMany)
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from("runner-data")
}

fn default_concurrency() -> u32 {
    8
}

fn default_lease_secs() -> u64 {
    60
}

fn default_run_cap_usd() -> f64 {
    0.05
}

impl WorkerConfig {
    /// Reads and checks the configuration in `path`. Relative paths in it are taken from the
    /// file's directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file and the problem.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = sooth_config::read(path)?;
        config.validate(&path.display().to_string())?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        config.cache_dir = base.join(&config.cache_dir);
        config.key_file = config.key_file.map(|file| base.join(file));
        Ok(config)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `origin` and the problem.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = sooth_config::parse(text, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |message: &'static str| {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                message,
            })
        };
        if sooth_migrations::Engine::of_url(&self.database_url)
            != Some(sooth_migrations::Engine::Postgres)
        {
            return invalid(
                "database_url must be a PostgreSQL URL (postgres://user:password@host/database)",
            );
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return invalid("concurrency must be between 1 and 4096");
        }
        if self.lease_secs < 3 || self.lease_secs > 3600 {
            return invalid("lease_secs must be between 3 and 3600");
        }
        if self
            .worker_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 128)
        {
            return invalid("worker_id must be 1 to 128 bytes");
        }
        if !self.gateway_url.is_empty() && self.key_file.is_none() {
            return invalid("gateway_url needs key_file, the validator's run-token key");
        }
        if !(self.run_cap_usd.is_finite() && self.run_cap_usd >= 0.0) {
            return invalid("run_cap_usd must be a non-negative number");
        }
        self.runner
            .validate()
            .map_err(|source| ConfigError::Runner {
                path: origin.to_owned(),
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_gets_the_defaults_and_bad_values_are_named() {
        let config =
            WorkerConfig::from_toml("database_url = \"postgres://h/db\"\n", "w.toml").unwrap();
        assert_eq!((config.concurrency, config.lease_secs), (8, 60));
        assert!(config.gateway_url.is_empty());
        for (text, urls) in [
            ("gateway_url = \"http://g:1\"\n", vec!["http://g:1"]),
            (
                "gateway_url = [\"http://g:1\", \"http://h:2\"]\n",
                vec!["http://g:1", "http://h:2"],
            ),
        ] {
            let text = format!("database_url = \"postgres://h/db\"\nkey_file = \"k\"\n{text}");
            let config = WorkerConfig::from_toml(&text, "w.toml").unwrap();
            assert_eq!(config.gateway_url, urls);
        }
        for (text, needle) in [
            ("database_url = \"sqlite://x\"\n", "PostgreSQL URL"),
            ("", "database_url"),
            (
                "database_url = \"postgres://h/db\"\nconcurrency = 0\n",
                "concurrency",
            ),
            (
                "database_url = \"postgres://h/db\"\nlease_secs = 1\n",
                "lease_secs",
            ),
            (
                "database_url = \"postgres://h/db\"\ngateway_url = \"http://g\"\n",
                "key_file",
            ),
            ("database_url = \"postgres://h/db\"\nleases = 3\n", "leases"),
            (
                "database_url = \"postgres://h/db\"\nkey_file = \"k\"\ngateway_url = 3\n",
                "a URL or a list of URLs",
            ),
        ] {
            let error = WorkerConfig::from_toml(text, "w.toml").unwrap_err();
            let message = format!("{:#}", anyhow::Error::new(error));
            assert!(message.contains(needle), "{text:?}: {message}");
        }
    }
}
