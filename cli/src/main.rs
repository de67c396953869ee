//! `sooth`: the one binary of the sooth forecasting-agent runner.
//!
//! This crate only parses arguments and wires the library crates together;
//! each subcommand lives in its own file.

mod agent_build;
mod agent_new;
mod agent_test;
mod backtest;
mod compile_worker;
mod demo;
mod ensemble_cmd;
mod events;
mod gateway_choice;
mod keys_cmd;
mod linked_key_sink;
mod miner_cmd;
mod progress;
mod proxy_keys;
mod proxy_run;
mod runner_cmd;
mod runner_setup;
mod services_cmd;
mod upload_cmd;
mod validator_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Run, check and build sandboxed forecasting agents.
#[derive(Debug, Parser)]
#[command(name = "sooth", version, about)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG
    /// overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, build, test and upload an agent.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Make and read hotkeys: a miner's identity, which signs its requests to validators.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A miner's standing with a validator.
    #[command(subcommand)]
    Miner(MinerCommand),
    /// Your own API keys for a validator's gateway services: the gateway pays your agent's
    /// calls to the service with your key, under a higher cap.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Run the gateway: the signing proxy agents reach LLM and search
    /// services through.
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Run the validator daemon, or add miners and agents to it.
    #[command(subcommand)]
    Validator(ValidatorCommand),
    /// Run agents for a validator on this host: claim the runs its scheduler hands out through
    /// PostgreSQL, run them in the sandbox, record them; until Ctrl-C or SIGTERM, then finish
    /// what is held.
    Runner {
        /// The worker's configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Replay an event file through the validator on a simulated clock: agents registered at
    /// the start, events created and resolved at their instants; prints the leaderboard.
    Backtest(BacktestArgs),
    /// The whole validator on a seeded synthetic world, nothing to configure: builds the
    /// example agents, runs them through the in-process gateway against a fake upstream on a
    /// simulated clock, and prints the leaderboard and weights.
    Demo(DemoArgs),
    /// The benchmark models' rank-gauss ensemble of a table of predictions (CSV or Parquet),
    /// era by era, optionally neutralized; writes the table with the ensemble column added.
    Ensemble(ensemble_cmd::EnsembleArgs),
    /// Plumbing used by sooth itself.
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Scaffold a new agent project in PARENT/NAME.
    New(NewArgs),
    /// Build an agent project (Rust or Python) into a WebAssembly component.
    Build(BuildArgs),
    /// Run an agent on events in the validator's sandbox and score it.
    Test(TestArgs),
    /// Upload an agent's component to a validator, signed with your hotkey, after checking
    /// locally that it is within the validator's size cap and loads in its sandbox.
    Upload(UploadArgs),
    /// The status of your agent versions at a validator: one version with its verdicts, or
    /// all of them, one a line.
    Status(StatusArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new hotkey to a file (mode 0600; never over an existing file) and print its
    /// public key.
    Generate(KeysGenerateArgs),
    /// Print the public key of a hotkey file.
    Show {
        /// The hotkey file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

/// The signature schemes of hotkeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeArg {
    /// Ed25519; the public key is 64 hex characters.
    Ed25519,
    /// Sr25519 (substrate, bittensor); the public key is an SS58 address.
    Sr25519,
}

/// Arguments of `sooth keys generate`.
#[derive(Debug, Args)]
pub struct KeysGenerateArgs {
    /// Where to write the new hotkey file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The signature scheme.
    #[arg(long, value_enum, default_value_t = SchemeArg::Ed25519)]
    pub scheme: SchemeArg,
}

#[derive(Debug, Subcommand)]
enum MinerCommand {
    /// Register your hotkey with a validator whose operator opened registration (a signed
    /// request).
    Register(ValidatorKeyArgs),
}

#[derive(Debug, Subcommand)]
enum ServicesCommand {
    /// Link your own upstream API key for one of the validator's gateway services (a signed
    /// request). The key is read from an environment variable, never from the command line
    /// (which other users can see in `ps`), and never printed. A new upload requires linking
    /// again: the key is dropped when a newer version of your agent activates.
    Link(ServiceLinkArgs),
}

/// Arguments of `sooth services link`.
#[derive(Debug, Args)]
pub struct ServiceLinkArgs {
    /// The gateway service the key is for (e.g. `chat`), as the validator's gateway names it.
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The environment variable holding your API key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: String,
    /// The validator and your hotkey.
    #[command(flatten)]
    pub target: ValidatorKeyArgs,
}

/// Which validator a miner's command speaks to, and the hotkey that signs it.
#[derive(Debug, Args)]
pub struct ValidatorKeyArgs {
    /// The validator's base URL (its HTTP API, e.g. http://127.0.0.1:8710).
    #[arg(long, value_name = "URL")]
    pub validator: String,
    /// Your hotkey file (`sooth keys generate` writes one).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// Arguments of `sooth agent upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The agent's component (`sooth agent build` makes one).
    pub agent: PathBuf,
    /// The validator and your hotkey.
    #[command(flatten)]
    pub target: ValidatorKeyArgs,
    /// Where compiled components are cached for the local check [default:
    /// $XDG_CACHE_HOME/sooth/compiled or ~/.cache/sooth/compiled].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Arguments of `sooth agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The version (the number `sooth agent upload` printed) [default: all your versions].
    #[arg(value_name = "VERSION")]
    pub version: Option<i64>,
    /// The validator and your hotkey.
    #[command(flatten)]
    pub target: ValidatorKeyArgs,
}

#[derive(Debug, Subcommand)]
enum ProxyCommand {
    /// Serve the gateway with a configuration file; upstream API keys come
    /// from the environment variables the configuration names.
    Run {
        /// The gateway configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Put a miner's own API key for a service on file in the gateway's
    /// data directory: that miner's calls to the service then use it instead
    /// of the operator's key, under the service's linked (higher) daily cap.
    /// The key is read from `--key-env` or else from stdin, never from the
    /// command line (which other users can see in `ps`).
    LinkKey(LinkKeyArgs),
    /// Remove a miner's key for a service: its calls go back to the
    /// operator's key and daily cap.
    UnlinkKey(MinerServiceArgs),
}

/// Which miner and service a linked key is for.
#[derive(Debug, Args)]
pub struct MinerServiceArgs {
    /// The gateway configuration (TOML); its data directory holds the keys.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The miner's hotkey.
    #[arg(long, value_name = "HOTKEY")]
    pub miner: String,
    /// The service, as named in the configuration.
    #[arg(long, value_name = "NAME")]
    pub service: String,
}

/// Arguments of `sooth proxy link-key`.
#[derive(Debug, Args)]
pub struct LinkKeyArgs {
    /// The miner and service the key is for.
    #[command(flatten)]
    pub target: MinerServiceArgs,
    /// Read the key from this environment variable [default: one line
    /// from stdin].
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ValidatorCommand {
    /// Run the daemon: ingest events, activate agents at midnight, run them, score
    /// resolutions, write weights, serve the read-only HTTP API; until Ctrl-C.
    Run {
        /// The validator configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Add a version of a miner's agent (registering the miner if needed) through the
    /// verification queue; once verified it becomes active at the next 00:00 UTC.
    AddAgent(AddAgentArgs),
    /// List the runner workers, the runs each holds and what each did, and the runs queued.
    Status {
        /// The validator configuration (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Register a miner by its hotkey (an ed25519 public key in hex, or an sr25519 SS58
    /// address), under the slot and immunity rules.
    AddMiner(AddMinerArgs),
}

/// Arguments of `sooth validator add-miner`.
#[derive(Debug, Args)]
pub struct AddMinerArgs {
    /// The validator configuration (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The miner's hotkey.
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub hotkey: String,
}

/// Arguments of `sooth validator add-agent`.
#[derive(Debug, Args)]
pub struct AddAgentArgs {
    /// The validator configuration (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The miner's hotkey.
    #[arg(long, value_name = "HOTKEY")]
    pub hotkey: String,
    /// The agent's component.
    pub agent: PathBuf,
}

fn default_concurrency() -> u16 {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .try_into()
        .unwrap_or(1024)
}

/// Arguments of `sooth backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Events and resolutions, JSON Lines (a file or a directory of them); the ForecastBench
    /// file is one.
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// The agents' components; each runs as a miner named after its file.
    #[arg(long, value_name = "WASM", num_args = 1.., required = true)]
    pub agents: Vec<PathBuf>,
    /// Benchmark agents' components: each runs on every event under a reserved entry named
    /// after its file, scored beside the miners and never weighted.
    #[arg(long = "benchmark", value_name = "WASM")]
    pub benchmarks: Vec<PathBuf>,
    /// Also write the leaderboard as leaderboard.json and leaderboard.csv here, and its web
    /// pages in site/ (open site/index.html).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Keep the validator's database and components here [default: a temporary directory].
    /// A backtest stopped part-way resumes when run again on the same directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the validator's database on this PostgreSQL server instead
    /// (postgres://user:password@host/database); the data directory keeps the components.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Hand every run to runner workers (sooth runner) claiming from the database of
    /// --database-url, instead of running agents in this process.
    #[arg(long, requires = "database_url")]
    pub workers: bool,
    /// Start a gateway in this process from this gateway configuration, and let the agents
    /// reach its services (keys from the environment, as for `sooth proxy run`) [default:
    /// none, an agent's gateway calls answer not-found]. With --workers, the workers call the
    /// gateways of their own configuration instead.
    #[arg(long, value_name = "FILE", conflicts_with = "workers")]
    pub gateway_config: Option<PathBuf>,
    /// Each run's cap per service with --gateway-config, in US dollars.
    #[arg(
        long,
        value_name = "USD",
        default_value_t = 0.05,
        requires = "gateway_config"
    )]
    pub run_cap_usd: f64,
    /// Runs at once.
    #[arg(long, value_name = "N", default_value_t = default_concurrency(),
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Verify the agents as a validator does before they enter, with the first N resolved
    /// events of the file as the probe set (they are not replayed): duplicate, compile, probe
    /// runs, originality against the agents listed before. A rejected agent does not run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub probe_events: Option<u32>,
}

/// Arguments of `sooth demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the synthetic world.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Days of events.
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Mean events a day.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub events_per_day: u32,
    /// Use these built agents instead of building the examples.
    #[arg(long, value_name = "WASM", num_args = 1..)]
    pub agents: Vec<PathBuf>,
    /// Keep the databases and components here [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write the leaderboard as leaderboard.json and leaderboard.csv here, and its web pages
    /// in site/, then exit instead of serving them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where to serve the leaderboard's pages and the JSON API once the world is replayed
    /// (without --out), until interrupted; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// The multi-threaded async runtime the commands run in.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[derive(Debug, Subcommand)]
enum InternalCommand {
    /// Compile a component read from stdin; write the artifact to stdout.
    CompileWorker {
        /// Address-space cap of this process, in bytes.
        #[arg(long)]
        memory_limit_bytes: u64,
    },
}

/// The languages `sooth agent new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A cargo project built for wasm32-wasip2 with the Rust SDK.
    Rust,
    /// A Python module built with componentize-py.
    Python,
}

/// Arguments of `sooth agent new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's name (letters, digits, `-` and `_`, starting with a letter).
    pub name: String,
    /// The agent's language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// Where to create the project directory.
    #[arg(long, value_name = "PARENT", default_value = ".")]
    pub dir: PathBuf,
}

/// Arguments of `sooth agent build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project directory (with Cargo.toml or app.py).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the component [default: DIR/agent.wasm].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

const RESPONSES_HELP: &str =
    "Canned gateway answers, TOML (or JSON when named *.json); without it every \
gateway call answers not-found. The first rule that matches a request answers it:

    [[rule]]
    service = \"chat\"                  # chat, search, or a named service
    model = \"deepseek-ai/DeepSeek-V3\" # optional: only this model
    contains = \"Bitcoin\"              # optional: the prompt/query/body contains this
    times = 1                         # optional: answer only this many times
    delay_ms = 20                     # optional: wait before answering
    cost_usd = 0.0002                 # optional: reported cost
    content = \"Probability: 0.72\"     # the chat answer

    [[rule]]
    service = \"search\"
    results = [{ title = \"T\", url = \"https://example.org\", snippet = \"...\" }]

    [[rule]]
    service = \"chat\"
    error = \"rate-limited\"  # or budget-exceeded, unavailable, not-found, bad-request, timeout
    retry_after_ms = 500";

/// Arguments of `sooth agent test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The agent's component (`sooth agent build` makes one).
    pub agent: PathBuf,
    /// JSON Lines events to run on [default: built-in synthetic events].
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Canned gateway answers, TOML (or JSON when named *.json) [default:
    /// every gateway call answers not-found].
    #[arg(long, value_name = "FILE", long_help = RESPONSES_HELP)]
    pub responses: Option<PathBuf>,
    /// Per-run limit in seconds; may only shorten the validator's 240 s.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// One JSON object a line per event, then a summary object.
    #[arg(long)]
    pub json: bool,
    /// Print what the agent logged (stdout, stderr, log lines) under each
    /// event.
    #[arg(long, conflicts_with = "json")]
    pub logs: bool,
    /// Where compiled components are cached [default:
    /// $XDG_CACHE_HOME/sooth/compiled or ~/.cache/sooth/compiled].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Start the gateway in-process from this configuration, with your own
    /// upstream API keys from the environment, and run against real
    /// services exactly as validators do.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["responses", "gateway"])]
    pub gateway_config: Option<PathBuf>,
    /// Use the gateway at this URL; run tokens are signed with
    /// `--validator-key`.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "responses",
        requires = "validator_key"
    )]
    pub gateway: Option<String>,
    /// File with the hex ed25519 key whose run tokens the gateway at
    /// `--gateway` honours.
    #[arg(long, value_name = "FILE")]
    pub validator_key: Option<PathBuf>,
    /// Spending cap of each run on each service, US dollars (with a
    /// gateway).
    #[arg(long, value_name = "USD", default_value_t = 0.05)]
    pub run_cap_usd: f64,
    /// Runs at once [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: Option<u32>,
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr: the compile worker's stdout carries its artifact.
    // Colours only on a terminal: a log written to a file or a pipe stays plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Write `text` and a newline on stdout; the error of a closed pipe ends
/// the command quietly (see `main`).
pub(crate) fn outln(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Whether `error` comes from writing to a pipe whose reader has gone (as
/// in `sooth agent test ... | head`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `error` and each of its causes once, on one line. Every sooth error says only its own layer
/// and leaves its cause to `source()`, so walking the chain repeats nothing.
fn render(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        text.push_str(": caused by ");
        text.push_str(&cause.to_string());
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Internal(InternalCommand::CompileWorker { memory_limit_bytes }) => {
            return compile_worker::run(memory_limit_bytes);
        }
        Command::Agent(AgentCommand::New(args)) => agent_new::run(&args),
        Command::Agent(AgentCommand::Build(args)) => agent_build::run(&args),
        Command::Agent(AgentCommand::Test(args)) => agent_test::run(&args),
        Command::Agent(AgentCommand::Upload(args)) => upload_cmd::upload(&args),
        Command::Agent(AgentCommand::Status(args)) => upload_cmd::status(&args),
        Command::Keys(KeysCommand::Generate(args)) => keys_cmd::generate(&args),
        Command::Keys(KeysCommand::Show { key }) => keys_cmd::show(&key),
        Command::Miner(MinerCommand::Register(args)) => miner_cmd::register(&args),
        Command::Services(ServicesCommand::Link(args)) => services_cmd::link(&args),
        Command::Proxy(ProxyCommand::Run { config }) => proxy_run::run(&config),
        Command::Proxy(ProxyCommand::LinkKey(args)) => proxy_keys::link(&args),
        Command::Proxy(ProxyCommand::UnlinkKey(args)) => proxy_keys::unlink(&args),
        Command::Validator(ValidatorCommand::Run { config }) => validator_cmd::run(&config),
        Command::Validator(ValidatorCommand::AddAgent(args)) => validator_cmd::add_agent(&args),
        Command::Validator(ValidatorCommand::AddMiner(args)) => validator_cmd::add_miner(&args),
        Command::Validator(ValidatorCommand::Status { config }) => runner_cmd::status(&config),
        Command::Runner { config } => runner_cmd::run(&config),
        Command::Backtest(args) => backtest::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Ensemble(args) => ensemble_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", render(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_error_line_names_each_layer_once_outermost_first() {
        let error = anyhow::Error::new(std::io::Error::other("permission denied"))
            .context("cannot read the configuration v.toml")
            .context("cannot start the validator");
        assert_eq!(
            render(&error),
            "cannot start the validator: caused by cannot read the configuration v.toml: caused by permission denied"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn the_responses_example_in_the_help_parses() {
        let toml: String = RESPONSES_HELP
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .map(|line| format!("{line}\n"))
            .collect();
        sooth_runner::ScriptedGateway::from_str(&toml, false, "the --responses help").unwrap();
    }
}
