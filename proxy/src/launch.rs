//! Starting a gateway from its configuration: keys from files and the
//! environment, the ledger in the data directory, the listener.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::cache::ResponseCache;
use crate::config::ProxyConfig;
use crate::ledger::Ledger;
use crate::server::{GatewayState, RunningGateway, StartError};
use crate::signing::RequestSigner;
use crate::token::{encode_signing_key_hex, generate_key, parse_public_key, parse_signing_key_hex};

/// The operator's upstream API keys, read with `lookup` (the environment,
/// in the CLI) from each service's `api_key_env`.
///
/// # Errors
///
/// [`StartError::Key`] naming the first variable that is unset or empty.
pub fn api_keys(
    config: &ProxyConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, StartError> {
    config
        .services
        .iter()
        .map(|(name, service)| match lookup(&service.api_key_env) {
            Some(key) if !key.trim().is_empty() => Ok((name.clone(), key.trim().to_owned())),
            _ => Err(StartError::Key(format!(
                "service {name} needs its API key in the environment variable {}",
                service.api_key_env
            ))),
        })
        .collect()
}

/// The outbound signing key in `path` (64 hex characters); a new key is
/// created there, readable by the owner only, when the file does not exist.
///
/// # Errors
///
/// [`StartError::Key`] when the file cannot be read, written or parsed.
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, StartError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_signing_key_hex(&text)
            .map_err(|e| StartError::Key(format!("signing key {}: {e}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_key();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options.open(path).and_then(|mut file| {
                file.write_all(format!("{}\n", encode_signing_key_hex(&key)).as_bytes())
            });
            written.map_err(|e| {
                StartError::Key(format!("cannot create signing key {}: {e}", path.display()))
            })?;
            tracing::info!(path = %path.display(), "created a new outbound signing key");
            Ok(key)
        }
        Err(error) => Err(StartError::Key(format!(
            "cannot read signing key {}: {error}",
            path.display()
        ))),
    }
}

/// Start a gateway: ledger in `config.data_dir`, listening on `addr`
/// (or `config.listen`), honouring tokens of `validator_key` (or of the
/// configured key).
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
    let validator_key = match validator_key {
        Some(key) => key,
        None => parse_public_key(&config.validator_public_key)
            .map_err(|e| StartError::Key(format!("validator_public_key: {e}")))?,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartError::Io(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let signer = RequestSigner::new(load_or_create_signing_key(&config.signing_key_file)?);
    let database = config.data_dir.join("gateway.sqlite");
    // One after the other: both apply the same migrations to one file.
    let ledger = Ledger::open(&database).await?;
    // Reservations a crash left open count against the caps until no run
    // that made them can still be going.
    let max_run = crate::token::MAX_TOKEN_LIFETIME_SECS.unsigned_abs();
    ledger.release_stale(max_run).await?;
    let cache = ResponseCache::open(&database).await?;
    let addr = match addr {
        Some(addr) => addr,
        None => config
            .listen
            .parse()
            .map_err(|e| StartError::Io(format!("listen address {:?}: {e}", config.listen)))?,
    };
    let state = GatewayState::new(config, validator_key, signer, ledger, cache, api_keys).await?;
    RunningGateway::start(state, addr).await
}
