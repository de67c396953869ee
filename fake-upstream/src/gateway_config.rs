//! Gateway configurations for tests, benchmarks and demos: the TOML of a
//! gateway whose services are a fake upstream, written in one place so
//! that every test speaks the gateway's configuration the same way.
//!
//! This crate must not depend on the gateway, so the configuration is
//! built as text; the gateway's own parser checks it where it is used.

use std::fmt::{Display, Write as _};
use std::path::{Path, PathBuf};

use crate::FakeUpstream;

/// The environment variable the chat key of [`FakeUpstream::gateway_config_toml`] is read from.
pub const CHAT_KEY_ENV: &str = "SOOTH_FAKE_CHAT_KEY";

/// The environment variable the search key of [`FakeUpstream::gateway_config_toml`] is read
/// from.
pub const SEARCH_KEY_ENV: &str = "SOOTH_FAKE_SEARCH_KEY";

/// What the chat models of [`ServiceBuilder::chat`] cost, in USD per
/// million prompt and completion tokens.
const MODEL_PRICE: &str = "{ input_per_million = 0.5, output_per_million = 2.0 }";

/// The configuration of a gateway (TOML text), service by service.
///
/// ```
/// use sooth_fake_upstream::{GatewayConfigBuilder, ServiceBuilder};
///
/// let toml = GatewayConfigBuilder::new("data")
///     .service(ServiceBuilder::chat("chat", "http://127.0.0.1:9", "CHAT_KEY", &["m"]))
///     .service(ServiceBuilder::search("search", "http://127.0.0.1:9", "SEARCH_KEY"))
///     .to_toml();
/// assert!(toml.contains("[services.chat]"));
/// ```
#[derive(Debug, Clone)]
pub struct GatewayConfigBuilder {
    data_dir: PathBuf,
    signing_key_file: PathBuf,
    validator_public_key: String,
    default_chat_service: String,
    default_search_service: String,
    services: Vec<ServiceBuilder>,
}

impl GatewayConfigBuilder {
    /// A gateway keeping its files in `data_dir`, with no services yet. Its
    /// signing key file is `unused` (only a gateway started from the file
    /// reads it), it trusts no validator key (all zeros) and its default
    /// services are `chat` and `search`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            signing_key_file: PathBuf::from("unused"),
            validator_public_key: "00".repeat(32),
            default_chat_service: "chat".to_owned(),
            default_search_service: "search".to_owned(),
            services: Vec::new(),
        }
    }

    /// The file of the gateway's outbound signing key.
    #[must_use]
    pub fn signing_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.signing_key_file = path.into();
        self
    }

    /// The validator key (hex) whose run tokens the gateway honours.
    #[must_use]
    pub fn validator_public_key(mut self, hex: impl Into<String>) -> Self {
        self.validator_public_key = hex.into();
        self
    }

    /// The services `/v1/chat` and `/v1/search` go to.
    #[must_use]
    pub fn default_services(mut self, chat: &str, search: &str) -> Self {
        chat.clone_into(&mut self.default_chat_service);
        search.clone_into(&mut self.default_search_service);
        self
    }

    /// Adds `service`.
    #[must_use]
    pub fn service(mut self, service: ServiceBuilder) -> Self {
        self.services.push(service);
        self
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "data_dir = {:?}\nvalidator_public_key = {:?}\nsigning_key_file = {:?}\n\
             default_chat_service = {:?}\ndefault_search_service = {:?}\n",
            self.data_dir.display().to_string(),
            self.validator_public_key,
            self.signing_key_file.display().to_string(),
            self.default_chat_service,
            self.default_search_service,
        );
        for service in &self.services {
            let _ = write!(text, "\n[services.{}]\n", service.name);
            for (key, value) in &service.settings {
                let _ = writeln!(text, "{key} = {value}");
            }
        }
        text
    }
}

/// One service of a [`GatewayConfigBuilder`]: its settings as TOML values.
#[derive(Debug, Clone)]
pub struct ServiceBuilder {
    name: String,
    /// In the order they are written; a later setting of a key replaces
    /// the earlier one in place.
    settings: Vec<(String, String)>,
}

impl ServiceBuilder {
    fn new(name: &str, kind: &str, base_url: &str, api_key_env: &str) -> Self {
        Self {
            name: name.to_owned(),
            settings: Vec::new(),
        }
        .set("kind", format!("{kind:?}"))
        .set("base_url", format!("{base_url:?}"))
        .set("api_key_env", format!("{api_key_env:?}"))
        .day_caps(1.0, 1.0)
    }

    /// A chat service at `base_url` (an OpenAI-compatible upstream) offering
    /// `models` at 0.5 and 2.0 USD per million prompt and completion tokens,
    /// each miner capped at 1 USD a day.
    pub fn chat(name: &str, base_url: &str, api_key_env: &str, models: &[&str]) -> Self {
        let models: Vec<String> = models
            .iter()
            .map(|model| format!("{model:?} = {MODEL_PRICE}"))
            .collect();
        Self::new(name, "chat", base_url, api_key_env)
            .set("models", format!("{{ {} }}", models.join(", ")))
    }

    /// A search service at `base_url` (a Desearch-style upstream, its key
    /// sent raw) at 0.002 USD a search, each miner capped at 1 USD a day.
    pub fn search(name: &str, base_url: &str, api_key_env: &str) -> Self {
        Self::new(name, "search", base_url, api_key_env)
            .set("auth", "\"raw\"")
            .set("price_per_call", 0.002)
    }

    /// A generic service at `url`, its key sent in the header `auth_header`,
    /// at `price_per_call` USD a call, each miner capped at 1 USD a day.
    pub fn generic(
        name: &str,
        url: &str,
        api_key_env: &str,
        auth_header: &str,
        price_per_call: f64,
    ) -> Self {
        Self::new(name, "generic", url, api_key_env)
            .set("auth", format!("{{ header = {auth_header:?} }}"))
            .set("price_per_call", format!("{price_per_call:?}"))
    }

    /// What a miner may spend a day with the operator's key and with its own.
    #[must_use]
    pub fn day_caps(self, operator_usd: f64, linked_usd: f64) -> Self {
        self.set("per_miner_day_cap_usd", format!("{operator_usd:?}"))
            .set("linked_per_miner_day_cap_usd", format!("{linked_usd:?}"))
    }

    /// Sets `key` to `value`, written as it is (a TOML value: a string
    /// needs its quotes).
    #[must_use]
    pub fn set(mut self, key: &str, value: impl Display) -> Self {
        let value = value.to_string();
        match self.settings.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => self.settings.push((key.to_owned(), value)),
        }
        self
    }
}

impl FakeUpstream {
    /// A gateway configuration (TOML) whose chat service `chat` (offering `models`) and search
    /// service `search` are this upstream, each miner capped at `day_cap_usd` a day, the
    /// gateway's files under `data_dir`; the keys come from [`CHAT_KEY_ENV`] and
    /// [`SEARCH_KEY_ENV`] ([`gateway_api_keys`](Self::gateway_api_keys) gives them). What demos
    /// and tests run a gateway on.
    pub fn gateway_config_toml(
        &self,
        data_dir: &Path,
        models: &[&str],
        day_cap_usd: f64,
    ) -> String {
        let base = self.base_url();
        GatewayConfigBuilder::new(data_dir.join("gateway"))
            .signing_key_file(data_dir.join("gateway-signing.key"))
            .service(
                ServiceBuilder::chat("chat", &base, CHAT_KEY_ENV, models)
                    .day_caps(day_cap_usd, day_cap_usd),
            )
            .service(
                ServiceBuilder::search("search", &base, SEARCH_KEY_ENV)
                    .day_caps(day_cap_usd, day_cap_usd),
            )
            .to_toml()
    }

    /// The upstream API keys of [`gateway_config_toml`](Self::gateway_config_toml), by service.
    pub fn gateway_api_keys(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([
            ("chat".to_owned(), self.shared.config.api_key.clone()),
            (
                "search".to_owned(),
                self.shared.config.search_api_key.clone(),
            ),
        ])
    }
}
