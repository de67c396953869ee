//! The validator daemon's configuration (TOML; unknown keys refused; every value but the data
//! directory has the SPEC's default).
//!
//! This module owns the file's shape and its checks. It must not open anything the file names:
//! [`crate::service`] does that.
//!
//! ```toml
//! data_dir = "validator-data"      # the store, components, keys, weights.json
//! # database_url = "postgres://sooth:PASSWORD@db.internal/sooth"   # the store on PostgreSQL
//! #                                # (shared with runner workers and gateways) instead of
//! #                                # data_dir/validator.sqlite
//!
//! [competition]
//! slots = 256                      # miners registered at once
//! immunity_days = 7                # days a new miner cannot be deregistered
//! scoring_window = 101             # a miner's score: mean Brier over the last N resolutions
//!
//! [scheduling]
//! max_concurrent_runs = 8
//! workers = false                  # true: runner workers (`sooth runner`) run the agents
//!
//! [runner]                         # sooth-runner's settings (timeout = 240 s by default)
//! memory_limit_bytes = 536870912
//!
//! [sources]
//! jsonl_dirs = ["events"]          # watched directories of JSON Lines files
//! http_feeds = []                  # feeds read with a cursor
//! poll_secs = 10
//! # gamma_url = "https://gamma-api.polymarket.com"   # prediction markets, [0.2, 0.8] mid price
//! gamma_poll_secs = 300
//!
//! [api]
//! listen = "127.0.0.1:8800"        # the read-only HTTP API
//!
//! [weights]
//! file = "weights.json"            # relative to data_dir
//!
//! [gateway]
//! config = "gateway.toml"          # start the gateway in-process from this file
//! # url = "http://127.0.0.1:8700"  # or use a running one (it must trust data_dir/validator.key)
//! run_cap_usd = 0.05               # each run's cap per service
//! ```
//!
//! The sections that open the validator to miners (`[uploads]`, `[registration]`,
//! `[linked_keys]`, `[verification]`) are described in `uploads`.

mod uploads;
mod worker;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sooth_runner::RunnerConfig;
use thiserror::Error;

pub use uploads::{LinkedKeysConfig, RegistrationConfig, UploadsConfig, VerificationConfig};
pub use worker::WorkerConfig;

use crate::registration::DEFAULT_SLOTS;
use crate::scoring::SCORING_WINDOW;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read, or its text is not TOML of the expected shape (an unknown
    /// key, a wrong type...).
    #[error(transparent)]
    File(#[from] sooth_config::ConfigFileError),
    /// A value is out of range.
    #[error("invalid validator configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Which value, and why.
        message: &'static str,
    },
    /// `[verification.originality]` or `[verification.concordance]` holds a value out of
    /// range.
    #[error("invalid validator configuration {path}: the [verification] table")]
    Integrity {
        /// The file.
        path: String,
        /// What the check's own validation said.
        source: crate::integrity::IntegrityError,
    },
    /// The `[runner]` table holds a value out of range.
    #[error("invalid validator configuration {path}: the [runner] table")]
    Runner {
        /// The file.
        path: String,
        /// What the runner's own check said.
        source: Box<sooth_runner::ConfigError>,
    },
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Where the store, the components, the validator's key and the weights file live.
    pub data_dir: PathBuf,
    /// The store on a PostgreSQL server (`postgres://user:password@host/database`) instead of
    /// the SQLite file in `data_dir`: what several machines share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// The competition's rules.
    #[serde(default)]
    pub competition: CompetitionConfig,
    /// How runs are scheduled.
    #[serde(default)]
    pub scheduling: SchedulingConfig,
    /// The sandbox's settings.
    #[serde(default)]
    pub runner: RunnerConfig,
    /// Where events and resolutions come from.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// The read-only HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Where weights are written.
    #[serde(default)]
    pub weights: WeightsConfig,
    /// The gateway agents reach services through.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Miners' uploads.
    #[serde(default)]
    pub uploads: UploadsConfig,
    /// Miners' own registration.
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// Miners' own service keys.
    #[serde(default)]
    pub linked_keys: LinkedKeysConfig,
    /// The verification of new versions.
    #[serde(default)]
    pub verification: VerificationConfig,
    /// The benchmark agents.
    #[serde(default)]
    pub benchmarks: BenchmarksConfig,
}

/// `[benchmarks]`: the reference agents (SPEC: the example agents).
///
/// ```toml
/// [benchmarks]
/// agents = ["market-baseline.wasm"]  # components, relative to this file
/// ```
///
/// Each runs on every event under a reserved entry named after its file (`market-baseline`),
/// which holds no slot and is never weighted, and is scored and shown beside the miners; its
/// predictions on the probe set are public signals to the originality check, so that what
/// agents share with it (the market's price, an LLM's answer) is not taken for copying.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchmarksConfig {
    /// The benchmark agents' components.
    pub agents: Vec<PathBuf>,
}

impl BenchmarksConfig {
    /// Each agent's entry name: its file's stem.
    #[must_use]
    pub fn named(&self) -> Vec<(String, &Path)> {
        self.agents
            .iter()
            .map(|path| {
                let name = path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |stem| stem.to_string_lossy().into_owned(),
                );
                (name, path.as_path())
            })
            .collect()
    }
}

/// `[competition]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompetitionConfig {
    /// Miners registered at once (SPEC: 256).
    pub slots: u16,
    /// Days of immunity of a new miner (SPEC: 7).
    pub immunity_days: u32,
    /// Resolved events a miner's score is the mean over (SPEC: 101).
    pub scoring_window: usize,
}

impl Default for CompetitionConfig {
    fn default() -> Self {
        Self {
            slots: DEFAULT_SLOTS,
            immunity_days: 7,
            scoring_window: SCORING_WINDOW,
        }
    }
}

/// `[scheduling]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// Runs executing at once (in this process; the workers' own limits are theirs).
    pub max_concurrent_runs: usize,
    /// Hand every owed run to runner workers (`sooth runner`) through the PostgreSQL store
    /// instead of running agents in this process (needs `database_url`).
    pub workers: bool,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 8,
            workers: false,
        }
    }
}

/// `[sources]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Directories of JSON Lines files, watched for new files and appended lines.
    pub jsonl_dirs: Vec<PathBuf>,
    /// HTTP feeds read with a cursor.
    pub http_feeds: Vec<String>,
    /// Seconds between two polls of the directories and feeds.
    pub poll_secs: u64,
    /// Read prediction-market listings in the shape of Polymarket's Gamma API from this base
    /// URL (`https://gamma-api.polymarket.com`); none by default.
    pub gamma_url: Option<String>,
    /// Seconds between two reads of the market listings.
    pub gamma_poll_secs: u64,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            jsonl_dirs: Vec::new(),
            http_feeds: Vec::new(),
            poll_secs: 10,
            gamma_url: None,
            gamma_poll_secs: 300,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the read-only HTTP API listens on.
    pub listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8800".to_owned(),
        }
    }
}

/// `[weights]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightsConfig {
    /// The JSON file the current weights are written to; relative to the data directory.
    pub file: PathBuf,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("weights.json"),
        }
    }
}

/// `[gateway]`: in-process from a gateway configuration, or a running gateway at a URL, or
/// none (agents' gateway calls then fail, and agents that need them are imputed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Start the gateway in this process from this gateway configuration (relative to the
    /// validator configuration's directory).
    pub config: Option<PathBuf>,
    /// Use the gateway running at this URL; it must trust the validator's key.
    pub url: Option<String>,
    /// Each run's cost cap per service, USD.
    pub run_cap_usd: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            config: None,
            url: None,
            run_cap_usd: 0.05,
        }
    }
}

impl ValidatorConfig {
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
        config.data_dir = base.join(&config.data_dir);
        config.sources.jsonl_dirs = config
            .sources
            .jsonl_dirs
            .iter()
            .map(|dir| base.join(dir))
            .collect();
        config.gateway.config = config.gateway.config.map(|file| base.join(file));
        config.verification.probe_file = config.verification.probe_file.map(|file| base.join(file));
        config.benchmarks.agents = config
            .benchmarks
            .agents
            .iter()
            .map(|file| base.join(file))
            .collect();
        Ok(config)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] when the text does not parse, [`ConfigError::Invalid`] or
    /// [`ConfigError::Runner`] for a value out of range.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = sooth_config::parse(text, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |message| {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                message,
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir must not be empty");
        }
        if let Some(url) = &self.database_url
            && sooth_migrations::Engine::of_url(url) != Some(sooth_migrations::Engine::Postgres)
        {
            return invalid(
                "database_url must be a PostgreSQL URL (postgres://user:password@host/database)",
            );
        }
        if self.scheduling.workers && self.database_url.is_none() {
            return invalid(
                "scheduling.workers needs database_url: workers claim runs from PostgreSQL",
            );
        }
        if self.linked_keys.key_file.as_os_str().is_empty() {
            return invalid("linked_keys.key_file must not be empty");
        }
        if self.competition.slots == 0 {
            return invalid("competition.slots must be at least 1");
        }
        if self.competition.scoring_window == 0 {
            return invalid("competition.scoring_window must be at least 1");
        }
        if self.scheduling.max_concurrent_runs == 0 || self.scheduling.max_concurrent_runs > 4096 {
            return invalid("scheduling.max_concurrent_runs must be between 1 and 4096");
        }
        if self.sources.poll_secs == 0 || self.sources.gamma_poll_secs == 0 {
            return invalid("sources.poll_secs and sources.gamma_poll_secs must be at least 1");
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("api.listen must be an address such as 127.0.0.1:8800");
        }
        if self.gateway.config.is_some() && self.gateway.url.is_some() {
            return invalid("gateway: give either config (in-process) or url, not both");
        }
        if !(self.gateway.run_cap_usd.is_finite() && self.gateway.run_cap_usd >= 0.0) {
            return invalid("gateway.run_cap_usd must be a non-negative number");
        }
        if let Some(problem) = self
            .uploads
            .problem()
            .or_else(|| self.verification.problem())
        {
            return invalid(problem);
        }
        self.verification
            .originality
            .validate()
            .and_then(|()| self.verification.concordance.validate())
            .map_err(|source| ConfigError::Integrity {
                path: origin.to_owned(),
                source,
            })?;
        self.runner
            .validate()
            .map_err(|source| ConfigError::Runner {
                path: origin.to_owned(),
                source: Box::new(source),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_takes_the_spec_defaults() {
        let config = ValidatorConfig::from_toml("data_dir = \"d\"\n", "t.toml").unwrap();
        assert_eq!(config.competition.slots, 256);
        assert_eq!(config.competition.immunity_days, 7);
        assert_eq!(config.competition.scoring_window, 101);
        assert_eq!(config.runner.timeout, std::time::Duration::from_secs(240));
        assert_eq!(config.runner.memory_limit_bytes, 512 << 20);
        assert_eq!(config.weights.file, PathBuf::from("weights.json"));
        assert_eq!(config.gateway.config, None);
        assert_eq!(
            config.linked_keys.key_file,
            PathBuf::from("linked-keys.key")
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_names() {
        let cases = [
            ("data_dir = \"d\"\nslots = 3\n", "slots"),
            ("data_dir = \"d\"\n[competition]\nslot = 3\n", "slot"),
            (
                "data_dir = \"d\"\n[competition]\nslots = 0\n",
                "competition.slots",
            ),
            (
                "data_dir = \"d\"\n[competition]\nscoring_window = 0\n",
                "competition.scoring_window",
            ),
            ("data_dir = \"d\"\n[competition]\nslots = -1\n", "slots"),
            (
                "data_dir = \"d\"\n[api]\nlisten = \"nowhere\"\n",
                "api.listen",
            ),
            ("data_dir = \"d\"\n[runner]\ntimeout = 0\n", "timeout"),
            ("[competition]\nslots = 3\n", "data_dir"),
            (
                "data_dir = \"d\"\n[gateway]\nconfig = \"g.toml\"\nurl = \"http://x\"\n",
                "either",
            ),
            (
                "data_dir = \"d\"\n[gateway]\nrun_cap_usd = -1.0\n",
                "run_cap_usd",
            ),
            ("data_dir = \"d\"\n[uploads]\nschemes = [\"rsa\"]\n", "rsa"),
            (
                "data_dir = \"d\"\n[uploads]\nschemes = []\n",
                "uploads.schemes",
            ),
            (
                "data_dir = \"d\"\n[verification]\nmax_attempts = 0\n",
                "verification.max_attempts",
            ),
            (
                "data_dir = \"d\"\n[verification]\nlive_window = 5\n",
                "verification.live_window",
            ),
            ("data_dir = \"d\"\n[registration]\nopen = \"yes\"\n", "open"),
            (
                "data_dir = \"d\"\n[linked_keys]\nkey_file = \"\"\n",
                "linked_keys.key_file",
            ),
            (
                "data_dir = \"d\"\n[linked_keys]\nkeyfile = \"k\"\n",
                "keyfile",
            ),
        ];
        for (text, named) in cases {
            let error = ValidatorConfig::from_toml(text, "t.toml").unwrap_err();
            let chain = format!("{:#}", anyhow::Error::new(error));
            assert!(
                chain.contains(named),
                "{text:?}: {chain} does not name {named}"
            );
        }
    }
}
