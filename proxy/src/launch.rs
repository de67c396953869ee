//! Starting a gateway from its configuration: keys from files and the
//! environment, the ledger in the data directory, the listener; and linking
//! miners' own API keys in that directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use sooth_protocol::{RequestSigner, load_or_create_signing_key, parse_public_key};

use crate::cache::ResponseCache;
use crate::config::ProxyConfig;
use crate::ledger::{Ledger, LedgerOptions, SharedLedgerOptions};
use crate::linked_keys::{ApiKey, DEFAULT_RELOAD_INTERVAL, LinkedKeyError, LinkedKeys};
use crate::server::{GatewayState, RunningGateway, StartError};

/// The operator's upstream API keys, read with `lookup` (the environment,
/// in the CLI) from each service's `api_key_env`.
///
/// # Errors
///
/// [`StartError::MissingApiKey`] naming the first variable that is unset or
/// empty.
pub fn api_keys(
    config: &ProxyConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, StartError> {
    config
        .services
        .iter()
        .map(|(name, service)| match lookup(&service.api_key_env) {
            Some(key) if !key.trim().is_empty() => Ok((name.clone(), key.trim().to_owned())),
            _ => Err(StartError::MissingApiKey {
                service: name.clone(),
                variable: service.api_key_env.clone(),
            }),
        })
        .collect()
}

/// The gateway's database file (ledger, cache, linked keys) in the
/// configured data directory.
pub fn database_path(config: &ProxyConfig) -> PathBuf {
    config.data_dir.join("gateway.sqlite")
}

fn create_data_dir(config: &ProxyConfig) -> Result<(), std::io::Error> {
    std::fs::create_dir_all(&config.data_dir)
}

/// Start a gateway: ledger, cache and linked keys in `config.data_dir`,
/// listening on `addr` (or `config.listen`), honouring tokens of
/// `validator_key` (or of the configured key). Keys that miners link while
/// it runs (`sooth proxy link-key`) take effect within
/// [`DEFAULT_RELOAD_INTERVAL`].
///
/// # Errors
///
/// [`StartError`] naming what is missing or unusable.
pub async fn launch(
    config: ProxyConfig,
    validator_key: Option<VerifyingKey>,
    api_keys: BTreeMap<String, String>,
    addr: Option<SocketAddr>,
) -> Result<RunningGateway, StartError> {
    start(config, validator_key, api_keys, addr, None).await
}

/// Start a gateway for a miner testing its agent with its own upstream
/// keys (`api_keys`, from its environment): as [`launch`], but those keys
/// count as linked by `miner`, in memory only (nothing about them is
/// written to disk, and keys linked in the data directory are not used), so
/// that its runs get the linked caps, as at a validator where the miner
/// linked these keys.
///
/// # Errors
///
/// [`StartError`] naming what is missing or unusable.
pub async fn launch_with_own_keys(
    config: ProxyConfig,
    validator_key: Option<VerifyingKey>,
    api_keys: BTreeMap<String, String>,
    addr: Option<SocketAddr>,
    miner: &str,
) -> Result<RunningGateway, StartError> {
    start(config, validator_key, api_keys, addr, Some(miner)).await
}

async fn start(
    config: ProxyConfig,
    validator_key: Option<VerifyingKey>,
    api_keys: BTreeMap<String, String>,
    addr: Option<SocketAddr>,
    own_keys_of: Option<&str>,
) -> Result<RunningGateway, StartError> {
    let validator_key = match validator_key {
        Some(key) => key,
        None => parse_public_key(&config.validator_public_key).map_err(StartError::ValidatorKey)?,
    };
    create_data_dir(&config).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let signer = RequestSigner::new(load_or_create_signing_key(&config.signing_key_file)?);
    let database = database_path(&config);
    // One after the other: each applies the same migrations to one file.
    let ledger_options = LedgerOptions {
        durable: config.durable_ledger,
        ..LedgerOptions::default()
    };
    let ledger = match &config.database_url {
        None => {
            let ledger = Ledger::open_with(&database, &ledger_options).await?;
            // Reservations a crash left open count against the caps until
            // no run that made them can still be going.
            let max_run = sooth_protocol::MAX_TOKEN_LIFETIME_SECS.unsigned_abs();
            ledger.release_stale(max_run).await?;
            ledger
        }
        // A shared ledger's instance is new: a crashed one's reservations
        // are settled by its lease.
        Some(url) => {
            let options = SharedLedgerOptions {
                lease: Duration::from_secs(config.ledger_lease_secs),
                durable: config.durable_ledger,
                ..SharedLedgerOptions::default()
            };
            Ledger::open_shared(url, &options).await?
        }
    };
    let cache = ResponseCache::open(&database).await?;
    let linked = match own_keys_of {
        None => open_linked_keys(&config, Some(DEFAULT_RELOAD_INTERVAL)).await?,
        Some(miner) => {
            let linked = LinkedKeys::in_memory().await?;
            for (service, key) in &api_keys {
                let variable = config
                    .services
                    .get(service)
                    .map_or("", |service| service.api_key_env.as_str());
                let key = ApiKey::parse(key)
                    .map_err(|error| StartError::invalid_api_key(service, variable, error))?;
                linked.link(miner, service, key).await?;
            }
            linked
        }
    };
    let addr = match addr {
        Some(addr) => addr,
        None => config
            .listen
            .parse()
            .map_err(|error| StartError::ListenAddress(config.listen.clone(), error))?,
    };
    let state = GatewayState::new(
        config,
        validator_key,
        signer,
        ledger,
        cache,
        api_keys,
        linked,
    )
    .await?;
    RunningGateway::start(state, addr).await
}

/// Why a key could not be linked or unlinked.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The configuration has no service of that name.
    #[error("the gateway configuration has no service named {0:?}")]
    UnknownService(String),
    /// The data directory cannot be created.
    #[error("cannot create data directory {}", .path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key, a name, or the database was refused (see
    /// [`LinkedKeyError`]; no variant carries a key).
    #[error(transparent)]
    Store(#[from] LinkedKeyError),
}

async fn store_for(config: &ProxyConfig, service: &str) -> Result<LinkedKeys, LinkError> {
    if !config.services.contains_key(service) {
        return Err(LinkError::UnknownService(service.to_owned()));
    }
    create_data_dir(config).map_err(|source| LinkError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    Ok(open_linked_keys(config, None).await?)
}

/// The linked keys of the gateway `config` describes: in its database file, or in the
/// database its ledger shares with other gateways, so that every one of them has them.
async fn open_linked_keys(
    config: &ProxyConfig,
    reload_every: Option<Duration>,
) -> Result<LinkedKeys, LinkedKeyError> {
    match &config.database_url {
        Some(url) => LinkedKeys::open_shared(url, reload_every).await,
        None => LinkedKeys::open(&database_path(config), reload_every).await,
    }
}

/// Put `miner`'s own `key` for `service` on file in the gateway's data
/// directory, or in the database of gateways sharing one ledger (replacing
/// any key it had there). A gateway running on that directory or database
/// uses it within [`DEFAULT_RELOAD_INTERVAL`].
///
/// # Errors
///
/// [`LinkError`] when the service is not configured, a name is unusable or
/// the database cannot be written.
pub async fn link_key(
    config: &ProxyConfig,
    miner: &str,
    service: &str,
    key: ApiKey,
) -> Result<(), LinkError> {
    store_for(config, service)
        .await?
        .link(miner, service, key)
        .await?;
    Ok(())
}

/// Remove `miner`'s key for `service` from the gateway's data directory, or
/// from the database of gateways sharing one ledger; returns whether one was
/// on file. A gateway running on that directory or database goes back to the
/// operator's key within [`DEFAULT_RELOAD_INTERVAL`].
///
/// # Errors
///
/// [`LinkError`] when the service is not configured, a name is unusable or
/// the database cannot be written.
pub async fn unlink_key(
    config: &ProxyConfig,
    miner: &str,
    service: &str,
) -> Result<bool, LinkError> {
    Ok(store_for(config, service)
        .await?
        .unlink(miner, service)
        .await?)
}
