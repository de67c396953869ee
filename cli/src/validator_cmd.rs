//! `sooth validator run`, `sooth validator add-agent` and `sooth validator add-miner`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use sooth_proxy::RunningGateway;
use sooth_runner::{Gateway, HttpGateway, ScriptedGateway};
use sooth_validator::api::upload_views::status_word;
use sooth_validator::service;
use sooth_validator::{RegistrationDecision, ValidatorConfig};

use crate::gateway_choice::start_in_process;
use crate::linked_key_sink;

use crate::runner_setup::{default_cache_dir, make_runner_with};
use crate::{AddAgentArgs, AddMinerArgs, outln};

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
        let (gateway, in_process) = validator_gateway(&config, &key, None).await?;
        outln(format_args!(
            "validator running: data in {}, API on http://{}",
            config.data_dir.display(),
            config.api.listen
        ))?;
        let linked_keys = linked_key_sink::for_validator(&config)?;
        let result =
            service::run_with_linked_keys(config, runner, key, gateway, linked_keys, stop_signal())
                .await;
        if let Some(running) = in_process {
            // Requests in flight finish and the ledger's last decisions reach its file.
            running.stop().await;
        }
        result?;
        outln("validator stopped")
    })
}

/// The gateway the validator's agents call: one started in-process from a gateway
/// configuration (trusting the validator's key; on `addr`, or the configured address), a
/// running one at a URL, or none.
async fn validator_gateway(
    config: &ValidatorConfig,
    key: &SigningKey,
    addr: Option<SocketAddr>,
) -> anyhow::Result<(Arc<dyn Gateway>, Option<RunningGateway>)> {
    if let Some(file) = &config.gateway.config {
        let running = start_in_process(file, key.verifying_key(), addr, None)
            .await
            .context("cannot start the in-process gateway")?;
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
pub(crate) async fn stop_signal() {
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

/// Add a version of a miner's agent, registering the miner if needed, through the
/// verification queue; a rejected version is an error giving the reason.
pub fn add_agent(args: &AddAgentArgs) -> anyhow::Result<()> {
    let config = ValidatorConfig::from_file(&args.config)?;
    let bytes = std::fs::read(&args.agent)
        .with_context(|| format!("cannot read agent {}", args.agent.display()))?;
    let runtime = crate::runtime()?;
    let added = runtime.block_on(async {
        let runner = runner(&config)?;
        let key = service::validator_key(&config)?;
        // Probe runs call the gateway as the daemon's runs do; an in-process one listens on a
        // port of its own, beside the daemon's gateway if the daemon runs.
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let (gateway, in_process) = validator_gateway(&config, &key, Some(loopback)).await?;
        let added = service::add_agent(&config, runner, key, gateway, &args.hotkey, &bytes).await;
        if let Some(running) = in_process {
            running.stop().await;
        }
        anyhow::Ok(added?)
    })?;
    if let Some(registration) = &added.registration {
        print_registration(registration)?;
    }
    let record = &added.version;
    let status = status_word(record.status, record.queue);
    outln(format_args!(
        "added version {} ({}) of {}: {status}",
        record.version, added.hash, args.hotkey
    ))?;
    match status {
        "rejected" => anyhow::bail!(
            "version {} of {} was rejected: {}",
            record.version,
            args.hotkey,
            record.reason.as_deref().unwrap_or("no reason recorded")
        ),
        "verified" => outln("it becomes active at the next 00:00 UTC"),
        "pending" | "verifying" if config.scheduling.workers => outln(
            "a runner worker verifies it; once verified it becomes active at the next 00:00 UTC",
        ),
        "pending" | "verifying" => outln(
            "the running validator verifies it; once verified it becomes active at the next 00:00 UTC",
        ),
        _ => Ok(()),
    }
}

/// Register a miner by its hotkey.
pub fn add_miner(args: &AddMinerArgs) -> anyhow::Result<()> {
    let config = ValidatorConfig::from_file(&args.config)?;
    let runtime = crate::runtime()?;
    let decision = runtime.block_on(async {
        let runner = runner(&config)?;
        anyhow::Ok(service::add_miner(&config, runner, &args.hotkey).await?)
    })?;
    print_registration(&decision)
}

/// `registered HOTKEY as uid N`, and the miner deregistered to make room if there is one.
fn print_registration(decision: &RegistrationDecision) -> anyhow::Result<()> {
    outln(format_args!(
        "registered {} as uid {}",
        decision.registered.hotkey, decision.registered.uid
    ))?;
    if let Some(leaving) = &decision.deregistered {
        outln(format_args!(
            "deregistered {} (uid {}) to make room",
            leaving.hotkey, leaving.uid
        ))?;
    }
    Ok(())
}
