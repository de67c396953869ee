//! `sooth validator run` and `sooth validator add-agent`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use sooth_proxy::RunningGateway;
use sooth_runner::{Gateway, HttpGateway, ScriptedGateway};
use sooth_validator::ValidatorConfig;
use sooth_validator::service;

use crate::gateway_choice::start_in_process;

use crate::runner_setup::{default_cache_dir, make_runner_with};
use crate::{AddAgentArgs, outln};

fn runner(config: &ValidatorConfig) -> anyhow::Result<sooth_runner::Runner> {
    let cache = config.runner.cache_dir.clone().or_else(default_cache_dir);
    make_runner_with(config.runner.clone(), cache)
}

/// Run the validator daemon configured in `path` until Ctrl-C or SIGTERM.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = ValidatorConfig::from_file(path)?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let runner = runner(&config)?;
        let key = service::validator_key(&config)?;
        let (gateway, in_process) = validator_gateway(&config, &key).await?;
        outln(format_args!(
            "validator running: data in {}, API on http://{}",
            config.data_dir.display(),
            config.api.listen
        ))?;
        let result = service::run(config, runner, key, gateway, stop_signal()).await;
        if let Some(running) = in_process {
            // Requests in flight finish and the ledger's last decisions reach its file.
            running.stop().await;
        }
        result?;
        outln("validator stopped")
    })
}

/// The gateway the validator's agents call: one started in-process from a gateway
/// configuration (trusting the validator's key), a running one at a URL, or none.
async fn validator_gateway(
    config: &ValidatorConfig,
    key: &SigningKey,
) -> anyhow::Result<(Arc<dyn Gateway>, Option<RunningGateway>)> {
    if let Some(file) = &config.gateway.config {
        let running = start_in_process(file, key.verifying_key(), None, None).await?;
        tracing::info!(url = %running.base_url(), "gateway started in-process");
        let client = HttpGateway::new(running.base_url())?;
        return Ok((Arc::new(client), Some(running)));
    }
    if let Some(url) = &config.gateway.url {
        return Ok((Arc::new(HttpGateway::new(url.clone())?), None));
    }
    tracing::warn!("no gateway configured: agents' gateway calls will fail");
    Ok((Arc::new(ScriptedGateway::empty()), None))
}

/// Completes on Ctrl-C or SIGTERM (how service managers stop a daemon).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => Some(terminate),
        Err(error) => {
            tracing::warn!(%error, "cannot wait for SIGTERM; stop with Ctrl-C");
            None
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::error!(%error, "cannot wait for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
        Some(()) = async {
            match terminate.as_mut() {
                Some(terminate) => terminate.recv().await,
                None => std::future::pending().await,
            }
        } => {}
    }
}

/// Add a verified agent version for a miner, registering the miner if needed.
pub fn add_agent(args: &AddAgentArgs) -> anyhow::Result<()> {
    let config = ValidatorConfig::from_file(&args.config)?;
    let bytes = std::fs::read(&args.agent)
        .with_context(|| format!("cannot read agent {}", args.agent.display()))?;
    let runtime = crate::runtime()?;
    let added = runtime.block_on(async {
        let runner = runner(&config)?;
        anyhow::Ok(service::add_agent(&config, runner, &args.hotkey, &bytes).await?)
    })?;
    if let Some(registration) = &added.registration {
        outln(format_args!(
            "registered {} as uid {}",
            registration.registered.hotkey, registration.registered.uid
        ))?;
        if let Some(leaving) = &registration.deregistered {
            outln(format_args!(
                "deregistered {} (uid {}) to make room",
                leaving.hotkey, leaving.uid
            ))?;
        }
    }
    outln(format_args!(
        "added version {} of {}; it becomes active at the next 00:00 UTC",
        added.hash, args.hotkey
    ))
}
