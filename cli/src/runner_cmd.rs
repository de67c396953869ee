//! `sooth runner`: a runner worker on this host, and `sooth validator status`, what the
//! scheduler's workers hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sooth_migrations::redacted_url;
use sooth_protocol::parse_signing_key_hex;
use sooth_runner::{Gateway, HttpGateway, ScriptedGateway};
use sooth_validator::store::{Store, StoreOptions};
use sooth_validator::worker::{Worker, WorkerSettings};
use sooth_validator::{RunTokens, SandboxExecutor, SignedRunTokens, ValidatorConfig, WorkerConfig};

use crate::outln;
use crate::runner_setup::make_runner_with;
use crate::validator_cmd::stop_signal;

/// Runs the worker configured in `path` until Ctrl-C or SIGTERM, then drains.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = WorkerConfig::from_file(path)?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let store = Store::connect(&config.database_url, &StoreOptions::default()).await?;
        let mut runner_config = config.runner.clone();
        // The runner's own limit must not stop the worker's concurrency.
        runner_config.max_concurrent_runs = runner_config.max_concurrent_runs.max(config.concurrency);
        let cache = runner_config
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.cache_dir.join("compiled"));
        let runner = make_runner_with(runner_config, Some(cache))?;
        let sandbox_version = runner.sandbox_version();
        let (gateway, tokens) = worker_gateway(&config)?;
        let executor = Arc::new(
            SandboxExecutor::new(runner, config.cache_dir.join("agents"), gateway, tokens)
                .with_context(|| format!("cannot use {}", config.cache_dir.display()))?,
        );
        let host = host_name();
        let worker_id = config
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("{host}-{}", std::process::id()));
        outln(format_args!(
            "runner worker {worker_id} claiming runs from {}",
            redacted_url(&config.database_url)
        ))?;
        let worker = Worker::new(
            store,
            executor,
            sandbox_version,
            WorkerSettings {
                worker_id,
                host,
                concurrency: config.concurrency as usize,
                lease: Duration::from_secs(config.lease_secs),
                idle_poll: Duration::from_millis(200),
            },
        );
        let report = worker.run(drain_signal()).await?;
        outln(format_args!(
            "runner worker stopped: {} runs claimed, {} recorded, {} dropped after their lease ended",
            report.claimed, report.recorded, report.lost
        ))
    })
}

/// The first Ctrl-C or SIGTERM: the worker drains. A second one ends the process at once,
/// for a drain that cannot finish (the database unreachable, an agent that takes its whole
/// time): the runs it held are claimed again when their leases end, and the version it was
/// verifying when its verification lease ends.
async fn drain_signal() {
    stop_signal().await;
    tracing::info!("draining; a second Ctrl-C or SIGTERM stops at once");
    tokio::spawn(async {
        stop_signal().await;
        tracing::warn!(
            "stopped without draining: what this worker held is claimed again when its leases end"
        );
        std::process::exit(1);
    });
}

/// A gateway client and the run tokens it needs.
type GatewayAndTokens = (Arc<dyn Gateway>, Option<Arc<dyn RunTokens>>);

/// The gateway the worker's agents call, and the tokens that let them.
fn worker_gateway(config: &WorkerConfig) -> anyhow::Result<GatewayAndTokens> {
    let (false, Some(key_file)) = (config.gateway_url.is_empty(), &config.key_file) else {
        tracing::warn!("no gateway configured: agents' gateway calls will fail");
        return Ok((Arc::new(ScriptedGateway::empty()), None));
    };
    let text = std::fs::read_to_string(key_file).with_context(|| {
        format!(
            "cannot read the validator's run-token key {}",
            key_file.display()
        )
    })?;
    let key = parse_signing_key_hex(&text)
        .with_context(|| format!("{} holds no signing key", key_file.display()))?;
    let tokens: Arc<dyn RunTokens> = Arc::new(SignedRunTokens::new(
        key,
        BTreeMap::from([("*".to_owned(), config.run_cap_usd)]),
    ));
    let gateway = HttpGateway::with_failover(config.gateway_url.iter().cloned())?;
    Ok((Arc::new(gateway), Some(tokens)))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Prints the workers of the validator configured in `path`, with the runs each holds, the run
/// queue and the verification queue.
pub fn status(path: &Path) -> anyhow::Result<()> {
    let config = ValidatorConfig::from_file(path)?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let store = sooth_validator::service::open_store(&config).await?;
        let queue = store.queue_counts().await?;
        let workers = store.workers().await?;
        let gauges = store.metrics_gauges().await?;
        outln(format_args!(
            "runs queued for workers: {} waiting, {} leased",
            queue.waiting, queue.leased
        ))?;
        outln(format_args!(
            "versions to verify: {} waiting, {} being verified",
            gauges.queue_waiting, gauges.queue_leased
        ))?;
        if workers.is_empty() {
            return outln("no runner worker has registered");
        }
        outln(format_args!(
            "{:<24} {:<16} {:<9} {:>6} {:>7} {:>9} {:>10} {:>8} {:>10}",
            "worker", "host", "state", "slots", "leased", "claimed", "completed", "expired", "seen"
        ))?;
        let now = Utc::now();
        for worker in &workers {
            let seen = (now - worker.seen_at).num_seconds().max(0);
            outln(format_args!(
                "{:<24} {:<16} {:<9} {:>6} {:>7} {:>9} {:>10} {:>8} {:>9}s{}",
                worker.registration.worker_id,
                worker.registration.host,
                worker.state.as_str(),
                worker.registration.concurrency,
                worker.leased,
                worker.claimed,
                worker.completed,
                worker.expired,
                seen,
                if worker.detail.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", worker.detail)
                }
            ))?;
        }
        store.close().await;
        Ok(())
    })
}
