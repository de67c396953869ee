//! Gateway configuration (TOML; unknown keys refused): services, their
//! upstreams, price tables, caps and cache settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// OpenAI-compatible chat completions (`POST {base_url}/v1/chat/completions`).
    Chat,
    /// Desearch-style web search (`POST {base_url}/search`).
    Search,
    /// Any JSON service (`POST {base_url}`), priced per call.
    Generic,
}

/// How the API key is presented upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// `Authorization: KEY`.
    Raw,
    /// `NAME: KEY` with the named header.
    Header(String),
}

/// Price of one chat model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Prompt tokens.
    pub input_per_million: f64,
    /// Generated tokens.
    pub output_per_million: f64,
}

/// Whether a service's answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CachePolicy {
    /// Serve hits and store answers.
    #[default]
    On,
    /// Never cache.
    Off,
    /// Serve hits, store nothing new.
    ReadOnly,
}

/// One upstream service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Chat, search or generic.
    pub kind: ServiceKind,
    /// The upstream's base URL.
    pub base_url: String,
    /// Environment variable holding the operator's API key.
    pub api_key_env: String,
    /// How the key is sent.
    #[serde(default = "bearer")]
    pub auth: AuthStyle,
    /// Chat: the models offered and their prices; other models are 404.
    #[serde(default)]
    pub models: BTreeMap<String, ModelPrice>,
    /// Chat: models tried, in order, when a model stays unavailable.
    #[serde(default)]
    pub fallback_models: BTreeMap<String, Vec<String>>,
    /// Chat: output tokens reserved when a request names no `max_tokens`,
    /// and the most a request may ask for.
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u32,
    /// Search: US dollars per search. Generic: US dollars per call.
    #[serde(default)]
    pub price_per_call: f64,
    /// Cap per miner per UTC day, US dollars.
    pub per_miner_day_cap_usd: f64,
    /// The same for a miner that linked its own API key.
    pub linked_per_miner_day_cap_usd: f64,
    /// Cache policy.
    #[serde(default)]
    pub cache: CachePolicy,
    /// How long cached answers stay fresh, seconds.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_secs: u64,
    /// Attempts per upstream call, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Upper bound of one upstream request, seconds.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: f64,
    /// Search: hide what was published after the run's as-of instant (its
    /// token's `as_of`, the event's creation): the search window's end is
    /// set to it when absent and lowered to it when later, and results
    /// published after the window's end are dropped even if the upstream
    /// sends them. On when not given; only a search service may set it
    /// (see [`ServiceConfig::clamps_to_as_of`]).
    #[serde(default)]
    pub clamp_to_as_of: Option<bool>,
}

impl ServiceConfig {
    /// Whether this service's searches are clamped to the run's as-of
    /// instant: a search service unless its configuration turns it off.
    #[must_use]
    pub fn clamps_to_as_of(&self) -> bool {
        self.kind == ServiceKind::Search && self.clamp_to_as_of.unwrap_or(true)
    }
}

fn bearer() -> AuthStyle {
    AuthStyle::Bearer
}
fn default_max_output_tokens() -> u32 {
    4096
}
fn default_cache_ttl() -> u64 {
    7 * 24 * 3600
}
fn default_attempts() -> u32 {
    4
}
fn default_upstream_timeout() -> f64 {
    120.0
}

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of the ledger and cache database (`gateway.sqlite`).
    pub data_dir: PathBuf,
    /// Hex ed25519 public key of the validator whose run tokens are honoured.
    pub validator_public_key: String,
    /// File holding the hex ed25519 key that signs outbound requests.
    pub signing_key_file: PathBuf,
    /// Largest request body accepted, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Make every ledger decision wait for its commit, with an fsync, before
    /// the call goes upstream (no crash window, a disk write per call);
    /// otherwise a journal writes them within milliseconds. Default false.
    #[serde(default)]
    pub durable_ledger: bool,
    /// A PostgreSQL URL (`postgres://...`): share the spend ledger with the
    /// other gateways configured with it, so that the per-run and per-miner
    /// caps hold across all of them. The response cache and linked keys
    /// stay in `data_dir`. Unset (the default): the ledger is
    /// `data_dir/gateway.sqlite`, this gateway's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// With `database_url`: how long this gateway's slices of the caps stay
    /// its own without a word from it (a gateway that dies holds them that
    /// long), seconds, 1 to 3600. Default 10.
    #[serde(default = "default_ledger_lease_secs")]
    pub ledger_lease_secs: u64,
    /// The service `POST /v1/chat` goes to.
    pub default_chat_service: String,
    /// The service `POST /v1/search` goes to.
    pub default_search_service: String,
    /// The services, by name.
    pub services: BTreeMap<String, ServiceConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:8700".into()
}
fn default_ledger_lease_secs() -> u64 {
    10
}
fn default_max_body() -> usize {
    256 << 10
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, its TOML did not parse, or it named an
    /// unknown key.
    #[error(transparent)]
    File(#[from] sooth_config::ConfigFileError),
    /// A value is unusable.
    #[error("invalid gateway configuration: {0}")]
    Invalid(String),
    /// A service's name breaks the rule agents' service names follow.
    #[error("invalid gateway configuration: service name {name}")]
    ServiceName {
        /// The name, quoted and cut short.
        name: String,
        /// The rule it breaks.
        #[source]
        source: sooth_protocol::ServiceNameError,
    },
}

/// A service name as an error shows it: quoted, and cut short, since a name
/// that breaks the rules (or an agent made up) may be of any length.
pub(crate) fn shown_name(name: &str) -> String {
    const SHOWN: usize = 80;
    match name.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &name[..cut]),
        None => format!("{name:?}"),
    }
}

fn usd_ok(value: f64) -> bool {
    value.is_finite() && value >= 0.0
}

impl ProxyConfig {
    /// Read and check a TOML file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] when the file cannot be read, does not parse or
    /// names an unknown key, [`ConfigError::ServiceName`] or
    /// [`ConfigError::Invalid`] naming the first bad value.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = sooth_config::read(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Parse and check TOML text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`ProxyConfig::from_file`].
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = sooth_config::parse(text, origin)?;
        config.validate()?;
        Ok(config)
    }

    /// Check every value.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ServiceName`] or [`ConfigError::Invalid`] naming the
    /// first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(url) = &self.database_url
            && sooth_migrations::Engine::of_url(url) != Some(sooth_migrations::Engine::Postgres)
        {
            return invalid(format!(
                "database_url must be a PostgreSQL URL (postgres://...), not {:?}",
                sooth_migrations::redacted_url(url)
            ));
        }
        if !(1..=3600).contains(&self.ledger_lease_secs) {
            return invalid(format!(
                "ledger_lease_secs must be 1 to 3600, not {}",
                self.ledger_lease_secs
            ));
        }
        for (name, wanted) in [
            ("default_chat_service", &self.default_chat_service),
            ("default_search_service", &self.default_search_service),
        ] {
            if !self.services.contains_key(wanted) {
                return invalid(format!(
                    "{name} names {wanted:?}, which is not among the services"
                ));
            }
        }
        for (name, service) in &self.services {
            // The runner puts an agent's service name into the gateway's URL
            // and refuses names outside this rule: a configured name must
            // pass it too, or no agent could reach the service.
            if let Err(source) = sooth_protocol::check_service_name(name) {
                return Err(ConfigError::ServiceName {
                    name: shown_name(name),
                    source,
                });
            }
            if !service.base_url.starts_with("http://") && !service.base_url.starts_with("https://")
            {
                return invalid(format!(
                    "service {name}: base_url must start with http:// or https://"
                ));
            }
            if service.kind == ServiceKind::Chat && service.models.is_empty() {
                return invalid(format!(
                    "service {name}: a chat service needs at least one model with a price"
                ));
            }
            for (model, price) in &service.models {
                if !usd_ok(price.input_per_million) || !usd_ok(price.output_per_million) {
                    return invalid(format!(
                        "service {name}, model {model}: prices must be non-negative numbers"
                    ));
                }
            }
            for (model, fallbacks) in &service.fallback_models {
                if let Some(missing) = std::iter::once(model)
                    .chain(fallbacks)
                    .find(|m| !service.models.contains_key(*m))
                {
                    return invalid(format!(
                        "service {name}: fallback model {missing:?} has no price"
                    ));
                }
            }
            if ![
                service.price_per_call,
                service.per_miner_day_cap_usd,
                service.linked_per_miner_day_cap_usd,
            ]
            .iter()
            .all(|v| usd_ok(*v))
            {
                return invalid(format!(
                    "service {name}: prices and caps must be non-negative numbers"
                ));
            }
            if service.clamp_to_as_of.is_some() && service.kind != ServiceKind::Search {
                return invalid(format!(
                    "service {name}: clamp_to_as_of applies to search services only"
                ));
            }
            if service.max_output_tokens == 0
                || service.max_attempts == 0
                || service.timeout_secs.is_nan()
                || service.timeout_secs <= 0.0
            {
                return invalid(format!(
                    "service {name}: max_output_tokens, max_attempts and timeout_secs must be positive"
                ));
            }
        }
        if self
            .services
            .get(&self.default_chat_service)
            .is_some_and(|s| s.kind != ServiceKind::Chat)
        {
            return invalid("default_chat_service must be a chat service".into());
        }
        if self
            .services
            .get(&self.default_search_service)
            .is_some_and(|s| s.kind != ServiceKind::Search)
        {
            return invalid("default_search_service must be a search service".into());
        }
        Ok(())
    }
}
