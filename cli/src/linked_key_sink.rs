//! Where `sooth validator run` hands miners' linked keys: the store of linked keys of the
//! gateway it started in-process (the gateway's data directory, which the running gateway
//! re-reads every few seconds). A gateway at a URL runs apart and cannot take them.

use std::sync::Arc;

use anyhow::Context;
use sooth_proxy::{ApiKey, ProxyConfig, link_key, unlink_key};
use sooth_validator::ValidatorConfig;
use sooth_validator::linked_keys::{LinkedKeySink, ServiceKey, SinkError, SinkFuture};

/// The sink for the validator's gateway: the in-process gateway's store, or none (logged).
pub fn for_validator(config: &ValidatorConfig) -> anyhow::Result<Option<Arc<dyn LinkedKeySink>>> {
    if let Some(file) = &config.gateway.config {
        let gateway = ProxyConfig::from_file(file)
            .with_context(|| format!("the gateway configuration {}", file.display()))?;
        return Ok(Some(Arc::new(GatewayDirectory { config: gateway })));
    }
    match &config.gateway.url {
        Some(url) => tracing::warn!(
            %url,
            "the gateway runs apart: miners' linked keys cannot be handed to it, so this \
             validator refuses them (linked_keys_closed); its operator links keys on the \
             gateway's machine with `sooth proxy link-key`"
        ),
        None => tracing::warn!("no gateway: miners' linked keys are refused"),
    }
    Ok(None)
}

/// The gateway's store of linked keys in its data directory.
struct GatewayDirectory {
    config: ProxyConfig,
}

impl LinkedKeySink for GatewayDirectory {
    fn has_service(&self, service: &str) -> bool {
        self.config.services.contains_key(service)
    }

    fn link<'a>(&'a self, miner: &'a str, service: &'a str, key: &'a ServiceKey) -> SinkFuture<'a> {
        Box::pin(async move {
            // The same rule on both sides; the gateway's error never holds the key.
            let key = ApiKey::parse(key.expose()).map_err(SinkError::new)?;
            link_key(&self.config, miner, service, key)
                .await
                .map_err(SinkError::new)
        })
    }

    fn unlink<'a>(&'a self, miner: &'a str, service: &'a str) -> SinkFuture<'a> {
        Box::pin(async move {
            unlink_key(&self.config, miner, service)
                .await
                .map(|_| ())
                .map_err(SinkError::new)
        })
    }
}
