//! `sooth miner register`, and the signed client every miner command uses.

use anyhow::Context;
use sooth_miner_client::MinerClient;
use sooth_protocol::read_hotkey_file;

use crate::{ValidatorKeyArgs, outln};

/// A client of the validator `args` names, signing with the hotkey in its key file.
pub fn connect(args: &ValidatorKeyArgs) -> anyhow::Result<MinerClient> {
    let secret = read_hotkey_file(&args.key)?;
    Ok(MinerClient::new(&args.validator, secret)?)
}

/// Registers the miner's hotkey with the validator (where its operator opened registration).
pub fn register(args: &ValidatorKeyArgs) -> anyhow::Result<()> {
    let client = connect(args)?;
    let registered = crate::runtime()?
        .block_on(client.register())
        .with_context(|| {
            format!(
                "cannot register {} with the validator at {}",
                client.hotkey(),
                args.validator
            )
        })?;
    outln(format_args!(
        "registered {} as uid {}",
        registered.hotkey, registered.uid
    ))?;
    if let Some(leaving) = &registered.deregistered {
        outln(format_args!(
            "the validator deregistered {leaving} to free the slot"
        ))?;
    }
    Ok(())
}
