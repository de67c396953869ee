//! `sooth backtest`: replay an event file through the validator daemon on a simulated clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use sooth_protocol::generate_key;
use sooth_proxy::RunningGateway;
use sooth_runner::{Gateway, HttpGateway, ScriptedGateway};
use sooth_validator::sources::{Batch, jsonl};
use sooth_validator::store::{Store, StoreOptions, Verification};
use sooth_validator::verification::ProbeSet;
use sooth_validator::{
    BacktestReport, DaemonSettings, RunTokens, SignedRunTokens, Simulation, start_instant,
};

use crate::gateway_choice::start_in_process;
use crate::progress::replay_bar;
use crate::runner_setup::{default_cache_dir, make_runner};
use crate::{BacktestArgs, outln};

/// Run the backtest `args` describes.
pub fn run(args: &BacktestArgs) -> anyhow::Result<()> {
    let mut batch = read_events(&args.events)?;
    let probe = args
        .probe_events
        .map(|count| ProbeSet::split_from(&mut batch, count as usize));
    if let Some(probe) = &probe {
        if probe.is_empty() {
            bail!(
                "{} has no resolved events for the probe set",
                args.events.display()
            );
        }
        if batch.events.is_empty() {
            bail!(
                "{} holds no events beyond the {} of the probe set",
                args.events.display(),
                probe.events().len()
            );
        }
    }
    let agents = agent_names(&args.agents)?;
    let data_dir = DataDir::given_or_temporary(args.data_dir.as_deref())?;
    let data_dir = data_dir.path();
    let runtime = crate::runtime()?;
    let report = runtime.block_on(async {
        let start = start_instant(&batch.events)?;
        let runner = make_runner(default_cache_dir())?;
        let sandbox_version = runner.sandbox_version();
        let (gateway, tokens, in_process) = backtest_gateway(args).await?;
        let settings = DaemonSettings {
            max_concurrent_runs: usize::from(args.concurrency),
            ..DaemonSettings::default()
        };
        let simulation = match &args.database_url {
            None => Simulation::open(data_dir, start, runner, gateway, tokens, settings).await?,
            Some(url) => {
                let store = Store::connect(url, &StoreOptions::default()).await?;
                Simulation::on_store(store, data_dir, start, runner, gateway, tokens, settings)?
            }
        };
        let simulation = if args.workers {
            outln("runs are handed to the runner workers (sooth runner) on the database")?;
            simulation.with_workers(&sandbox_version).await?
        } else {
            simulation
        };
        for (name, path) in unique_names(&args.benchmarks) {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read benchmark agent {}", path.display()))?;
            simulation.add_benchmark(&name, &bytes).await?;
            outln(format_args!("benchmark {name}: {}", path.display()))?;
        }
        for (hotkey, path) in &agents {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read agent {}", path.display()))?;
            match &probe {
                None => {
                    simulation.enter(hotkey, &bytes).await?;
                }
                Some(probe) => match simulation.enter_checked(hotkey, &bytes, probe).await? {
                    Verification::Verified => {
                        outln(format_args!("agent {hotkey}: verified"))?;
                    }
                    Verification::Rejected { reason, .. } => {
                        outln(format_args!(
                            "agent {hotkey}: rejected, it does not run: {reason}"
                        ))?;
                    }
                },
            }
        }
        let bar = replay_bar();
        let replay = simulation
            .replay(batch.events, batch.resolutions, |progress| {
                bar.set_length(progress.total as u64);
                bar.set_position(progress.done as u64);
                bar.set_message(format!("{} runs", progress.runs));
            })
            .await?;
        bar.finish_and_clear();
        for refused in &replay.refused {
            eprintln!("warning: skipped: {refused}");
        }
        let report = simulation.report().await?;
        if let Some(out) = &args.out {
            write_site(simulation.daemon.store(), out).await?;
        }
        if let Some(running) = in_process {
            running.stop().await;
        }
        anyhow::Ok(report)
    })?;
    print_report(&report)?;
    if let Some(out) = &args.out {
        write_report(&report, out)?;
    }
    Ok(())
}

/// The gateway the agents call, the tokens that let them, and the gateway started in this
/// process for it.
type BacktestGateway = (
    Arc<dyn Gateway>,
    Option<Arc<dyn RunTokens>>,
    Option<RunningGateway>,
);

/// The gateway of `--gateway-config`, started in this process and trusting a key of this
/// backtest's own; without it, none: an agent's calls answer not-found, as with
/// `sooth agent test`.
async fn backtest_gateway(args: &BacktestArgs) -> anyhow::Result<BacktestGateway> {
    let Some(path) = &args.gateway_config else {
        return Ok((Arc::new(ScriptedGateway::empty()), None, None));
    };
    if !(args.run_cap_usd.is_finite() && args.run_cap_usd >= 0.0) {
        bail!("--run-cap-usd must be a non-negative number");
    }
    let key = generate_key();
    let running = start_in_process(
        path,
        key.verifying_key(),
        Some(([127, 0, 0, 1], 0).into()),
        None,
    )
    .await?;
    let gateway = Arc::new(HttpGateway::new(running.base_url())?);
    let tokens: Arc<dyn RunTokens> = Arc::new(SignedRunTokens::new(
        key,
        BTreeMap::from([("*".to_owned(), args.run_cap_usd)]),
    ));
    Ok((gateway, Some(tokens), Some(running)))
}

/// Writes the leaderboard's web pages in `out/site`.
pub async fn write_site(store: &Store, out: &Path) -> anyhow::Result<()> {
    let site = out.join("site");
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    sooth_validator::pages::write_static_site(store, &site)
        .await
        .with_context(|| format!("cannot write the pages in {}", site.display()))?;
    outln(format_args!("wrote {}", site.join("index.html").display()))?;
    Ok(())
}

/// The data directory a command was given, or a temporary one removed when this is dropped.
pub struct DataDir {
    path: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl DataDir {
    /// `given`, or a new temporary directory.
    pub fn given_or_temporary(given: Option<&Path>) -> anyhow::Result<Self> {
        Ok(match given {
            Some(path) => Self {
                path: path.to_path_buf(),
                _temporary: None,
            },
            None => {
                let temporary =
                    tempfile::tempdir().context("cannot create a temporary data directory")?;
                Self {
                    path: temporary.path().to_path_buf(),
                    _temporary: Some(temporary),
                }
            }
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the events and resolutions of `path` (a JSON Lines file or a directory of them),
/// warning about malformed rows.
pub fn read_events(path: &Path) -> anyhow::Result<Batch> {
    let batch = jsonl::read_path(path)?;
    for rejected in &batch.rejected {
        eprintln!("warning: skipped {rejected}");
    }
    if batch.events.is_empty() {
        bail!("{} holds no events", path.display());
    }
    Ok(batch)
}

/// Each agent's miner name: its file's stem, made unique with a number when two agree.
fn agent_names(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if paths.is_empty() {
        bail!("give at least one agent with --agents");
    }
    Ok(unique_names(paths))
}

/// Each file with a name of its own: its stem, suffixed `-2`, `-3`... when taken.
fn unique_names(paths: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut taken = BTreeSet::new();
    let mut named = Vec::new();
    for path in paths {
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .filter(|stem| !stem.is_empty())
            .unwrap_or_else(|| "agent".to_owned());
        let mut name = stem.clone();
        let mut suffix = 2;
        while !taken.insert(name.clone()) {
            name = format!("{stem}-{suffix}");
            suffix += 1;
        }
        named.push((name, path.clone()));
    }
    named
}

/// Prints the leaderboard and the weights.
pub fn print_report(report: &BacktestReport) -> anyhow::Result<()> {
    outln(format_args!("leaderboard at {}", report.ended_at))?;
    outln(report.table().trim_end())?;
    Ok(())
}

/// Writes `leaderboard.json` and `leaderboard.csv` in `out`.
pub fn write_report(report: &BacktestReport, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    let csv = report.csv()?;
    for (name, text) in [("leaderboard.json", json), ("leaderboard.csv", csv)] {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        outln(format_args!("wrote {}", path.display()))?;
    }
    Ok(())
}
