//! `sooth services link`: a miner links its own upstream API key at a validator.

use anyhow::{Context, bail};

use crate::miner_cmd::connect;
use crate::{ServiceLinkArgs, outln};

/// Sends the key in `--api-key-env`, signed, for the service named; prints the service and
/// when it was linked, never the key.
pub fn link(args: &ServiceLinkArgs) -> anyhow::Result<()> {
    let variable = &args.api_key_env;
    let key = match std::env::var(variable) {
        Ok(key) => key,
        Err(_) => bail!("the environment variable {variable} is unset or not UTF-8"),
    };
    let client = connect(&args.target)?;
    // The client's errors say what a key must look like, never what was read.
    let linked = crate::runtime()?
        .block_on(client.link_service_key(&args.service, &key))
        .with_context(|| {
            format!(
                "cannot link a key for service {:?} at the validator at {}",
                args.service, args.target.validator
            )
        })?;
    outln(format_args!(
        "linked your key for service {} at {}; the validator's gateway uses it for your \
         agent's calls within seconds, until a newer version of your agent activates (then \
         link again)",
        linked.service,
        linked
            .linked_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    ))
}
