//! `sooth proxy link-key` and `sooth proxy unlink-key`: a miner's own API
//! keys on file in the gateway's data directory.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context, bail};
use sooth_proxy::{ApiKey, DEFAULT_RELOAD_INTERVAL, ProxyConfig, link_key, unlink_key};

use crate::{LinkKeyArgs, MinerServiceArgs, outln};

/// Link the key read from `--key-env` or stdin.
pub fn link(args: &LinkKeyArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let config = ProxyConfig::from_file(&target.config)?;
    let text = match &args.key_env {
        Some(name) => match std::env::var(name) {
            Ok(text) => text,
            Err(_) => bail!("the environment variable {name} is unset or not UTF-8"),
        },
        None => read_key_line()?,
    };
    // The error says what a key must look like, never what was read.
    let key = ApiKey::parse(&text)?;
    runtime()?.block_on(link_key(&config, &target.miner, &target.service, key))?;
    outln(format_args!(
        "linked a key for miner {} on service {}; a running gateway uses it within {} s",
        target.miner,
        target.service,
        DEFAULT_RELOAD_INTERVAL.as_secs()
    ))
}

/// Unlink the miner's key for the service.
pub fn unlink(args: &MinerServiceArgs) -> anyhow::Result<()> {
    let config = ProxyConfig::from_file(&args.config)?;
    let removed = runtime()?.block_on(unlink_key(&config, &args.miner, &args.service))?;
    if removed {
        outln(format_args!(
            "unlinked the key of miner {} on service {}; a running gateway goes back to the operator's key within {} s",
            args.miner,
            args.service,
            DEFAULT_RELOAD_INTERVAL.as_secs()
        ))
    } else {
        outln(format_args!(
            "miner {} had no key on file for service {}",
            args.miner, args.service
        ))
    }
}

/// One line from stdin (a prompt on stderr when it is a terminal).
fn read_key_line() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("API key (one line; it is echoed, prefer piping it in):");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the API key from stdin")?;
    Ok(line)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
