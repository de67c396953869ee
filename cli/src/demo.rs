//! `sooth demo`: the whole validator on a synthetic world, with nothing to configure.
//!
//! Builds the example agents, generates a seeded world (events with hidden true probabilities
//! and a noisy market price, outcomes drawn from the truth), starts the gateway in-process
//! against a fake upstream on loopback, replays the world through the daemon on a simulated
//! clock and prints the leaderboard and the weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sooth_fake_upstream::{FakeUpstream, FakeUpstreamConfig};
use sooth_protocol::generate_key;
use sooth_proxy::{ProxyConfig, launch};
use sooth_runner::HttpGateway;
use sooth_validator::synthetic::{WorldSpec, generate};
use sooth_validator::{DaemonSettings, SignedRunTokens, Simulation};

use crate::agent_build::{build_python, build_rust};
use crate::backtest::{DataDir, print_report, write_report, write_site};
use crate::progress::replay_bar;
use crate::runner_setup::{default_cache_dir, make_runner};
use crate::{DemoArgs, outln};

/// The Rust example agents the demo builds, by miner name and package directory.
const EXAMPLES: [(&str, &str); 2] = [
    ("market-baseline", "agents-examples/market-baseline"),
    ("llm-forecaster", "agents-examples/llm-forecaster"),
];

/// The Python example agent, built when componentize-py is installed.
const PYTHON_EXAMPLE: (&str, &str) = ("llm-forecaster-py", "agents-examples/llm-forecaster-py");

/// The model the LLM example agent asks for.
const MODEL: &str = "deepseek-ai/DeepSeek-V3";

/// Run the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::given_or_temporary(args.data_dir.as_deref())?;
    let data_dir = data_dir.path();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let agents = if args.agents.is_empty() {
        build_examples(&data_dir.join("built"))?
    } else {
        args.agents
            .iter()
            .map(|path| {
                let name = path
                    .file_stem()
                    .map_or_else(|| "agent".to_owned(), |s| s.to_string_lossy().into_owned());
                (name, path.clone())
            })
            .collect()
    };
    let spec = WorldSpec {
        seed: args.seed,
        days: args.days,
        events_per_day: args.events_per_day,
        ..WorldSpec::default()
    };
    let world = generate(&spec);
    outln(format_args!(
        "synthetic world: seed {}, {} events over {} days from {}",
        spec.seed,
        world.len(),
        spec.days,
        spec.start.date_naive()
    ))?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let upstream = FakeUpstream::start(FakeUpstreamConfig {
            models: vec![MODEL.to_owned()],
            ..FakeUpstreamConfig::default()
        })
        .await
        .context("cannot start the fake upstream")?;
        let validator_key = generate_key();
        let gateway_config = ProxyConfig::from_toml(
            &upstream.gateway_config_toml(data_dir, &[MODEL], 5.0),
            "the demo's gateway configuration",
        )?;
        let api_keys = upstream.gateway_api_keys();
        let gateway = launch(
            gateway_config,
            Some(validator_key.verifying_key()),
            api_keys,
            Some(([127, 0, 0, 1], 0).into()),
        )
        .await
        .context("cannot start the in-process gateway")?;
        let tokens = SignedRunTokens::new(validator_key, BTreeMap::from([("*".to_owned(), 0.05)]));
        let start = start_of(&spec)?;
        let simulation = Simulation::open(
            data_dir,
            start,
            make_runner(default_cache_dir())?,
            Arc::new(HttpGateway::new(gateway.base_url())?),
            Some(Arc::new(tokens)),
            DaemonSettings::default(),
        )
        .await?;
        for (name, path) in &agents {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read agent {}", path.display()))?;
            let hash = simulation.enter(name, &bytes).await?;
            // The example agents are the benchmarks too (SPEC): the same agent, run under a
            // reserved entry that holds no slot, is what every miner compares itself to.
            simulation.add_benchmark(name, &bytes).await?;
            outln(format_args!(
                "miner {name} and benchmark {name}: agent {}",
                &hash[..12.min(hash.len())]
            ))?;
        }
        let (events, resolutions) = world
            .into_iter()
            .map(|item| (item.event, item.resolution))
            .unzip();
        let bar = replay_bar();
        let replay = simulation
            .replay(events, resolutions, |progress| {
                bar.set_length(progress.total as u64);
                bar.set_position(progress.done as u64);
                bar.set_message(format!(
                    "{} runs, {}",
                    progress.runs,
                    progress.at.date_naive()
                ));
            })
            .await?;
        bar.finish_and_clear();
        let report = simulation.report().await?;
        outln(format_args!(
            "{} runs; gateway upstream calls: {}",
            replay.runs,
            upstream.stats().chat_requests
        ))?;
        print_report(&report)?;
        gateway.stop().await;
        upstream.shutdown().await;
        let store = simulation.daemon.store();
        match &args.out {
            Some(out) => {
                write_report(&report, out)?;
                write_site(store, out).await?;
            }
            None => serve(store.clone(), args.listen).await?,
        }
        anyhow::Ok(())
    })
}

/// The instant the world's replay starts at.
fn start_of(spec: &WorldSpec) -> anyhow::Result<DateTime<Utc>> {
    Ok(spec.start - chrono::TimeDelta::seconds(1))
}

/// Builds the example agents from this source tree into `out`.
fn build_examples(out: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut built = Vec::new();
    for (name, package) in EXAMPLES {
        let dir = root.join(package);
        if !dir.join("Cargo.toml").is_file() {
            bail!(
                "the example agent sources are not at {} (run the demo from a sooth checkout, or give built agents with --agents)",
                dir.display()
            );
        }
        let path = out.join(format!("{name}.wasm"));
        build_rust(&dir, &path)?;
        built.push((name.to_owned(), path));
    }
    let (name, package) = PYTHON_EXAMPLE;
    let path = out.join(format!("{name}.wasm"));
    // The Python agent carries its interpreter: without componentize-py the demo goes on
    // with the Rust agents.
    match build_python(&root.join(package), &path) {
        Ok(()) => built.push((name.to_owned(), path)),
        Err(error) => eprintln!("skipping the Python example agent: {error:#}"),
    }
    Ok(built)
}

/// Serves the leaderboard's pages and the JSON API over `store` on `listen` until Ctrl-C.
async fn serve(
    store: sooth_validator::store::Store,
    listen: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (give another with --listen)"))?;
    let address = listener.local_addr()?;
    outln(format_args!(
        "leaderboard: http://{address}/ (the JSON API under /v1/; Ctrl-C to stop)"
    ))?;
    axum::serve(listener, sooth_validator::api::router(store))
        .with_graceful_shutdown(async {
            // Failing to install the handler leaves only the process's own end.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the leaderboard server stopped")?;
    Ok(())
}
